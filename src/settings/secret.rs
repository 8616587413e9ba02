//! Secrets: values that must never reach a log line or a debug print.
//!
//! A secret can be written inline, read from a file (`*_file`, the usual way with container
//! secrets) or read from a named environment variable (`*_env`). Exactly one of the three is given.
//!
//! The example deployment (`config/example.toml`) reads clearly fake secrets from
//! `config/example-secrets/`, so that it checks out on a fresh clone. A service started on them
//! would answer to an admin token anyone can read in the repository: every secret file whose
//! value still carries [`EXAMPLE_MARKER`] is found at loading ([`example_secret_files`]), warned
//! about by `check-config`, and refused by `serve`.

use std::fmt;
use std::path::PathBuf;

use config::{Value, ValueKind};
use serde::Deserialize;

use super::Problem;

/// What every example secret shipped in `config/example-secrets/` carries.
pub const EXAMPLE_MARKER: &str = "EXAMPLE-replace-me";

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

/// Every `*_file` key of the loaded configuration whose file holds an example value, as a
/// problem on that key. A file that cannot be read is left to validation, which names it.
pub fn example_secret_files(tree: &Value) -> Vec<Problem> {
    let mut found = Vec::new();
    walk(tree, String::new(), &mut found);
    // Tables come in no particular order: the same configuration is reported the same way.
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

fn walk(node: &Value, path: String, found: &mut Vec<Problem>) {
    match &node.kind {
        ValueKind::Table(table) => {
            for (key, value) in table {
                let at = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if let (true, ValueKind::String(file)) = (key.ends_with("_file"), &value.kind) {
                    let example = std::fs::read_to_string(file)
                        .is_ok_and(|content| content.contains(EXAMPLE_MARKER));
                    if example {
                        found.push(Problem::new(
                            at,
                            format!(
                                "{file} holds an example value ({EXAMPLE_MARKER}…), which \
                                 `serve` refuses"
                            ),
                        ));
                    }
                } else {
                    walk(value, at, found);
                }
            }
        }
        ValueKind::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, format!("{path}[{i}]"), found);
            }
        }
        _ => {}
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

    #[test]
    fn secret_files_with_example_values_are_found_by_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let example = dir.path().join("example");
        std::fs::write(&example, format!("{EXAMPLE_MARKER}-token-0000\n")).unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, "a-real-token-0123456789\n").unwrap();
        let toml = format!(
            "[channels.email]\npassword_file = {:?}\n\n[[auth.tokens]]\nname = \"a\"\n\
             token_file = {:?}\n\n[[auth.tokens]]\nname = \"b\"\ntoken_file = {:?}\n\
             [server]\nsecret_key_file = \"/nonexistent/banditore\"\n",
            example.display(),
            real.display(),
            example.display(),
        );
        let tree = config::Config::builder()
            .add_source(config::File::from_str(&toml, config::FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize::<Value>()
            .unwrap();
        let found = example_secret_files(&tree);
        let paths: Vec<&str> = found.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["auth.tokens[1].token_file", "channels.email.password_file"]
        );
        assert!(found[0].message.contains("`serve` refuses"), "{found:?}");
    }
}
