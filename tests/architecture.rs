//! Architecture invariants, checked by reading the source. ARCHITECTURE.md says which module may
//! know which and who may talk to the network or to the database; these tests read
//! `src/**/*.rs` (comments and string literals blanked out) and fail, naming the file, the line
//! and the import, when the code stops matching what the document says. They do not use the
//! library, so they build in seconds and say nothing about behaviour.
//!
//! Three rules:
//! - only `src/store/` speaks SQL (`sqlx`);
//! - only the channels, the probes and the Telegram bot's input dial out (HTTP, SMTP, Telegram,
//!   DNS, raw sockets), with the few exceptions named below with their reasons;
//! - imports flow one way: every top-level module sits on a floor of [`FLOORS`], and a module
//!   may import (`crate::…`) from its own floor and the floors below, never from above; within a
//!   floor, modules may not import each other in a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The floors, from the bottom. What a floor holds may be imported by its own floor and every
/// floor above it. A new top-level module must be given a floor here.
const FLOORS: &[(&str, &[&str])] = &[
    (
        "leaves: no imports from the crate",
        &["ids", "wake", "hostile", "systemd", "process"],
    ),
    ("the vocabulary, no I/O", &["domain"]),
    (
        "text from templates and signed links, over the vocabulary alone",
        &["render", "unsubscribe"],
    ),
    (
        "configuration (validation renders the templates), with each channel's own section",
        &["settings"],
    ),
    (
        "the store, and what stands on configuration alone",
        &["store", "telemetry", "tokens", "users"],
    ),
    ("leadership and the channels", &["cluster", "channel"]),
    (
        "the stages and what they build",
        &[
            "ack",
            "ingest",
            "incident",
            "route",
            "outbox",
            "pipeline",
            "probe",
            "heartbeat",
            "board",
            "feeds",
        ],
    ),
    (
        "people's flows and the leader's chores",
        &["affected", "approval", "citizen", "bot", "retention"],
    ),
    ("HTTP handlers and the console", &["web"]),
    ("wiring", &["app"]),
];

/// A channel's folder spans two floors: its `settings.rs` (the types of its configuration section
/// and their checks, over `domain` and `settings` alone) is part of the configuration, which
/// gathers every section; the rest of the folder (its sender and its spec) stands with the
/// channels. Such a file, and an import of `crate::channel::<name>::settings`, count as
/// `settings`.
const CHANNEL_SETTINGS: &str = "settings";

/// Imports from a higher floor that exist today and are being moved in issue 18: (file, the
/// top-level module it imports). Each entry must still match an import, so this table can
/// only shrink; remove an entry when its import is gone.
const KNOWN: &[(&str, &str)] = &[];

/// Where the code that dials out lives: the channels (delivery), the probes (checks), and the
/// Telegram bot's input (long polling), wherever it sits.
const NETWORK_PLACES: &[&str] = &["src/channel/", "src/probe/", "src/bot/"];

/// Paths that belong to network clients: their crates, and raw sockets. `hyper` and
/// `hyper_util` serve in `web/serve.rs`; only their client halves are forbidden.
const NETWORK_PATHS: &[&str] = &[
    "reqwest::",
    "teloxide::",
    "lettre::",
    "hickory_proto::",
    "hickory_resolver::",
    "tokio_rustls::",
    "hyper_util::client",
    "hyper::client",
    "TcpStream",
    "UdpSocket",
];

/// Uses of a network client's crate outside [`NETWORK_PLACES`] that are not dialling out:
/// (file, path the use starts with, why it is allowed).
const NETWORK_EXCEPTIONS: &[(&str, &str, &str)] = &[
    (
        "src/app.rs",
        "teloxide::Bot",
        "the wiring holds the one Bot client that the Telegram channel builds and hands it to the \
         bot and the webhook handler; it sends nothing itself",
    ),
    (
        "src/settings/probes.rs",
        "reqwest::Method",
        "a probe's method is checked by the rules the HTTP client will apply; no request is made",
    ),
    (
        "src/settings/probes.rs",
        "reqwest::header::HeaderName",
        "a probe's header names are checked by the rules the HTTP client will apply",
    ),
    (
        "src/domain/subscriber/mod.rs",
        "lettre::Address",
        "an email address is parsed by the rules the mailer will apply; no I/O",
    ),
];

/// Network uses outside [`NETWORK_PLACES`] being moved in issue 18: (file, path prefix).
const KNOWN_NETWORK: &[(&str, &str)] = &[];

