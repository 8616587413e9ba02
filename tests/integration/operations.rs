//! What operators run beside the service: `backup` while it serves and writes, `healthcheck`,
//! the service manager's notifications (`sd_notify`), and the completions and manual page the
//! Debian package ships; and the deployment files in `packaging/` checking out.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::Connection;

use crate::support::*;

fn run(args: &[&str], dir: &std::path::Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_banditore"))
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .expect("run banditore");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn post_incident(app: &TestApp, n: usize) -> reqwest::StatusCode {
    let name = format!("Down{n}");
    let service = format!("service-{n}");
    let body = alertmanager(
        "firing",
        &name,
        &[("service", service.as_str())],
        &format!("{service} giù"),
    );
    app.post_json("/api/v1/signals/alertmanager", Some(INGEST_TOKEN), &body)
        .await
        .status()
}

/// The titles of every incident the service lists (each incident here has its own).
async fn incident_titles(app: &TestApp) -> BTreeSet<String> {
    let listed = app
        .get_json("/api/v1/incidents?limit=500", VIEWER_TOKEN)
        .await;
    listed["incidents"]
        .as_array()
        .expect("incidents")
        .iter()
        .map(|i| i["title"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_backup_taken_while_signals_arrive_restores_to_a_serving_store() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    for n in 0..5 {
        assert_eq!(post_incident(&app, n).await, 202);
    }
    let before = eventually(|| incident_titles(&app), |t| t.len() == 5).await;

    // Signals keep arriving, each a new incident, for as long as the backup runs.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let writing = writing.clone();
        let base = app.base.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut posted = 0usize;
            while writing.load(Ordering::Relaxed) {
                let n = 1000 + posted;
                let body = alertmanager(
                    "firing",
                    &format!("Busy{n}"),
                    &[("service", &format!("busy-{n}"))],
                    &format!("busy-{n} occupato"),
                );
                let status = http
                    .post(format!("{base}/api/v1/signals/alertmanager"))
                    .bearer_auth(INGEST_TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .expect("post")
                    .status();
                assert_eq!(status, 202);
                posted += 1;
            }
            posted
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let backup = app.dir.path().join("copy.db");
    let args = ["backup".to_owned(), backup.to_str().unwrap().to_owned()];
    let (config, dir) = (app.config.clone(), app.dir.path().to_owned());
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = ["--config", config.to_str().unwrap()]
            .into_iter()
            .chain(args.iter().map(String::as_str))
            .collect();
        run(&args, &dir, &[])
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    writing.store(false, Ordering::Relaxed);
    let posted = writer.await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("integrity checked"), "{out}");
    assert!(posted > 0, "no signal arrived during the backup");

    // Asked again, it refuses to overwrite the copy.
    let (code, _, err) = app.cli(&["backup", backup.to_str().unwrap()], "");
    assert_eq!(code, 1);
    assert!(err.contains("never replaces a file"), "{err}");

    let mut copy =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", backup.display()))
            .await
            .unwrap();
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut copy)
        .await
        .unwrap();
    assert_eq!(verdict, "ok");
    let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM incidents")
        .fetch_one(&mut copy)
        .await
        .unwrap();
    // Signals the service had accepted (202) but not yet applied when the copy was taken are in
    // it too: a service started on the copy applies them, as after a crash.
    let waiting: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM signals WHERE processed_at IS NULL")
            .fetch_one(&mut copy)
            .await
            .unwrap();
    copy.close().await.unwrap();
    assert!(out.contains(&format!("{held} incident(s)")), "{out}");
    let live = incident_titles(&app).await.len() as i64;
    assert!(
        held > 5 && held <= live,
        "the copy holds {held} incidents, the live store {live}"
    );

    // A service started on the copy serves what it holds.
    let copy_url = format!("sqlite://{}", backup.display());
    let restored = TestApp::spawn(&smtp, "", &[("BANDITORE__STORE__URL", &copy_url)]).await;
    let titles = eventually(
        || incident_titles(&restored),
        |t| t.len() as i64 == held + waiting,
    )
    .await;
    assert_eq!(titles.len() as i64, held + waiting, "{titles:?}");
    assert!(before.is_subset(&titles), "{before:?} not in {titles:?}");
}

#[test]
fn a_backup_of_postgresql_points_to_pg_dump_and_of_nothing_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(
        &["backup", "b.db"],
        dir.path(),
        &[(
            "BANDITORE__STORE__URL",
            "postgres://banditore@db.asl.example/banditore",
        )],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("pg_dump"), "{err}");
    let (code, _, err) = run(&["backup", "b.db"], dir.path(), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no database at data/banditore.db"), "{err}");
    assert!(!dir.path().join("b.db").exists());
}

#[tokio::test]
async fn healthcheck_answers_for_a_ready_service_and_fails_without_one() {
    let smtp = SmtpServer::start();
    let mut app = TestApp::spawn(&smtp, "", &[]).await;
    let address = app.addr.to_string();
    let (code, out, err) = app.cli(&["healthcheck", "--address", &address], "");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("200"), "{out}");
    app.terminate();
    let (code, _, err) = app.cli(&["healthcheck", "--address", &address], "");
    assert_eq!(code, 1);
    assert!(err.contains("cannot connect"), "{err}");
}

/// The service manager's side of `Type=notify`: a Unix datagram socket named by NOTIFY_SOCKET.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_service_manager_hears_ready_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let sockets = tempfile::tempdir().unwrap();
    let path = sockets.path().join("notify");
    let manager = UnixDatagram::bind(&path).unwrap();
    manager
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let smtp = SmtpServer::start();
    let mut app = TestApp::spawn(
        &smtp,
        "",
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    )
    .await;
    let heard = move |manager: UnixDatagram, until: &'static str| {
        tokio::task::spawn_blocking(move || {
            let mut said = Vec::new();
            let mut buf = [0u8; 256];
            while !said.iter().any(|s| s == until) {
                let len = manager.recv(&mut buf).expect("a notification within 10 s");
                said.push(String::from_utf8_lossy(&buf[..len]).into_owned());
            }
            (manager, said)
        })
    };
    let (manager, said) = heard(manager, "WATCHDOG=1").await.unwrap();
    assert_eq!(
        said.first().map(String::as_str),
        Some("READY=1"),
        "{said:?}"
    );
    // Ready means listening: the service answers at once.
    assert_eq!(app.get("/readyz", None).await.status(), 200);
    // Kept at half of 200 ms: several pings within a second.
    let started = std::time::Instant::now();
    let (manager, said) = heard(manager, "WATCHDOG=1").await.unwrap();
    let (manager, _) = heard(manager, "WATCHDOG=1").await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "{said:?}");
    let stopping = heard(manager, "STOPPING=1");
    let status = app.terminate();
    let (_, said) = stopping.await.unwrap();
    assert_eq!(said.last().map(String::as_str), Some("STOPPING=1"));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[test]
