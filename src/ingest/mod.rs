//! Ingest formats: monitor webhook bodies into [`RawSignal`]s.
//!
//! Every parser is forgiving where real senders are messy (unknown and missing fields, nulls,
//! numbers where strings were expected, Go's zero time, URLs without a scheme) and strict where a
//! value cannot be used, in which case the error names the offending field.

mod alertmanager;
mod cloudevents;
pub mod coalesce;
mod generic;
mod grafana;
mod json;
pub mod opsgenie;
pub mod pagerduty;
pub mod prometheus;
mod queue;
mod time;
mod uptime_kuma;

use crate::domain::{RawSignal, Source};

pub use coalesce::Coalescer;
pub use json::{Obj, decode};
pub use queue::{APPLY_AT_MOST, Batch, FromIntake, IngestQueue, ToPipeline, handoff};
pub use time::parse_time;

/// What a payload yielded.
#[derive(Debug, Default)]
pub struct Parsed {
    pub signals: Vec<RawSignal>,
    /// Why nothing (or less) was taken, for the reply: a test notification, a pending state.
    pub notes: Vec<String>,
}

/// A body that cannot be used, with the field at fault when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", match field { Some(f) => format!("{f}: {message}"), None => message.clone() })]
pub struct IngestError {
    pub field: Option<String>,
    pub message: String,
}

impl IngestError {
    pub fn body(message: impl Into<String>) -> IngestError {
        IngestError {
            field: None,
            message: message.into(),
        }
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> IngestError {
        IngestError {
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

/// Knobs of the parsers that a deployment sets.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    /// Severity given to an Uptime Kuma monitor that is down.
    pub uptime_kuma_severity: String,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            uptime_kuma_severity: "critical".into(),
        }
    }
}

/// How the generic endpoint's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenericFraming {
    /// `application/json`: Banditore's generic format.
    Json,
    /// `application/cloudevents+json`: one structured CloudEvent.
    CloudEvent,
    /// `application/cloudevents-batch+json`: an array of them.
    CloudEventBatch,
}

/// Parses a JSON body for `source`.
pub fn parse(
    source: Source,
    body: &[u8],
    framing: GenericFraming,
    options: &ParseOptions,
) -> Result<Parsed, IngestError> {
    let value = json::decode(body)?;
    match source {
        Source::Alertmanager => alertmanager::parse(&value),
        Source::Grafana => grafana::parse(&value),
        Source::UptimeKuma => uptime_kuma::parse(&value, options),
        Source::Prometheus => prometheus::parse(&value),
        // The drop-in receivers' answers need more than signals: their handlers call these
        // modules themselves; here, a v2 event and a create, as posted.
        Source::Pagerduty => Ok(pagerduty::parse_v2(&value)?
            .into_parsed(|| crate::ids::random_hex(16))
            .0),
        Source::Opsgenie => opsgenie::parse_create(&value),
        // Probe and heartbeat signals are made inside Banditore, never posted: read as the
        // generic format.
        Source::Generic | Source::Cloudevents | Source::Probe | Source::Heartbeat => {
            match framing {
                GenericFraming::Json => generic::parse(&value),
                GenericFraming::CloudEvent => cloudevents::parse_one(&value, ""),
                GenericFraming::CloudEventBatch => cloudevents::parse_batch(&value),
            }
        }
    }
}

