//! Twilio Programmable Voice: `POST /2010-04-01/Accounts/{sid}/Calls.json`, form-encoded, basic
//! auth with the Account SID and auth token, the call's instructions given inline as TwiML
//! (`Twiml`, at most 4,000 characters); `201` with the call, or an error JSON
//! `{"code": …, "message": …, "status": …}` as for messages.

use async_trait::async_trait;
use serde::Deserialize;

use super::{Call, Caller, MAX_TWIML, words};
use crate::channel::sms::{Answer, GatewayError, unreachable};
use crate::settings::Secret;

pub struct Twilio {
    name: String,
    url: String,
    account: String,
    token: Secret,
    caller: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Created {
    sid: String,
}

#[derive(Deserialize)]
struct Failure {
    code: Option<u32>,
    message: Option<String>,
}

/// Twilio's codes for a number that cannot be called at all: an invalid 'To' (21211), a number
/// that does not appear valid (21217). Not 21214 ('To' cannot be reached) nor 21215 (the
/// account's geographic permissions): another provider, with its own routes, may reach it.
const NUMBER_GONE: &[u32] = &[21211, 21217];

impl Twilio {
    pub fn new(
        name: &str,
        base_url: &url::Url,
        account: &str,
        token: Secret,
        caller: &str,
        http: reqwest::Client,
    ) -> Twilio {
        let account = account.trim().to_owned();
        Twilio {
            name: name.to_owned(),
            url: format!(
                "{}/2010-04-01/Accounts/{account}/Calls.json",
                base_url.as_str().trim_end_matches('/')
            ),
            account,
            token,
            caller: caller.to_owned(),
            http,
        }
    }
}

/// Text for XML: the five special characters escaped, and what XML 1.0 cannot carry at all
/// (control characters but tab and line ends, U+FFFE, U+FFFF) left out.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// The call's TwiML: the text and the invitation to press 1, inside a `<Gather>` so that a key
/// pressed while it is said counts; said once more if no key came; then goodbye. When the
/// whole would pass Twilio's 4,000 characters, the second time says the invitation alone, and
/// then the text is shortened.
pub fn twiml(call: &Call<'_>) -> String {
    let w = words(call.language);
    let gather = |url: &str, text: &str| {
        let say = |t: &str| {
            format!(
                r#"<Say language="{}" voice="{}">{}</Say>"#,
                w.locale,
                w.twilio_voice,
                xml_escape(t)
            )
        };
        format!(
            r#"<Gather input="dtmf" numDigits="1" timeout="{}" action="{}" method="POST">{}{}</Gather>"#,
            call.wait_for_key.as_secs().max(1),
            xml_escape(url),
            if text.is_empty() {
                String::new()
            } else {
                say(text)
            },
            say(w.press)
        )
    };
    let build = |text: &str, again: bool| {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response>{}{}<Say language="{}" voice="{}">{}</Say></Response>"#,
            gather(&call.key_urls[0], text),
            gather(&call.key_urls[1], if again { text } else { "" }),
            w.locale,
            w.twilio_voice,
            xml_escape(w.goodbye)
        )
    };
    let mut text: String = call.text.to_owned();
    loop {
        for again in [true, false] {
            let xml = build(&text, again);
            if xml.chars().count() <= MAX_TWIML || text.is_empty() {
                return xml;
            }
        }
        let keep = text.chars().count() * 3 / 4;
        text = text.chars().take(keep).collect();
    }
}

