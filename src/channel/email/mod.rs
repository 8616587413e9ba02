//! Email over SMTP with lettre: pooled connections, multipart text and HTML, one-click
//! unsubscribe headers (RFC 8058), a Message-ID stable across retries.
//!
//! SMTP replies decide the outcome: 4xx is temporary; 5xx is permanent, and a 5.1.x enhanced
//! status (no such mailbox or domain) marks the address gone. A message refused for good for
//! another reason may have been refused for what our rendering made of it (its size, its HTML, a
//! server's own rules): it is sent once more at once in a plain, shortened form, and fails only
//! if that is refused too. A `530` (authentication or STARTTLS required first) refuses the
//! channel's configuration, not the message: it pauses the channel. Header text is cleaned and
//! encoded by `header.rs`, so no value a monitor or an operator writes can break a line or
//! inject a header.

mod header;
mod pool;
pub mod settings;

use std::sync::Arc;

use async_trait::async_trait;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use lettre::{Address, Message};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use self::pool::{Security, SmtpFailure, SmtpPool};
use super::{Channel, Outgoing, Receipt, SendError};
use crate::domain::subscriber::ChannelKind;
use crate::settings::{EmailSettings, EmailTls, Secret};

pub struct EmailChannel {
    pool: SmtpPool,
    from: Mailbox,
    /// Left part of Message-IDs, unique per deployment so ids never collide across installations.
    id_prefix: String,
    id_domain: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EmailSetupError {
    #[error("channels.email.from: `{0}` is not a mailbox")]
    From(String),
    #[error("channels.email: {0}")]
    Tls(String),
    #[error("channels.email.ca_file: {0}")]
    CaFile(String),
}

impl EmailChannel {
    pub fn new(
        settings: &EmailSettings,
        password: Option<&Secret>,
        deployment_id: &str,
    ) -> Result<EmailChannel, EmailSetupError> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|_| EmailSetupError::From(settings.from.clone()))?;
        let extra_ca = match &settings.ca_file {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| EmailSetupError::CaFile(format!("{}: {e}", path.display())))?,
            ),
            None => None,
        };
        let security = match settings.tls {
            EmailTls::None => Security::Plain,
            EmailTls::Starttls => {
                let mut params = TlsParameters::builder(settings.host.clone());
                if let Some(pem) = &extra_ca {
                    let cert = Certificate::from_pem(pem)
                        .map_err(|e| EmailSetupError::CaFile(e.to_string()))?;
                    params = params.add_root_certificate(cert);
                }
                Security::StartTls(
                    params
                        .build_rustls()
                        .map_err(|e| EmailSetupError::Tls(e.to_string()))?,
                )
            }
            EmailTls::Tls => {
                let mut roots = RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                if let Some(pem) = &extra_ca {
                    for cert in rustls_pem_certs(pem).map_err(EmailSetupError::CaFile)? {
                        roots
                            .add(cert)
                            .map_err(|e| EmailSetupError::CaFile(e.to_string()))?;
                    }
                }
                let config = ClientConfig::builder_with_provider(Arc::new(
                    tokio_rustls::rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| EmailSetupError::Tls(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
                let server_name = ServerName::try_from(settings.host.clone()).map_err(|e| {
                    EmailSetupError::Tls(format!(
                        "`{}` is not a TLS server name: {e}",
                        settings.host
                    ))
                })?;
                Security::Implicit {
                    connector: TlsConnector::from(Arc::new(config)),
                    server_name,
                }
            }
        };
        let credentials =
            password.map(|p| Credentials::new(settings.username.clone(), p.expose().to_owned()));
        let pool = SmtpPool::new(
            &settings.host,
            settings.port,
            security,
            credentials,
            settings.timeout.get(),
            settings.pool_size as usize,
        );
        let id_domain = from.email.domain().to_owned();
        Ok(EmailChannel {
            pool,
            from,
            id_prefix: format!("banditore.{deployment_id}"),
            id_domain,
        })
    }

    /// Builds the MIME message for one recipient.
    pub fn build(&self, msg: &Outgoing) -> Result<Message, SendError> {
        let address: Address = msg
            .recipient
            .parse()
            .map_err(|e| SendError::RecipientGone {
                reason: format!("`{}` is not a valid address: {e}", msg.recipient),
            })?;
        let name = Some(header::display_name(&msg.recipient_name)).filter(|n| !n.is_empty());
        // The envelope is given rather than read back from the headers (lettre would parse the
        // From and To it has just written, for every recipient of a fan-out).
        let envelope =
            lettre::address::Envelope::new(Some(self.from.email.clone()), vec![address.clone()])
                .map_err(|e| SendError::Reject {
                    reason: format!("cannot address the message: {e}"),
                })?;
        let to = Mailbox::new(name, address);
        let thread = format!(
            "<{}.incident-{}@{}>",
            self.id_prefix, msg.incident_id, self.id_domain
        );
        let header = |name: &'static str, value: String| {
            HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
        };
        // A message that is no delivery (a sign-up's link, a notice to the operators) has a
        // negative id, unique together with its incident's (0 for none).
        let id = if msg.delivery_id < 0 {
            format!("notice-{}-{}", msg.incident_id, -msg.delivery_id)
        } else {
            msg.delivery_id.to_string()
        };
        let mut builder = Message::builder()
            .envelope(envelope)
            .from(self.from.clone())
            .to(to)
            .raw_header(header::unstructured(
                "Subject",
                msg.subject.as_deref().unwrap_or_default(),
            ))
            .message_id(Some(format!(
                "<{}.{id}@{}>",
                self.id_prefix, self.id_domain
            )))
            .date_now()
            .raw_header(header("Auto-Submitted", "auto-generated".into()));
        if msg.incident_id > 0 {
            // Every message of an incident refers to one (virtual) first message, so mail
            // clients show the whole story as one conversation.
            builder = builder.in_reply_to(thread.clone()).references(thread);
        }
        // Notices to the communications office have no list to leave.
        if !msg.unsubscribe_url.is_empty() {
            builder = builder
                .raw_header(header(
                    "List-Unsubscribe",
                    format!("<{}>", msg.unsubscribe_url),
                ))
                .raw_header(header(
                    "List-Unsubscribe-Post",
                    "List-Unsubscribe=One-Click".into(),
                ));
        }
        let text = header::body(&msg.text);
        let built = match &msg.html {
            Some(html) => {
                builder.multipart(MultiPart::alternative_plain_html(text, header::body(html)))
            }
            None => builder.singlepart(SinglePart::plain(text)),
        };
        built.map_err(|e| SendError::Reject {
            reason: format!("cannot build the message: {e}"),
        })
    }
}

