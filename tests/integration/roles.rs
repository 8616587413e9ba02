//! Who may call what: every API endpoint against every kind of caller, with the roles the HTTP API
//! reference (`docs/src/reference/http-api.md`) documents (`admin` may do everything; `operator`
//! incidents, silences and subscribers; `communicator` incidents and drafts; `viewer` reads; `ingest`
//! posts signals). A caller the endpoint does not allow gets `403`, a stranger `401`, before anything
//! else is looked at.

use reqwest::Method;

use crate::support::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Needs {
    Ingest,
    Read,
    Incidents,
    Subscribers,
    Drafts,
    Admin,
}

/// The roles that may call an endpoint needing `needs`, as the HTTP API reference's table says.
fn allowed(needs: Needs) -> &'static [&'static str] {
    match needs {
        Needs::Ingest => &["ingest", "admin"],
        Needs::Read => &["viewer", "operator", "communicator", "admin"],
        Needs::Incidents => &["operator", "communicator", "admin"],
        Needs::Subscribers => &["operator", "admin"],
        Needs::Drafts => &["communicator", "admin"],
        Needs::Admin => &["admin"],
    }
}

#[tokio::test]
async fn every_endpoint_answers_each_kind_of_caller_as_documented() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    let endpoints: &[(Method, &str, Needs)] = &[
        (Method::POST, "/api/v1/signals/alertmanager", Needs::Ingest),
        (Method::POST, "/api/v1/signals/grafana", Needs::Ingest),
        (Method::POST, "/api/v1/signals/uptime-kuma", Needs::Ingest),
        (Method::POST, "/api/v1/signals/generic", Needs::Ingest),
        (Method::GET, "/api/v1/incidents", Needs::Read),
        (Method::GET, "/api/v1/incidents/999", Needs::Read),
        (Method::GET, "/api/v1/incidents/999/deliveries", Needs::Read),
        (
            Method::GET,
            "/api/v1/incidents/999/acknowledgements",
            Needs::Read,
        ),
        (Method::GET, "/api/v1/incidents/999/ledger", Needs::Read),
        (Method::POST, "/api/v1/incidents", Needs::Incidents),
        (
            Method::POST,
            "/api/v1/incidents/999/updates",
            Needs::Incidents,
        ),
        (Method::GET, "/api/v1/subscribers", Needs::Subscribers),
        (Method::POST, "/api/v1/subscribers", Needs::Subscribers),
        (Method::GET, "/api/v1/subscribers/999", Needs::Subscribers),
        (Method::PATCH, "/api/v1/subscribers/999", Needs::Subscribers),
        (
            Method::GET,
            "/api/v1/subscribers/999/deliveries",
            Needs::Subscribers,
        ),
        (
            Method::DELETE,
            "/api/v1/subscribers/999",
            Needs::Subscribers,
        ),
        (
            Method::POST,
            "/api/v1/subscribers/999/telegram-invite",
            Needs::Subscribers,
        ),
        (Method::GET, "/api/v1/drafts", Needs::Read),
        (Method::GET, "/api/v1/drafts/999", Needs::Read),
        (Method::PUT, "/api/v1/drafts/999", Needs::Drafts),
        (Method::POST, "/api/v1/drafts/999/approve", Needs::Drafts),
        (Method::POST, "/api/v1/drafts/999/reject", Needs::Drafts),
        (Method::GET, "/api/v1/audit", Needs::Read),
        (Method::GET, "/api/v1/probes", Needs::Read),
        (Method::GET, "/api/v1/silences", Needs::Read),
        (Method::POST, "/api/v1/silences", Needs::Incidents),
        (Method::DELETE, "/api/v1/silences/999", Needs::Incidents),
        (Method::GET, "/api/v1/heartbeats", Needs::Read),
        (Method::GET, "/api/v1/heartbeats/nope/state", Needs::Read),
        (Method::GET, "/api/v1/heartbeats/nope", Needs::Ingest),
        (Method::POST, "/api/v1/heartbeats/nope", Needs::Ingest),
        (Method::POST, "/api/v1/heartbeats/nope/fail", Needs::Ingest),
        (Method::POST, "/api/v1/heartbeats", Needs::Admin),
        (Method::PUT, "/api/v1/heartbeats/nope", Needs::Admin),
        (Method::PATCH, "/api/v1/heartbeats/nope", Needs::Admin),
        (Method::DELETE, "/api/v1/heartbeats/nope", Needs::Admin),
    ];
    let callers: &[(&str, Option<&str>)] = &[
        ("stranger", None),
        ("wrong token", Some("not-a-token-of-this-deployment-0000")),
        ("ingest", Some(INGEST_TOKEN)),
        ("viewer", Some(VIEWER_TOKEN)),
        ("operator", Some(OPERATOR_TOKEN)),
        ("communicator", Some(COMMUNICATOR_TOKEN)),
        ("admin", Some(ADMIN_TOKEN)),
    ];
    let http = reqwest::Client::new();
    let mut wrong = Vec::new();
    for (method, path, needs) in endpoints {
        for (who, token) in callers {
            let mut request = http
                .request(method.clone(), app.url(path))
                .header("content-type", "application/json")
                .body("{}");
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let status = request.send().await.unwrap().status().as_u16();
            let expected_ok = allowed(*needs).contains(who);
            let fine = match token {
                None => status == 401,
                Some(_) if !callers[2..].iter().any(|(w, _)| w == who) => status == 401,
                Some(_) if expected_ok => status != 401 && status != 403,
                Some(_) => status == 403,
            };
            if !fine {
                wrong.push(format!("{method} {path} as {who}: {status}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