/// The TwiML answering a key: thanks when 1 was pressed and the confirmation recorded, and in
/// any case the end of the call.
pub fn after_key(language: &str, confirmed: bool) -> String {
    let w = words(language);
    let thanks = if confirmed {
        format!(
            r#"<Say language="{}" voice="{}">{}</Say>"#,
            w.locale,
            w.twilio_voice,
            xml_escape(w.thanks)
        )
    } else {
        String::new()
    };
    format!(r#"<?xml version="1.0" encoding="UTF-8"?><Response>{thanks}<Hangup/></Response>"#)
}

/// What Twilio said to a call it would not place.
fn classify(
    status: u16,
    code: Option<u32>,
    retry_after: Option<std::time::Duration>,
    reason: String,
) -> GatewayError {
    match (status, code) {
        // 20429: too many requests at once, never processed; a 429 is over the account's
        // calls per second.
        (429, _) | (_, Some(20429)) => GatewayError::Throttled {
            after: retry_after,
            reason,
        },
        (_, Some(c)) if NUMBER_GONE.contains(&c) => GatewayError::NumberGone(reason),
        (401 | 403, _) | (_, Some(20003)) => GatewayError::Credentials(reason),
        (400..=499, _) => GatewayError::Refused(reason),
        _ => GatewayError::Unavailable(reason),
    }
}

#[async_trait]
impl Caller for Twilio {
    async fn call(&self, call: &Call<'_>) -> Result<String, GatewayError> {
        let ring = call.ring_for.as_secs().to_string();
        let twiml = twiml(call);
        let form = vec![
            ("To", call.to),
            ("From", self.caller.as_str()),
            ("Twiml", twiml.as_str()),
            ("StatusCallback", call.status_url),
            ("StatusCallbackMethod", "POST"),
            ("StatusCallbackEvent", "initiated"),
            ("StatusCallbackEvent", "ringing"),
            ("StatusCallbackEvent", "answered"),
            ("StatusCallbackEvent", "completed"),
            ("MachineDetection", "Enable"),
            ("Timeout", ring.as_str()),
        ];
        let resp = self
            .http
            .post(&self.url)
            .basic_auth(&self.account, Some(self.token.expose()))
            .form(&form)
            .send()
            .await
            .map_err(|e| unreachable(&self.name, &e))?;
        let answer = Answer::read(resp).await;
        if answer.status.is_success() {
            let created: Created = serde_json::from_str(&answer.body).map_err(|e| {
                GatewayError::Unavailable(format!("unexpected answer ({e}): {}", answer.excerpt()))
            })?;
            return Ok(created.sid);
        }
        let failure: Option<Failure> = serde_json::from_str(&answer.body).ok();
        let code = failure.as_ref().and_then(|f| f.code);
        let reason = match &failure {
            Some(f) => format!(
                "HTTP {} code {} {}",
                answer.status.as_u16(),
                code.map_or("-".into(), |c| c.to_string()),
                f.message.as_deref().unwrap_or("")
            ),
            None => format!("HTTP {}: {}", answer.status.as_u16(), answer.excerpt()),
        };
        Err(classify(
            answer.status.as_u16(),
            code,
            answer.retry_after,
            reason,
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;
    use quick_xml::events::Event;

    use super::*;

    fn call<'a>(text: &'a str, urls: &'a [String; 2]) -> Call<'a> {
        Call {
            to: "+393331234567",
            text,
            language: "it",
            status_url: "https://b.example/s?token=t&x=1",
            key_urls: urls,
            ring_for: Duration::from_secs(30),
            wait_for_key: Duration::from_secs(8),
        }
    }

    /// The `<Say>` texts and the `<Gather>`s' attributes, read back by an XML parser.
    fn read(xml: &str) -> (Vec<String>, Vec<Vec<(String, String)>>) {
        let mut reader = quick_xml::Reader::from_str(xml);
        let (mut says, mut gathers) = (Vec::new(), Vec::new());
        let mut in_say = false;
        loop {
            match reader.read_event().expect("well-formed XML") {
                Event::Start(e) if e.name().as_ref() == b"Say" => {
                    in_say = true;
                    says.push(String::new());
                }
                Event::End(e) if e.name().as_ref() == b"Say" => in_say = false,
                Event::Text(t) if in_say => {
                    let text = t.decode().expect("UTF-8");
                    says.last_mut()
                        .unwrap()
                        .push_str(&quick_xml::escape::unescape(&text).expect("entities"));
                }
                Event::GeneralRef(r) if in_say => {
                    let name = r.decode().expect("UTF-8");
                    let c = match name.as_ref() {
                        "amp" => "&",
                        "lt" => "<",
                        "gt" => ">",
                        "quot" => "\"",
                        "apos" => "'",
                        other => panic!("unexpected entity {other}"),
                    };
                    says.last_mut().unwrap().push_str(c);
                }
                Event::Start(e) if e.name().as_ref() == b"Gather" => gathers.push(
                    e.attributes()
                        .map(|a| {
                            let a = a.expect("attribute");
                            (
                                String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                    .expect("value")
                                    .into_owned(),
                            )
                        })
                        .collect(),
                ),
                Event::Eof => break,
                _ => {}
            }
        }
        (says, gathers)
    }

    #[test]
    fn the_text_is_said_in_italian_twice_inside_gathers_of_one_digit() {
        let urls = [
            "https://b.example/k?token=a&lang=it&round=1".to_owned(),
            "https://b.example/k?token=a&lang=it&round=2".to_owned(),
        ];
        let xml = twiml(&call("Guasto al CUP <regionale> & prenotazioni", &urls));
        // Twilio's default voice (`man`) does not speak Italian: the voice is named.
        assert!(xml.contains(r#"<Say language="it-IT" voice="Polly.Bianca">"#));
        assert!(!xml.contains(r#"<Say language="it-IT">"#));
        assert!(after_key("it", true).contains(r#"voice="Polly.Bianca""#));
        assert!(after_key("en", true).contains(r#"<Say language="en-GB" voice="Polly.Amy">"#));
        let (says, gathers) = read(&xml);
        assert_eq!(says[0], "Guasto al CUP <regionale> & prenotazioni");
        assert_eq!(
            says[1],
            "Premi 1 per confermare di aver ricevuto il messaggio."
        );
        assert_eq!(says[2], says[0]);
        assert_eq!(gathers.len(), 2);
        for (g, url) in gathers.iter().zip(&urls) {
            assert!(g.contains(&("numDigits".into(), "1".into())));
            assert!(g.contains(&("action".into(), url.clone())));
            assert!(g.contains(&("method".into(), "POST".into())));
        }
    }

    #[test]
    fn a_long_text_is_said_once_and_shortened_within_twilios_limit() {
        let urls = [
            "https://b.example/1".to_owned(),
            "https://b.example/2".to_owned(),
        ];
        let text = "&".repeat(3000);
        let xml = twiml(&call(&text, &urls));
        assert!(xml.chars().count() <= MAX_TWIML);
        let (says, gathers) = read(&xml);
        assert!(says[0].chars().all(|c| c == '&') && !says[0].is_empty());
        assert_eq!(gathers.len(), 2);
    }

    #[test]
    fn answers_are_classified_as_twilio_documents_them() {
        let r = || "r".to_owned();
        assert!(matches!(
            classify(429, None, None, r()),
            GatewayError::Throttled { .. }
        ));
        assert!(matches!(
            classify(400, Some(20429), None, r()),
            GatewayError::Throttled { .. }
        ));
        assert!(matches!(
            classify(400, Some(21211), None, r()),
            GatewayError::NumberGone(_)
        ));
        assert!(matches!(
            classify(400, Some(21214), None, r()),
            GatewayError::Refused(_)
        ));
        assert!(matches!(
            classify(400, Some(21215), None, r()),
            GatewayError::Refused(_)
        ));
        assert!(matches!(
            classify(401, Some(20003), None, r()),
            GatewayError::Credentials(_)
        ));
        assert!(matches!(
            classify(503, None, None, r()),
            GatewayError::Unavailable(_)
        ));
    }

    proptest! {
        #[test]
        fn any_text_is_said_as_written_in_well_formed_twiml(text in crate::hostile::text()) {
            let urls = [
                format!("https://b.example/k?token={}&round=1", text.len()),
                "https://b.example/k?round=2&x=<\"'>".to_owned(),
            ];
            let said = super::super::spoken(&text);
            let xml = twiml(&call(&said, &urls));
            prop_assert!(xml.chars().count() <= MAX_TWIML);
            let (says, gathers) = read(&xml);
            if !said.is_empty() {
                prop_assert!(said.starts_with(&says[0]));
            }
            prop_assert_eq!(gathers.len(), 2);
            prop_assert!(gathers[1].contains(&("action".into(), urls[1].clone())));
        }
    }
}
