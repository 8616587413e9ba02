//! Placeholders: the few per-recipient parts of a message (the name, the unsubscribe,
//! preferences and acknowledgement links) that rendering leaves as markers and sending fills in, escaped as the
//! channel's markup needs, so that one render serves every recipient.

use super::telegram;

/// Per-recipient values, written into the rendered text at send time.
pub struct Placeholders<'a> {
    pub recipient_name: &'a str,
    pub unsubscribe_url: &'a str,
    pub manage_url: &'a str,
    /// Empty where the message asks for no acknowledgement.
    pub ack_url: &'a str,
}

pub const RECIPIENT_NAME: &str = "@@BANDITORE_RECIPIENT_NAME@@";
pub const UNSUBSCRIBE_URL: &str = "@@BANDITORE_UNSUBSCRIBE_URL@@";
pub const MANAGE_URL: &str = "@@BANDITORE_MANAGE_URL@@";
pub const ACK_URL: &str = "@@BANDITORE_ACK_URL@@";
/// The detail of a row of an affected list (its appointment), in the messages written for
/// those lists only.
pub const DETAIL: &str = "@@BANDITORE_DETAIL@@";

/// Fills a row's `detail` into a message written for affected lists, escaped for `markup`. A
/// row without a detail gets no detail line: every line holding the placeholder is left out
/// (templates write the detail's sentence on a line of its own).
pub fn fill_detail(text: &str, detail: &str, markup: Markup) -> String {
    if !text.contains(DETAIL) {
        return text.to_owned();
    }
    if detail.is_empty() {
        return text
            .split_inclusive('\n')
            .filter(|line| !line.contains(DETAIL))
            .collect();
    }
    let escaped = match markup {
        Markup::Plain => detail.to_owned(),
        Markup::Html => minijinja::HtmlEscape(detail).to_string(),
        Markup::TelegramHtml => telegram::escape(detail),
        Markup::Markdown => super::appio::escape(detail),
    };
    text.replace(DETAIL, &escaped)
}

/// The longest a preferences link gets beyond `server.public_url`: `/manage/`, an address id and
/// a 22-character signature. Texts with a length limit keep room for it.
const MANAGE_PATH_ROOM: usize = "/manage/".len() + 19 + 1 + 22;

/// A stand-in for the preferences link, as long as the longest real one, to measure texts by.
pub(super) fn manage_url_sample(public_url: &str) -> String {
    format!("{public_url}{}", "m".repeat(MANAGE_PATH_ROOM))
}

impl Placeholders<'_> {
    /// Fills plain text.
    pub fn fill(&self, text: &str) -> String {
        fill_all(
            text,
            [
                self.recipient_name,
                self.unsubscribe_url,
                self.manage_url,
                self.ack_url,
            ],
        )
    }

    /// Fills HTML, escaping the values.
    pub fn fill_html(&self, html: &str) -> String {
        let name = minijinja::HtmlEscape(self.recipient_name).to_string();
        let url = minijinja::HtmlEscape(self.unsubscribe_url).to_string();
        let manage = minijinja::HtmlEscape(self.manage_url).to_string();
        let ack = minijinja::HtmlEscape(self.ack_url).to_string();
        fill_all(html, [&name, &url, &manage, &ack])
    }

    /// Fills a message body written in `markup`.
    pub fn fill_as(&self, body: &str, markup: Markup) -> String {
        match markup {
            Markup::Plain => self.fill(body),
            Markup::Html => self.fill_html(body),
            Markup::TelegramHtml => fill_all(
                body,
                [
                    &telegram::escape(self.recipient_name),
                    &telegram::escape(self.unsubscribe_url),
                    &telegram::escape(self.manage_url),
                    &telegram::escape(self.ack_url),
                ],
            ),
            // Links and names are words in Markdown: what would format them is escaped.
            Markup::Markdown => fill_all(
                body,
                [
                    &super::appio::escape(self.recipient_name),
                    self.unsubscribe_url,
                    self.manage_url,
                    self.ack_url,
                ],
            ),
        }
    }
}

/// What every placeholder's name starts with.
const PLACEHOLDER_START: &str = "@@BANDITORE_";

/// `text` with the name, unsubscribe, manage and acknowledgement placeholders replaced by
/// `values` (in that order), in one pass: a fan-out fills every recipient's copy, and what is
/// put in is never read again (a name spelling a placeholder stays that name). Other
/// placeholders (`DETAIL`) are left as they are.
fn fill_all(text: &str, values: [&str; 4]) -> String {
    const NAMES: [&str; 4] = [RECIPIENT_NAME, UNSUBSCRIBE_URL, MANAGE_URL, ACK_URL];
    let mut out = String::with_capacity(text.len() + values.iter().map(|v| v.len()).sum::<usize>());
    let mut rest = text;
    while let Some(at) = rest.find(PLACEHOLDER_START) {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let (put, skip) = match NAMES.iter().position(|n| from.starts_with(n)) {
            Some(i) => (values[i], NAMES[i].len()),
            None => (PLACEHOLDER_START, PLACEHOLDER_START.len()),
        };
        out.push_str(put);
        rest = &from[skip..];
    }
    out.push_str(rest);
    out
}

