//! What the networks read as a link, a mention or a hashtag, found as each network finds them:
//! links as twitter-text reads them (a scheme, or a bare host ending in a top-level domain of
//! `tlds.txt`, without the punctuation that ends a sentence), Mastodon's mentions, and the links
//! and hashtags Bluesky's facets cover. The lengths and the cutting beside it rely on these to
//! count a link as the network does and to keep each one whole.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;
use unicode_segmentation::UnicodeSegmentation;

use super::refused;

/// A Bluesky tag, by the lexicon (`app.bsky.richtext.facet#tag`).
const BLUESKY_TAG_MAX_GRAPHEMES: usize = 64;
const BLUESKY_TAG_MAX_BYTES: usize = 640;
/// twitter-text takes no longer link (4,096 with the scheme); a longer one counts in full.
const MAX_URL_BYTES: usize = 4_000;
/// The longest host name read as one.
const MAX_HOST_BYTES: usize = 253;

/// Top-level domains as twitter-text knows them, in lower case.
static TLDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("tlds.txt")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
});

/// A link's query, as twitter-text ends it.
const QUERY: &str = r"\?[a-zA-Z0-9!?*'@();:\&=+$/%#\[\]\-_.,\~|]*[a-zA-Z0-9\-_\&=#/]";

/// What may follow a host: a port, a path, a query, each ending as twitter-text ends it, with
/// only the characters both X and Mastodon take there, so that a link never runs past where
/// either network ends it (trailing `.`, `,`, `)`, `!`, `?`, `=` and the like stay outside).
static AFTER_HOST: LazyLock<Regex> = LazyLock::new(|| {
    // Accented Latin and Cyrillic letters, which twitter-text takes in a path.
    let letters = r"\x{c0}-\x{d6}\x{d8}-\x{f6}\x{f8}-\x{24f}\x{253}\x{254}\x{256}\x{257}\x{259}\x{25b}\x{263}\x{268}\x{26f}\x{272}\x{289}\x{28b}\x{2bb}\x{300}-\x{36f}\x{1e00}-\x{1eff}\x{400}-\x{4ff}";
    let general = format!(r"[a-zA-Z0-9!*';:=+,.$/%#\[\]\-\x{{2013}}_\~@|\&{letters}]");
    let ending = format!(r"[a-zA-Z0-9+\-_#/{letters}]");
    let parens = format!(r"\((?:{general}+|{general}*\({general}+\){general}*)\)");
    let segment = format!(r"{general}*(?:{parens}{general}*)*(?:{ending}|{parens})");
    Regex::new(&format!(r"^(?::[0-9]+)?(?:/(?:{segment})*)?(?:{QUERY})?"))
        .unwrap_or_else(|_| unreachable!())
});

/// What follows `t.co`: a slug, and perhaps a query.
static TCO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"^/([a-zA-Z0-9]+)(?:{QUERY})?")).unwrap_or_else(|_| unreachable!())
});

/// `@user@domain` as Mastodon finds it (`Account::MENTION_RE`); it counts only `@user`.
static MENTION: LazyLock<Regex> = LazyLock::new(|| {
    let word = r"\p{L}\p{M}\p{Nd}\p{Pc}";
    Regex::new(&format!(
        r"(?:^|[^=/{word}])(@[A-Za-z0-9_]+(?:[.-]+[A-Za-z0-9_]+)*)@[{word}]+(?:[.-]+[{word}]+)*"
    ))
    .unwrap_or_else(|_| unreachable!())
});

static TRAILING_PUNCTUATION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\p{P}+$").unwrap_or_else(|_| unreachable!()));
static NOT_DIGIT_OR_PUNCTUATION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[^0-9\p{P}]").unwrap_or_else(|_| unreachable!()));

