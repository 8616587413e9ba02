//! Subscribers created and deleted by hand, through the API or the console.

use jiff::Timestamp;

use super::ServiceError;
use crate::domain::subscriber::SubscriberSpec;
use crate::store::DeleteOutcome;
use crate::web::{AppState, record_audit};

/// Validates and stores a subscriber, and writes the audit log.
pub async fn create(
    state: &AppState,
    spec: SubscriberSpec,
    actor: &str,
    now: Timestamp,
) -> Result<i64, ServiceError> {
    let valid = spec.validate(&state.subscriber_rules).map_err(|errors| {
        let first = &errors[0];
        let message = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        ServiceError::invalid(first.field.clone(), message)
    })?;
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