#[test]
fn only_the_store_speaks_sql() {
    let mut faults = Vec::new();
    for file in sources() {
        if file.name.starts_with("src/store/") {
            continue;
        }
        for (line, path) in paths_starting(&file.code, "sqlx") {
            faults.push(format!(
                "{}:{line}: `{path}` outside src/store/: {}",
                file.name,
                file.line(line)
            ));
        }
    }
    assert!(
        faults.is_empty(),
        "SQL outside the store:\n{}",
        faults.join("\n")
    );
}

#[test]
fn only_channels_probes_and_the_bot_dial_out() {
    let mut faults = Vec::new();
    let mut known_used = BTreeSet::new();
    let mut exceptions_used: BTreeSet<String> = BTreeSet::new();
    for file in sources() {
        if NETWORK_PLACES.iter().any(|p| file.name.starts_with(p)) {
            continue;
        }
        for pattern in NETWORK_PATHS {
            for (line, path) in paths_starting(&file.code, pattern) {
                if let Some(excepted) = NETWORK_EXCEPTIONS
                    .iter()
                    .find(|(f, prefix, _)| *f == file.name && path.starts_with(prefix))
                {
                    exceptions_used.insert(excepted.0.to_owned() + excepted.1);
                    continue;
                }
                if let Some(known) = KNOWN_NETWORK
                    .iter()
                    .find(|(f, prefix)| *f == file.name && path.starts_with(prefix))
                {
                    known_used.insert(*known);
                    continue;
                }
                faults.push(format!(
                    "{}:{line}: `{path}` is a network client outside the channels, the probes \
                     and the bot: {}",
                    file.name,
                    file.line(line)
                ));
            }
        }
    }
    for known in KNOWN_NETWORK {
        if !known_used.contains(known) {
            faults.push(format!(
                "KNOWN_NETWORK entry {known:?} matches nothing any more: remove it"
            ));
        }
    }
    for (file, prefix, _) in NETWORK_EXCEPTIONS {
        if !exceptions_used.contains(&(file.to_string() + prefix)) {
            faults.push(format!(
                "NETWORK_EXCEPTIONS entry ({file:?}, {prefix:?}) matches nothing any more: remove it"
            ));
        }
    }
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}

#[test]
fn every_top_level_module_has_a_floor() {
    let floors = floor_of();
    let mut missing = Vec::new();
    for file in sources() {
        if let Some(top) = file.modules.first()
            && !floors.contains_key(top.as_str())
        {
            missing.push(format!("{} (module `{top}`)", file.name));
        }
    }
    missing.dedup();
    assert!(
        missing.is_empty(),
        "put these modules on a floor in FLOORS:\n{}",
        missing.join("\n")
    );
}

#[test]
fn imports_flow_down_the_floors() {
    let floors = floor_of();
    let mut faults = Vec::new();
    let mut known_used = BTreeSet::new();
    for file in sources() {
        let Some(top) = file.modules.first() else {
            continue;
        };
        let Some(&(from, _)) = floors.get(top.as_str()) else {
            continue;
        };
        for import in imports(&file) {
            let Some(&(to, _)) = floors.get(import.module.as_str()) else {
                continue;
            };
            if to <= from {
                continue;
            }
            if let Some(known) = KNOWN
                .iter()
                .find(|(f, m)| *f == file.name && *m == import.module)
            {
                known_used.insert(*known);
                continue;
            }
            faults.push(format!(
                "{}:{}: `{top}` (floor {from}, {}) imports `{}` (floor {to}, {}): {}",
                file.name,
                import.line,
                FLOORS[from].0,
                import.module,
                FLOORS[to].0,
                file.line(import.line)
            ));
        }
    }
    for known in KNOWN {
        if !known_used.contains(known) {
            faults.push(format!(
                "KNOWN entry {known:?} matches nothing any more: remove it"
            ));
        }
    }
    assert!(
        faults.is_empty(),
        "imports from a higher floor:\n{}",
        faults.join("\n")
    );
}

