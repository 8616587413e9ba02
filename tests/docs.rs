//! The documentation cannot drift from what it documents. The configuration reference
//! (`docs/src/reference/configuration.md`) must name every key of the built-in defaults
//! (`config/default.toml`) and no key the defaults do not know; and every relative link in the
//! README, the other top-level documents and the book must lead to a file that exists, and to a
//! heading that exists when it names one. A small test target of its own: it needs neither the
//! binary nor a database.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use regex::Regex;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every key of the defaults with a value, tables walked down to their leaves: `server.listen`,
/// `channels.email.port`, and `probes` or `auth.tokens` for the tables a deployment repeats.
fn default_keys(text: &str) -> BTreeSet<String> {
    let value: serde_json::Value = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize())
        .expect("config/default.toml parses");
    fn walk(path: &str, value: &serde_json::Value, keys: &mut BTreeSet<String>) {
        match value {
            serde_json::Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    let path = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(&path, v, keys);
                }
            }
            _ => {
                keys.insert(path.to_string());
            }
        }
    }
    let mut keys = BTreeSet::new();
    walk("", &value, &mut keys);
    keys
}

/// The comment lines of each `[section]` of the defaults (the top level is `""`), where keys
/// without a default value (secrets, optional files) are shown commented out or named.
fn section_comments(text: &str) -> HashMap<String, String> {
    let header = Regex::new(r"^\[([A-Za-z0-9_.]+)\]\s*$").unwrap();
    let mut sections: HashMap<String, String> = HashMap::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(c) = header.captures(line) {
            current = c[1].to_string();
        } else if let Some(comment) = line.trim_start().strip_prefix('#') {
            let s = sections.entry(current.clone()).or_default();
            s.push_str(comment);
            s.push('\n');
        }
    }
    sections
}

#[test]
fn the_configuration_reference_names_every_key_of_the_defaults_and_no_other() {
    let defaults = read(&root().join("config/default.toml"));
    let page = read(&root().join("docs/src/reference/configuration.md"));
    let keys = default_keys(&defaults);
    let comments = section_comments(&defaults);
    // The reference names a key as the first cell of a table row: | `server.listen` | …
    let row = Regex::new(r"(?m)^\| `([^`]+)` \|").unwrap();
    let named: BTreeSet<String> = row.captures_iter(&page).map(|c| c[1].to_string()).collect();

    let undocumented: Vec<_> = keys.difference(&named).collect();
    assert!(
        undocumented.is_empty(),
        "keys of config/default.toml missing from docs/src/reference/configuration.md: {undocumented:?}"
    );

    // A key the reference names that has no value in the defaults must at least be named in a
    // comment of its section (`# password_file = …`, "as secret_key, secret_key_file or …").
    let unknown: Vec<_> = named
        .difference(&keys)
        .filter(|key| {
            let (section, name) = key.rsplit_once('.').unwrap_or(("", key));
            let Some(text) = comments.get(section) else {
                return true;
            };
            let word = Regex::new(&format!(
                r"(^|[^A-Za-z0-9_]){}(_file|_env)?([^A-Za-z0-9_]|$)",
                regex::escape(name)
            ))
            .unwrap();
            !text.lines().any(|l| word.is_match(l))
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/src/reference/configuration.md names keys config/default.toml neither sets nor mentions: {unknown:?}"
    );
}

/// The Markdown files whose links are checked: the top-level documents and every page of the book.
fn documents() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = [
        "README.md",
        "ARCHITECTURE.md",
        "BENCHMARKS.md",
        "SECURITY.md",
    ]
    .iter()
    .map(|f| root().join(f))
    .filter(|p| p.exists())
    .collect();
    let mut dirs = vec![root().join("docs/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("docs/src is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The text outside fenced code blocks and inline code, where links and headings are.
fn prose(text: &str) -> String {
    let code = Regex::new(r"`+[^`]*`+").unwrap();
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push_str(&code.replace_all(line, ""));
            out.push('\n');
        }
    }
    out
}

/// The anchors of a page's headings as mdBook and the forges make them: the heading's text
/// lower-cased, spaces as hyphens, punctuation other than `-` and `_` dropped, `-1`, `-2`… after
/// a repeated one.
fn anchors(text: &str) -> BTreeSet<String> {
    let heading = Regex::new(r"^#{1,6}\s+(.*?)\s*#*\s*$").unwrap();
    let link = Regex::new(r"!?\[([^\]]*)\]\([^)]*\)").unwrap();
    let code = Regex::new(r"`+([^`]*)`+").unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        let Some(c) = (!fenced).then(|| heading.captures(line)).flatten() else {
            continue;
        };
        let plain = link.replace_all(&c[1], "$1");
        let plain = code.replace_all(&plain, "$1");
        let slug: String = plain
            .chars()
            .filter_map(|ch| match ch {
                c if c.is_alphanumeric() || c == '_' || c == '-' => {
                    Some(c.to_lowercase().next().unwrap_or(c))
                }
                c if c.is_whitespace() => Some('-'),
                _ => None,
            })
            .collect();
        let n = seen.entry(slug.clone()).or_default();
        out.insert(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    out
}

#[test]
fn every_relative_link_in_the_documentation_leads_somewhere() {
    let inline = Regex::new(r"\]\(\s*<?([^)\s>]+)>?(?:\s+[^)]*)?\)").unwrap();
    let reference = Regex::new(r"(?m)^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)").unwrap();
    let scheme = Regex::new(r"^[A-Za-z][A-Za-z0-9+.-]*:").unwrap();
    let mut broken = Vec::new();
    for file in documents() {
        let text = read(&file);
        let prose = prose(&text);
        let targets = inline
            .captures_iter(&prose)
            .chain(reference.captures_iter(&prose));
        for target in targets.map(|c| c[1].to_string()) {
            if scheme.is_match(&target) {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let dest = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap_or(Path::new(".")).join(path)
            };
            let shown = file
                .strip_prefix(root())
                .unwrap_or(&file)
                .display()
                .to_string();
            if !dest.exists() {
                broken.push(format!("{shown}: {target} (no such file)"));
            } else if !anchor.is_empty()
                && dest.extension().is_some_and(|e| e == "md")
                && !anchors(&read(&dest)).contains(anchor)
            {
                broken.push(format!("{shown}: {target} (no such heading)"));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_page_of_the_book_is_in_its_summary() {
    let src = root().join("docs/src");
    let summary = read(&src.join("SUMMARY.md"));
    let link = Regex::new(r"\]\(([^)#\s]+)").unwrap();
    let listed: BTreeSet<PathBuf> = link
        .captures_iter(&summary)
        .map(|c| src.join(&c[1]))
        .collect();
    let orphans: Vec<_> = documents()
        .into_iter()
        .filter(|p| p.starts_with(&src) && !p.ends_with("SUMMARY.md") && !listed.contains(p))
        .collect();
    assert!(
        orphans.is_empty(),
        "pages of docs/src missing from SUMMARY.md: {orphans:?}"
    );
}
