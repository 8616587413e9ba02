//! What every social network's double shares, whichever network it stands in for: one loopback
//! port serving every path through a single handler (bound on `127.0.0.1:0`, aborted when the
//! double is dropped), each request read whole into an [`Incoming`] and recorded as answered
//! (a [`Recorded`]), a queue of [`Scripted`] outcomes for the posting calls, a count of throttling
//! answers, and [`Double::wait_for`], which polls for posts and panics listing them and the
//! requests.
//!
//! A network says the rest by implementing [`Network`]: its options, its own state, what it
//! stores as a post, and how it answers a request (under the state's lock, which also covers
//! the request's record, so a test that sees a post also sees the request that made it).

// Shared by the integration tests, which each use part of it.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request as HttpRequest, State as AxumState};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// A scripted outcome for one posting call past authentication, taken in order. What the error
/// body and the throttle look like is the network's own (see each double).
#[derive(Clone, Debug)]
pub enum Scripted {
    /// Answer this status with the network's error body; nothing is posted.
    Fail(u16),
    /// The network's throttling answer; nothing is posted.
    Throttle,
    /// The post IS stored, but the answer is this status with the network's error body: a lost
    /// reply.
    PostThenFail(u16),
}

/// One request as received (path with its query string) and the HTTP status answered.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub body: String,
    /// Lower-case names, in arrival order.
    pub headers: Vec<(String, String)>,
    /// When it was answered.
    pub at: Instant,
}

/// What every double's state holds besides the network's own.
#[derive(Default)]
pub struct Common {
    /// Outcomes still to play, the next first.
    pub scripted: VecDeque<Scripted>,
    pub requests: Vec<Recorded>,
    /// Throttling answers given, as the network counts them.
    pub throttled: usize,
    /// The account's credentials are refused as the network refuses revoked ones (each network
    /// answers in its own words; see each double).
    pub revoked: bool,
}

/// A network the double stands in for.
pub trait Network: Sized + 'static {
    /// For messages: "Mastodon".
    const NAME: &'static str;
    /// The `Content-Type` of every answer.
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";
    type Options: Default + Send + Sync + 'static;
    type State: Send + 'static;
    type Post: Clone + Debug + Send;

    /// The state of a double just started.
    fn fresh() -> Self::State;
    fn common(state: &mut Self::State) -> &mut Common;
    /// Stored posts, oldest first.
    fn posts(state: &Self::State) -> Vec<Self::Post>;
    /// The answer to `req`, with the state locked.
    fn answer(shared: &Shared<Self>, state: &mut Self::State, req: &Incoming) -> Reply;
}

/// What the server and the test share.
pub struct Shared<N: Network> {
    pub options: N::Options,
    /// "http://127.0.0.1:PORT".
    pub base: String,
    state: Mutex<N::State>,
}

impl<N: Network> Shared<N> {
    fn lock(&self) -> MutexGuard<'_, N::State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A network's double, serving on a loopback port until dropped.
pub struct Double<N: Network> {
    shared: Arc<Shared<N>>,
    server: tokio::task::JoinHandle<()>,
}

impl<N: Network> Double<N> {
    pub async fn start() -> Double<N> {
        Double::start_with(N::Options::default()).await
    }

