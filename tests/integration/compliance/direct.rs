//! The harnesses of the channels that reach a person: email (a real SMTP server with STARTTLS
//! and AUTH), Telegram (the Bot API double) and SMS through each gateway alone (Twilio, Vonage,
//! Skebby, and a generic provider described in the configuration), each recipient subscribed to
//! every incident and each message made by a monitor's alert.

use std::cell::Cell;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde_json::json;

use super::Harness;
use crate::support::*;

const MAILBOX: &str = "sala@asl.example";
const CHAT: i64 = 1001;
const PHONE: &str = "+393331234567";
const SMTP_USER: &str = "banditore";
const SMTP_PASSWORD: &str = "smtp-password-for-the-suite";

/// Fires an alert about a service of its own (so a new incident) and returns that incident.
async fn fire_new(app: &TestApp, count: &Cell<u32>) -> i64 {
    count.set(count.get() + 1);
    let service = format!("cup-{}", count.get());
    fire_alert(app, "firing", &service, "CUP non risponde").await;
    let newest = |list: &serde_json::Value| {
        let incidents = list["incidents"].as_array();
        incidents.is_some_and(|l| l.len() as u32 == count.get())
    };
    let list = eventually(|| app.get_json("/api/v1/incidents", VIEWER_TOKEN), newest).await;
    list["incidents"][0]["id"].as_i64().unwrap()
}

/// Subscribes one recipient of `channel` to every incident; returns the subscriber.
async fn recipient(app: &TestApp, channel: &str, address: &str) -> i64 {
    app.subscribe(json!({
        "name": "Sala operativa",
        "language": "it",
        "addresses": {channel: [address]},
        "subscriptions": [{"matchers": []}],
    }))
    .await
}

pub(crate) struct Email {
    smtp: SmtpServer,
    app: TestApp,
    subscriber: i64,
    fired: Cell<u32>,
    /// Holds the test CA's file while the app runs.
    _ca: tempfile::TempDir,
}

impl Harness for Email {
    const CHANNEL: &'static str = "email";
    const IDEMPOTENT: bool = false;

    /// STARTTLS and AUTH PLAIN, as a deployment's relay asks for them.
    async fn start() -> Email {
        let tls = TestTls::new();
        let smtp = SmtpServer::start_with(SmtpOptions {
            starttls: Some(tls.server.clone()),
            auth: Some((SMTP_USER.into(), SMTP_PASSWORD.into())),
            ..SmtpOptions::default()
        });
        let ca = tempfile::tempdir().unwrap();
        let ca_file = ca.path().join("ca.pem");
        std::fs::write(&ca_file, &tls.ca_pem).unwrap();
        let ca_path = ca_file.display().to_string();
        let port = smtp.addr().port().to_string();
        let env = [
            ("BANDITORE__CHANNELS__EMAIL__HOST", "localhost"),
            ("BANDITORE__CHANNELS__EMAIL__PORT", port.as_str()),
            ("BANDITORE__CHANNELS__EMAIL__TLS", "starttls"),
            ("BANDITORE__CHANNELS__EMAIL__CA_FILE", ca_path.as_str()),
            ("BANDITORE__CHANNELS__EMAIL__USERNAME", SMTP_USER),
            ("BANDITORE__CHANNELS__EMAIL__PASSWORD", SMTP_PASSWORD),
            ("BANDITORE__CHANNELS__EMAIL__TIMEOUT", "2s"),
        ];
        let app = TestApp::spawn(&smtp, "", &env).await;
        let subscriber = recipient(&app, "email", MAILBOX).await;
        Email {
            smtp,
            app,
            subscriber,
            fired: Cell::new(0),
            _ca: ca,
        }
    }

    fn app(&self) -> &TestApp {
        &self.app
    }

    async fn send(&self) -> i64 {
        fire_new(&self.app, &self.fired).await
    }

    fn arrived(&self) -> usize {
        self.smtp.mails_to(MAILBOX).len()
    }

    fn subscriber(&self) -> Option<i64> {
        Some(self.subscriber)
    }

