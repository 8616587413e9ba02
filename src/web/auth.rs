//! Who is calling: API tokens (Bearer, or the password of HTTP basic auth) and HMAC body
//! signatures. Every comparison is constant-time, and every token is compared so that timing does
//! not reveal which one nearly matched.
//!
//! Tokens come from the configuration and from the store. The store's are held in memory, so that
//! no request reads the database to authenticate, and reloaded every [`RELOAD_EVERY`] (and at
//! once when this process changes them): a token created or revoked elsewhere (the command line,
//! another replica) works or stops working within that time. Uses are noted in memory and written
//! to the store at each reload.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::settings::{HmacKey, Permission, Role, TokenKey};
use crate::store::{StoreError, TokenRow, TokenStore};

/// How often every replica reloads the store's tokens.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub roles: Vec<Role>,
}

impl Principal {
    pub fn may(&self, needed: Permission) -> bool {
        self.roles.iter().any(|r| r.allows(needed))
    }
}

struct StoredToken {
    name: String,
    digest: [u8; 32],
    roles: Vec<Role>,
    /// The store's id, for a token from the store.
    id: Option<i64>,
    /// Used since the last reload.
    used: AtomicBool,
}

pub struct Authenticator {
    /// The configuration's tokens.
    tokens: Vec<StoredToken>,
    /// The store's live tokens, as last loaded.
    stored: RwLock<Arc<Vec<StoredToken>>>,
    /// Held through a whole reload, so that one started after a revocation is never overwritten
    /// by an earlier one that read the store before it.
    reloading: tokio::sync::Mutex<()>,
    hmac: Vec<HmacKey>,
}

fn digest(value: &[u8]) -> [u8; 32] {
    Sha256::digest(value).into()
}

impl Authenticator {
    pub fn new(tokens: &[TokenKey], hmac: &[HmacKey]) -> Authenticator {
        Authenticator {
            tokens: tokens
                .iter()
                .map(|t| StoredToken {
                    name: t.name.clone(),
                    digest: digest(t.secret.expose().as_bytes()),
                    roles: t.roles.clone(),
                    id: None,
                    used: AtomicBool::new(false),
                })
                .collect(),
            stored: RwLock::new(Arc::new(Vec::new())),
            reloading: tokio::sync::Mutex::new(()),
            hmac: hmac.to_vec(),
        }
    }

    /// Whether the configuration has a token named `name` (the store may not take its name).
    pub fn is_config_token(&self, name: &str) -> bool {
        self.tokens.iter().any(|t| t.name == name)
    }

    /// The configuration's tokens: name and roles.
    pub fn config_tokens(&self) -> Vec<(String, Vec<Role>)> {
        self.tokens
            .iter()
            .map(|t| (t.name.clone(), t.roles.clone()))
            .collect()
    }

    /// Writes down which store tokens were used since the last time, then takes the store's
    /// live tokens as the ones to accept. Returns how many are accepted.
    pub async fn reload<S: TokenStore + Sync + ?Sized>(
        &self,
        store: &S,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        let _one_at_a_time = self.reloading.lock().await;
        let used: Vec<i64> = self
            .current()
            .iter()
            .filter(|t| t.used.swap(false, Ordering::Relaxed))
            .filter_map(|t| t.id)
            .collect();
        if let Err(e) = store.mark_tokens_used(&used, now).await {
            // Losing a "last used" time is no reason to stop taking new tokens.
            tracing::warn!(error = %e, "cannot note when tokens were last used");
        }
        let loaded: Vec<StoredToken> = store
            .live_tokens()
            .await?
            .iter()
            .filter_map(|row| self.accepted(row))
            .collect();
        let count = loaded.len();
        match self.stored.write() {
            Ok(mut guard) => *guard = Arc::new(loaded),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(loaded),
        }
        Ok(count)
    }

    /// A stored token as one to accept, unless it cannot be (logged).
    fn accepted(&self, row: &TokenRow) -> Option<StoredToken> {
        if self.is_config_token(&row.name) {
            tracing::warn!(
                token = %row.name,
                "a stored token has the name of a token in the configuration: it is ignored \
                 (revoke it, or rename the configured one)"
            );
            return None;
        }
        let digest: [u8; 32] = hex::decode(&row.secret_sha256)
            .ok()
            .and_then(|d| d.try_into().ok())
            .or_else(|| {
                tracing::warn!(token = %row.name, "a stored token's digest is corrupt: ignored");
                None
            })?;
        let roles: Vec<Role> = row.roles.iter().filter_map(|r| r.parse().ok()).collect();
        Some(StoredToken {
            name: row.name.clone(),
            digest,
            roles,
            id: Some(row.id),
            used: AtomicBool::new(false),
        })
    }

    fn current(&self) -> Arc<Vec<StoredToken>> {
        match self.stored.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn has_hmac(&self) -> bool {
        !self.hmac.is_empty()
    }

    /// The caller named by an `Authorization` header (Bearer token, or basic auth whose password
    /// is a token), if any.
    pub fn from_headers(&self, headers: &HeaderMap) -> Option<Principal> {
        let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
        let (scheme, credentials) = value.split_once(' ')?;
        let token = match scheme.to_ascii_lowercase().as_str() {
            "bearer" => credentials.trim().to_owned(),
            "basic" => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(credentials.trim())
                    .ok()?;
                let text = String::from_utf8(decoded).ok()?;
                text.split_once(':')?.1.to_owned()
            }
            _ => return None,
        };
        self.token(&token)
    }

    /// The caller presenting `secret` elsewhere than in `Authorization`: PagerDuty's routing
    /// key in the body, Opsgenie's `GenieKey` scheme.
    pub fn from_secret(&self, secret: &str) -> Option<Principal> {
        self.token(secret)
    }

