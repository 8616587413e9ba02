//! Heartbeats defined through the API, beside the configuration's `[[heartbeats]]`: a team adds
//! the monitor of a new nightly job without editing the configuration and restarting. A
//! definition is the same JSON as a configured heartbeat, with the same checks; it is kept in
//! the store, so that every replica reads it: each one's once-a-second check reads the rows
//! anyway, and takes in the definitions that changed ([`Heartbeats::adopt`]), Watchdog matchers
//! included. A configured heartbeat is the configuration's alone: the API refuses to change or
//! delete it, and a name the configuration takes over becomes the configuration's at the next
//! start. Deleting a heartbeat whose alarm is raised resolves the alarm, as removing one from the
//! configuration does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::domain::SignalStatus;
use crate::heartbeat::{Heartbeats, alarm};
use crate::settings::{HEARTBEAT_NAME_MAX, HeartbeatSpec, check_heartbeat, valid_heartbeat_name};
use crate::store::{Defined, Forgotten, HeartbeatRow, StoreError};

/// The most labels, and Watchdog matchers, a definition may carry.
pub const MAX_LABELS: usize = 64;
/// The longest service, summary, label name or value, or matcher, in characters.
pub const TEXT_MAX: usize = 500;

/// Where a heartbeat is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `[[heartbeats]]`: changed there only.
    Config,
    /// Through the API.
    Api,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Api => "api",
        }
    }
}

/// Every heartbeat a replica knows at one moment: the configuration's, then the API's.
#[derive(Debug, Default)]
pub struct Catalog {
    specs: Vec<(HeartbeatSpec, Origin)>,
    by_name: HashMap<String, usize>,
    /// The API's definitions as stored (name, JSON), to tell when they changed.
    defined: BTreeMap<String, String>,
}

impl Catalog {
    /// The configuration's heartbeats and `defined` (the API's, but those the configuration
    /// names too: its definition wins).
    pub fn new(configured: &[HeartbeatSpec], defined: &[HeartbeatSpec]) -> Catalog {
        let mut specs: Vec<(HeartbeatSpec, Origin)> = configured
            .iter()
            .map(|s| (s.clone(), Origin::Config))
            .collect();
        for s in defined {
            if !configured.iter().any(|c| c.name == s.name) {
                specs.push((s.clone(), Origin::Api));
            }
        }
        let by_name = specs
            .iter()
            .enumerate()
            .map(|(i, (s, _))| (s.name.clone(), i))
            .collect();
        Catalog {
            specs,
            by_name,
            defined: BTreeMap::new(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&HeartbeatSpec> {
        self.by_name.get(name).map(|&i| &self.specs[i].0)
    }

    pub fn origin(&self, name: &str) -> Option<Origin> {
        self.by_name.get(name).map(|&i| self.specs[i].1)
    }

    /// Every heartbeat with its origin: the configuration's first, in its order.
    pub fn entries(&self) -> impl Iterator<Item = (&HeartbeatSpec, Origin)> {
        self.specs.iter().map(|(s, o)| (s, *o))
    }
}

/// Why a definition was refused.
#[derive(Debug, thiserror::Error)]
pub enum DefineError {
    /// A field is wrong (`field` names it, a JSON path), or the body as a whole.
    #[error("{message}")]
    Invalid {
        field: Option<String>,
        message: String,
    },
    #[error(
        "`{0}` is defined in the configuration: change or remove it there (`[[heartbeats]]`) and restart"
    )]
    Configured(String),
    #[error(
        "a heartbeat is named `{0}` already: change it with PUT or PATCH, or choose another name"
    )]
    Taken(String),
    #[error("no heartbeat is named `{0}`")]
    Unknown(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &str, message: impl Into<String>) -> DefineError {
    DefineError::Invalid {
        field: (!field.is_empty()).then(|| field.to_owned()),
        message: message.into(),
    }
}

fn shown(name: &str) -> String {
    name.chars().take(100).collect()
}

