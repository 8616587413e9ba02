//! PagerDuty's Events API, which every tool with a PagerDuty integration speaks: v2
//! (`POST /v2/enqueue`, `{routing_key, event_action, dedup_key, payload, links, images, client,
//! client_url}`) and v1 (`POST /generic/2010-04-15/create_event.json`, `{service_key,
//! event_type, incident_key, description, details, client, client_url, contexts}`).
//!
//! The dedup key is the alert's identity: `trigger` fires it (one is made up when the sender
//! gives none, and answered, as PagerDuty does), `resolve` resolves it, and `acknowledge` is
//! taken without changing anything: a responder acknowledging the alert in a monitor is not a
//! desk saying it has seen the incident (the desks acknowledge through their messages).
//!
//! What maps to what, from what Grafana, Zabbix and Datadog put in the payload: `summary` is the
//! summary; `severity` folds as usual (`error` reads as major); the service is
//! `custom_details.service` when the sender sets one, else `group` (PagerDuty's "logical grouping
//! of components of a service"), else `source` (the affected host); the component is `component`,
//! else `source`; `source`, `group` and `class` are kept as labels, `custom_details` as
//! annotations, and the first link (else `client_url`) is the signal's link.

use serde_json::Value;

use super::json::{Obj, kind, scalar, url};
use super::{IngestError, Parsed};
use crate::domain::{Labels, RawSignal, SignalStatus};

/// PagerDuty's limits.
const MAX_DEDUP_KEY: usize = 255;
const MAX_SUMMARY: usize = 1024;

/// What a sender asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Trigger,
    Acknowledge,
    Resolve,
}

/// One event, read.
#[derive(Debug)]
pub struct Event {
    /// The routing key (v2) or service key (v1): the caller's ingest token.
    pub key: String,
    pub action: Action,
    /// The sender's dedup key (v2) or incident key (v1); `None` on a trigger without one.
    pub dedup_key: Option<String>,
    /// What a trigger or a resolution says; `None` for an acknowledgement.
    pub signal: Option<RawSignal>,
}

impl Event {
    /// The event as signals, with its dedup key: the sender's, or `made` when it gave none.
    pub fn into_parsed(self, made: impl FnOnce() -> String) -> (Parsed, String) {
        let key = self.dedup_key.unwrap_or_else(made);
        let mut parsed = Parsed::default();
        match self.signal {
            Some(mut signal) => {
                signal.fingerprint = Some(key.clone());
                parsed.signals.push(signal);
            }
            None => parsed.notes.push(
                "acknowledge: taken; the incident is unchanged (desks acknowledge it through their messages)"
                    .into(),
            ),
        }
        (parsed, key)
    }
}

fn action(root: &Obj<'_>, field: &str) -> Result<Action, IngestError> {
    let word = root
        .str(field)?
        .ok_or_else(|| IngestError::field(field, "missing"))?;
    match word.as_str() {
        "trigger" => Ok(Action::Trigger),
        "acknowledge" => Ok(Action::Acknowledge),
        "resolve" => Ok(Action::Resolve),
        other => Err(IngestError::field(
            field,
            format!("`{other}` is not one of trigger, acknowledge, resolve"),
        )),
    }
}

fn key(root: &Obj<'_>, field: &str) -> Result<String, IngestError> {
    root.str(field)?
        .ok_or_else(|| IngestError::field(field, "missing"))
}

fn dedup_key(root: &Obj<'_>, field: &str, action: Action) -> Result<Option<String>, IngestError> {
    let key = root.str(field)?;
    if let Some(k) = &key
        && k.chars().count() > MAX_DEDUP_KEY
    {
        return Err(IngestError::field(
            field,
            format!("is longer than {MAX_DEDUP_KEY} characters"),
        ));
    }
    if key.is_none() && action != Action::Trigger {
        return Err(IngestError::field(
            field,
            "missing: an acknowledgement or a resolution names the alert by its key",
        ));
    }
    Ok(key)
}

/// An object of any JSON as annotations: scalars as text, the rest as compact JSON.
fn details(root: &Obj<'_>, field: &str) -> Result<Labels, IngestError> {
    match root.get(field) {
        None => Ok(Labels::new()),
        Some(Value::Object(map)) => Ok(map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), scalar(v).unwrap_or_else(|| v.to_string())))
            .collect()),
        // A bare string is a common shortcut (Datadog's body, Nagios's output).
        Some(v) => match scalar(v) {
            Some(text) => Ok(Labels::from([("details".to_owned(), text)])),
            None => Err(IngestError::field(
                root.field(field),
                format!("expected an object, found {}", kind(v)),
            )),
        },
    }
}

fn truncated(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => text[..cut].to_owned(),
        None => text,
    }
}

