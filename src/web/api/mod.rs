//! The token API under `/api/v1/`, for scripts and operators: incidents (with who knows and the
//! ledger), subscribers, drafts and the audit log, probes and silences, heartbeats (and their
//! pings), and (for admins) API tokens and console users. Anyone without valid credentials is
//! refused before the path or the query is read; what their roles allow is each handler's
//! business. The handlers read JSON and answer JSON; what they share with the console is done by
//! `web::service`.

pub mod access;
pub mod acks;
pub mod affected;
pub mod drafts;
pub mod heartbeat_admin;
pub mod heartbeats;
pub mod incidents;
pub mod probes;
pub mod subscribers;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

/// The API's routes, each with its description; `web::router` puts them behind the credentials
/// check. A handler gets here through `routes!`, which takes its path and method from its
/// `#[utoipa::path]`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(incidents::list, incidents::open))
        .routes(routes!(incidents::get))
        .routes(routes!(incidents::post_update))
        .routes(routes!(incidents::deliveries))
        .routes(routes!(acks::board))
        .routes(routes!(acks::ledger))
        .routes(routes!(affected::upload, affected::list, affected::delete))
        .routes(routes!(subscribers::list, subscribers::create))
        .routes(routes!(
            subscribers::get,
            subscribers::edit,
            subscribers::delete
        ))
        .routes(routes!(subscribers::deliveries))
        .routes(routes!(subscribers::telegram_invite))
        .routes(routes!(drafts::list))
        .routes(routes!(drafts::get, drafts::edit))
        .routes(routes!(drafts::approve))
        .routes(routes!(drafts::reject))
        .routes(routes!(drafts::audit))
        .routes(routes!(probes::list))
        .routes(routes!(probes::list_silences, probes::create_silence))
        .routes(routes!(probes::delete_silence))
        .routes(routes!(heartbeats::list, heartbeat_admin::create))
        .routes(routes!(heartbeats::get))
        .routes(routes!(
            heartbeats::ping,
            heartbeat_admin::replace,
            heartbeat_admin::patch,
            heartbeat_admin::delete
        ))
        .routes(routes!(heartbeats::fail))
        .routes(routes!(access::list_tokens, access::create_token))
        .routes(routes!(access::revoke_token))
        .routes(routes!(access::list_users, access::create_user))
        .routes(routes!(access::change_user))
}