    fn token(&self, presented: &str) -> Option<Principal> {
        let presented = digest(presented.as_bytes());
        let stored = self.current();
        let mut found = None;
        for t in self.tokens.iter().chain(stored.iter()) {
            if bool::from(t.digest.ct_eq(&presented)) {
                t.used.store(true, Ordering::Relaxed);
                found = Some(Principal {
                    name: t.name.clone(),
                    roles: t.roles.clone(),
                });
            }
        }
        found
    }

    /// The caller proven by an HMAC signature of `body`, if a configured scheme's header is
    /// present and valid. A signer may only ingest.
    pub fn from_signature(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: Timestamp,
    ) -> Option<Principal> {
        self.hmac
            .iter()
            .find(|scheme| verify(scheme, headers, body, now))
            .map(|scheme| Principal {
                name: scheme.name.clone(),
                roles: vec![Role::Ingest],
            })
    }
}

/// Reloads the store's tokens every [`RELOAD_EVERY`] until `stop`; a failure is logged and the
/// tokens last loaded stay.
pub async fn keep_reloading(
    auth: Arc<Authenticator>,
    store: Arc<dyn crate::store::Store>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(RELOAD_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Err(e) = auth.reload(store.as_ref(), Timestamp::now()).await {
            tracing::warn!(error = %e, "cannot reload the stored API tokens; keeping the last ones");
        }
    }
    // The last uses are written down before the store closes.
    let _ = auth.reload(store.as_ref(), Timestamp::now()).await;
}

fn verify(scheme: &HmacKey, headers: &HeaderMap, body: &[u8], now: Timestamp) -> bool {
    let Some(signature) = headers
        .get(scheme.header.as_str())
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let signature = signature.trim();
    let Some(hex_digest) = signature.strip_prefix(scheme.prefix.as_str()) else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_digest.trim()) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(scheme.secret.expose().as_bytes())
    else {
        return false;
    };
    if let Some(ts_header) = &scheme.timestamp_header {
        let Some(stamp) = headers
            .get(ts_header.as_str())
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        if !fresh(stamp.trim(), now, scheme.tolerance) {
            return false;
        }
        mac.update(stamp.trim().as_bytes());
        mac.update(b":");
    }
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// Whether a Unix-seconds (or milliseconds) timestamp is within `tolerance` of now.
fn fresh(stamp: &str, now: Timestamp, tolerance: Duration) -> bool {
    let Ok(value) = stamp.parse::<i64>() else {
        return false;
    };
    let seconds = if value > 100_000_000_000 {
        value / 1000
    } else {
        value
    };
    now.as_second().abs_diff(seconds) <= tolerance.as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Secret;
    use axum::http::HeaderValue;

    fn auth() -> Authenticator {
        Authenticator::new(
            &[
                TokenKey {
                    name: "am".into(),
                    secret: Secret::new("ingest-token-0123456789"),
                    roles: vec![Role::Ingest],
                },
                TokenKey {
                    name: "ops".into(),
                    secret: Secret::new("admin-token-0123456789"),
                    roles: vec![Role::Admin],
                },
            ],
            &[HmacKey {
                name: "grafana".into(),
                secret: Secret::new("It's a Secret to Everybody"),
                header: "X-Grafana-Alerting-Signature".into(),
                timestamp_header: None,
                tolerance: Duration::from_secs(300),
                prefix: String::new(),
            }],
        )
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_and_basic() {
        let a = auth();
        let p = a
            .from_headers(&headers(&[(
                "authorization",
                "Bearer ingest-token-0123456789",
            )]))
            .unwrap();
        assert_eq!(p.name, "am");
        assert!(p.may(Permission::Ingest) && !p.may(Permission::Read));
        let basic =
            base64::engine::general_purpose::STANDARD.encode("alertmanager:admin-token-0123456789");
        let p = a
            .from_headers(&headers(&[("authorization", &format!("Basic {basic}"))]))
            .unwrap();
        assert!(p.may(Permission::Ingest) && p.may(Permission::Admin));
        assert!(
            a.from_headers(&headers(&[("authorization", "Bearer wrong")]))
                .is_none()
        );
        assert!(
            a.from_headers(&headers(&[(
                "authorization",
                "Token ingest-token-0123456789"
            )]))
            .is_none()
        );
        assert!(a.from_headers(&HeaderMap::new()).is_none());
    }

    #[test]
    fn github_test_vector_signature() {
        // Test vector from GitHub's webhook documentation, with the `sha256=` prefix removed.
        let a = auth();
        let sig = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let h = headers(&[("x-grafana-alerting-signature", sig)]);
        assert_eq!(
            a.from_signature(&h, b"Hello, World!", Timestamp::now())
                .unwrap()
                .roles,
            vec![Role::Ingest]
        );
        assert!(
            a.from_signature(&h, b"Hello, World?", Timestamp::now())
                .is_none()
        );
    }

    #[test]
    fn timestamped_signature_must_be_fresh() {
        let scheme = HmacKey {
            name: "g".into(),
            secret: Secret::new("k"),
            header: "X-Sig".into(),
            timestamp_header: Some("X-Sig-Ts".into()),
            tolerance: Duration::from_secs(300),
            prefix: "sha256=".into(),
        };
        let a = Authenticator::new(&[], &[scheme]);
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let sign = |ts: i64| {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"k").unwrap();
            mac.update(format!("{ts}:body").as_bytes());
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        };
        let ok = headers(&[("x-sig", &sign(1_800_000_000)), ("x-sig-ts", "1800000000")]);
        assert!(a.from_signature(&ok, b"body", now).is_some());
        let stale = headers(&[("x-sig", &sign(1_799_990_000)), ("x-sig-ts", "1799990000")]);
        assert!(a.from_signature(&stale, b"body", now).is_none());
    }
}