/// A v2 event (`POST /v2/enqueue`).
pub fn parse_v2(value: &Value) -> Result<Event, IngestError> {
    let root = Obj::root(value, "")?;
    let key = key(&root, "routing_key")?;
    let action = action(&root, "event_action")?;
    let dedup_key = dedup_key(&root, "dedup_key", action)?;
    let signal = match action {
        Action::Acknowledge => None,
        Action::Resolve => Some(RawSignal {
            status: Some(SignalStatus::Resolved),
            ..RawSignal::default()
        }),
        Action::Trigger => Some(trigger_v2(&root)?),
    };
    Ok(Event {
        key,
        action,
        dedup_key,
        signal,
    })
}

fn trigger_v2(root: &Obj<'_>) -> Result<RawSignal, IngestError> {
    let payload = root
        .get("payload")
        .ok_or_else(|| IngestError::field("payload", "missing: a trigger carries a payload"))?;
    let payload = Obj::root(payload, "payload")?;
    let required = |field: &str| {
        payload
            .str(field)?
            .ok_or_else(|| IngestError::field(payload.field(field), "missing"))
    };
    let summary = truncated(required("summary")?, MAX_SUMMARY);
    let source = required("source")?;
    let severity = required("severity")?;
    if !matches!(severity.as_str(), "critical" | "error" | "warning" | "info") {
        return Err(IngestError::field(
            "payload.severity",
            format!("`{severity}` is not one of critical, error, warning, info"),
        ));
    }
    let component = payload.str("component")?;
    let group = payload.str("group")?;
    let class = payload.str("class")?;
    let annotations = details(&payload, "custom_details")?;
    let mut labels = Labels::new();
    labels.insert("source".into(), source.clone());
    if let Some(g) = &group {
        labels.insert("group".into(), g.clone());
    }
    if let Some(c) = &class {
        labels.insert("class".into(), c.clone());
    }
    let service = annotations
        .get("service")
        .filter(|s| !s.trim().is_empty())
        .cloned()
        .or(group)
        .unwrap_or_else(|| source.clone());
    let link = match root.array("links")? {
        Some(links) => match links.first() {
            Some(first) => url(Obj::root(first, "links[0]")?.str("href")?),
            None => None,
        },
        None => None,
    };
    Ok(RawSignal {
        status: Some(SignalStatus::Firing),
        severity: Some(severity),
        service: Some(service),
        component: component.or(Some(source)),
        labels,
        annotations,
        summary: Some(summary),
        // Only a detail: an unreadable time does not cost the alert.
        starts_at: payload.time("timestamp").ok().flatten(),
        url: link.or(url(root.str("client_url")?)),
        ..RawSignal::default()
    })
}

