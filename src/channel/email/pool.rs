//! A pool of SMTP connections built on lettre's connection type, with TCP_NODELAY set, and
//! command pipelining (RFC 2920) where the server offers it.
//!
//! lettre writes a message body and its terminating `<CRLF>.<CRLF>` in two writes; without
//! TCP_NODELAY the second waits for the server's delayed ACK (about 40 ms on Linux) on every
//! message, which caps a connection at roughly 25 messages per second. lettre's own pooled
//! transport opens its sockets internally, so this pool opens them itself and hands them over.
//! On the pipelined path the body is dot-stuffed here, a line at a time (lettre's codec goes a
//! byte at a time), and goes with its end in one write.
//!
//! lettre sends MAIL, RCPT and DATA one at a time, waiting for each reply: four round trips a
//! message. A server that lists PIPELINING in its EHLO reply gets the three commands in one
//! write and answers them together, so a message costs two round trips; the body is sent only
//! once all three replies are positive, and a connection on which any of them was negative is
//! given up (as lettre does), so no reply is ever read for the wrong command. A server that
//! refuses for good the second EHLO this asks is taken as one that does not pipeline.
//!
//! Connections are reused while they work; one idle for more than a few seconds is checked with
//! NOOP before use, one idle for longer than a minute is dropped. A connection that saw an error
//! is never reused: it is closed, after a QUIT when every reply sent was read.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

/// Idle connections younger than this are used without a NOOP round trip.
const TRUST_IDLE: Duration = Duration::from_secs(5);
/// Idle connections older than this are dropped: servers close them after a few minutes.
const MAX_IDLE: Duration = Duration::from_secs(60);

/// Why a send did not complete.
#[derive(Debug)]
pub enum SmtpFailure {
    /// The server answered with an error, or lettre refused the message.
    Smtp(lettre::transport::smtp::Error),
    /// No connection could be made (refused, unreachable, DNS).
    Connect(String),
    /// TLS could not be set up.
    Tls(String),
    /// The server refused our credentials: a configuration problem, not the message's.
    Auth(String),
    /// The server did not answer in time.
    Timeout,
}

impl fmt::Display for SmtpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmtpFailure::Smtp(e) => write!(f, "{e}"),
            SmtpFailure::Connect(e) => write!(f, "cannot connect: {e}"),
            SmtpFailure::Tls(e) => write!(f, "TLS failed: {e}"),
            SmtpFailure::Auth(e) => write!(
                f,
                "SMTP authentication failed (check channels.email.username and password): {e}"
            ),
            SmtpFailure::Timeout => f.write_str("the SMTP server did not answer in time"),
        }
    }
}

/// How connections are made.
pub enum Security {
    Plain,
    /// STARTTLS, required: refuse to go on in clear.
    StartTls(TlsParameters),
    /// Implicit TLS from the first byte (port 465).
    Implicit {
        connector: TlsConnector,
        server_name: ServerName<'static>,
    },
}

pub struct SmtpPool {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    timeout: Duration,
    hello: ClientId,
    idle: Mutex<Vec<(Connection, Instant)>>,
    permits: Arc<Semaphore>,
}

/// A connection, and whether its server takes pipelined commands.
struct Connection {
    smtp: AsyncSmtpConnection,
    pipelining: bool,
}

