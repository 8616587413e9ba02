//! CloudEvents 1.0, structured JSON mode, single and batch.
//!
//! `data` (an object) or `data_base64` (base64 of a JSON object) carries a signal in the generic
//! shape. The attributes fill what it leaves out: `type` ending in a status word (`….firing`,
//! `….resolved`) gives the status, `subject` names the service, `time` the start, `subject` and
//! `type` the summary. A string `data` is taken as the summary and never re-parsed as JSON, as the
//! specification requires. Extension attributes become labels, so data need not name a service;
//! those that differ from one event to the next about the same thing (tracing, arrival and
//! recording times, sequence numbers) become annotations, kept out of the fingerprint.

use base64::Engine as _;
use serde_json::Value;

use super::generic::parse_signal;
use super::json::{Obj, scalar};
use super::{IngestError, Parsed};
use crate::domain::{RawSignal, SignalStatus};

const CONTEXT_ATTRIBUTES: [&str; 10] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
];

/// Extension attributes each event carries anew about the same thing: the documented
/// extensions for distributed tracing (`traceparent`, `tracestate`), recorded time, sequence
/// and data reference, Dapr's `traceid` and Knative's `knativearrivaltime`. As labels they
/// would give each event a fingerprint of its own, so that no recovery ever found its firing
/// event.
const PER_EVENT_EXTENSIONS: [&str; 7] = [
    "traceparent",
    "tracestate",
    // Dapr's copy of the trace id.
    "traceid",
    "recordedtime",
    "sequence",
    "dataref",
    "knativearrivaltime",
];

pub fn parse_batch(value: &Value) -> Result<Parsed, IngestError> {
    let Value::Array(events) = value else {
        return Err(IngestError::body(
            "a CloudEvents batch must be a JSON array of events",
        ));
    };
    let mut parsed = Parsed::default();
    if events.is_empty() {
        parsed.notes.push("empty batch".into());
    }
    for (i, event) in events.iter().enumerate() {
        let one = parse_one(event, &format!("[{i}]"))?;
        parsed.signals.extend(one.signals);
    }
    Ok(parsed)
}

