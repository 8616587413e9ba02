//! A real SMTP server on loopback for the tests: the `mailin` protocol state machine behind a
//! TCP listener, recording every message it accepts. It can be stopped and started on the same
//! port (SMTP down, then up), scripted to refuse recipients with 4xx or 5xx replies (for good or
//! once), to refuse every login (535), or to take a message and close the connection instead of
//! replying, and run with STARTTLS or implicit TLS (a test CA and certificate for `localhost`)
//! and AUTH PLAIN.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use mailin::{Action, AuthMechanism, Handler, Response, Session, SessionBuilder};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// A message as the server received it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub raw: Vec<u8>,
    /// When the server accepted the message (end of DATA).
    pub received: Instant,
}

impl Mail {
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.raw)
            .expect("received mail parses as MIME")
    }

    pub fn subject(&self) -> String {
        self.parsed().subject().unwrap_or_default().to_owned()
    }

    pub fn text(&self) -> String {
        self.parsed()
            .body_text(0)
            .map(|t| t.into_owned())
            .unwrap_or_default()
    }

    pub fn html(&self) -> String {
        self.parsed()
            .body_html(0)
            .map(|t| t.into_owned())
            .unwrap_or_default()
    }

    /// A header's raw value, unfolded and trimmed.
    pub fn header(&self, name: &str) -> Option<String> {
        let raw = String::from_utf8_lossy(&self.raw);
        let head = raw
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .replace("\r\n ", " ")
            .replace("\r\n\t", " ");
        head.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

#[derive(Default)]
struct Shared {
    mails: Mutex<Vec<Mail>>,
    /// Told each time a message is taken, so that a waiting test wakes at once.
    arrived: Condvar,
    /// Recipient → (code, text) to answer RCPT TO with.
    refusals: Mutex<HashMap<String, (u16, String)>>,
    /// Recipient → (code, text) to answer the next RCPT TO with, once.
    refusals_once: Mutex<HashMap<String, (u16, String)>>,
    /// RCPT TO commands received per recipient, refused ones included.
    rcpt_tries: Mutex<HashMap<String, usize>>,
    /// AUTH is answered 535 whatever the password, as after a password change.
    logins_refused: AtomicBool,
    /// MAIL is answered 530, as by a relay that wants a login first (RFC 4954 §6).
    login_demanded: AtomicBool,
    /// Messages still to be taken (recorded) with the reply to their DATA never sent.
    lose_replies: Mutex<usize>,
    /// MAIL commands that arrived with more commands behind them, before their reply.
    pipelined: std::sync::atomic::AtomicUsize,
    connections: Mutex<Vec<TcpStream>>,
}

/// How the server speaks.
#[derive(Clone, Default)]
pub struct SmtpOptions {
    /// Offer STARTTLS with this configuration.
    pub starttls: Option<Arc<ServerConfig>>,
    /// Speak TLS from the first byte (port 465 style).
    pub implicit_tls: Option<Arc<ServerConfig>>,
    /// Require AUTH PLAIN with this user and password.
    pub auth: Option<(String, String)>,
    /// Time taken to accept each message, as a slow relay would.
    pub delay: Option<Duration>,
    /// List PIPELINING (RFC 2920) in the EHLO reply, as Postfix and most relays do. Commands
    /// are then read as they come, several in one packet, and answered one by one in order.
    pub pipelining: bool,
    /// Answer DATA with 354 even when no recipient was accepted (RFC 5321 allows it; RFC 2920,
    /// 3.1 tells a pipelining client what to do), take the text, then refuse it with 554.
    pub data_despite_refusals: bool,
    /// Answer an EHLO after the first on a connection with 503, as some small relays do.
    pub refuse_second_ehlo: bool,
}

/// A test certificate authority and a certificate for `localhost` signed by it.
pub struct TestTls {
    pub ca_pem: String,
    pub server: Arc<ServerConfig>,
}

impl TestTls {
    pub fn new() -> TestTls {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Banditore test CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let server = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
            .unwrap();
        TestTls {
            ca_pem: ca.pem(),
            server: Arc::new(server),
        }
    }
}

pub struct SmtpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    running: Option<Arc<AtomicBool>>,
    options: SmtpOptions,
}

