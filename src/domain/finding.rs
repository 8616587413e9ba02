//! What a probe (or a heartbeat) found, as data: the kind of finding and its facts (a status code, the statuses
//! expected, a record, days left), never a sentence. Messages put it into words in the reader's
//! language (the `finding` macro of `templates/common/<lang>.j2`); [`Finding`]'s `Display` is
//! the operators' English, for logs and the probes API.
//!
//! The causes some findings carry (an I/O error, a TLS alert, a resolver's response code) are
//! the libraries' own words, kept as they are.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One probe's finding, passing or failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// An HTTP answer with an accepted status (and the page as expected).
    HttpOk {
        status: u16,
    },
    /// A TCP connection opened.
    Connected,
    /// A resolver's answers, as expected.
    DnsAnswer {
        name: String,
        record: String,
        answers: Vec<String>,
    },
    /// A TLS handshake, and the days the certificate has left.
    CertificateValid {
        days: i64,
    },
    /// An HTTP status that is not one of `expected` (codes or classes such as `2xx`).
    HttpStatus {
        status: u16,
        expected: Vec<String>,
    },
    /// The page lacks the text it must contain.
    TextMissing {
        status: u16,
        text: String,
    },
    /// The page does not match the pattern it must match.
    NoMatch {
        status: u16,
        pattern: String,
    },
    /// The HTTP request ran out of time.
    NoAnswerInTime {
        cause: String,
    },
    /// The HTTP request could not connect.
    CannotConnect {
        cause: String,
    },
    TooManyRedirects {
        cause: String,
    },
    RequestFailed {
        cause: String,
    },
    /// Nothing within the probe's timeout.
    Timeout {
        ms: u64,
    },
    /// An answer, later than the probe's `max_latency`.
    Slow {
        took_ms: u64,
        limit_ms: u64,
    },
    Unresolvable {
        target: String,
        cause: String,
    },
    NoAddress {
        target: String,
    },
    ConnectionFailed {
        address: String,
        cause: String,
    },
    NoRecord {
        name: String,
        record: String,
    },
    WrongAnswer {
        name: String,
        record: String,
        answers: Vec<String>,
        expected: Vec<String>,
    },
    /// NXDOMAIN.
    NoSuchName {
        name: String,
    },
    /// A response code other than NOERROR and NXDOMAIN (`Server Failure`, `Refused`).
    ResolverAnswered {
        server: String,
        code: String,
    },
    ResolverSilent {
        server: String,
    },
    ResolverUnreachable {
        server: String,
        cause: String,
    },
    HandshakeFailed {
        cause: String,
    },
    NoCertificate,
    CertificateUnreadable,
    /// Fewer days left than the probe's `warn_days`.
    CertificateExpiring {
        target: String,
        days: i64,
    },
    /// Anything else: a probe that cannot run as configured.
    Failed {
        cause: String,
    },
    /// A heartbeat's monitor sent nothing for `seconds`: since its last ping, or, `never`
    /// pinged, since the heartbeat's clock started.
    Silent {
        seconds: i64,
        never: bool,
    },
    /// A heartbeat's monitor reported a failure, saying `cause` (empty when it said nothing).
    ReportedFailure {
        cause: String,
    },
}

/// The signal annotation a probe's finding travels in.
pub const FINDING_ANNOTATION: &str = "finding";

impl Finding {
    /// The finding as an annotation: JSON with every character past ASCII escaped, which a
    /// signal's normalization keeps byte for byte.
    pub fn to_annotation(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        let mut out = String::with_capacity(json.len());
        for c in json.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                // Outside ASCII, a character can only be inside a JSON string: escaping it there
                // is the same string.
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        out
    }

    /// Reads an annotation back. Its texts (a DNS answer, an error) are anyone's words: each comes
    /// back on one line, without control characters or noncharacters.
    pub fn from_annotation(json: &str) -> Option<Finding> {
        fn clean(value: &mut serde_json::Value) {
            match value {
                serde_json::Value::String(s) => *s = super::signal::one_line(s).trim().to_owned(),
                serde_json::Value::Array(items) => items.iter_mut().for_each(clean),
                serde_json::Value::Object(fields) => fields.values_mut().for_each(clean),
                _ => {}
            }
        }
        let mut value: serde_json::Value = serde_json::from_str(json).ok()?;
        clean(&mut value);
        serde_json::from_value(value).ok()
    }
}

