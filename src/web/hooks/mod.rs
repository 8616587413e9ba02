//! What other systems post to Banditore: monitors' webhooks (`/api/v1/signals/…`), the APIs of
//! Alertmanager, PagerDuty and Opsgenie that monitors already speak, the Telegram
//! bot's updates (webhook mode), SMS providers' delivery reports and desks' replies, voice calls'
//! progress and keys pressed, and WhatsApp's message statuses. Each authenticates its
//! caller its own way (a token or a signature of the body, Telegram's secret header, the
//! provider's signature or a token in the URL), so none of them is behind the API's
//! credentials check.

pub mod alertmanager_api;
pub mod opsgenie;
pub mod pagerduty;
pub mod signals;
pub mod sms_replies;
pub mod sms_reports;
pub mod telegram_webhook;
pub mod voice_calls;
pub mod whatsapp_statuses;

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::routing::post;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::channel::sms::report::ReportLinks;
use crate::channel::voice::links::CallLinks;
use crate::channel::whatsapp::settings::WhatsAppKeys;
use crate::domain::subscriber::ChannelKind;
use telegram_webhook::WEBHOOK_PATH;

/// What the channels share with the callbacks that providers post: the SMS delivery reports'
/// links and the voice calls' links, when those channels are enabled.
#[derive(Clone, Default)]
pub struct Callbacks {
    pub sms_reports: Option<Arc<ReportLinks>>,
    pub voice_calls: Option<Arc<CallLinks>>,
    /// WhatsApp's app secret and verify token, for its webhook.
    pub whatsapp: Option<Arc<WhatsAppKeys>>,
}

impl Callbacks {
    /// Takes the callbacks' links out of what the channels' builders shared, by channel.
    pub fn take(shared: &mut BTreeMap<ChannelKind, Arc<dyn Any + Send + Sync>>) -> Callbacks {
        Callbacks {
            sms_reports: shared
                .remove(&ChannelKind::Sms)
                .and_then(|parts| parts.downcast::<ReportLinks>().ok()),
            voice_calls: shared
                .remove(&ChannelKind::Voice)
                .and_then(|parts| parts.downcast::<CallLinks>().ok()),
            whatsapp: shared
                .remove(&ChannelKind::WhatsApp)
                .and_then(|parts| parts.downcast::<WhatsAppKeys>().ok()),
        }
    }
}

/// The hooks' routes. Ingest authenticates by token or by a signature of the body, so it reads
/// the body first. The signal receivers and the SMS delivery reports are in the API contract;
/// Telegram's webhook is not (its body is Telegram's `Update`, and only Telegram calls it).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signals::alertmanager))
        .routes(routes!(signals::grafana))
        .routes(routes!(signals::uptime_kuma, signals::uptime_kuma_get))
        .routes(routes!(signals::generic))
        .routes(routes!(alertmanager_api::post_alerts))
        .routes(routes!(pagerduty::enqueue))
        .routes(routes!(pagerduty::create_event))
        .routes(routes!(opsgenie::create))
        .routes(routes!(opsgenie::close))
        .routes(routes!(opsgenie::acknowledge))
        .routes(routes!(sms_reports::report))
        .routes(routes!(sms_replies::inbound))
        .routes(routes!(voice_calls::status))
        .routes(routes!(voice_calls::key))
        .routes(routes!(
            whatsapp_statuses::subscribe,
            whatsapp_statuses::statuses
        ))
        .route(WEBHOOK_PATH, post(telegram_webhook::webhook))
}
