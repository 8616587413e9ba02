//! Text as a stranger could write it, for property tests: arbitrary Unicode with the characters
//! that break protocols over-represented (controls, NUL, CR/LF, separators, noncharacters, bidi
//! marks, combining marks, emoji, markup), words of thousands of characters, links and hashtags,
//! and empty strings. Every field a monitor, an operator or a citizen controls is tested with it.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};

/// Characters that protocols treat specially.
const AWKWARD: &[char] = &[
    '\0', '\r', '\n', '\t', '\u{b}', '\u{c}', '\u{1b}', '\u{7f}', '\u{85}', '\u{a0}', '\u{2028}',
    '\u{2029}', '\u{fffe}', '\u{ffff}', '\u{feff}', '\u{200b}', '\u{200d}', '\u{200f}', '\u{202e}',
    '\u{301}', '\u{fe0f}', '🚨', '👩', '🇮', '🇹', 'è', 'à', '€', 'ß', '中', 'я', '<', '>', '&', '"',
    '\'', '#', '@', '=', '?', '_', '*', '`', '[', ']', '{', '}', '%', '+', '\\', '/', ':', '.',
    ' ',
];

/// One character: any at all, or one of the awkward ones.
pub fn character() -> impl Strategy<Value = char> {
    prop_oneof![2 => any::<char>(), 3 => select(AWKWARD), 3 => proptest::char::range('a', 'z')]
}

/// One word: short, huge (1,000 to 10,000 characters), a link (to a known top-level domain or
/// not, with or without its scheme, inside a sentence's punctuation), a hashtag (any letters,
/// longer than Bluesky takes, with trailing punctuation) or a mention.
pub fn word() -> impl Strategy<Value = String> {
    let around = select(&["", ".", ",", ")", "!?", "…", ":"][..]);
    prop_oneof![
        16 => vec(character(), 0..12).prop_map(String::from_iter),
        1 => (1_000usize..10_000, character())
            .prop_map(|(n, c)| std::iter::repeat_n(c, n).collect()),
        1 => (1_000usize..4_000).prop_map(|n| format!("https://asl.example/{}", "x".repeat(n))),
        3 => "[a-z0-9./_-]{1,60}".prop_map(|p| format!("https://asl.example/{p}")),
        3 => (
            any::<bool>(),
            "(www\\.)?[a-z]{1,12}\\.(it|eu|org)",
            "(/[a-zA-Z0-9/._()?=&#àè-]{0,80})?",
            around.clone(),
        )
            .prop_map(|(scheme, host, path, end)| {
                format!("{}{host}{path}{end}", if scheme { "https://" } else { "" })
            }),
        1 => (40usize..400).prop_map(|n| format!("https://www.regione.umbria.it/{}", "x".repeat(n))),
        2 => "[A-Za-zàèìòù0-9_]{1,30}".prop_map(|t| format!("#{t}")),
        2 => ("[#＃]", "[\\p{L}\\p{N}_-]{1,80}", around)
            .prop_map(|(hash, tag, end)| format!("{hash}{tag}{end}")),
        1 => "[a-z0-9_]{1,20}".prop_map(|u| format!("@{u}@mastodon.example")),
        1 => "[a-z0-9_.]{1,50}@[a-z]{1,10}\\.(it|social)".prop_map(|u| format!("@{u}")),
    ]
}

/// A text of words joined by spaces, line breaks or nothing; sometimes empty.
pub fn text() -> impl Strategy<Value = String> {
    vec(
        (word(), select(&[" ", " ", " ", "\n", "\r\n", "", "\t"][..])),
        0..24,
    )
    .prop_map(|parts| {
        parts
            .into_iter()
            .map(|(word, gap)| word + gap)
            .collect::<String>()
    })
}

/// A phone number as people write it, or nearly: `+`, `00`, a country code, a mobile's or a
/// landline's first digit or nothing, then digits broken by spaces, dots, dashes, slashes or
/// parentheses, with now and then a character from anywhere.
pub fn phone_number() -> impl Strategy<Value = String> {
    let start = select(
        &[
            "", "3", "3", "3", "39", "+39 3", "0039 3", "+39 0", "0", "+44 7", "+1 ", "+", "00",
        ][..],
    );
    let breaks = vec(
        (
            any::<Index>(),
            select(&[' ', ' ', '.', '-', '/', '(', ')'][..]),
        ),
        0..4,
    );
    let odd = prop_oneof![8 => Just(None), 1 => character().prop_map(Some)];
    (start, "[0-9]{5,11}", breaks, odd, any::<Index>()).prop_map(
        |(start, digits, breaks, odd, at)| {
            let mut written: Vec<char> = digits.chars().collect();
            for (i, gap) in breaks {
                written.insert(i.index(written.len() + 1), gap);
            }
            if let Some(c) = odd {
                written.insert(at.index(written.len() + 1), c);
            }
            start.chars().chain(written).collect()
        },
    )
}
