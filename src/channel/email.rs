//! Email over SMTP with lettre: pooled connections, multipart text and HTML, one-click
//! unsubscribe headers (RFC 8058), a Message-ID stable across retries.
//!
//! SMTP replies decide the outcome: 4xx is temporary; 5xx is permanent, and a 5.1.x enhanced
//! status (no such mailbox or domain) marks the address gone.

use async_trait::async_trait;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Channel, Outgoing, Receipt, SendError};
use crate::domain::subscriber::ChannelKind;
use crate::settings::{EmailSettings, EmailTls, Secret};

pub struct EmailChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
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
        let tls = match settings.tls {
            EmailTls::None => Tls::None,
            EmailTls::Starttls => Tls::Required(
                TlsParameters::new(settings.host.clone())
                    .map_err(|e| EmailSetupError::Tls(e.to_string()))?,
            ),
            EmailTls::Tls => Tls::Wrapper(
                TlsParameters::new(settings.host.clone())
                    .map_err(|e| EmailSetupError::Tls(e.to_string()))?,
            ),
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.clone())
                .port(settings.port)
                .tls(tls)
                .timeout(Some(settings.timeout.get()))
                .pool_config(PoolConfig::new().max_size(settings.pool_size.max(1)));
        if let Some(password) = password {
            builder = builder.credentials(Credentials::new(
                settings.username.clone(),
                password.expose().to_owned(),
            ));
        }
        let id_domain = from.email.domain().to_owned();
        Ok(EmailChannel {
            transport: builder.build(),
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
        let to = Mailbox::new(Some(msg.recipient_name.clone()), address);
        let header = |name: &'static str, value: String| {
            HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
        };
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(msg.subject.clone().unwrap_or_default())
            .message_id(Some(format!(
                "<{}.{}@{}>",
                self.id_prefix, msg.delivery_id, self.id_domain
            )))
            .date_now()
            .raw_header(header(
                "List-Unsubscribe",
                format!("<{}>", msg.unsubscribe_url),
            ))
            .raw_header(header(
                "List-Unsubscribe-Post",
                "List-Unsubscribe=One-Click".into(),
            ))
            .raw_header(header("Auto-Submitted", "auto-generated".into()));
        let built = match &msg.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                msg.text.clone(),
                html.clone(),
            )),
            None => builder.singlepart(SinglePart::plain(msg.text.clone())),
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
        let message = self.build(msg)?;
        match self.transport.send(message).await {
            Ok(response) => Ok(Receipt {
                provider_id: response
                    .message()
                    .next()
                    .map(|l| l.chars().take(200).collect()),
            }),
            Err(e) => Err(classify(&e)),
        }
    }
}

/// Maps an SMTP error to what the outbox should do.
fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    let reason = e.to_string();
    if e.is_permanent() {
        // RFC 3463: X.1.1 bad mailbox, X.1.2 bad system, X.1.10 null MX; all say "this
        // address will never work".
        let gone = ["5.1.1", "5.1.2", "5.1.10"]
            .iter()
            .any(|code| reason.contains(code));
        if gone {
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
        }
    }

    fn outgoing() -> Outgoing {
        Outgoing {
            delivery_id: 77,
            recipient: "cup.foligno@asl.example".into(),
            recipient_name: "CUP Foligno".into(),
            subject: Some("[Disservizio in corso] CUP giù".into()),
            text: "testo".into(),
            html: Some("<p>testo</p>".into()),
            unsubscribe_url: "https://banditore.example/unsubscribe/abc".into(),
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
