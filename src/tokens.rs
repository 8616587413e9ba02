//! API tokens made by Banditore itself: at the first start, by `banditore token create`, by the
//! API and by the console. A secret is 32 random bytes written as `bnd_` and base64url, a prefix
//! that secret scanners can recognise; only its SHA-256 is stored. Names are ASCII, like users'
//! names, because they appear in the audit log and in URLs.
//!
//! The first start of a deployment without any token makes an `admin` and an `ingest` token and
//! tells the operator, once, how to use them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use jiff::Timestamp;

use crate::settings::Role;
use crate::store::{NewToken, StoreError, TokenStore};

/// The start of every secret Banditore makes.
pub const PREFIX: &str = "bnd_";

/// Who created the tokens of the first start, in the store and the audit log.
pub const FIRST_RUN: &str = "first start";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("`{0}` is not a token name: 1–64 ASCII letters, digits, `.`, `_` or `-`")]
    Name(String),
    #[error("a token needs at least one role (ingest, viewer, operator, communicator, admin)")]
    NoRole,
    #[error("`{0}` is not a role: ingest, viewer, operator, communicator or admin")]
    Role(String),
    #[error("`{0}` is the name of a token in the configuration")]
    ConfigName(String),
}

pub fn check_name(name: &str) -> Result<(), TokenError> {
    let ok = (1..=64).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(TokenError::Name(name.to_owned()))
    }
}

/// Roles as typed (`admin`, ` Ingest `), each known, at least one, without repeats.
pub fn parse_roles<S: AsRef<str>>(raw: &[S]) -> Result<Vec<Role>, TokenError> {
    let mut roles = Vec::new();
    for r in raw {
        let text = r.as_ref().trim().to_ascii_lowercase();
        let role = text
            .parse::<Role>()
            .map_err(|_| TokenError::Role(r.as_ref().to_owned()))?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    if roles.is_empty() {
        return Err(TokenError::NoRole);
    }
    Ok(roles)
}

/// The hex SHA-256 of a secret, as the store keeps it.
pub fn digest_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A fresh secret: `bnd_` and 32 random bytes in base64url.
pub fn new_secret() -> String {
    let mut raw = [0u8; 32];
    rand::fill(&mut raw);
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw))
}

/// A token to store and its secret, which is shown once and never kept.
pub struct Issued {
    pub token: NewToken,
    pub secret: String,
}

pub fn issue(name: &str, roles: &[Role], created_by: &str) -> Issued {
    let secret = new_secret();
    Issued {
        token: NewToken {
            name: name.to_owned(),
            roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
            secret_sha256: digest_hex(&secret),
            created_by: created_by.to_owned(),
        },
        secret,
    }
}

/// The tokens of a first start: `admin` and `ingest`, in that order (every replica inserts them
/// in the same order, so that one of two starting together stores both and the other none).
pub fn first_tokens() -> Vec<Issued> {
    vec![
        issue("admin", &[Role::Admin], FIRST_RUN),
        issue("ingest", &[Role::Ingest], FIRST_RUN),
    ]
}

/// On a first start (no token in the configuration, none ever in the store), stores the first
/// tokens and returns them to be shown; `None` when there is nothing to do, or when another
/// replica starting at the same time stored its own first.
pub async fn first_start<S: TokenStore + Sync + ?Sized>(
    store: &S,
    configured: usize,
    now: Timestamp,
) -> Result<Option<Vec<Issued>>, StoreError> {
    if configured > 0 {
        return Ok(None);
    }
    let issued = first_tokens();
    let tokens: Vec<NewToken> = issued.iter().map(|i| i.token.clone()).collect();
    Ok(store
        .create_first_tokens(&tokens, now)
        .await?
        .then_some(issued))
}

/// `http://` and the address a listener is bound to, reachable from the same machine (an
/// unspecified address, `0.0.0.0` or `::`, becomes loopback).
pub fn local_base(addr: std::net::SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}", std::net::SocketAddr::new(ip, addr.port()))
}

