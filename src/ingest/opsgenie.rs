//! Opsgenie's Alert API, which tools with an Opsgenie integration speak: create
//! (`POST /v2/alerts`, `{message, alias, description, priority, tags, details, entity, source,
//! responders, …}`) and close (`POST /v2/alerts/{identifier}/close`).
//!
//! The alias is the alert's identity, as in Opsgenie's de-duplication: a create fires it, a
//! close resolves it. A create without an alias is identified by its message. The priority folds
//! into a severity (`P1` critical, `P2` major, `P3` and `P4` warning, `P5` info; `P3` when
//! absent); the service is `details.service` when the sender sets one, else `entity`, else
//! `source`; `entity`, `source` and the tags (`tags`, comma-separated) are labels, `details` and
//! `description` annotations. Responders, teams, actions, notes and users are read past.

use serde_json::Value;

use super::json::{Obj, kind, scalar};
use super::{IngestError, Parsed};
use crate::domain::{Labels, RawSignal, SignalStatus};

/// Opsgenie's limits.
const MAX_MESSAGE: usize = 130;
const MAX_ALIAS: usize = 512;
const MAX_DESCRIPTION: usize = 15_000;
const MAX_ENTITY: usize = 512;
const MAX_SOURCE: usize = 100;

fn truncated(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => text[..cut].to_owned(),
        None => text,
    }
}

/// The alias an identifier of a close names: Banditore gives every alert its alias as its id,
/// so `id` (Opsgenie's default) and `alias` both name it; a tiny id Banditore never hands out.
pub fn closing_alias(
    identifier: &str,
    identifier_type: Option<&str>,
) -> Result<String, IngestError> {
    match identifier_type.unwrap_or("id") {
        "id" | "alias" => {}
        "tiny" => {
            return Err(IngestError::field(
                "identifierType",
                "`tiny` ids are not given by Banditore; close by alias",
            ));
        }
        other => {
            return Err(IngestError::field(
                "identifierType",
                format!("`{other}` is not one of id, alias, tiny"),
            ));
        }
    }
    if identifier.trim().is_empty() {
        return Err(IngestError::field("identifier", "must not be empty"));
    }
    if identifier.chars().count() > MAX_ALIAS {
        return Err(IngestError::field(
            "identifier",
            format!("is longer than {MAX_ALIAS} characters"),
        ));
    }
    Ok(identifier.to_owned())
}

/// A close of the alert with `alias`: its resolution. The body (`user`, `source`, `note`) is
/// optional and, when given, only checked to be an object.
pub fn parse_close(alias: String, body: Option<&Value>) -> Result<Parsed, IngestError> {
    if let Some(v) = body
        && !v.is_null()
    {
        Obj::root(v, "")?;
    }
    Ok(Parsed {
        signals: vec![RawSignal {
            fingerprint: Some(alias),
            status: Some(SignalStatus::Resolved),
            ..RawSignal::default()
        }],
        notes: Vec::new(),
    })
}

