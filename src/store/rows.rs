//! Columns into values and back, shared by every part of the SQL store: times are Unix
//! milliseconds (BIGINT), label maps JSON text, flags 0/1 integers — the types both engines store
//! alike — and the mappers of the rows more than one part reads (incidents, alerts, updates,
//! addresses).

use std::collections::BTreeMap;
use std::str::FromStr;

use jiff::Timestamp;

use super::db::Cols;
use super::{
    AddressOrigin, AddressRow, AlertRow, DeliveryRow, IncidentOrigin, IncidentRow, Result,
    StoreError, UpdateRow,
};
use crate::domain::subscriber::Language;

/// A 0/1 flag column.
pub(super) fn flag(row: &impl Cols, column: &str) -> Result<bool> {
    Ok(row.try_get::<i64, _>(column)? != 0)
}

pub(super) fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

pub(super) fn opt_ms(t: Option<Timestamp>) -> Option<i64> {
    t.map(ms)
}

pub(super) fn ts(v: i64) -> Result<Timestamp> {
    Timestamp::from_millisecond(v).map_err(|e| StoreError::Corrupt(format!("timestamp {v}: {e}")))
}

pub(super) fn opt_ts(v: Option<i64>) -> Result<Option<Timestamp>> {
    v.map(ts).transpose()
}

pub(super) fn parse<T: FromStr>(value: &str, what: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("{what} `{value}`: {e}")))
}

