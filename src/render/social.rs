//! Lengths on the social networks, each counted the way that network counts, and cutting a post
//! to its limit while keeping its last line (the link to the status page).
//!
//! - Mastodon: grapheme clusters, every URL as `characters_reserved_per_url` (23), a mention
//!   `@user@domain` as `@user`; 500 by default, instances may change it.
//! - Bluesky: grapheme clusters, URLs in full; 300, and at most 3,000 bytes.
//! - X: weighted after NFC: URLs 23, emoji 2, code points in the Latin/Greek/Cyrillic/… ranges
//!   and some punctuation 1, everything else (CJK, `€`) 2; 280.
//! - Facebook: characters; 63,206.

use std::sync::LazyLock;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;

use crate::domain::subscriber::ChannelKind;

pub const BLUESKY_MAX_GRAPHEMES: usize = 300;
pub const BLUESKY_MAX_BYTES: usize = 3000;
pub const X_MAX_WEIGHT: usize = 280;
pub const X_URL_WEIGHT: usize = 23;
pub const FACEBOOK_MAX_CHARS: usize = 63_206;
/// The status page's text per update: a statement, not an article.
pub const STATUS_MAX_CHARS: usize = 5_000;
pub const MASTODON_DEFAULT_MAX: usize = 500;
pub const MASTODON_DEFAULT_URL: usize = 23;

/// A URL as the networks find one: a scheme, then everything up to white space, without the
/// punctuation that usually ends a sentence.
static URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"https?://[^\s<>"…]+[^\s<>".,;:!?')\]…]"#).unwrap_or_else(|_| unreachable!())
});

/// `@user@domain`: Mastodon counts only `@user`.
static MENTION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(^|[^\w/])@(\w+)@[\w.-]+\w").unwrap_or_else(|_| unreachable!()));

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
            _ => None,
        }
    }

    /// How long `text` is on `channel`, by that network's rule.
    pub fn length(&self, channel: ChannelKind, text: &str) -> usize {
        match channel {
            ChannelKind::Mastodon => mastodon_length(text, self.mastodon_url),
            ChannelKind::Bluesky => text.graphemes(true).count(),
            ChannelKind::X => x_weighted_length(text),
            _ => text.chars().count(),
        }
    }

    /// Whether `text` fits: Bluesky also bounds the bytes.
    pub fn fits(&self, channel: ChannelKind, text: &str) -> bool {
        let within = self
            .limit(channel)
            .is_none_or(|max| self.length(channel, text) <= max);
        within && (channel != ChannelKind::Bluesky || text.len() <= BLUESKY_MAX_BYTES)
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

/// The URLs in `text`, with their byte ranges.
pub fn urls(text: &str) -> impl Iterator<Item = (std::ops::Range<usize>, &str)> {
    URL.find_iter(text).map(|m| (m.range(), m.as_str()))
}

fn mastodon_length(text: &str, per_url: usize) -> usize {
    let mentions = MENTION.replace_all(text, "$1@$2");
    let mut count = 0;
    let mut last = 0;
    for (range, _) in urls(&mentions) {
        count += mentions[last..range.start].graphemes(true).count() + per_url;
        last = range.end;
    }
    count + mentions[last..].graphemes(true).count()
}

fn x_weighted_length(text: &str) -> usize {
    let text: String = text.nfc().collect();
    let mut weight = 0;
    let mut last = 0;
    for (range, _) in urls(&text) {
        weight += x_weight(&text[last..range.start]) + X_URL_WEIGHT;
        last = range.end;
    }
    weight + x_weight(&text[last..])
}

fn x_weight(text: &str) -> usize {
    text.graphemes(true)
        .map(|g| {
            if is_emoji(g) {
                2
            } else {
                g.chars().map(x_char_weight).sum()
            }
        })
        .sum()
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

/// `text` within `fits`, cut if it must be: the last line (the link to the status page) is
/// kept whole and the text before it loses its end, preferably at a word boundary, marked `…`.
pub fn fit(text: &str, fits: impl Fn(&str) -> bool) -> String {
    if fits(text) {
        return text.to_owned();
    }
    let (head, tail) = match text.trim_end().rsplit_once('\n') {
        Some((head, tail)) if fits(&format!("…\n{tail}")) => (head, format!("…\n{tail}")),
        _ => (text, "…".to_owned()),
    };
    let graphemes: Vec<&str> = head.graphemes(true).collect();
    let joined = |n: usize| {
        let mut s: String = graphemes[..n].concat();
        s.truncate(s.trim_end().len());
        s.push_str(&tail);
        s
    };
    // The most graphemes of the head that still fit (fitting only shrinks as the head grows).
    let (mut lo, mut hi) = (0, graphemes.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(&joined(mid)) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    // Back off to the last space, if one is near, so that no word (or link) is left half.
    let cut = (lo.saturating_sub(30)..lo)
        .rev()
        .find(|&i| graphemes[i].chars().all(char::is_whitespace))
        .unwrap_or(lo);
    joined(cut)
}

#[cfg(test)]
mod tests {
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
}
