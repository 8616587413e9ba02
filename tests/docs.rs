//! The documentation cannot drift from what it documents. The configuration reference
//! (`docs/src/reference/configuration.md`) must name every key of the built-in defaults
//! (`config/default.toml`) and no key the defaults do not know; and every relative link in the
//! README, the other top-level documents and the book must lead to a file that exists, and to a
//! heading that exists when it names one. ARCHITECTURE.md's code map must name every file of
//! `src/`, `tests/` (but fixtures) and `benches/`, and no file that does not exist; its floors
//! must be those `tests/architecture.rs` enforces. The metrics reference
//! (`docs/src/reference/metrics.md`) must name every metric the code emits and no other, and the
//! alerting rules and the dashboard of `monitoring/` may use only metrics it names; every alert
//! has its runbook section in `docs/src/operations/monitoring.md`. A small test target of its
//! own: it needs neither the binary nor a database.

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

/// The files the code map of ARCHITECTURE.md must name, from the repository root: every file
/// under `src/` and `benches/`, the test targets at the top of `tests/`, and every file of
/// `tests/integration/`. Fixtures and proptest's regression files are data, not code.
fn mapped_files() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let root = root();
    let mut files = Vec::new();
    for dir in ["src", "benches", "tests/integration"] {
        walk(&root.join(dir), &mut files);
    }
    for entry in std::fs::read_dir(root.join("tests")).expect("tests/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_file() && path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
        .iter()
        .filter_map(|p| p.strip_prefix(&root).ok())
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .collect()
}

/// The roots whose files the code map must name, and where a path it names must lead to a file.
const MAPPED_ROOTS: [&str; 3] = ["src/", "tests/", "benches/"];

/// Every file path ARCHITECTURE.md names in inline code, as (line, as written, from the root).
///
/// A heading whose first inline code is a folder (`### \`src/channel/\``) opens that folder's
/// section: inside it, a path is read from that folder (`email/pool.rs` is
/// `src/channel/email/pool.rs`), unless it starts at a root. Any other heading closes it, and a
/// path outside a folder's section must start at a root (`src/`, `tests/`, `benches/`…). A path
/// is inline code ending in a file's extension, or starting at a root; patterns (`<lang>`, `*`,
/// `{a,b}`, `…`) are not paths.
fn paths_named(text: &str) -> Vec<(usize, String, Option<String>)> {
    let code = Regex::new(r"`([^`]+)`").unwrap();
    let file = Regex::new(r"^[A-Za-z0-9_./-]+\.(rs|txt|sh|toml|md|sql|json)$").unwrap();
    let roots = [
        "src/",
        "tests/",
        "benches/",
        "templates/",
        "migrations/",
        "config/",
        "docs/",
    ];
    let mut folder: Option<String> = None;
    let mut found = Vec::new();
    let mut fenced = false;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if t.starts_with('#') {
            folder = code
                .captures(t)
                .map(|c| c[1].to_string())
                .filter(|first| first.ends_with('/'));
            continue;
        }
        for c in code.captures_iter(line) {
            let written = &c[1];
            if written.contains(['<', '*', '{', '…', ' ']) {
                continue;
            }
            let rooted = roots.iter().any(|r| written.starts_with(r));
            if !rooted && !file.is_match(written) {
                continue;
            }
            let resolved = if rooted {
                Some(written.to_string())
            } else {
                folder.as_ref().map(|f| format!("{f}{written}"))
            };
            found.push((n + 1, written.to_string(), resolved));
        }
    }
    found
}

#[test]
fn the_code_map_names_every_file_and_only_files_that_exist() {
    let text = read(&root().join("ARCHITECTURE.md"));
    let mut faults = Vec::new();
    let mut named = BTreeSet::new();
    for (line, written, resolved) in paths_named(&text) {
        let Some(path) = resolved else {
            faults.push(format!(
                "ARCHITECTURE.md:{line}: `{written}` is outside a folder's section: write it from \
                 the repository root"
            ));
            continue;
        };
        let checked = MAPPED_ROOTS.iter().any(|r| path.starts_with(r));
        let exists = root().join(path.trim_end_matches('/')).exists();
        if checked && !exists {
            faults.push(format!(
                "ARCHITECTURE.md:{line}: `{written}` ({path}) does not exist"
            ));
        }
        named.insert(path);
    }
    for file in mapped_files() {
        if !named.contains(&file) {
            faults.push(format!(
                "{file} is not in ARCHITECTURE.md's code map: add it, with its job, to its folder's \
                 section"
            ));
        }
    }
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}

