//! The HTTP surface (axum): webhook ingest, the REST API, unsubscribe pages, operations
//! endpoints. Handlers write to the store and wake the workers; they never send messages.
//!
//! Around every handler: a deadline (`408` while the body is still arriving, `503` after),
//! `X-Content-Type-Options: nosniff` on every answer, credentials checked before the API reads a
//! path or a query, and the console's framing, caching and script policy.

mod auth;
mod body;
mod citizen;
mod console;
mod drafts;
mod error;
mod extract;
mod incidents;
mod ingest;
mod login_limit;
mod ops;
mod probes;
mod serve;
mod session;
mod sms;
mod status;
mod subscribers;
mod telegram;
mod unsubscribe;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper::body::Body as HttpBody;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use auth::{Authenticator, Principal};
pub use error::ApiError;
pub use serve::{Limits, serve};
pub use telegram::{TelegramWeb, WEBHOOK_PATH};

use crate::channel::sms::report::{REPORT_PATH, ReportLinks};
use crate::domain::signal::NormalizeRules;
use crate::domain::subscriber::{Language, SubscriberRules};
use crate::incident::Engine;
use crate::ingest::{IngestQueue, ParseOptions};
use crate::render::Renderer;
use crate::settings::Permission;
use crate::store::Store;
use crate::unsubscribe::UnsubscribeLinks;
use crate::wake::Wakers;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub auth: Arc<Authenticator>,
    pub ingest: IngestQueue,
    pub engine: Engine,
    pub wake: Wakers,
    pub links: UnsubscribeLinks,
    pub renderer: Renderer,
    pub metrics: PrometheusHandle,
    pub default_language: Language,
    pub subscriber_rules: SubscriberRules,
    /// SMS delivery reports, when SMS is enabled.
    pub sms_reports: Option<Arc<ReportLinks>>,
    pub parse_options: ParseOptions,
    pub normalize: NormalizeRules,
    pub max_body_bytes: usize,
    pub telegram: Option<Arc<TelegramWeb>>,
    pub console: Arc<session::Console>,
    /// Signs draft buttons and Telegram account links.
    pub approval_links: crate::approval::ApprovalLinks,
    /// The probes as configured and this replica's view of them.
    pub probes: Arc<Probes>,
    /// The public status board, built at most every two seconds.
    pub status: Arc<status::StatusPage>,
    /// Citizens' sign-ups and preferences.
    pub citizens: Arc<crate::citizen::Citizens>,
    /// Channels paused because their credentials were refused.
    pub pauses: crate::outbox::Pauses,
}

pub use probes::Probes;
pub use session::Console;
pub use status::StatusPage;

/// Writes an audit entry for what was just done; a failure is logged, the action stands.
pub async fn record_audit(
    state: &AppState,
    actor: &str,
    action: &'static str,
    incident: Option<i64>,
    detail: serde_json::Value,
) {
    let entry = crate::store::NewAudit {
        actor: actor.to_owned(),
        action,
        incident_id: incident,
        draft_id: None,
        detail,
        at: jiff::Timestamp::now(),
    };
    if let Err(e) = state.store.record_audit(&entry).await {
        tracing::error!(error = %e, action, "cannot write the audit log");
    }
}

/// The caller, if one of their roles allows `needed`: 401 without valid credentials, 403
/// otherwise.
pub fn require(
    state: &AppState,
    headers: &HeaderMap,
    needed: Permission,
) -> Result<Principal, ApiError> {
    let principal = state
        .auth
        .from_headers(headers)
        .ok_or(ApiError::Unauthorized)?;
    if principal.may(needed) {
        Ok(principal)
    } else {
        Err(ApiError::Forbidden(format!(
            "`{}` may not do this: none of its roles ({}) allows {}",
            principal.name,
            principal
                .roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            needed.describe()
        )))
    }
}