impl SmtpPool {
    pub fn new(
        host: &str,
        port: u16,
        security: Security,
        credentials: Option<Credentials>,
        timeout: Duration,
        size: usize,
    ) -> SmtpPool {
        SmtpPool {
            host: host.to_owned(),
            port,
            security,
            credentials,
            timeout,
            hello: ClientId::default(),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size.max(1))),
        }
    }

    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Response, SmtpFailure> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| SmtpFailure::Connect("the pool is closed".into()))?;
        let mut conn = match self.take_idle().await {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        match tokio::time::timeout(self.timeout, conn.send(envelope, message)).await {
            Ok(Ok(response)) => {
                self.put_back(conn);
                Ok(response)
            }
            Ok(Err(e)) => Err(SmtpFailure::Smtp(e)),
            Err(_) => Err(SmtpFailure::Timeout),
        }
    }

    async fn take_idle(&self) -> Option<Connection> {
        loop {
            let (mut conn, since) = self.idle.lock().ok()?.pop()?;
            let idle_for = since.elapsed();
            if conn.smtp.has_broken() || idle_for > MAX_IDLE {
                continue;
            }
            if idle_for <= TRUST_IDLE {
                return Some(conn);
            }
            if tokio::time::timeout(self.timeout, conn.smtp.test_connected())
                .await
                .unwrap_or(false)
            {
                return Some(conn);
            }
        }
    }

    fn put_back(&self, conn: Connection) {
        if conn.smtp.has_broken() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push((conn, Instant::now()));
        }
    }

    async fn connect(&self) -> Result<Connection, SmtpFailure> {
        let tcp = tokio::time::timeout(
            self.timeout,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| SmtpFailure::Timeout)?
        .map_err(|e| SmtpFailure::Connect(format!("{}:{}: {e}", self.host, self.port)))?;
        tcp.set_nodelay(true)
            .map_err(|e| SmtpFailure::Connect(e.to_string()))?;
        let stream: Box<dyn AsyncTokioStream> = match &self.security {
            Security::Implicit {
                connector,
                server_name,
            } => {
                let tls =
                    tokio::time::timeout(self.timeout, connector.connect(server_name.clone(), tcp))
                        .await
                        .map_err(|_| SmtpFailure::Timeout)?
                        .map_err(|e| SmtpFailure::Tls(e.to_string()))?;
                Box::new(ImplicitTls(tls))
            }
            Security::Plain | Security::StartTls(_) => Box::new(tcp),
        };
        let mut conn = tokio::time::timeout(
            self.timeout,
            AsyncSmtpConnection::connect_with_transport(stream, &self.hello),
        )
        .await
        .map_err(|_| SmtpFailure::Timeout)?
        .map_err(SmtpFailure::Smtp)?;
        if let Security::StartTls(params) = &self.security {
            if !conn.can_starttls() {
                conn.abort().await;
                return Err(SmtpFailure::Tls(format!(
                    "{} does not offer STARTTLS; refusing to send in clear (tls = \"starttls\")",
                    self.host
                )));
            }
            tokio::time::timeout(self.timeout, conn.starttls(params.clone(), &self.hello))
                .await
                .map_err(|_| SmtpFailure::Timeout)?
                .map_err(|e| SmtpFailure::Tls(e.to_string()))?;
        }
        // lettre keeps no record of PIPELINING: ask again (before AUTH, which a second EHLO
        // could reset on some servers) and read the keywords ourselves. A server that refuses a
        // second EHLO for good (503) is simply taken as one that does not pipeline.
        let pipelining =
            match tokio::time::timeout(self.timeout, conn.command(Ehlo::new(self.hello.clone())))
                .await
                .map_err(|_| SmtpFailure::Timeout)?
            {
                Ok(reply) => reply.message().skip(1).any(|line| {
                    line.split_whitespace()
                        .next()
                        .is_some_and(|k| k.eq_ignore_ascii_case("PIPELINING"))
                }),
                Err(e) if e.is_permanent() => false,
                Err(e) => return Err(SmtpFailure::Smtp(e)),
            };
        if let Some(credentials) = &self.credentials {
            tokio::time::timeout(
                self.timeout,
                conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials),
            )
            .await
            .map_err(|_| SmtpFailure::Timeout)?
            .map_err(|e| SmtpFailure::Auth(e.to_string()))?;
        }
        Ok(Connection {
            smtp: conn,
            pipelining,
        })
    }
}