/// A definition as the API received it (a JSON object with the fields of `[[heartbeats]]`),
/// checked as the configuration's are, plus limits on its size: the heartbeat, or the first
/// problem with the field that has it.
pub fn parse(body: &Value) -> Result<HeartbeatSpec, DefineError> {
    if !body.is_object() {
        return Err(invalid("", "send a JSON object: the heartbeat's fields"));
    }
    let spec: HeartbeatSpec = serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        invalid(if path == "." { "" } else { &path }, message)
    })?;
    if !valid_heartbeat_name(&spec.name) {
        return Err(invalid(
            "name",
            format!(
                "`{}` is not a heartbeat name: 1 to {HEARTBEAT_NAME_MAX} letters, digits, `.`, `_` or `-` (it goes in URLs)",
                shown(&spec.name)
            ),
        ));
    }
    let long = |t: &str| t.chars().count() > TEXT_MAX;
    if long(&spec.service) {
        return Err(invalid("service", format!("at most {TEXT_MAX} characters")));
    }
    if long(&spec.summary) {
        return Err(invalid("summary", format!("at most {TEXT_MAX} characters")));
    }
    if spec.labels.len() > MAX_LABELS {
        return Err(invalid("labels", format!("at most {MAX_LABELS} labels")));
    }
    if spec.labels.iter().any(|(k, v)| long(k) || long(v)) {
        return Err(invalid(
            "labels",
            format!("label names and values are at most {TEXT_MAX} characters"),
        ));
    }
    if spec.watchdog.len() > MAX_LABELS {
        return Err(invalid(
            "watchdog",
            format!("at most {MAX_LABELS} matchers"),
        ));
    }
    if spec.watchdog.iter().any(|m| long(&m.to_string())) {
        return Err(invalid(
            "watchdog",
            format!("a matcher is at most {TEXT_MAX} characters"),
        ));
    }
    let mut first = None;
    check_heartbeat(&spec, &|key: &str| key.to_owned(), &mut |field: &str, m| {
        if first.is_none() {
            first = Some(invalid(field, m));
        }
    });
    match first {
        Some(problem) => Err(problem),
        None => Ok(spec),
    }
}

