//! Lengths on the social networks, each counted the way that network counts, and cutting a post
//! to its limit while keeping its last line (the link to the status page) and every link, mention
//! and hashtag whole.
//!
//! - Mastodon: grapheme clusters; a link as twitter-text finds one (a scheme, a host ending in a
//!   known top-level domain, without the punctuation that ends a sentence) counts
//!   `characters_reserved_per_url` (23), a mention `@user@domain` counts as `@user`; 500 by
//!   default, instances may change it.
//! - Bluesky: grapheme clusters, links in full; 300, and at most 3,000 bytes. Bluesky finds
//!   nothing by itself: links (`urls`) and hashtags (`tags`) become facets.
//! - X: weighted after NFC: links twitter-text finds, with a scheme or a bare domain, 23, emoji
//!   2, code points in the Latin/Greek/Cyrillic/… ranges and some punctuation 1, everything else
//!   (CJK, `€`) 2; 280.
//! - Facebook: characters; 63,206.
//!
//! Where our reading of a link may differ from the network's, the count errs long: a post cut to
//! our count is never refused for its length.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;

use crate::domain::subscriber::ChannelKind;

pub const BLUESKY_MAX_GRAPHEMES: usize = 300;
pub const BLUESKY_MAX_BYTES: usize = 3000;
/// A Bluesky tag, by the lexicon (`app.bsky.richtext.facet#tag`).
const BLUESKY_TAG_MAX_GRAPHEMES: usize = 64;
const BLUESKY_TAG_MAX_BYTES: usize = 640;
pub const X_MAX_WEIGHT: usize = 280;
pub const X_URL_WEIGHT: usize = 23;
pub const FACEBOOK_MAX_CHARS: usize = 63_206;
/// The status page's text per update: a statement, not an article.
pub const STATUS_MAX_CHARS: usize = 5_000;
pub const MASTODON_DEFAULT_MAX: usize = 500;
pub const MASTODON_DEFAULT_URL: usize = 23;

const ELLIPSIS: &str = "…";
/// How far back a cut looks for the end of a word, in graphemes, before cutting inside one.
const BACK_OFF: usize = 30;
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

/// The limits in force: Mastodon's depend on the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub mastodon_max: usize,
    pub mastodon_url: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            mastodon_max: MASTODON_DEFAULT_MAX,
            mastodon_url: MASTODON_DEFAULT_URL,
        }
    }
}

impl Limits {
    /// A social network's limit, in its own unit; `None` for the other channels.
    pub fn limit(&self, channel: ChannelKind) -> Option<usize> {
        match channel {
            ChannelKind::Mastodon => Some(self.mastodon_max),
            ChannelKind::Bluesky => Some(BLUESKY_MAX_GRAPHEMES),
            ChannelKind::X => Some(X_MAX_WEIGHT),
            ChannelKind::Facebook => Some(FACEBOOK_MAX_CHARS),
            ChannelKind::Status => Some(STATUS_MAX_CHARS),
            ChannelKind::Email | ChannelKind::Telegram | ChannelKind::Sms | ChannelKind::Log => {
                None
            }
        }
    }

    /// How long `text` is on `channel`, by that network's rule.
    pub fn length(&self, channel: ChannelKind, text: &str) -> usize {
        self.length_beyond(channel, text, usize::MAX)
    }

    /// How long `text` is, or some length over `cap` once it is known to be longer: a huge text
    /// is not counted to its end only to be found too long.
    fn length_beyond(&self, channel: ChannelKind, text: &str, cap: usize) -> usize {
        let over = cap.saturating_add(1);
        match channel {
            ChannelKind::Mastodon => mastodon_length(text, self.mastodon_url, over),
            ChannelKind::Bluesky => text.graphemes(true).take(over).count(),
            ChannelKind::X => x_weighted_length(text, over),
            _ => text.chars().take(over).count(),
        }
    }

    /// Whether `text` fits: Bluesky also bounds the bytes.
    pub fn fits(&self, channel: ChannelKind, text: &str) -> bool {
        self.fits_within(channel, text, usize::MAX)
    }

    /// Whether `text` fits, and is at most `max` long too.
    pub fn fits_within(&self, channel: ChannelKind, text: &str, max: usize) -> bool {
        // The bytes first: a long text is refused without counting it.
        if channel == ChannelKind::Bluesky && text.len() > BLUESKY_MAX_BYTES {
            return false;
        }
        let max = self.limit(channel).map_or(max, |limit| limit.min(max));
        max == usize::MAX || self.length_beyond(channel, text, max) <= max
    }