    pub async fn start_with(options: N::Options) -> Double<N> {
        let name = N::NAME;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind {name} double: {e}"));
        let addr = (listener.local_addr()).unwrap_or_else(|e| panic!("{name} double address: {e}"));
        let shared = Arc::new(Shared {
            options,
            base: format!("http://{addr}"),
            state: Mutex::new(N::fresh()),
        });
        let app = Router::new()
            .fallback(handle::<N>)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            (axum::serve(listener, app).await)
                .unwrap_or_else(|e| panic!("{name} double server: {e}"));
        });
        Double { shared, server }
    }

    /// "http://127.0.0.1:PORT" (no trailing slash).
    pub fn url(&self) -> String {
        self.shared.base.clone()
    }

    pub(super) fn state(&self) -> MutexGuard<'_, N::State> {
        self.shared.lock()
    }

    /// The next `n` posting calls past authentication get `what` (queued after whatever is
    /// already scripted).
    pub fn script(&self, n: usize, what: Scripted) {
        let mut state = self.state();
        (N::common(&mut state).scripted).extend(std::iter::repeat_n(what, n));
    }

    /// While `revoked`, the account's credentials are refused as the network refuses revoked
    /// ones (a token revoked, an app password deleted); then they work again.
    pub fn refuse_credentials(&self, revoked: bool) {
        N::common(&mut self.state()).revoked = revoked;
    }

    /// Stored posts, oldest first (including those whose reply was scripted to be lost).
    pub fn posts(&self) -> Vec<N::Post> {
        N::posts(&self.state())
    }

    pub fn requests(&self) -> Vec<Recorded> {
        N::common(&mut self.state()).requests.clone()
    }

    /// Throttling answers given so far (scripted or by rate).
    pub fn throttled(&self) -> usize {
        N::common(&mut self.state()).throttled
    }

    /// Waits until at least `n` posts are stored and returns them; panics after `timeout`,
    /// listing what was posted and requested.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<N::Post> {
        let deadline = Instant::now() + timeout;
        loop {
            let posts = self.posts();
            if posts.len() >= n {
                return posts;
            }
            if Instant::now() > deadline {
                let requests: Vec<_> = (self.requests().iter())
                    .map(|r| format!("{} {} → {}: {}", r.method, r.path, r.status, r.body))
                    .collect();
                panic!(
                    "expected {n} {} posts within {timeout:?}, got {}: {posts:#?}; \
                     requests: {requests:#?}",
                    N::NAME,
                    posts.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl<N: Network> Drop for Double<N> {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A request, read whole.
pub struct Incoming {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Incoming {
    async fn read(request: HttpRequest) -> Incoming {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, 8 << 20)
            .await
            .unwrap_or_default();
        Incoming {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            headers: parts.headers,
            body: body.to_vec(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `Authorization` split at its first space: the scheme and the credentials, trimmed.
    pub fn authorization(&self) -> Option<(&str, &str)> {
        let (scheme, credentials) = self.header("authorization")?.trim().split_once(' ')?;
        Some((scheme, credentials.trim()))
    }

    pub fn bearer(&self) -> Option<&str> {
        let (scheme, token) = self.authorization()?;
        scheme.eq_ignore_ascii_case("bearer").then_some(token)
    }

    pub fn query_params(&self) -> HashMap<String, String> {
        form(self.query.as_bytes())
    }

    fn record(&self, status: u16) -> Recorded {
        let path = match self.query.as_str() {
            "" => self.path.clone(),
            query => format!("{}?{query}", self.path),
        };
        let headers = (self.headers.iter())
            .map(|(n, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.as_str().to_owned(), value)
            })
            .collect();
        Recorded {
            method: self.method.clone(),
            path,
            status,
            body: String::from_utf8_lossy(&self.body).into_owned(),
            headers,
            at: Instant::now(),
        }
    }
}

/// `application/x-www-form-urlencoded` pairs, the last of a name winning.
pub fn form(bytes: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

pub type Headers = Vec<(&'static str, String)>;

/// An answer: status, extra headers (lower-case names), JSON body.
pub struct Reply {
    pub status: u16,
    pub headers: Headers,
    pub body: Value,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        let headers = Vec::new();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn with(mut self, headers: Headers) -> Reply {
        self.headers.extend(headers);
        self
    }

    fn into_response(self, content_type: &'static str) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let content_type = [(header::CONTENT_TYPE, content_type)];
        let mut response = (status, content_type, self.body.to_string()).into_response();
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// An answer that never arrives whole: the status line may go out, then the connection is cut
/// before the body ends, as when a provider acted on a request and the network lost its reply.
/// The SMS and Telegram doubles use it too.
pub fn lost_reply() -> Response {
    let cut = std::io::Error::other("reply lost on the way");
    let body = axum::body::Body::from_stream(tokio_stream::once(Err::<axum::body::Bytes, _>(cut)));
    let mut response = Response::new(body);
    (response.headers_mut()).insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Every request: read it, answer it and record it under one lock, send the answer.
async fn handle<N: Network>(
    AxumState(shared): AxumState<Arc<Shared<N>>>,
    request: HttpRequest,
) -> Response {
    let req = Incoming::read(request).await;
    let reply = {
        let mut state = shared.lock();
        let reply = N::answer(&shared, &mut state, &req);
        N::common(&mut state)
            .requests
            .push(req.record(reply.status));
        reply
    };
    reply.into_response(N::CONTENT_TYPE)
}
