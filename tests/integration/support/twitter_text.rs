//! Links as twitter-text finds them, for the Mastodon and X doubles, which count a link as 23
//! only where their network would: a scheme (on X a bare domain too) after a character that could
//! not continue a word, a host whose last label is a known top-level domain that nothing
//! continues, then a port, a path and a query ending as the network ends them. A bare domain the
//! network does not link is still read, and what it spans holds no link. Mastodon takes more
//! characters in a path than X does (its own override of twitter-text's expressions), and more
//! schemes. The top-level domains are the application's list, read as data: which domains
//! exist is a fact, not a rule under test.
//!
//! Written as one regular expression per network, unlike the application's scanner, so that the
//! two readings are checked against each other.

// Shared by the integration tests, which each use part of it.
#![allow(dead_code)]

use std::ops::Range;
use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};

/// Whose reading of a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    Mastodon,
    X,
}

/// twitter-text's longest link (with its scheme).
const MAX_URL_LENGTH: usize = 4096;

/// Latin letters with accents, which X takes in a bare domain and a path.
const LATIN: &str = r"\x{c0}-\x{d6}\x{d8}-\x{f6}\x{f8}-\x{ff}\x{100}-\x{24f}\x{253}\x{254}\x{256}\x{257}\x{259}\x{25b}\x{263}\x{268}\x{26f}\x{272}\x{289}\x{28b}\x{2bb}\x{300}-\x{36f}\x{1e00}-\x{1eff}";
/// Those and Cyrillic letters, which X takes in a path.
static LETTERS: LazyLock<String> = LazyLock::new(|| format!(r"{LATIN}\x{{400}}-\x{{4ff}}"));
/// A bare domain X links: ASCII letters, digits, `-` and accented Latin letters.
static ASCII_DOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"^[\-a-zA-Z0-9.{LATIN}]+$")).unwrap_or_else(|e| panic!("{e}"))
});

/// Scheme (or none), host up to its top-level domain, and the character after a listed one (or
/// the end), which must not continue it; punycode needs none.
fn start_and_domain(network: Network) -> String {
    let tlds: Vec<&str> = {
        let mut tlds: Vec<&str> = include_str!("../../../src/render/social/tlds.txt")
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        tlds.sort_by_key(|t| std::cmp::Reverse(t.len()));
        tlds
    };
    let tld = tlds
        .iter()
        .map(|t| regex::escape(t))
        .collect::<Vec<_>>()
        .join("|");
    // Any character but ASCII punctuation, spaces, controls and U+FFFE, U+FEFF, U+FFFF.
    let c = r#"[^!-/:-@\[-`{-~\s\x00-\x1f\x7f\x{180e}\x{fffe}\x{feff}\x{ffff}]"#;
    let subdomain = format!(r"(?:(?:{c}(?:[_-]|{c})*)?{c}\.)");
    let name = format!(r"(?:(?:{c}(?:-|{c})*)?{c}\.)");
    // The scheme is optional for both: a bare host is read (and its extent passed over) even
    // where the network does not link it.
    let scheme = match network {
        Network::Mastodon => r"(?:(?:https?|dat|dweb|ipfs|ipns|ssb|gopher|gemini)://)?",
        Network::X => r"(?:https?://)?",
    };
    format!(
        r"(?:^|[^A-Za-z0-9@＠$#＃\x{{fffe}}\x{{feff}}\x{{ffff}}])(?P<scheme>{scheme})(?P<host>{subdomain}*{name}(?:(?:{tld})(?P<after>[^0-9a-zA-Z@+\-]|$)|xn--[\-0-9a-z]+))"
    )
}

