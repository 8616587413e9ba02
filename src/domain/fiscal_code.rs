//! The Italian codice fiscale, by which App IO and the booking systems name a citizen: sixteen
//! characters (six letters of surname and name, the year, a month letter, the day, plus 40 for
//! women, the municipality, and a check letter), read from what people and systems write
//! (spaces around it, lower case) and checked by its check character. Where two people would
//! share a code (omocodia), the Agenzia delle Entrate replaces digits from the right with the
//! letters `LMNPQRSTUV`; such codes are valid too. The temporary eleven-digit codes are not
//! personal codes and are refused.
//!
//! At rest a code is kept sealed ([`FiscalCode::seal`]): encrypted with ChaCha20-Poly1305 under a
//! key drawn from the deployment's key, with a nonce drawn from the code itself, so that one code
//! always seals to the same text (the store finds a citizen twice by it, and nothing else can).
//! Only what sends to App IO opens it.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use sha2::Sha256;

/// A codice fiscale that passed its checks: sixteen upper-case ASCII characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FiscalCode(String);

/// The letters that stand for digits 0–9 in an omocodia code.
const OMOCODIA: &[u8; 10] = b"LMNPQRSTUV";
/// The month letters, January to December.
const MONTHS: &[u8; 12] = b"ABCDEHLMPRST";
/// Positions (from 0) that hold digits, or their omocodia letters.
const DIGITS: [usize; 7] = [6, 7, 9, 10, 12, 13, 14];
/// The value of a character in an odd position (1st, 3rd… counted from 1), digits and letters
/// alike (`0` as `A`, `1` as `B`…).
const ODD: [u32; 26] = [
    1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23,
];

impl FiscalCode {
    /// Reads a codice fiscale: surrounding spaces and case do not matter, anything else does.
    /// The error names what is wrong, without repeating the code (it is personal data).
    pub fn parse(raw: &str) -> Result<FiscalCode, FiscalCodeError> {
        let code = raw.trim().to_ascii_uppercase();
        let bytes = code.as_bytes();
        if bytes.len() != 16 || !code.is_ascii() {
            return Err(FiscalCodeError::Length);
        }
        for (i, &b) in bytes.iter().enumerate() {
            let fits = if DIGITS.contains(&i) {
                b.is_ascii_digit() || OMOCODIA.contains(&b)
            } else {
                b.is_ascii_uppercase()
            };
            if !fits {
                return Err(FiscalCodeError::Shape);
            }
        }
        if !MONTHS.contains(&bytes[8]) {
            return Err(FiscalCodeError::Shape);
        }
        let day = digit(bytes[9]) * 10 + digit(bytes[10]);
        if !(1..=31).contains(&(day % 40)) || day > 71 {
            return Err(FiscalCodeError::Shape);
        }
        if check_character(&bytes[..15]) != bytes[15] {
            return Err(FiscalCodeError::Check);
        }
        Ok(FiscalCode(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A digit or its omocodia letter, as its value.
fn digit(b: u8) -> u32 {
    match OMOCODIA.iter().position(|&l| l == b) {
        Some(p) => p as u32,
        None => u32::from(b.wrapping_sub(b'0')),
    }
}

/// The check letter of the first fifteen characters (upper-case letters and digits).
fn check_character(first: &[u8]) -> u8 {
    let sum: u32 = first
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            let index = if b.is_ascii_digit() {
                b - b'0'
            } else {
                b - b'A'
            } as usize;
            if i % 2 == 0 { ODD[index] } else { index as u32 }
        })
        .sum();
    b'A' + (sum % 26) as u8
}

/// Why a codice fiscale was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FiscalCodeError {
    #[error("a codice fiscale has 16 letters and digits")]
    Length,
    #[error(
        "not a codice fiscale: six letters, two digits, a month letter, two digits of the day, a letter, three digits and a check letter"
    )]
    Shape,
    #[error("the codice fiscale's check character does not match: a character is mistyped")]
    Check,
}

/// Shown masked (`RSS***********6S`): logs and errors never carry the whole code.
impl fmt::Debug for FiscalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FiscalCode({})", self.masked())
    }
}

impl FiscalCode {
    /// The first three and last two characters, the rest starred.
    pub fn masked(&self) -> String {
        format!("{}***********{}", &self.0[..3], &self.0[14..])
    }
}

/// The deployment's key as the subscriber rules carry it, to seal codes as they are read; never
/// shown.
#[derive(Clone)]
pub struct SealKey(std::sync::Arc<[u8]>);

impl SealKey {
    pub fn new(key: &[u8]) -> SealKey {
        SealKey(key.into())
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(…)")
    }
}

/// What a sealed code starts with: the scheme's name and version.
const SEALED: &str = "cf1.";

/// A key of `purpose` drawn from the deployment's key.
fn derive(key: &[u8], purpose: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"banditore fiscal code v1 ");
    mac.update(purpose);
    mac.finalize().into_bytes().into()
}

fn cipher(key: &[u8]) -> LessSafeKey {
    let unbound = UnboundKey::new(&CHACHA20_POLY1305, &derive(key, b"seal"))
        .unwrap_or_else(|_| unreachable!("a ChaCha20-Poly1305 key is 32 bytes"));
    LessSafeKey::new(unbound)
}