/// A v1 event (`POST /generic/2010-04-15/create_event.json`).
pub fn parse_v1(value: &Value) -> Result<Event, IngestError> {
    let root = Obj::root(value, "")?;
    let key = key(&root, "service_key")?;
    let action = action(&root, "event_type")?;
    let dedup_key = dedup_key(&root, "incident_key", action)?;
    let signal = match action {
        Action::Acknowledge => None,
        Action::Resolve => Some(RawSignal {
            status: Some(SignalStatus::Resolved),
            ..RawSignal::default()
        }),
        Action::Trigger => {
            let description = root
                .str("description")?
                .ok_or_else(|| IngestError::field("description", "missing"))?;
            let annotations = details(&root, "details")?;
            let service = annotations
                .get("service")
                .filter(|s| !s.trim().is_empty())
                .cloned()
                .or(root.str("client")?);
            // The first link among the contexts, else the client's page.
            let mut link = None;
            for (i, context) in root.array("contexts")?.into_iter().flatten().enumerate() {
                let path = format!("contexts[{i}]");
                let context = Obj::root(context, &path)?;
                if context.str("type")?.as_deref() == Some("link") {
                    link = url(context.str("href")?);
                    break;
                }
            }
            Some(RawSignal {
                status: Some(SignalStatus::Firing),
                service,
                summary: Some(truncated(description, MAX_SUMMARY)),
                annotations,
                url: link.or(url(root.str("client_url")?)),
                ..RawSignal::default()
            })
        }
    };
    Ok(Event {
        key,
        action,
        dedup_key,
        signal,
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
            "{}/tests/fixtures/ingest/pagerduty/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        decode(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn the_documentations_trigger_maps_onto_a_signal() {
        let event = parse_v2(&fixture("trigger.json")).unwrap();
        assert_eq!(event.action, Action::Trigger);
        assert_eq!(event.key, "samplekeyhere");
        let (parsed, key) = event.into_parsed(|| unreachable!("the sender gave a key"));
        assert_eq!(key, "samplekeyhere");
        let signal = parsed.signals[0].clone().normalize(
            Source::Pagerduty,
            &NormalizeRules::default(),
            jiff::Timestamp::UNIX_EPOCH,
        );
        assert_eq!(signal.fingerprint, "pagerduty:samplekeyhere");
        assert_eq!(signal.summary, "Example alert on host1.example.com");
        assert_eq!(signal.severity, Severity::Info);
        assert_eq!(signal.service, "prod-datapipe");
        assert_eq!(signal.component.as_deref(), Some("postgres"));
        assert_eq!(
            signal.labels["source"],
            "monitoringtool:cloudvendor:central-region-dc-01:852559987:cluster/api-stats-prod-003"
        );
        assert_eq!(signal.labels["class"], "deploy");
        assert_eq!(signal.annotations["ping time"], "1500ms");
        assert_eq!(signal.url.as_deref(), Some("https://example.com/"));
        assert!(signal.starts_at.is_some());
    }

    #[test]
    fn a_trigger_without_a_key_gets_one_and_resolve_and_acknowledge_need_one() {
        let mut body = fixture("trigger.json");
        body.as_object_mut().unwrap().remove("dedup_key");
        let (parsed, key) = parse_v2(&body).unwrap().into_parsed(|| "made".into());
        assert_eq!(key, "made");
        assert_eq!(parsed.signals[0].fingerprint.as_deref(), Some("made"));
        let resolve = parse_v2(&fixture("resolve.json")).unwrap();
        assert_eq!(resolve.action, Action::Resolve);
        let (parsed, _) = resolve.into_parsed(|| unreachable!());
        assert_eq!(parsed.signals[0].status, Some(SignalStatus::Resolved));
        let ack = parse_v2(&fixture("acknowledge.json")).unwrap();
        let (parsed, key) = ack.into_parsed(|| unreachable!());
        assert!(parsed.signals.is_empty());
        assert!(parsed.notes[0].contains("acknowledge"));
        assert_eq!(key, "samplekeyhere");
        let err = parse_v2(&serde_json::json!({"routing_key": "k", "event_action": "resolve"}))
            .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("dedup_key"));
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (
                serde_json::json!({"event_action": "trigger"}),
                "routing_key",
            ),
            (serde_json::json!({"routing_key": "k"}), "event_action"),
            (
                serde_json::json!({"routing_key": "k", "event_action": "open"}),
                "event_action",
            ),
            (
                serde_json::json!({"routing_key": "k", "event_action": "trigger"}),
                "payload",
            ),
            (
                serde_json::json!({"routing_key": "k", "event_action": "trigger", "payload": {"source": "a", "severity": "info"}}),
                "payload.summary",
            ),
            (
                serde_json::json!({"routing_key": "k", "event_action": "trigger", "payload": {"summary": "a", "severity": "info"}}),
                "payload.source",
            ),
            (
                serde_json::json!({"routing_key": "k", "event_action": "trigger", "payload": {"summary": "a", "source": "b", "severity": "high"}}),
                "payload.severity",
            ),
            (
                serde_json::json!({"routing_key": "k", "event_action": "trigger", "dedup_key": "x".repeat(256), "payload": {}}),
                "dedup_key",
            ),
            (
                serde_json::json!({"routing_key": ["k"], "event_action": "trigger"}),
                "routing_key",
            ),
            (
                serde_json::json!({"service_key": "k", "event_type": "trigger"}),
                "description",
            ),
        ];
        for (body, field) in cases {
            let err = if body.get("service_key").is_some() {
                parse_v1(&body)
            } else {
                parse_v2(&body)
            }
            .unwrap_err();
            assert_eq!(err.field.as_deref(), Some(field), "{body}: {err}");
        }
    }

    #[test]
    fn v1_events_map_like_v2() {
        let event = parse_v1(&fixture("v1-trigger.json")).unwrap();
        assert_eq!(event.action, Action::Trigger);
        assert_eq!(event.key, "e93facc04764012d7bfb002500d5d1a6");
        let (parsed, key) = event.into_parsed(|| unreachable!());
        assert_eq!(key, "srv01/HTTP");
        let s = &parsed.signals[0];
        assert_eq!(
            s.summary.as_deref(),
            Some("FAILURE for production/HTTP on machine srv01.acme.com")
        );
        assert_eq!(s.annotations["ping time"], "1500ms");
        assert_eq!(s.service.as_deref(), Some("Sample Monitoring Service"));
        assert_eq!(s.url.as_deref(), Some("http://acme.pagerduty.com"));
        let resolve = parse_v1(&fixture("v1-resolve.json")).unwrap();
        assert_eq!(resolve.action, Action::Resolve);
    }
}