#[test]
fn top_level_modules_import_each_other_without_cycles() {
    // Edges between top-level modules, each with the first import that makes it, leaving out
    // the imports listed in KNOWN.
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in sources() {
        let Some(top) = file.modules.first() else {
            continue;
        };
        for import in imports(&file) {
            if import.module == *top
                || KNOWN
                    .iter()
                    .any(|(f, m)| *f == file.name && *m == import.module)
            {
                continue;
            }
            edges
                .entry(top.clone())
                .or_default()
                .entry(import.module.clone())
                .or_insert_with(|| {
                    format!("{}:{}: {}", file.name, import.line, file.line(import.line))
                });
        }
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for start in edges.keys() {
        let mut path = vec![start.clone()];
        find_cycles(&edges, &mut path, &mut done, &mut cycles);
        done.insert(start.clone());
    }
    let mut report = String::new();
    for cycle in &cycles {
        let _ = writeln!(report, "{}:", cycle.join(" → "));
        for pair in cycle.windows(2) {
            let _ = writeln!(report, "  {}", edges[&pair[0]][&pair[1]]);
        }
    }
    assert!(
        cycles.is_empty(),
        "cycles between top-level modules:\n{report}"
    );
}

/// Depth-first search from the last module of `path`, recording every cycle back to its first
/// module that goes only through modules not yet `done` (so each cycle is reported once).
fn find_cycles(
    edges: &BTreeMap<String, BTreeMap<String, String>>,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
    cycles: &mut Vec<Vec<String>>,
) {
    let Some(last) = path.last().cloned() else {
        return;
    };
    for next in edges.get(&last).into_iter().flat_map(|e| e.keys()) {
        if *next == path[0] {
            let mut cycle = path.clone();
            cycle.push(next.clone());
            cycles.push(cycle);
        } else if !done.contains(next) && !path.contains(next) && *next > path[0] {
            path.push(next.clone());
            find_cycles(edges, path, done, cycles);
            path.pop();
        }
    }
}

/// The floor of each top-level module, by index from the bottom, with the floor's name.
fn floor_of() -> BTreeMap<&'static str, (usize, &'static str)> {
    let mut floors = BTreeMap::new();
    for (index, (name, modules)) in FLOORS.iter().enumerate() {
        for module in *modules {
            assert!(
                floors.insert(*module, (index, *name)).is_none(),
                "`{module}` is on two floors"
            );
        }
    }
    floors
}

/// One source file of the library.
struct Source {
    /// Its path from the repository root, with `/`.
    name: String,
    /// The module path it defines (`src/channel/sms/mod.rs` is `["channel", "sms"]`).
    modules: Vec<String>,
    text: String,
    /// The text with comments and the contents of string and character literals blanked out,
    /// line breaks kept, so that offsets and line numbers match `text`.
    code: String,
}

impl Source {
    /// Line `n` (from 1) of the file, trimmed.
    fn line(&self, n: usize) -> &str {
        self.text.lines().nth(n - 1).unwrap_or_default().trim()
    }
}