impl Connection {
    /// One message: MAIL, RCPT and DATA in one write when the server pipelines (and the
    /// envelope and body need nothing lettre's own checks refuse), else lettre's exchange.
    async fn send(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Response, lettre::transport::smtp::Error> {
        let eight_bit = !message.is_ascii();
        let info = self.smtp.server_info();
        if !self.pipelining
            || !envelope_is_ascii(envelope)
            || (eight_bit && !info.supports_feature(Extension::EightBitMime))
        {
            // lettre checks SMTPUTF8 and 8BITMIME and says what the server lacks.
            return self.smtp.send(envelope, message).await;
        }
        let options = if eight_bit {
            vec![MailParameter::Body(MailBodyParameter::EightBitMime)]
        } else {
            Vec::new()
        };
        let mut commands = Mail::new(envelope.from().cloned(), options).to_string();
        for to in envelope.to() {
            commands.push_str(&Rcpt::new(to.clone(), Vec::new()).to_string());
        }
        commands.push_str(&Data.to_string());
        // `command` writes the whole group and reads MAIL's reply; then one reply per RCPT and
        // DATA's. After a refusal the other replies are still read, so that the first error is
        // the one returned; the connection is then given up: a half-read group must never meet
        // the next message.
        let mut first_error = self.smtp.command(commands).await.err();
        // Whether every reply so far was a reply (no broken or unreadable stream).
        let mut in_step = first_error.as_ref().is_none_or(is_reply);
        let mut data_open = false;
        let replies = envelope.to().len() + 1;
        for i in 1..=replies {
            if !in_step {
                break;
            }
            match self.smtp.read_response().await {
                Ok(_) => data_open = i == replies,
                Err(e) => {
                    in_step = is_reply(&e);
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            // A server may answer DATA with 354 although it refused every recipient: it now
            // takes whatever comes as the message, QUIT included. RFC 2920 (3.1) would have the
            // client end it with a lone "."; the connection is dropped instead, and the server
            // discards what it holds. A stream still in step gets a polite QUIT; a broken one is
            // only closed.
            if in_step && !data_open {
                self.smtp.abort().await;
            }
            return Err(e);
        }
        // The body and its end in one write, dot-stuffed a line at a time rather than a byte
        // at a time; a body that is not text (lettre's are: every part is encoded) goes as
        // lettre sends it.
        let sent = match std::str::from_utf8(message) {
            Ok(text) => self.smtp.command(Verbatim(&data_section(text))).await,
            Err(_) => self.smtp.message(message).await,
        };
        if sent.is_err() {
            self.smtp.abort().await;
        }
        sent
    }
}

/// A message as the DATA section carries it (RFC 5321, 4.5.2): a line that begins with a dot
/// gets one more, and the line with a lone dot that ends the data follows. Lines end with CR
/// LF, as lettre writes them; a dot after a lone line feed is left as lettre leaves it.
fn data_section(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + message.len() / 32 + 8);
    let mut rest = message;
    if rest.starts_with('.') {
        out.push('.');
    }
    while let Some(at) = rest.find("\r\n.") {
        out.push_str(&rest[..at + 3]);
        out.push('.');
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    out.push_str("\r\n.\r\n");
    out
}

/// Text written to the server as it is (lettre's `command` writes whatever displays).
struct Verbatim<'a>(&'a str);

impl fmt::Display for Verbatim<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Whether every address of the envelope is ASCII (else SMTPUTF8 is needed, which lettre's own
/// exchange checks).
fn envelope_is_ascii(envelope: &Envelope) -> bool {
    envelope
        .from()
        .is_none_or(|a| AsRef::<str>::as_ref(a).is_ascii())
        && envelope
            .to()
            .iter()
            .all(|a| AsRef::<str>::as_ref(a).is_ascii())
}

/// Whether the error is the server's negative reply (the stream is still in step), rather than
/// a broken connection or an unreadable reply.
fn is_reply(e: &lettre::transport::smtp::Error) -> bool {
    e.status().is_some()
}

/// An implicit-TLS stream in the form lettre takes.
struct ImplicitTls(tokio_rustls::client::TlsStream<TcpStream>);

impl fmt::Debug for ImplicitTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ImplicitTls")
    }
}

impl AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::data_section;

    /// What a server reads from a DATA section (RFC 5321, 4.5.2): lines up to the first lone
    /// dot, each with one leading dot taken off; `None` when no line ends the data.
    fn read_back(section: &str) -> Option<String> {
        let mut lines = Vec::new();
        let mut rest = section;
        while let Some(at) = rest.find("\r\n") {
            let line = &rest[..at];
            if line == "." {
                return Some(lines.join("\r\n"));
            }
            lines.push(line.strip_prefix('.').unwrap_or(line));
            rest = &rest[at + 2..];
        }
        None
    }

    proptest! {
        /// Whatever the message (dots, lone CRs and LFs, dotted lines that would end the data,
        /// any Unicode), the server reads back exactly the message, and only the last line
        /// ends it.
        #[test]
        fn the_server_reads_back_the_message(message in "([.\r\n]|\r\n\\.|\\.\r\n|[a-zé ]|\\PC){0,60}") {
            let section = data_section(&message);
            prop_assert!(section.ends_with("\r\n.\r\n"));
            prop_assert_eq!(read_back(&section), Some(message.clone()));
            prop_assert_eq!(section.find("\r\n.\r\n"), Some(section.len() - 5));
        }
    }

    #[test]
    fn a_leading_dot_is_doubled_on_every_line() {
        assert_eq!(data_section(".a\r\n.\r\nb"), "..a\r\n..\r\nb\r\n.\r\n");
        assert_eq!(data_section(""), "\r\n.\r\n");
    }
}