/// `what` or `what: cause`.
fn with_cause(f: &mut fmt::Formatter<'_>, what: &str, cause: &str) -> fmt::Result {
    if cause.is_empty() {
        f.write_str(what)
    } else {
        write!(f, "{what}: {cause}")
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::HttpOk { status } => write!(f, "HTTP {status}"),
            Finding::Connected => f.write_str("connected"),
            Finding::DnsAnswer {
                name,
                record,
                answers,
            } => write!(f, "{name} {record} {}", answers.join(", ")),
            Finding::CertificateValid { days } => {
                write!(f, "certificate valid for {days} more days")
            }
            Finding::HttpStatus { status, expected } => {
                write!(f, "HTTP {status} (expected {})", expected.join(", "))
            }
            Finding::TextMissing { status, text } => {
                write!(f, "HTTP {status} without “{text}” in the page")
            }
            Finding::NoMatch { status, pattern } => {
                write!(f, "HTTP {status}, the page does not match /{pattern}/")
            }
            Finding::NoAnswerInTime { cause } => with_cause(f, "no answer in time", cause),
            Finding::CannotConnect { cause } => with_cause(f, "cannot connect", cause),
            Finding::TooManyRedirects { cause } => with_cause(f, "too many redirects", cause),
            Finding::RequestFailed { cause } => with_cause(f, "request failed", cause),
            Finding::Timeout { ms } => write!(f, "no answer within {ms} ms"),
            Finding::Slow { took_ms, limit_ms } => {
                write!(f, "answered in {took_ms} ms, slower than {limit_ms} ms")
            }
            Finding::Unresolvable { target, cause } => {
                write!(f, "cannot resolve {target}: {cause}")
            }
            Finding::NoAddress { target } => write!(f, "{target} has no address"),
            Finding::ConnectionFailed { address, cause } => {
                write!(f, "cannot connect to {address}: {cause}")
            }
            Finding::NoRecord { name, record } => write!(f, "no {record} record for {name}"),
            Finding::WrongAnswer {
                name,
                record,
                answers,
                expected,
            } => write!(
                f,
                "{name} {record} is {} (expected {})",
                answers.join(", "),
                expected.join(", ")
            ),
            Finding::NoSuchName { name } => write!(f, "{name} does not exist (NXDOMAIN)"),
            Finding::ResolverAnswered { server, code } => {
                write!(f, "the resolver {server} answered {code}")
            }
            Finding::ResolverSilent { server } => {
                write!(f, "the resolver {server} did not answer")
            }
            Finding::ResolverUnreachable { server, cause } => {
                write!(f, "cannot reach the resolver {server}: {cause}")
            }
            Finding::HandshakeFailed { cause } => write!(f, "TLS handshake failed: {cause}"),
            Finding::NoCertificate => f.write_str("the server sent no certificate"),
            Finding::CertificateUnreadable => {
                f.write_str("the certificate's validity cannot be read")
            }
            Finding::CertificateExpiring { target, days } => {
                write!(f, "the certificate of {target} expires in {days} days")
            }
            Finding::Failed { cause } => f.write_str(cause),
            Finding::Silent {
                seconds,
                never: true,
            } => write!(f, "never pinged in {seconds} s"),
            Finding::Silent { seconds, .. } => write!(f, "no ping for {seconds} s"),
            Finding::ReportedFailure { cause } => {
                with_cause(f, "the monitor reported a failure", cause)
            }
        }
    }
}

