//! Signing by the Standard Webhooks specification: each receiver's own secret, its
//! `webhook-id` kept across retries, and `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `{id}.{timestamp}.{body}`.
//!
//! A receiver's secret is derived, never stored: HMAC-SHA256 of its URL under the deployment's
//! key. Every replica signs alike without sharing anything more, a backup or a leaked list of
//! subscribers holds no secret, and the secret is shown on request by `banditore webhook-secret
//! <url>`. Changing the URL (a query parameter) changes the secret; so does changing
//! `server.secret_key`, for every receiver at once.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::domain::subscriber::WebhookAddress;

/// Kept apart from the key's other uses (unsubscribe links, approval links).
const PURPOSE: &[u8] = b"banditore webhook signing secret v1\n";

/// A receiver's signing secret: 32 random-looking bytes, as the specification asks (24 to 64).
pub struct SigningSecret([u8; 32]);

impl SigningSecret {
    /// The secret of `address` (its URL, the preset aside) under the deployment's `key`.
    pub fn derive(key: &[u8], address: &WebhookAddress) -> SigningSecret {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
        mac.update(PURPOSE);
        mac.update(address.url.as_str().as_bytes());
        SigningSecret(mac.finalize().into_bytes().into())
    }

    /// As the receiver is given it: `whsec_` and the bytes in base64.
    pub fn reveal(&self) -> String {
        format!("whsec_{}", STANDARD.encode(self.0))
    }

    /// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes 32 bytes");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(…)")
    }
}

/// The message's `webhook-id`: the same at every attempt of one delivery, unique across
/// deployments, and without the `.` the signed content is split by.
pub fn message_id(deployment_id: &str, delivery_id: i64) -> String {
    let deployment: String = deployment_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    if delivery_id < 0 {
        format!("msg_{deployment}_n{}", delivery_id.unsigned_abs())
    } else {
        format!("msg_{deployment}_{delivery_id}")
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;
    use proptest::prelude::*;

    use super::*;
    use crate::domain::subscriber::WebhookRules;

    fn address(url: &str) -> WebhookAddress {
        WebhookAddress::parse(url, &WebhookRules::default()).unwrap()
    }

    fn headers(id: &str, ts: i64, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", id.parse().unwrap());
        h.insert("webhook-timestamp", ts.to_string().parse().unwrap());
        h.insert("webhook-signature", sig.parse().unwrap());
        h
    }

    #[test]
    fn secrets_are_per_url_and_key_and_the_preset_does_not_change_them() {
        let a = SigningSecret::derive(b"k", &address("https://a.example/hook"));
        let b = SigningSecret::derive(b"k", &address("https://b.example/hook"));
        let a2 = SigningSecret::derive(b"other", &address("https://a.example/hook"));
        let slack = SigningSecret::derive(b"k", &address("slack+https://a.example/hook"));
        assert_ne!(a.reveal(), b.reveal());
        assert_ne!(a.reveal(), a2.reveal());
        assert_eq!(a.reveal(), slack.reveal());
        assert!(a.reveal().starts_with("whsec_"));
        assert_eq!(format!("{a:?}"), "SigningSecret(…)");
    }

    #[test]
    fn the_id_is_stable_per_delivery_and_has_no_full_stop() {
        assert_eq!(message_id("a1b2c3", 42), "msg_a1b2c3_42");
        assert_eq!(message_id("a.b", -7), "msg_ab_n7");
        assert_ne!(message_id("a1", 1), message_id("a1", 2));
    }

    proptest! {
        /// The reference library accepts every signature, and refuses it once the body, the
        /// timestamp, the id or the secret is not the one signed.
        #[test]
        fn the_reference_library_verifies_every_signature_and_refuses_tampering(
            body in crate::hostile::text(),
            delivery in any::<i64>(),
            skew in -200i64..200,
            path in "[a-z0-9]{0,12}",
        ) {
            let secret = SigningSecret::derive(b"deployment key", &address(&format!("https://r.example/{path}")));
            let receiver = standardwebhooks::Webhook::new(&secret.reveal()).unwrap();
            let id = message_id("dep1", delivery);
            let now = jiff::Timestamp::now().as_second() + skew;
            let sig = secret.sign(&id, now, body.as_bytes());
            prop_assert!(receiver.verify(body.as_bytes(), &headers(&id, now, &sig)).is_ok());
            let tampered = format!("{body}x");
            prop_assert!(receiver.verify(tampered.as_bytes(), &headers(&id, now, &sig)).is_err());
            prop_assert!(receiver.verify(body.as_bytes(), &headers(&id, now + 1, &sig)).is_err());
            prop_assert!(receiver.verify(body.as_bytes(), &headers("msg_other", now, &sig)).is_err());
            let old = now - 301 - skew.max(0);
            let old_sig = secret.sign(&id, old, body.as_bytes());
            prop_assert!(receiver.verify(body.as_bytes(), &headers(&id, old, &old_sig)).is_err());
            let wrong = SigningSecret::derive(b"another key", &address(&format!("https://r.example/{path}")));
            let wrong = standardwebhooks::Webhook::new(&wrong.reveal()).unwrap();
            prop_assert!(wrong.verify(body.as_bytes(), &headers(&id, now, &sig)).is_err());
        }
    }
}