/// The floors of `tests/architecture.rs`'s `FLOORS` table, from the bottom: the modules of each.
fn architecture_test_floors() -> Vec<BTreeSet<String>> {
    let source = read(&root().join("tests/architecture.rs"));
    let start = source
        .find("const FLOORS")
        .expect("tests/architecture.rs has FLOORS");
    let end = start
        + source[start..]
            .find("\n];")
            .expect("FLOORS ends with `];` on a line of its own");
    let floor = Regex::new(r#"\(\s*"[^"]*",\s*&\[([^\]]*)\]"#).unwrap();
    let name = Regex::new(r#""([A-Za-z0-9_]+)""#).unwrap();
    floor
        .captures_iter(&source[start..end])
        .map(|c| {
            name.captures_iter(&c[1])
                .map(|m| m[1].to_string())
                .collect()
        })
        .collect()
}

#[test]
fn the_floors_here_are_the_architecture_tests_floors() {
    let text = read(&root().join("ARCHITECTURE.md"));
    let section = text
        .split("\n## Floors\n")
        .nth(1)
        .expect("ARCHITECTURE.md has a `## Floors` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    // | 10 | `app` | wiring |
    let row = Regex::new(r"(?m)^\|\s*(\d+)\s*\|([^|]*)\|").unwrap();
    let module = Regex::new(r"`([A-Za-z0-9_]+)`").unwrap();
    let mut documented: Vec<(usize, BTreeSet<String>)> = row
        .captures_iter(section)
        .map(|c| {
            let floor = c[1].parse().expect("a floor's number");
            let modules = module.captures_iter(&c[2]).map(|m| m[1].to_string());
            (floor, modules.collect())
        })
        .collect();
    documented.sort_by_key(|(floor, _)| *floor);
    let tested: Vec<(usize, BTreeSet<String>)> = architecture_test_floors()
        .into_iter()
        .enumerate()
        .map(|(i, modules)| (i + 1, modules))
        .collect();
    assert!(
        !tested.is_empty(),
        "no floors read from tests/architecture.rs"
    );
    assert_eq!(
        documented, tested,
        "ARCHITECTURE.md's floors (numbered from 1 at the bottom) differ from FLOORS in \
         tests/architecture.rs"
    );
}

/// The metrics the reference documents: the inline code at the start of each row of its tables.
fn documented_metrics() -> BTreeSet<String> {
    let row = Regex::new(r"(?m)^\| `(banditore_[a-z0-9_]+)` \|").unwrap();
    let text = read(&root().join("docs/src/reference/metrics.md"));
    row.captures_iter(&text).map(|c| c[1].to_owned()).collect()
}

/// Every `banditore_…` name a file of queries uses, as documented: a histogram's series
/// (`_bucket`, `_sum`, `_count`) are read as the histogram's name.
fn metrics_named(text: &str, documented: &BTreeSet<String>) -> BTreeSet<String> {
    let name = Regex::new(r"banditore_[a-z0-9_]*[a-z0-9]").unwrap();
    name.find_iter(text)
        .map(|m| {
            let n = m.as_str();
            ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|s| n.strip_suffix(s))
                .find(|base| documented.contains(*base))
                .unwrap_or(n)
                .to_owned()
        })
        .collect()
}

#[test]
fn the_metrics_reference_names_every_metric_the_code_emits_and_no_other() {
    fn walk(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&read(&path));
            }
        }
    }
    let mut code = String::new();
    walk(&root().join("src"), &mut code);
    let emitted =
        Regex::new(r#"(?:gauge|counter|histogram)!\(\s*"(banditore_[a-z0-9_]+)""#).unwrap();
    let emitted: BTreeSet<String> = emitted
        .captures_iter(&code)
        .map(|c| c[1].to_owned())
        .collect();
    let documented = documented_metrics();
    let undocumented: Vec<_> = emitted.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "metrics the code emits that docs/src/reference/metrics.md does not document: {undocumented:?}"
    );
    let gone: Vec<_> = documented.difference(&emitted).collect();
    assert!(
        gone.is_empty(),
        "metrics docs/src/reference/metrics.md documents that no code emits: {gone:?}"
    );
}

#[test]
fn the_alerting_rules_and_the_dashboard_use_documented_metrics_only() {
    let documented = documented_metrics();
    for file in [
        "monitoring/alerts.yml",
        "monitoring/alerts.test.yml",
        "monitoring/dashboard.json",
    ] {
        let used = metrics_named(&read(&root().join(file)), &documented);
        let unknown: Vec<_> = used.difference(&documented).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics docs/src/reference/metrics.md does not document: {unknown:?}"
        );
    }
}

#[test]
fn every_alert_waits_has_a_severity_and_a_runbook_section() {
    let rules = read(&root().join("monitoring/alerts.yml"));
    let runbooks = anchors(&read(&root().join("docs/src/operations/monitoring.md")));
    let alert = Regex::new(r"(?m)^\s*- alert: (\w+)$").unwrap();
    let starts: Vec<_> = alert.captures_iter(&rules).collect();
    assert!(starts.len() >= 8, "only {} alerts", starts.len());
    for (i, c) in starts.iter().enumerate() {
        let name = &c[1];
        let from = c.get(0).unwrap().start();
        let to = starts
            .get(i + 1)
            .map_or(rules.len(), |n| n.get(0).unwrap().start());
        let rule = &rules[from..to];
        for needed in ["expr:", "for:", "severity:", "summary:", "description:"] {
            assert!(rule.contains(needed), "{name} has no `{needed}`");
        }
        let anchor = name.to_lowercase();
        let url = format!("runbook_url: \"docs/src/operations/monitoring.md#{anchor}\"");
        assert!(rule.contains(&url), "{name}'s runbook_url is not `{url}`");
        assert!(
            runbooks.contains(&anchor),
            "docs/src/operations/monitoring.md has no `### {name}` runbook section"
        );
    }
}

#[test]
fn the_dashboard_asks_for_its_prometheus_at_import() {
    let text = read(&root().join("monitoring/dashboard.json"));
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 39));
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut queries = 0;
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = &panel["title"];
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        for target in panel["targets"].as_array().expect("targets") {
            assert_eq!(target["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
            assert!(
                target["expr"]
                    .as_str()
                    .is_some_and(|e| e.contains("banditore_"))
            );
            queries += 1;
        }
    }
    assert!(queries >= 20, "{queries} queries");
}