#[async_trait]
impl Channel for EmailChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    async fn send(&self, msg: &Outgoing) -> Result<Receipt, SendError> {
        match self.send_built(msg).await {
            Err(SendError::Reject { reason }) => {
                let plain = plain_fallback(msg);
                if plain.html.is_none()
                    && msg.html.is_none()
                    && plain.subject == msg.subject
                    && plain.text == msg.text
                {
                    // Already as plain as it gets.
                    return Err(SendError::Reject { reason });
                }
                match self.send_built(&plain).await {
                    Ok(receipt) => {
                        tracing::warn!(delivery = msg.delivery_id, refused = %reason, "email refused; its plain, shortened form was accepted");
                        metrics::counter!("banditore_email_plain_fallbacks_total").increment(1);
                        Ok(receipt)
                    }
                    Err(SendError::Reject { reason: again }) => Err(SendError::Reject {
                        reason: format!("{reason}; its plain, shortened form too: {again}"),
                    }),
                    Err(other) => Err(other),
                }
            }
            other => other,
        }
    }
}

impl EmailChannel {
    async fn send_built(&self, msg: &Outgoing) -> Result<Receipt, SendError> {
        let message = self.build(msg)?;
        let bytes = message.formatted();
        match self.pool.send(message.envelope(), &bytes).await {
            Ok(response) => Ok(Receipt {
                provider_id: response
                    .message()
                    .next()
                    .map(|l| l.chars().take(200).collect()),
                ..Receipt::default()
            }),
            Err(SmtpFailure::Smtp(e)) => Err(classify(&e)),
            // A permanent refusal of the login (535 and other 5xx) pauses the channel; a
            // temporary one (454) or a connection lost during AUTH is retried as any other.
            Err(SmtpFailure::Auth(e)) if e.contains("permanent error") => {
                Err(SendError::Credentials {
                    reason: SmtpFailure::Auth(e).to_string(),
                })
            }
            Err(SmtpFailure::Auth(e)) => Err(SendError::Retry {
                after: None,
                reason: SmtpFailure::Auth(e).to_string(),
            }),
            Err(other) => Err(SendError::Retry {
                after: None,
                reason: other.to_string(),
            }),
        }
    }
}

