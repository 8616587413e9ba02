//! Ingest formats: monitor webhook bodies into [`RawSignal`]s.
//!
//! Every parser is forgiving where real senders are messy (unknown and missing fields, nulls,
//! numbers where strings were expected, Go's zero time, URLs without a scheme) and strict where a
//! value cannot be used, in which case the error names the offending field.

mod alertmanager;
mod cloudevents;
mod generic;
mod grafana;
mod json;
mod queue;
mod time;
mod uptime_kuma;

use crate::domain::{RawSignal, Source};

pub use json::Obj;
pub use queue::IngestQueue;
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
        // Probe signals are made inside Banditore, never posted: read as the generic format.
        Source::Generic | Source::Cloudevents | Source::Probe => match framing {
            GenericFraming::Json => generic::parse(&value),
            GenericFraming::CloudEvent => cloudevents::parse_one(&value, ""),
            GenericFraming::CloudEventBatch => cloudevents::parse_batch(&value),
        },
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
