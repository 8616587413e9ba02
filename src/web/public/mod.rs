//! The pages anyone may open, without an account: the status page, its incidents and feeds (and
//! the same board as JSON at `/api/v1/status`), citizens' sign-up, confirmation and preferences,
//! the unsubscribe link in every message, and the page where a desk says it has seen an
//! incident. Only approved text and a person's own data appear here; the tokens in the links
//! are the only credentials.

pub mod ack_page;
pub mod preferences;
pub mod signup;
pub mod status_page;
pub mod unsubscribe_page;

use axum::Router;
use axum::routing::get;

use super::AppState;

/// The public pages' routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/unsubscribe/{token}",
            get(unsubscribe_page::show).post(unsubscribe_page::confirm),
        )
        .route("/ack/{token}", get(ack_page::show).post(ack_page::confirm))
        .route("/status", get(status_page::page))
        .route("/status/subscribe", get(signup::form).post(signup::submit))
        .route(
            "/status/subscribe/confirm/{token}",
            get(signup::confirm_page).post(signup::confirm),
        )
        .route(
            "/status/subscribe/code/{token}",
            get(signup::code_form).post(signup::code),
        )
        .route(
            "/manage/{token}",
            get(preferences::manage).post(preferences::manage_post),
        )
        .route("/status/incidents/{id}", get(status_page::incident))
        .route("/status/feed.atom", get(status_page::atom))
        .route(
            "/status/services/{id}/feed.atom",
            get(status_page::service_atom),
        )
        .route("/status/cap.atom", get(status_page::cap_index))
        .route("/status/cap/{file}", get(status_page::cap_alert))
}

/// The public routes in the API contract: the board as JSON.
pub fn documented() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(status_page::api))
}