/// The safest form of a message: text only, a subject of at most a line, the body cut to a size
/// every server takes.
fn plain_fallback(msg: &Outgoing) -> Outgoing {
    const SUBJECT_CHARS: usize = 70;
    const BODY_CHARS: usize = 8_000;
    let subject = msg.subject.as_deref().map(|s| {
        let s = header::clean(s);
        if s.chars().count() > SUBJECT_CHARS {
            let cut: String = s.chars().take(SUBJECT_CHARS - 1).collect();
            format!("{}…", cut.trim_end())
        } else {
            s
        }
    });
    let mut text: String = msg.text.chars().take(BODY_CHARS).collect();
    if text.len() < msg.text.len() {
        text.push_str("\n…");
    }
    Outgoing {
        subject,
        text,
        html: None,
        ..msg.clone()
    }
}

/// Certificates from a PEM file.
fn rustls_pem_certs(
    pem: &[u8],
) -> Result<Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>>, String> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let certs: Vec<_> = tokio_rustls::rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in the file".into());
    }
    Ok(certs)
}

/// Maps an SMTP error to what the outbox should do.
fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    let reason = e.to_string();
    // RFC 4954 §6 and RFC 3207 §4: 530 answers a command that the server's policy wants
    // authenticated, or sent over TLS, first. The relay refuses the channel as configured (no
    // login, no STARTTLS, an address no longer on its allow-list), not this message: pause the
    // channel and keep every delivery, as for a refused login.
    if e.status().map(u16::from) == Some(530) {
        return SendError::Credentials { reason };
    }
    if e.is_permanent() {
        // RFC 3463: X.1.1 bad mailbox, X.1.2 bad system, X.1.10 null MX all say "this address
        // will never work". Only the enhanced status code at the start of the reply counts, not
        // the same digits elsewhere (an IP address in a block notice, say).
        if matches!(enhanced_status(&reason), Some("5.1.1" | "5.1.2" | "5.1.10")) {
            SendError::RecipientGone { reason }
        } else {
            SendError::Reject { reason }
        }
    } else if e.is_client() {
        SendError::Reject { reason }
    } else {
        // Transient replies, network and TLS failures, timeouts, a closed pool.
        SendError::Retry {
            after: None,
            reason,
        }
    }
}

/// The enhanced status code (`5.1.1`) that opens the server's reply text, as lettre prints it:
/// `permanent error (550): 5.1.1 <x@y>: User unknown`.
fn enhanced_status(reason: &str) -> Option<&str> {
    let (_, text) = reason.split_once("): ")?;
    let code = text.split_whitespace().next()?;
    let mut parts = code.split('.');
    let well_formed = parts.next().is_some_and(|c| matches!(c, "2" | "4" | "5"))
        && parts.clone().count() == 2
        && parts.all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    well_formed.then_some(code)
}

