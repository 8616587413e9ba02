//! Banditore's generic JSON format, for senders that build their own body (Zabbix, Datadog,
//! Gatus, scripts):
//!
//! ```json
//! {"signals": [{"fingerprint": "…", "status": "firing", "service": "cup-backend",
//!   "component": "db", "severity": "critical", "summary": "…", "description": "…",
//!   "labels": {"area": "umbria"}, "annotations": {}, "tags": "env:prod,team:sanita",
//!   "starts_at": "2026-11-26T09:14:03Z", "ends_at": null, "url": "https://…"}]}
//! ```
//!
//! A single signal object without the `signals` wrapper is accepted too. Every field but
//! `summary` or `service` is optional; times may be RFC 3339 or epoch seconds/milliseconds.
//! Without a `status` Banditore knows, the monitor's own status field (Datadog's
//! `alert_transition`, Zabbix's `event_value`, …) or the status tag leading its title decides.

use serde_json::Value;

use super::json::{Obj, scalar, url};
use super::{IngestError, Parsed};
use crate::domain::{Labels, RawSignal, SignalStatus};

pub fn parse(value: &Value) -> Result<Parsed, IngestError> {
    let root = Obj::root(value, "")?;
    let mut parsed = Parsed::default();
    match root.array("signals")? {
        Some(list) => {
            for (i, item) in list.iter().enumerate() {
                let path = format!("signals[{i}]");
                parsed
                    .signals
                    .push(parse_standalone(Obj::root(item, &path)?)?);
            }
        }
        None => parsed.signals.push(parse_standalone(root)?),
    }
    Ok(parsed)
}

/// A signal that must say by itself what it is about.
fn parse_standalone(o: Obj<'_>) -> Result<RawSignal, IngestError> {
    let signal = parse_signal(o, None)?;
    if signal.summary.is_none() && signal.service.is_none() && signal.labels.is_empty() {
        return Err(IngestError::field(
            o.field("summary"),
            "missing: give at least a summary, a service or some labels",
        ));
    }
    Ok(signal)
}

/// Fields in which monitors say firing or resolved besides `status`, in the order they are
/// believed: Datadog's `$ALERT_TRANSITION`, Zabbix's `{EVENT.VALUE}`, `{EVENT.STATUS}` and
/// `{TRIGGER.STATUS}` (under the names Zabbix's own media types give them), the `state` of
/// Grafana's legacy alerting webhook, and Datadog's `$ALERT_TYPE`. Datadog's `$ALERT_STATUS` is a
/// sentence, not a status, and is not among them.
const DIALECT_STATUS_FIELDS: [&str; 6] = [
    "alert_transition",
    "event_value",
    "event_status",
    "trigger_status",
    "state",
    "alert_type",
];

/// One signal in the generic shape (also the `data` of a CloudEvent, whose type may give the
/// `fallback` status). Its status is the first that says firing or resolved of: `status`, the
/// monitors' own status fields (also under `annotations`), the status tag leading the title, and
/// `fallback`; a `status` that nothing else makes sense of is refused.
pub fn parse_signal(o: Obj<'_>, fallback: Option<SignalStatus>) -> Result<RawSignal, IngestError> {
    let mut labels = o.labels("labels")?;
    merge_tags(&o, &mut labels)?;
    let mut annotations = o.labels("annotations")?;
    if let Some(description) = o.str("description")? {
        annotations.insert("description".into(), description);
    }
    let summary = o.str("summary")?.or(o.str("title")?).or(o.str("message")?);
    let word = o.str("status")?;
    let status = word
        .as_deref()
        .and_then(SignalStatus::from_word)
        .or_else(|| {
            DIALECT_STATUS_FIELDS.iter().find_map(|key| {
                let text = o
                    .get(key)
                    .and_then(scalar)
                    .or(annotations.get(*key).cloned())?;
                match *key {
                    "event_value" => match text.trim() {
                        "1" => Some(SignalStatus::Firing),
                        "0" => Some(SignalStatus::Resolved),
                        _ => None,
                    },
                    _ => SignalStatus::from_word(&text),
                }
            })
        })
        .or_else(|| summary.as_deref().and_then(SignalStatus::from_title))
        .or(fallback);
    if let (None, Some(word)) = (status, &word) {
        return Err(IngestError::field(
            o.field("status"),
            format!("`{word}` is not a status Banditore knows (use firing or resolved)"),
        ));
    }
    Ok(RawSignal {
        fingerprint: o.str("fingerprint")?,
        status,
        severity: o.str("severity")?,
        service: o.str("service")?,
        component: o.str("component")?,
        labels,
        annotations,
        summary,
        starts_at: o.time("starts_at")?,
        ends_at: o.time("ends_at")?,
        url: url(o.str("url")?),
    })
}

