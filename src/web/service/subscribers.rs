//! Subscribers created, edited and deleted by hand, through the API or the console; the pages of
//! the list both read, and a subscriber's recent deliveries as the reader may see them.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::ServiceError;
use super::incidents::mask_citizens;
use crate::domain::subscriber::{
    ChannelKind, OneOrMany, PUBLIC, SubscriberPatch, SubscriberSpec, ValidSubscriber,
};
use crate::settings::Permission;
use crate::store::{
    DeleteOutcome, EditOutcome, MAX_QUERY_CHARS, SubscriberDelivery, SubscriberEdit,
    SubscriberFilter, SubscriberOrigin, SubscriberRow,
};
use crate::web::{AppState, Principal, record_audit};

/// A page of the list with the cursors around it: `next` to read after it, `previous` to read
/// before it (as `before`).
pub struct Page {
    pub rows: Vec<SubscriberRow>,
    pub next: Option<i64>,
    pub previous: Option<i64>,
}

/// One page of the subscribers `filter` keeps. A search longer than [`MAX_QUERY_CHARS`] is
/// refused naming `q`; an empty one searches nothing.
pub async fn page(state: &AppState, mut filter: SubscriberFilter) -> Result<Page, ServiceError> {
    filter.q = filter.q.filter(|q| !q.trim().is_empty());
    if let Some(q) = &filter.q
        && q.chars().count() > MAX_QUERY_CHARS
    {
        return Err(ServiceError::invalid(
            "q",
            format!("is longer than {MAX_QUERY_CHARS} characters"),
        ));
    }
    // A whole codice fiscale is looked for as the store holds it: sealed.
    if let Some(q) = &mut filter.q
        && let Ok(code) = crate::domain::fiscal_code::FiscalCode::parse(q)
        && let Some(key) = &state.subscriber_rules.seal_key
    {
        *q = code.seal(key.bytes());
    }
    let backwards = filter.before.is_some() && filter.after.is_none();
    let page = state.store.subscriber_page(&filter).await?;
    let first = page.rows.first().map(|s| s.id);
    let last = page.rows.last().map(|s| s.id);
    let (next, previous) = if backwards {
        (last, first.filter(|_| page.more))
    } else {
        let previous = match (filter.after, first) {
            (None, _) => None,
            (Some(_), Some(first)) => Some(first),
            // Past the end: the page before is the one that ended at the cursor.
            (Some(after), None) => Some(after.saturating_add(1)),
        };
        (last.filter(|_| page.more), previous)
    };
    Ok(Page {
        rows: page.rows,
        next,
        previous,
    })
}

/// The checks of a new subscriber, every problem said, the first one's field named.
fn validated(state: &AppState, spec: SubscriberSpec) -> Result<ValidSubscriber, ServiceError> {
    spec.validate(&state.subscriber_rules).map_err(|errors| {
        let first = &errors[0];
        let message = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        ServiceError::invalid(first.field.clone(), message)
    })
}

/// Validates and stores a subscriber, and writes the audit log.
pub async fn create(
    state: &AppState,
    spec: SubscriberSpec,
    actor: &str,
    now: Timestamp,
) -> Result<i64, ServiceError> {
    let valid = validated(state, spec)?;
    let id = state.store.create_subscriber(&valid, now).await?;
    tracing::info!(subscriber = id, by = %actor, "subscriber created");
    record_audit(
        state,
        actor,
        "subscriber.created",
        None,
        serde_json::json!({
            "id": id, "name": valid.name, "audience": valid.audience,
            "addresses": valid.addresses.len(),
        }),
    )
    .await;
    Ok(id)
}

/// Deletes a subscriber made through the API or the console (its pending deliveries are
/// cancelled); one declared in the configuration file stays.
pub async fn delete(state: &AppState, id: i64, actor: &str) -> Result<(), ServiceError> {
    match state.store.delete_subscriber(id).await? {
        DeleteOutcome::Deleted {
            cancelled_deliveries,
        } => {
            tracing::info!(subscriber = id, by = %actor, cancelled_deliveries, "subscriber deleted");
            record_audit(
                state,
                actor,
                "subscriber.deleted",
                None,
                serde_json::json!({
                    "id": id, "cancelled_deliveries": cancelled_deliveries,
                }),
            )
            .await;
            Ok(())
        }
        DeleteOutcome::NotFound => {
            Err(ServiceError::NotFound(format!("subscriber {id} not found")))
        }
        DeleteOutcome::ManagedByConfig => Err(ServiceError::Conflict(format!(
            "subscriber {id} is declared in the configuration file; remove it there"
        ))),
    }
}

/// Why a subscriber cannot be edited here, or `None` when it can.
fn not_editable(id: i64, origin: SubscriberOrigin) -> Option<ServiceError> {
    match origin {
        SubscriberOrigin::Api => None,
        SubscriberOrigin::Config => Some(ServiceError::Conflict(format!(
            "subscriber {id} is declared in the configuration file ([[subscribers]]), which is applied again at every start; edit it there"
        ))),
        SubscriberOrigin::Citizen => Some(ServiceError::Conflict(format!(
            "subscriber {id} is a citizen who subscribed from the status page; only they change their subscription, from its preferences link"
        ))),
    }
}