/// The `http(s)` links in `text` (any host, a name or an address), with their byte ranges, as
/// Bluesky's link facets cover them.
pub fn urls(text: &str) -> impl Iterator<Item = (Range<usize>, &str)> {
    // A scheme can sit inside an earlier link's path or query; that link holds it.
    let mut end_of_last = 0;
    let alone = move |(range, _): &(Range<usize>, &str)| {
        let alone = range.start >= end_of_last;
        end_of_last = end_of_last.max(range.end);
        alone
    };
    schemes(text, &["https", "http"])
        .filter_map(move |(start, host)| {
            let rest = &text[host..];
            let run = host_run(rest);
            let name = rest[..run].trim_end_matches(['.', '-', '_']);
            if !name.starts_with(host_char) {
                return None;
            }
            let end = host + name.len() + after_host(&rest[name.len()..]);
            Some((start..end, &text[start..end]))
        })
        .filter(alone)
}

/// Bluesky's hashtags as its app finds them, with their byte ranges (`#` included) and their
/// tag (without it): `#` or `＃` at the start or after white space, up to white space or a
/// zero-width character, less trailing punctuation, holding something that is not a digit or
/// punctuation; within the lexicon's 64 graphemes and 640 bytes.
pub fn tags(text: &str) -> Vec<(Range<usize>, &str)> {
    let mut found = Vec::new();
    let mut previous: Option<char> = None;
    for (at, c) in text.char_indices() {
        let starts = matches!(c, '#' | '＃') && previous.is_none_or(char::is_whitespace);
        previous = Some(c);
        if !starts {
            continue;
        }
        let body = &text[at + c.len_utf8()..];
        let body = &body[..body.find(ends_tag).unwrap_or(body.len())];
        let tag = TRAILING_PUNCTUATION
            .find(body)
            .map_or(body, |p| &body[..p.start()]);
        let fits = tag.len() <= BLUESKY_TAG_MAX_BYTES
            && tag.graphemes(true).count() <= BLUESKY_TAG_MAX_GRAPHEMES;
        // `##tag` would be a tag starting with `#`, which the lexicon asks not to write.
        if fits
            && NOT_DIGIT_OR_PUNCTUATION.is_match(tag)
            && !tag.starts_with(['\u{fe0f}', '#', '＃'])
        {
            let end = at + c.len_utf8() + tag.len();
            found.push((at..end, tag));
        }
    }
    found
}

fn ends_tag(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{ad}' | '\u{2060}' | '\u{200a}' | '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{20e2}'
        )
}

/// How a network may count a span that may hold a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    /// As one link.
    Sure,
    /// As one link or as text, whichever is longer: a bare domain of two labels, which X links
    /// only with a path; a host in other letters, whose ASCII form may be invalid.
    Maybe,
    /// As text in which up to this many links may be read: a bare host in other letters, from
    /// which X takes the ASCII domains.
    Parts(usize),
}

impl Link {
    /// What the span counts at most, given a link's count and the span's own length.
    pub(super) fn counted(self, per_link: usize, own: usize) -> usize {
        match self {
            Link::Sure => per_link,
            Link::Maybe => per_link.max(own),
            Link::Parts(links) => own + links * per_link,
        }
    }
}

