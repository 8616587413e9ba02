//! The webhook channel's harness: the Standard Webhooks receiver of `support/webhook.rs`, which
//! verifies every signature with the reference library, reached by name on loopback (allowed in
//! `channels.webhook.allow_networks`), with a timeout of one second.
//!
//! A receiver's `429` is a failure of that receiver, retried and counted like a `503` (the
//! throttle rule is about a provider's wait for the whole channel); a receiver has no
//! credentials of the channel to refuse. A lost reply is sent again and arrives twice, under the
//! same `webhook-id`, which is what the specification gives the receiver to act once. The body's
//! bound (64 KiB, signals left out) is checked by the channel's unit tests.

use std::cell::Cell;

use super::Harness;
use super::direct::{fire_new, recipient};
use crate::support::webhook::WebhookReceiver;
use crate::support::*;

pub(crate) struct Webhook {
    receiver: WebhookReceiver,
    app: TestApp,
    subscriber: i64,
    fired: Cell<u32>,
    _smtp: SmtpServer,
}

impl Harness for Webhook {
    const CHANNEL: &'static str = "webhook";
    const IDEMPOTENT: bool = false;

    async fn start() -> Webhook {
        let receiver = WebhookReceiver::start().await;
        let smtp = SmtpServer::start();
        let extra = "[channels.webhook]\nenabled = true\nallow_http = true\ntimeout = \"1s\"\n\
                     allow_networks = [\"127.0.0.0/8\", \"::1/128\"]\n";
        let app = TestApp::spawn(&smtp, extra, &[]).await;
        let address = receiver.url("/events");
        let (code, out, err) = app.cli(&["webhook-secret", &address], "");
        assert_eq!(code, 0, "{err}");
        receiver.set_secret(out.trim());
        let subscriber = recipient(&app, "webhook", &address).await;
        Webhook {
            receiver,
            app,
            subscriber,
            fired: Cell::new(0),
            _smtp: smtp,
        }
    }

    fn app(&self) -> &TestApp {
        &self.app
    }

    async fn send(&self) -> i64 {
        fire_new(&self.app, &self.fired).await
    }

    fn arrived(&self) -> usize {
        self.receiver.taken()
    }

    fn subscriber(&self) -> Option<i64> {
        Some(self.subscriber)
    }

    fn fail_next(&self) {
        self.receiver.script(&[(503, &[])]);
    }

    fn make_gone(&self) -> &'static str {
        let none: &[(&str, &str)] = &[];
        self.receiver.script(&[(410, none); 5]);
        "410 Gone"
    }

    fn tries(&self) -> usize {
        self.receiver.received().len()
    }

    fn lose_reply_next(&self) {
        self.receiver.script(&[(0, &[])]);
    }

    fn after_lost_reply(&self) {
        let got = self.receiver.received();
        assert!(got.iter().all(|r| r.verified.is_ok()), "{got:?}");
        assert_eq!(got[0].id, got[1].id, "the retry keeps its webhook-id");
    }
}