impl FiscalCode {
    /// The code sealed under the deployment's `key`: `cf1.` and URL-safe base64 of a nonce
    /// drawn from the code and the ciphertext. The same code and key always give the same text.
    pub fn seal(&self, key: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&derive(key, b"nonce"))
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(self.0.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&digest[..12]);
        let mut sealed = self.0.clone().into_bytes();
        cipher(key)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(SEALED.as_bytes()),
                &mut sealed,
            )
            .unwrap_or_else(|_| unreachable!("sixteen bytes always seal"));
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{SEALED}{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens what [`FiscalCode::seal`] sealed under the same `key`; `None` for anything else
    /// (another key, a changed character, text that was never sealed).
    pub fn unseal(sealed: &str, key: &[u8]) -> Option<FiscalCode> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed.strip_prefix(SEALED)?).ok()?;
        if bytes.len() < 12 {
            return None;
        }
        let (nonce, rest) = bytes.split_at(12);
        let mut rest = rest.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let plain = cipher(key)
            .open_in_place(nonce, Aad::from(SEALED.as_bytes()), &mut rest)
            .ok()?;
        FiscalCode::parse(std::str::from_utf8(plain).ok()?).ok()
    }

    /// Whether `text` is a sealed code (of this scheme), without opening it.
    pub fn is_sealed(text: &str) -> bool {
        text.starts_with(SEALED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A code of the right shape with its check letter computed.
    fn with_check(first: &str) -> String {
        format!("{first}{}", check_character(first.as_bytes()) as char)
    }

    #[test]
    fn published_examples_are_read() {
        // The Agenzia delle Entrate's and the textbooks' examples.
        for code in ["RSSMRA85T10A562S", "MRTMTT25D09F205Z", "BNZVCN32S10E573Z"] {
            assert_eq!(FiscalCode::parse(code).unwrap().as_str(), code);
        }
        // Lower case and spaces around are what people type.
        assert_eq!(
            FiscalCode::parse("  rssmra85t10a562s\n").unwrap().as_str(),
            "RSSMRA85T10A562S"
        );
        // Omocodia: the last digit of the municipality replaced by its letter (2 → N).
        let omocode = with_check("RSSMRA85T10A56N");
        assert!(FiscalCode::parse(&omocode).is_ok(), "{omocode}");
    }

    #[test]
    fn wrong_codes_are_named_for_what_is_wrong() {
        assert_eq!(
            FiscalCode::parse("RSSMRA85T10A562T"),
            Err(FiscalCodeError::Check)
        );
        assert_eq!(
            FiscalCode::parse("12345678901"),
            Err(FiscalCodeError::Length)
        );
        assert_eq!(FiscalCode::parse(""), Err(FiscalCodeError::Length));
        // Month `Z` is no month; day 32 is no day, nor 00.
        assert_eq!(
            FiscalCode::parse(&with_check("RSSMRA85Z10A562")),
            Err(FiscalCodeError::Shape)
        );
        assert_eq!(
            FiscalCode::parse(&with_check("RSSMRA85T32A562")),
            Err(FiscalCodeError::Shape)
        );
        assert_eq!(
            FiscalCode::parse(&with_check("RSSMRA85T00A562")),
            Err(FiscalCodeError::Shape)
        );
        // Sixteen characters of which some are not ASCII.
        assert_eq!(
            FiscalCode::parse("RSSMRA85T10A56È"),
            Err(FiscalCodeError::Length)
        );
    }

    #[test]
    fn the_mask_keeps_five_characters() {
        let code = FiscalCode::parse("RSSMRA85T10A562S").unwrap();
        assert_eq!(code.masked(), "RSS***********2S");
        assert!(!format!("{code:?}").contains("RSSMRA85"));
    }

    #[test]
    fn a_sealed_code_opens_with_its_key_only() {
        let code = FiscalCode::parse("RSSMRA85T10A562S").unwrap();
        let sealed = code.seal(b"deployment key");
        assert!(FiscalCode::is_sealed(&sealed));
        assert!(!sealed.contains("RSSMRA"));
        assert_eq!(sealed, code.seal(b"deployment key"), "one code, one text");
        assert_ne!(sealed, code.seal(b"another key"));
        let other = FiscalCode::parse("MRTMTT25D09F205Z").unwrap();
        assert_ne!(sealed, other.seal(b"deployment key"));
        assert_eq!(FiscalCode::unseal(&sealed, b"deployment key"), Some(code));
        assert_eq!(FiscalCode::unseal(&sealed, b"another key"), None);
        assert_eq!(
            FiscalCode::unseal("RSSMRA85T10A562S", b"deployment key"),
            None
        );
        // A character changed anywhere in the sealed text opens nothing.
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(FiscalCode::unseal(&tampered, b"deployment key"), None);
    }

    proptest! {
        /// Every code built by the rules is read back, and changing any one character of it
        /// to another of the same kind is caught (the check letter catches any single change).
        #[test]
        fn one_changed_character_is_always_caught(
            letters in "[A-Z]{6}", year in 0u32..100, month in 0usize..12,
            day in 1u32..=31, woman in any::<bool>(), town in "[A-Z][0-9]{3}",
            at in 0usize..16, replacement in "[A-Z0-9]",
        ) {
            let day = if woman { day + 40 } else { day };
            let first = format!("{letters}{year:02}{}{day:02}{town}", MONTHS[month] as char);
            let code = with_check(&first);
            prop_assert_eq!(FiscalCode::parse(&code).map(|c| c.0), Ok(code.clone()));
            let mut changed = code.clone().into_bytes();
            changed[at] = replacement.as_bytes()[0];
            if changed != code.as_bytes() {
                let changed = String::from_utf8(changed).unwrap();
                prop_assert!(FiscalCode::parse(&changed).is_err(), "{changed}");
            }
        }

        /// Whatever is written, reading it never panics, and what is read reads as itself.
        #[test]
        fn anything_written_is_read_or_refused_without_panic(raw in any::<String>()) {
            if let Ok(code) = FiscalCode::parse(&raw) {
                prop_assert_eq!(code.as_str().len(), 16);
                prop_assert_eq!(FiscalCode::parse(code.as_str()), Ok(code.clone()));
            }
        }
    }
}
