//! What people may write in a field that later travels in a mail header, a feed or a page. A
//! one-line field (a name, a title) holds no control character, line or paragraph separator or
//! noncharacter: a line break ends a mail header, and XML cannot carry most controls or
//! U+FFFE/U+FFFF. A body may break lines and hold tabs, nothing else of the kind. Such text is
//! refused where it is written, with its field named, rather than failing when it is sent.

use std::fmt;

/// A character a field cannot hold, and where it is (counted in characters, from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("contains {} at character {at}: {}", Described(*.character), if *.lines {
    "text may break lines and hold tabs, but no other control character or noncharacter"
} else {
    "write it on one line, without control characters or noncharacters"
})]
pub struct Unwritable {
    pub character: char,
    pub at: usize,
    lines: bool,
}

/// The longest public title: CAP's `headline`, which the standard would keep within 160
/// characters, as the status page, the feeds and the alerts show it.
pub const PUBLIC_TITLE_CHARS: usize = 160;

/// The first line of `text` that says something, cut to [`PUBLIC_TITLE_CHARS`]: a headline for
/// text that has no title of its own.
pub fn headline(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if line.chars().count() <= PUBLIC_TITLE_CHARS {
        line.to_owned()
    } else {
        let cut: String = line.chars().take(PUBLIC_TITLE_CHARS - 1).collect();
        format!("{cut}…")
    }
}

/// Checks a one-line field: a name, a title, anything a mail header or a feed's title carries.
pub fn one_line(text: &str) -> Result<(), Unwritable> {
    first_unwritable(text, false)
}

/// Checks a body, where line breaks and tabs are text.
pub fn lines(text: &str) -> Result<(), Unwritable> {
    first_unwritable(text, true)
}

fn first_unwritable(text: &str, lines: bool) -> Result<(), Unwritable> {
    let breaks_lines = |c: char| matches!(c, '\t' | '\n' | '\r' | '\u{2028}' | '\u{2029}');
    match text.chars().enumerate().find(|&(_, c)| {
        let refused = c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') || noncharacter(c);
        refused && !(lines && breaks_lines(c))
    }) {
        Some((i, character)) => Err(Unwritable {
            character,
            at: i + 1,
            lines,
        }),
        None => Ok(()),
    }
}

/// The 66 code points Unicode keeps out of interchange: U+FDD0 to U+FDEF, and the last two of
/// every plane.
fn noncharacter(c: char) -> bool {
    let n = u32::from(c);
    (0xfdd0..=0xfdef).contains(&n) || n & 0xfffe == 0xfffe
}

/// A character named so that a message can show it without printing it: `e` (U+0065), a line
/// break (U+000D), a control character (U+001B), a noncharacter (U+FFFE).
pub struct Described(pub char);

impl fmt::Display for Described {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        let code = u32::from(c);
        match c {
            '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' => {
                write!(f, "a line break (U+{code:04X})")
            }
            c if c.is_control() => write!(f, "a control character (U+{code:04X})"),
            c if noncharacter(c) => write!(f, "a noncharacter (U+{code:04X})"),
            c if c.is_whitespace() => write!(f, "a space (U+{code:04X})"),
            c => write!(f, "`{c}` (U+{code:04X})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::hostile;

    #[test]
    fn a_headline_is_the_first_line_that_says_something_cut_short() {
        assert_eq!(headline("\n  CUP giù\nresto"), "CUP giù");
        let long = headline(&"x".repeat(200));
        assert_eq!(long.chars().count(), PUBLIC_TITLE_CHARS);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn a_line_refuses_what_a_body_keeps() {
        for text in ["a\nb", "a\r\nb", "a\tb", "a\u{2028}b"] {
            assert!(one_line(text).is_err(), "{text:?}");
            assert_eq!(lines(text), Ok(()), "{text:?}");
        }
        for text in [
            "a\0b",
            "a\u{1b}b",
            "a\u{7f}b",
            "a\u{85}b",
            "a\u{fffe}",
            "a\u{10ffff}",
        ] {
            assert!(one_line(text).is_err(), "{text:?}");
            assert!(lines(text).is_err(), "{text:?}");
        }
        for text in [
            "",
            "Città di Castello",
            "مكتب",
            "🚨 CUP",
            "a\u{200f}b",
            "«x» – y",
        ] {
            assert_eq!(one_line(text), Ok(()), "{text:?}");
        }
    }

    #[test]
    fn the_refusal_names_the_character_and_where_it_is() {
        let refused = one_line("Evil\r\nBcc: x@y").unwrap_err();
        assert_eq!(refused.at, 5);
        assert_eq!(
            refused.to_string(),
            "contains a line break (U+000D) at character 5: write it on one line, without control characters or noncharacters"
        );
        assert!(
            lines("a\u{fdd0}")
                .unwrap_err()
                .to_string()
                .contains("a noncharacter (U+FDD0) at character 2")
        );
    }

    proptest! {
        #[test]
        fn a_refusal_points_at_a_character_of_the_text(text in hostile::text()) {
            for check in [one_line, lines] {
                if let Err(refused) = check(&text) {
                    prop_assert_eq!(text.chars().nth(refused.at - 1), Some(refused.character));
                    prop_assert!(!refused.to_string().contains(refused.character));
                }
            }
        }
    }
}
