//! Console users: names, passwords (argon2id, PHC strings) and the roles they may hold.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::settings::Role;

/// Shorter passwords are refused.
pub const MIN_PASSWORD_CHARS: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("`{0}` is not a username: 3–64 letters, digits, `.`, `_` or `-`")]
    Username(String),
    #[error("the password is shorter than {MIN_PASSWORD_CHARS} characters")]
    ShortPassword,
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
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'));
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
    fn names_and_roles() {
        assert!(check_username("m.rossi").is_ok());
        assert!(check_username("ab").is_err());
        assert!(check_username("a b").is_err());
        assert!(check_roles(&[]).is_err());
        assert!(check_roles(&[Role::Ingest]).is_err());
        assert!(check_roles(&[Role::Communicator]).is_ok());
    }
}
