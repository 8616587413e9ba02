//! A template's body parameters as WhatsApp takes them. Meta refuses a text parameter holding a
//! line break or a tab or more than four spaces in a row ("Param text cannot have new-line/tab
//! characters or more than 4 consecutive spaces"), an empty one (131008, a required parameter
//! missing), and a body longer than 1024 characters once filled in (132005). So every value is
//! one line of words, never empty, and the values together fit in what the approved body's own
//! words leave of the 1024: the incident's text is cut first, then the services, the title and
//! the name; the links last, as a link cut short leads nowhere.

/// What stands for an empty value: WhatsApp takes no empty parameter.
pub const EMPTY: &str = "-";

/// The parts rendered from `templates/whatsapp/<lang>/`, read back from the message's text
/// (`title: …`, `services: …`, `text: …`, one a line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parts {
    pub title: String,
    pub services: String,
    pub text: String,
}

impl Parts {
    /// The rendered parts of an incident's message; a text written otherwise (a notice to the
    /// operators) becomes the title (its subject or first line) and the text (all of it).
    pub fn read(text: &str, subject: Option<&str>) -> Parts {
        let mut parts = Parts::default();
        let mut found = false;
        for line in text.lines() {
            let field = |name: &str| {
                line.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .map(str::trim_start)
            };
            let slot = if let Some(v) = field("title") {
                Some((&mut parts.title, v))
            } else if let Some(v) = field("services") {
                Some((&mut parts.services, v))
            } else if let Some(v) = field("text") {
                Some((&mut parts.text, v))
            } else {
                None
            };
            match slot {
                Some((field, value)) => {
                    found = true;
                    *field = value.to_owned();
                }
                None => {
                    found = false;
                    break;
                }
            }
        }
        if found {
            return parts;
        }
        Parts {
            title: subject
                .map(str::to_owned)
                .or_else(|| text.lines().next().map(str::to_owned))
                .unwrap_or_default(),
            services: String::new(),
            text: text.to_owned(),
        }
    }
}

/// One line of words: every run of white space or control characters one space, the two
/// non-characters left out, trimmed; [`EMPTY`] for nothing.
pub fn one_line(text: &str) -> String {
    let words: Vec<String> = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .map(|w| {
            w.chars()
                .filter(|c| !matches!(c, '\u{FFFE}' | '\u{FFFF}'))
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        EMPTY.to_owned()
    } else {
        words.join(" ")
    }
}

/// The order values are cut in when they do not fit together: the longest prose first.
const CUT_ORDER: [&str; 6] = [
    "text",
    "services",
    "title",
    "name",
    "unsubscribe_url",
    "ack_url",
];

/// `values` (a parameter's name and its value) made one line each and cut, in [`CUT_ORDER`],
/// until together they hold at most `budget` characters. Each keeps at least one character.
pub fn fit(values: &[(&str, &str)], budget: usize) -> Vec<String> {
    let mut out: Vec<String> = values.iter().map(|(_, v)| one_line(v)).collect();
    let total = |out: &[String]| out.iter().map(|v| v.chars().count()).sum::<usize>();
    for name in CUT_ORDER {
        let excess = total(&out).saturating_sub(budget);
        if excess == 0 {
            break;
        }
        for (i, (n, _)) in values.iter().enumerate() {
            if *n == name {
                let len = out[i].chars().count();
                out[i] = cut(&out[i], len.saturating_sub(excess).max(1));
            }
        }
    }
    // Names outside the order (none today) are cut last, from the end.
    let mut i = out.len();
    while total(&out) > budget && i > 0 {
        i -= 1;
        let excess = total(&out) - budget;
        let len = out[i].chars().count();
        out[i] = cut(&out[i], len.saturating_sub(excess).max(1));
    }
    out
}

/// `text` in at most `max` characters (at least one), cut after a word when one ends near the
/// limit, with "…" to say so.
pub fn cut(text: &str, max: usize) -> String {
    let max = max.max(1);
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max - 1).collect();
    let kept = match kept.rfind(' ') {
        Some(at) if kept.chars().count() - kept[..at].chars().count() <= 20 && at > 0 => {
            kept[..at].trim_end().to_owned()
        }
        _ => kept,
    };
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Meta's rules for a text parameter, as the Cloud API states them.
    fn acceptable(value: &str) -> bool {
        !value.is_empty()
            && !value.contains(['\n', '\t', '\r'])
            && !value.contains("     ")
            && value.trim() == value
    }

    #[test]
    fn parts_are_read_back_and_a_notice_becomes_title_and_text() {
        let parts = Parts::read(
            "title: Disservizio in corso: CUP\nservices: cup; gravità critico\ntext: Stato: in verifica.",
            None,
        );
        assert_eq!(parts.title, "Disservizio in corso: CUP");
        assert_eq!(parts.services, "cup; gravità critico");
        assert_eq!(parts.text, "Stato: in verifica.");
        let notice = Parts::read("⛔️ Il canale è in pausa\nriprova", Some("Il canale"));
        assert_eq!(notice.title, "Il canale");
        assert_eq!(notice.text, "⛔️ Il canale è in pausa\nriprova");
    }

    #[test]
    fn the_text_is_cut_first_and_links_stay_whole() {
        let link = "https://status.example.org/ack/12.34.abcdefghijklmnopqrstuv";
        let long = "parola ".repeat(300);
        let fitted = fit(
            &[
                ("title", "Guasto al CUP"),
                ("text", &long),
                ("ack_url", link),
            ],
            300,
        );
        assert_eq!(fitted[0], "Guasto al CUP");
        assert_eq!(fitted[2], link);
        assert!(fitted[1].ends_with('…'));
        assert!(fitted.iter().map(|v| v.chars().count()).sum::<usize>() <= 300);
    }

    proptest! {
        #[test]
        fn every_value_fits_whatsapps_rules(
            title in crate::hostile::text(),
            text in crate::hostile::text(),
            name in crate::hostile::text(),
            huge in proptest::collection::vec("[a-zA-Z]{200,400}", 0..4),
            budget in 6usize..1024,
        ) {
            let huge = huge.join("");
            let values = [
                ("title", title.as_str()),
                ("services", ""),
                ("text", &format!("{text}{huge}")),
                ("name", name.as_str()),
                ("ack_url", "https://x/ack/1.2.s"),
            ];
            let fitted = fit(&values, budget);
            prop_assert_eq!(fitted.len(), values.len());
            for v in &fitted {
                prop_assert!(acceptable(v), "{:?}", v);
            }
            prop_assert!(fitted.iter().map(|v| v.chars().count()).sum::<usize>() <= budget.max(values.len()));
        }
    }
}
