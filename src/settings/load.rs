//! Layered loading with error collection.

use std::fmt;
use std::path::Path;

use super::{DEFAULTS, Settings};
use config::{Config, Environment, File, FileFormat, Value, ValueKind};

/// One thing wrong with the configuration, with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

const ENV_PREFIX: &str = "BANDITORE";

/// Reads defaults, the optional file and the environment. Returns the settings when they could be
/// built at all, and every problem found on the way.
pub fn load(file: Option<&Path>) -> (Option<Settings>, Vec<Problem>) {
    load_with_env(file, None)
}

/// As [`load`], with the environment given explicitly (tests) instead of read from the process.
pub(crate) fn load_with_env(
    file: Option<&Path>,
    env: Option<Vec<(String, String)>>,
) -> (Option<Settings>, Vec<Problem>) {
    let defaults = match Config::builder()
        .add_source(File::from_str(DEFAULTS, FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize::<Value>())
    {
        Ok(v) => v,
        Err(e) => {
            return (
                None,
                vec![Problem::new("(built-in defaults)", e.to_string())],
            );
        }
    };
    let mut environment = Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .list_separator(",")
        .with_list_parse_key("routing.group_by");
    if let Some(vars) = env {
        environment = environment.source(Some(vars.into_iter().collect()));
    }
    let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
    if let Some(path) = file {
        if !path.is_file() {
            return (
                None,
                vec![Problem::new(
                    "--config",
                    format!("{} is not a readable file", path.display()),
                )],
            );
        }
        builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
    }
    let tree = match builder
        .add_source(environment)
        .build()
        .and_then(|c| c.try_deserialize::<Value>())
    {
        Ok(v) => v,
        Err(e) => {
            let origin = file
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "environment".into());
            return (None, vec![Problem::new(origin, e.to_string())]);
        }
    };
    let examples = super::secret::example_secret_files(&tree);
    let (settings, problems) = deserialize_collecting(tree, &defaults);
    let settings = settings.map(|mut s| {
        s.example_secrets = examples;
        s
    });
    (settings, problems)
}

/// Deserializes, and on a type error records it, puts the default (or nothing) in place of the
/// offending value and tries again, so that one run reports every bad key.
fn deserialize_collecting(mut tree: Value, defaults: &Value) -> (Option<Settings>, Vec<Problem>) {
    let mut problems = Vec::new();
    for _ in 0..100 {
        let mut unknown = Vec::new();
        let mut track = serde_path_to_error::Track::new();
        let result = {
            let de = serde_path_to_error::Deserializer::new(tree.clone(), &mut track);
            serde_ignored::deserialize(de, |path| unknown.push(ignored_path(&path)))
                .map(|s: Settings| s)
        };
        match result {
            Ok(settings) => {
                problems.extend(unknown.into_iter().map(|p| {
                    Problem::new(p, "unknown key (a typo, or a key from another version?)")
                }));
                return (Some(settings), problems);
            }
            Err(error) => {
                let segments = track.path().iter().cloned().collect::<Vec<_>>();
                let path = path_string(&segments);
                let message = error.to_string();
                problems.push(match missing_field(&message) {
                    Some(field) if path == "(root)" => {
                        Problem::new(field, "required, and not given")
                    }
                    Some(field) => {
                        Problem::new(format!("{path}.{field}"), "required, and not given")
                    }
                    None => Problem::new(path, clean_message(&message)),
                });
                if segments.is_empty() || !replace(&mut tree, defaults, &segments) {
                    return (None, problems);
                }
            }
        }
    }
    (None, problems)
}

/// The field a "missing configuration field" error names, without the path the config crate puts
/// before it (and runs into the field's name after a list's index: `subscribers[0]name`).
fn missing_field(message: &str) -> Option<&str> {
    let key = message
        .strip_prefix("missing configuration field \"")?
        .strip_suffix('"')?;
    let field = key.rsplit(['.', ']']).next().unwrap_or(key);
    Some(field).filter(|f| !f.is_empty())
}

