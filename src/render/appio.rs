//! App IO's limits on a message, and the text fitted to them for every input. PagoPA's API
//! (`MessageContentBase` in io-functions-services' OpenAPI) takes a `subject` of 10 to 120
//! characters and a Markdown `markdown` body of 80 to 10,000, and answers `400` to anything
//! else. Its server is written in TypeScript, whose strings count UTF-16 units, while the
//! specification's JSON Schema counts characters: a text is fitted so that both readings hold
//! (at least the minimum in characters, at most the maximum in UTF-16 units). A text too short
//! is completed with the standard closing words of its language, one too long is cut at a word
//! with an ellipsis; control characters are dropped (Markdown keeps its line breaks, a subject is
//! one line). Monitors' and operators' words are escaped where a template writes them
//! (`| markdown`), so that a title cannot become a heading or a link.

pub const SUBJECT_MIN: usize = 10;
pub const SUBJECT_MAX: usize = 120;
pub const MARKDOWN_MIN: usize = 80;
pub const MARKDOWN_MAX: usize = 10_000;

/// Whether `text` is within `min..=max` as both App IO's server and its specification count.
pub fn within(text: &str, min: usize, max: usize) -> bool {
    text.chars().count() >= min && text.encode_utf16().count() <= max
}

/// What completes a subject too short, by template language (Italian when unknown).
fn subject_filler(language: &str) -> &'static str {
    match language {
        "en" => "Service notice",
        _ => "Avviso di servizio",
    }
}

/// The standard closing text, which completes a body too short; longer than the minimum alone.
pub fn closing(language: &str) -> &'static str {
    match language {
        "en" => {
            "You receive this message because you follow service disruption notices in the IO app. You can turn them off on the service's page in the app."
        }
        _ => {
            "Ricevi questo messaggio perché segui gli avvisi sui disservizi nell'app IO. Puoi disattivarli dalla pagina del servizio nell'app."
        }
    }
}

/// A subject App IO takes: one line, at least 10 characters, at most 120 UTF-16 units.
pub fn fit_subject(subject: &str, language: &str) -> String {
    let line = subject
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let line = if line.chars().count() < SUBJECT_MIN {
        let filler = subject_filler(language);
        if line.is_empty() {
            filler.to_owned()
        } else {
            format!("{line} · {filler}")
        }
    } else {
        line
    };
    cut(&line, SUBJECT_MAX)
}

/// A Markdown body App IO takes: without control characters but line breaks, at least 80
/// characters (completed with [`closing`]), at most 10,000 UTF-16 units. A body too long keeps
/// its last line whole (the templates' footer, with the link to the status page) and is cut at
/// a word before it, never inside a `**…**` nor after a lone `\`.
pub fn fit_markdown(text: &str, language: &str) -> String {
    let clean: String = text
        .replace("\r\n", "\n")
        .chars()
        .map(|c| if c == '\t' { ' ' } else { c })
        .filter(|&c| c == '\n' || !c.is_control())
        .collect();
    let clean = clean.trim().to_owned();
    let body = if clean.chars().count() < MARKDOWN_MIN {
        if clean.is_empty() {
            closing(language).to_owned()
        } else {
            format!("{clean}\n\n{}", closing(language))
        }
    } else {
        clean
    };
    if body.encode_utf16().count() <= MARKDOWN_MAX {
        return body;
    }
    match footer(&body) {
        Some((head, foot)) => {
            let room = MARKDOWN_MAX - foot.encode_utf16().count() - 2;
            format!("{}\n\n{foot}", cut_markdown(head, room))
        }
        None => cut_markdown(&body, MARKDOWN_MAX),
    }
}

/// The longest last line kept whole as a footer.
const FOOTER_MAX: usize = 1_000;

/// The body before its last line, and that line, when it is a footer worth keeping: not empty,
/// at most [`FOOTER_MAX`] UTF-16 units, with a body before it.
fn footer(body: &str) -> Option<(&str, &str)> {
    let at = body.rfind('\n')?;
    let (head, foot) = (body[..at].trim_end(), body[at + 1..].trim());
    (!head.is_empty() && !foot.is_empty() && foot.encode_utf16().count() <= FOOTER_MAX)
        .then_some((head, foot))
}