pub(super) fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(value: &str, what: &str) -> Result<T> {
    serde_json::from_str(value).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(super) const INCIDENT_COLUMNS: &str = "id, group_key, title, status, severity, origin, labels, opened_at, resolved_at, announced, last_announced_at, eval_at, pending_since, last_seq, maintenance";

pub(super) fn incident_from_row(row: &impl Cols) -> Result<IncidentRow> {
    let origin = match row.try_get::<&str, _>("origin")? {
        "manual" => IncidentOrigin::Manual,
        _ => IncidentOrigin::Signals,
    };
    let announced: Option<String> = row.try_get("announced")?;
    Ok(IncidentRow {
        id: row.try_get("id")?,
        group_key: row.try_get("group_key")?,
        title: row.try_get("title")?,
        status: parse(row.try_get::<&str, _>("status")?, "incident status")?,
        severity: parse(row.try_get::<&str, _>("severity")?, "severity")?,
        origin,
        labels: from_json(row.try_get("labels")?, "labels")?,
        opened_at: ts(row.try_get("opened_at")?)?,
        resolved_at: opt_ts(row.try_get("resolved_at")?)?,
        announced: announced
            .as_deref()
            .map(|a| from_json(a, "announced"))
            .transpose()?,
        last_announced_at: opt_ts(row.try_get("last_announced_at")?)?,
        eval_at: opt_ts(row.try_get("eval_at")?)?,
        pending_since: opt_ts(row.try_get("pending_since")?)?,
        last_seq: row.try_get("last_seq")?,
        maintenance: row.try_get("maintenance")?,
    })
}

pub(super) fn alert_from_row(row: &impl Cols) -> Result<AlertRow> {
    Ok(AlertRow {
        id: row.try_get("id")?,
        incident_id: row.try_get("incident_id")?,
        fingerprint: row.try_get("fingerprint")?,
        source: parse(row.try_get::<&str, _>("source")?, "source")?,
        firing: flag(row, "firing")?,
        severity: parse(row.try_get::<&str, _>("severity")?, "severity")?,
        peak_severity: parse(row.try_get::<&str, _>("peak_severity")?, "severity")?,
        service: row.try_get("service")?,
        component: row.try_get("component")?,
        labels: from_json(row.try_get("labels")?, "labels")?,
        annotations: from_json(row.try_get("annotations")?, "annotations")?,
        summary: row.try_get("summary")?,
        url: row.try_get("url")?,
        starts_at: opt_ts(row.try_get("starts_at")?)?,
        first_seen_at: ts(row.try_get("first_seen_at")?)?,
        last_seen_at: ts(row.try_get("last_seen_at")?)?,
        resolved_at: opt_ts(row.try_get("resolved_at")?)?,
        expires_after: row
            .try_get::<Option<i64>, _>("expires_after_ms")?
            .map(jiff::SignedDuration::from_millis),
    })
}

pub(super) fn update_from_row(row: &impl Cols) -> Result<UpdateRow> {
    Ok(UpdateRow {
        id: row.try_get("id")?,
        incident_id: row.try_get("incident_id")?,
        seq: row.try_get("seq")?,
        kind: parse(row.try_get::<&str, _>("kind")?, "update kind")?,
        status: parse(row.try_get::<&str, _>("status")?, "incident status")?,
        severity: parse(row.try_get::<&str, _>("severity")?, "severity")?,
        title: row.try_get("title")?,
        signals: from_json(row.try_get("signals")?, "update signals")?,
        body: row.try_get("body")?,
        author: row.try_get("author")?,
        created_at: ts(row.try_get("created_at")?)?,
        origin_at: ts(row.try_get("origin_at")?)?,
        silent: flag(row, "silent")?,
        routed_at: opt_ts(row.try_get("routed_at")?)?,
    })
}

/// The columns [`delivery_from_row`] reads, from `deliveries d` joined with `incident_updates u`,
/// `addresses a` and `subscribers s` (the last two left joins: a delivery outlives its address).
pub(super) const DELIVERY_COLUMNS: &str =
    "d.id, u.seq, d.channel, d.recipient, d.subscriber_name, d.state, d.attempts, d.last_error,
    d.provider_id, d.provider, d.segments, d.report_status, d.report_error, d.report_at,
    d.created_at, d.sent_at, d.next_attempt_at,
    CAST(CASE WHEN s.citizen_services IS NULL THEN 0 ELSE 1 END AS BIGINT) AS citizen";

/// A delivery as the API shows it.
pub(super) fn delivery_from_row(row: &impl Cols) -> Result<DeliveryRow> {
    let state: String = row.try_get("state")?;
    let pending = state == "pending";
    Ok(DeliveryRow {
        id: row.try_get("id")?,
        update_seq: row.try_get("seq")?,
        channel: parse(row.try_get::<&str, _>("channel")?, "channel")?,
        recipient: row.try_get("recipient")?,
        citizen: row.try_get::<i64, _>("citizen")? != 0,
        subscriber: row.try_get("subscriber_name")?,
        state,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        provider_id: row.try_get("provider_id")?,
        provider: row.try_get("provider")?,
        segments: row.try_get("segments")?,
        report_status: row.try_get("report_status")?,
        report_error: row.try_get("report_error")?,
        report_at: opt_ts(row.try_get("report_at")?)?,
        created_at: ts(row.try_get("created_at")?)?,
        sent_at: opt_ts(row.try_get("sent_at")?)?,
        next_attempt_at: if pending {
            Some(ts(row.try_get("next_attempt_at")?)?)
        } else {
            None
        },
    })
}

/// The columns [`address_from_row`] reads, from `addresses a`.
pub(super) const ADDRESS_COLUMNS: &str = "a.id, a.subscriber_id, a.channel, a.address, a.unsubscribed_at, a.gone_at, a.gone_reason, a.origin, a.language AS address_language";

/// An address without its services (see [`load_services`]).
pub(super) fn address_from_row(row: &impl Cols) -> Result<AddressRow> {
    let language: Option<String> = row.try_get("address_language")?;
    Ok(AddressRow {
        id: row.try_get("id")?,
        channel: parse(row.try_get::<&str, _>("channel")?, "channel")?,
        address: row.try_get("address")?,
        unsubscribed_at: opt_ts(row.try_get("unsubscribed_at")?)?,
        gone_at: opt_ts(row.try_get("gone_at")?)?,
        gone_reason: row.try_get("gone_reason")?,
        origin: match row.try_get::<&str, _>("origin")? {
            "chat" => AddressOrigin::Chat,
            _ => AddressOrigin::Admin,
        },
        language: language
            .map(Language::try_from)
            .transpose()
            .map_err(StoreError::Corrupt)?,
        services: BTreeMap::new(),
    })
}
