//! Alertmanager's own API, `POST /api/v2/alerts`, as Prometheus and the other rule evaluators
//! (Thanos and Mimir rulers, vmalert, Loki's ruler) post to it: a JSON array of postable
//! alerts, each with `labels` (at least one), `annotations`, `startsAt`, `endsAt` and
//! `generatorURL`, and no status. A firing alert's `endsAt` lies a few evaluation intervals
//! ahead and is moved forward by every re-send; one whose `endsAt` has passed is resolved.
//! Normalization reads the status from `endsAt`, and the engine expires the alert when no
//! re-send comes in time (see [`crate::domain::Signal::lease`]).

use serde_json::Value;

use super::alertmanager::parse_alert;
use super::json::{Obj, kind};
use super::{IngestError, Parsed};

/// The body's alerts, all of them valid, or the first refusal.
pub fn parse(value: &Value) -> Result<Parsed, IngestError> {
    let (parsed, refused) = parse_valid(value)?;
    match refused.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(parsed),
    }
}

/// The body's valid alerts, and why each invalid one is refused. As Alertmanager, which makes
/// "a best effort to insert all alerts that are valid" and then answers 400: an alert that
/// fails its validation (no label, an end before its start) costs only itself. A body that is
/// not an array of alerts, or whose fields have the wrong types, is refused whole, as
/// Alertmanager refuses a body its schema does not read.
pub fn parse_valid(value: &Value) -> Result<(Parsed, Vec<IngestError>), IngestError> {
    let Value::Array(alerts) = value else {
        return Err(IngestError::body(format!(
            "expected a JSON array of alerts, found {}",
            kind(value)
        )));
    };
    let mut parsed = Parsed::default();
    let mut refused = Vec::new();
    for (i, alert) in alerts.iter().enumerate() {
        let path = format!("[{i}]");
        let obj = Obj::root(alert, &path)?;
        let signal = parse_alert(obj)?;
        // As Alertmanager's validation: an alert is its label set.
        if signal.labels.is_empty() {
            refused.push(IngestError::field(
                obj.field("labels"),
                "at least one label pair required",
            ));
            continue;
        }
        if let (Some(start), Some(end)) = (signal.starts_at, signal.ends_at)
            && end < start
        {
            refused.push(IngestError::field(
                obj.field("endsAt"),
                "start time must be before end time",
            ));
            continue;
        }
        parsed.signals.push(signal);
    }
    Ok((parsed, refused))
}

#[cfg(test)]
mod tests {
    use jiff::{SignedDuration, Timestamp};

    use super::*;
    use crate::domain::signal::{NormalizeRules, RESOLVE_TIMEOUT};
    use crate::domain::{SignalStatus, Source};
    use crate::ingest::json::decode;

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/tests/fixtures/ingest/prometheus/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        decode(&std::fs::read(path).unwrap()).unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn prometheus_firing_alerts_fire_until_their_end_and_expire_after_it() {
        let parsed = parse(&fixture("firing.json")).unwrap();
        assert_eq!(parsed.signals.len(), 2);
        // Received a moment after Prometheus evaluated the rule.
        let received = at("2026-11-26T09:14:03.5Z");
        let signal = parsed.signals[0].clone().normalize(
            Source::Prometheus,
            &NormalizeRules::default(),
            received,
        );
        assert_eq!(signal.status, SignalStatus::Firing);
        assert_eq!(signal.service, "cup-backend");
        assert_eq!(signal.summary, "CUP backend unreachable");
        assert_eq!(signal.fingerprint.split_once(':').unwrap().0, "prometheus");
        assert!(signal.url.as_deref().unwrap().contains("/graph?g0.expr="));
        assert_eq!(
            signal.lease(received),
            Some(SignedDuration::from_millis(239_500)),
            "endsAt is 4 minutes after the evaluation"
        );
        // The same alert through an Alertmanager webhook does not expire: its sender resolves.
        let webhook = parsed.signals[0].clone().normalize(
            Source::Alertmanager,
            &NormalizeRules::default(),
            received,
        );
        assert_eq!(webhook.lease(received), None);
    }

    #[test]
    fn an_alert_past_its_end_is_resolved_and_one_without_an_end_gets_the_resolve_timeout() {
        let parsed = parse(&fixture("resolved.json")).unwrap();
        let now = at("2026-11-26T09:30:00Z");
        let rules = NormalizeRules::default();
        let resolved = parsed.signals[0]
            .clone()
            .normalize(Source::Prometheus, &rules, now);
        assert_eq!(resolved.status, SignalStatus::Resolved);
        assert_eq!(resolved.lease(now), None);
        let no_end = parsed.signals[1]
            .clone()
            .normalize(Source::Prometheus, &rules, now);
        assert_eq!(no_end.status, SignalStatus::Firing);
        assert_eq!(no_end.lease(now), Some(RESOLVE_TIMEOUT));
    }

    #[test]
    fn refusals_name_the_field_as_alertmanager_would() {
        let err = parse(&serde_json::json!({"alerts": []})).unwrap_err();
        assert!(err.message.contains("JSON array"), "{err}");
        let err = parse(&serde_json::json!([{"labels": {}}])).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("[0].labels"));
        let err = parse(&serde_json::json!([
            {"labels": {"alertname": "A"}},
            {"labels": {"alertname": "B"}, "startsAt": "2026-11-26T10:00:00Z", "endsAt": "2026-11-26T09:00:00Z"}
        ]))
        .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("[1].endsAt"));
        let (parsed, refused) = parse_valid(&serde_json::json!([
            {"labels": {}},
            {"labels": {"alertname": "B"}},
            {"labels": {"alertname": "C"}, "startsAt": "2026-11-26T10:00:00Z", "endsAt": "2026-11-26T09:00:00Z"}
        ]))
        .unwrap();
        assert_eq!(parsed.signals.len(), 1, "the valid alert is taken");
        let refused: Vec<_> = refused.iter().map(|e| e.field.as_deref()).collect();
        assert_eq!(refused, [Some("[0].labels"), Some("[2].endsAt")]);
        let err = parse(&serde_json::json!([{"labels": {"a": {"b": 1}}}])).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("[0].labels.a"));
        assert!(parse(&serde_json::json!([])).unwrap().signals.is_empty());
    }
}
