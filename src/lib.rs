//! Banditore: an incident notification broadcaster.
//!
//! Signals from monitors become incidents; incident updates become messages to every subscribed
//! desk, through a durable outbox. See ARCHITECTURE.md for the map of this crate.

pub mod ack;
pub mod affected;
pub mod app;
pub mod approval;
pub mod board;
pub mod bot;
pub mod channel;
pub mod citizen;
pub mod cluster;
pub mod domain;
pub mod feeds;
pub mod heartbeat;
#[cfg(test)]
pub mod hostile;
pub mod ids;
pub mod incident;
pub mod ingest;
pub mod outbox;
pub mod pipeline;
pub mod probe;
pub mod process;
pub mod render;
pub mod retention;
pub mod route;
pub mod settings;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod tokens;
pub mod unsubscribe;
pub mod users;
pub mod wake;
pub mod web;
