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

use super::{Heartbeats, alarm};
use crate::domain::SignalStatus;
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
        // A heartbeat deleted (by this replica or another) is no longer late here either: its
        // gauge would otherwise stay at its last value until the process ends.
        for gone in current.defined.keys().filter(|n| !defined.contains_key(*n)) {
            if current.origin(gone) == Some(Origin::Api) {
                metrics::gauge!("banditore_heartbeat_late", "heartbeat" => gone.clone()).set(0.0);
            }
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
        let configured: Vec<String> = self.configured.iter().map(|c| c.name.clone()).collect();
        match self
            .store
            .define_heartbeat(&spec.name, &json, by, spec.allowance(), now, &configured)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::domain::Labels;
    use crate::store::Store;
    use crate::wake::Wakers;

    async fn store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
        crate::store::scratch(dir).await
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn field_of(body: Value) -> (Option<String>, String) {
        match parse(&body) {
            Err(DefineError::Invalid { field, message }) => (field, message),
            other => panic!("{body} was not refused: {other:?}"),
        }
    }

    fn good() -> Value {
        json!({"name": "backup-cup", "service": "cup", "period": "1d", "grace": "30m",
               "labels": {"area": "umbria"}, "severity": "major",
               "watchdog": ["alertname=\"Watchdog\"", "cluster=\"umbria\""]})
    }

    #[test]
    fn a_definition_is_checked_as_the_configurations_and_a_refusal_names_the_field() {
        let spec = parse(&good()).unwrap();
        assert_eq!(spec.allowance(), Duration::from_secs(86400 + 1800));
        let with = |k: &str, v: Value| {
            let mut b = good();
            b[k] = v;
            b
        };
        let cases = [
            (with("name", json!("two words")), Some("name")),
            (with("name", json!(7)), Some("name")),
            (with("service", json!("")), Some("service")),
            (with("service", json!("cup\nforged")), Some("service")),
            (with("period", json!("500ms")), Some("period")),
            (with("period", json!("soon")), Some("period")),
            (with("grace", json!("40d")), Some("grace")),
            (with("severity", json!("apocalyptic")), Some("severity")),
            (
                with("labels", json!({"heartbeat": "x"})),
                Some("labels.heartbeat"),
            ),
            (
                with("watchdog", json!(["alertname=~\".*\""])),
                Some("watchdog"),
            ),
            (
                with("watchdog", json!(["not a matcher"])),
                Some("watchdog[0]"),
            ),
            (
                with("summary", json!("x".repeat(TEXT_MAX + 1))),
                Some("summary"),
            ),
            (json!([1, 2]), None),
        ];
        for (body, field) in cases {
            assert_eq!(field_of(body.clone()).0.as_deref(), field, "{body}");
        }
        let mut unknown = good();
        unknown["perod"] = json!("1m");
        assert!(field_of(unknown).1.contains("perod"));
        let mut missing = good();
        missing.as_object_mut().unwrap().remove("period");
        assert_eq!(field_of(missing).0.as_deref(), Some("period"));
        let labels: serde_json::Map<String, Value> = (0..=MAX_LABELS)
            .map(|i| (format!("l{i}"), json!("v")))
            .collect();
        assert_eq!(
            field_of(with("labels", Value::Object(labels))).0.as_deref(),
            Some("labels")
        );
    }

    #[test]
    fn a_patch_changes_the_fields_it_names_and_null_takes_one_back_to_its_default() {
        let merged = merge(&good(), &json!({"grace": "5m", "labels": null})).unwrap();
        assert_eq!(merged["grace"], "5m");
        assert_eq!(merged["period"], "1d");
        assert!(merged.get("labels").is_none());
        assert!(merge(&good(), &json!("x")).is_err());
    }

    #[tokio::test]
    async fn defined_changed_and_deleted_through_the_api_while_the_configuration_stays_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let configured: HeartbeatSpec = serde_json::from_value(json!({
            "name": "cfg", "service": "cup", "period": "1h"
        }))
        .unwrap();
        let one = Heartbeats::new(
            std::slice::from_ref(&configured),
            &store,
            &Wakers::default(),
        );
        // Another replica, with the same configuration.
        let two = Heartbeats::new(&[configured], &store, &Wakers::default());
        one.sync(at(0)).await.unwrap();
        let body = json!({"name": "api-job", "service": "cup", "period": "60s", "grace": "30s",
                          "watchdog": ["alertname=\"Watchdog\"", "cluster=\"marche\""]});
        one.define(&body, "m.rossi", at(0)).await.unwrap();
        assert!(matches!(
            one.define(&body, "m.rossi", at(1)).await,
            Err(DefineError::Taken(_))
        ));
        let cfg = json!({"name": "cfg", "service": "cup", "period": "1m"});
        for refused in [
            one.define(&cfg, "m.rossi", at(1)).await.err(),
            one.redefine("cfg", &cfg, false, "m.rossi", at(1))
                .await
                .err(),
            one.forget("cfg", at(1)).await.err(),
        ] {
            let e = refused.unwrap();
            assert!(matches!(e, DefineError::Configured(_)), "{e:?}");
            assert!(e.to_string().contains("defined in the configuration"));
        }
        // The other replica learns of it at its next check: its Watchdog too.
        let dog: Labels = [("alertname", "Watchdog"), ("cluster", "marche")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(two.watchdog_of(&dog), None);
        assert!(two.check(at(10)).await.unwrap().is_empty());
        assert_eq!(two.watchdog_of(&dog).as_deref(), Some("api-job"));
        assert_eq!(two.ping("api-job", at(20)).await.unwrap().was, "new");
        // Late 90 s after the ping, declared by either replica, once.
        assert_eq!(
            two.check(at(110)).await.unwrap(),
            vec!["api-job".to_owned()]
        );
        assert!(one.check(at(111)).await.unwrap().is_empty());
        // A change moves nothing while late; renaming is refused.
        let renamed = one
            .redefine(
                "api-job",
                &json!({"name": "other"}),
                true,
                "l.bianchi",
                at(112),
            )
            .await;
        assert!(matches!(renamed, Err(DefineError::Invalid { field: Some(f), .. }) if f == "name"));
        let changed = one
            .redefine(
                "api-job",
                &json!({"summary": "Backup Marche"}),
                true,
                "l.bianchi",
                at(112),
            )
            .await
            .unwrap();
        assert_eq!(changed.summary, "Backup Marche");
        assert_eq!(changed.watchdog.len(), 2, "a patch keeps the other fields");
        // Deleted while late: its alarm is resolved, and both replicas forget it.
        let (_, resolved) = one.forget("api-job", at(113)).await.unwrap();
        assert!(resolved);
        // The other replica, before its next check, still has it: a ping or a failure report
        // (its Watchdog's too) is refused and writes nothing, no row, no alarm left raised.
        assert_eq!(two.watchdog_of(&dog).as_deref(), Some("api-job"));
        assert!(matches!(
            two.fail("api-job", "exit 1", at(113)).await,
            Err(crate::heartbeat::HeartbeatError::Unknown(_))
        ));
        assert!(
            store
                .heartbeats()
                .await
                .unwrap()
                .iter()
                .all(|r| r.name != "api-job")
        );
        assert_eq!(two.watchdog_of(&dog), None, "forgotten at once");
        assert!(two.check(at(114)).await.unwrap().is_empty());
        assert_eq!(two.watchdog_of(&dog), None);
        assert!(matches!(
            two.ping("api-job", at(115)).await,
            Err(crate::heartbeat::HeartbeatError::Unknown(_))
        ));
        let mut tx = store.begin().await.unwrap();
        let stored = tx.unprocessed_signals(100).await.unwrap();
        tx.commit().await.unwrap();
        let statuses: Vec<_> = stored
            .iter()
            .map(|s| (s.signal.fingerprint.as_str(), s.signal.status))
            .collect();
        assert_eq!(
            statuses,
            vec![
                ("heartbeat:api-job", SignalStatus::Firing),
                ("heartbeat:api-job", SignalStatus::Resolved)
            ]
        );
        assert_eq!(stored[1].signal.summary, "Backup Marche");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever a caller sends in any field, a definition is accepted or refused naming a
        /// field, never a panic, and an accepted name is one a URL path segment carries.
        #[test]
        fn any_definition_is_checked_without_panicking(
            name in crate::hostile::text(),
            service in crate::hostile::text(),
            summary in crate::hostile::text(),
            key in crate::hostile::text(),
            value in crate::hostile::text(),
            matcher in crate::hostile::text(),
        ) {
            let body = json!({"name": name, "service": service, "summary": summary,
                              "labels": {key: value}, "period": "1m",
                              "watchdog": [matcher, "alertname=\"Watchdog\""]});
            match parse(&body) {
                Ok(spec) => {
                    proptest::prop_assert!(valid_heartbeat_name(&spec.name));
                    proptest::prop_assert!(!spec.service.contains('\n'));
                }
                Err(DefineError::Invalid { field, message }) => {
                    proptest::prop_assert!(!message.is_empty());
                    proptest::prop_assert!(field.is_some());
                }
                Err(other) => proptest::prop_assert!(false, "{other:?}"),
            }
        }
    }
}
