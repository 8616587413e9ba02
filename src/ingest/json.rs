//! Reading loosely-typed JSON with the path of every value at hand, for error messages.

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::IngestError;
use super::time::parse_time;
use crate::domain::Labels;

pub fn decode(body: &[u8]) -> Result<Value, IngestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(IngestError::body("the body is empty"));
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| IngestError::body(format!("the body is not UTF-8: {e}")))?;
    serde_json::from_str(text).map_err(|e| IngestError::body(format!("malformed JSON: {e}")))
}

/// A JSON object and where it sits in the body.
#[derive(Clone, Copy)]
pub struct Obj<'a> {
    pub path: &'a str,
    pub map: &'a Map<String, Value>,
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> Obj<'a> {
    pub fn root(value: &'a Value, path: &'a str) -> Result<Obj<'a>, IngestError> {
        match value {
            Value::Object(map) => Ok(Obj { path, map }),
            other => Err(match path {
                "" => IngestError::body(format!("expected a JSON object, found {}", kind(other))),
                p => IngestError::field(p, format!("expected an object, found {}", kind(other))),
            }),
        }
    }

    pub fn field(&self, key: &str) -> String {
        join(self.path, key)
    }

    /// The raw value, with `null` read as absent.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A scalar as text; absent, `null` and `""` give `None`.
    pub fn str(&self, key: &str) -> Result<Option<String>, IngestError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => scalar(v)
                .map(|s| Some(s).filter(|s| !s.trim().is_empty()))
                .ok_or_else(|| {
                    IngestError::field(self.field(key), format!("expected text, found {}", kind(v)))
                }),
        }
    }

    pub fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, IngestError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(IngestError::field(
                self.field(key),
                format!("expected an array, found {}", kind(v)),
            )),
        }
    }

    /// An object of scalars as labels: numbers and booleans become text, `null` values are dropped.
    pub fn labels(&self, key: &str) -> Result<Labels, IngestError> {
        match self.get(key) {
            None => Ok(Labels::new()),
            Some(Value::Object(map)) => {
                let mut out = Labels::new();
                for (k, v) in map {
                    if v.is_null() {
                        continue;
                    }
                    let text = scalar(v).ok_or_else(|| {
                        IngestError::field(
                            join(&self.field(key), k),
                            format!("expected text, found {}", kind(v)),
                        )
                    })?;
                    out.insert(k.clone(), text);
                }
                Ok(out)
            }
            Some(v) => Err(IngestError::field(
                self.field(key),
                format!("expected an object, found {}", kind(v)),
            )),
        }
    }

    pub fn time(&self, key: &str) -> Result<Option<Timestamp>, IngestError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => parse_time(v).map_err(|m| IngestError::field(self.field(key), m)),
        }
    }
}

/// Text of a scalar; `None` for objects and arrays.
pub fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A URL as monitors send it: empty means none, and a missing scheme is taken to be http.
pub fn url(raw: Option<String>) -> Option<String> {
    let raw = raw?.trim().to_owned();
    if raw.is_empty() {
        None
    } else if raw.contains("://") {
        Some(raw)
    } else {
        Some(format!("http://{raw}"))
    }
}
