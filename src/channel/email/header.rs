//! Header text that every SMTP server takes, whatever a monitor or an operator wrote.
//!
//! RFC 5322 allows 998 bytes a line and forbids CR and LF outside folding; lettre folds a header
//! only at spaces, so a 1,200-byte URL in a subject made a line the server refused. Here a value
//! first loses its control characters (a CR/LF would be a header injection), then is written
//! either as it is (printable ASCII whose words all fit on a line: lettre folds it at spaces) or
//! as RFC 2047 encoded words short enough that every folded line stays under 78 characters.

use base64::Engine;
use lettre::message::header::{HeaderName, HeaderValue};

/// Words longer than this are not left to lettre's folding, which never splits a word.
const LONGEST_PLAIN_WORD: usize = 60;
/// Bytes of text per encoded word: 39 bytes are 52 base64 characters, 64 with `=?utf-8?b?…?=`,
/// so `Subject: ` and the first word stay under 78 characters.
const ENCODED_CHUNK: usize = 39;

/// The text with every control character (C0, DEL, C1, the line and paragraph separators)
/// turned into a space, runs of white space made one, and the ends trimmed.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            ' '
        } else {
            c
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
    }
    out.truncate(out.trim_end().len());
    out
}

/// A body as every server takes it: line breaks of any kind (CR LF, a lone CR, U+2028) made
/// one line feed (lettre writes them CR LF), and control characters other than tab dropped,
/// since a bare CR or a NUL is refused by careful servers and mangled by others.
pub fn body(text: &str) -> String {
    // Most bodies need nothing: checked byte by byte, copied whole (a fan-out builds one per
    // recipient).
    if !needs_cleaning(text) {
        return text.to_owned();
    }
    cleaned(text)
}

/// [`body`], character by character.
fn cleaned(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    text.chars()
        .filter_map(|c| match c {
            '\r' | '\u{2028}' | '\u{2029}' | '\u{85}' => Some('\n'),
            '\n' | '\t' => Some(c),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

/// Whether `text` holds a character [`body`] changes: a control character other than line feed
/// and tab (C0, DEL, and C1 — U+0080 to U+009F, NEL among them), or a line or paragraph
/// separator (U+2028, U+2029).
fn needs_cleaning(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| match b {
        b'\n' | b'\t' => false,
        0..=0x1f | 0x7f => true,
        // U+0080..U+009F are C2 80..C2 9F in UTF-8.
        0xc2 => matches!(bytes.get(i + 1), Some(0x80..=0x9f)),
        // U+2028 and U+2029 are E2 80 A8 and E2 80 A9.
        0xe2 => bytes.get(i + 1) == Some(&0x80) && matches!(bytes.get(i + 2), Some(0xa8 | 0xa9)),
        _ => false,
    })
}

/// Longest display name kept in `To:`: the name is a courtesy, the line must stay short.
const DISPLAY_NAME_CHARS: usize = 60;

/// A recipient's name for `To:`, cleaned and cut to a length lettre writes on one short line.
pub fn display_name(name: &str) -> String {
    let name = clean(name);
    if name.chars().count() <= DISPLAY_NAME_CHARS {
        return name;
    }
    let cut: String = name.chars().take(DISPLAY_NAME_CHARS - 1).collect();
    format!("{}…", cut.trim_end())
}

/// An unstructured header (`Subject`) holding `text`, cleaned and encoded so that any value
/// gives lines a server accepts.
pub fn unstructured(name: &'static str, text: &str) -> HeaderValue {
    let text = clean(text);
    let name = HeaderName::new_from_ascii_str(name);
    let plain = text.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        && text
            .split(' ')
            .all(|word| word.len() <= LONGEST_PLAIN_WORD)
        // Something that merely looks like an encoded word would be decoded by readers.
        && !text.contains("=?");
    if plain {
        return HeaderValue::new(name, text);
    }
    let encoded = encoded_words(&text);
    HeaderValue::dangerous_new_pre_encoded(name, text, encoded)
}

/// `text` as RFC 2047 `B` encoded words of whole characters, folded one to a line. Readers join
/// adjacent encoded words without the folding white space, so the text reads back unchanged.
fn encoded_words(text: &str) -> String {
    let mut words = Vec::new();
    let mut start = 0;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        if i + c.len_utf8() - start > ENCODED_CHUNK && end > start {
            words.push(&text[start..end]);
            start = end;
        }
        end = i + c.len_utf8();
    }
    if end > start {
        words.push(&text[start..end]);
    }
    words
        .iter()
        .map(|w| {
            format!(
                "=?utf-8?b?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w)
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The byte check lets through exactly the texts cleaning would leave as they are.
        #[test]
        fn the_quick_check_agrees_with_cleaning(text in "(\\PC|\\pC|\r\n|\u{2028}|\u{85}){0,40}") {
            proptest::prop_assert_eq!(super::body(&text), super::cleaned(&text));
            proptest::prop_assert_eq!(!super::needs_cleaning(&text), super::cleaned(&text) == text);
        }
    }

    #[test]
    fn control_characters_become_single_spaces() {
        assert_eq!(clean("Evil\r\nBcc: x@y"), "Evil Bcc: x@y");
        assert_eq!(clean("  a\t\u{0}b\u{2028}c\u{85} "), "a b c");
        assert_eq!(clean("\r\n"), "");
    }

    #[test]
    fn a_long_word_is_encoded_in_short_lines() {
        let url = format!("https://cup.example/{}", "a".repeat(1_200));
        let header = unstructured("Subject", &format!("[Disservizio] {url}"));
        let mut headers = lettre::message::header::Headers::new();
        headers.insert_raw(header);
        let written = headers.to_string();
        for line in written.split("\r\n") {
            assert!(line.len() <= 78, "{} bytes: {line}", line.len());
        }
    }
}