fn completions_and_the_manual_page_name_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let commands = [
        "serve",
        "check-config",
        "migrate",
        "user",
        "backup",
        "healthcheck",
        "completions",
        "man",
    ];
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, out, err) = run(&["completions", shell], dir.path(), &[]);
        assert_eq!(code, 0, "{shell}: {err}");
        for command in commands {
            assert!(out.contains(command), "{shell} completes no `{command}`");
        }
    }
    let (code, man, err) = run(&["man"], dir.path(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(man.contains(".TH banditore 1"), "{man}");
    for command in commands {
        assert!(
            man.contains(&command.replace('-', "\\-")),
            "the manual page names no `{command}`"
        );
    }
    let (code, _, err) = run(&["completions", "tcsh"], dir.path(), &[]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid value"), "{err}");
}

/// The configuration the Debian package installs in /etc/banditore, and the one the compose
/// file mounts, pass `check-config` as shipped.
#[test]
fn the_packaged_configurations_check_out() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for (file, env) in [
        ("packaging/deb/banditore.toml", vec![]),
        (
            "packaging/compose/banditore.toml",
            vec![
                ("POSTGRES_PASSWORD", "compose-example-password"),
                (
                    "BANDITORE_ADMIN_TOKEN",
                    "admin-token-for-the-compose-example",
                ),
                (
                    "BANDITORE_INGEST_TOKEN",
                    "ingest-token-for-the-compose-example",
                ),
            ],
        ),
    ] {
        let path = root.join(file);
        let (code, out, err) = run(
            &["--config", path.to_str().unwrap(), "check-config"],
            dir.path(),
            &env,
        );
        assert_eq!(code, 0, "{file}: {out}{err}");
    }
}
