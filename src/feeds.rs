//! Feeds of the approved public statements: Atom (RFC 4287), global and per service, in the
//! reader's language, and CAP 1.2 (one alert per approved statement, `Update` and `Cancel`
//! referencing the alerts before it, one `<info>` per language, headed by that language's public
//! title) with an Atom index of the alerts in force.

use std::collections::BTreeMap;
use std::fmt::Write;

use jiff::Timestamp;

use crate::board::{Board, PublicIncident, Statement};
use crate::domain::Severity;

/// Escapes text for XML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 does not allow are dropped: C0 controls but tab and line ends,
            // and the noncharacters U+FFFE and U+FFFF (a Rust char is never a surrogate).
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => {}
            '\u{fffe}' | '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

/// CAP times: an offset, never `Z`; UTC is written `-00:00`, as the standard requires.
pub fn cap_time(t: Timestamp) -> String {
    let utc = t.to_zoned_datetime(jiff::tz::TimeZone::UTC);
    format!("{}-00:00", utc.strftime("%Y-%m-%dT%H:%M:%S"))
}

fn atom_time(t: Timestamp) -> String {
    let utc = t.to_zoned_datetime(jiff::tz::TimeZone::UTC);
    utc.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Where the feeds and pages are, and who sends the alerts.
pub struct Site<'a> {
    pub base: &'a str,
    pub title: &'a str,
    /// CAP `sender`: no spaces, commas, `<` or `&`.
    pub sender: &'a str,
    /// CAP `areaDesc`.
    pub area: &'a str,
}

/// The Atom feed of the statements, newest first; only those about `service` when given.
pub fn atom(board: &Board, site: &Site, lang: &str, service: Option<&str>) -> String {
    let mut entries: Vec<(&PublicIncident, &Statement)> = board
        .incidents
        .iter()
        .filter(|i| service.is_none_or(|s| i.services.iter().any(|x| x == s)))
        .flat_map(|i| {
            let mine: Vec<&Statement> =
                i.statements.iter().filter(|s| s.language == lang).collect();
            let chosen = if mine.is_empty() {
                i.statements.iter().collect()
            } else {
                mine
            };
            chosen.into_iter().map(move |s| (i, s))
        })
        .collect();
    entries.sort_by_key(|(_, s)| std::cmp::Reverse(s.at));
    entries.truncate(100);
    let updated = entries
        .first()
        .map(|(_, s)| s.at)
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let path = match service {
        Some(s) => format!("/status/services/{s}/feed.atom"),
        None => "/status/feed.atom".to_owned(),
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\" xml:lang=\"{}\">\n<id>{}{}</id>\n<title>{}</title>\n<updated>{}</updated>\n<link rel=\"self\" href=\"{}{}\"/>\n<link rel=\"alternate\" type=\"text/html\" href=\"{}/status\"/>\n<author><name>{}</name></author>\n",
        esc(lang),
        esc(site.base),
        esc(&path),
        esc(site.title),
        atom_time(updated),
        esc(site.base),
        esc(&path),
        esc(site.base),
        esc(site.title),
    );
    for (incident, s) in entries {
        let link = format!("{}/status/incidents/{}", site.base, incident.id);
        let _ = write!(
            out,
            "<entry>\n<id>{}#{}-{}</id>\n<title>{}</title>\n<updated>{}</updated>\n<link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>\n<link rel=\"related\" type=\"application/cap+xml\" href=\"{}/status/cap/{}.xml\"/>\n<content type=\"text\">{}</content>\n</entry>\n",
            esc(&link),
            s.draft,
            esc(&s.language),
            esc(&s.title),
            atom_time(s.at),
            esc(&link),
            esc(site.base),
            s.draft,
            esc(&s.text),
        );
    }
    out.push_str("</feed>\n");
    out
}

fn identifier(site: &Site, incident: i64, draft: i64) -> String {
    let host = site
        .base
        .split("://")
        .nth(1)
        .unwrap_or(site.base)
        .split(['/', ':'])
        .next()
        .unwrap_or("banditore");
    format!("{host}.incident-{incident}.statement-{draft}")
}

/// The statements of one approved draft, one per language.
fn drafts(incident: &PublicIncident) -> BTreeMap<i64, Vec<&Statement>> {
    let mut by: BTreeMap<i64, Vec<&Statement>> = BTreeMap::new();
    for s in &incident.statements {
        by.entry(s.draft).or_default().push(s);
    }
    by
}

fn cap_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "Severe",
        Severity::Major => "Moderate",
        _ => "Minor",
    }
}

fn cap_language(lang: &str) -> &str {
    match lang {
        "it" => "it-IT",
        "en" => "en-US",
        other => other,
    }
}