pub fn router(state: AppState, request_timeout: Duration) -> Router {
    // Token-only API: anyone without credentials is refused before the path or query is read.
    let api = Router::new()
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
            get(subscribers::get).delete(subscribers::delete),
        )
        .route(
            "/api/v1/subscribers/{id}/telegram-invite",
            post(telegram::invite),
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
        .route(
            "/api/v1/silences/{id}",
            axum::routing::delete(probes::delete_silence),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticated));
    let console = Router::new()
        .route("/console", get(console::home))
        .route(
            "/console/login",
            get(console::login_page).post(console::login_submit),
        )
        .route("/console/logout", post(console::logout))
        .route("/console/drafts", get(console::drafts))
        .route("/console/drafts/{id}", get(console::draft))
        .route("/console/drafts/{id}/edit", post(console::draft_edit))
        .route("/console/drafts/{id}/approve", post(console::draft_approve))
        .route("/console/drafts/{id}/reject", post(console::draft_reject))
        .route(
            "/console/incidents",
            get(console::incidents).post(console::incident_open),
        )
        .route("/console/incidents/{id}", get(console::incident))
        .route(
            "/console/incidents/{id}/updates",
            post(console::incident_update),
        )
        .route("/console/audit", get(console::audit_page))
        .route("/console/me", get(console::me))
        .route(
            "/console/subscribers",
            get(console::subscribers).post(console::subscriber_create),
        )
        .route(
            "/console/subscribers/{id}/delete",
            post(console::subscriber_delete),
        )
        .route_layer(middleware::map_response(console::guard));
    Router::new()
        // Ingest authenticates by token or by a signature of the body, so it reads the body first.
        .route("/api/v1/signals/alertmanager", post(ingest::alertmanager))
        .route(
            "/api/v1/signals/grafana",
            post(ingest::grafana).put(ingest::grafana),
        )
        .route(
            "/api/v1/signals/uptime-kuma",
            post(ingest::uptime_kuma).get(ingest::uptime_kuma_get),
        )
        .route("/api/v1/signals/generic", post(ingest::generic))
        .merge(api)
        .merge(console)
        .route(WEBHOOK_PATH, post(telegram::webhook))
        .route(
            &format!("{REPORT_PATH}/{{provider}}"),
            post(sms::report).get(sms::report),
        )
        .route(
            "/unsubscribe/{token}",
            get(unsubscribe::show).post(unsubscribe::confirm),
        )
        .route("/status", get(status::page))
        .route(
            "/status/subscribe",
            get(citizen::form).post(citizen::submit),
        )
        .route(
            "/status/subscribe/confirm/{token}",
            get(citizen::confirm_page).post(citizen::confirm),
        )
        .route(
            "/status/subscribe/code/{token}",
            get(citizen::code_form).post(citizen::code),
        )
        .route(
            "/manage/{token}",
            get(citizen::manage).post(citizen::manage_post),
        )
        .route("/status/incidents/{id}", get(status::incident))
        .route("/status/feed.atom", get(status::atom))
        .route("/status/services/{id}/feed.atom", get(status::service_atom))
        .route("/status/cap.atom", get(status::cap_index))
        .route("/status/cap/{file}", get(status::cap_alert))
        .route("/api/v1/status", get(status::api))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(not_found)
        .with_state(state)
        // Bodies are read with our own limit and a JSON 413; axum's default 2 MiB cap is off.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(request_timeout, deadline))
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http())
        .layer(middleware::map_response(nosniff))
}

/// Refuses a caller without valid credentials (`401`); what their roles allow is each handler's
/// business.
async fn authenticated(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.auth.from_headers(request.headers()).is_none() {
        return ApiError::Unauthorized.into_response();
    }
    next.run(request).await
}

/// Tells browsers to take every answer for the type it declares, so that text echoing a caller's
/// input is never run as a page or a script.
async fn nosniff(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Ends a request that takes longer than `server.request_timeout`: `408` if its body was still
/// arriving (the client is slow, and a monitor must not retry that forever as it does a 5xx),
/// `503` with `Retry-After` otherwise (the server is slow; later may be better).
async fn deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    let waiting = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        Body::new(Watched {
            inner: body,
            waiting: waiting.clone(),
        })
    });
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) if waiting.load(Ordering::Acquire) => {
            ApiError::RequestTimeout(limit).into_response()
        }
        Err(_) => ApiError::Unavailable(format!(
            "no answer within {}; try again shortly",
            humantime::format_duration(limit)
        ))
        .into_response(),
    }
}

/// A request body that says whether its reader is waiting for the client's next bytes.
struct Watched {
    inner: Body,
    waiting: Arc<AtomicBool>,
}

impl HttpBody for Watched {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        self.waiting.store(polled.is_pending(), Ordering::Release);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

async fn not_found() -> impl IntoResponse {
    ApiError::NotFound("no such endpoint".into())
}
