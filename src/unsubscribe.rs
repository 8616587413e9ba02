//! Per-recipient unsubscribe links: `<public_url>/unsubscribe/<address id>.<signature>`.
//!
//! The signature is an HMAC of the address id under the deployment's secret key, so links need no
//! table of their own, cannot be guessed or enumerated, and stay valid across restarts.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const SIGNATURE_BYTES: usize = 16;

#[derive(Clone)]
pub struct UnsubscribeLinks {
    key: Vec<u8>,
    base: String,
}

impl UnsubscribeLinks {
    pub fn new(key: &[u8], public_url: &str) -> UnsubscribeLinks {
        UnsubscribeLinks {
            key: key.to_vec(),
            base: format!("{}/unsubscribe/", public_url.trim_end_matches('/')),
        }
    }

    fn mac(&self, address_id: i64) -> Hmac<Sha256> {
        // Any key length is valid for HMAC.
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(b"unsubscribe:");
        mac.update(address_id.to_string().as_bytes());
        mac
    }

    pub fn token(&self, address_id: i64) -> String {
        let tag = self.mac(address_id).finalize().into_bytes();
        format!(
            "{address_id}.{}",
            URL_SAFE_NO_PAD.encode(&tag[..SIGNATURE_BYTES])
        )
    }

    pub fn url(&self, address_id: i64) -> String {
        format!("{}{}", self.base, self.token(address_id))
    }

    /// The address id a token was issued for, if the signature holds (compared in constant time).
    pub fn verify(&self, token: &str) -> Option<i64> {
        let (id, signature) = token.split_once('.')?;
        let id: i64 = id.parse().ok()?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        if signature.len() != SIGNATURE_BYTES {
            return None;
        }
        self.mac(id).verify_truncated_left(&signature).ok()?;
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_forgeries_do_not() {
        let links =
            UnsubscribeLinks::new(b"0123456789abcdef0123456789abcdef", "https://b.example/");
        let token = links.token(42);
        assert_eq!(links.verify(&token), Some(42));
        assert!(
            links
                .url(42)
                .starts_with("https://b.example/unsubscribe/42.")
        );
        let (_, sig) = token.split_once('.').unwrap();
        assert_eq!(links.verify(&format!("43.{sig}")), None);
        assert_eq!(links.verify("42"), None);
        assert_eq!(links.verify("42.AAAA"), None);
        assert_eq!(links.verify("x.y"), None);
        let other = UnsubscribeLinks::new(b"another key, another deployment", "https://b.example");
        assert_eq!(other.verify(&token), None);
    }
}