/// Parses Uptime Kuma's GET form: `msg`, `heartbeat` and `monitor` as query parameters, the last
/// two JSON-encoded.
pub fn parse_uptime_kuma_query(
    msg: Option<&str>,
    heartbeat: Option<&str>,
    monitor: Option<&str>,
    options: &ParseOptions,
) -> Result<Parsed, IngestError> {
    let field = |name: &str, raw: Option<&str>| -> Result<serde_json::Value, IngestError> {
        match raw {
            None | Some("") | Some("null") => Ok(serde_json::Value::Null),
            Some(text) => serde_json::from_str(text)
                .map_err(|e| IngestError::field(name, format!("is not JSON: {e}"))),
        }
    };
    let mut object = serde_json::Map::new();
    object.insert("heartbeat".into(), field("heartbeat", heartbeat)?);
    object.insert("monitor".into(), field("monitor", monitor)?);
    object.insert(
        "msg".into(),
        msg.map(Into::into).unwrap_or(serde_json::Value::Null),
    );
    uptime_kuma::parse(&serde_json::Value::Object(object), options)
}

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::select;
    use serde_json::{Map, Value};

    use super::*;
    use crate::domain::Signal;
    use crate::domain::signal::NormalizeRules;
    use crate::hostile::text;

    /// What a stranger could put in a field: hostile text mostly, and every other JSON kind.
    fn field_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            8 => text().prop_map(Value::String),
            1 => any::<i64>().prop_map(Value::from),
            1 => any::<f64>().prop_map(Value::from),
            1 => any::<bool>().prop_map(Value::Bool),
            1 => Just(Value::Null),
            1 => vec(text(), 0..4).prop_map(|items| items.into_iter().map(Value::String).collect()),
            1 => text_map(),
        ]
    }

    fn text_map() -> impl Strategy<Value = Value> {
        vec((text(), text()), 0..4).prop_map(|pairs| {
            Value::Object(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect(),
            )
        })
    }

    /// A value for `key`, mostly of the kind the format expects there so that most bodies get
    /// through to normalization, sometimes anything at all.
    fn value_for(key: &str) -> BoxedStrategy<Value> {
        let expected = match key {
            "labels" | "annotations" | "tags" => text_map().boxed(),
            "status" | "alert_transition" | "event_status" | "trigger_status" | "state" => {
                prop_oneof![
                    select(
                        &[
                            "firing",
                            "Recovered",
                            "Re-No Data",
                            "PROBLEM",
                            "OK",
                            "no_data"
                        ][..]
                    )
                    .prop_map(Value::from),
                    text().prop_map(Value::String),
                ]
                .boxed()
            }
            "starts_at" | "ends_at" => prop_oneof![
                (0i64..4_000_000_000_000).prop_map(Value::from),
                Just(Value::from("2026-11-26T09:14:03+01:00")),
            ]
            .boxed(),
            _ => text().prop_map(Value::String).boxed(),
        };
        prop_oneof![6 => expected, 1 => field_value()].boxed()
    }

    /// An object with some of `known` keys (and stray ones), each holding a value for its key.
    fn object(known: &'static [&'static str]) -> impl Strategy<Value = Map<String, Value>> {
        let key = prop_oneof![6 => select(known).prop_map(str::to_owned), 1 => text()];
        let field = key.prop_flat_map(|k| value_for(&k).prop_map(move |v| (k.clone(), v)));
        (vec(field, 0..10), proptest::option::weighted(0.7, text())).prop_map(
            |(fields, summary)| {
                let mut object: Map<String, Value> = fields.into_iter().collect();
                if let Some(summary) = summary {
                    object.entry("summary").or_insert(summary.into());
                }
                object
            },
        )
    }

    const SIGNAL_FIELDS: &[&str] = &[
        "fingerprint",
        "status",
        "severity",
        "service",
        "component",
        "summary",
        "title",
        "message",
        "description",
        "labels",
        "annotations",
        "tags",
        "starts_at",
        "ends_at",
        "url",
        "alert_transition",
        "alert_type",
        "event_value",
        "event_status",
        "trigger_status",
        "state",
    ];

    fn generic_body() -> impl Strategy<Value = Value> {
        prop_oneof![
            3 => object(SIGNAL_FIELDS).prop_map(Value::Object),
            1 => vec(object(SIGNAL_FIELDS), 0..3).prop_map(|signals| {
                serde_json::json!({"signals": signals})
            }),
        ]
    }

    fn cloud_event() -> impl Strategy<Value = Value> {
        let attributes = (
            prop_oneof![9 => Just("1.0".to_owned()), 1 => text()],
            text(),
            text(),
            prop_oneof![
                1 => text(),
                2 => text().prop_map(|t| format!("org.example.{t}.resolved")),
            ],
            proptest::option::of(text()),
        );
        let data = prop_oneof![
            4 => object(SIGNAL_FIELDS).prop_map(Value::Object),
            1 => field_value(),
        ];
        let extensions = vec((text(), field_value()), 0..4);
        (attributes, proptest::option::of(data), extensions).prop_map(
            |((version, id, source, kind, subject), data, extensions)| {
                let mut event: Map<String, Value> = extensions.into_iter().collect();
                event.insert("specversion".into(), version.into());
                event.insert("id".into(), id.into());
                event.insert("source".into(), source.into());
                event.insert("type".into(), kind.into());
                if let Some(subject) = subject {
                    event.insert("subject".into(), subject.into());
                }
                if let Some(data) = data {
                    event.insert("data".into(), data);
                }
                Value::Object(event)
            },
        )
    }

    /// Nothing a monitor writes may make a message, a page or a feed invalid: no controls, no
    /// noncharacters, and line breaks (as `\n`) and tabs only in free text.
    fn assert_printable(signal: &Signal) -> Result<(), TestCaseError> {
        let unprintable = |c: char| {
            let n = u32::from(c);
            c.is_control() || (0xFDD0..=0xFDEF).contains(&n) || n & 0xFFFE == 0xFFFE
        };
        let line = |t: &str| {
            !t.chars()
                .any(|c| unprintable(c) || c == '\u{2028}' || c == '\u{2029}')
        };
        let lines = |t: &str| !t.chars().any(|c| unprintable(c) && c != '\n' && c != '\t');
        prop_assert!(line(&signal.fingerprint), "{:?}", signal.fingerprint);
        prop_assert!(line(&signal.service), "{:?}", signal.service);
        prop_assert!(line(&signal.summary), "{:?}", signal.summary);
        prop_assert!(signal.component.as_deref().is_none_or(line));
        prop_assert!(signal.url.as_deref().is_none_or(line));
        for (k, v) in &signal.labels {
            prop_assert!(line(k) && line(v), "{k:?}={v:?}");
        }
        for (k, v) in &signal.annotations {
            prop_assert!(line(k) && lines(v), "{k:?}={v:?}");
        }
        prop_assert!(!signal.summary.trim().is_empty());
        Ok(())
    }

    /// Parses `body` as the generic endpoint would and normalizes what it takes; a refusal must
    /// name the field at fault.
    fn ingest(body: &Value, framing: GenericFraming) -> Result<(), TestCaseError> {
        ingest_as(Source::Generic, body, framing)
    }

    fn ingest_as(
        source: Source,
        body: &Value,
        framing: GenericFraming,
    ) -> Result<(), TestCaseError> {
        let bytes = serde_json::to_vec(body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        match parse(source, &bytes, framing, &ParseOptions::default()) {
            Ok(parsed) => {
                for raw in parsed.signals {
                    let signal = raw.normalize(
                        source,
                        &NormalizeRules::default(),
                        jiff::Timestamp::UNIX_EPOCH,
                    );
                    assert_printable(&signal)?;
                }
            }
            Err(e) => {
                prop_assert!(e.field.as_deref().is_some_and(|f| !f.is_empty()), "{e:?}");
                prop_assert!(!e.message.is_empty());
            }
        }
        Ok(())
    }

    /// A value for a field of the drop-in receivers' bodies: mostly what the provider documents
    /// there, hostile text inside, sometimes anything at all.
    fn dropin_value(key: &str) -> BoxedStrategy<Value> {
        let word = |words: &'static [&'static str]| {
            prop_oneof![
                4 => select(words).prop_map(Value::from),
                1 => text().prop_map(Value::String),
            ]
            .boxed()
        };
        let expected = match key {
            "labels" | "annotations" | "details" | "custom_details" => text_map().boxed(),
            "startsAt" | "endsAt" | "timestamp" => prop_oneof![
                (0i64..4_000_000_000_000).prop_map(Value::from),
                Just(Value::from("2015-07-17T08:42:58.315+0000")),
                Just(Value::from("0001-01-01T00:00:00Z")),
            ]
            .boxed(),
            "event_action" => word(&["trigger", "acknowledge", "resolve"]),
            "severity" => word(&["critical", "error", "warning", "info"]),
            "priority" => word(&["P1", "P2", "P3", "P4", "P5"]),
            "tags" => vec(text(), 0..4)
                .prop_map(|t| t.into_iter().map(Value::String).collect())
                .boxed(),
            "links" | "contexts" => vec((text(), select(&["link", "image"][..])), 0..3)
                .prop_map(|t| {
                    t.into_iter()
                        .map(|(href, kind)| serde_json::json!({"type": kind, "href": href, "text": "x"}))
                        .collect()
                })
                .boxed(),
            "payload" => dropin_object(PAGERDUTY_PAYLOAD)
                .prop_map(Value::Object)
                .boxed(),
            _ => text().prop_map(Value::String).boxed(),
        };
        prop_oneof![8 => expected, 1 => field_value()].boxed()
    }

    /// An object with most of `known` keys, and now and then a stray one.
    fn dropin_object(known: &'static [&'static str]) -> BoxedStrategy<Map<String, Value>> {
        let key = prop_oneof![8 => select(known).prop_map(str::to_owned), 1 => text()];
        let field = key.prop_flat_map(|k| dropin_value(&k).prop_map(move |v| (k.clone(), v)));
        vec(field, 0..14)
            .prop_map(|fields| fields.into_iter().collect())
            .boxed()
    }

    const POSTABLE_ALERT: &[&str] = &[
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
    ];
    const PAGERDUTY_EVENT: &[&str] = &[
        "routing_key",
        "event_action",
        "dedup_key",
        "payload",
        "links",
        "client",
        "client_url",
    ];
    const PAGERDUTY_PAYLOAD: &[&str] = &[
        "summary",
        "source",
        "severity",
        "timestamp",
        "component",
        "group",
        "class",
        "custom_details",
    ];
    const OPSGENIE_CREATE: &[&str] = &[
        "message",
        "alias",
        "description",
        "priority",
        "tags",
        "details",
        "entity",
        "source",
    ];

    proptest! {
        #[test]
        fn generic_bodies_are_taken_clean_or_refused_by_field(body in generic_body()) {
            ingest(&body, GenericFraming::Json)?;
        }

        #[test]
        fn cloud_events_are_taken_clean_or_refused_by_field(event in cloud_event()) {
            ingest(&event, GenericFraming::CloudEvent)?;
        }

        #[test]
        fn prometheus_alerts_are_taken_clean_or_refused_by_field(
            alerts in vec(dropin_object(POSTABLE_ALERT), 0..4)
        ) {
            let body = Value::Array(alerts.into_iter().map(Value::Object).collect());
            ingest_as(Source::Prometheus, &body, GenericFraming::Json)?;
        }

        #[test]
        fn pagerduty_events_are_taken_clean_or_refused_by_field(
            event in dropin_object(PAGERDUTY_EVENT)
        ) {
            ingest_as(Source::Pagerduty, &Value::Object(event), GenericFraming::Json)?;
        }

        #[test]
        fn pagerduty_v1_events_are_taken_clean_or_refused_by_field(
            event in dropin_object(&["service_key", "event_type", "incident_key", "description", "details", "client", "client_url", "contexts"])
        ) {
            match pagerduty::parse_v1(&Value::Object(event)) {
                Ok(event) => {
                    let (parsed, _) = event.into_parsed(|| "made".into());
                    for raw in parsed.signals {
                        let signal = raw.normalize(Source::Pagerduty, &NormalizeRules::default(), jiff::Timestamp::UNIX_EPOCH);
                        assert_printable(&signal)?;
                    }
                }
                Err(e) => prop_assert!(e.field.as_deref().is_some_and(|f| !f.is_empty()), "{e:?}"),
            }
        }

        #[test]
        fn opsgenie_alerts_are_taken_clean_or_refused_by_field(
            alert in dropin_object(OPSGENIE_CREATE),
            identifier in text(),
        ) {
            ingest_as(Source::Opsgenie, &Value::Object(alert), GenericFraming::Json)?;
            match opsgenie::closing_alias(&identifier, Some("alias")) {
                Ok(alias) => {
                    let parsed = opsgenie::parse_close(alias, None).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let signal = parsed.signals[0].clone().normalize(Source::Opsgenie, &NormalizeRules::default(), jiff::Timestamp::UNIX_EPOCH);
                    assert_printable(&signal)?;
                }
                Err(e) => prop_assert_eq!(e.field.as_deref(), Some("identifier")),
            }
        }
    }
}
