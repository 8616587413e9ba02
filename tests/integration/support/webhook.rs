//! A webhook receiver as the Standard Webhooks specification describes one: every request's
//! signature verified with the reference library (`standardwebhooks`, which also refuses a
//! timestamp more than five minutes away), answered `401` when it does not verify, otherwise with
//! the next scripted answer (`503` with a `Retry-After`, `410`, an answer held until the sender
//! gives up…) or `200`. Everything it receives is recorded, with the time it arrived and what it
//! answered, for the assertions.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub id: String,
    pub timestamp: i64,
    pub signature: String,
    pub content_type: String,
    pub user_agent: String,
    pub body: Vec<u8>,
    pub headers: HeaderMap,
    /// What the reference library said of the signature.
    pub verified: Result<(), String>,
    pub at: Instant,
    /// The status answered, or that would have been: a held answer is lost to the sender.
    pub answered: u16,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a webhook body is JSON")
    }
}

/// A scripted answer: its status and headers; status 0 takes the request and holds the answer
/// for `HOLD`, past the sender's timeout, then answers 200 to nobody.
type Answer = (u16, Vec<(&'static str, String)>);

/// The name, among a scripted answer's headers, of its body instead.
pub const BODY: &str = "body";

/// How long a lost answer is held.
const HOLD: Duration = Duration::from_secs(3);

#[derive(Default)]
struct Shared {
    secret: Mutex<Option<String>>,
    script: Mutex<VecDeque<Answer>>,
    received: Mutex<Vec<Received>>,
}

pub struct WebhookReceiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let verified = match shared.secret.lock().unwrap().as_deref() {
        Some(secret) => standardwebhooks::Webhook::new(secret)
            .map_err(|e| e.to_string())
            .and_then(|w| w.verify(&body, &headers).map_err(|e| e.to_string())),
        None => Err("the receiver has no secret yet".into()),
    };
    let refused = verified.is_err();
    let next = if refused {
        None
    } else {
        shared.script.lock().unwrap().pop_front()
    };
    let answered = match (&next, refused) {
        (_, true) => 401,
        (Some((0, _)), _) | (None, _) => 200,
        (Some((status, _)), _) => *status,
    };
    shared.received.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp").parse().unwrap_or(0),
        signature: header("webhook-signature"),
        content_type: header("content-type"),
        user_agent: header("user-agent"),
        body: body.to_vec(),
        headers: headers.clone(),
        verified,
        at: Instant::now(),
        answered,
    });
    if refused {
        return (StatusCode::UNAUTHORIZED, "signature does not verify").into_response();
    }
    match next {
        Some((0, _)) => {
            tokio::time::sleep(HOLD).await;
            (StatusCode::OK, "").into_response()
        }
        Some((status, extra)) => {
            // A `body` entry is the answer's body, as Slack writes its error codes; the rest
            // are headers.
            let body = extra
                .iter()
                .find(|(name, _)| *name == BODY)
                .map_or_else(|| "scripted".to_owned(), |(_, v)| v.clone());
            let mut resp = (StatusCode::from_u16(status).unwrap(), body).into_response();
            for (name, value) in extra.into_iter().filter(|(name, _)| *name != BODY) {
                resp.headers_mut().insert(name, value.parse().unwrap());
            }
            resp
        }
        None => (StatusCode::OK, "").into_response(),
    }
}

impl WebhookReceiver {
    pub async fn start() -> WebhookReceiver {
        let shared = Arc::new(Shared::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the webhook receiver");
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("webhook receiver server");
        });
        WebhookReceiver {
            addr,
            shared,
            server,
        }
    }

    /// The receiver's URL at `path`, by the name `localhost` (resolved by Banditore at each send).
    pub fn url(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.addr.port())
    }

    /// The `whsec_…` secret signatures are checked with.
    pub fn set_secret(&self, secret: &str) {
        *self.shared.secret.lock().unwrap() = Some(secret.to_owned());
    }

    /// The next requests get these statuses (and headers), in order; then `200`.
    pub fn script(&self, answers: &[(u16, &[(&'static str, &str)])]) {
        let mut script = self.shared.script.lock().unwrap();
        for (status, headers) in answers {
            script.push_back((
                *status,
                headers.iter().map(|(n, v)| (*n, (*v).to_owned())).collect(),
            ));
        }
    }

    /// Requests it took: answered with a 2xx, or held until the sender gave up.
    pub fn taken(&self) -> usize {
        self.received()
            .iter()
            .filter(|r| (200..300).contains(&r.answered))
            .count()
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits (15 s at most) until `n` requests have arrived, and returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} webhook(s) within 15 s, {n} expected: {got:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
