//! Limits at their exact edges: for each channel, the longest text that fits and one unit more,
//! counted by the double's own counter (written from the provider's documentation), not by
//! Banditore's. The longest goes whole; one unit more is refused by the API (a public draft's
//! edited part on a social network or Telegram), cut within the limit (a Telegram message, an
//! SMS over its template's `max_segments`) or split (an SMS in one segment more, a mail subject
//! folded or written as encoded words), as each channel documents.

use serde_json::{Value, json};

use super::{Harness, within};
use crate::support::*;

/// How a text reaches the channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    /// The communications office edits a public draft's part to the text and approves it.
    Draft,
    /// An incident is opened by hand with the text, and the channel's template shows it as it
    /// is written (the title for a mail's subject, the body elsewhere).
    Message,
}

/// What one unit more does.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Beyond {
    /// The API refuses the edit with 400, naming the part's body and these words.
    Refused(&'static str),
    /// The text arrives cut within the limit, ending with this ellipsis.
    Cut(&'static str),
    /// The text arrives whole, costing one unit more (a segment, a header line).
    Split,
}

/// One limit of a channel, at its edge.
pub(crate) struct Edge {
    /// The limit, as a failure names it.
    pub limit: &'static str,
    pub via: Via,
    /// What `fits` counts, in the unit of `count`.
    pub max: usize,
    /// The double's count of a text as it arrived (or, for a refused one, as written).
    pub count: fn(&str) -> usize,
    /// The longest text that fits.
    pub fits: String,
    /// `fits` and one character more.
    pub over: String,
    pub beyond: Beyond,
}

/// A text as it arrived: as its reader reads it, and as the double counts it (a mail's subject
/// header as written on the wire; elsewhere the same text).
#[derive(Debug)]
pub(crate) struct Arrived {
    pub read: String,
    pub wire: String,
}

impl Arrived {
    pub(crate) fn text(text: String) -> Arrived {
        Arrived {
            wire: text.clone(),
            read: text,
        }
    }
}

/// Words to fill a text with.
const WORDS: &str = "verifiche in corso con il fornitore della rete regionale ";

/// `head` and as much of `filler` (repeated) as keeps `count` at most `max`, not ending with a
/// space (one letter instead, which every count here counts as a space).
pub(crate) fn longest(head: &str, filler: &str, max: usize, count: fn(&str) -> usize) -> String {
    assert!(count(head) <= max, "{head:?} is already {}", count(head));
    let with = |k: usize| -> String {
        let mut text = head.to_owned();
        text.extend(filler.chars().cycle().take(k));
        text
    };
    // Appending never shortens a text: the most that fits, by bisection.
    let (mut fits, mut over) = (0, 1);
    while count(&with(over)) <= max {
        (fits, over) = (over, over * 2);
    }
    while over - fits > 1 {
        let middle = fits + (over - fits) / 2;
        if count(&with(middle)) <= max {
            fits = middle;
        } else {
            over = middle;
        }
    }
    let mut text = with(fits);
    if text.ends_with(' ') {
        text.pop();
        text.push('o');
    }
    text
}

fn utf16(text: &str) -> usize {
    text.encode_utf16().count()
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

fn sms_segments(text: &str) -> usize {
    sms_encoding(text).1 as usize
}

/// The lines of a header as written on the wire (its folded continuation lines included).
fn lines(header: &str) -> usize {
    header.split("\r\n").count()
}

/// An edge whose over-long text is `fits` and one letter more.
pub(crate) fn edge(
    limit: &'static str,
    via: Via,
    max: usize,
    count: fn(&str) -> usize,
    fits: String,
    beyond: Beyond,
) -> Edge {
    let over = format!("{fits}o");
    Edge {
        limit,
        via,
        max,
        count,
        fits,
        over,
        beyond,
    }
}

/// The longest text goes whole, counted at the limit by the double; one unit more is refused,
/// cut within the limit, or goes whole costing one unit more, as the channel documents.
pub(crate) async fn the_longest_text_goes_whole_and_one_unit_more_as_documented<H: Harness>() {
    let h = H::start_for_edges().await;
    for edge in H::edges() {
        let limit = edge.limit;
        let extra = edge.over.strip_prefix(edge.fits.as_str());
        assert_eq!(extra.map(|e| e.chars().count()), Some(1), "{limit}");
        if !matches!(edge.beyond, Beyond::Split) {
            let over = (edge.count)(&edge.over);
            assert_eq!(
                over,
                edge.max + 1,
                "{limit}: the longer text is one unit more"
            );
        }

        let at = h.publish(&edge, &edge.fits).await;
        let at = at.unwrap_or_else(|e| panic!("{limit}: the longest text was refused: {e}"));
        assert_eq!(
            at.read, edge.fits,
            "{limit}: the longest text arrives whole"
        );
        assert_eq!((edge.count)(&at.wire), edge.max, "{limit}: {at:?}");

        let beyond = h.publish(&edge, &edge.over).await;
        match (edge.beyond, beyond) {
            (Beyond::Refused(words), Err(refusal)) => {
                assert!(refusal.contains("parts[0].body"), "{limit}: {refusal}");
                assert!(refusal.contains(words), "{limit}: {refusal}");
            }
            (Beyond::Cut(ellipsis), Ok(cut)) => {
                let counted = (edge.count)(&cut.wire);
                assert!(counted <= edge.max, "{limit}: cut to {counted}: {cut:?}");
                let kept = cut.read.strip_suffix(ellipsis);
                let kept = kept.unwrap_or_else(|| panic!("{limit}: ends with {ellipsis}: {cut:?}"));
                assert!(edge.over.starts_with(kept), "{limit}: {cut:?}");
            }
            (Beyond::Split, Ok(split)) => {
                assert_eq!(split.read, edge.over, "{limit}: arrives whole");
                let counted = (edge.count)(&split.wire);
                assert_eq!(counted, edge.max + 1, "{limit}: {split:?}");
            }
            (beyond, got) => panic!("{limit}: expected {beyond:?}, got {got:?}"),
        }
    }
}

/// Opens an incident by hand; returns it.
pub(crate) async fn open(app: &TestApp, title: &str, body: &str) -> i64 {
    let req = json!({"title": title, "severity": "critical",
        "labels": {"service": "cup-prenotazioni"}, "body": body});
    let resp = app
        .post_json("/api/v1/incidents", Some(OPERATOR_TOKEN), &req)
        .await;
    let status = resp.status();
    let answer: Value = resp.json().await.unwrap_or_default();
    assert_eq!(status, 201, "{answer}");
    answer["id"].as_i64().unwrap_or_default()
}

/// Opens an incident by hand and edits its public draft's `channel` part to `text`: the draft
/// to approve, or the API's refusal.
pub(crate) async fn edit_draft(app: &TestApp, channel: &str, text: &str) -> Result<i64, String> {
    let title = format!(
        "Portale referti non raggiungibile ({})",
        rand::random::<u32>()
    );
    let incident = open(app, &title, "Verifiche in corso.").await;
    let ours = |drafts: &Vec<Value>| drafts.iter().any(|d| d["incident_id"] == incident);
    let drafts = within(
        std::time::Duration::from_secs(10),
        || app.pending_drafts(),
        ours,
    )
    .await;
    let draft = drafts.into_iter().find(|d| d["incident_id"] == incident);
    let draft = draft.unwrap_or_default();
    let parts = draft["parts"].as_array().cloned().unwrap_or_default();
    let part = parts.iter().find(|p| p["channel"] == channel);
    let language = part.map_or(json!("it"), |p| p["language"].clone());
    let id = draft["id"].as_i64().unwrap_or_default();
    let edit = json!({"parts": [{"channel": channel, "language": language, "body": text}]});
    let resp = (app.put_json(&format!("/api/v1/drafts/{id}"), COMMUNICATOR_TOKEN, &edit)).await;
    let status = resp.status().as_u16();
    let answer = resp.text().await.unwrap_or_default();
    match status {
        200 => Ok(id),
        400 => Err(answer),
        _ => panic!("editing draft {id}: {status} {answer}"),
    }
}

/// A link Mastodon and X count as 23, Bluesky in full.
const LINK: &str =
    "https://www.regione.umbria.it/sanita/prenotazioni-cup/elenco-degli-sportelli-aperti";

pub(crate) fn mastodon() -> Vec<Edge> {
    let count = crate::support::mastodon::count_length;
    let head = format!("Prenotazioni CUP sospese 🚑 gli sportelli aperti sono su {LINK} e ");
    vec![edge(
        "Mastodon: 500 graphemes, a link 23",
        Via::Draft,
        500,
        count,
        longest(&head, WORDS, 500, count),
        Beyond::Refused("is 501 graphemes as Mastodon counts them; it takes at most 500"),
    )]
}

pub(crate) fn bluesky() -> Vec<Edge> {
    let count = crate::support::bluesky::count_graphemes;
    // A ZWJ sequence and a letter with a combining accent are one grapheme each.
    let head = format!("Prenotazioni CUP sospese 👩\u{200d}⚕\u{fe0f} perche\u{301} {LINK} e ");
    // 230 of those 13-byte graphemes and ten letters: 3,000 bytes in 240 graphemes.
    let bytes = format!("{} Dettaglio", "👩\u{200d}⚕\u{fe0f}".repeat(230));
    vec![
        edge(
            "Bluesky: 300 graphemes, a link in full",
            Via::Draft,
            300,
            count,
            longest(&head, WORDS, 300, count),
            Beyond::Refused("is 301 graphemes as Bluesky counts them; it takes at most 300"),
        ),
        edge(
            "Bluesky: 3,000 bytes",
            Via::Draft,
            3000,
            str::len,
            bytes,
            Beyond::Refused("(3001 bytes; Bluesky takes at most 3000)"),
        ),
    ]
}

pub(crate) fn x() -> Vec<Edge> {
    let count = crate::support::x::weighted_length;
    let head = format!("Prenotazioni CUP sospese 🚑 ticket da 5€ sportelli su {LINK} e ");
    vec![edge(
        "X: 280 weighted, a link 23, emoji and € 2",
        Via::Draft,
        280,
        count,
        longest(&head, WORDS, 280, count),
        Beyond::Refused("is 281 weighted characters as X counts them; it takes at most 280"),
    )]
}

pub(crate) fn facebook() -> Vec<Edge> {
    let count = crate::support::facebook::message_length;
    let max = crate::support::facebook::FB_MAX_MESSAGE;
    let head = "Prenotazioni CUP sospese in tutta la regione: città, farmacie e sportelli. ";
    vec![edge(
        "Facebook: 63,206 characters",
        Via::Draft,
        max,
        count,
        longest(head, WORDS, max, count),
        Beyond::Refused("is 63207 characters as Facebook counts them; it takes at most 63206"),
    )]
}

/// Messages first: Telegram's pacing allows the chat one a second, and each draft's incident is
/// a message to it too.
pub(crate) fn telegram() -> Vec<Edge> {
    let draft = "🚨 Avviso alla cittadinanza: prenotazioni CUP sospese, ";
    // Escaped when rendered, read back as written.
    let message = "🚨 Il CUP <regionale> & le farmacie \"non\" rispondono: ";
    vec![
        edge(
            "Telegram: 4,096 UTF-16 units in a message",
            Via::Message,
            4096,
            utf16,
            longest(message, WORDS, 4096, utf16),
            Beyond::Cut("…"),
        ),
        edge(
            "Telegram: 4,096 UTF-16 units in an approved public part",
            Via::Draft,
            4096,
            utf16,
            longest(draft, WORDS, 4096, utf16),
            Beyond::Refused("is 4097 characters; Telegram takes at most 4096"),
        ),
    ]
}

/// The template's `max_segments` is the default, 2.
pub(crate) fn sms() -> Vec<Edge> {
    // `€` costs two septets; an emoji is outside GSM-7, nothing folds it, and it costs two
    // UTF-16 units.
    let gsm = "Ticket da 5€: prenotazioni CUP sospese, ";
    let ucs = "🚑 Prenotazioni CUP sospese: ";
    // A link at the end is a word too long to cut at a space before it.
    let link = "https://cup.regione.umbria.it/avvisi/prenotazioni-sospese-sportelli-aperti/";
    vec![
        edge(
            "SMS GSM-7: 160 septets in one segment",
            Via::Message,
            1,
            sms_segments,
            longest(gsm, WORDS, 1, sms_segments),
            Beyond::Split,
        ),
        edge(
            "SMS GSM-7: 306 septets in two segments of 153",
            Via::Message,
            2,
            sms_segments,
            longest(gsm, link, 2, sms_segments),
            Beyond::Cut("..."),
        ),
        edge(
            "SMS UCS-2: 70 units in one segment",
            Via::Message,
            1,
            sms_segments,
            longest(ucs, WORDS, 1, sms_segments),
            Beyond::Split,
        ),
        edge(
            "SMS UCS-2: 134 units in two segments of 67",
            Via::Message,
            2,
            sms_segments,
            longest(ucs, link, 2, sms_segments),
            Beyond::Cut("…"),
        ),
    ]
}

/// The subject is the incident's title, as written.
pub(crate) fn email() -> Vec<Edge> {
    // "Subject: " and 67 characters: 76, where lettre folds.
    let line = longest("Portale CUP non raggiungibile: ", WORDS, 67, chars);
    // A word of 60 bytes is left to lettre's folding; a longer one is written as encoded words.
    let word = longest(
        "CUP https://cup.regione.umbria.it/",
        "sportelli-aperti-",
        64,
        chars,
    );
    vec![
        edge(
            "email: a Subject line of 76 characters",
            Via::Message,
            1,
            lines,
            line,
            Beyond::Split,
        ),
        edge(
            "email: a word of 60 bytes in the subject",
            Via::Message,
            1,
            lines,
            word,
            Beyond::Split,
        ),
    ]
}

/// A templates folder holding `files` (path, text), and the settings pointing at it.
pub(crate) fn templates(files: &[(&str, &str)]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let file = dir.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }
    let config = format!("[templates]\ndir = \"{}\"\n", dir.path().display());
    (dir, config)
}

/// Waits (10 s at most) for `arrived` to hold more than `before`, one of them `ours`, and
/// returns the newest of ours.
pub(crate) async fn newest<T: std::fmt::Debug + Clone>(
    before: usize,
    arrived: impl Fn() -> Vec<T>,
    ours: impl Fn(&T) -> bool,
) -> T {
    let found = |all: &Vec<T>| all.iter().skip(before).any(&ours);
    let probe = || std::future::ready(arrived());
    let all = within(std::time::Duration::from_secs(10), probe, found).await;
    let mine = all.into_iter().skip(before).filter(|m| ours(m)).last();
    mine.unwrap_or_else(|| unreachable!())
}
