//! Incidents opened and updated by hand (a resolution is an update whose status is `resolved`),
//! and who may read the contacts an incident's deliveries went to.

use jiff::Timestamp;

use super::ServiceError;
use crate::domain::subscriber::ChannelKind;
use crate::incident::{ManualError, ManualIncident, ManualUpdate};
use crate::settings::Permission;
use crate::store::{DeliveryRow, IncidentRow, Topic, UpdateRow};
use crate::web::{AppState, Principal, record_audit};

impl From<ManualError> for ServiceError {
    fn from(e: ManualError) -> ServiceError {
        match e {
            ManualError::Invalid { field, message } => ServiceError::invalid(field, message),
            ManualError::NotFound(id) => ServiceError::NotFound(format!("incident {id} not found")),
            ManualError::Resolved(id) => {
                ServiceError::Conflict(format!("incident {id} is resolved; open a new one"))
            }
            ManualError::Store(e) => ServiceError::Store(e),
        }
    }
}

/// Opens an incident by hand: the engine writes it and its first update, the router is woken
/// (here and on the other replicas), and the audit log says who.
pub async fn open(
    state: &AppState,
    req: ManualIncident,
    actor: &str,
    now: Timestamp,
) -> Result<(IncidentRow, UpdateRow), ServiceError> {
    let (incident, update) = state.engine.open_manual(req, actor, now).await?;
    state.wake.updates_written();
    state.store.announce(Topic::Signals).await;
    tracing::info!(incident = incident.id, by = %actor, "incident opened by hand");
    record_audit(
        state,
        actor,
        "incident.opened",
        Some(incident.id),
        serde_json::json!({
            "title": incident.title, "severity": incident.severity.as_str(),
        }),
    )
    .await;
    Ok((incident, update))
}

/// Posts an update to an open incident (resolving it when its status is `resolved`), wakes the
/// router and writes the audit log.
pub async fn post_update(
    state: &AppState,
    id: i64,
    req: ManualUpdate,
    actor: &str,
    now: Timestamp,
) -> Result<UpdateRow, ServiceError> {
    let (_, update) = state.engine.post_update(id, req, actor, now).await?;
    state.wake.updates_written();
    state.store.announce(Topic::Signals).await;
    tracing::info!(incident = id, seq = update.seq, by = %actor, "incident update posted by hand");
    record_audit(
        state,
        actor,
        "incident.updated",
        Some(id),
        serde_json::json!({
            "seq": update.seq, "status": update.status.as_str(), "body": update.body,
        }),
    )
    .await;
    Ok(update)
}

/// An incident's deliveries as `reader` may see them. Citizens' contacts are personal data: whole
/// for administrators (and the read is audited), masked for everyone else, with the provider's
/// words that may repeat them.
pub async fn deliveries(
    state: &AppState,
    id: i64,
    reader: &Principal,
) -> Result<Vec<DeliveryRow>, ServiceError> {
    if state.store.incident(id).await?.is_none() {
        return Err(ServiceError::NotFound(format!("incident {id} not found")));
    }
    let mut rows: Vec<DeliveryRow> = state.store.incident_deliveries(id).await?;
    let citizens = rows.iter().filter(|d| d.citizen).count();
    if reader.may(Permission::Admin) {
        if citizens > 0 {
            record_audit(
                state,
                &reader.name,
                "personal_data.read",
                Some(id),
                serde_json::json!({ "what": "deliveries", "citizens": citizens }),
            )
            .await;
        }
    } else {
        mask_citizens(&mut rows);
    }
    Ok(rows)
}

/// Citizens' addresses in `rows` masked, in the errors that quote them too; and webhooks' URLs,
/// which for a chat tool are its credential.
pub fn mask_citizens(rows: &mut [DeliveryRow]) {
    for d in rows
        .iter_mut()
        .filter(|d| d.citizen || d.channel == ChannelKind::Webhook)
    {
        let masked = masked(d.channel, &d.recipient);
        for text in [&mut d.last_error, &mut d.report_error]
            .into_iter()
            .flatten()
        {
            *text = text.replace(&d.recipient, &masked);
        }
        d.recipient = masked;
    }
}

/// Masks most of an address: on a citizen's own preferences page, which may be seen over a
/// shoulder, and in the deliveries anyone but an administrator reads.
pub fn masked(channel: ChannelKind, address: &str) -> String {
    let keep = |s: &str, n: usize| -> String {
        let shown: String = s.chars().take(n).collect();
        format!(
            "{shown}{}",
            "•".repeat(s.chars().count().saturating_sub(n).min(8))
        )
    };
    match channel {
        ChannelKind::Email => match address.split_once('@') {
            Some((local, domain)) => format!("{}@{domain}", keep(local, 2)),
            None => keep(address, 2),
        },
        ChannelKind::Sms | ChannelKind::Voice | ChannelKind::WhatsApp => {
            let tail: String = address
                .chars()
                .rev()
                .take(3)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!(
                "{}{tail}",
                "•".repeat(address.chars().count().saturating_sub(3))
            )
        }
        // A chat tool's webhook URL is its credential: the host alone.
        ChannelKind::Webhook => crate::domain::subscriber::masked_webhook(address),
        _ => String::from("Telegram"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked() {
        assert_eq!(
            masked(ChannelKind::Email, "mario.rossi@example.org"),
            "ma••••••••@example.org"
        );
        assert_eq!(masked(ChannelKind::Sms, "+393331234567"), "••••••••••567");
        assert_eq!(masked(ChannelKind::Telegram, "12345"), "Telegram");
        assert_eq!(
            masked(
                ChannelKind::Webhook,
                "slack+https://hooks.slack.com/services/T0/B0/secret"
            ),
            "https://hooks.slack.com/••••••••"
        );
    }
}