/// Every `.rs` file under `src/`, except `main.rs`, which is the binary and stands above all.
fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root.join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .filter_map(|path| {
            let relative = path
                .strip_prefix(root)
                .ok()?
                .to_string_lossy()
                .replace('\\', "/");
            let inside = relative.strip_prefix("src/")?.strip_suffix(".rs")?;
            if inside == "main" {
                return None;
            }
            let mut modules: Vec<String> = inside.split('/').map(str::to_owned).collect();
            if modules.last().is_some_and(|m| m == "mod" || m == "lib") {
                modules.pop();
            }
            if modules.len() == 3 && modules[0] == "channel" && modules[2] == "settings" {
                modules = vec![CHANNEL_SETTINGS.to_owned(), modules[1].clone()];
            }
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"));
            let code = blank_test_modules(&blank_comments_and_literals(&text));
            Some(Source {
                name: relative,
                modules,
                text,
                code,
            })
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `text` with comments and the contents of string and character literals replaced by spaces
/// (line breaks kept). Lifetimes are left alone.
fn blank_comments_and_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let before = if i > 0 { chars[i - 1] } else { ' ' };
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    blank(&mut out, chars[i]);
                    blank(&mut out, chars[i + 1]);
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    blank(&mut out, chars[i]);
                    blank(&mut out, chars[i + 1]);
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if c == 'r'
            && (!is_ident(before) || before == 'b')
            && matches!(next, Some('"' | '#'))
            && raw_string_end(&chars, i + 1).is_some()
        {
            // r"…", r#"…"#, br"…": no escapes, ended by the quote and as many hashes.
            let end = raw_string_end(&chars, i + 1).unwrap_or(chars.len());
            out.push('r');
            for &c in &chars[i + 1..end] {
                blank(&mut out, c);
            }
            i = end;
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
                if i < chars.len() {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            // An escaped character literal: '\n', '\'', '\u{1b}'.
            out.push('\'');
            i += 2;
            out.push(' ');
            while i < chars.len() && chars[i] != '\'' {
                blank(&mut out, chars[i]);
                i += 1;
            }
            out.push('\'');
            i += 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            // A character literal: 'x'. (A lifetime is never followed by a quote two places on.)
            out.push_str("' '");
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Where the raw string whose hashes or quote start at `start` ends (one past its last
/// character), or `None` if what starts there is not a raw string.
fn raw_string_end(chars: &[char], start: usize) -> Option<usize> {
    let hashes = chars[start..].iter().take_while(|c| **c == '#').count();
    if chars.get(start + hashes) != Some(&'"') {
        return None;
    }
    let mut i = start + hashes + 1;
    while i < chars.len() {
        if chars[i] == '"'
            && chars[i + 1..]
                .iter()
                .take(hashes)
                .filter(|c| **c == '#')
                .count()
                == hashes
        {
            return Some(i + 1 + hashes);
        }
        i += 1;
    }
    None
}

/// Line number (from 1) of the byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// Every place in `code` where `pattern` starts a path, or for a bare name (`TcpStream`) ends
/// one, not inside a longer name; with its line and the whole path written there
/// (`reqwest::header::HeaderName`, `tokio::net::TcpStream`).
fn paths_starting(code: &str, pattern: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices(pattern) {
        let before = code[..at].chars().next_back();
        // A crate's name starts its path; a type's name may end one (`tokio::net::TcpStream`).
        let qualified = before == Some(':');
        if before.is_some_and(is_ident) || (qualified && pattern.contains("::")) {
            continue;
        }
        let start = code[..at]
            .rfind(|c: char| !(is_ident(c) || c == ':'))
            .map_or(0, |i| i + 1);
        let rest = &code[at..];
        let len = rest
            .find(|c: char| !(is_ident(c) || c == ':'))
            .unwrap_or(rest.len());
        // `pattern` must end at a name's end: `TcpStream`, not `TcpStreamish`.
        if !pattern.ends_with(':') && rest[pattern.len()..len].starts_with(is_ident) {
            continue;
        }
        found.push((line_of(code, at), code[start..at + len].to_owned()));
    }
    found
}

/// An import of a top-level module of the crate.
struct Import {
    line: usize,
    module: String,
}

/// Every top-level module `file` names: `crate::x…`, each item of `crate::{x…, y…}`, and
/// `super::…` climbing back to the crate root, inline modules (`mod tests { … }`) counted.
fn imports(file: &Source) -> Vec<Import> {
    let code = &file.code;
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == '$' || c == ':') {
            continue;
        }
        let rest = code[at + "crate::".len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let group_at = code.len() - group.len();
            for (offset, name) in group_items(group) {
                found.push(Import {
                    line: line_of(code, group_at + offset),
                    module: name,
                });
            }
        } else {
            let name: String = rest.chars().take_while(|c| is_ident(*c)).collect();
            if !name.is_empty() {
                let module = if name == "channel" && names_channel_settings(&rest[name.len()..]) {
                    CHANNEL_SETTINGS.to_owned()
                } else {
                    name
                };
                found.push(Import {
                    line: line_of(code, at),
                    module,
                });
            }
        }
    }
    for (at, depth) in super_paths(code) {
        let inline = inline_modules_at(code, at);
        if depth < file.modules.len() + inline {
            continue;
        }
        let rest = &code[at..];
        let rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ':');
        let rest = (0..depth).fold(rest, |r, _| {
            r.trim_start_matches("super")
                .trim_start_matches(|c: char| c.is_whitespace() || c == ':')
        });
        let name: String = rest.chars().take_while(|c| is_ident(*c)).collect();
        if !name.is_empty() {
            found.push(Import {
                line: line_of(code, at),
                module: name,
            });
        }
    }
    found
}

/// Whether the path after `crate::channel` is `::<name>::settings`: a channel's own section.
fn names_channel_settings(rest: &str) -> bool {
    let Some(rest) = rest.trim_start().strip_prefix("::") else {
        return false;
    };
    let name: String = rest
        .trim_start()
        .chars()
        .take_while(|c| is_ident(*c))
        .collect();
    let after = rest.trim_start()[name.len()..].trim_start();
    after.strip_prefix("::").is_some_and(|r| {
        r.trim_start().starts_with("settings")
            && !r.trim_start()["settings".len()..].starts_with(is_ident)
    })
}

/// `code` with the bodies of `#[cfg(test)] mod … { … }` blanked out: a test may assemble parts
/// from any floor (a renderer with the registry's forms), as the integration tests do.
fn blank_test_modules(code: &str) -> String {
    let mut out = code.to_owned();
    let mut from = 0;
    while let Some(found) = code[from..].find("#[cfg(test)]") {
        let at = from + found;
        from = at + 1;
        let rest = code[at + "#[cfg(test)]".len()..].trim_start();
        let Some(rest) = rest.strip_prefix("mod ") else {
            continue;
        };
        let Some(open) = rest.find(['{', ';']) else {
            continue;
        };
        if rest.as_bytes()[open] == b';' {
            continue;
        }
        let start = code.len() - rest.len() + open;
        let mut depth = 0usize;
        let mut end = code.len();
        for (i, c) in code[start..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = start + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        // Byte for byte, so that offsets and line numbers still match the text.
        let blanked: String = code[start..end]
            .chars()
            .flat_map(|c| {
                let width = if c == '\n' { 0 } else { c.len_utf8() };
                std::iter::repeat_n(' ', width).chain((c == '\n').then_some('\n'))
            })
            .collect();
        out.replace_range(start..end, &blanked);
    }
    out
}

/// The first name of each item of a `{ … }` group whose inside starts `group`, with its offset.
fn group_items(group: &str) -> Vec<(usize, String)> {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut expecting = true;
    for (offset, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => expecting = true,
            c if expecting && depth == 0 && is_ident(c) => {
                expecting = false;
                let name: String = group[offset..]
                    .chars()
                    .take_while(|c| is_ident(*c))
                    .collect();
                items.push((offset, name));
            }
            _ => {}
        }
    }
    items
}

/// Where each `super::super::…` chain starts, and how many `super`s it has.
fn super_paths(code: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("super") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == ':') {
            continue;
        }
        let mut depth = 0;
        let mut rest = &code[at..];
        while let Some(after) = rest.strip_prefix("super") {
            let after = after.trim_start();
            let Some(after) = after.strip_prefix("::") else {
                break;
            };
            depth += 1;
            rest = after.trim_start();
        }
        if depth > 0 {
            found.push((at, depth));
        }
    }
    found
}