/// Edits a subscriber made through the API or the console in place: the fields given are checked
/// as a new subscriber's are, the rest stays. Addresses kept keep their history and their
/// unsubscribe or gone marks; an address removed gets nothing more (its pending deliveries are
/// cancelled, drafts forget it); a new value is a new address, active. Writes the audit log.
pub async fn edit(
    state: &AppState,
    id: i64,
    patch: SubscriberPatch,
    actor: &str,
    now: Timestamp,
) -> Result<SubscriberRow, ServiceError> {
    let not_found = || ServiceError::NotFound(format!("subscriber {id} not found"));
    let current = state.store.subscriber(id).await?.ok_or_else(not_found)?;
    if let Some(refused) = not_editable(id, current.origin) {
        return Err(refused);
    }
    let fields = patch.fields();
    // The edited subscriber is checked whole, as a new one is, but for the addresses of the
    // channels the edit leaves alone: they were checked when they were written.
    let changed_channels: Vec<String> = patch
        .addresses
        .as_ref()
        .map(|a| a.keys().cloned().collect())
        .unwrap_or_default();
    // App IO addresses the edit leaves alone stay: the audience must stay public for them.
    let keeps_appio = !changed_channels
        .iter()
        .any(|c| c == ChannelKind::AppIo.as_str())
        && current
            .addresses
            .iter()
            .any(|a| a.channel == ChannelKind::AppIo && a.is_active());
    let spec = SubscriberSpec {
        name: patch.name.clone().unwrap_or(current.name),
        language: Some(patch.language.clone().unwrap_or(current.language)),
        audience: patch.audience.clone().unwrap_or(current.audience),
        addresses: patch
            .addresses
            .unwrap_or_default()
            .into_iter()
            .map(|(channel, list)| (channel, list.unwrap_or(OneOrMany::Many(Vec::new()))))
            .collect(),
        subscriptions: patch.subscriptions.clone().unwrap_or(current.subscriptions),
        escalation: patch.escalation.clone().unwrap_or_else(|| {
            current
                .escalation
                .as_ref()
                .map(|p| p.specs())
                .unwrap_or_default()
        }),
    };
    let valid = validated(state, spec)?;
    if keeps_appio && valid.audience != PUBLIC {
        return Err(ServiceError::invalid(
            "audience",
            format!(
                "audience: the subscriber has App IO addresses, which carry public statements only: keep the `{PUBLIC}` audience, or remove them in the same edit (\"addresses\": {{\"appio\": null}})"
            ),
        ));
    }
    let mut addresses: BTreeMap<ChannelKind, Vec<String>> = BTreeMap::new();
    for name in &changed_channels {
        // Validation has parsed every channel named.
        if let Ok(channel) = name.parse::<ChannelKind>() {
            addresses.insert(
                channel,
                valid
                    .addresses
                    .iter()
                    .filter(|(c, _)| *c == channel)
                    .map(|(_, a)| a.clone())
                    .collect(),
            );
        }
    }
    let edit = SubscriberEdit {
        name: patch.name.map(|_| valid.name.clone()),
        language: patch.language.map(|_| valid.language.clone()),
        audience: patch.audience.map(|_| valid.audience.clone()),
        addresses,
        subscriptions: patch.subscriptions.map(|_| valid.subscriptions.clone()),
        escalation: patch.escalation.map(|_| valid.escalation.clone()),
    };
    let report = match state.store.edit_subscriber(id, &edit, now).await? {
        EditOutcome::Edited(report) => report,
        EditOutcome::NotFound => return Err(not_found()),
        EditOutcome::ManagedByConfig => {
            return Err(not_editable(id, SubscriberOrigin::Config).unwrap_or_else(not_found));
        }
        EditOutcome::Citizen => {
            return Err(not_editable(id, SubscriberOrigin::Citizen).unwrap_or_else(not_found));
        }
    };
    tracing::info!(subscriber = id, by = %actor, ?fields, "subscriber edited");
    // Which channels gained or lost an address, not the addresses: the log is read by many.
    record_audit(
        state,
        actor,
        "subscriber.edited",
        None,
        serde_json::json!({
            "id": id, "fields": fields,
            "addresses_added": report.added, "addresses_removed": report.removed,
            "cancelled_deliveries": report.cancelled_deliveries,
        }),
    )
    .await;
    state.store.subscriber(id).await?.ok_or_else(not_found)
}

/// The subscriber and their latest `limit` deliveries as `reader` may see them: a citizen's
/// contact is whole for administrators (and the read is audited), masked for everyone else.
pub async fn deliveries(
    state: &AppState,
    id: i64,
    limit: u32,
    reader: &Principal,
) -> Result<(SubscriberRow, Vec<SubscriberDelivery>), ServiceError> {
    let subscriber = state
        .store
        .subscriber(id)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("subscriber {id} not found")))?;
    let mut rows = state.store.subscriber_deliveries(id, limit).await?;
    let citizen = subscriber.origin == SubscriberOrigin::Citizen;
    if reader.may(Permission::Admin) {
        if citizen && !rows.is_empty() {
            record_audit(
                state,
                &reader.name,
                "personal_data.read",
                None,
                serde_json::json!({ "what": "subscriber deliveries", "subscriber": id }),
            )
            .await;
        }
    } else {
        for row in &mut rows {
            mask_citizens(std::slice::from_mut(&mut row.delivery));
        }
    }
    Ok((subscriber, rows))
}

/// The webhook addresses of `rows` as `reader` may see them: whole for administrators, the
/// scheme and host alone for everyone else (a chat tool's URL is its credential), also in a
/// reason that quotes one; as the deliveries they read show them.
pub fn mask_webhooks(reader: &Principal, rows: &mut [SubscriberRow]) {
    if reader.may(Permission::Admin) {
        return;
    }
    for a in rows
        .iter_mut()
        .flat_map(|r| r.addresses.iter_mut())
        .filter(|a| a.channel == ChannelKind::Webhook)
    {
        let masked = crate::domain::subscriber::masked_webhook(&a.address);
        if let Some(reason) = &mut a.gone_reason {
            *reason = reason.replace(&a.address, &masked);
        }
        a.address = masked;
    }
}