/// Port, path and query after the host, as `network` ends them.
fn rest(network: Network) -> String {
    let (general, ending, query, query_end, slash) = match network {
        Network::Mastodon => (
            r"[^\s<>()?]".to_owned(),
            r#"[^\s()?!*"'「」<>;:=,.$%\[\]~&|@]"#.to_owned(),
            r"[a-z0-9!?*'();:&=+$/%#\[\]\-_.,~|@\^\x{a0}-\x{d7ff}\x{f900}-\x{fdcf}\x{fdf0}-\x{ffef}\x{10000}-\x{10fffd}]",
            r"[a-z0-9_&=#/\-\x{a0}-\x{d7ff}\x{f900}-\x{fdcf}\x{fdf0}-\x{ffef}\x{10000}-\x{10fffd}]",
            "",
        ),
        Network::X => (
            format!(r"[a-z0-9!*';:=+,.$/%#\[\]\-\x{{2013}}_~@|&{}]", *LETTERS),
            format!(r"[+\-a-z0-9=_#/{}]", *LETTERS),
            r"[a-z0-9!?*'@();:&=+$/%#\[\]\-_.,~|]",
            r"[a-z0-9\-_&=#/]",
            "@",
        ),
    };
    let parens = format!(r"\((?:{general}+|{general}*\({general}+\){general}*)\)");
    let unit =
        format!(r"(?:{general}*(?:{parens}{general}*)*(?:{ending}|{parens})|{slash}{general}+/)");
    format!(r"^(?::[0-9]+)?(?:/{unit}*)?(?:\?{query}*{query_end})?")
}

/// The query a t.co link may keep after its slug.
static TCO_QUERY: LazyLock<Regex> = LazyLock::new(|| {
    let pattern = r"^\?[a-z0-9!?*'@();:&=+$/%#\[\]\-_.,~|]*[a-z0-9\-_&=#/]";
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
});

struct Expressions {
    start: Regex,
    rest: Regex,
}

fn compile(network: Network) -> Expressions {
    let build = |pattern: &str| {
        RegexBuilder::new(pattern)
            .case_insensitive(true)
            .size_limit(1 << 26)
            .build()
            .unwrap_or_else(|e| panic!("twitter-text expression: {e}"))
    };
    Expressions {
        start: build(&start_and_domain(network)),
        rest: build(&rest(network)),
    }
}

static MASTODON: LazyLock<Expressions> = LazyLock::new(|| compile(Network::Mastodon));
static X: LazyLock<Expressions> = LazyLock::new(|| compile(Network::X));

/// The byte ranges of the links `network` finds in `text`.
pub fn links(text: &str, network: Network) -> Vec<Range<usize>> {
    let e = match network {
        Network::Mastodon => &*MASTODON,
        Network::X => &*X,
    };
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(m) = e.start.captures_at(text, from) {
        let (Some(scheme), Some(host)) = (m.name("scheme"), m.name("host")) else {
            break;
        };
        let start = scheme.start();
        let domain_end = m.name("after").map_or(host.end(), |after| after.start());
        let domain = &text[host.start()..domain_end];
        let rest = e.rest.find(&text[domain_end..]).map_or(0, |r| r.end());
        let mut end = domain_end + rest;
        from = end.max(start + 1);
        if scheme.is_empty() && network == Network::Mastodon {
            // Mastodon links no bare domain.
            continue;
        } else if scheme.is_empty() {
            // A bare domain: not after `-`, `_`, `.` or `/`; ASCII and accented Latin letters
            // only (else the ASCII part alone, left out here); a name and a country code alone
            // need a path.
            let before = text[..start].chars().next_back();
            let two_letters = domain.rsplit('.').next().is_some_and(|tld| tld.len() == 2);
            let country_only = domain.matches('.').count() == 1 && two_letters && rest == 0;
            if before.is_some_and(|c| "-_./".contains(c))
                || !ASCII_DOMAIN.is_match(domain)
                || country_only
            {
                continue;
            }
        } else if domain.eq_ignore_ascii_case("t.co") {
            let slug = text[domain_end..].strip_prefix('/').map(|s| {
                s.find(|c: char| !c.is_ascii_alphanumeric())
                    .unwrap_or(s.len())
            });
            match slug {
                Some(n) if n > 40 => continue,
                Some(n) if n > 0 => {
                    let after = domain_end + 1 + n;
                    end = after + TCO_QUERY.find(&text[after..]).map_or(0, |q| q.end());
                }
                _ => {}
            }
        }
        if end - start <= MAX_URL_LENGTH {
            found.push(start..end);
        }
    }
    found
}
