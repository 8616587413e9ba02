//! Uptime Kuma's webhook notification: `{"heartbeat": {...}, "monitor": {...}, "msg": "..."}`.
//!
//! `heartbeat.status` is 0 down, 1 up, 2 pending, 3 maintenance. A monitor is identified by its
//! id; its tags become labels (a tag without a value becomes `name="true"`), and a `service` tag
//! names the service, otherwise the monitor's name does.

use serde_json::Value;

use super::json::{Obj, scalar, url};
use super::{IngestError, ParseOptions, Parsed};
use crate::domain::{Labels, RawSignal, SignalStatus};

pub fn parse(value: &Value, options: &ParseOptions) -> Result<Parsed, IngestError> {
    let root = Obj::root(value, "")?;
    let msg = root.str("msg")?;
    let (heartbeat, monitor) = match (root.get("heartbeat"), root.get("monitor")) {
        (None, None) => {
            return Ok(Parsed {
                signals: Vec::new(),
                notes: vec![format!(
                    "Uptime Kuma test notification{}: accepted, no incident opened",
                    msg.map(|m| format!(" ({m})")).unwrap_or_default()
                )],
            });
        }
        (Some(h), m) => (
            Obj::root(h, "heartbeat")?,
            m.map(|m| Obj::root(m, "monitor")).transpose()?,
        ),
        (None, Some(_)) => {
            return Err(IngestError::field(
                "heartbeat",
                "missing while `monitor` is present",
            ));
        }
    };
    let code = heartbeat
        .get("status")
        .ok_or_else(|| IngestError::field("heartbeat.status", "missing"))?;
    let code = code
        .as_i64()
        .or_else(|| code.as_str().and_then(|s| s.trim().parse().ok()))
        .ok_or_else(|| {
            IngestError::field(
                "heartbeat.status",
                "expected 0 (down), 1 (up), 2 (pending) or 3 (maintenance)",
            )
        })?;
    let status = match code {
        0 => SignalStatus::Firing,
        1 => SignalStatus::Resolved,
        2 | 3 => {
            let word = if code == 2 { "pending" } else { "maintenance" };
            return Ok(Parsed {
                signals: Vec::new(),
                notes: vec![format!(
                    "heartbeat status {code} ({word}): accepted, nothing changes until the monitor is down or up"
                )],
            });
        }
        other => {
            return Err(IngestError::field(
                "heartbeat.status",
                format!("`{other}` is not 0 (down), 1 (up), 2 (pending) or 3 (maintenance)"),
            ));
        }
    };
    let monitor_id = heartbeat
        .str("monitorID")?
        .or(match &monitor {
            Some(m) => m.str("id")?,
            None => None,
        })
        .ok_or_else(|| {
            IngestError::field(
                "heartbeat.monitorID",
                "missing: Banditore needs it to tell monitors apart",
            )
        })?;
    let mut labels = Labels::new();
    let mut name = None;
    let mut link = None;
    if let Some(m) = &monitor {
        name = m.str("name")?;
        link = url(m.str("url")?.filter(|u| u != "https://"));
        if let Some(kind) = m.str("type")? {
            labels.insert("monitor_type".into(), kind);
        }
        if let Some(tags) = m.array("tags")? {
            for (i, tag) in tags.iter().enumerate() {
                let path = format!("monitor.tags[{i}]");
                let tag = Obj::root(tag, &path)?;
                if let Some(tag_name) = tag.str("name")? {
                    let value = tag.get("value").and_then(scalar).filter(|v| !v.is_empty());
                    labels.insert(tag_name, value.unwrap_or_else(|| "true".into()));
                }
            }
        }
    }
    let name = name.unwrap_or_else(|| format!("monitor {monitor_id}"));
    labels.insert("monitor".into(), name.clone());
    labels
        .entry("alertname".into())
        .or_insert_with(|| name.clone());
    let detail = heartbeat.str("msg")?.filter(|m| m != "N/A");
    let summary = match (status, &detail) {
        (SignalStatus::Firing, Some(d)) => format!("{name}: {d}"),
        (SignalStatus::Firing, None) => format!("{name} is down"),
        (SignalStatus::Resolved, _) => format!("{name} is up"),
    };
    let mut annotations = Labels::new();
    if let Some(d) = detail {
        annotations.insert("description".into(), d);
    }
    if let Some(m) = msg {
        annotations.insert("message".into(), m);
    }
    let time = heartbeat.time("time")?;
    let severity = labels
        .get("severity")
        .cloned()
        .unwrap_or_else(|| options.uptime_kuma_severity.clone());
    Ok(Parsed {
        signals: vec![RawSignal {
            fingerprint: Some(format!("monitor-{monitor_id}")),
            status: Some(status),
            severity: Some(severity),
            service: labels.get("service").cloned().or(Some(name)),
            labels,
            annotations,
            summary: Some(summary),
            starts_at: if status == SignalStatus::Firing {
                time
            } else {
                None
            },
            ends_at: if status == SignalStatus::Resolved {
                time
            } else {
                None
            },
            url: link,
            ..RawSignal::default()
        }],
        notes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::json::decode;

    fn fixture(name: &str) -> Parsed {
        let path = format!(
            "{}/tests/fixtures/ingest/uptime-kuma/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        parse(
            &decode(&std::fs::read(path).unwrap()).unwrap(),
            &ParseOptions::default(),
        )
        .unwrap()
    }

    #[test]
    fn down_without_ping_with_tags() {
        let p = fixture("down.json");
        let s = &p.signals[0];
        assert_eq!(s.status, Some(SignalStatus::Firing));
        assert_eq!(s.fingerprint.as_deref(), Some("monitor-12"));
        assert_eq!(s.service.as_deref(), Some("cup-portal"));
        assert_eq!(s.labels.get("area").map(String::as_str), Some("umbria"));
        assert_eq!(s.labels.get("produzione").map(String::as_str), Some("true"));
        assert_eq!(s.severity.as_deref(), Some("critical"));
        assert_eq!(s.starts_at.unwrap().to_string(), "2026-11-26T09:14:03.512Z");
        assert!(s.summary.as_deref().unwrap().contains("503"));
        assert!(s.annotations["message"].contains('🔴'));
    }

    #[test]
    fn up_resolves_the_same_fingerprint() {
        let down = fixture("down.json");
        let up = fixture("up.json");
        assert_eq!(up.signals[0].status, Some(SignalStatus::Resolved));
        assert_eq!(up.signals[0].fingerprint, down.signals[0].fingerprint);
    }

    #[test]
    fn pending_maintenance_and_test_are_accepted_without_signals() {
        for name in ["pending.json", "maintenance.json", "test-notification.json"] {
            let p = fixture(name);
            assert!(p.signals.is_empty(), "{name}");
            assert_eq!(p.notes.len(), 1, "{name}");
        }
    }

    #[test]
    fn version_one_shape() {
        let p = fixture("down-v1.json");
        assert_eq!(p.signals[0].status, Some(SignalStatus::Firing));
        assert!(p.signals[0].starts_at.is_some());
        // Credentials in the monitor object never become labels.
        let all = format!("{:?}", p.signals[0]);
        assert!(!all.contains("basic_auth_pass"));
    }

    #[test]
    fn bad_status_is_named() {
        let err = parse(
            &serde_json::json!({"heartbeat": {"status": 9, "monitorID": 1}}),
            &ParseOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("heartbeat.status"));
    }
}