#[derive(Clone)]
struct Recorder {
    shared: Arc<Shared>,
    /// Set when the reply to the message just taken is to be lost: the connection is closed
    /// instead.
    lose_reply: Arc<AtomicBool>,
    auth: Option<(String, String)>,
    delay: Option<Duration>,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Recorder {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
        if self.shared.login_demanded.load(Ordering::SeqCst) {
            return Response::custom(530, "5.7.0 Authentication required".to_owned());
        }
        self.from = from.to_owned();
        self.to.clear();
        self.data.clear();
        mailin::response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        *self
            .shared
            .rcpt_tries
            .lock()
            .unwrap()
            .entry(to.to_owned())
            .or_default() += 1;
        let once = self.shared.refusals_once.lock().unwrap().remove(to);
        let refusal = once.or_else(|| self.shared.refusals.lock().unwrap().get(to).cloned());
        match refusal {
            Some((code, text)) => Response::custom(code, text),
            None => {
                self.to.push(to.to_owned());
                mailin::response::OK
            }
        }
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn auth_plain(
        &mut self,
        _authorization_id: &str,
        authentication_id: &str,
        password: &str,
    ) -> Response {
        if self.shared.logins_refused.load(Ordering::SeqCst) {
            return mailin::response::INVALID_CREDENTIALS;
        }
        match &self.auth {
            Some((user, pass)) if user == authentication_id && pass == password => {
                mailin::response::AUTH_OK
            }
            _ => mailin::response::INVALID_CREDENTIALS,
        }
    }

    fn data_end(&mut self) -> Response {
        if let Some(delay) = self.delay {
            std::thread::sleep(delay);
        }
        let mail = Mail {
            from: self.from.clone(),
            to: self.to.clone(),
            raw: std::mem::take(&mut self.data),
            received: Instant::now(),
        };
        let mut lose = self.shared.lose_replies.lock().unwrap();
        if *lose > 0 {
            *lose -= 1;
            self.lose_reply.store(true, Ordering::SeqCst);
        }
        let mut mails = self.shared.mails.lock().unwrap();
        mails.push(mail);
        self.shared.arrived.notify_all();
        Response::custom(250, format!("2.0.0 Ok: queued as TEST{}", mails.len()))
    }
}

impl SmtpServer {
    /// Starts on a free loopback port.
    pub fn start() -> SmtpServer {
        SmtpServer::start_with(SmtpOptions::default())
    }