/// The links twitter-text finds in `text`, read from its start as twitter-text's expression
/// reads it: where nothing before could continue a word, a scheme of `schemes_taken` and a
/// host, or else a bare host. Each takes its extent, a bare host too where the network does not
/// link it (never on Mastodon; on X not after `-`, `_`, `.` or `/`), so that a scheme inside its
/// path makes no link either.
pub(super) fn counted_links(
    text: &str,
    schemes_taken: &[&str],
    bare: bool,
) -> Vec<(Range<usize>, Link)> {
    let mut found = Vec::new();
    let mut at = 0;
    let mut no_host_before = 0;
    // Where the word of the last link or host ends: the network may read that link or host
    // further than we do, over a link we find after it.
    let mut word_end = 0;
    while let Some(c) = text[at..].chars().next() {
        let preceding = text[..at].chars().next_back();
        let read = if preceding.is_some_and(continues_link) {
            None
        } else if let Some(read) = scheme_link(text, at, schemes_taken) {
            Some(read)
        } else if let Some(domain) = bare_host(text, at, &mut no_host_before) {
            let end = at + domain + after_host(&text[at + domain..]);
            let host = &text[at..at + domain];
            let linked = bare && !preceding.is_some_and(|p| "-_./".contains(p));
            let link = if !linked || end - at > MAX_URL_BYTES || !dns_labels(host) {
                None
            } else if host.chars().all(|c| c == '.' || ascii_domain_char(c)) {
                let short = host.matches('.').count() == 1 && end == at + domain;
                Some(if short { Link::Maybe } else { Link::Sure })
            } else {
                Some(Link::Parts(host.matches('.').count()))
            };
            Some((end, link.map(|link| (end, link))))
        } else {
            None
        };
        let Some((end, link)) = read else {
            at += c.len_utf8();
            continue;
        };
        let link = match link {
            Some((link_end, Link::Sure)) if at < word_end => Some((link_end, Link::Maybe)),
            link => link,
        };
        found.extend(link.map(|(link_end, link)| (at..link_end, link)));
        word_end = end
            + text[end..]
                .find(char::is_whitespace)
                .unwrap_or(text.len() - end);
        // The character after a link or host can only precede the next one.
        at = end + text[end..].chars().next().map_or(0, char::len_utf8);
    }
    found
}

/// The length of the domain at `at`, unless a host read from further back in the same first
/// label was none (`no_host_before` keeps where that label ends): this one would be none alike.
fn bare_host(text: &str, at: usize, no_host_before: &mut usize) -> Option<usize> {
    if at < *no_host_before || !text[at..].starts_with(host_char) {
        return None;
    }
    let domain = domain_len(&text[at..]);
    if domain.is_none() {
        let rest = &text[at..];
        let run = &rest[..host_run(&rest[..rest.floor_char_boundary(MAX_HOST_BYTES)])];
        *no_host_before = at + run.find(['.', '-', '_']).unwrap_or(run.len());
    }
    domain
}

/// Where what twitter-text reads ends, and the link in it: where that ends and how it counts
/// (`None` for what is read but no link).
type Read = (usize, Option<(usize, Link)>);

/// A link with one of `schemes_taken` at `at`; no link if it is a t.co link with a slug over 40
/// characters, too long, or has a label DNS would refuse.
fn scheme_link(text: &str, at: usize, schemes_taken: &[&str]) -> Option<Read> {
    let scheme = schemes_taken.iter().find(|s| {
        text.get(at..at + s.len() + 3).is_some_and(|t| {
            t.ends_with("://") && t.get(..s.len()).is_some_and(|h| h.eq_ignore_ascii_case(s))
        })
    })?;
    let host = at + scheme.len() + 3;
    let rest = &text[host..];
    let domain = domain_len(rest)?;
    let end = host + domain + after_host(&rest[domain..]);
    let mut link_end = end;
    // A t.co link ends after its slug (of at most 40 characters), what is read after it is no
    // link.
    if rest[..domain].eq_ignore_ascii_case("t.co")
        && let Some(tco) = TCO.captures(&rest[domain..])
        && let (Some(whole), Some(slug)) = (tco.get(0), tco.get(1))
    {
        if slug.len() > 40 {
            return Some((end.max(host + domain + whole.len()), None));
        }
        link_end = host + domain + whole.len();
    }
    // A host in other letters counts only if its ASCII form is valid.
    let link = if rest[..domain].is_ascii() {
        Link::Sure
    } else {
        Link::Maybe
    };
    let valid = link_end - at <= MAX_URL_BYTES && dns_labels(&rest[..domain]);
    Some((end.max(link_end), valid.then_some((link_end, link))))
}

/// Whether no ASCII label of `host` is longer than DNS allows (63 bytes): twitter-text reads
/// such a host, but takes it for no link. A longer label in other letters may be shorter in
/// its ASCII form.
fn dns_labels(host: &str) -> bool {
    host.split('.')
        .all(|label| label.len() <= 63 || !label.is_ascii())
}