/// The config crate appends `for key ...` to its messages; the path is already printed first.
fn clean_message(message: &str) -> String {
    match message.find(" for key `") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn path_string(segments: &[serde_path_to_error::Segment]) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    if out.is_empty() {
        "(root)".to_owned()
    } else {
        out
    }
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => {
            let p = ignored_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

/// Puts the default at `segments` in `tree`, or removes the value when there is no default.
/// Returns false when nothing could be changed (the loop would not make progress).
fn replace(tree: &mut Value, defaults: &Value, segments: &[serde_path_to_error::Segment]) -> bool {
    use serde_path_to_error::Segment;
    let default = lookup(defaults, segments).cloned();
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = tree;
    for segment in parents {
        node = match (segment, &mut node.kind) {
            (Segment::Map { key }, ValueKind::Table(t)) => match t.get_mut(key) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Seq { index }, ValueKind::Array(a)) => match a.get_mut(*index) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, &mut node.kind) {
        (Segment::Map { key }, ValueKind::Table(t)) => match default {
            Some(d) => {
                t.insert(key.clone(), d);
                true
            }
            None => t.remove(key).is_some(),
        },
        (Segment::Seq { index }, ValueKind::Array(a)) if *index < a.len() => {
            a.remove(*index);
            true
        }
        _ => false,
    }
}

fn lookup<'a>(tree: &'a Value, segments: &[serde_path_to_error::Segment]) -> Option<&'a Value> {
    use serde_path_to_error::Segment;
    let mut node = tree;
    for segment in segments {
        node = match (segment, &node.kind) {
            (Segment::Map { key }, ValueKind::Table(t)) => t.get(key)?,
            (Segment::Seq { index }, ValueKind::Array(a)) => a.get(*index)?,
            _ => return None,
        };
    }
    Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn with_file(toml: &str) -> (Option<Settings>, Vec<Problem>) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(toml.as_bytes()).unwrap();
        load_with_env(Some(f.path()), Some(vec![]))
    }

    #[test]
    fn defaults_alone_load_cleanly() {
        let (settings, problems) = load_with_env(None, Some(vec![]));
        assert!(problems.is_empty(), "{problems:?}");
        let s = settings.unwrap();
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.store.url, "sqlite://data/banditore.db");
        assert!(s.routing.group_wait.get() <= std::time::Duration::from_secs(5));
    }

    #[test]
    fn file_then_env_layering() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(
            b"[server]\nlisten = \"127.0.0.1:9000\"\npublic_url = \"https://status.example.org\"\n",
        )
        .unwrap();
        let env = vec![(
            "BANDITORE__SERVER__LISTEN".to_owned(),
            "0.0.0.0:9100".to_owned(),
        )];
        let (s, problems) = load_with_env(Some(f.path()), Some(env));
        assert!(problems.is_empty(), "{problems:?}");
        let s = s.unwrap();
        assert_eq!(s.server.listen.to_string(), "0.0.0.0:9100");
        assert_eq!(s.server.public_url, "https://status.example.org");
    }

    #[test]
    fn every_type_error_is_reported_with_its_path() {
        let (s, problems) = with_file(
            "[server]\nlisten = \"nowhere\"\n[outbox]\nmax_attempts = \"many\"\n[routing]\ngroup_wait = \"soon\"\n",
        );
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"server.listen"), "{problems:?}");
        assert!(paths.contains(&"outbox.max_attempts"), "{problems:?}");
        assert!(paths.contains(&"routing.group_wait"), "{problems:?}");
        // Every bad value was replaced by its default, so the rest is still usable.
        assert!(s.is_some());
    }

    #[test]
    fn a_missing_field_is_named_by_its_whole_path() {
        let (_, problems) =
            with_file("[[subscribers]]\naddresses = { email = \"cup@asl.example\" }\n");
        let first = problems.first().expect("a problem");
        assert_eq!(first.path, "subscribers[0].name", "{problems:?}");
        assert_eq!(first.message, "required, and not given", "{problems:?}");
    }

    proptest::proptest! {
        /// Whatever the path before it, and wherever a list's index runs into the next name (as
        /// the config crate writes its keys), the field reported is the key's last name.
        #[test]
        fn a_missing_fields_name_is_the_last_of_its_key(
            path in proptest::collection::vec(
                ("[a-z_][a-z0-9_]{0,12}", proptest::option::of(0usize..100)),
                0..4,
            ),
            field in "[a-z_][a-z0-9_]{0,12}",
        ) {
            let mut key = String::new();
            for (name, index) in &path {
                key.push_str(name);
                match index {
                    Some(i) => key.push_str(&format!("[{i}]")),
                    None => key.push('.'),
                }
            }
            key.push_str(&field);
            let message = format!("missing configuration field {key:?}");
            proptest::prop_assert_eq!(missing_field(&message), Some(field.as_str()));
            let other = format!("invalid type for {key:?}");
            proptest::prop_assert_eq!(missing_field(&other), None);
        }
    }

    #[test]
    fn unknown_keys_are_reported() {
        let (_, problems) = with_file(
            "[server]\nlisen = \"127.0.0.1:1\"\n[[auth.tokens]]\nname = \"a\"\ntoken = \"x\"\nroles = [\"ingest\"]\nrole = \"admin\"\n",
        );
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"server.lisen"), "{problems:?}");
        assert!(paths.contains(&"auth.tokens[0].role"), "{problems:?}");
    }

    #[test]
    fn env_lists_and_numbers() {
        let env = vec![
            (
                "BANDITORE__ROUTING__GROUP_BY".to_owned(),
                "service,area".to_owned(),
            ),
            (
                "BANDITORE__CHANNELS__EMAIL__PORT".to_owned(),
                "2525".to_owned(),
            ),
        ];
        let (s, problems) = load_with_env(None, Some(env));
        assert!(problems.is_empty(), "{problems:?}");
        let s = s.unwrap();
        assert_eq!(s.routing.group_by, vec!["service", "area"]);
        assert_eq!(s.channels.email.port, 2525);
    }

    #[test]
    fn bad_array_element_is_reported_and_dropped() {
        let (s, problems) =
            with_file("[[auth.tokens]]\nname = \"a\"\ntoken = \"x\"\nroles = [\"superuser\"]\n");
        assert!(
            problems
                .iter()
                .any(|p| p.path.starts_with("auth.tokens[0].roles")),
            "{problems:?}"
        );
        assert!(s.is_some());
    }
}
