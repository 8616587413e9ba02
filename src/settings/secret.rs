//! Secrets: values that must never reach a log line or a debug print.
//!
//! A secret can be written inline, read from a file (`*_file`, the usual way with container
//! secrets) or read from a named environment variable (`*_env`). Exactly one of the three is given.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// The three ways of giving one secret, as they appear in a config table.
#[derive(Debug, Clone, Default)]
pub struct SecretSource {
    pub value: Option<Secret>,
    pub file: Option<PathBuf>,
    pub env: Option<String>,
}

impl SecretSource {
    /// Resolves the secret. `Ok(None)` when none of the three is given; an error when more than one
    /// is, or when the file or variable cannot be read or is empty. `key` names the inline key in
    /// messages (`token`, `password`…).
    pub fn resolve(&self, key: &str) -> Result<Option<Secret>, String> {
        let given = [
            self.value.is_some(),
            self.file.is_some(),
            self.env.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(format!(
                "give only one of `{key}`, `{key}_file` and `{key}_env`"
            ));
        }
        let value = if let Some(v) = &self.value {
            v.expose().to_owned()
        } else if let Some(path) = &self.file {
            let raw = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read `{key}_file` {}: {e}", path.display()))?;
            raw.trim_end_matches(['\n', '\r']).to_owned()
        } else if let Some(var) = &self.env {
            std::env::var(var).map_err(|_| {
                format!("environment variable `{var}` (from `{key}_env`) is not set")
            })?
        } else {
            return Ok(None);
        };
        if value.is_empty() {
            return Err(format!("`{key}` is empty"));
        }
        Ok(Some(Secret(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        let src = SecretSource {
            value: Some(s),
            ..Default::default()
        };
        assert!(!format!("{src:?}").contains("hunter2"));
    }

    #[test]
    fn file_is_read_and_trailing_newline_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret-token\n").unwrap();
        let src = SecretSource {
            file: Some(path),
            ..Default::default()
        };
        assert_eq!(
            src.resolve("token").unwrap().unwrap().expose(),
            "s3cret-token"
        );
    }

    #[test]
    fn more_than_one_source_is_refused() {
        let src = SecretSource {
            value: Some(Secret::new("a")),
            env: Some("X".into()),
            ..Default::default()
        };
        assert!(src.resolve("token").unwrap_err().contains("only one"));
    }

    #[test]
    fn missing_file_and_unset_variable_are_named() {
        let src = SecretSource {
            file: Some("/nonexistent/banditore".into()),
            ..Default::default()
        };
        assert!(
            src.resolve("password")
                .unwrap_err()
                .contains("password_file")
        );
        let src = SecretSource {
            env: Some("BANDITORE_TEST_SURELY_UNSET".into()),
            ..Default::default()
        };
        assert!(
            src.resolve("token")
                .unwrap_err()
                .contains("BANDITORE_TEST_SURELY_UNSET")
        );
        assert_eq!(SecretSource::default().resolve("token"), Ok(None));
    }
}