/// Where each `scheme://` of `schemes_taken` (in any case) starts in `text`, and where its host
/// starts, if what comes before could not continue it.
fn schemes<'t>(
    text: &'t str,
    schemes_taken: &'t [&'t str],
) -> impl Iterator<Item = (usize, usize)> + 't {
    text.match_indices("://").filter_map(move |(at, _)| {
        let before = &text[..at];
        let scheme = schemes_taken.iter().find(|s| {
            before.len() >= s.len()
                && before.is_char_boundary(before.len() - s.len())
                && before[before.len() - s.len()..].eq_ignore_ascii_case(s)
        })?;
        let start = at - scheme.len();
        let preceding = text[..start].chars().next_back();
        (!preceding.is_some_and(continues_link)).then_some((start, at + 3))
    })
}

/// Whether a link could not start right after `c` (twitter-text's preceding characters).
fn continues_link(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '@' | '＠' | '$' | '#' | '＃') || refused(c)
}

/// A character twitter-text takes in a host's labels (beside `-` and `_` inside them).
fn host_char(c: char) -> bool {
    !(c.is_ascii_punctuation()
        || c.is_whitespace()
        || c.is_control()
        || c == '\u{180e}'
        || refused(c))
}

/// The bytes at the start of `rest` that could be a host: labels and dots.
fn host_run(rest: &str) -> usize {
    rest.find(|c: char| !(host_char(c) || matches!(c, '.' | '-' | '_')))
        .unwrap_or(rest.len())
}

/// The length of the domain twitter-text reads at the start of `rest`: the most labels whose
/// last is a known top-level domain (or punycode) that nothing could continue.
fn domain_len(rest: &str) -> Option<usize> {
    if !rest.starts_with(host_char) {
        return None;
    }
    // No longer name is read (DNS allows 253 bytes): one is counted as text, which is longer.
    let run = host_run(&rest[..rest.floor_char_boundary(MAX_HOST_BYTES)]);
    let labels: Vec<(usize, &str)> = rest[..run]
        .split('.')
        .scan(0, |at, label| {
            let start = *at;
            *at += label.len() + 1;
            Some((start, label))
        })
        .collect();
    let label_ok = |label: &str, inner: &[char]| {
        label.starts_with(host_char)
            && label.ends_with(host_char)
            && label.chars().all(|c| host_char(c) || inner.contains(&c))
    };
    // Subdomains may hold `_`, the name before the top-level domain only `-`.
    let subdomains = labels
        .iter()
        .take_while(|(_, label)| label_ok(label, &['-', '_']))
        .count();
    let last = labels.len().saturating_sub(1).min(subdomains + 1);
    for k in (1..=last).rev() {
        if !label_ok(labels[k - 1].1, &['-']) {
            continue;
        }
        let (start, label) = labels[k];
        if let Some(tld) = tld_len(&rest[start..], label) {
            return Some(start + tld);
        }
    }
    None
}

/// The length of the top-level domain at the start of `label` (which `rest` continues), if any.
fn tld_len(rest: &str, label: &str) -> Option<usize> {
    // No top-level domain is longer than a DNS label, 63 bytes.
    let ends: Vec<usize> = label
        .char_indices()
        .map(|(i, c)| i + c.len_utf8())
        .take_while(|end| *end <= 63)
        .collect();
    for &end in ends.iter().rev() {
        let next = rest[end..].chars().next();
        let continued = next.is_some_and(|c| c.is_ascii_alphanumeric() || "@+-".contains(c));
        if !continued && TLDS.contains(label[..end].to_lowercase().as_str()) {
            return Some(end);
        }
    }
    let puny = label
        .get(..4)?
        .eq_ignore_ascii_case("xn--")
        .then(|| &label[4..])?;
    let run = puny
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or(puny.len());
    (run > 0).then_some(4 + run)
}

