//! The HTTP surface (axum), cut by audience: `hooks/` for what other systems post (monitors'
//! webhooks, Telegram's updates, SMS delivery reports), `api/` for the token API, `console/` for
//! the office's pages, `public/` for the status page and citizens' pages. What the API and the
//! console both do goes through `service/`, so that their checks cannot diverge. Handlers write to
//! the store and wake the workers; they never send messages.
//!
//! Around every handler: a deadline (`408` while the body is still arriving, `503` after),
//! `X-Content-Type-Options: nosniff` on every answer, credentials checked before the API reads a
//! path or a query, the console's framing, caching and script policy, and a trace of each
//! request that names its route, never its path (a link's token is in it). This file holds the
//! router that merges the folders' routes, the state every handler gets, and those layers.

mod api;
mod auth;
mod body;
mod client;
mod console;
mod contract;
mod error;
mod extract;
mod hooks;
pub mod ops;
mod public;
mod serve;
mod service;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper::body::Body as HttpBody;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{HttpMakeClassifier, TraceLayer};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use crate::bot::TelegramWeb;
pub use auth::{Authenticator, Principal, RELOAD_EVERY, keep_reloading};
pub use error::ApiError;
pub use hooks::Callbacks;
pub use hooks::telegram_webhook::WEBHOOK_PATH;
pub use serve::{Limits, serve};

use crate::domain::signal::NormalizeRules;
use crate::domain::subscriber::{Language, SubscriberRules};
use crate::incident::Engine;
use crate::ingest::{IngestQueue, ParseOptions};
use crate::render::Renderer;
use crate::settings::Permission;
use crate::store::Store;
use crate::unsubscribe::UnsubscribeLinks;
use crate::wake::Wakers;

/// What every handler reads. Axum clones the state for each request, so it is a handle: one
/// `Arc`, whatever the parts weigh (the renderer's templates, the parsing rules…).
#[derive(Clone)]
pub struct AppState(Arc<Parts>);

impl AppState {
    pub fn new(parts: Parts) -> AppState {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

impl Parts {
    /// Desks' acknowledgements, by the token of a link (over the store and the links' key).
    pub fn acks(&self) -> crate::ack::Acknowledgements {
        crate::ack::Acknowledgements::new(self.store.clone(), self.links.clone())
    }
}

/// The parts of [`AppState`].
pub struct Parts {
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
    /// SMS delivery reports' and voice calls' links, for the channels enabled.
    pub callbacks: hooks::Callbacks,
    pub parse_options: ParseOptions,
    pub normalize: NormalizeRules,
    pub max_body_bytes: usize,
    pub telegram: Option<Arc<TelegramWeb>>,
    pub console: Arc<Console>,
    /// Signs draft buttons and Telegram account links.
    pub approval_links: crate::approval::ApprovalLinks,
    /// The probes as configured and this replica's view of them.
    pub probes: Arc<Probes>,
    /// The heartbeats: pings, failure reports, Watchdog signals, states.
    pub heartbeats: Arc<crate::heartbeat::Heartbeats>,
    /// The public status board, built at most every two seconds.
    pub status: Arc<StatusPage>,
    /// Citizens' sign-ups and preferences.
    pub citizens: Arc<crate::citizen::Citizens>,
    /// Incidents' affected lists, as they are uploaded.
    pub affected: Arc<crate::affected::AffectedLists>,
    /// Channels paused because their credentials were refused.
    pub pauses: crate::outbox::Pauses,
    /// Whether this replica leads, for `/metrics`.
    pub leadership: crate::cluster::Leadership,
    /// The store's counts for `/metrics`, read at most once a second (see `ops::metrics`).
    pub store_counts: ops::CountsCache,
}

pub use api::probes::Probes;
pub use console::session::Console;
pub use public::status_page::StatusPage;

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

/// Every route of the API contract (`contract.rs`), each with its description: those behind the
/// credentials check, and the others. The router serves them and the document describes them,
/// both from here.
fn contract_routes() -> (OpenApiRouter<AppState>, OpenApiRouter<AppState>) {
    let open = OpenApiRouter::new()
        .merge(hooks::routes())
        .merge(public::documented())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(contract::openapi_json));
    (api::routes(), open)
}

pub fn router(state: AppState, request_timeout: Duration) -> Router {
    let (guarded, open) = contract_routes();
    let (guarded, _) = guarded
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticated))
        .split_for_parts();
    let (open, _) = open.split_for_parts();
    Router::new()
        .merge(guarded)
        .merge(open)
        .merge(console::routes())
        .merge(public::routes())
        .fallback(not_found)
        .with_state(state)
        // Bodies are read with our own limit and a JSON 413; axum's default 2 MiB cap is off.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(request_timeout, deadline))
        .layer(CatchPanicLayer::new())
        .layer(traced())
        .layer(middleware::map_response(nosniff))
}

/// The trace layer: each request's span names its method and the route it took, never its
/// path or its query, which may carry a link's token (a desk's acknowledgement, an unsubscribe,
/// a sign-up's confirmation). tower-http's default span writes the whole URI to the log at
/// `debug`.
fn traced() -> TraceLayer<HttpMakeClassifier, fn(&Request) -> tracing::Span> {
    TraceLayer::new_for_http().make_span_with(request_span as fn(&Request) -> tracing::Span)
}

fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("(none)", MatchedPath::as_str);
    tracing::debug_span!(
        "request",
        method = %request.method(),
        route,
        version = ?request.version()
    )
}

/// Refuses a caller without valid credentials (`401`); what their roles allow is each handler's
/// business.
pub(crate) async fn authenticated(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Mutex;

    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    /// What the log received.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_link_token_in_the_path_never_reaches_the_log_even_at_trace() {
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let app: Router = Router::new()
            .route(
                "/ack/{token}",
                get(|| async { "ok" }).post(|| async { "ok" }),
            )
            .layer(traced());
        let token = "12.42.c2VjcmV0LXRva2VuLXNpZ24";
        for (method, uri) in [
            ("GET", format!("/ack/{token}")),
            ("POST", format!("/ack/{token}?t={token}")),
            ("GET", format!("/nowhere/{token}")),
        ] {
            let request = Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .unwrap();
            app.clone().oneshot(request).await.unwrap();
        }
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("/ack/{token}"), "{text}");
        assert!(text.contains("(none)"), "{text}");
        assert!(!text.contains("c2VjcmV0"), "{text}");
    }
}