    pub fn start_with(options: SmtpOptions) -> SmtpServer {
        let mut server = SmtpServer {
            addr: "127.0.0.1:0".parse().unwrap(),
            shared: Arc::new(Shared::default()),
            running: None,
            options,
        };
        server.listen();
        server
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn listen(&mut self) {
        let listener = TcpListener::bind(self.addr).expect("bind SMTP test server");
        self.addr = listener.local_addr().unwrap();
        let running = Arc::new(AtomicBool::new(true));
        self.running = Some(running.clone());
        let shared = self.shared.clone();
        let options = self.options.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if !running.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                if let Ok(clone) = stream.try_clone() {
                    shared.connections.lock().unwrap().push(clone);
                }
                let shared = shared.clone();
                let running = running.clone();
                let options = options.clone();
                std::thread::spawn(move || serve(stream, shared, running, options));
            }
        });
    }

    /// Stops listening and drops every open connection: the server is down.
    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.store(false, Ordering::SeqCst);
            // Wake the accept loop so it sees the flag and drops the listener.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
            for conn in self.shared.connections.lock().unwrap().drain(..) {
                let _ = conn.shutdown(std::net::Shutdown::Both);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        for _ in 0..50 {
            if TcpListener::bind(self.addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.listen();
    }

    /// Answers `RCPT TO:<recipient>` with this code and text from now on.
    pub fn refuse(&self, recipient: &str, code: u16, text: &str) {
        self.shared
            .refusals
            .lock()
            .unwrap()
            .insert(recipient.to_owned(), (code, text.to_owned()));
    }

    /// Answers the next `RCPT TO:<recipient>` with this code and text, then accepts it again.
    pub fn refuse_once(&self, recipient: &str, code: u16, text: &str) {
        (self.shared.refusals_once.lock().unwrap())
            .insert(recipient.to_owned(), (code, text.to_owned()));
    }

    /// How many times `RCPT TO:<recipient>` was asked, refused or not.
    pub fn rcpt_tries(&self, recipient: &str) -> usize {
        let tries = self.shared.rcpt_tries.lock().unwrap();
        tries.get(recipient).copied().unwrap_or(0)
    }

    /// While `refused`, AUTH is answered 535 "Invalid credentials" (RFC 4954's permanent
    /// refusal), whatever the password.
    pub fn refuse_logins(&self, refused: bool) {
        self.shared.logins_refused.store(refused, Ordering::SeqCst);
    }

    /// While `demanded`, MAIL is answered `530 5.7.0 Authentication required`, which RFC 4954
    /// §6 gives to any command but AUTH, EHLO, HELO, NOOP, RSET or QUIT when the server's
    /// policy wants a login first (a relay whose allow-list no longer holds the sender's host).
    pub fn demand_login(&self, demanded: bool) {
        self.shared.login_demanded.store(demanded, Ordering::SeqCst);
    }

    /// The next `n` messages are taken (and recorded) at the end of DATA, but the server closes
    /// the connection instead of replying 250: the client cannot tell that they went. SMTP has
    /// no idempotency key; the Message-ID is the receiving side's only way to see a duplicate.
    pub fn lose_reply_next(&self, n: usize) {
        *self.shared.lose_replies.lock().unwrap() = n;
    }

    /// How many MAIL commands came pipelined: with the client's next commands already sent.
    pub fn pipelined(&self) -> usize {
        self.shared.pipelined.load(Ordering::SeqCst)
    }

    pub fn accept_again(&self, recipient: &str) {
        self.shared.refusals.lock().unwrap().remove(recipient);
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.shared.mails.lock().unwrap().clone()
    }

    /// How many messages were taken so far, without copying them.
    pub fn count(&self) -> usize {
        self.shared.mails.lock().unwrap().len()
    }

    pub fn mails_to(&self, recipient: &str) -> Vec<Mail> {
        addressed_to(&self.mails(), recipient)
    }

    /// Waits until `count` messages reached `recipient`, or panics after `timeout`; wakes as
    /// each message is taken.
    pub fn wait_for(&self, recipient: &str, count: usize, timeout: Duration) -> Vec<Mail> {
        let deadline = Instant::now() + timeout;
        let mut mails = self.shared.mails.lock().unwrap();
        loop {
            let theirs = addressed_to(&mails, recipient);
            let now = Instant::now();
            if theirs.len() >= count {
                return theirs;
            }
            if now > deadline {
                // Let go of the lock first: the server's sessions still take messages.
                drop(mails);
                panic!(
                    "expected {count} mail(s) to {recipient} within {timeout:?}, got {}: {:?}",
                    theirs.len(),
                    theirs.iter().map(Mail::subject).collect::<Vec<_>>()
                );
            }
            mails = self
                .shared
                .arrived
                .wait_timeout(mails, deadline - now)
                .unwrap()
                .0;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(stream: TcpStream, shared: Arc<Shared>, running: Arc<AtomicBool>, options: SmtpOptions) {
    let raw = stream.try_clone().ok();
    serve_session(stream, shared, running, options);
    // The list of connections holds a clone: the session's end must close the socket itself.
    if let Some(raw) = raw {
        let _ = raw.shutdown(std::net::Shutdown::Both);
    }
}

fn serve_session(
    stream: TcpStream,
    shared: Arc<Shared>,
    running: Arc<AtomicBool>,
    options: SmtpOptions,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    // Replies go out in one write each, without waiting for the client's ACK.
    let _ = stream.set_nodelay(true);
    let peer = stream
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let lose_reply = Arc::new(AtomicBool::new(false));
    let talk = Talk {
        shared: shared.clone(),
        running,
        lose_reply: lose_reply.clone(),
        pipelining: options.pipelining,
        data_despite_refusals: options.data_despite_refusals,
        refuse_second_ehlo: options.refuse_second_ehlo,
    };
    let recorder = Recorder {
        shared,
        lose_reply: lose_reply.clone(),
        auth: options.auth.clone(),
        delay: options.delay,
        from: String::new(),
        to: Vec::new(),
        data: Vec::new(),
    };
    let mut builder = SessionBuilder::new("smtp.test");
    if options.starttls.is_some() {
        builder.enable_start_tls();
    }
    if options.auth.is_some() {
        builder.enable_auth(AuthMechanism::Plain);
    }
    let mut session = builder.build(peer, recorder);
    if let Some(config) = options.implicit_tls {
        let Ok(conn) = ServerConnection::new(config) else {
            return;
        };
        session.tls_active();
        let mut io = BufReader::new(StreamOwned::new(conn, stream));
        if reply(io.get_mut(), &session.greeting()) {
            converse(&mut session, &mut io, &talk);
        }
        return;
    }
    let mut io = BufReader::new(stream);
    if !reply(io.get_mut(), &session.greeting()) {
        return;
    }
    if converse(&mut session, &mut io, &talk) {
        // STARTTLS accepted: the same session goes on over TLS.
        let Some(config) = options.starttls else {
            return;
        };
        let Ok(conn) = ServerConnection::new(config) else {
            return;
        };
        session.tls_active();
        let mut tls = BufReader::new(StreamOwned::new(conn, io.into_inner()));
        converse(&mut session, &mut tls, &talk);
    }
}

fn reply<W: Write>(writer: &mut W, response: &Response) -> bool {
    response
        .buffer()
        .and_then(|bytes| writer.write_all(&bytes))
        .and_then(|_| writer.flush())
        .is_ok()
}

/// What a session's conversation needs besides the session.
struct Talk {
    shared: Arc<Shared>,
    running: Arc<AtomicBool>,
    lose_reply: Arc<AtomicBool>,
    pipelining: bool,
    data_despite_refusals: bool,
    refuse_second_ehlo: bool,
}

/// Runs the session until the client leaves (false) or asks for TLS (true).
fn converse<S: Read + Write>(
    session: &mut Session<Recorder>,
    io: &mut BufReader<S>,
    talk: &Talk,
) -> bool {
    let mut line = Vec::new();
    let mut ehlos = 0;
    // Between a 354 and the message's final dot: lines are the message, not commands.
    let mut in_data = false;
    loop {
        line.clear();
        match io.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
        if !talk.running.load(Ordering::SeqCst) {
            return false;
        }
        let command =
            |name: &[u8]| line.len() >= name.len() && line[..name.len()].eq_ignore_ascii_case(name);
        if !in_data && command(b"MAIL FROM") && !io.buffer().is_empty() {
            talk.shared.pipelined.fetch_add(1, Ordering::SeqCst);
        }
        if !in_data && command(b"EHLO") {
            ehlos += 1;
            if talk.refuse_second_ehlo && ehlos > 1 {
                if io
                    .get_mut()
                    .write_all(b"503 5.5.1 Error: duplicate HELO/EHLO\r\n")
                    .is_err()
                {
                    return false;
                }
                continue;
            }
        }
        let ehlo = !in_data && talk.pipelining && command(b"EHLO");
        let data = !in_data && command(b"DATA");
        if in_data && line == b".\r\n" {
            in_data = false;
        }
        let response = session.process(&line);
        if data && response.buffer().is_ok_and(|b| b.starts_with(b"354")) {
            in_data = true;
        }
        if talk.lose_reply.swap(false, Ordering::SeqCst) {
            return false;
        }
        match response.action {
            Action::NoReply => {}
            Action::Close => {
                reply(io.get_mut(), &response);
                return false;
            }
            Action::UpgradeTls => return reply(io.get_mut(), &response),
            Action::Reply
                if data
                    && talk.data_despite_refusals
                    && response.buffer().is_ok_and(|b| b.starts_with(b"5")) =>
            {
                // 354 all the same; the text that follows is read to its end and refused.
                if io
                    .get_mut()
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .is_err()
                {
                    return false;
                }
                loop {
                    line.clear();
                    match io.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => return false,
                        Ok(_) if line == b".\r\n" => break,
                        Ok(_) => {}
                    }
                }
                if io
                    .get_mut()
                    .write_all(b"554 5.5.1 Error: no valid recipients\r\n")
                    .is_err()
                {
                    return false;
                }
            }
            Action::Reply if ehlo => {
                let Ok(bytes) = response.buffer() else {
                    return false;
                };
                if io.get_mut().write_all(&with_pipelining(&bytes)).is_err() {
                    return false;
                }
            }
            Action::Reply => {
                if !reply(io.get_mut(), &response) {
                    return false;
                }
            }
        }
    }
}

/// An EHLO reply with PIPELINING listed after its first line.
fn with_pipelining(reply: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(reply);
    let mut lines: Vec<String> = text.split_terminator("\r\n").map(str::to_owned).collect();
    let last = lines.len();
    lines.insert(1, "250 PIPELINING".to_owned());
    for line in &mut lines[..last] {
        line.replace_range(3..4, "-");
    }
    let mut out = lines.join("\r\n");
    out.push_str("\r\n");
    out.into_bytes()
}

/// The messages of `mails` sent to `recipient`.
fn addressed_to(mails: &[Mail], recipient: &str) -> Vec<Mail> {
    mails
        .iter()
        .filter(|m| m.to.iter().any(|t| t == recipient))
        .cloned()
        .collect()
}
