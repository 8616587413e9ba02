//! The token API under `/api/v1/`, for scripts and operators: incidents, subscribers, drafts and
//! the audit log, probes and silences, and (for admins) API tokens and console users. Anyone
//! without valid credentials is refused before the path or the query is read; what their roles
//! allow is each handler's business. The handlers read JSON and answer JSON; what they share with
//! the console is done by `web::service`.

pub mod access;
pub mod drafts;
pub mod incidents;
pub mod probes;
pub mod subscribers;

use axum::Router;
use axum::middleware;
use axum::routing::{delete, get, patch, post};

use super::{AppState, authenticated};

/// The API's routes, behind the credentials check.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/incidents",
            get(incidents::list).post(incidents::open),
        )
        .route("/api/v1/incidents/{id}", get(incidents::get))
        .route(
            "/api/v1/incidents/{id}/updates",
            post(incidents::post_update),
        )
        .route(
            "/api/v1/incidents/{id}/deliveries",
            get(incidents::deliveries),
        )
        .route(
            "/api/v1/subscribers",
            get(subscribers::list).post(subscribers::create),
        )
        .route(
            "/api/v1/subscribers/{id}",
            get(subscribers::get)
                .patch(subscribers::edit)
                .delete(subscribers::delete),
        )
        .route(
            "/api/v1/subscribers/{id}/deliveries",
            get(subscribers::deliveries),
        )
        .route(
            "/api/v1/subscribers/{id}/telegram-invite",
            post(subscribers::telegram_invite),
        )
        .route("/api/v1/drafts", get(drafts::list))
        .route("/api/v1/drafts/{id}", get(drafts::get).put(drafts::edit))
        .route("/api/v1/drafts/{id}/approve", post(drafts::approve))
        .route("/api/v1/drafts/{id}/reject", post(drafts::reject))
        .route("/api/v1/audit", get(drafts::audit))
        .route("/api/v1/probes", get(probes::list))
        .route(
            "/api/v1/silences",
            get(probes::list_silences).post(probes::create_silence),
        )
        .route("/api/v1/silences/{id}", delete(probes::delete_silence))
        .route(
            "/api/v1/tokens",
            get(access::list_tokens).post(access::create_token),
        )
        .route("/api/v1/tokens/{name}", delete(access::revoke_token))
        .route(
            "/api/v1/users",
            get(access::list_users).post(access::create_user),
        )
        .route("/api/v1/users/{username}", patch(access::change_user))
        .route_layer(middleware::from_fn_with_state(state, authenticated))
}
