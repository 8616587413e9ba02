//! One check of one target: HTTP, TCP, DNS or TLS, bounded by the probe's timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::domain::Finding;
use crate::settings::{ProbeKind, ProbeSpec, StatusSet};

/// What one check found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub ok: bool,
    /// What was seen, as data: messages put it into their reader's words.
    pub finding: Finding,
    pub took: Duration,
    /// TLS: whole days until the certificate expires.
    pub cert_days_left: Option<i64>,
}

impl Outcome {
    /// The finding in the operators' English, with the time a passing check took: "HTTP 200 in
    /// 35 ms", "HTTP 503 (expected 2xx)".
    pub fn detail(&self) -> String {
        if self.ok {
            format!("{} in {} ms", self.finding, self.took.as_millis())
        } else {
            self.finding.to_string()
        }
    }
}

/// A check ready to run: the spec with what it needs built once (clients, regex, TLS roots).
pub struct Check {
    pub spec: ProbeSpec,
    http: Option<reqwest::Client>,
    regex: Option<regex::Regex>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// The HTTP clients every probe shares: one that follows redirects and one that does not.
/// Timeouts are set per request; no connection is kept, so every check connects as a citizen's
/// browser would.
#[derive(Clone)]
pub struct HttpClients {
    follow: reqwest::Client,
    stay: reqwest::Client,
}

impl HttpClients {
    pub fn new() -> Result<HttpClients, String> {
        let build = |redirects| {
            reqwest::Client::builder()
                .redirect(redirects)
                .pool_max_idle_per_host(0)
                .user_agent(concat!("banditore-probe/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("probes: HTTP client: {e}"))
        };
        Ok(HttpClients {
            follow: build(reqwest::redirect::Policy::limited(10))?,
            stay: build(reqwest::redirect::Policy::none())?,
        })
    }
}

impl Check {
    pub fn new(spec: ProbeSpec, clients: &HttpClients) -> Result<Check, String> {
        let mut check = Check {
            http: None,
            regex: None,
            tls: None,
            spec,
        };
        let s = &check.spec;
        match s.kind {
            ProbeKind::Http => {
                check.http = Some(if s.follow_redirects {
                    clients.follow.clone()
                } else {
                    clients.stay.clone()
                });
                if !s.body_regex.is_empty() {
                    check.regex = Some(
                        regex::Regex::new(&s.body_regex)
                            .map_err(|e| format!("probe {}: body_regex: {e}", s.name))?,
                    );
                }
            }
            ProbeKind::Tls => {
                let mut roots = rustls::RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                if let Some(path) = &s.ca_file {
                    let pem = std::fs::read(path).map_err(|e| {
                        format!("probe {}: ca_file {}: {e}", s.name, path.display())
                    })?;
                    for cert in rustls_pemfile_certs(&pem) {
                        roots
                            .add(cert)
                            .map_err(|e| format!("probe {}: ca_file: {e}", s.name))?;
                    }
                }
                let config = rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                check.tls = Some(Arc::new(config));
            }
            ProbeKind::Tcp | ProbeKind::Dns => {}
        }
        Ok(check)
    }

    pub async fn run(&self) -> Outcome {
        let started = Instant::now();
        let found = tokio::time::timeout(self.spec.timeout.get(), self.attempt()).await;
        let took = started.elapsed();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        match found {
            Ok(Ok((finding, cert_days_left))) => {
                if let Some(max) = self.spec.max_latency
                    && took > max.get()
                {
                    return Outcome {
                        ok: false,
                        finding: Finding::Slow {
                            took_ms: ms(took),
                            limit_ms: ms(max.get()),
                        },
                        took,
                        cert_days_left,
                    };
                }
                Outcome {
                    ok: true,
                    finding,
                    took,
                    cert_days_left,
                }
            }
            Ok(Err(finding)) => Outcome {
                ok: false,
                finding,
                took,
                cert_days_left: None,
            },
            Err(_) => Outcome {
                ok: false,
                finding: Finding::Timeout {
                    ms: ms(self.spec.timeout.get()),
                },
                took,
                cert_days_left: None,
            },
        }
    }

    async fn attempt(&self) -> Result<(Finding, Option<i64>), Finding> {
        match self.spec.kind {
            ProbeKind::Http => self.http().await.map(|f| (f, None)),
            ProbeKind::Tcp => connect(&self.spec.target)
                .await
                .map(|_| (Finding::Connected, None)),
            ProbeKind::Dns => self.dns().await.map(|f| (f, None)),
            ProbeKind::Tls => self
                .tls()
                .await
                .map(|days| (Finding::CertificateValid { days }, Some(days))),
        }
    }

    async fn http(&self) -> Result<Finding, Finding> {
        let s = &self.spec;
        let failed = |cause: String| Finding::Failed { cause };
        let Some(client) = &self.http else {
            return Err(failed("no HTTP client".into()));
        };
        let method = reqwest::Method::from_bytes(s.method.as_bytes())
            .map_err(|e| failed(format!("`{}` is not an HTTP method: {e}", s.method)))?;
        let mut request = client.request(method, &s.url).timeout(s.timeout.get());
        for (name, value) in &s.headers {
            request = request.header(name, value);
        }
        let resp = request.send().await.map_err(|e| describe_http(&e))?;
        let status = resp.status().as_u16();
        if !s.expected_status.iter().any(|set| set.accepts(status)) {
            return Err(Finding::HttpStatus {
                status,
                expected: s.expected_status.iter().map(StatusSet::to_string).collect(),
            });
        }
        if !s.body_contains.is_empty() || self.regex.is_some() {
            let body = resp.text().await.map_err(|e| describe_http(&e))?;
            if !s.body_contains.is_empty() && !body.contains(&s.body_contains) {
                return Err(Finding::TextMissing {
                    status,
                    text: s.body_contains.clone(),
                });
            }
            if let Some(re) = &self.regex
                && !re.is_match(&body)
            {
                return Err(Finding::NoMatch {
                    status,
                    pattern: re.as_str().to_owned(),
                });
            }
        }
        Ok(Finding::HttpOk { status })
    }

    async fn dns(&self) -> Result<Finding, Finding> {
        let s = &self.spec;
        let record = if s.record_type.is_empty() {
            "A".to_owned()
        } else {
            s.record_type.to_ascii_uppercase()
        };
        let answers = super::dns::resolve(&s.target, &record, &s.resolver, s.timeout.get()).await?;
        if answers.is_empty() {
            return Err(Finding::NoRecord {
                name: s.target.clone(),
                record,
            });
        }
        if !s.expected.is_empty() {
            let norm = |v: &str| v.trim().trim_end_matches('.').to_ascii_lowercase();
            let wanted: Vec<String> = s.expected.iter().map(|e| norm(e)).collect();
            if !answers.iter().any(|a| wanted.contains(&norm(a))) {
                return Err(Finding::WrongAnswer {
                    name: s.target.clone(),
                    record,
                    answers,
                    expected: s.expected.clone(),
                });
            }
        }
        Ok(Finding::DnsAnswer {
            name: s.target.clone(),
            record,
            answers,
        })
    }

    /// The days the certificate has left, once the handshake succeeds.
    async fn tls(&self) -> Result<i64, Finding> {
        let s = &self.spec;
        let Some(config) = &self.tls else {
            return Err(Finding::Failed {
                cause: "no TLS configuration".into(),
            });
        };
        let host = s
            .target
            .rsplit_once(':')
            .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
            .unwrap_or(&s.target);
        let name = if s.server_name.is_empty() {
            host
        } else {
            &s.server_name
        };
        let server_name =
            rustls::pki_types::ServerName::try_from(name.to_owned()).map_err(|e| {
                Finding::Failed {
                    cause: format!("`{name}` is not a server name: {e}"),
                }
            })?;
        let tcp = connect(&s.target).await?;
        let tls = tokio_rustls::TlsConnector::from(config.clone())
            .connect(server_name, tcp)
            .await
            .map_err(|e| Finding::HandshakeFailed {
                cause: e.to_string(),
            })?;
        let (_, session) = tls.get_ref();
        let cert = session
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or(Finding::NoCertificate)?;
        let not_after =
            certificate_not_after(cert.as_ref()).ok_or(Finding::CertificateUnreadable)?;
        let left = not_after.duration_since(jiff::Timestamp::now());
        Ok(left.as_secs().div_euclid(86400))
    }
}

/// When a DER certificate stops being valid.
fn certificate_not_after(der: &[u8]) -> Option<jiff::Timestamp> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    jiff::Timestamp::from_second(cert.validity().not_after.timestamp()).ok()
}

/// The certificates in a PEM file.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

async fn connect(target: &str) -> Result<TcpStream, Finding> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(target)
        .await
        .map_err(|e| Finding::Unresolvable {
            target: target.to_owned(),
            cause: e.to_string(),
        })?
        .collect();
    let mut last = Finding::NoAddress {
        target: target.to_owned(),
    };
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => {
                last = Finding::ConnectionFailed {
                    address: addr.to_string(),
                    cause: e.to_string(),
                }
            }
        }
    }
    Err(last)
}

fn describe_http(e: &reqwest::Error) -> Finding {
    // The source chain says why (refused, reset, certificate), without the URL twice.
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if e.is_timeout() {
        Finding::NoAnswerInTime { cause }
    } else if e.is_connect() {
        Finding::CannotConnect { cause }
    } else if e.is_redirect() {
        Finding::TooManyRedirects { cause }
    } else {
        Finding::RequestFailed { cause }
    }
}
