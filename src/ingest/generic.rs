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
                parsed.signals.push(parse_signal(Obj::root(item, &path)?)?);
            }
        }
        None => parsed.signals.push(parse_signal(root)?),
    }
    Ok(parsed)
}

/// One signal in the generic shape (also the `data` of a CloudEvent).
pub fn parse_signal(o: Obj<'_>) -> Result<RawSignal, IngestError> {
    let status = match o.str("status")? {
        None => None,
        Some(word) => Some(SignalStatus::from_word(&word).ok_or_else(|| {
            IngestError::field(
                o.field("status"),
                format!("`{word}` is not a status Banditore knows (use firing or resolved)"),
            )
        })?),
    };
    let mut labels = o.labels("labels")?;
    merge_tags(&o, &mut labels)?;
    let mut annotations = o.labels("annotations")?;
    if let Some(description) = o.str("description")? {
        annotations.insert("description".into(), description);
    }
    let summary = o.str("summary")?.or(o.str("title")?).or(o.str("message")?);
    let service = o.str("service")?;
    if summary.is_none() && service.is_none() && labels.is_empty() {
        return Err(IngestError::field(
            o.field("summary"),
            "missing: give at least a summary, a service or some labels",
        ));
    }
    Ok(RawSignal {
        fingerprint: o.str("fingerprint")?,
        status,
        severity: o.str("severity")?,
        service,
        component: o.str("component")?,
        labels,
        annotations,
        summary,
        starts_at: o.time("starts_at")?,
        ends_at: o.time("ends_at")?,
        url: url(o.str("url")?),
    })
}

/// `tags` as `"k:v,k2:v2"` or `["k:v", …]` (also `k=v`); a bare tag becomes `name="true"`.
fn merge_tags(o: &Obj<'_>, labels: &mut Labels) -> Result<(), IngestError> {
    let items: Vec<String> = match o.get("tags") {
        None => return Ok(()),
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
                "expected \"k:v,k2:v2\" or an array of \"k:v\"",
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

    #[test]
    fn unknown_status_and_empty_signal_are_named() {
        let err = parse(&serde_json::json!({"signals": [{"summary": "x", "status": "maybe"}]}))
            .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("signals[0].status"));
        let err = parse(&serde_json::json!({"status": "firing"})).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("summary"));
        let err = parse(&serde_json::json!({"summary": "x", "tags": {"a": 1}})).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("tags"));
    }
}
