//! Prometheus Alertmanager's webhook (`"version": "4"`).

use serde_json::Value;

use super::json::{Obj, url};
use super::{IngestError, Parsed};
use crate::domain::{RawSignal, SignalStatus};

pub fn parse(value: &Value) -> Result<Parsed, IngestError> {
    let root = Obj::root(value, "")?;
    let alerts = root.array("alerts")?.ok_or_else(|| {
        IngestError::field(
            "alerts",
            "missing: an Alertmanager webhook carries an `alerts` array",
        )
    })?;
    let mut parsed = Parsed::default();
    for (i, alert) in alerts.iter().enumerate() {
        let path = format!("alerts[{i}]");
        parsed.signals.push(parse_alert(Obj::root(alert, &path)?)?);
    }
    if let Some(truncated) = root
        .get("truncatedAlerts")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
    {
        parsed.notes.push(format!(
            "{truncated} alerts were left out by the sender's max_alerts; raise it so Banditore sees them all"
        ));
    }
    Ok(parsed)
}

/// One alert of an Alertmanager or Grafana body.
pub fn parse_alert(alert: Obj<'_>) -> Result<RawSignal, IngestError> {
    let status = match alert.str("status")? {
        None => None,
        Some(word) => Some(SignalStatus::from_word(&word).ok_or_else(|| {
            IngestError::field(
                alert.field("status"),
                format!("`{word}` is neither firing nor resolved"),
            )
        })?),
    };
    Ok(RawSignal {
        fingerprint: alert.str("fingerprint")?,
        status,
        labels: alert.labels("labels")?,
        annotations: alert.labels("annotations")?,
        starts_at: alert.time("startsAt")?,
        ends_at: alert.time("endsAt")?,
        url: url(alert.str("generatorURL")?),
        ..RawSignal::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::json::decode;

    fn fixture(name: &str) -> Parsed {
        let path = format!(
            "{}/tests/fixtures/ingest/alertmanager/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        parse(&decode(&std::fs::read(path).unwrap()).unwrap()).unwrap()
    }

    #[test]
    fn firing_with_go_escapes_and_offsets() {
        let p = fixture("firing.json");
        assert_eq!(p.signals.len(), 2);
        let a = &p.signals[0];
        assert_eq!(a.status, Some(SignalStatus::Firing));
        assert_eq!(a.ends_at, None, "Go's zero time is no end");
        assert!(a.fingerprint.is_some());
        assert!(a.starts_at.is_some());
        assert!(p.signals.iter().any(|s| {
            s.annotations
                .values()
                .any(|v| v.contains('&') || v.contains('<'))
        }));
        assert_eq!(
            a.labels.get("service").map(String::as_str),
            Some("cup-backend")
        );
    }

    #[test]
    fn resolved_and_mixed() {
        assert!(
            fixture("resolved.json")
                .signals
                .iter()
                .all(|s| s.status == Some(SignalStatus::Resolved))
        );
        let mixed = fixture("mixed.json");
        let statuses: Vec<_> = mixed.signals.iter().map(|s| s.status).collect();
        assert!(statuses.contains(&Some(SignalStatus::Firing)));
        assert!(statuses.contains(&Some(SignalStatus::Resolved)));
        assert_eq!(mixed.notes.len(), 1, "truncated alerts are reported");
    }

    #[test]
    fn legacy_without_fingerprint_or_status() {
        let p = fixture("legacy-no-fingerprint.json");
        assert_eq!(p.signals.len(), 2);
        assert!(p.signals.iter().all(|s| s.fingerprint.is_none()));
        assert_eq!(p.signals[1].status, None);
        assert_eq!(p.signals[1].ends_at, None);
        assert_eq!(p.signals[1].url, None);
    }

    #[test]
    fn unicode_labels_survive() {
        let p = fixture("unicode.json");
        let all: String = p
            .signals
            .iter()
            .flat_map(|s| s.labels.values().cloned())
            .collect();
        assert!(
            all.contains("放射科") || all.contains("ペルージャ"),
            "{all}"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse(&serde_json::json!({"version": "4"})).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("alerts"));
        let err = parse(
            &serde_json::json!({"alerts": [{"labels": {"a": "b"}}, {"startsAt": "yesterday"}]}),
        )
        .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("alerts[1].startsAt"));
        let err = parse(&serde_json::json!({"alerts": [{"labels": {"a": ["x"]}}]})).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("alerts[0].labels.a"));
        let err = parse(&serde_json::json!({"alerts": [{"status": "pending"}]})).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("alerts[0].status"));
        let err = parse(&serde_json::json!([1])).unwrap_err();
        assert!(err.message.contains("expected a JSON object"));
    }
}