/// Email in the registry: a subject, a text and an HTML body to each address.
pub struct Spec;

impl crate::settings::ChannelSection for Spec {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    fn form(&self) -> crate::render::Form {
        crate::render::Form::Mail
    }

    fn validate(
        &self,
        settings: &crate::settings::Settings,
        keys: &mut crate::settings::ChannelKeys,
        mut push: &mut dyn FnMut(&str, String),
    ) {
        if let Some(password) = settings::validate(settings, &mut push) {
            keys.insert(ChannelKind::Email, password);
        }
    }
}

impl super::ChannelSpec for Spec {
    fn reaches_people(&self) -> bool {
        true
    }

    fn build(
        &self,
        v: &crate::settings::Validated,
        wiring: &super::Wiring<'_>,
    ) -> Result<Option<super::Built>, super::BuildError> {
        let e = &v.settings.channels.email;
        if !e.enabled {
            return Ok(None);
        }
        let password = v.channels.get::<Secret>(ChannelKind::Email);
        let email =
            EmailChannel::new(e, password, wiring.deployment_id).map_err(super::BuildError::new)?;
        Ok(Some(super::Built {
            channel: Arc::new(email),
            concurrency: e.pool_size as usize,
            rate: (e.rate_per_second > 0).then_some((e.rate_per_second, e.rate_per_second)),
            shared: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Dur;

    fn settings() -> EmailSettings {
        EmailSettings {
            enabled: true,
            host: "127.0.0.1".into(),
            port: 2525,
            tls: EmailTls::None,
            from: "Banditore <noreply@asl.example>".into(),
            username: String::new(),
            password: None,
            password_file: None,
            password_env: None,
            pool_size: 2,
            timeout: Dur(std::time::Duration::from_secs(5)),
            rate_per_second: 0,
            ca_file: None,
        }
    }

    fn outgoing() -> Outgoing {
        Outgoing {
            delivery_id: 77,
            incident_id: 9,
            attempt: 1,
            recipient: "cup.foligno@asl.example".into(),
            recipient_name: "CUP Foligno".into(),
            language: "it".into(),
            subject: Some("[Disservizio in corso] CUP giù".into()),
            text: "testo".into(),
            html: Some("<p>testo</p>".into()),
            unsubscribe_url: "https://banditore.example/unsubscribe/abc".into(),
            buttons: None,
            ack: None,
        }
    }

    #[tokio::test]
    async fn message_carries_unsubscribe_headers_and_a_stable_id() {
        let channel = EmailChannel::new(&settings(), None, "d3ad").unwrap();
        let raw = String::from_utf8(channel.build(&outgoing()).unwrap().formatted()).unwrap();
        assert!(
            raw.contains("List-Unsubscribe: <https://banditore.example/unsubscribe/abc>"),
            "{raw}"
        );
        assert!(raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
        assert!(raw.contains("Message-ID: <banditore.d3ad.77@asl.example>"));
        assert!(raw.contains("multipart/alternative"));
        let again = String::from_utf8(channel.build(&outgoing()).unwrap().formatted()).unwrap();
        assert!(again.contains("Message-ID: <banditore.d3ad.77@asl.example>"));
    }

    #[test]
    fn enhanced_status_is_read_only_at_the_start_of_the_reply() {
        assert_eq!(
            enhanced_status("permanent error (550): 5.1.1 <a@b>: User unknown"),
            Some("5.1.1")
        );
        assert_eq!(
            enhanced_status("permanent error (550): 5.1.10 null MX"),
            Some("5.1.10")
        );
        assert_eq!(
            enhanced_status("permanent error (550): 5.7.1 Client host [85.1.1.20] blocked"),
            Some("5.7.1")
        );
        assert_eq!(
            enhanced_status("permanent error (554): Transaction failed 5.1.1"),
            None
        );
        assert_eq!(enhanced_status("network error: reset"), None);
    }

    /// What every SMTP server and mail reader requires of a message, checked on its bytes: lines of
    /// at most 998 bytes ended by CRLF, no bare CR or LF, and headers that parse back to what
    /// was meant (one recipient, no header smuggled in by a name or a subject).
    fn check_wire_format(raw: &[u8], msg: &Outgoing) -> Result<(), String> {
        let text = String::from_utf8(raw.to_vec()).map_err(|e| e.to_string())?;
        for line in text.split("\r\n") {
            if line.len() > 998 {
                return Err(format!("a line of {} bytes", line.len()));
            }
            if line.contains(['\r', '\n', '\0']) {
                return Err(format!("a bare CR or LF, or a NUL, in {line:?}"));
            }
        }
        let parsed = mail_parser::MessageParser::default()
            .parse(raw)
            .ok_or("mail-parser cannot read the message")?;
        let subject = header::clean(msg.subject.as_deref().unwrap_or_default());
        if parsed.subject().unwrap_or_default() != subject {
            return Err(format!(
                "subject {:?} reads back as {:?}",
                subject,
                parsed.subject()
            ));
        }
        let to = parsed.to().ok_or("no To")?;
        let recipients: Vec<_> = to.iter().collect();
        if recipients.len() != 1 || recipients[0].address() != Some(msg.recipient.as_str()) {
            return Err(format!("To reads back as {recipients:?}"));
        }
        let name = header::display_name(&msg.recipient_name);
        if recipients[0].name().unwrap_or_default() != name {
            return Err(format!(
                "name {name:?} reads back as {:?}",
                recipients[0].name()
            ));
        }
        if parsed.bcc().is_some() || parsed.cc().is_some() {
            return Err("a Cc or Bcc appeared".into());
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_subject_holding_a_long_url_is_folded_into_short_lines() {
        let channel = EmailChannel::new(&settings(), None, "d3ad").unwrap();
        let mut msg = outgoing();
        msg.subject = Some(format!(
            "[Disservizio in corso] https://cup.example/{}",
            "elenco-sportelli-".repeat(70)
        ));
        msg.recipient_name = "Evil\r\nBcc: x@y".into();
        let raw = channel.build(&msg).unwrap().formatted();
        check_wire_format(&raw, &msg).unwrap();
    }

    proptest::proptest! {
        #[test]
        fn any_subject_name_and_body_make_a_message_every_server_takes(
            subject in crate::hostile::text(),
            name in crate::hostile::text(),
            text in crate::hostile::text(),
            html in proptest::option::of(crate::hostile::text()),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let _entered = runtime.enter();
            let channel = EmailChannel::new(&settings(), None, "d3ad").unwrap();
            let msg = Outgoing { subject: Some(subject), recipient_name: name, text, html, ..outgoing() };
            let built = channel.build(&msg).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            // The envelope is given, not read back from the headers: it must still say what the
            // From and To headers say, whatever the display name holds.
            let envelope = built.envelope();
            proptest::prop_assert_eq!(envelope.from(), Some(&channel.from.email));
            proptest::prop_assert_eq!(envelope.to().len(), 1);
            proptest::prop_assert_eq!(envelope.to()[0].to_string(), msg.recipient.clone());
            let raw = built.formatted();
            if let Err(problem) = check_wire_format(&raw, &msg) {
                return Err(proptest::test_runner::TestCaseError::fail(problem));
            }
            let plain = plain_fallback(&msg);
            let raw = channel.build(&plain).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?.formatted();
            if let Err(problem) = check_wire_format(&raw, &plain) {
                return Err(proptest::test_runner::TestCaseError::fail(problem));
            }
        }
    }

    #[tokio::test]
    async fn invalid_recipient_is_gone_not_retried() {
        let channel = EmailChannel::new(&settings(), None, "d3ad").unwrap();
        let mut msg = outgoing();
        msg.recipient = "not an address".into();
        assert!(matches!(
            channel.build(&msg),
            Err(SendError::RecipientGone { .. })
        ));
    }
}