/// The tokens a first start made, and where this server answers, for the message that shows
/// them.
pub struct FirstRun {
    pub issued: Vec<Issued>,
    /// Where this server answers: its listen address, reachable from this machine.
    pub api: String,
    /// `server.public_url`.
    pub public: String,
}

/// What the first start shows: the two secrets, a `curl` line for each, where the console is
/// and how to give it its first user. `command` is how the operator runs `banditore` against
/// this deployment (with its `--config`, and as the service's user when that matters).
pub fn first_run_message(first: &FirstRun, command: &str) -> String {
    let (issued, api, public) = (&first.issued, &first.api, &first.public);
    let secret = |name: &str| {
        issued
            .iter()
            .find(|i| i.token.name == name)
            .map_or("", |i| i.secret.as_str())
    };
    let api = api.trim_end_matches('/');
    let public = public.trim_end_matches('/');
    format!(
        "
Banditore's first start: two API tokens were created. They are shown only now; the store
keeps a hash of each. Save them (a password manager, your monitors' secret files).

  admin   {admin}
  ingest  {ingest}

Post a test alert with the ingest token:

  curl -H 'Authorization: Bearer {ingest}' -H 'Content-Type: application/json' \\
    -d '{{\"summary\": \"Test\", \"service\": \"test\", \"severity\": \"info\"}}' \\
    {api}/api/v1/signals/generic

List the incidents with the admin token:

  curl -H 'Authorization: Bearer {admin}' {api}/api/v1/incidents

The console is at {public}/console. Give it its first user (the password is read from
standard input), while the service runs:

  {command} user add YOUR-NAME --role admin

More tokens: `{command} token create --name NAME --role ROLE`; see them with
`{command} token list`, revoke one with `{command} token revoke NAME`.

",
        admin = secret("admin"),
        ingest = secret("ingest"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_stored_as_their_digest() {
        let a = new_secret();
        assert!(a.starts_with("bnd_"));
        assert_eq!(a.len(), 4 + 43, "32 bytes in unpadded base64url");
        assert_ne!(a, new_secret());
        let issued = issue("grafana", &[Role::Ingest], "m.rossi");
        assert_eq!(issued.token.secret_sha256, digest_hex(&issued.secret));
        assert_eq!(issued.token.secret_sha256.len(), 64);
        assert!(!issued.token.secret_sha256.contains(&issued.secret));
        assert_eq!(issued.token.roles, vec!["ingest"]);
    }

    #[test]
    fn names_and_roles() {
        assert!(check_name("grafana-prod").is_ok());
        assert!(check_name("a").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("two words").is_err());
        assert!(check_name("\u{430}dmin").is_err(), "a Cyrillic а");
        assert!(check_name(&"x".repeat(65)).is_err());
        assert_eq!(
            parse_roles(&["Admin", " ingest", "admin"]),
            Ok(vec![Role::Admin, Role::Ingest])
        );
        assert_eq!(parse_roles::<&str>(&[]), Err(TokenError::NoRole));
        assert_eq!(parse_roles(&["root"]), Err(TokenError::Role("root".into())));
    }

    #[test]
    fn the_first_start_names_both_secrets_and_where_to_use_them() {
        let first = FirstRun {
            issued: first_tokens(),
            api: "http://127.0.0.1:8080".into(),
            public: "https://b.example/".into(),
        };
        let text = first_run_message(&first, "banditore --config /etc/banditore/banditore.toml");
        for i in &first.issued {
            assert!(text.contains(&i.secret));
        }
        assert!(text.contains("http://127.0.0.1:8080/api/v1/signals/generic"));
        assert!(text.contains("http://127.0.0.1:8080/api/v1/incidents"));
        assert!(text.contains("https://b.example/console"));
        assert!(text.contains("banditore --config /etc/banditore/banditore.toml user add"));
    }

    #[test]
    fn the_local_base_reaches_an_unspecified_address_on_loopback() {
        assert_eq!(
            local_base("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
        assert_eq!(local_base("[::]:80".parse().unwrap()), "http://[::1]:80");
        assert_eq!(
            local_base("10.0.0.5:8080".parse().unwrap()),
            "http://10.0.0.5:8080"
        );
    }
}