/// A character of an ASCII domain, as X links a bare one (accented Latin letters included).
fn ascii_domain_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || c == '-'
        || matches!(u32::from(c), 0xc0..=0xd6 | 0xd8..=0xf6 | 0xf8..=0x24f | 0x1e00..=0x1eff)
}

/// The bytes of port, path and query at the start of `rest`.
fn after_host(rest: &str) -> usize {
    AFTER_HOST.find(rest).map_or(0, |m| m.end())
}

/// The mentions `@user@domain` Mastodon finds, with their byte ranges and their `@user`; not
/// one followed by `@`, an accented letter or `://`, which Mastodon leaves as text.
pub(super) fn mentions(text: &str) -> impl Iterator<Item = (Range<usize>, &str)> {
    MENTION.captures_iter(text).filter_map(move |found| {
        let (whole, user) = (found.get(0)?, found.get(1)?);
        let after = &text[whole.end()..];
        let continued = after.starts_with(['@', '＠'])
            || after.starts_with("://")
            || after
                .chars()
                .next()
                .is_some_and(|c| !c.is_ascii() && ascii_domain_char(c));
        (!continued).then_some((user.start()..whole.end(), user.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::subscriber::ChannelKind;
    use crate::render::social::Limits;

    #[test]
    fn urls_give_byte_ranges_past_accents_and_emoji() {
        let text = "È giù 🚨 https://status.example.org/i/42.";
        let found: Vec<_> = urls(text).collect();
        assert_eq!(found.len(), 1);
        let (range, url) = &found[0];
        assert_eq!(*url, "https://status.example.org/i/42");
        assert_eq!(&text.as_bytes()[range.clone()], url.as_bytes());
        assert_eq!(range.start, "È giù 🚨 ".len());
    }

    #[test]
    fn links_count_as_23_only_where_twitter_text_finds_them() {
        let l = Limits::default();
        // No known top-level domain: counted in full, as Mastodon and X count it.
        let example = "https://banditore.asl.example/status/incidents/42";
        assert_eq!(l.length(ChannelKind::Mastodon, example), 49);
        assert_eq!(l.length(ChannelKind::X, example), 49);
        let ip = "http://127.0.0.1:8080/status";
        assert_eq!(l.length(ChannelKind::Mastodon, ip), 28);
        // Trailing punctuation is not part of the link.
        assert_eq!(
            l.length(ChannelKind::Mastodon, "(https://asl.it/x)."),
            1 + 23 + 2
        );
        assert_eq!(l.length(ChannelKind::X, "https://asl.it/a?b=1&c."), 23 + 1);
        // X links a bare domain too; Mastodon does not.
        assert_eq!(l.length(ChannelKind::X, "su www.regione.umbria.it"), 3 + 23);
        assert_eq!(
            l.length(ChannelKind::Mastodon, "su www.regione.umbria.it"),
            24
        );
        // Mastodon: gemini and friends are links too.
        assert_eq!(l.length(ChannelKind::Mastodon, "gemini://a.it"), 23);
        // t.co links end after their slug; a host in other letters counts at least in full.
        assert_eq!(l.length(ChannelKind::X, "http://t.co/abc's"), 23 + 2);
        assert_eq!(l.length(ChannelKind::Mastodon, "https://città.it"), 23);
        let long = format!("https://{}.it/x", "città".repeat(10));
        assert_eq!(l.length(ChannelKind::Mastodon, &long), 8 + 50 + 5);
        // X may read a link in a bare host in other letters: it counts as text and a link.
        assert_eq!(l.length(ChannelKind::X, "regione.みんな"), 7 + 1 + 6 + 23);
        // A mention Mastodon would not take keeps its domain in the count.
        assert_eq!(l.length(ChannelKind::Mastodon, "x=@cup@social.example"), 21);
        assert_eq!(l.length(ChannelKind::Mastodon, "@cup@social.example@x"), 21);
    }
}