/// How many inline modules (`mod name { … }`) enclose the byte `at` of `code`.
fn inline_modules_at(code: &str, at: usize) -> usize {
    let mut open: Vec<usize> = Vec::new();
    let mut depth = 0;
    let mut pending = false;
    let bytes = &code[..at];
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let before = bytes[..i].chars().next_back();
        if rest.starts_with("mod ") && !before.is_some_and(is_ident) {
            let name_end = rest[4..]
                .trim_start()
                .find(|c: char| !is_ident(c))
                .unwrap_or(0);
            let after = rest[4..].trim_start()[name_end..].trim_start();
            pending = after.starts_with('{');
            i += 4;
            continue;
        }
        match rest.chars().next() {
            Some('{') => {
                depth += 1;
                if pending {
                    open.push(depth);
                    pending = false;
                }
            }
            Some('}') => {
                if open.last() == Some(&depth) {
                    open.pop();
                }
                depth -= 1;
            }
            _ => {}
        }
        i += rest.chars().next().map_or(1, char::len_utf8);
    }
    open.len()
}

#[test]
fn the_reader_finds_imports_and_skips_comments_and_strings() {
    let text = "//! `crate::web` in a doc\n\
                use crate::store::{Store, Tx};\n\
                use crate::{domain::Signal,\n    settings::Settings};\n\
                let s = \"crate::app\"; let r = r#\"crate::app\"#; let c = '\"';\n\
                /* crate::app */ fn f<'a>(x: &'a str) -> crate::render::Markup { todo!() }\n\
                mod tests { use super::super::super::outbox::Dispatcher; use super::super::y; }\n\
                let t: tokio::net::TcpStream; let u: TcpStreamish;\n";
    let file = Source {
        name: "src/channel/x.rs".into(),
        modules: vec!["channel".into(), "x".into()],
        text: text.into(),
        code: blank_comments_and_literals(text),
    };
    let found: Vec<(usize, String)> = imports(&file)
        .into_iter()
        .map(|i| (i.line, i.module))
        .collect();
    assert_eq!(
        found,
        vec![
            (2, "store".into()),
            (3, "domain".into()),
            (4, "settings".into()),
            (6, "render".into()),
            (7, "outbox".into()),
        ]
    );
    assert_eq!(
        paths_starting(&file.code, "TcpStream"),
        vec![(8, "tokio::net::TcpStream".to_owned())]
    );
    assert_eq!(
        paths_starting(&file.code, "tokio::net"),
        vec![(8, "tokio::net::TcpStream".to_owned())]
    );
}