/// A create (`POST /v2/alerts`).
pub fn parse_create(value: &Value) -> Result<Parsed, IngestError> {
    let root = Obj::root(value, "")?;
    let message = root
        .str("message")?
        .ok_or_else(|| IngestError::field("message", "missing: an alert needs a message"))?;
    let message = truncated(message, MAX_MESSAGE);
    let alias = root.str("alias")?;
    if let Some(a) = &alias
        && a.chars().count() > MAX_ALIAS
    {
        return Err(IngestError::field(
            "alias",
            format!("is longer than {MAX_ALIAS} characters"),
        ));
    }
    let priority = match root.str("priority")? {
        None => "P3".to_owned(),
        Some(p) if matches!(p.as_str(), "P1" | "P2" | "P3" | "P4" | "P5") => p,
        Some(p) => {
            return Err(IngestError::field(
                "priority",
                format!("`{p}` is not one of P1, P2, P3, P4, P5"),
            ));
        }
    };
    let severity = match priority.as_str() {
        "P1" => "critical",
        "P2" => "major",
        "P5" => "info",
        _ => "warning",
    };
    let entity = root.str("entity")?.map(|e| truncated(e, MAX_ENTITY));
    let source = root.str("source")?.map(|s| truncated(s, MAX_SOURCE));
    let mut labels = Labels::new();
    labels.insert("priority".into(), priority);
    if let Some(e) = &entity {
        labels.insert("entity".into(), e.clone());
    }
    if let Some(s) = &source {
        labels.insert("source".into(), s.clone());
    }
    if let Some(tags) = root.array("tags")? {
        let mut words = Vec::new();
        for (i, tag) in tags.iter().enumerate() {
            match scalar(tag) {
                Some(t) if !t.trim().is_empty() => words.push(t),
                Some(_) => {}
                None => {
                    return Err(IngestError::field(
                        format!("tags[{i}]"),
                        format!("expected text, found {}", kind(tag)),
                    ));
                }
            }
        }
        if !words.is_empty() {
            labels.insert("tags".into(), words.join(","));
        }
    }
    let mut annotations = root.labels("details")?;
    let service = annotations
        .get("service")
        .filter(|s| !s.trim().is_empty())
        .cloned()
        .or(entity)
        .or(source);
    if let Some(d) = root.str("description")? {
        annotations.insert("description".into(), truncated(d, MAX_DESCRIPTION));
    }
    let fingerprint = alias.unwrap_or_else(|| format!("message:{message}"));
    Ok(Parsed {
        signals: vec![RawSignal {
            fingerprint: Some(fingerprint),
            status: Some(SignalStatus::Firing),
            severity: Some(severity.into()),
            service,
            labels,
            annotations,
            summary: Some(message),
            ..RawSignal::default()
        }],
        notes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::signal::NormalizeRules;
    use crate::domain::{Severity, Source};
    use crate::ingest::json::decode;

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/tests/fixtures/ingest/opsgenie/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        decode(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn the_documentations_create_maps_onto_a_signal() {
        let parsed = parse_create(&fixture("create.json")).unwrap();
        let signal = parsed.signals[0].clone().normalize(
            Source::Opsgenie,
            &NormalizeRules::default(),
            jiff::Timestamp::UNIX_EPOCH,
        );
        assert_eq!(
            signal.fingerprint,
            "opsgenie:Life is too short for no alias"
        );
        assert_eq!(signal.summary, "An example alert message");
        assert_eq!(signal.severity, Severity::Critical);
        assert_eq!(signal.service, "An example entity");
        assert_eq!(signal.labels["tags"], "OverwriteQuietHours,Critical");
        assert_eq!(signal.annotations["key1"], "value1");
        assert_eq!(
            signal.annotations["description"],
            "Every alert needs a description"
        );
    }

    #[test]
    fn a_close_resolves_the_alias_and_refuses_what_banditore_never_gave() {
        let alias = closing_alias("Life is too short for no alias", Some("alias")).unwrap();
        let parsed = parse_close(alias, Some(&fixture("close.json"))).unwrap();
        assert_eq!(parsed.signals[0].status, Some(SignalStatus::Resolved));
        assert_eq!(
            parsed.signals[0].fingerprint.as_deref(),
            Some("Life is too short for no alias")
        );
        assert!(
            closing_alias("x", None).is_ok(),
            "id, the default, is the alias"
        );
        let err = closing_alias("123", Some("tiny")).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("identifierType"));
        let err = closing_alias("x", Some("name")).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("identifierType"));
        let err = parse_close("x".into(), Some(&serde_json::json!([1]))).unwrap_err();
        assert!(err.field.is_none());
    }

    #[test]
    fn limits_and_refusals_follow_opsgenie() {
        let long = "é".repeat(200);
        let parsed = parse_create(&serde_json::json!({"message": long})).unwrap();
        assert_eq!(
            parsed.signals[0].summary.as_ref().unwrap().chars().count(),
            130
        );
        assert_eq!(
            parsed.signals[0].severity.as_deref(),
            Some("warning"),
            "P3 by default"
        );
        let cases = [
            (serde_json::json!({}), "message"),
            (serde_json::json!({"message": "  "}), "message"),
            (
                serde_json::json!({"message": "m", "alias": "a".repeat(513)}),
                "alias",
            ),
            (
                serde_json::json!({"message": "m", "priority": "P0"}),
                "priority",
            ),
            (serde_json::json!({"message": "m", "tags": "a,b"}), "tags"),
            (
                serde_json::json!({"message": "m", "tags": [{"a": 1}]}),
                "tags[0]",
            ),
            (
                serde_json::json!({"message": "m", "details": {"a": [1]}}),
                "details.a",
            ),
        ];
        for (body, field) in cases {
            let err = parse_create(&body).unwrap_err();
            assert_eq!(err.field.as_deref(), Some(field), "{body}: {err}");
        }
    }
}