/// [`cut`] for Markdown: the cut never ends on a `\` (which would escape the ellipsis) nor on
/// a stray `*`, and a `**` it leaves open is closed after the ellipsis. A text made of little
/// but those is cut as plain text.
fn cut_markdown(text: &str, max: usize) -> String {
    if text.encode_utf16().count() <= max {
        return text.to_owned();
    }
    let open = |head: &str| head.matches("**").count() % 2 == 1;
    // Room for the ellipsis, and for a closing `**` when one is needed.
    let mut head = markdown_head(text, max - 1);
    if open(head) {
        head = markdown_head(text, max - 3);
    }
    let close = if open(head) { "**" } else { "" };
    let fitted = format!("{head}…{close}");
    if fitted.chars().count() < MARKDOWN_MIN {
        return cut(text, max);
    }
    fitted
}

/// [`cut_head`] without what would end it badly before an ellipsis: a `\` or a `*`.
fn markdown_head(text: &str, room: usize) -> &str {
    let mut head = cut_head(text, room);
    loop {
        let trimmed = head.trim_end().trim_end_matches(['\\', '*']);
        if trimmed.len() == head.len() {
            return head;
        }
        head = trimmed;
    }
}

/// `text` within `max` UTF-16 units: whole when it fits, else cut at the last space (or line
/// break) in its second half, or inside a word when it has none there, with `…` appended.
fn cut(text: &str, max: usize) -> String {
    if text.encode_utf16().count() <= max {
        return text.to_owned();
    }
    // Room for the ellipsis, one unit.
    format!("{}…", cut_head(text, max - 1).trim_end())
}

/// The start of `text` within `room` UTF-16 units, ending at the last space (or line break) in
/// its second half, or inside a word when it has none there.
fn cut_head(text: &str, room: usize) -> &str {
    let mut end = 0;
    let mut units = 0;
    for (i, c) in text.char_indices() {
        if units + c.len_utf16() > room {
            break;
        }
        units += c.len_utf16();
        end = i + c.len_utf8();
    }
    let head = &text[..end];
    head.rfind(char::is_whitespace)
        .filter(|&at| head[..at].encode_utf16().count() >= room / 2)
        .map_or(head, |at| &head[..at])
}

