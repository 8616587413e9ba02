//! Integration tests: the real binary on a random port, a fresh SQLite file per test, a real SMTP
//! server on loopback. One test binary, so the (large) link happens once.

mod support;

mod access;
mod ack_drill;
mod acks;
mod chats;
mod citizens;
mod cli;
mod coalesce;
mod compliance;
mod console;
mod contract;
mod drafts;
mod dropin;
mod email;
mod email_tls;
mod engine;
mod escalation;
mod heartbeat_api;
mod heartbeats;
mod ingest;
mod log;
mod operations;
mod probes;
mod prometheus;
mod replicas;
mod roles;
mod server;
mod sms;
mod sms_replies;
mod social;
mod status;
mod store;
mod store_access;
mod store_ack_board;
mod store_acks;
mod store_citizens;
mod store_escalations;
mod store_heartbeat_defs;
mod store_heartbeats;
mod store_subscribers;
mod subscribers;
mod telegram;
mod voice;
mod webhook;
