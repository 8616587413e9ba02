//! Operations endpoints: `/healthz` (the process answers), `/readyz` (the store answers; the
//! body also names every channel paused because its credentials were refused, while the status
//! stays 200: the replica still takes signals and sends on its other channels), `/metrics`
//! (Prometheus text format), whose gauges read from the store are set at each scrape from counts
//! at most a second old, so that scrapes in quick succession (several Prometheus servers, a
//! dashboard polling) cost one count of the store's tables, not one each.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use jiff::Timestamp;

use super::AppState;
use crate::store::{Counts, StoreError};

/// How long the store's counts serve scrapes before they are read again.
const COUNTS_FRESH_FOR: Duration = Duration::from_secs(1);

/// The last counts read from the store, and when. Scrapes wait on one another while one reads.
#[derive(Default)]
pub struct CountsCache(tokio::sync::Mutex<Option<(Instant, Counts)>>);

impl CountsCache {
    async fn get(&self, state: &AppState) -> Result<Counts, StoreError> {
        let mut last = self.0.lock().await;
        if let Some((at, counts)) = last.as_ref()
            && at.elapsed() < COUNTS_FRESH_FOR
        {
            return Ok(counts.clone());
        }
        let counts = state.store.counts().await?;
        *last = Some((Instant::now(), counts.clone()));
        Ok(counts)
    }
}

/// The process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    security(()),
    responses((status = 200, description = "`ok`.", content_type = "text/plain", body = String))
)]
pub async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

/// The store answers; the body names every channel paused because its credentials were refused.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "`ready`, then a line per paused channel.",
            content_type = "text/plain", body = String),
        (status = 503, description = "The store does not answer.",
            content_type = "text/plain", body = String),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => {
            let mut body = "ready\n".to_owned();
            for (channel, p) in state.pauses.all() {
                body.push_str(&format!(
                    "channel {channel} paused since {}: credentials refused ({}); next try at {}\n",
                    p.since, p.reason, p.next_probe
                ));
            }
            (StatusCode::OK, body)
        }
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {e}\n"),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "store did not answer within 2s\n".to_owned(),
        ),
    }
}

const DELIVERY_STATES: [&str; 6] = ["pending", "sending", "sent", "failed", "gone", "cancelled"];

/// The metrics, in Prometheus' text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security(()),
    responses((status = 200, description = "Prometheus text format 0.0.4.",
        content_type = "text/plain; version=0.0.4; charset=utf-8", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Read at each scrape: a lease that ran out without a renewal reads 0 at once.
    metrics::gauge!("banditore_leader").set(if state.leadership.is_leader() {
        1.0
    } else {
        0.0
    });
    // Gauges that live in the store are read at scrape time (or a second before), so they are
    // right after a restart.
    match state.store_counts.get(&state).await {
        Ok(counts) => {
            metrics::gauge!("banditore_incidents_open").set(counts.open_incidents as f64);
            let now = Timestamp::now();
            // Ages in seconds; 0 when nothing waits, so an alert on the age needs no `absent()`.
            let age = |since: Option<&Timestamp>| {
                since.map_or(0.0, |t| now.duration_since(*t).as_secs_f64().max(0.0))
            };
            metrics::gauge!("banditore_signals_unprocessed").set(counts.unprocessed_signals as f64);
            metrics::gauge!("banditore_signals_oldest_unprocessed_seconds")
                .set(age(counts.oldest_unprocessed_signal.as_ref()));
            // Every (channel, state) pair is set, zeros included: a state that has emptied must
            // read 0, not the last count it had.
            for channel in crate::domain::subscriber::ChannelKind::ALL {
                for delivery_state in DELIVERY_STATES {
                    let key = (channel.as_str().to_owned(), delivery_state.to_owned());
                    let n = counts.deliveries.get(&key).copied().unwrap_or(0);
                    metrics::gauge!("banditore_deliveries", "channel" => channel.as_str(), "state" => delivery_state)
                        .set(n as f64);
                }
                metrics::gauge!("banditore_outbox_oldest_unsent_seconds", "channel" => channel.as_str())
                    .set(age(counts.oldest_unsent.get(channel.as_str())));
            }
            metrics::gauge!("banditore_store_up").set(1.0);
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot read counts from the store");
            metrics::gauge!("banditore_store_up").set(0.0);
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
