//! A fresh PostgreSQL database per test, on the server named by `BANDITORE_TEST_POSTGRES` (an
//! admin URL; `.ci/postgres start` provides a throwaway server). Without the variable the tests
//! try a server on the default local port. When none answers, PostgreSQL tests are skipped with a
//! notice, except under CI (`CI` set), where they fail: CI must run them.

use std::time::Duration;

use sqlx::{Connection, PgConnection};

const DEFAULT_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct TestDatabase {
    pub url: String,
    admin: String,
    name: String,
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A new empty database, or `None` when no server is reachable outside CI.
pub async fn fresh_database() -> Option<TestDatabase> {
    let configured = std::env::var("BANDITORE_TEST_POSTGRES")
        .ok()
        .filter(|v| !v.is_empty());
    let admin = configured
        .clone()
        .unwrap_or_else(|| DEFAULT_ADMIN.to_owned());
    let connected =
        tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&admin)).await;
    let mut conn = match connected {
        Ok(Ok(conn)) => conn,
        failure => {
            let why = match failure {
                Ok(Err(e)) => e.to_string(),
                _ => "no answer within 5s".to_owned(),
            };
            if configured.is_some() || in_ci() {
                panic!(
                    "PostgreSQL tests must run here but {admin} is unreachable ({why}); start a server with `eval \"$(.ci/postgres start)\"`"
                );
            }
            eprintln!(
                "skipping a PostgreSQL test: no server at {admin} ({why}); set BANDITORE_TEST_POSTGRES to run it"
            );
            return None;
        }
    };
    let name = format!("banditore_test_{}", banditore::ids::random_hex(6));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create a test database");
    let _ = conn.close().await;
    let mut url = url::Url::parse(&admin).expect("admin URL");
    url.set_path(&name);
    Some(TestDatabase {
        url: url.into(),
        admin,
        name,
    })
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Dropped from async tests: a thread with its own runtime does the async work.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}