/// How a channel's message body is written, for filling placeholders into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Markup {
    Plain,
    Html,
    TelegramHtml,
    /// App IO's messages.
    Markdown,
}

#[cfg(test)]
mod tests {

    use super::*;

    use proptest::strategy::Strategy;

    proptest::proptest! {
        /// One pass gives what replacing each placeholder in turn gives when no value holds an
        /// `@` (in arbitrary text: a value completing a placeholder with the text around it, or
        /// two placeholders sharing their `@@`, are rare enough not to be drawn); a value
        /// spelling a placeholder is kept as written.
        #[test]
        fn one_pass_fills_as_replacing_each_in_turn(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::any::<String>(),
                    proptest::sample::select(vec![
                        RECIPIENT_NAME, UNSUBSCRIBE_URL, MANAGE_URL, ACK_URL, DETAIL,
                        "@@BANDITORE_", "@@BANDITORE_RECIPIENT", "@@",
                    ]).prop_map(str::to_owned),
                ],
                0..12,
            ),
            values in proptest::array::uniform4(proptest::prelude::any::<String>()),
        ) {
            let text = parts.concat();
            let [name, unsubscribe, manage, ack] = values.clone();
            let p = Placeholders {
                recipient_name: &name,
                unsubscribe_url: &unsubscribe,
                manage_url: &manage,
                ack_url: &ack,
            };
            if !values.iter().any(|v| v.contains('@')) {
                let in_turn = text
                    .replace(RECIPIENT_NAME, &name)
                    .replace(UNSUBSCRIBE_URL, &unsubscribe)
                    .replace(MANAGE_URL, &manage)
                    .replace(ACK_URL, &ack);
                proptest::prop_assert_eq!(p.fill(&text), in_turn);
            }
            let spelled = Placeholders {
                recipient_name: ACK_URL,
                unsubscribe_url: "u",
                manage_url: "m",
                ack_url: "a",
            };
            proptest::prop_assert_eq!(
                spelled.fill(&format!("{text}{RECIPIENT_NAME}")),
                format!("{}{ACK_URL}", spelled.fill(&text))
            );
        }
    }

    #[test]
    fn placeholders_fill_per_part() {
        let p = Placeholders {
            recipient_name: "CUP <Foligno>",
            unsubscribe_url: "https://x/u/a?b&c",
            manage_url: "https://x/manage/1.s",
            ack_url: "https://x/ack/3.1.s",
        };
        assert_eq!(
            p.fill(&format!(
                "Ciao {RECIPIENT_NAME} {UNSUBSCRIBE_URL} {MANAGE_URL} {ACK_URL}"
            )),
            "Ciao CUP <Foligno> https://x/u/a?b&c https://x/manage/1.s https://x/ack/3.1.s"
        );
        let html = p.fill_html(&format!(
            "<a href=\"{UNSUBSCRIBE_URL}\">{RECIPIENT_NAME}</a>"
        ));
        assert!(html.contains("CUP &lt;Foligno&gt;"));
        assert!(html.contains("a?b&amp;c"));
    }

    #[test]
    fn a_detail_is_escaped_for_its_markup_and_its_line_left_out_when_empty() {
        let text = format!("Disservizio.\nIl suo appuntamento: {DETAIL}.\nFine.\n");
        assert_eq!(
            fill_detail(&text, "ore 11:30 <Foligno> & C.", Markup::Plain),
            "Disservizio.\nIl suo appuntamento: ore 11:30 <Foligno> & C..\nFine.\n"
        );
        assert!(fill_detail(&text, "<b>", Markup::Html).contains("appuntamento: &lt;b&gt;."));
        assert!(
            fill_detail(&text, "**ore** [11]", Markup::Markdown)
                .contains(r"appuntamento: \*\*ore\*\* \[11\].")
        );
        assert!(
            fill_detail(&text, "<b>", Markup::TelegramHtml).contains("appuntamento: &lt;b&gt;.")
        );
        assert_eq!(
            fill_detail(&text, "", Markup::Plain),
            "Disservizio.\nFine.\n"
        );
        assert_eq!(
            fill_detail("nothing to fill", "x", Markup::Plain),
            "nothing to fill"
        );
    }
}
