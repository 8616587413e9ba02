//! Per-recipient links: `<public_url>/unsubscribe/<address id>.<signature>` to leave,
//! `<public_url>/manage/<address id>.<signature>` for a citizen's preferences (which also
//! leaves), and `<public_url>/ack/<incident id>.<address id>.<signature>` for a desk to say it
//! has seen one incident (the same token rides a Telegram button and a call's key press). Each is
//! signed for its purpose, so one cannot stand for another, and an acknowledgement's for its
//! incident too, so it acknowledges no other.
//!
//! The signature is an HMAC, under the deployment's secret key, of the address id together with
//! the channel and the address itself, so links need no table of their own, cannot be guessed or
//! enumerated, stay valid across restarts, and stop working if the id ever names another address
//! (a database restored from an older backup, say).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::domain::subscriber::ChannelKind;

const SIGNATURE_BYTES: usize = 16;

#[derive(Clone)]
pub struct UnsubscribeLinks {
    key: Vec<u8>,
    base: String,
    manage_base: String,
    ack_base: String,
}

/// What a link lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Unsubscribe,
    Manage,
    Acknowledge,
}

impl Purpose {
    fn tag(self) -> &'static str {
        match self {
            Purpose::Unsubscribe => "unsubscribe",
            Purpose::Manage => "manage",
            Purpose::Acknowledge => "ack",
        }
    }
}

/// A token taken apart, not yet checked.
pub struct Token {
    pub address_id: i64,
    signature: Vec<u8>,
}

/// An acknowledgement's token taken apart, not yet checked: which incident, which address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckToken {
    pub incident_id: i64,
    pub address_id: i64,
    signature: Vec<u8>,
}

impl UnsubscribeLinks {
    pub fn new(key: &[u8], public_url: &str) -> UnsubscribeLinks {
        let public_url = public_url.trim_end_matches('/');
        UnsubscribeLinks {
            key: key.to_vec(),
            base: format!("{public_url}/unsubscribe/"),
            manage_base: format!("{public_url}/manage/"),
            ack_base: format!("{public_url}/ack/"),
        }
    }

    fn mac(
        &self,
        purpose: Purpose,
        address_id: i64,
        channel: ChannelKind,
        address: &str,
    ) -> Hmac<Sha256> {
        let mut mac = self.mac_tagged(purpose.tag(), address_id, channel);
        mac.update(address.as_bytes());
        mac
    }

    /// The MAC under the deployment's key, begun with what the token is for and whose it is.
    fn mac_tagged(&self, purpose: &str, address_id: i64, channel: ChannelKind) -> Hmac<Sha256> {
        // Any key length is valid for HMAC.
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(format!("{purpose}\0{address_id}\0{}\0", channel.as_str()).as_bytes());
        mac
    }

    pub fn token(&self, address_id: i64, channel: ChannelKind, address: &str) -> String {
        self.token_for(Purpose::Unsubscribe, address_id, channel, address)
    }

    fn token_for(
        &self,
        purpose: Purpose,
        address_id: i64,
        channel: ChannelKind,
        address: &str,
    ) -> String {
        let tag = self
            .mac(purpose, address_id, channel, address)
            .finalize()
            .into_bytes();
        format!(
            "{address_id}.{}",
            URL_SAFE_NO_PAD.encode(&tag[..SIGNATURE_BYTES])
        )
    }

    pub fn url(&self, address_id: i64, channel: ChannelKind, address: &str) -> String {
        format!("{}{}", self.base, self.token(address_id, channel, address))
    }

    /// The preferences page of one address.
    pub fn manage_url(&self, address_id: i64, channel: ChannelKind, address: &str) -> String {
        format!(
            "{}{}",
            self.manage_base,
            self.token_for(Purpose::Manage, address_id, channel, address)
        )
    }

