//! The API contract: the document the binary serves (without credentials) is the repository's,
//! and the checker that every test's answers go through refuses what contradicts it.

use std::io::{Read, Write};

use serde_json::{Value, json};

use crate::support::contract::{Forwarder, contract};
use crate::support::*;

#[tokio::test]
async fn the_document_is_served_without_credentials_and_is_the_repository_copy() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    let resp = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let served = resp.text().await.unwrap();
    let kept =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json")).unwrap();
    assert!(
        served == kept,
        "docs/openapi.json is not what the binary serves"
    );
    let doc: Value = serde_json::from_str(&served).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    // It describes, and holds nothing of the deployment: no token, no address.
    for secret in [
        ADMIN_TOKEN,
        INGEST_TOKEN,
        "banditore.asl.example",
        "127.0.0.1",
    ] {
        assert!(!served.contains(secret), "the document names `{secret}`");
    }
    // Every API operation names its security; the answers so far kept to the contract.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(op.get("security").is_some(), "{method} {path}: no security");
        }
    }
    assert_eq!(app.take_contract_violations(), Vec::<String>::new());
}

#[test]
fn the_checker_refuses_what_contradicts_the_contract() {
    let c = contract();
    let json = Some("application/json");
    // As documented.
    assert_eq!(
        c.check(
            "GET",
            "/api/v1/incidents",
            200,
            json,
            br#"{"incidents": []}"#
        ),
        None
    );
    assert_eq!(
        c.check(
            "GET",
            "/api/v1/incidents/7",
            404,
            json,
            br#"{"error": "incident 7 not found"}"#
        ),
        None
    );
    assert_eq!(
        c.check("DELETE", "/api/v1/silences/3", 204, None, b""),
        None
    );
    // Outside the API nothing is checked.
    assert_eq!(
        c.check("GET", "/status", 200, Some("text/html"), b"<html>"),
        None
    );
    // A field of the wrong type, a required field missing, a status not documented, a body
    // where none is documented, a path and a method that are not in the contract.
    let wrong: Vec<(&str, &str, u16, &[u8], &str)> = vec![
        (
            "GET",
            "/api/v1/incidents",
            200,
            br#"{"incidents": [{"id": "seven"}]}"#,
            "/incidents/0",
        ),
        ("GET", "/api/v1/incidents", 200, br#"{}"#, "incidents"),
        (
            "GET",
            "/api/v1/incidents/7",
            404,
            br#"{"message": "gone"}"#,
            "error",
        ),
        (
            "GET",
            "/api/v1/incidents",
            418,
            br#"{"error": "teapot"}"#,
            "does not document 418",
        ),
        ("DELETE", "/api/v1/silences/3", 204, b"{}", "no body"),
        ("GET", "/api/v1/incidents", 200, b"not json", "not JSON"),
        (
            "GET",
            "/api/v1/nowhere/7",
            200,
            br#"{}"#,
            "not in the contract",
        ),
        (
            "PATCH",
            "/api/v1/audit",
            200,
            br#"{}"#,
            "not in the contract",
        ),
    ];
    for (method, path, status, body, expected) in wrong {
        let problem = c
            .check(method, path, status, json, body)
            .unwrap_or_else(|| panic!("{method} {path} {status} was let through"));
        assert!(problem.contains(expected), "{problem}");
    }
    let text = c.check("GET", "/api/v1/incidents", 200, Some("text/plain"), b"{}");
    assert!(text.is_some_and(|p| p.contains("content type")));
}

/// The forwarder every test goes through really checks: an upstream answering against the
/// contract is caught, and its answer still reaches the caller unchanged.
#[tokio::test]
async fn the_forwarder_catches_an_answer_that_contradicts_the_contract() {
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let body = json!({"incidents": [{"id": "seven", "title": 3}]}).to_string();
    let answer = body.clone();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = upstream.accept() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    let forwarder = Forwarder::start();
    *forwarder.upstream.lock().unwrap() = upstream_addr;
    let resp = reqwest::Client::new()
        .get(format!(
            "http://{}/api/v1/incidents?limit=1",
            forwarder.addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), body);
    let violations = forwarder.violations.lock().unwrap().clone();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("GET /api/v1/incidents answered 200")
            && violations[0].contains("/incidents/0/id"),
        "{}",
        violations[0]
    );
}
