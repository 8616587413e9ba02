//! Telegram's HTML: what needs escaping, how long a message is as Telegram counts it, and how to
//! shorten one without breaking its markup.
//!
//! Telegram's HTML parse mode knows a handful of tags and only the entities `&lt; &gt; &amp;
//! &quot;` and numeric ones; its 4,096-character limit applies to the text after tags and
//! entities are parsed, counted in UTF-16 code units.

/// Telegram's limit for one message.
pub const MAX_LEN: usize = 4096;

/// A Telegram HTML text without its tags and entities, for a plain-text email of the same notice.
pub fn plain(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// Escapes text for Telegram HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// A piece of Telegram HTML.
enum Token<'a> {
    /// `<b>`, `</b>`, `<a href="…">`: no visible length.
    Tag {
        raw: &'a str,
        name: &'a str,
        closing: bool,
    },
    /// Text or an entity, with its visible length.
    Text { raw: &'a str, units: usize },
}

fn tokens(html: &str) -> impl Iterator<Item = Token<'_>> {
    let mut rest = html;
    std::iter::from_fn(move || {
        let c = rest.chars().next()?;
        let (raw, token) = match c {
            '<' if rest.contains('>') => {
                let end = rest.find('>').map_or(rest.len(), |i| i + 1);
                let raw = &rest[..end];
                let inner = raw.trim_start_matches('<').trim_end_matches('>');
                let closing = inner.starts_with('/');
                let inner = inner.trim_start_matches('/');
                let name_end = inner
                    .find(|c: char| c.is_whitespace() || c == '/')
                    .unwrap_or(inner.len());
                let name = &inner[..name_end];
                (raw, Token::Tag { raw, name, closing })
            }
            '&' => {
                let end = rest[1..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
                    .map(|i| i + 1)
                    .filter(|&i| rest[i..].starts_with(';'))
                    .map_or(1, |i| i + 1);
                let raw = &rest[..end];
                let units = if end > 1 { entity_units(raw) } else { 1 };
                (raw, Token::Text { raw, units })
            }
            c => {
                let raw = &rest[..c.len_utf8()];
                (
                    raw,
                    Token::Text {
                        raw,
                        units: c.len_utf16(),
                    },
                )
            }
        };
        rest = &rest[raw.len()..];
        Some(token)
    })
}

/// UTF-16 units of what an entity stands for (an emoji written `&#128680;` counts two).
fn entity_units(entity: &str) -> usize {
    let body = entity.trim_start_matches('&').trim_end_matches(';');
    let code = if let Some(hex) = body.strip_prefix("#x").or_else(|| body.strip_prefix("#X")) {
        u32::from_str_radix(hex, 16).ok()
    } else if let Some(dec) = body.strip_prefix('#') {
        dec.parse().ok()
    } else {
        None
    };
    code.and_then(char::from_u32).map_or(1, char::len_utf16)
}

/// The length Telegram checks: visible text, in UTF-16 code units.
pub fn visible_len(html: &str) -> usize {
    tokens(html)
        .map(|t| match t {
            Token::Tag { .. } => 0,
            Token::Text { units, .. } => units,
        })
        .sum()
}

/// Cuts `html` to at most `max` visible units, ending with "…" and closing the tags left open.
pub fn truncate(html: &str, max: usize) -> String {
    if visible_len(html) <= max {
        return html.to_owned();
    }
    let budget = max.saturating_sub(1);
    let mut out = String::with_capacity(html.len().min(max * 4));
    let mut open: Vec<&str> = Vec::new();
    let mut used = 0;
    for token in tokens(html) {
        match token {
            Token::Tag { raw, name, closing } => {
                if closing {
                    if let Some(pos) = open.iter().rposition(|n| *n == name) {
                        open.truncate(pos);
                    }
                } else {
                    open.push(name);
                }
                out.push_str(raw);
            }
            Token::Text { raw, units } => {
                if used + units > budget {
                    break;
                }
                used += units;
                out.push_str(raw);
            }
        }
    }
    out.push('…');
    for name in open.iter().rev() {
        out.push_str("</");
        out.push_str(name);
        out.push('>');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_lose_their_markup_in_email() {
        assert_eq!(plain("<b>CUP &lt;x&gt;</b> &amp; co"), "CUP <x> & co");
    }

    #[test]
    fn escapes_only_what_telegram_reads_as_markup() {
        assert_eq!(
            escape(r#"a<b & "c" 'd' /e 🚨"#),
            "a&lt;b &amp; &quot;c&quot; 'd' /e 🚨"
        );
    }

    #[test]
    fn counts_visible_utf16_units() {
        assert_eq!(visible_len("<b>Giù</b> &amp; <a href=\"x\">qui</a>"), 9);
        assert_eq!(visible_len("🚨"), 2);
        assert_eq!(visible_len("&#128680;&lt;"), 3);
        assert_eq!(visible_len("a & b"), 5);
    }

    #[test]
    fn truncation_keeps_markup_balanced() {
        let html = "<b>CUP</b> <i>non &amp; risponde</i>";
        let cut = truncate(html, 9);
        assert_eq!(cut, "<b>CUP</b> <i>non …</i>");
        assert_eq!(visible_len(&cut), 9);
        assert_eq!(truncate(html, 100), html);
        let long = format!("<b>{}</b>", "x".repeat(5000));
        let cut = truncate(&long, MAX_LEN);
        assert_eq!(visible_len(&cut), MAX_LEN);
        assert!(cut.ends_with("…</b>"));
    }
}
