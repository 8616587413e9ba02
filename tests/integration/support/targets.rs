//! Services for probes to watch, on loopback, that a test breaks and repairs: an HTTP site, a
//! TCP port, a DNS resolver, and a TLS endpoint with a certificate made in the test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use tokio::net::{TcpListener, UdpSocket};

/// How a target behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Answers as it should.
    Up = 0,
    /// HTTP 503; DNS SERVFAIL.
    Failing = 1,
    /// Takes the request and never answers.
    Hanging = 2,
    /// Fails every other request.
    Flapping = 3,
    /// The HTTP site fails the next request, then answers as it should: one lost packet.
    FailingOnce = 4,
}

/// An HTTP site whose page says "Prenotazioni aperte" while up.
pub struct HttpTarget {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    served: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

impl HttpTarget {
    pub async fn start() -> HttpTarget {
        let mode = Arc::new(AtomicU8::new(Mode::Up as u8));
        let served = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let (m, s, f) = (mode.clone(), served.clone(), failed.clone());
        let app = Router::new().fallback(move || {
            let (m, s, f) = (m.clone(), s.clone(), f.clone());
            async move {
                let n = s.fetch_add(1, Ordering::SeqCst);
                let fail = match m.load(Ordering::SeqCst) {
                    0 => false,
                    1 => true,
                    2 => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        true
                    }
                    3 => n % 2 == 1,
                    // Only the request that finds the mode set fails.
                    _ => m
                        .compare_exchange(4, 0, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok(),
                };
                if fail {
                    f.fetch_add(1, Ordering::SeqCst);
                    (StatusCode::SERVICE_UNAVAILABLE, "Servizio non disponibile").into_response()
                } else {
                    (StatusCode::OK, "<h1>Prenotazioni aperte</h1>").into_response()
                }
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind HTTP target");
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HttpTarget {
            addr,
            mode,
            served,
            failed,
            server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/cup", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Requests answered with a failure so far.
    pub fn failures(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

impl Drop for HttpTarget {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A TCP port that accepts connections while open, and refuses them once closed.
pub struct TcpTarget {
    pub addr: SocketAddr,
    listener: Option<tokio::task::JoinHandle<()>>,
}

impl TcpTarget {
    pub async fn start() -> TcpTarget {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind TCP target");
        let addr = listener.local_addr().unwrap();
        let mut target = TcpTarget {
            addr,
            listener: None,
        };
        target.listener = Some(accept(listener));
        target
    }

    /// Stops listening: connections are refused.
    pub fn close(&mut self) {
        if let Some(task) = self.listener.take() {
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn open(&mut self) {
        if self.listener.is_none() {
            let mut tries = 0;
            let listener = loop {
                match TcpListener::bind(self.addr).await {
                    Ok(l) => break l,
                    Err(e) if tries < 50 => {
                        tries += 1;
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
                }
            };
            self.listener = Some(accept(listener));
        }
    }
}

fn accept(listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    })
}

impl Drop for TcpTarget {
    fn drop(&mut self) {
        self.close();
    }
}

/// A DNS resolver on UDP that knows one A record.
pub struct DnsTarget {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    server: tokio::task::JoinHandle<()>,
}

impl DnsTarget {
    /// Answers `name` A with `ip`, and NXDOMAIN for other names.
    pub async fn start(name: &str, ip: std::net::Ipv4Addr) -> DnsTarget {
        use hickory_proto::op::{Message, MessageType, ResponseCode};
        use hickory_proto::rr::{Name, RData, Record, RecordType, rdata::A};
        use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind DNS target");
        let addr = socket.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(Mode::Up as u8));
        let m = mode.clone();
        let known = Name::from_ascii(name).expect("a DNS name");
        let server = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let Ok(query) = Message::from_bytes(&buf[..n]) else {
                    continue;
                };
                let mode = m.load(Ordering::SeqCst);
                if mode == Mode::Hanging as u8 {
                    continue;
                }
                let mut answer = Message::new();
                answer
                    .set_id(query.id())
                    .set_message_type(MessageType::Response)
                    .set_recursion_desired(query.recursion_desired())
                    .set_recursion_available(true);
                for q in query.queries() {
                    answer.add_query(q.clone());
                }
                let q = query.queries().first();
                if mode == Mode::Failing as u8 {
                    answer.set_response_code(ResponseCode::ServFail);
                } else if let Some(q) = q.filter(|q| q.name() == &known) {
                    if q.query_type() == RecordType::A {
                        answer.add_answer(Record::from_rdata(known.clone(), 60, RData::A(A(ip))));
                    }
                } else {
                    answer.set_response_code(ResponseCode::NXDomain);
                }
                if let Ok(bytes) = answer.to_bytes() {
                    let _ = socket.send_to(&bytes, from).await;
                }
            }
        });
        DnsTarget { addr, mode, server }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }
}

impl Drop for DnsTarget {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A TLS endpoint whose certificate (for `localhost`, signed by a CA made here) expires in
/// `days`. Writes the CA to `ca_path` for the probe's `ca_file`.
pub struct TlsTarget {
    pub addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl TlsTarget {
    pub async fn start(days: i64, ca_path: &std::path::Path) -> TlsTarget {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Banditore test CA");
        let ca =
            rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        std::fs::write(ca_path, ca.pem()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        // Valid from a month ago until `days` days from now, at the end of that day (UTC).
        let ymd = |d: jiff::civil::Date| {
            rcgen::date_time_ymd(i32::from(d.year()), d.month() as u8, d.day() as u8)
        };
        let today = jiff::Timestamp::now()
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .date();
        params.not_before = ymd(today.checked_sub(jiff::Span::new().days(30)).unwrap());
        params.not_after = ymd(today.checked_add(jiff::Span::new().days(days + 1)).unwrap());
        let cert = params.signed_by(&key, &ca).unwrap();
        let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone(), ca.der().clone()], private)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = acceptor.accept(stream).await;
                });
            }
        });
        TlsTarget { addr, server }
    }

    pub fn target(&self) -> String {
        format!("localhost:{}", self.addr.port())
    }
}

impl Drop for TlsTarget {
    fn drop(&mut self) {
        self.server.abort();
    }
}
