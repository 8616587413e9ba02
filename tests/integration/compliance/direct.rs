//! The harnesses of the channels that reach a person: email (a real SMTP server with STARTTLS
//! and AUTH), Telegram (the Bot API double) and SMS through each gateway alone (Twilio, Vonage,
//! Skebby, and a generic provider described in the configuration), each recipient subscribed to
//! every incident and each message made by a monitor's alert.

use std::cell::Cell;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde_json::json;

use super::Harness;
use super::edges::{self, Arrived, Edge, Via};
use crate::support::*;

const MAILBOX: &str = "sala@asl.example";
const CHAT: i64 = 1001;
const PHONE: &str = "+393331234567";
const SMTP_USER: &str = "banditore";
const SMTP_PASSWORD: &str = "smtp-password-for-the-suite";

/// Fires an alert about a service of its own (so a new incident) and returns that incident.
pub(super) async fn fire_new(app: &TestApp, count: &Cell<u32>) -> i64 {
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
pub(super) async fn recipient(app: &TestApp, channel: &str, address: &str) -> i64 {
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
    _templates: Option<tempfile::TempDir>,
}

impl Email {
    /// STARTTLS and AUTH PLAIN, as a deployment's relay asks for them.
    async fn launch(templates: Option<(tempfile::TempDir, String)>) -> Email {
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
        let (templates, extra) = templates.unzip();
        let app = TestApp::spawn(&smtp, &extra.unwrap_or_default(), &env).await;
        let subscriber = recipient(&app, "email", MAILBOX).await;
        Email {
            smtp,
            app,
            subscriber,
            fired: Cell::new(0),
            _ca: ca,
            _templates: templates,
        }
    }
}

impl Harness for Email {
    const CHANNEL: &'static str = "email";
    const IDEMPOTENT: bool = false;

    async fn start() -> Email {
        Email::launch(None).await
    }

    /// The subject is the incident's title as it is written.
    async fn start_for_edges() -> Email {
        let subject = ("email/it/subject.j2", "{{ incident.title }}");
        Email::launch(Some(edges::templates(&[subject]))).await
    }

    fn edges() -> Vec<Edge> {
        edges::email()
    }

    /// The subject as a reader reads it, and its header as the server received it: every line
    /// of the message at most 998 bytes, as SMTP allows, and the subject's at most 78, as
    /// RFC 5322 recommends.
    async fn publish(&self, _edge: &Edge, text: &str) -> Result<Arrived, String> {
        let before = self.smtp.mails_to(MAILBOX).len();
        edges::open(&self.app, text, "Verifiche in corso.").await;
        let mail = edges::newest(before, || self.smtp.mails_to(MAILBOX), |_| true).await;
        let raw = String::from_utf8_lossy(&mail.raw).into_owned();
        for line in raw.split("\r\n") {
            assert!(line.len() <= 998, "{} bytes: {line}", line.len());
        }
        let head = raw.split("\r\n\r\n").next().unwrap_or_default();
        let mut subject: Vec<&str> = Vec::new();
        for line in head.split("\r\n") {
            if line.starts_with("Subject:") || (!subject.is_empty() && line.starts_with(' ')) {
                subject.push(line);
            } else if !subject.is_empty() {
                break;
            }
        }
        for line in &subject {
            assert!(line.len() <= 78, "{} bytes: {line}", line.len());
        }
        Ok(Arrived {
            read: mail.subject(),
            wire: subject.join("\r\n"),
        })
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

/// Email through a relay that takes mail from this host without a login (no `username`, no
/// TLS), as many intranet relays do, until its policy changes and it wants a login first.
pub(crate) struct EmailRelay {
    smtp: SmtpServer,
    app: TestApp,
    fired: Cell<u32>,
}

impl Harness for EmailRelay {
    const CHANNEL: &'static str = "email";
    const IDEMPOTENT: bool = false;

    async fn start() -> EmailRelay {
        let smtp = SmtpServer::start();
        let app = TestApp::spawn(&smtp, "", &[("BANDITORE__CHANNELS__EMAIL__TIMEOUT", "2s")]).await;
        recipient(&app, "email", MAILBOX).await;
        EmailRelay {
            smtp,
            app,
            fired: Cell::new(0),
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

    /// The relay answers MAIL with `530 5.7.0 Authentication required`.
    fn refuse_credentials(&self, refused: bool) {
        self.smtp.demand_login(refused);
    }
}

pub(crate) struct Telegram {
    double: TelegramDouble,
    app: TestApp,
    subscriber: i64,
    fired: Cell<u32>,
    _smtp: SmtpServer,
    _templates: Option<tempfile::TempDir>,
}

/// The public channel whose part a public draft has.
const PUBLIC_CHANNEL: &str = "@regione_avvisi";

impl Telegram {
    /// A send may take 3 s: teloxide sleeps 10 s before reading a 5xx answer, and a lost answer
    /// is waited for no longer than the channel's timeout.
    async fn launch(templates: Option<(tempfile::TempDir, String)>) -> Telegram {
        let double = TelegramDouble::start().await;
        double.add_private_chat(CHAT, "Anna", Some("it"));
        double.add_channel(PUBLIC_CHANNEL.trim_start_matches('@'), -1_009_000);
        let smtp = SmtpServer::start();
        let api = double.api_url();
        let mut env = vec![
            ("BANDITORE__CHANNELS__TELEGRAM__ENABLED", "true"),
            ("BANDITORE__CHANNELS__TELEGRAM__TOKEN", TELEGRAM_TOKEN),
            ("BANDITORE__CHANNELS__TELEGRAM__API_URL", api.as_str()),
            ("BANDITORE__CHANNELS__TELEGRAM__TIMEOUT", "2s"),
            ("BANDITORE__CHANNELS__EMAIL__TIMEOUT", "2s"),
            ("BANDITORE__OUTBOX__SEND_TIMEOUT", "3s"),
        ];
        if templates.is_some() {
            env.push((
                "BANDITORE__CHANNELS__TELEGRAM__PUBLIC_CHANNEL",
                PUBLIC_CHANNEL,
            ));
        }
        let (templates, extra) = templates.unzip();
        let app = TestApp::spawn(&smtp, &extra.unwrap_or_default(), &env).await;
        let subscriber = recipient(&app, "telegram", &CHAT.to_string()).await;
        Telegram {
            double,
            app,
            subscriber,
            fired: Cell::new(0),
            _smtp: smtp,
            _templates: templates,
        }
    }
}

impl Harness for Telegram {
    const CHANNEL: &'static str = "telegram";
    const IDEMPOTENT: bool = false;

    async fn start() -> Telegram {
        Telegram::launch(None).await
    }

    /// A message is the incident's body as it is written; a public channel has a part in each
    /// public draft.
    async fn start_for_edges() -> Telegram {
        let message = ("telegram/it/message.j2", "{{ update.body }}");
        Telegram::launch(Some(edges::templates(&[message]))).await
    }

    fn edges() -> Vec<Edge> {
        edges::telegram()
    }

    /// The text as Telegram shows it (tags gone, entities read).
    async fn publish(&self, edge: &Edge, text: &str) -> Result<Arrived, String> {
        let chat = match edge.via {
            Via::Draft => PUBLIC_CHANNEL.to_owned(),
            Via::Message => CHAT.to_string(),
        };
        let before = self.double.sent_to(&chat).len();
        match edge.via {
            Via::Draft => {
                let draft = edges::edit_draft(&self.app, "telegram", text).await?;
                self.app.approve_draft(draft).await;
            }
            Via::Message => {
                edges::open(&self.app, "CUP non risponde", text).await;
            }
        }
        // Each draft's incident is a message to the chat too: find this text's.
        let start: String = text.chars().take(20).collect();
        let ours = |m: &SentMessage| m.visible.starts_with(&start);
        let sent = edges::newest(before, || self.double.sent_to(&chat), ours).await;
        Ok(Arrived::text(sent.visible))
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
    _templates: Option<tempfile::TempDir>,
}

impl<G: Gateway> Sms<G> {
    /// A provider's answer is waited for 2 s.
    async fn launch(templates: Option<(tempfile::TempDir, String)>) -> Sms<G> {
        let double = SmsDouble::start().await;
        let smtp = SmtpServer::start();
        let env = [
            ("BANDITORE__CHANNELS__SMS__ENABLED", "true"),
            ("BANDITORE__CHANNELS__SMS__TIMEOUT", "2s"),
        ];
        let (templates, extra) = templates.unzip();
        let config = format!("{}{}", G::config(&double), extra.unwrap_or_default());
        let app = TestApp::spawn(&smtp, &config, &env).await;
        let subscriber = recipient(&app, "sms", PHONE).await;
        Sms {
            double,
            app,
            subscriber,
            fired: Cell::new(0),
            gateway: PhantomData,
            _templates: templates,
        }
    }
}

impl<G: Gateway> Harness for Sms<G> {
    const CHANNEL: &'static str = "sms";
    const IDEMPOTENT: bool = false;

    async fn start() -> Sms<G> {
        Sms::launch(None).await
    }

    /// A message is the incident's body as it is written, within the default `max_segments`.
    async fn start_for_edges() -> Sms<G> {
        let text = ("sms/it/text.j2", "{{ update.body }}");
        Sms::launch(Some(edges::templates(&[text]))).await
    }

    fn edges() -> Vec<Edge> {
        edges::sms()
    }

    /// The text as the gateway took it; its segments as the double counted them are the ones
    /// the delivery records.
    async fn publish(&self, _edge: &Edge, text: &str) -> Result<Arrived, String> {
        let before = self.double.sent_to(PHONE).len();
        let incident = edges::open(&self.app, "CUP non risponde", text).await;
        let sent = edges::newest(before, || self.double.sent_to(PHONE), |_| true).await;
        assert!(!sent.garbled, "UCS-2 without type=unicode: {sent:?}");
        assert_eq!(sent.segments, sms_encoding(&sent.text).1, "{sent:?}");
        let d = super::settled(self, incident).await;
        assert_eq!(
            d["segments"], sent.segments,
            "the delivery records the segments: {d}"
        );
        Ok(Arrived::text(sent.text))
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
