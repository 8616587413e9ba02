//! Console users: names, passwords (argon2id, PHC strings) and the roles they may hold.
//!
//! Names are ASCII letters, digits, `.`, `_` and `-`, so that no name can pass for another
//! (`аdmin` with a Cyrillic `а` beside `admin`), and are unique whatever their case. Passwords
//! are at least twelve characters and must resist guessing as zxcvbn estimates it (score 3 of 4:
//! about 10^8 guesses or more), with the user's own name counted as known to the attacker.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::settings::Role;

/// Shorter passwords are refused.
pub const MIN_PASSWORD_CHARS: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("`{0}` is not a username: 3–64 ASCII letters, digits, `.`, `_` or `-`")]
    Username(String),
    #[error("the password is shorter than {MIN_PASSWORD_CHARS} characters")]
    ShortPassword,
    #[error("the password is too easy to guess{0}")]
    WeakPassword(String),
    #[error("a console user needs at least one role (admin, communicator, operator, viewer)")]
    NoRole,
    #[error("`ingest` is for monitors' tokens, not for people")]
    IngestRole,
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

pub fn check_username(name: &str) -> Result<(), UserError> {
    let ok = (3..=64).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(UserError::Username(name.to_owned()))
    }
}

pub fn check_roles(roles: &[Role]) -> Result<(), UserError> {
    if roles.is_empty() {
        return Err(UserError::NoRole);
    }
    if roles.contains(&Role::Ingest) {
        return Err(UserError::IngestRole);
    }
    Ok(())
}

/// Guesses a password must resist, as zxcvbn estimates them, for a console account.
const MIN_SCORE: zxcvbn::Score = zxcvbn::Score::Three;

/// Whether `password` is long enough and hard enough to guess for the user `username`.
pub fn check_password(password: &str, username: &str) -> Result<(), UserError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(UserError::ShortPassword);
    }
    let estimate = zxcvbn::zxcvbn(password, &[username, "banditore", "console"]);
    if estimate.score() >= MIN_SCORE {
        return Ok(());
    }
    let hint = estimate
        .feedback()
        .and_then(|f| f.warning().map(|w| format!(": {w}")))
        .unwrap_or_default();
    Err(UserError::WeakPassword(format!(
        "{hint} (about {} guesses; use a few unrelated words or a password manager)",
        estimate.guesses()
    )))
}

/// An argon2id hash of `password` with a fresh salt.
pub fn hash_password(password: &str) -> Result<String, UserError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(UserError::ShortPassword);
    }
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    let salt = SaltString::encode_b64(&bytes).map_err(|e| UserError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

/// Whether `password` matches `hash` (argon2 compares in constant time).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash to verify against when the user does not exist, so that a wrong name takes as long
/// as a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy password, never valid").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "correct horse battery!"));
        assert!(!verify_password("not a hash", "x"));
        assert_ne!(
            hash,
            hash_password("correct horse battery").unwrap(),
            "salted"
        );
        assert_eq!(hash_password("short"), Err(UserError::ShortPassword));
    }

    #[test]
    fn easy_passwords_are_refused_and_good_ones_taken() {
        for weak in [
            "            ",
            "aaaaaaaaaaaa",
            "123456789012",
            "password1234",
            "m.rossi2024!",
            "qwertyuiopas",
        ] {
            assert!(
                matches!(
                    check_password(weak, "m.rossi"),
                    Err(UserError::WeakPassword(_))
                ),
                "{weak:?}"
            );
        }
        assert_eq!(
            check_password("short", "m.rossi"),
            Err(UserError::ShortPassword)
        );
        for strong in [
            "una password lunga abbastanza",
            "una-password-lunga-abbastanza",
            "correct horse battery staple",
            "Vb7#kq2!Lm9$",
        ] {
            assert_eq!(check_password(strong, "m.rossi"), Ok(()), "{strong:?}");
        }
    }

    #[test]
    fn names_and_roles() {
        assert!(check_username("m.rossi").is_ok());
        assert!(check_username("\u{430}dmin").is_err(), "a Cyrillic а");
        assert!(check_username("àdmin").is_err());
        assert!(check_username("ab").is_err());
        assert!(check_username("a b").is_err());
        assert!(check_roles(&[]).is_err());
        assert!(check_roles(&[Role::Ingest]).is_err());
        assert!(check_roles(&[Role::Communicator]).is_ok());
    }
}
