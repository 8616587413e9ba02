//! The HTTP server under hostile or careless clients: connections that send half a header and
//! wait, kept-alive connections left idle, bodies trickled in, anonymous callers with malformed
//! paths, and the headers every answer carries.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Raises this test process's soft limit on open files to its hard limit: the attack below holds
/// more sockets than a default soft limit of 1,024 allows.
fn raise_own_open_files() {
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// A client that opens a new connection for every request, as a monitor's probe does.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap()
}

/// Whether the server has closed `stream`: end of file or an error, not bytes or silence.
async fn closed(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 512];
    matches!(
        tokio::time::timeout(wait, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_ingest_answer_while_1100_connections_send_half_a_header() {
    raise_own_open_files();
    let smtp = SmtpServer::start();
    // The usual `ulimit -n 1024`, hard limit included, so the server cannot raise it.
    let app = TestApp::spawn_limited(smtp.addr().port(), "", &[], Some(1024)).await;
    let started = Instant::now();
    let mut attackers = Vec::with_capacity(1100);
    for _ in 0..1100 {
        // Connections beyond the cap may be closed before the half header is written.
        if let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(app.addr)).await
        {
            let _ = s
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: banditore\r\nUser-Agent: slow")
                .await;
            attackers.push(s);
        }
    }
    let opened = started.elapsed();
    // While they wait (well within the 10 s header read timeout), probes and monitors get in.
    let client = fresh_client();
    let mut healthz = Vec::new();
    let mut ingest = Vec::new();
    for round in 0..20 {
        let t = Instant::now();
        let resp = client.get(app.url("/healthz")).send().await;
        let status = resp
            .as_ref()
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string());
        assert_eq!(
            status,
            Ok(200),
            "/healthz in round {round}; log:\n{}",
            app.logs()
        );
        healthz.push(t.elapsed());
        if round % 4 == 0 {
            let body = alertmanager("firing", "CupDown", &[("service", "cup")], "CUP giù");
            let t = Instant::now();
            let resp = client
                .post(app.url("/api/v1/signals/alertmanager"))
                .bearer_auth(INGEST_TOKEN)
                .json(&body)
                .send()
                .await;
            let status = resp
                .as_ref()
                .map(|r| r.status().as_u16())
                .map_err(|e| e.to_string());
            assert_eq!(status, Ok(202), "ingest in round {round}");
            ingest.push(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let held = started.elapsed();
    assert!(
        held < Duration::from_secs(10),
        "the attack outlived the header read timeout ({held:?}): the test proves nothing"
    );
    let slowest_healthz = healthz.iter().max().copied().unwrap_or_default();
    let slowest_ingest = ingest.iter().max().copied().unwrap_or_default();
    eprintln!(
        "1,100 half headers opened in {opened:?}; /healthz slowest {slowest_healthz:?} \
         (median {:?}), ingest slowest {slowest_ingest:?}",
        {
            let mut h = healthz.clone();
            h.sort();
            h[h.len() / 2]
        }
    );
    assert!(slowest_healthz < Duration::from_secs(1), "{healthz:?}");
    assert!(slowest_ingest < Duration::from_secs(2), "{ingest:?}");
    // The server kept to its cap: the connections beyond it were closed, not left to hold files.
    let mut still_open = 0;
    for s in &mut attackers {
        if !closed(s, Duration::from_millis(1)).await {
            still_open += 1;
        }
    }
    eprintln!("{still_open} of them still open after the checks");
    assert!(
        still_open <= 512,
        "{still_open} slow connections still held, over the default cap of 512"
    );
    assert!(
        !app.logs().contains("Too many open files"),
        "{}",
        app.logs()
    );
}

#[tokio::test]
async fn half_sent_headers_and_idle_kept_alive_connections_are_closed_after_10s() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    let started = Instant::now();
    let mut half = TcpStream::connect(app.addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: banditore\r\n")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: banditore\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"ok\n") {
        let n = idle.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    let answered = Instant::now();
    let (half_closed, idle_closed) = tokio::join!(
        async {
            closed(&mut half, Duration::from_secs(14)).await;
            started.elapsed()
        },
        async {
            closed(&mut idle, Duration::from_secs(14)).await;
            answered.elapsed()
        },
    );
    assert!(
        half_closed >= Duration::from_secs(9) && half_closed < Duration::from_secs(12),
        "a half header was held {half_closed:?}"
    );
    assert!(
        idle_closed >= Duration::from_secs(9) && idle_closed < Duration::from_secs(12),
        "an idle connection was held {idle_closed:?} after its answer"
    );
}

#[tokio::test]
async fn a_body_sent_slower_than_the_request_timeout_gets_408_in_json() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[("BANDITORE__SERVER__REQUEST_TIMEOUT", "2s")]).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(
        format!(
            "POST /api/v1/signals/alertmanager HTTP/1.1\r\nHost: banditore\r\n\
             Authorization: Bearer {INGEST_TOKEN}\r\nContent-Type: application/json\r\n\
             Content-Length: 1000\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    // One byte every 100 ms: a thousand would take 100 s.
    while started.elapsed() < Duration::from_secs(8) {
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) if answer.is_empty() => {
                let _ = s.write_all(b" ").await;
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    assert!(head.starts_with("HTTP/1.1 408"), "{text:?}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    let json: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert!(
        json["error"].as_str().unwrap_or_default().contains("2s"),
        "{json}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn anonymous_callers_get_401_before_paths_and_queries_are_read() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    for path in [
        "/api/v1/incidents/not-a-number",
        "/api/v1/incidents/not-a-number/deliveries",
        "/api/v1/incidents?limit=many",
        "/api/v1/drafts/x",
        "/api/v1/audit?incident=x",
        "/api/v1/subscribers/x",
        "/api/v1/signals/uptime-kuma?msg=a&msg=b",
    ] {
        let resp = app.get(path, None).await;
        assert_eq!(resp.status(), 401, "{path}");
        assert_eq!(resp.headers()["content-type"], "application/json", "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "missing or invalid credentials", "{path}");
    }
    // With credentials, a malformed path or query is a 400 in the usual JSON.
    for (path, token) in [
        ("/api/v1/incidents/not-a-number", VIEWER_TOKEN),
        ("/api/v1/incidents?limit=many", VIEWER_TOKEN),
        ("/api/v1/signals/uptime-kuma?msg=a&msg=b", INGEST_TOKEN),
    ] {
        let resp = app.get(path, Some(token)).await;
        assert_eq!(resp.status(), 400, "{path}");
        assert_eq!(resp.headers()["content-type"], "application/json", "{path}");
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"].is_string(), "{path}: {body}");
    }
}

#[tokio::test]
async fn an_unknown_feed_is_not_echoed_and_every_answer_says_nosniff() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    let resp = app
        .get(
            "/status/services/%3Cscript%3Ealert(1)%3C%2Fscript%3E/feed.atom",
            None,
        )
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    let body = resp.text().await.unwrap();
    assert!(!body.contains("script"), "{body}");
    for (path, token) in [
        ("/healthz", None),
        ("/readyz", None),
        ("/metrics", None),
        ("/status", None),
        ("/status/cap/x.xml", None),
        ("/status/incidents/x", None),
        ("/no/such/page", None),
        ("/api/v1/incidents", Some(VIEWER_TOKEN)),
        ("/api/v1/incidents", None),
        ("/console/login", None),
    ] {
        let resp = app.get(path, token).await;
        assert_eq!(
            resp.headers()
                .get("x-content-type-options")
                .map(|v| v.to_str().unwrap().to_owned()),
            Some("nosniff".to_owned()),
            "{path}: {}",
            resp.status()
        );
    }
}
