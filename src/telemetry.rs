//! Logs (tracing, text or JSON) and metrics (Prometheus text format served at `/metrics`).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::settings::LogFormat;

/// Installs the global tracing subscriber. `RUST_LOG`, when set, wins over `level`.
pub fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
    // A second initialisation (tests building several apps) keeps the first subscriber.
    let _ = result;
}

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Signal-to-sent latency buckets, in seconds: the target is well under one second.
const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Installs the process-wide metrics recorder once and returns its handle.
pub fn metrics() -> PrometheusHandle {
    METRICS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("banditore_signal_to_sent_seconds".into()),
                    &LATENCY_BUCKETS,
                )
                .map(|b| b.build_recorder());
            match recorder {
                Ok(recorder) => {
                    let handle = recorder.handle();
                    if metrics::set_global_recorder(recorder).is_err() {
                        tracing::warn!(
                            "a metrics recorder was already installed; /metrics may be empty"
                        );
                    }
                    describe();
                    handle
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics buckets rejected; using defaults");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "banditore_signals_received_total",
        "Webhook requests by source and outcome; accepted counts signals."
    );
    describe_counter!(
        "banditore_signals_coalesced_total",
        "Re-sent signals answered without a write: they repeated what the engine last applied."
    );
    describe_counter!(
        "banditore_signals_processed_total",
        "Signals applied to incidents by the engine."
    );
    describe_counter!(
        "banditore_deliveries_total",
        "Delivery attempts by channel and outcome."
    );
    describe_counter!(
        "banditore_render_failures_total",
        "Messages sent with the plain fallback because a template failed."
    );
    describe_counter!(
        "banditore_unsubscribes_total",
        "Recipients who unsubscribed."
    );
    describe_gauge!("banditore_incidents_open", "Incidents not resolved.");
    describe_gauge!(
        "banditore_signals_unprocessed",
        "Signals stored but not yet applied to incidents."
    );
    describe_gauge!("banditore_deliveries", "Deliveries by channel and state.");
    describe_gauge!(
        "banditore_outbox_oldest_unsent_seconds",
        "Age of the channel's oldest delivery not yet sent (pending or sending); 0 when none."
    );
    describe_gauge!(
        "banditore_signals_oldest_unprocessed_seconds",
        "Age of the oldest signal not yet applied to incidents; 0 when none."
    );
    describe_gauge!(
        "banditore_leader",
        "1 on the replica holding the leader lease (the pipeline, the probes' verdicts), 0 elsewhere."
    );
    describe_gauge!(
        "banditore_store_up",
        "1 when the store answered the last scrape."
    );
    describe_histogram!(
        "banditore_signal_to_sent_seconds",
        metrics::Unit::Seconds,
        "From receiving the signal to the provider accepting the message."
    );
}