/// The CAP 1.2 alert for one approved statement (draft), or `None` if the board has no such.
pub fn cap_alert(board: &Board, site: &Site, draft: i64) -> Option<String> {
    let incident = board
        .incidents
        .iter()
        .find(|i| i.statements.iter().any(|s| s.draft == draft))?;
    let by_draft = drafts(incident);
    let statements = by_draft.get(&draft)?;
    let first = statements.first()?;
    let earlier: Vec<String> = by_draft
        .iter()
        .filter(|(d, _)| **d < draft)
        .filter_map(|(d, s)| {
            let at = s.first()?.at;
            Some(format!(
                "{},{},{}",
                site.sender,
                identifier(site, incident.id, *d),
                cap_time(at)
            ))
        })
        .collect();
    let msg_type = if earlier.is_empty() {
        "Alert"
    } else if first.kind == "resolved" {
        "Cancel"
    } else {
        "Update"
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">\n<identifier>{}</identifier>\n<sender>{}</sender>\n<sent>{}</sent>\n<status>Actual</status>\n<msgType>{msg_type}</msgType>\n<scope>Public</scope>\n",
        esc(&identifier(site, incident.id, draft)),
        esc(site.sender),
        cap_time(first.at),
    );
    if !earlier.is_empty() {
        let _ = writeln!(out, "<references>{}</references>", esc(&earlier.join(" ")));
    }
    let _ = writeln!(out, "<incidents>incident-{}</incidents>", incident.id);
    let resolved = first.kind == "resolved";
    for s in statements {
        let (event, web) = if s.language == "it" {
            ("Disservizio dei servizi digitali", "")
        } else {
            ("Digital service outage", "?lang=en")
        };
        let _ = write!(
            out,
            "<info>\n<language>{}</language>\n<category>Infra</category>\n<event>{event}</event>\n<responseType>{}</responseType>\n<urgency>{}</urgency>\n<severity>{}</severity>\n<certainty>Observed</certainty>\n<onset>{}</onset>\n<senderName>{}</senderName>\n<headline>{}</headline>\n<description>{}</description>\n<web>{}/status/incidents/{}{web}</web>\n<area>\n<areaDesc>{}</areaDesc>\n</area>\n</info>\n",
            cap_language(&s.language),
            if resolved { "AllClear" } else { "Monitor" },
            if resolved { "Past" } else { "Immediate" },
            cap_severity(incident.severity),
            cap_time(incident.opened_at),
            esc(site.title),
            esc(&s.title),
            esc(&s.text),
            esc(site.base),
            incident.id,
            esc(site.area),
        );
    }
    out.push_str("</alert>\n");
    Some(out)
}

/// The Atom index of the CAP alerts in force: each open incident's latest alert. A resolved
/// incident's alerts were cancelled and leave the index (their documents are still served).
pub fn cap_index(board: &Board, site: &Site) -> String {
    let mut latest: Vec<(&PublicIncident, &Statement)> = board
        .incidents
        .iter()
        .filter(|i| !i.resolved)
        .filter_map(|i| {
            i.statements
                .iter()
                .max_by_key(|s| (s.at, s.draft))
                .map(|s| (i, s))
        })
        .collect();
    latest.sort_by_key(|(_, s)| std::cmp::Reverse(s.at));
    let updated = latest
        .first()
        .map(|(_, s)| s.at)
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let mut out = String::new();
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n<id>{}/status/cap.atom</id>\n<title>{} (CAP)</title>\n<updated>{}</updated>\n<link rel=\"self\" href=\"{}/status/cap.atom\"/>\n<author><name>{}</name></author>\n",
        esc(site.base),
        esc(site.title),
        atom_time(updated),
        esc(site.base),
        esc(site.title),
    );
    for (incident, s) in latest {
        let url = format!("{}/status/cap/{}.xml", site.base, s.draft);
        let _ = write!(
            out,
            "<entry>\n<id>{}</id>\n<title>{}</title>\n<updated>{}</updated>\n<link rel=\"alternate\" type=\"application/cap+xml\" href=\"{}\"/>\n<category term=\"Infra\"/>\n<summary>{}</summary>\n</entry>\n",
            esc(&url),
            esc(&s.title),
            atom_time(s.at),
            esc(&url),
            esc(&format!("incident-{}", incident.id)),
        );
    }
    out.push_str("</feed>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Whatever a statement holds, the escaped text has only characters XML 1.0 allows and
        /// no markup of its own.
        #[test]
        fn escaped_text_is_always_xml_character_data(text in crate::hostile::text()) {
            let out = esc(&text);
            let allowed = |c: char| matches!(c, '\t' | '\n' | '\r')
                || ('\u{20}'..='\u{d7ff}').contains(&c)
                || ('\u{e000}'..='\u{fffd}').contains(&c)
                || c >= '\u{10000}';
            proptest::prop_assert!(out.chars().all(allowed), "{out:?}");
            proptest::prop_assert!(!out.contains(['<', '>', '"', '\'']), "{out:?}");
        }
    }

    #[test]
    fn cap_times_have_an_offset_never_z() {
        let t: Timestamp = "2023-07-19T09:14:00Z".parse().unwrap();
        assert_eq!(cap_time(t), "2023-07-19T09:14:00-00:00");
        assert_eq!(atom_time(t), "2023-07-19T09:14:00Z");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;");
    }
}
