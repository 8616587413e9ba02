//! The event shaped for a chat tool's incoming webhook. The message stored for a webhook is
//! Banditore's JSON event (rendered from `templates/webhook/<lang>/text.j2`); a subscriber whose
//! address names a preset (`slack+https://…`) gets it turned here into what that tool posts:
//! Slack's `{"text": …}` in mrkdwn, Mattermost's `{"text": …}` in Markdown, and for Microsoft
//! Teams Workflows an Adaptive Card inside a `message`. Every text comes from the event, which
//! the template wrote in the subscriber's language.

use serde_json::{Value, json};

use crate::domain::subscriber::Preset;

/// What a chat message is made of, read from the event.
struct Parts<'a> {
    title: &'a str,
    summary: &'a str,
    text: &'a str,
    link: &'a str,
    link_label: &'a str,
    facts: Vec<(&'a str, String)>,
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn parts(event: &Value) -> Parts<'_> {
    let facts = event
        .pointer("/data/facts")
        .and_then(Value::as_array)
        .map(|facts| {
            facts
                .iter()
                .map(|f| (str_at(f, "/name"), str_at(f, "/value").to_owned()))
                .filter(|(n, v)| !n.is_empty() && !v.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Parts {
        title: str_at(event, "/data/headline"),
        summary: str_at(event, "/data/summary"),
        text: str_at(event, "/data/update/text"),
        link: str_at(event, "/data/links/incident"),
        link_label: str_at(event, "/data/links/incident_label"),
        facts,
    }
}

/// Slack's mrkdwn: `&`, `<` and `>` are its only control characters.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Markdown's punctuation written literally, so a title cannot become a link or a heading.
fn markdown_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\`*_{}[]()#+-.!|<>~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The body for `preset`, or the event itself.
pub fn shape(preset: Preset, event: &Value) -> Value {
    let p = parts(event);
    match preset {
        Preset::Event => event.clone(),
        Preset::Slack => {
            let mut text = format!("*{}*\n{}", slack_escape(p.title), slack_escape(p.summary));
            if !p.text.is_empty() {
                text.push_str(&format!("\n>{}", slack_escape(p.text).replace('\n', "\n>")));
            }
            if !p.link.is_empty() {
                text.push_str(&format!("\n<{}|{}>", p.link, slack_escape(p.link_label)));
            }
            json!({ "text": text })
        }
        Preset::Mattermost => {
            let mut text = format!(
                "**{}**\n{}",
                markdown_escape(p.title),
                markdown_escape(p.summary)
            );
            if !p.text.is_empty() {
                text.push_str(&format!(
                    "\n> {}",
                    markdown_escape(p.text).replace('\n', "\n> ")
                ));
            }
            if !p.link.is_empty() {
                text.push_str(&format!(
                    "\n[{}]({})",
                    markdown_escape(p.link_label),
                    p.link.replace(')', "%29")
                ));
            }
            json!({ "text": text })
        }
        Preset::Teams => {
            let mut body = vec![
                json!({"type": "TextBlock", "text": p.title, "weight": "Bolder", "size": "Medium", "wrap": true}),
                json!({"type": "TextBlock", "text": p.summary, "wrap": true}),
            ];
            if !p.text.is_empty() {
                body.push(json!({"type": "TextBlock", "text": p.text, "wrap": true}));
            }
            if !p.facts.is_empty() {
                let facts: Vec<Value> = p
                    .facts
                    .iter()
                    .map(|(n, v)| json!({"title": n, "value": v}))
                    .collect();
                body.push(json!({"type": "FactSet", "facts": facts}));
            }
            let mut card = json!({
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
            });
            if !p.link.is_empty() {
                card["actions"] =
                    json!([{"type": "Action.OpenUrl", "title": p.link_label, "url": p.link}]);
            }
            json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": null,
                    "content": card,
                }],
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn event(title: &str, text: &str) -> Value {
        json!({
            "type": "incident.opened",
            "version": 1,
            "data": {
                "headline": title,
                "summary": "gravità critica, in analisi",
                "update": {"text": text},
                "facts": [{"name": "Gravità", "value": "critica"}, {"name": "Servizi", "value": ""}],
                "links": {"incident": "https://status.example/status/incidents/4", "incident_label": "Apri"},
            }
        })
    }

    #[test]
    fn slack_gets_mrkdwn_with_its_three_characters_escaped_and_a_link() {
        let body = shape(Preset::Slack, &event("CUP <giù> & fermo", "riga 1\nriga 2"));
        assert_eq!(
            body["text"],
            "*CUP &lt;giù&gt; &amp; fermo*\ngravità critica, in analisi\n>riga 1\n>riga 2\n<https://status.example/status/incidents/4|Apri>"
        );
    }

    #[test]
    fn mattermost_gets_markdown_that_a_title_cannot_turn_into_a_link() {
        let body = shape(Preset::Mattermost, &event("[x](https://evil.example)", ""));
        let text = body["text"].as_str().unwrap();
        assert!(
            text.starts_with("**\\[x\\]\\(https://evil\\.example\\)**"),
            "{text}"
        );
        assert!(text.ends_with("[Apri](https://status.example/status/incidents/4)"));
    }

    #[test]
    fn teams_gets_an_adaptive_card_in_a_message() {
        let body = shape(Preset::Teams, &event("CUP fermo", ""));
        assert_eq!(body["type"], "message");
        let att = &body["attachments"][0];
        assert_eq!(
            att["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(att["content"]["type"], "AdaptiveCard");
        assert_eq!(att["content"]["body"][0]["text"], "CUP fermo");
        // A fact without a value is left out.
        assert_eq!(
            att["content"]["body"][2]["facts"].as_array().unwrap().len(),
            1
        );
        assert_eq!(att["content"]["actions"][0]["type"], "Action.OpenUrl");
    }

    proptest! {
        /// Whatever the incident says, each preset's body is JSON with the title inside, and
        /// Slack's text holds no `<` but the link's own.
        #[test]
        fn any_title_and_text_make_a_body(title in crate::hostile::text(), text in crate::hostile::text()) {
            let e = event(&title, &text);
            for preset in [Preset::Slack, Preset::Mattermost, Preset::Teams, Preset::Event] {
                let body = shape(preset, &e);
                prop_assert!(serde_json::to_string(&body).is_ok());
            }
            let slack = shape(Preset::Slack, &e);
            let slack = slack["text"].as_str().unwrap_or_default();
            prop_assert_eq!(slack.matches('<').count(), 1);
            let teams = shape(Preset::Teams, &e);
            prop_assert_eq!(teams["attachments"][0]["content"]["body"][0]["text"].as_str(), Some(title.as_str()));
        }
    }
}