    fn fail_next(&self) {
        self.smtp.refuse_once(MAILBOX, 451, "4.7.1 Try again later");
    }

    fn make_gone(&self) -> &'static str {
        let text = "5.1.1 <sala@asl.example>: Recipient address rejected: User unknown";
        self.smtp.refuse(MAILBOX, 550, text);
        "5.1.1"
    }

    fn tries(&self) -> usize {
        self.smtp.rcpt_tries(MAILBOX)
    }

    fn lose_reply_next(&self) {
        self.smtp.lose_reply_next(1);
    }

    /// SMTP cannot tell a retry from a new message: the mailbox holds it twice, under one
    /// Message-ID, which is what lets a mail client show it once.
    fn after_lost_reply(&self) {
        let mails = self.smtp.mails_to(MAILBOX);
        let ids: Vec<_> = mails.iter().map(|m| m.header("Message-ID")).collect();
        assert!(ids[0].is_some() && ids[0] == ids[1], "{ids:?}");
    }

    fn refuse_credentials(&self, refused: bool) {
        self.smtp.refuse_logins(refused);
    }
}

pub(crate) struct Telegram {
    double: TelegramDouble,
    app: TestApp,
    subscriber: i64,
    fired: Cell<u32>,
    _smtp: SmtpServer,
}

impl Harness for Telegram {
    const CHANNEL: &'static str = "telegram";
    const IDEMPOTENT: bool = false;

    /// A send may take 3 s: teloxide sleeps 10 s before reading a 5xx answer, and a lost answer
    /// is waited for no longer than the channel's timeout.
    async fn start() -> Telegram {
        let double = TelegramDouble::start().await;
        double.add_private_chat(CHAT, "Anna", Some("it"));
        let smtp = SmtpServer::start();
        let api = double.api_url();
        let env = [
            ("BANDITORE__CHANNELS__TELEGRAM__ENABLED", "true"),
            ("BANDITORE__CHANNELS__TELEGRAM__TOKEN", TELEGRAM_TOKEN),
            ("BANDITORE__CHANNELS__TELEGRAM__API_URL", api.as_str()),
            ("BANDITORE__CHANNELS__TELEGRAM__TIMEOUT", "2s"),
            ("BANDITORE__CHANNELS__EMAIL__TIMEOUT", "2s"),
            ("BANDITORE__OUTBOX__SEND_TIMEOUT", "3s"),
        ];
        let app = TestApp::spawn(&smtp, "", &env).await;
        let subscriber = recipient(&app, "telegram", &CHAT.to_string()).await;
        Telegram {
            double,
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
        self.double.sent_to(&CHAT.to_string()).len()
    }

    fn subscriber(&self) -> Option<i64> {
        Some(self.subscriber)
    }

    fn throttle_next(&self) {
        self.double
            .flood_until(Instant::now() + Duration::from_millis(500), 1);
    }

    fn fail_next(&self) {
        self.double.fail_next(1);
    }

    fn make_gone(&self) -> &'static str {
        self.double.refuse(CHAT, Refusal::Blocked);
        "blocked"
    }

    fn tries(&self) -> usize {
        let requests = self.double.requests().into_iter();
        (requests.filter(|r| r.method == "sendmessage" && r.body["chat_id"] == CHAT)).count()
    }

    fn lose_reply_next(&self) {
        self.double.lose_reply_next(1);
    }

    fn refuse_credentials(&self, refused: bool) {
        self.double.revoke_token(refused);
    }
}

/// One SMS gateway, configured alone.
pub(crate) trait Gateway {
    /// The double's provider that answers this gateway's requests.
    const DOUBLE: SmsProvider;
    /// Words of the reason a gone number is marked with, after scripting it gone.
    fn make_gone(_double: &SmsDouble) -> &'static str {
        unreachable!("this gateway names no gone number")
    }
    /// The `[[channels.sms.providers]]` table.
    fn config(double: &SmsDouble) -> String {
        crate::sms::providers(double, &[Self::DOUBLE])
    }
}