    /// The token by which the holder of this address says it has seen this incident:
    /// `<incident id>.<address id>.<signature>`.
    pub fn ack_token(
        &self,
        incident_id: i64,
        address_id: i64,
        channel: ChannelKind,
        address: &str,
    ) -> String {
        let purpose = format!("{}:{incident_id}", Purpose::Acknowledge.tag());
        let mut mac = self.mac_tagged(&purpose, address_id, channel);
        mac.update(address.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!(
            "{incident_id}.{address_id}.{}",
            URL_SAFE_NO_PAD.encode(&tag[..SIGNATURE_BYTES])
        )
    }

    /// The page where the holder of this address says it has seen this incident.
    pub fn ack_url(
        &self,
        incident_id: i64,
        address_id: i64,
        channel: ChannelKind,
        address: &str,
    ) -> String {
        self.ack_url_of(&self.ack_token(incident_id, address_id, channel, address))
    }

    /// The acknowledgement page of a token made by [`UnsubscribeLinks::ack_token`].
    pub fn ack_url_of(&self, token: &str) -> String {
        format!("{}{token}", self.ack_base)
    }

    /// Takes an acknowledgement's token apart; `None` when it is not of our shape.
    pub fn parse_ack(token: &str) -> Option<AckToken> {
        let (incident, rest) = token.split_once('.')?;
        let Token {
            address_id,
            signature,
        } = Self::parse(rest)?;
        let incident_id = id(incident)?;
        Some(AckToken {
            incident_id,
            address_id,
            signature,
        })
    }

    /// Whether an acknowledgement's token was issued for this address (its channel and the
    /// address itself, as stored) and its incident, compared in constant time.
    pub fn verify_ack(&self, token: &AckToken, channel: ChannelKind, address: &str) -> bool {
        let purpose = format!("{}:{}", Purpose::Acknowledge.tag(), token.incident_id);
        let mut mac = self.mac_tagged(&purpose, token.address_id, channel);
        mac.update(address.as_bytes());
        mac.verify_truncated_left(&token.signature).is_ok()
    }

    /// Takes a token apart; `None` when it is not of our shape.
    pub fn parse(token: &str) -> Option<Token> {
        let (id, signature) = token.split_once('.')?;
        let address_id = self::id(id)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        (signature.len() == SIGNATURE_BYTES).then_some(Token {
            address_id,
            signature,
        })
    }

    /// Whether the token was issued for this address and purpose (compared in constant time).
    pub fn verify(
        &self,
        purpose: Purpose,
        token: &Token,
        channel: ChannelKind,
        address: &str,
    ) -> bool {
        self.mac(purpose, token.address_id, channel, address)
            .verify_truncated_left(&token.signature)
            .is_ok()
    }
}

/// An id as the tokens write it: decimal digits, no sign, no leading zero. `str::parse` would
/// also take `+12` and `012`, so one character added to a token would still name the same
/// address and incident.
fn id(text: &str) -> Option<i64> {
    let canonical = text.bytes().all(|b| b.is_ascii_digit())
        && !text.is_empty()
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMAIL: ChannelKind = ChannelKind::Email;

    fn links() -> UnsubscribeLinks {
        UnsubscribeLinks::new(b"0123456789abcdef0123456789abcdef", "https://b.example/")
    }

    fn check(l: &UnsubscribeLinks, token: &str, id: i64, address: &str) -> bool {
        UnsubscribeLinks::parse(token).is_some_and(|t| {
            t.address_id == id && l.verify(Purpose::Unsubscribe, &t, EMAIL, address)
        })
    }

    #[test]
    fn tokens_verify_and_forgeries_do_not() {
        let l = links();
        let token = l.token(42, EMAIL, "cup@asl.example");
        assert!(check(&l, &token, 42, "cup@asl.example"));
        assert!(
            l.url(42, EMAIL, "cup@asl.example")
                .starts_with("https://b.example/unsubscribe/42.")
        );
        let (_, sig) = token.split_once('.').unwrap();
        assert!(!check(&l, &format!("43.{sig}"), 43, "cup@asl.example"));
        assert!(UnsubscribeLinks::parse("42").is_none());
        assert!(UnsubscribeLinks::parse("42.AAAA").is_none());
        assert!(UnsubscribeLinks::parse("x.y").is_none());
        let other = UnsubscribeLinks::new(b"another key, another deployment", "https://b.example");
        assert!(!check(&other, &token, 42, "cup@asl.example"));
    }

    #[test]
    fn a_manage_link_is_no_unsubscribe_link_and_back() {
        let l = links();
        let manage = l.manage_url(42, EMAIL, "a@b.example");
        let token = manage.rsplit('/').next().unwrap();
        assert!(manage.starts_with("https://b.example/manage/42."));
        assert!(!check(&l, token, 42, "a@b.example"));
        let parsed = UnsubscribeLinks::parse(token).unwrap();
        assert!(l.verify(Purpose::Manage, &parsed, EMAIL, "a@b.example"));
        let unsubscribe = UnsubscribeLinks::parse(&l.token(42, EMAIL, "a@b.example")).unwrap();
        assert!(!l.verify(Purpose::Manage, &unsubscribe, EMAIL, "a@b.example"));
    }

    #[test]
    fn an_acknowledgement_holds_for_its_incident_and_address_only() {
        let l = links();
        let url = l.ack_url(12, 42, EMAIL, "cup@asl.example");
        assert!(url.starts_with("https://b.example/ack/12.42."));
        let token = url.rsplit('/').next().unwrap();
        let parsed = UnsubscribeLinks::parse_ack(token).unwrap();
        assert_eq!((parsed.incident_id, parsed.address_id), (12, 42));
        assert!(l.verify_ack(&parsed, EMAIL, "cup@asl.example"));
        // Another incident, address, channel or deployment: nothing.
        let sig = token.rsplit('.').next().unwrap();
        for forged in [format!("13.42.{sig}"), format!("12.43.{sig}")] {
            let f = UnsubscribeLinks::parse_ack(&forged).unwrap();
            assert!(!l.verify_ack(&f, EMAIL, "cup@asl.example"), "{forged}");
        }
        assert!(!l.verify_ack(&parsed, ChannelKind::Sms, "cup@asl.example"));
        assert!(!l.verify_ack(&parsed, EMAIL, "other@asl.example"));
        let other = UnsubscribeLinks::new(b"another key, another deployment", "https://b.example");
        assert!(!other.verify_ack(&parsed, EMAIL, "cup@asl.example"));
        // An unsubscribe or preferences token is no acknowledgement, and back.
        let unsubscribe = l.token(42, EMAIL, "cup@asl.example");
        assert!(
            UnsubscribeLinks::parse_ack(&format!("12.{unsubscribe}"))
                .is_none_or(|t| !l.verify_ack(&t, EMAIL, "cup@asl.example"))
        );
        let as_unsubscribe = UnsubscribeLinks::parse(token.split_once('.').unwrap().1).unwrap();
        assert!(!l.verify(
            Purpose::Unsubscribe,
            &as_unsubscribe,
            EMAIL,
            "cup@asl.example"
        ));
        for bad in [
            "",
            "12",
            "12.42",
            "x.42.AAAA",
            "12.x.AAAA",
            "12.42.AAAA",
            "-.-.-",
        ] {
            assert!(UnsubscribeLinks::parse_ack(bad).is_none(), "{bad}");
        }
        // One character added to an id: another token, which names nothing.
        let (incident, rest) = token.split_once('.').unwrap();
        for edited in [
            format!("+{token}"),
            format!("0{token}"),
            format!("{incident}.+{rest}"),
            format!("{incident}.0{rest}"),
        ] {
            assert!(UnsubscribeLinks::parse_ack(&edited).is_none(), "{edited}");
        }
        for edited in [format!("+{rest}"), format!("0{rest}")] {
            assert!(UnsubscribeLinks::parse(&edited).is_none(), "{edited}");
        }
        assert!(UnsubscribeLinks::parse(rest).is_some());
    }

    #[test]
    fn a_token_dies_when_its_id_names_another_address() {
        let l = links();
        let token = l.token(7, EMAIL, "old.desk@asl.example");
        assert!(!check(&l, &token, 7, "new.desk@asl.example"));
    }
}