    /// How the count is named, for people reading it.
    pub fn unit(channel: ChannelKind) -> &'static str {
        match channel {
            ChannelKind::Mastodon | ChannelKind::Bluesky => "graphemes",
            ChannelKind::X => "weighted characters",
            _ => "characters",
        }
    }
}

/// A character a network refuses or shows as nothing in a post: the controls but tab, line
/// feed and carriage return (Mastodon's database refuses NUL), U+FEFF and the noncharacters
/// (X refuses U+FFFE, U+FEFF and U+FFFF).
pub fn refused(c: char) -> bool {
    (c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        || c == '\u{feff}'
        || matches!(u32::from(c), 0xfdd0..=0xfdef)
        || u32::from(c) & 0xfffe == 0xfffe
}

/// `text` as every network takes it: CR LF, a lone CR and NEL become a line feed, vertical tab
/// and form feed a space, and the characters networks refuse are left out.
pub fn clean(text: &str) -> String {
    text.replace("\r\n", "\n")
        .chars()
        .filter_map(|c| match c {
            '\r' | '\u{85}' => Some('\n'),
            '\u{b}' | '\u{c}' => Some(' '),
            c if refused(c) => None,
            c => Some(c),
        })
        .collect()
}

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
enum Link {
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
    fn counted(self, per_link: usize, own: usize) -> usize {
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
fn counted_links(text: &str, schemes_taken: &[&str], bare: bool) -> Vec<(Range<usize>, Link)> {
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

/// Mastodon's length of `text`, counted at most up to `upto`.
fn mastodon_length(text: &str, per_url: usize, upto: usize) -> usize {
    let schemes = [
        "https", "http", "dat", "dweb", "ipfs", "ipns", "ssb", "gopher", "gemini",
    ];
    // As Mastodon does: each link becomes `per_url` characters and each mention `@user` (an
    // entity overlapping an earlier one is not one), then the result is counted in graphemes.
    let mut entities: Vec<(Range<usize>, String)> = counted_links(text, &schemes, false)
        .into_iter()
        .map(|(range, link)| {
            let own = text[range.clone()].graphemes(true).count();
            (range, "x".repeat(link.counted(per_url, own)))
        })
        .collect();
    entities.extend(mentions(text).map(|(range, user)| (range, user.to_owned())));
    entities.sort_by_key(|(range, _)| range.start);
    let mut countable = String::with_capacity(text.len());
    let mut last = 0;
    for (range, counted) in entities {
        if range.start < last {
            continue;
        }
        countable.push_str(&text[last..range.start]);
        countable.push_str(&counted);
        last = range.end;
    }
    countable.push_str(&text[last..]);
    countable.graphemes(true).take(upto).count()
}

/// The mentions `@user@domain` Mastodon finds, with their byte ranges and their `@user`; not
/// one followed by `@`, an accented letter or `://`, which Mastodon leaves as text.
fn mentions(text: &str) -> impl Iterator<Item = (Range<usize>, &str)> {
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

/// X's weighted length of `text`, counted at most up to `upto`.
fn x_weighted_length(text: &str, upto: usize) -> usize {
    let text: String = text.nfc().collect();
    let mut weight = 0;
    let mut last = 0;
    for (range, link) in counted_links(&text, &["https", "http"], true) {
        weight += x_weight(&text[last..range.start], upto - weight.min(upto));
        weight += link.counted(X_URL_WEIGHT, x_weight(&text[range.clone()], upto));
        if weight >= upto {
            return weight;
        }
        last = range.end;
    }
    weight + x_weight(&text[last..], upto - weight)
}

/// The weight of `text` without links, counted at most up to `upto`.
fn x_weight(text: &str, upto: usize) -> usize {
    let mut weight = 0;
    for g in text.graphemes(true) {
        if weight >= upto {
            break;
        }
        weight += if is_emoji(g) {
            2
        } else {
            g.chars().map(x_char_weight).sum()
        };
    }
    weight
}

fn x_char_weight(c: char) -> usize {
    match c as u32 {
        0..=4351 | 8192..=8205 | 8208..=8223 | 8242..=8247 => 1,
        _ => 2,
    }
}

fn is_emoji(grapheme: &str) -> bool {
    grapheme
        .chars()
        .any(|c| matches!(c as u32, 0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0xFE0F | 0x200D))
}

/// Whether a word (text between white space) may hold a link, a mention or a hashtag on some
/// network: a scheme, `@`, `#`, or a dot between a letter or digit and a letter (a domain).
/// Such a word is never cut: a network would read what is left of it as another link, person
/// or tag.
fn holds_entity(word: &str) -> bool {
    if word.contains("://") || word.contains(['@', '＠', '#', '＃']) {
        return true;
    }
    let chars: Vec<char> = word.chars().collect();
    chars
        .windows(3)
        .any(|w| w[0].is_alphanumeric() && w[1] == '.' && w[2].is_alphabetic())
}

/// A place a text may be cut at: a byte offset, how many graphemes come before it, and whether
/// it lies between words.
struct Cut {
    at: usize,
    grapheme: usize,
    between_words: bool,
}

/// Every grapheme boundary of `head` up to `bound` bytes but those inside a word that holds a
/// link, a mention or a hashtag.
fn cuts(head: &str, bound: usize) -> Vec<Cut> {
    let mut whole: Vec<Range<usize>> = Vec::new();
    let mut word_start = None;
    for (at, c) in head.char_indices().chain([(head.len(), ' ')]) {
        if at > bound && word_start.is_none() {
            break;
        }
        match (c.is_whitespace(), word_start) {
            (true, Some(start)) => {
                if holds_entity(&head[start..at]) {
                    whole.push(start..at);
                }
                word_start = None;
            }
            (false, None) => word_start = Some(at),
            _ => {}
        }
    }
    let mut whole = whole.into_iter().peekable();
    let boundaries = head.grapheme_indices(true).map(|(at, _)| at);
    let boundaries = boundaries.chain([head.len()]).take_while(|at| *at <= bound);
    let mut cuts = Vec::new();
    for (grapheme, at) in boundaries.enumerate() {
        while whole.next_if(|w| w.end <= at).is_some() {}
        if whole.peek().is_some_and(|w| w.start < at) {
            continue;
        }
        let between_words = at == 0
            || at == head.len()
            || head[..at].ends_with(char::is_whitespace)
            || head[at..].starts_with(char::is_whitespace);
        cuts.push(Cut {
            at,
            grapheme,
            between_words,
        });
    }
    cuts
}

/// `head` up to `at`, the `mark` saying it was cut, and the `tail`. The mark keeps a space from
/// a word holding a link or a hashtag, which would otherwise take it in.
fn joined(head: &str, at: usize, mark: &str, tail: &str) -> String {
    let kept = head[..at].trim_end();
    if kept.is_empty() {
        return format!("{mark}{tail}").trim_start().to_owned();
    }
    let last_word = kept.rsplit(char::is_whitespace).next().unwrap_or_default();
    let gap = if !mark.is_empty() && holds_entity(last_word) {
        " "
    } else {
        ""
    };
    format!("{kept}{gap}{mark}{tail}")
}

/// `text` within `fits`, cut if it must be: the last line (the link to the status page) is kept
/// whole and the text before it loses its end, marked `…`. The cut falls between words when one
/// ends near it, inside a long plain word otherwise, and never inside a word that holds a link, a
/// mention or a hashtag: such a word is left out whole when it does not fit, however long.
pub fn fit(text: &str, fits: impl Fn(&str) -> bool) -> String {
    if fits(text) {
        return text.to_owned();
    }
    let (head, tail) = match text.trim_end().rsplit_once('\n') {
        Some((head, tail)) if fits(&format!("{ELLIPSIS}\n{tail}")) => (head, format!("\n{tail}")),
        _ => (text, String::new()),
    };
    // Without room even for `…`, the text is cut without it.
    for mark in [ELLIPSIS, ""] {
        if !fits(&joined(head, 0, mark, &tail)) {
            continue;
        }
        // How much of the head can fit at most, doubling in bytes, so that a huge text is only
        // searched for a cut in its beginning.
        let mut bound = 256;
        while bound < head.len()
            && fits(&joined(head, head.floor_char_boundary(bound), mark, &tail))
        {
            bound *= 2;
        }
        let cuts = cuts(head, bound);
        let fits_at = |i: usize| fits(&joined(head, cuts[i].at, mark, &tail));
        // The most of the head that still fits (fitting only shrinks as the head grows): a
        // doubling search first, so that a huge text costs what its fitting part costs.
        let (mut lo, mut hi) = (0, 1);
        while hi < cuts.len() && fits_at(hi) {
            lo = hi;
            hi *= 2;
        }
        let mut hi = hi.min(cuts.len() - 1);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if fits_at(mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        // Back off to the end of a word if one is near, so that no word is left half.
        let best = &cuts[lo];
        let chosen = (0..=lo)
            .rev()
            .take_while(|&i| best.grapheme - cuts[i].grapheme <= BACK_OFF)
            .find(|&i| cuts[i].between_words && fits_at(i))
            .unwrap_or(lo);
        return joined(head, cuts[chosen].at, mark, &tail);
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn mastodon_counts_urls_as_23_and_mentions_without_domain() {
        let l = Limits::default();
        let url = format!("https://status.example.org/{}", "a".repeat(100));
        assert_eq!(l.length(ChannelKind::Mastodon, &url), 23);
        assert_eq!(
            l.length(ChannelKind::Mastodon, &format!("Vedi {url}.")),
            5 + 23 + 1
        );
        assert_eq!(
            l.length(ChannelKind::Mastodon, "ciao @cup@social.example"),
            9
        );
        // Graphemes, not code points: a family emoji is one, an accent is one.
        assert_eq!(l.length(ChannelKind::Mastodon, "👨‍👩‍👧 È"), 3);
        let custom = Limits {
            mastodon_url: 30,
            ..Limits::default()
        };
        assert_eq!(custom.length(ChannelKind::Mastodon, &url), 30);
    }

    #[test]
    fn bluesky_counts_graphemes_and_bytes() {
        let l = Limits::default();
        assert_eq!(l.length(ChannelKind::Bluesky, "È ok 🚨"), 6);
        assert!(l.fits(ChannelKind::Bluesky, &"é".repeat(300)));
        assert!(!l.fits(ChannelKind::Bluesky, &"é".repeat(301)));
        // 300 graphemes of 4 bytes each are 1,200 bytes: fine; 300 of 16 are not.
        assert!(!l.fits(ChannelKind::Bluesky, &"👨‍👩‍👧‍👦".repeat(300)));
    }

    #[test]
    fn x_weighs_wide_characters_emoji_and_urls() {
        let l = Limits::default();
        assert_eq!(l.length(ChannelKind::X, "Città"), 5);
        assert_eq!(l.length(ChannelKind::X, "10 €"), 5, "€ weighs 2");
        assert_eq!(l.length(ChannelKind::X, "漢字"), 4);
        assert_eq!(l.length(ChannelKind::X, "🚨"), 2);
        assert_eq!(l.length(ChannelKind::X, "👨‍👩‍👧"), 2, "one emoji sequence");
        assert_eq!(
            l.length(ChannelKind::X, "“ok”"),
            4,
            "quotes are in a weight-1 range"
        );
        let url = format!("https://example.org/{}", "x".repeat(80));
        assert_eq!(l.length(ChannelKind::X, &format!("a {url}")), 2 + 23);
        // NFC first: e + combining grave is one code point, È.
        assert_eq!(l.length(ChannelKind::X, "E\u{300}"), 1);
    }

    #[test]
    fn fit_keeps_the_last_line_and_cuts_at_a_word() {
        let l = Limits::default();
        let link = "https://status.example.org/incidents/42";
        let text = format!("{}\n\n{link}", "parola ".repeat(100));
        let out = fit(&text, |t| l.fits(ChannelKind::X, t));
        assert!(l.fits(ChannelKind::X, &out), "{out}");
        assert!(out.ends_with(&format!("…\n{link}")), "{out}");
        assert!(out.contains("parola…"), "cut at a word boundary: {out}");
        assert!(l.length(ChannelKind::X, &out) > 250, "{out}");
        let short = "breve\nhttps://x.example";
        assert_eq!(fit(short, |t| l.fits(ChannelKind::X, t)), short);
    }

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

    /// A text whose cut falls inside `word`: filler, the word, more filler, the status line.
    fn cut_inside(word: &str, filler: usize) -> String {
        format!(
            "{} {word} e poi altro ancora da dire\n\nAggiornamenti: https://banditore.asl.example/status/incidents/42",
            "parola ".repeat(filler).trim_end()
        )
    }

    #[test]
    fn a_long_link_at_the_cut_is_dropped_whole_on_bluesky() {
        let l = Limits::default();
        let link = format!(
            "https://www.regione.umbria.it/documents/{}/elenco-sportelli-cup.pdf",
            "a".repeat(60)
        );
        let text = cut_inside(&link, 20);
        let out = fit(&text, |t| l.fits(ChannelKind::Bluesky, t));
        assert!(l.fits(ChannelKind::Bluesky, &out), "{out}");
        assert!(
            !out.contains("https://www.regione"),
            "no part of the link: {out}"
        );
        assert!(
            out.ends_with(
                "parola…\nAggiornamenti: https://banditore.asl.example/status/incidents/42"
            ),
            "{out}"
        );
    }

    #[test]
    fn a_hashtag_or_a_mention_at_the_cut_is_dropped_whole() {
        let l = Limits::default();
        let tag = format!("#SanitàUmbria{}", "Sportelli".repeat(8));
        let out = fit(&cut_inside(&tag, 25), |t| l.fits(ChannelKind::X, t));
        assert!(l.fits(ChannelKind::X, &out), "{out}");
        assert!(!out.contains("#Sanit"), "{out}");
        let mention = "@protezione_civile_regione_umbria_cup_ufficio@mastodon.example";
        let out = fit(&cut_inside(mention, 60), |t| {
            l.fits(ChannelKind::Mastodon, t)
        });
        assert!(l.fits(ChannelKind::Mastodon, &out), "{out}");
        assert!(!out.contains("@protezione"), "{out}");
    }

    #[test]
    fn the_ellipsis_is_never_glued_onto_a_link_or_a_hashtag() {
        let l = Limits::default();
        // The cut falls in the long hashtag after the link: the link stays, then ` …`.
        let text = format!(
            "Vedi https://asl.it/x {}\nhttps://banditore.asl.example/status/incidents/42",
            "#y".repeat(400)
        );
        let out = fit(&text, |t| l.fits(ChannelKind::Bluesky, t));
        assert!(out.starts_with("Vedi https://asl.it/x …\n"), "{out}");
        let text = format!(
            "Vedi #CUP {}\nhttps://banditore.asl.example/s",
            "@y".repeat(400)
        );
        let out = fit(&text, |t| l.fits(ChannelKind::X, t));
        assert!(out.starts_with("Vedi #CUP …\n"), "{out}");
    }

    #[test]
    fn a_word_longer_than_the_limit_still_gives_a_post() {
        let l = Limits::default();
        for channel in [ChannelKind::Mastodon, ChannelKind::Bluesky, ChannelKind::X] {
            let plain = format!(
                "{}\nhttps://banditore.asl.example/status/incidents/42",
                "è".repeat(10_000)
            );
            let out = fit(&plain, |t| l.fits(channel, t));
            assert!(l.fits(channel, &out), "{channel}: {out}");
            assert!(
                out.starts_with("èèè") && out.contains("è…\n"),
                "{channel}: {out}"
            );
            let tag = format!("#{}", "è".repeat(10_000));
            let out = fit(&tag, |t| l.fits(channel, t));
            assert_eq!(out, "…", "{channel}");
        }
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

    /// The links, mentions and hashtags in `text`, as any network reads them.
    fn entities(text: &str) -> Vec<&str> {
        let mastodon = ["https", "http", "gemini"];
        let mut found: Vec<&str> = urls(text).map(|(_, url)| url).collect();
        found.extend(tags(text).into_iter().map(|(range, _)| &text[range]));
        let links = counted_links(text, &mastodon, false)
            .into_iter()
            .chain(counted_links(text, &["https", "http"], true));
        found.extend(links.map(|(range, _)| &text[range]));
        found.extend(mentions(text).map(|(range, _)| &text[range]));
        found
    }

    proptest! {
        #[test]
        fn fitted_posts_fit_and_keep_every_link_mention_and_hashtag_whole(
            body in crate::hostile::text()
        ) {
            let l = Limits::default();
            let status = "Aggiornamenti: https://banditore.asl.example/status/incidents/42";
            let text = format!("{}\n\n{status}", clean(&body).trim());
            let words: Vec<&str> = text.split_whitespace().collect();
            let found = entities(&text);
            for channel in ChannelKind::SOCIAL {
                let out = fit(&text, |t| l.fits(channel, t));
                prop_assert!(l.fits(channel, &out), "{channel}: {out}");
                prop_assert!(out.ends_with(&format!("\n{status}")), "{channel}: {out}");
                for word in out.split_whitespace().filter(|w| holds_entity(w)) {
                    prop_assert!(words.contains(&word), "{channel}: {word:?} is cut");
                }
                for entity in entities(&out) {
                    prop_assert!(found.contains(&entity), "{channel}: {entity:?} is not in {text:?}");
                }
            }
        }
    }
}