pub fn parse_one(value: &Value, path: &str) -> Result<Parsed, IngestError> {
    let event = Obj::root(value, path)?;
    let attr = |name: &str| -> Result<String, IngestError> {
        event.str(name)?.ok_or_else(|| {
            IngestError::field(event.field(name), "missing: a CloudEvent requires it")
        })
    };
    let specversion = attr("specversion")?;
    if specversion != "1.0" {
        return Err(IngestError::field(
            event.field("specversion"),
            format!("`{specversion}` is not supported (1.0 is)"),
        ));
    }
    let id = attr("id")?;
    let source = attr("source")?;
    let event_type = attr("type")?;
    let subject = event.str("subject")?;
    if event.get("data").is_some() && event.get("data_base64").is_some() {
        return Err(IngestError::field(
            event.field("data"),
            "`data` and `data_base64` are mutually exclusive",
        ));
    }
    let content_type = event.str("datacontenttype")?;
    let typed = SignalStatus::from_word(
        event_type
            .rsplit(['.', ':', '/'])
            .next()
            .unwrap_or_default(),
    );
    let mut signal = match (event.get("data"), event.get("data_base64")) {
        (Some(data @ Value::Object(_)), None) => {
            parse_signal(Obj::root(data, &event.field("data"))?, typed)?
        }
        (Some(Value::String(text)), None) => RawSignal {
            summary: Some(text.clone()),
            status: typed,
            ..RawSignal::default()
        },
        (Some(other), None) => {
            return Err(IngestError::field(
                event.field("data"),
                format!(
                    "expected an object in Banditore's generic shape, found {}",
                    super::json::kind(other)
                ),
            ));
        }
        (None, Some(encoded)) => {
            if !content_type.as_deref().is_some_and(is_json) {
                return Err(IngestError::field(
                    event.field("datacontenttype"),
                    "data_base64 is read only when datacontenttype is JSON",
                ));
            }
            let text = encoded.as_str().unwrap_or_default();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| {
                    IngestError::field(event.field("data_base64"), format!("not base64: {e}"))
                })?;
            let data: Value = serde_json::from_slice(&bytes).map_err(|e| {
                IngestError::field(
                    event.field("data_base64"),
                    format!("does not hold JSON: {e}"),
                )
            })?;
            parse_signal(Obj::root(&data, &event.field("data_base64"))?, typed)?
        }
        (None, None) | (Some(_), Some(_)) => RawSignal {
            status: typed,
            ..RawSignal::default()
        },
    };
    // Extension attributes are labels, unless the data already set that label; those of one
    // event only are annotations.
    for (key, v) in event.map {
        if CONTEXT_ATTRIBUTES.contains(&key.as_str()) || v.is_null() {
            continue;
        }
        if let Some(text) = scalar(v) {
            let kept = if PER_EVENT_EXTENSIONS.contains(&key.as_str()) {
                &mut signal.annotations
            } else {
                &mut signal.labels
            };
            kept.entry(key.clone()).or_insert(text);
        }
    }
    if signal.status.is_none() && signal.ends_at.is_none() {
        return Err(IngestError::field(
            event.field("type"),
            format!(
                "cannot tell firing from resolved: set data.status, or end the type with .firing or .resolved (got `{event_type}`)"
            ),
        ));
    }
    if signal.service.is_none() && !signal.labels.contains_key("service") {
        signal.service = subject.clone();
    }
    if signal.starts_at.is_none() && signal.status == Some(SignalStatus::Firing) {
        signal.starts_at = event.time("time")?;
    }
    let summary_from_type = signal.summary.is_none();
    if summary_from_type {
        signal.summary = Some(match &subject {
            Some(subject) => format!("{subject}: {event_type}"),
            None => event_type.clone(),
        });
    }
    if signal.fingerprint.is_none() {
        // The event id names this event, not the thing it is about: use source and subject, or,
        // for an event about nothing named, source and what it says.
        signal.fingerprint = match &subject {
            Some(s) => Some(format!("{source}#{s}")),
            None if signal.labels.is_empty() && signal.service.is_none() => {
                // A summary taken from the type is measured without the type's status word: a
                // recovery's type differs from its firing's only there.
                let about = match typed {
                    Some(_) => event_type
                        .rsplit_once(['.', ':', '/'])
                        .map(|(head, _)| head),
                    None => None,
                };
                let shown = match about {
                    Some(about) if summary_from_type => signal.summary.replace(about.to_owned()),
                    _ => None,
                };
                let content = signal.content_fingerprint();
                if shown.is_some() {
                    signal.summary = shown;
                }
                content.map(|content| format!("{source}#{content}"))
            }
            None => None,
        };
    }
    signal
        .annotations
        .entry("cloudevent_id".into())
        .or_insert(id);
    signal
        .annotations
        .entry("cloudevent_source".into())
        .or_insert(source);
    Ok(Parsed {
        signals: vec![signal],
        notes: Vec::new(),
    })
}