/// `tags` as `"k:v,k2:v2"` or `["k:v", …]` (also `k=v`), where a bare tag becomes
/// `name="true"`, or as an object (Grafana's legacy alerting webhook).
fn merge_tags(o: &Obj<'_>, labels: &mut Labels) -> Result<(), IngestError> {
    let items: Vec<String> = match o.get("tags") {
        None => return Ok(()),
        Some(Value::Object(_)) => {
            for (key, value) in o.labels("tags")? {
                labels.entry(key).or_insert(value);
            }
            return Ok(());
        }
        Some(Value::String(s)) => s.split(',').map(str::to_owned).collect(),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, v)| {
                scalar(v).ok_or_else(|| {
                    IngestError::field(format!("{}[{i}]", o.field("tags")), "expected text")
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(IngestError::field(
                o.field("tags"),
                "expected \"k:v,k2:v2\", an array of \"k:v\" or an object",
            ));
        }
    };
    for item in items {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (key, value) = match item.split_once([':', '=']) {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (item, "true"),
        };
        if !key.is_empty() {
            labels
                .entry(key.to_owned())
                .or_insert_with(|| value.to_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::json::decode;
    use serde_json::json;

    fn fixture(name: &str) -> Parsed {
        let path = format!(
            "{}/tests/fixtures/ingest/generic/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        parse(&decode(&std::fs::read(path).unwrap()).unwrap()).unwrap()
    }

    #[test]
    fn single_without_wrapper() {
        let p = fixture("single.json");
        assert_eq!(p.signals.len(), 1);
        assert_eq!(p.signals[0].status, Some(SignalStatus::Firing));
    }

    #[test]
    fn batch_with_epochs_tags_and_synonyms() {
        let p = fixture("batch.json");
        assert_eq!(p.signals.len(), 3);
        assert_eq!(p.signals[0].status, Some(SignalStatus::Firing));
        assert_eq!(
            p.signals[0].labels.get("area").map(String::as_str),
            Some("umbria")
        );
        assert_eq!(
            p.signals[0].starts_at.unwrap().to_string(),
            "2026-11-26T09:14:03Z"
        );
        assert_eq!(p.signals[1].status, Some(SignalStatus::Resolved));
        assert_eq!(
            p.signals[1].starts_at.unwrap().as_millisecond(),
            1795682400000
        );
        assert_eq!(p.signals[2].status, Some(SignalStatus::Resolved));
        assert_eq!(
            p.signals[2].labels.get("env").map(String::as_str),
            Some("prod")
        );
    }

    #[test]
    fn zabbix_and_datadog_templates() {
        let z = fixture("zabbix.json");
        let s = &z.signals[0];
        assert_eq!(s.labels.get("service").map(String::as_str), Some("cup"));
        assert_eq!(s.severity.as_deref(), Some("High"));
        assert_eq!(s.ends_at, None);
        assert!(s.annotations.contains_key("description"));
        let d = fixture("datadog.json");
        assert_eq!(d.signals[0].status, Some(SignalStatus::Firing));
        let r = fixture("datadog-recovered.json");
        assert_eq!(r.signals[0].status, Some(SignalStatus::Resolved));
        assert_eq!(r.signals[0].fingerprint, d.signals[0].fingerprint);
    }

    /// Each monitor's documented status field, and the status tag its titles carry, decide when
    /// `status` is absent or says nothing; a `status` Banditore knows always wins.
    #[test]
    fn dialect_status_fields_decide_when_status_says_nothing() {
        use SignalStatus::{Firing, Resolved};
        let cases = [
            // Datadog: $ALERT_TRANSITION, $ALERT_TYPE, and $EVENT_TITLE/$ALERT_TITLE prefixes.
            (
                json!({"summary": "x", "alert_transition": "Recovered"}),
                Some(Resolved),
            ),
            (
                json!({"summary": "x", "alert_transition": "Triggered"}),
                Some(Firing),
            ),
            (
                json!({"summary": "x", "alert_transition": "Re-Triggered"}),
                Some(Firing),
            ),
            (
                json!({"summary": "x", "alert_transition": "No Data"}),
                Some(Firing),
            ),
            (
                json!({"summary": "x", "alert_transition": "Re-No Data"}),
                Some(Firing),
            ),
            (
                json!({"summary": "x", "alert_transition": "Warn"}),
                Some(Firing),
            ),
            (
                json!({"summary": "x", "alert_transition": "Re-Warn"}),
                Some(Firing),
            ),
            (
                json!({"summary": "x", "alert_transition": "Renotify"}),
                Some(Firing),
            ),
            (
                json!({"summary": "x", "alert_type": "success"}),
                Some(Resolved),
            ),
            (json!({"summary": "x", "alert_type": "error"}), Some(Firing)),
            (
                json!({"title": "[Recovered on {host:a}] CPU alta"}),
                Some(Resolved),
            ),
            (
                json!({"title": "[P1] [Triggered on {host:a}] CPU alta"}),
                Some(Firing),
            ),
            (
                json!({"title": "[P2] [Re-Warn on {host:a}] CPU alta"}),
                Some(Firing),
            ),
            (
                json!({"summary": "x", "annotations": {"alert_transition": "Recovered"}}),
                Some(Resolved),
            ),
            // $ALERT_STATUS is a sentence, not a status: the transition decides.
            (
                json!({"status": "cpu was > 90 on average during the last 5m", "alert_transition": "Recovered", "summary": "x"}),
                Some(Resolved),
            ),
            // Zabbix: {EVENT.VALUE}, {EVENT.STATUS}, {TRIGGER.STATUS}.
            (json!({"summary": "x", "event_value": "0"}), Some(Resolved)),
            (json!({"summary": "x", "event_value": 1}), Some(Firing)),
            (
                json!({"summary": "x", "event_status": "RESOLVED"}),
                Some(Resolved),
            ),
            (
                json!({"summary": "x", "event_status": "PROBLEM"}),
                Some(Firing),
            ),
            (
                json!({"summary": "x", "trigger_status": "OK"}),
                Some(Resolved),
            ),
            (
                json!({"summary": "x", "trigger_status": "PROBLEM"}),
                Some(Firing),
            ),
            // Grafana's legacy alerting webhook: `state` and the title's tag.
            (
                json!({"title": "[OK] Latenza", "state": "ok"}),
                Some(Resolved),
            ),
            (
                json!({"title": "[Alerting] Latenza", "state": "alerting"}),
                Some(Firing),
            ),
            (
                json!({"title": "[No Data] Latenza", "state": "no_data"}),
                Some(Firing),
            ),
            (json!({"title": "[OK] Latenza"}), Some(Resolved)),
            // Grafana unified alerting titles, as a custom template may forward them.
            (json!({"title": "[RESOLVED] Latenza"}), Some(Resolved)),
            (
                json!({"title": "[FIRING:2, RESOLVED:1] Latenza"}),
                Some(Firing),
            ),
            // A known `status` wins over everything else.
            (
                json!({"status": "firing", "alert_transition": "Recovered", "summary": "x"}),
                Some(Firing),
            ),
            (
                json!({"status": "resolved", "title": "[Triggered on {host:a}] x"}),
                Some(Resolved),
            ),
            // Nothing said: normalization decides from `ends_at`.
            (json!({"summary": "x"}), None),
            (json!({"summary": "[cup-db-01] disco pieno"}), None),
            (json!({"summary": "x", "state": "paused"}), None),
            (json!({"summary": "x", "event_value": "2"}), None),
        ];
        for (body, expected) in cases {
            let parsed = parse(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(parsed.signals[0].status, expected, "{body}");
        }
    }

    #[test]
    fn documented_monitor_payloads() {
        let triggered = fixture("datadog-default-triggered.json");
        let recovered = fixture("datadog-default-recovered.json");
        assert_eq!(triggered.signals[0].status, Some(SignalStatus::Firing));
        assert_eq!(recovered.signals[0].status, Some(SignalStatus::Resolved));
        let rules = crate::domain::signal::NormalizeRules::default();
        let now = jiff::Timestamp::UNIX_EPOCH;
        let [t, r] = [triggered, recovered].map(|p| {
            p.signals[0]
                .clone()
                .normalize(crate::domain::Source::Generic, &rules, now)
        });
        assert_eq!(
            t.fingerprint, r.fingerprint,
            "the recovery finds its trigger"
        );
        assert_eq!(r.status, SignalStatus::Resolved);
        let transition = fixture("datadog-transition.json");
        assert_eq!(transition.signals[0].status, Some(SignalStatus::Resolved));
        let zabbix = fixture("zabbix-resolved.json");
        assert_eq!(zabbix.signals[0].status, Some(SignalStatus::Resolved));
        let grafana = fixture("grafana-legacy-ok.json");
        let g = &grafana.signals[0];
        assert_eq!(g.status, Some(SignalStatus::Resolved));
        assert_eq!(
            g.labels.get("service").map(String::as_str),
            Some("cup-portal")
        );
        assert_eq!(g.summary.as_deref(), Some("[OK] Latenza portale CUP"));
    }

    #[test]
    fn unknown_status_and_empty_signal_are_named() {
        let err = parse(&serde_json::json!({"signals": [{"summary": "x", "status": "maybe"}]}))
            .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("signals[0].status"));
        let err = parse(&serde_json::json!({"status": "firing"})).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("summary"));
        let err = parse(&serde_json::json!({"summary": "x", "tags": 5})).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("tags"));
        let err = parse(&serde_json::json!({"summary": "x", "tags": {"a": [1]}})).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("tags.a"));
    }
}