/// `patch`'s fields over `base`'s (JSON merge patch, RFC 7396, one level: `null` takes a field
/// back to its default).
pub fn merge(base: &Value, patch: &Value) -> Result<Value, DefineError> {
    let Some(patch) = patch.as_object() else {
        return Err(invalid("", "send a JSON object: the fields to change"));
    };
    let mut out: Map<String, Value> = base.as_object().cloned().unwrap_or_default();
    for (k, v) in patch {
        if v.is_null() {
            out.remove(k);
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(Value::Object(out))
}

impl Heartbeats {
    /// Takes in the API's definitions among `rows` (as the store has them now), if they changed
    /// since last time; returns the catalog that holds from now on.
    pub(crate) fn adopt(&self, rows: &[HeartbeatRow]) -> Arc<Catalog> {
        let defined: BTreeMap<String, String> = rows
            .iter()
            .filter(|r| r.origin == Origin::Api.as_str())
            .filter_map(|r| Some((r.name.clone(), r.definition.clone()?)))
            .collect();
        let current = self.catalog();
        if current.defined == defined {
            return current;
        }
        let specs: Vec<HeartbeatSpec> = defined
            .iter()
            .filter_map(|(name, json)| match serde_json::from_str::<HeartbeatSpec>(json) {
                Ok(mut spec) => {
                    spec.name = name.clone();
                    Some(spec)
                }
                Err(e) => {
                    tracing::error!(heartbeat = %name, error = %e, "a stored heartbeat definition does not read: it is not checked");
                    None
                }
            })
            .collect();
        let mut next = Catalog::new(&self.configured, &specs);
        next.defined = defined;
        let next = Arc::new(next);
        match self.catalog.write() {
            Ok(mut c) => *c = next.clone(),
            Err(poisoned) => *poisoned.into_inner() = next.clone(),
        }
        next
    }

    /// Reads the heartbeats from the store and takes in the API's definitions.
    pub async fn refresh(&self) -> Result<Arc<Catalog>, StoreError> {
        let rows = self.store.heartbeats().await?;
        Ok(self.adopt(&rows))
    }

    /// Defines a heartbeat through the API, its clock starting at `now`.
    pub async fn define(
        &self,
        body: &Value,
        by: &str,
        now: Timestamp,
    ) -> Result<HeartbeatSpec, DefineError> {
        let spec = parse(body)?;
        if self.configured.iter().any(|c| c.name == spec.name) {
            return Err(DefineError::Configured(spec.name));
        }
        let json = canonical(body)?;
        match self
            .store
            .define_heartbeat(&spec.name, &json, by, spec.allowance(), now)
            .await?
        {
            Defined::Done => {}
            _ => return Err(DefineError::Taken(spec.name)),
        }
        self.refresh().await?;
        tracing::info!(heartbeat = %spec.name, by, "heartbeat defined through the API");
        Ok(spec)
    }

    /// Changes a heartbeat defined through the API: `body` replaces its definition, or, with
    /// `patch`, changes the fields it names. Its name stays.
    pub async fn redefine(
        &self,
        name: &str,
        body: &Value,
        patch: bool,
        by: &str,
        now: Timestamp,
    ) -> Result<HeartbeatSpec, DefineError> {
        let cat = self.refresh().await?;
        match cat.origin(name) {
            Some(Origin::Config) => return Err(DefineError::Configured(shown(name))),
            None => return Err(DefineError::Unknown(shown(name))),
            Some(Origin::Api) => {}
        }
        let stored: Value = cat
            .defined
            .get(name)
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default();
        let mut next = if patch {
            merge(&stored, body)?
        } else {
            merge(&Value::Object(Map::new()), body)?
        };
        match next.get("name") {
            None => {}
            Some(Value::String(n)) if n == name => {}
            Some(_) => {
                return Err(invalid(
                    "name",
                    "a heartbeat keeps its name: delete it and define another to rename it",
                ));
            }
        }
        if let Some(o) = next.as_object_mut() {
            o.insert("name".into(), Value::String(name.to_owned()));
        }
        let spec = parse(&next)?;
        let json = canonical(&next)?;
        match self
            .store
            .redefine_heartbeat(name, &json, by, spec.allowance(), now)
            .await?
        {
            Defined::Done => {}
            Defined::Missing => return Err(DefineError::Unknown(shown(name))),
            Defined::Configured => return Err(DefineError::Configured(shown(name))),
        }
        self.refresh().await?;
        tracing::info!(heartbeat = %name, by, "heartbeat changed through the API");
        Ok(spec)
    }

    /// Deletes a heartbeat defined through the API; its alarm, if raised, is resolved. Returns
    /// the heartbeat as it was, and whether an alarm was resolved.
    pub async fn forget(
        &self,
        name: &str,
        now: Timestamp,
    ) -> Result<(HeartbeatSpec, bool), DefineError> {
        let cat = self.refresh().await?;
        let spec = match cat.origin(name) {
            Some(Origin::Config) => return Err(DefineError::Configured(shown(name))),
            None => return Err(DefineError::Unknown(shown(name))),
            Some(Origin::Api) => cat.get(name).cloned(),
        };
        let Some(spec) = spec else {
            return Err(DefineError::Unknown(shown(name)));
        };
        let farewell = alarm(&spec, SignalStatus::Resolved, None, now);
        let resolved = match self.store.forget_heartbeat(name, &farewell, now).await? {
            Forgotten::Done(signal) => signal.is_some(),
            Forgotten::Missing => return Err(DefineError::Unknown(shown(name))),
            Forgotten::Configured => return Err(DefineError::Configured(shown(name))),
        };
        if resolved {
            self.signals_stored().await;
        }
        self.refresh().await?;
        tracing::info!(heartbeat = %name, resolved, "heartbeat deleted through the API");
        Ok((spec, resolved))
    }
}

fn canonical(body: &Value) -> Result<String, DefineError> {
    serde_json::to_string(body).map_err(|e| DefineError::Store(StoreError::Corrupt(e.to_string())))
}