/// `application/json`, `text/json` or any `*/*+json`, parameters ignored.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::json::decode;

    fn value(name: &str) -> Value {
        let path = format!(
            "{}/tests/fixtures/ingest/cloudevents/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        decode(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn single_event_with_extensions() {
        let p = parse_one(&value("single.json"), "").unwrap();
        let s = &p.signals[0];
        assert_eq!(s.status, Some(SignalStatus::Firing));
        assert_eq!(s.service.as_deref(), Some("cup-backend"));
        assert_eq!(s.labels.get("aslunitid").map(String::as_str), Some("55"));
        assert!(!s.labels.contains_key("dataschema"));
        assert_eq!(s.fingerprint.as_deref(), Some("cup-backend/db/umbria"));
    }

    #[test]
    fn batch_with_base64_and_content_type_parameters() {
        let p = parse_batch(&value("batch.json")).unwrap();
        assert_eq!(p.signals.len(), 2);
        assert_eq!(p.signals[0].status, Some(SignalStatus::Resolved));
        assert_eq!(p.signals[0].service.as_deref(), Some("referti"));
        assert_eq!(p.signals[1].status, Some(SignalStatus::Firing));
        let empty = parse_batch(&value("batch-empty.json")).unwrap();
        assert!(empty.signals.is_empty());
    }

    #[test]
    fn string_data_is_never_reparsed() {
        match parse_one(&value("string-data.json"), "") {
            Ok(p) => assert_ne!(
                p.signals[0].status,
                Some(SignalStatus::Resolved),
                "read `resolved` out of a string"
            ),
            Err(e) => assert_eq!(e.field.as_deref(), Some("type")),
        }
    }

    /// A firing event and its recovery, each with its own trace context and arrival time: one
    /// problem, one fingerprint, the per-event attributes kept as annotations.
    #[test]
    fn per_event_extensions_leave_the_fingerprint_alone() {
        use crate::domain::signal::{NormalizeRules, Source};
        let normalized = |event: serde_json::Value| {
            let p = parse_one(&event, "").unwrap();
            let raw = p.signals.into_iter().next().unwrap();
            raw.normalize(
                Source::Generic,
                &NormalizeRules::default(),
                jiff::Timestamp::UNIX_EPOCH,
            )
        };
        let event = |kind: &str, trace: &str, arrived: &str| {
            normalized(
                serde_json::json!({"specversion": "1.0", "id": trace, "source": "/mon",
                "type": format!("it.asl.cup.{kind}"), "traceparent": trace,
                "tracestate": format!("asl={trace}"), "knativearrivaltime": arrived,
                "sequence": trace, "area": "umbria", "data": {"service": "cup"}}),
            )
        };
        let firing = event(
            "firing",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "2026-12-06T10:00:00Z",
        );
        let resolved = event(
            "resolved",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "2026-12-06T10:05:00Z",
        );
        assert_eq!(firing.fingerprint, resolved.fingerprint);
        // With nothing but per-event extensions, the type without its status word says what
        // the event is about.
        let bare = |kind: &str, trace: &str| {
            normalized(
                serde_json::json!({"specversion": "1.0", "id": trace, "source": "/mon",
                "type": format!("it.asl.cup.{kind}"), "traceparent": trace, "traceid": trace}),
            )
        };
        let (up, down) = (bare("firing", "a1"), bare("resolved", "b2"));
        assert_eq!(up.fingerprint, down.fingerprint);
        assert_eq!(up.summary, "it.asl.cup.firing");
        assert_eq!(
            firing.labels.get("area").map(String::as_str),
            Some("umbria")
        );
        assert!(!firing.labels.contains_key("traceparent"));
        assert!(firing.annotations["traceparent"].starts_with("00-0af7"));
    }

    #[test]
    fn extensions_are_enough_when_data_names_nothing() {
        let p = parse_one(&value("extensions-only.json"), "").unwrap();
        let s = &p.signals[0];
        assert_eq!(s.status, Some(SignalStatus::Firing));
        assert_eq!(
            s.labels.get("service").map(String::as_str),
            Some("cup-backend")
        );
        assert_eq!(s.labels.get("area").map(String::as_str), Some("umbria"));
        assert_eq!(
            s.summary.as_deref(),
            Some("it.asl-umbria.monitoring.signal.v1")
        );
        // The subject, when there is one, says what the event is about.
        let about = parse_one(
            &serde_json::json!({"specversion": "1.0", "id": "1", "source": "/probe",
                "type": "org.example.cup.down", "subject": "cup-portal", "area": "umbria",
                "data": {"status": "down"}}),
            "",
        )
        .unwrap();
        assert_eq!(
            about.signals[0].summary.as_deref(),
            Some("cup-portal: org.example.cup.down")
        );
        // The type's status word decides when data's status is missing.
        let typed = parse_one(
            &serde_json::json!({"specversion": "1.0", "id": "1", "source": "/probe",
                "type": "org.example.cup.resolved", "area": "umbria", "data": {}}),
            "",
        )
        .unwrap();
        assert_eq!(typed.signals[0].status, Some(SignalStatus::Resolved));
    }

    #[test]
    fn required_attributes_are_named() {
        let err = parse_one(
            &serde_json::json!({"specversion": "1.0", "id": "1", "type": "x.firing"}),
            "",
        )
        .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("source"));
        let err = parse_batch(
            &serde_json::json!([{"specversion": "0.3", "id": "1", "source": "s", "type": "t"}]),
        )
        .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("[0].specversion"));
        let ok = parse_one(
            &serde_json::json!({"specversion": "1.0", "id": "1", "source": "/probe", "type": "org.example.cup.resolved", "subject": "cup"}),
            "",
        )
        .unwrap();
        assert_eq!(ok.signals[0].status, Some(SignalStatus::Resolved));
        assert_eq!(ok.signals[0].fingerprint.as_deref(), Some("/probe#cup"));
    }
}
