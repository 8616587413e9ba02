//! The API contract, checked on every answer the tests receive: a forwarder on loopback in front
//! of the binary, through which `TestApp` sends every request. Each answer under `/api/v1/` is
//! compared with `docs/openapi.json` (which a unit test keeps equal to what the binary serves):
//! its path and method must be described, its status documented for them, and a JSON body must
//! validate against the schema of that status (JSON Schema 2020-12, as OpenAPI 3.1 says, with
//! `$ref`s into the document's components). The answer still reaches the test unchanged; what
//! contradicts the contract is kept, printed, and fails the test when its `TestApp` is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

/// The contract, as the repository holds it.
pub struct Contract {
    document: Value,
    /// Each path template, as a pattern of segments (`None` for a `{parameter}`).
    paths: Vec<(String, Vec<Option<String>>)>,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

static CONTRACT: LazyLock<Contract> = LazyLock::new(|| {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    let text = std::fs::read_to_string(path).expect("docs/openapi.json");
    Contract::new(serde_json::from_str(&text).expect("docs/openapi.json is JSON"))
});

/// The contract of `docs/openapi.json`, read once for every test.
pub fn contract() -> &'static Contract {
    &CONTRACT
}

impl Contract {
    pub fn new(document: Value) -> Contract {
        let paths = document["paths"]
            .as_object()
            .map(|paths| {
                paths
                    .keys()
                    .map(|template| {
                        let segments = template
                            .split('/')
                            .map(|s| (!s.starts_with('{')).then(|| s.to_owned()))
                            .collect();
                        (template.clone(), segments)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Contract {
            document,
            paths,
            validators: Mutex::new(HashMap::new()),
        }
    }

    /// The documented template of `path`, literal segments preferred over parameters (so that
    /// `/api/v1/drafts/{id}` does not take `/api/v1/drafts`' neighbours).
    fn template(&self, path: &str) -> Option<&str> {
        let segments: Vec<&str> = path.split('/').collect();
        self.paths
            .iter()
            .filter(|(_, pattern)| {
                pattern.len() == segments.len()
                    && pattern
                        .iter()
                        .zip(&segments)
                        .all(|(p, s)| p.as_deref().is_none_or(|p| p == *s))
            })
            .min_by_key(|(_, pattern)| pattern.iter().filter(|p| p.is_none()).count())
            .map(|(template, _)| template.as_str())
    }

    /// Follows a `$ref` to the component it names.
    fn resolve<'a>(&'a self, mut value: &'a Value) -> &'a Value {
        while let Some(reference) = value.get("$ref").and_then(Value::as_str) {
            let Some(pointer) = reference.strip_prefix('#') else {
                break;
            };
            match self.document.pointer(pointer) {
                Some(target) => value = target,
                None => break,
            }
        }
        value
    }

    /// What contradicts the contract in an answer to `method path` (the path without its query);
    /// `None` when it keeps to it. Outside `/api/v1/` nothing is checked.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Option<String> {
        if !path.starts_with("/api/v1/") && path != "/api/v1" {
            return None;
        }
        let here = format!("{method} {path} answered {status}");
        let Some(template) = self.template(path) else {
            // The router's fallback, for paths that are no endpoint at all.
            if status == 404 {
                return self.body_against(&here, "#/components/schemas/ErrorBody", body);
            }
            return Some(format!("{here}: the path is not in the contract"));
        };
        let Some(operation) = self.document["paths"][template].get(method.to_ascii_lowercase())
        else {
            // axum's own answer to a method the path does not have.
            if status == 405 {
                return None;
            }
            return Some(format!(
                "{here}: {method} {template} is not in the contract"
            ));
        };
        let responses = &operation["responses"];
        let Some((key, given)) = [
            status.to_string(),
            format!("{}XX", status / 100),
            "default".into(),
        ]
        .into_iter()
        .find_map(|key| responses.get(&key).map(|r| (key, r))) else {
            return Some(format!(
                "{here}: the contract does not document {status} for {method} {template} \
                 (it documents {})",
                responses
                    .as_object()
                    .map(|r| r.keys().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            ));
        };
        // A response given by reference is one of the components' (`#/components/responses/…`).
        let base = match given.get("$ref").and_then(Value::as_str) {
            Some(reference) => reference.trim_start_matches('#').to_owned(),
            None => format!(
                "/paths/{}/{}/responses/{key}",
                escape(template),
                method.to_ascii_lowercase()
            ),
        };
        let response = self.resolve(given);
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            return (!body.is_empty()).then(|| {
                format!(
                    "{here}: the contract documents no body for {status}, and one came ({} bytes)",
                    body.len()
                )
            });
        };
        let media = content_type
            .and_then(|c| c.split(';').next())
            .map(|c| c.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let Some((documented, entry)) = content
            .iter()
            .find(|(m, _)| m.split(';').next().is_some_and(|m| m.trim() == media))
        else {
            return Some(format!(
                "{here}: content type `{media}` is not one the contract documents for {status} \
                 ({})",
                content.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        };
        if !documented.contains("json") || entry.get("schema").is_none() {
            return None;
        }
        let pointer = format!("#{base}/content/{}/schema", escape(documented));
        self.body_against(&here, &pointer, body)
    }

    /// What is wrong with `body` against the schema at `pointer` in the document.
    fn body_against(&self, here: &str, pointer: &str, body: &[u8]) -> Option<String> {
        let instance: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return Some(format!("{here}: the body is not JSON ({e})")),
        };
        let validator = match self.validator(pointer) {
            Ok(v) => v,
            Err(e) => {
                return Some(format!(
                    "{here}: the schema at {pointer} does not compile: {e}"
                ));
            }
        };
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("at `{}`: {e}", e.instance_path()))
            .collect();
        (!errors.is_empty()).then(|| {
            format!(
                "{here}: the body contradicts the schema at {pointer}:\n  {}\nbody: {}",
                errors.join("\n  "),
                String::from_utf8_lossy(body)
            )
        })
    }

    /// The validator of the schema at `pointer`, compiled once: the schema itself, with the
    /// document's components beside it so that its `$ref`s resolve.
    fn validator(&self, pointer: &str) -> Result<Arc<jsonschema::Validator>, String> {
        if let Some(v) = self.validators.lock().unwrap().get(pointer) {
            return Ok(v.clone());
        }
        let schema = serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$ref": pointer,
            "components": self.document["components"],
            "paths": self.document["paths"],
        });
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&schema)
            .map_err(|e| e.to_string())?;
        let validator = Arc::new(validator);
        self.validators
            .lock()
            .unwrap()
            .insert(pointer.to_owned(), validator.clone());
        Ok(validator)
    }
}

/// One reference token of a JSON pointer, as a URI fragment may carry it.
fn escape(token: &str) -> String {
    token
        .replace('~', "~0")
        .replace('/', "~1")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// A forwarder on loopback to the binary at `upstream` (which may change when the binary is
/// restarted), checking each answer against the contract; what contradicts it is pushed to
/// `violations`. It runs on a thread of its own, so that a test blocking its runtime does not
/// stall it, and ends when `stop` is dropped.
pub struct Forwarder {
    pub addr: SocketAddr,
    pub upstream: Arc<Mutex<SocketAddr>>,
    pub violations: Arc<Mutex<Vec<String>>>,
    _stop: std::sync::mpsc::Sender<()>,
}

impl Forwarder {
    pub fn start() -> Forwarder {
        let upstream = Arc::new(Mutex::new(SocketAddr::from(([127, 0, 0, 1], 0))));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the forwarder");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("forwarder address");
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (up, seen) = (upstream.clone(), violations.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("forwarder runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                // One client per caller's address, each connecting from that address: the binary
                // sees the test's 127.0.0.x as it would without the forwarder (per-address limits).
                let mut clients: HashMap<std::net::IpAddr, Client<HttpConnector, ProxyBody>> =
                    HashMap::new();
                let (done_tx, mut done) = tokio::sync::oneshot::channel::<()>();
                std::thread::spawn(move || {
                    let _ = stopped.recv();
                    let _ = done_tx.send(());
                });
                loop {
                    let accepted = tokio::select! {
                        a = listener.accept() => a,
                        _ = &mut done => break,
                    };
                    let Ok((stream, peer)) = accepted else {
                        continue;
                    };
                    let client = clients
                        .entry(peer.ip())
                        .or_insert_with(|| {
                            let mut connector = HttpConnector::new();
                            connector.set_local_address(Some(peer.ip()));
                            Client::builder(TokioExecutor::new()).build(connector)
                        })
                        .clone();
                    let (up, seen) = (up.clone(), seen.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |request| {
                            forward(request, client.clone(), up.clone(), seen.clone())
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        Forwarder {
            addr,
            upstream,
            violations,
            _stop: stop,
        }
    }
}

async fn forward(
    request: Request<Incoming>,
    client: Client<HttpConnector, ProxyBody>,
    upstream: Arc<Mutex<SocketAddr>>,
    violations: Arc<Mutex<Vec<String>>>,
) -> Result<Response<ProxyBody>, hyper::Error> {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let target = *upstream.lock().unwrap();
    let (mut parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    parts.uri = format!("http://{target}{path_and_query}")
        .parse()
        .expect("upstream URI");
    // The body is read whole before it is sent on, in the framing the test chose (a length, or
    // chunks): sent at once, it is in the binary's hands before the binary answers, even when it
    // answers early (a 413 while the body still arrives), and the answer is not lost to a write.
    let chunked = !parts.headers.contains_key(hyper::header::CONTENT_LENGTH);
    let whole = body.collect().await?.to_bytes();
    let body: ProxyBody = if chunked && !whole.is_empty() {
        let frames =
            futures_util::stream::iter([Ok::<_, hyper::Error>(hyper::body::Frame::data(whole))]);
        http_body_util::StreamBody::new(frames).boxed()
    } else {
        Full::new(whole).map_err(|never| match never {}).boxed()
    };
    let request = Request::from_parts(parts, body);
    let response = match client.request(request).await {
        Ok(r) => r,
        Err(e) => {
            // The binary closed the connection (a test killed it, or it ended a refused body):
            // the test sees a reset, as it would without the forwarder.
            let mut response = Response::new(
                Full::new(Bytes::from(format!("forwarder: {e}")))
                    .map_err(|never| match never {})
                    .boxed(),
            );
            *response.status_mut() = hyper::StatusCode::BAD_GATEWAY;
            return Ok(response);
        }
    };
    if !path.starts_with("/api/v1") {
        return Ok(response.map(|b| b.boxed()));
    }
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let content_type = parts
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if let Some(problem) =
        contract().check(&method, &path, parts.status.as_u16(), content_type, &bytes)
    {
        eprintln!("API CONTRACT: {problem}");
        violations.lock().unwrap().push(problem);
    }
    Ok(Response::from_parts(
        parts,
        Full::new(bytes).map_err(|never| match never {}).boxed(),
    ))
}