/// Escapes what Markdown would read as formatting in a monitor's or an operator's words, for the
/// `markdown` filter of App IO's templates.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '!' | '#' | '|' | '<' | '>' | '~'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn closings_alone_are_long_enough() {
        for language in ["it", "en", "de"] {
            assert!(within(closing(language), MARKDOWN_MIN, MARKDOWN_MAX));
            assert!(within(subject_filler(language), SUBJECT_MIN, SUBJECT_MAX));
        }
    }

    #[test]
    fn texts_at_their_edges() {
        let nine = "a".repeat(9);
        assert_eq!(
            fit_subject(&nine, "it"),
            format!("{nine} · Avviso di servizio")
        );
        let ten = "a".repeat(10);
        assert_eq!(fit_subject(&ten, "it"), ten);
        let words = "parola ".repeat(20);
        let fitted = fit_subject(&words, "en");
        assert!(fitted.ends_with("parola…"), "{fitted}");
        assert!(fitted.chars().count() <= SUBJECT_MAX);
        let exact = "b".repeat(120);
        assert_eq!(fit_subject(&exact, "it"), exact);
        let over = "b".repeat(121);
        assert_eq!(fit_subject(&over, "it").encode_utf16().count(), 120);
        let short = "c".repeat(79);
        assert!(fit_markdown(&short, "it").ends_with(closing("it")));
        let enough = "c".repeat(80);
        assert_eq!(fit_markdown(&enough, "it"), enough);
        let most = "d".repeat(10_000);
        assert_eq!(fit_markdown(&most, "it"), most);
        let too_much = "d".repeat(10_001);
        assert_eq!(fit_markdown(&too_much, "it").encode_utf16().count(), 10_000);
    }

    #[test]
    fn emoji_count_twice_toward_the_maximum() {
        let faces = "😀".repeat(70);
        let fitted = fit_subject(&faces, "it");
        assert!(fitted.encode_utf16().count() <= SUBJECT_MAX, "{fitted}");
        assert!(fitted.chars().count() >= SUBJECT_MIN);
    }

    #[test]
    fn escaped_words_are_no_markdown() {
        assert_eq!(
            escape("# [x](y) *z* ![i](u)"),
            "\\# \\[x\\]\\(y\\) \\*z\\* \\!\\[i\\]\\(u\\)"
        );
    }

    #[test]
    fn a_cut_leaves_no_bold_open_nor_a_lone_backslash() {
        let bold = format!("{} **{}**", "a ".repeat(4990), "b ".repeat(30));
        let fitted = fit_markdown(&bold, "it");
        assert!(fitted.ends_with("b…**"), "{}", &fitted[9_900..]);
        assert_eq!(fitted.encode_utf16().count(), MARKDOWN_MAX - 1);
        let slashes = format!("{}\\\\\\{}", "c".repeat(9_998), "d".repeat(10));
        let fitted = fit_markdown(&slashes, "it");
        assert!(!fitted.trim_end_matches('…').ends_with('\\'), "{fitted}");
    }

    proptest! {
        /// Whatever comes before it, the footer with the status page's link survives the cut,
        /// and the cut leaves no `**` open nor a `\` before the ellipsis.
        #[test]
        fn the_link_survives_any_long_body(
            body in prop_oneof!["(\\PC{1,30}|\\*\\*|\\\\| |\n){0,3000}", ".{9000,12000}"],
            word in "\\PC{0,300}",
            lang in "(it|en)",
        ) {
            let link = "Aggiornamenti sulla pagina di stato: https://stato.asl.example/incidents/42";
            let text = format!("## Disservizio\n\n{body}{word}\n\n{link}\n");
            let fitted = fit_markdown(&text, &lang);
            prop_assert!(within(&fitted, MARKDOWN_MIN, MARKDOWN_MAX));
            let tail: String = fitted.chars().rev().take(200).collect::<Vec<_>>().into_iter().rev().collect();
            prop_assert!(fitted.ends_with(link), "{:?}", tail);
            // Longer than App IO takes once control characters are dropped (the final line
            // break is trimmed): it was cut.
            let clean: usize = text
                .chars()
                .filter(|&c| c == '\n' || c == '\t' || !c.is_control())
                .map(char::len_utf16)
                .sum();
            if clean > MARKDOWN_MAX + 1 {
                let head = fitted[..fitted.len() - link.len()].trim_end();
                let head = head.strip_suffix("**").unwrap_or(head);
                prop_assert!(head.ends_with('…'), "{:?}", head);
                let before = head.trim_end_matches('…');
                prop_assert!(!before.ends_with('\\') && !before.ends_with('*'));
                prop_assert_eq!(fitted[..fitted.len() - link.len()].matches("**").count() % 2, 0);
            }
        }

        #[test]
        fn every_text_fits(text in any::<String>(), words in "( |\\PC{1,30}|\n){0,600}", lang in "(it|en|xx)") {
            for input in [text.as_str(), words.as_str()] {
                let subject = fit_subject(input, &lang);
                prop_assert!(within(&subject, SUBJECT_MIN, SUBJECT_MAX), "{subject:?}");
                prop_assert!(!subject.chars().any(char::is_control));
                let body = fit_markdown(input, &lang);
                prop_assert!(within(&body, MARKDOWN_MIN, MARKDOWN_MAX));
                prop_assert!(!body.chars().any(|c| c.is_control() && c != '\n'));
                prop_assert_eq!(fit_markdown(&body, &lang), body.clone(), "fitting twice changes nothing");
            }
        }

        #[test]
        fn huge_texts_fit(word in "\\PC{1,20}", n in 1usize..3000) {
            let long = word.repeat(n);
            let body = fit_markdown(&long, "it");
            prop_assert!(within(&body, MARKDOWN_MIN, MARKDOWN_MAX));
            let subject = fit_subject(&long, "it");
            prop_assert!(within(&subject, SUBJECT_MIN, SUBJECT_MAX));
        }
    }
}
