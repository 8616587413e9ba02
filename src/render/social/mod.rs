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
//! our count is never refused for its length. What reads as a link, a mention or a hashtag is
//! found in `links`.

use std::ops::Range;

use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;

use crate::domain::subscriber::ChannelKind;

mod links;

use links::{counted_links, mentions};
pub use links::{tags, urls};

pub const BLUESKY_MAX_GRAPHEMES: usize = 300;
pub const BLUESKY_MAX_BYTES: usize = 3000;
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
            ChannelKind::Email
            | ChannelKind::Telegram
            | ChannelKind::Sms
            | ChannelKind::Log
            | ChannelKind::Webhook
            | ChannelKind::Voice
            | ChannelKind::AppIo
            | ChannelKind::WhatsApp => None,
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

    use super::links::{counted_links, mentions};
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