pub(crate) struct Twilio;
pub(crate) struct Vonage;
pub(crate) struct Skebby;
/// Twilio's API described in the configuration, as a deployment does for a gateway without a
/// `kind`.
pub(crate) struct Generic;

impl Gateway for Twilio {
    const DOUBLE: SmsProvider = SmsProvider::Twilio;
    /// 21614: not a mobile number, so no provider can text it.
    fn make_gone(double: &SmsDouble) -> &'static str {
        double.twilio_refuse_number(PHONE, 21614);
        "21614"
    }
}

impl Gateway for Vonage {
    const DOUBLE: SmsProvider = SmsProvider::Vonage;
    /// Status 33: the number is de-activated.
    fn make_gone(double: &SmsDouble) -> &'static str {
        double.vonage_status_next("33", 1);
        "status 33"
    }
}

impl Gateway for Skebby {
    const DOUBLE: SmsProvider = SmsProvider::Skebby;
}

impl Gateway for Generic {
    const DOUBLE: SmsProvider = SmsProvider::Twilio;
    fn config(double: &SmsDouble) -> String {
        format!(
            r#"[[channels.sms.providers]]
name = "gateway"
kind = "generic"
url = "{}/2010-04-01/Accounts/{{{{ username }}}}/Messages.json"
username = "{TWILIO_SID}"
password = "{TWILIO_TOKEN}"
sender = "+15005550006"
headers = {{ Authorization = "Basic {{{{ (username ~ ':' ~ password) | b64encode }}}}" }}
body = {{ To = "{{{{ to }}}}", From = "{{{{ sender }}}}", Body = "{{{{ text }}}}" }}
id_pointer = "/sid"
"#,
            double.base_url()
        )
    }
}

pub(crate) struct Sms<G> {
    double: SmsDouble,
    app: TestApp,
    subscriber: i64,
    fired: Cell<u32>,
    gateway: PhantomData<G>,
}

impl<G: Gateway> Harness for Sms<G> {
    const CHANNEL: &'static str = "sms";
    const IDEMPOTENT: bool = false;

    /// A provider's answer is waited for 2 s.
    async fn start() -> Sms<G> {
        let double = SmsDouble::start().await;
        let smtp = SmtpServer::start();
        let env = [
            ("BANDITORE__CHANNELS__SMS__ENABLED", "true"),
            ("BANDITORE__CHANNELS__SMS__TIMEOUT", "2s"),
        ];
        let app = TestApp::spawn(&smtp, &G::config(&double), &env).await;
        let subscriber = recipient(&app, "sms", PHONE).await;
        Sms {
            double,
            app,
            subscriber,
            fired: Cell::new(0),
            gateway: PhantomData,
        }
    }

    fn app(&self) -> &TestApp {
        &self.app
    }

    async fn send(&self) -> i64 {
        fire_new(&self.app, &self.fired).await
    }

    fn arrived(&self) -> usize {
        self.double.sent_to(PHONE).len()
    }

    fn subscriber(&self) -> Option<i64> {
        Some(self.subscriber)
    }

    fn throttle_next(&self) {
        self.double.throttle_next(G::DOUBLE, 1);
    }

    fn fail_next(&self) {
        self.double.fail_next(G::DOUBLE, 1, 503);
    }

    fn make_gone(&self) -> &'static str {
        G::make_gone(&self.double)
    }

    /// Sending requests, not logins.
    fn tries(&self) -> usize {
        let requests = self.double.requests_to(G::DOUBLE).into_iter();
        let sending = |path: &str| {
            path.ends_with("/Messages.json")
                || path.starts_with("/sms/json")
                || path.ends_with("/sms")
        };
        requests.filter(|r| sending(&r.path)).count()
    }

    fn lose_reply_next(&self) {
        self.double.lose_reply_next(G::DOUBLE, 1);
    }

    fn refuse_credentials(&self, refused: bool) {
        self.double.refuse_credentials(G::DOUBLE, refused);
    }
}