impl Finding {
    /// One of each kind, for the templates' check and the tests.
    pub fn samples() -> Vec<Finding> {
        let s = |v: &str| v.to_owned();
        vec![
            Finding::HttpOk { status: 200 },
            Finding::Connected,
            Finding::DnsAnswer {
                name: s("cup.regione.example."),
                record: s("A"),
                answers: vec![s("10.1.2.3")],
            },
            Finding::CertificateValid { days: 80 },
            Finding::HttpStatus {
                status: 503,
                expected: vec![s("2xx"), s("301")],
            },
            Finding::TextMissing {
                status: 200,
                text: s("Prenotazioni aperte"),
            },
            Finding::NoMatch {
                status: 200,
                pattern: s("aperto|attivo"),
            },
            Finding::NoAnswerInTime { cause: s("") },
            Finding::CannotConnect {
                cause: s("Connection refused (os error 111)"),
            },
            Finding::TooManyRedirects { cause: s("") },
            Finding::RequestFailed {
                cause: s("connection reset"),
            },
            Finding::Timeout { ms: 5000 },
            Finding::Slow {
                took_ms: 2300,
                limit_ms: 1000,
            },
            Finding::Unresolvable {
                target: s("cup.regione.example:443"),
                cause: s("failed to lookup address information"),
            },
            Finding::NoAddress {
                target: s("cup.regione.example:443"),
            },
            Finding::ConnectionFailed {
                address: s("10.1.2.3:443"),
                cause: s("Connection refused (os error 111)"),
            },
            Finding::NoRecord {
                name: s("cup.regione.example."),
                record: s("AAAA"),
            },
            Finding::WrongAnswer {
                name: s("cup.regione.example."),
                record: s("A"),
                answers: vec![s("10.9.9.9")],
                expected: vec![s("10.1.2.3")],
            },
            Finding::NoSuchName {
                name: s("cup.regione.example."),
            },
            Finding::ResolverAnswered {
                server: s("10.0.0.53:53"),
                code: s("Server Failure"),
            },
            Finding::ResolverSilent {
                server: s("10.0.0.53:53"),
            },
            Finding::ResolverUnreachable {
                server: s("10.0.0.53:53"),
                cause: s("Network is unreachable (os error 101)"),
            },
            Finding::HandshakeFailed {
                cause: s("invalid peer certificate: Expired"),
            },
            Finding::NoCertificate,
            Finding::CertificateUnreadable,
            Finding::CertificateExpiring {
                target: s("cup.regione.example:443"),
                days: 5,
            },
            Finding::Failed {
                cause: s("`GET X` is not an HTTP method"),
            },
            Finding::Silent {
                seconds: 7260,
                never: false,
            },
            Finding::Silent {
                seconds: 90,
                never: true,
            },
            Finding::ReportedFailure {
                cause: s("pg_dump: error: connection to server failed"),
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_read_what_they_read_before() {
        let http = Finding::HttpStatus {
            status: 503,
            expected: vec!["2xx".into()],
        };
        assert_eq!(http.to_string(), "HTTP 503 (expected 2xx)");
        assert_eq!(
            Finding::CannotConnect { cause: "".into() }.to_string(),
            "cannot connect"
        );
        assert_eq!(
            Finding::CertificateExpiring {
                target: "x:443".into(),
                days: 5
            }
            .to_string(),
            "the certificate of x:443 expires in 5 days"
        );
    }

    proptest::proptest! {
        /// A finding holding anyone's text comes out of a signal's normalization as it went in,
        /// each text on one line without control characters or noncharacters.
        #[test]
        fn a_finding_survives_the_signal_that_carries_it(
            cause in crate::hostile::text(),
            word in crate::hostile::word(),
        ) {
            use crate::domain::signal::{NormalizeRules, RawSignal, Source};
            let finding = Finding::WrongAnswer {
                name: word.clone(),
                record: "TXT".into(),
                answers: vec![cause.clone(), word.clone()],
                expected: vec![cause.clone()],
            };
            let mut raw = RawSignal {
                service: Some("cup".into()),
                summary: Some("Portale CUP".into()),
                ..RawSignal::default()
            };
            raw.annotations.insert(FINDING_ANNOTATION.into(), finding.to_annotation());
            let signal = raw.normalize(Source::Probe, &NormalizeRules::default(), jiff::Timestamp::UNIX_EPOCH);
            let back = Finding::from_annotation(&signal.annotations[FINDING_ANNOTATION]);
            let clean = |t: &str| crate::domain::signal::one_line(t).trim().to_owned();
            let expected = Finding::WrongAnswer {
                name: clean(&word),
                record: "TXT".into(),
                answers: vec![clean(&cause), clean(&word)],
                expected: vec![clean(&cause)],
            };
            proptest::prop_assert_eq!(back.as_ref(), Some(&expected));
            let Some(Finding::WrongAnswer { answers, .. }) = back else { unreachable!() };
            for text in answers {
                proptest::prop_assert!(crate::domain::text::one_line(&text).is_ok(), "{text:?}");
            }
        }
    }

    #[test]
    fn a_finding_is_data_that_travels_as_json() {
        let http = Finding::HttpStatus {
            status: 503,
            expected: vec!["2xx".into()],
        };
        let json = serde_json::to_value(&http).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "http_status", "status": 503, "expected": ["2xx"]})
        );
        for f in Finding::samples() {
            let back: Finding = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
            assert_eq!(back, f);
        }
    }
}
