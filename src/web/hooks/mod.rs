//! What other systems post to Banditore: monitors' webhooks (`/api/v1/signals/…`), the Telegram
//! bot's updates (webhook mode) and SMS providers' delivery reports. Each authenticates its
//! caller its own way (a token or a signature of the body, Telegram's secret header, the
//! provider's signature or a token in the URL), so none of them is behind the API's
//! credentials check.

pub mod signals;
pub mod sms_reports;
pub mod telegram_webhook;

use axum::Router;
use axum::routing::post;

use super::AppState;
use crate::channel::sms::report::REPORT_PATH;
use telegram_webhook::WEBHOOK_PATH;

/// The hooks' routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        // Ingest authenticates by token or by a signature of the body, so it reads the body first.
        .route("/api/v1/signals/alertmanager", post(signals::alertmanager))
        .route(
            "/api/v1/signals/grafana",
            post(signals::grafana).put(signals::grafana),
        )
        .route(
            "/api/v1/signals/uptime-kuma",
            post(signals::uptime_kuma).get(signals::uptime_kuma_get),
        )
        .route("/api/v1/signals/generic", post(signals::generic))
        .route(WEBHOOK_PATH, post(telegram_webhook::webhook))
        .route(
            &format!("{REPORT_PATH}/{{provider}}"),
            post(sms_reports::report).get(sms_reports::report),
        )
}
