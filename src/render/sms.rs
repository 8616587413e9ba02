//! SMS text as the network bills it: GSM 03.38 (7-bit) when every character is in its basic set
//! or extension table (an extension character costs two septets), UCS-2 otherwise (UTF-16 code
//! units, an emoji two). One SMS holds 160 septets or 70 units; a longer text is split into
//! segments of 153 or 67, each carrying the concatenation header.

/// The GSM 03.38 basic character set (the escape code, 0x1B, left out).
pub const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                     ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The extension table: each is sent as ESC + a code, two septets.
pub const EXTENSION: &str = "\u{000C}^{}\\[~]|€";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        }
    }

    /// Units in a single SMS, and in each segment of a concatenated one.
    pub fn capacity(self) -> (usize, usize) {
        match self {
            Encoding::Gsm7 => (160, 153),
            Encoding::Ucs2 => (70, 67),
        }
    }
}

/// How a text travels and what it costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measure {
    pub encoding: Encoding,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2).
    pub units: usize,
    pub segments: u32,
}

fn septets(c: char) -> Option<usize> {
    if BASIC.contains(c) {
        Some(1)
    } else if EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

pub fn measure(text: &str) -> Measure {
    let gsm: Option<usize> = text.chars().map(septets).sum();
    let (encoding, units) = match gsm {
        Some(n) => (Encoding::Gsm7, n),
        None => (Encoding::Ucs2, text.encode_utf16().count()),
    };
    Measure {
        encoding,
        units,
        segments: segments_for(encoding, text),
    }
}

/// Segments, splitting as a handset does: never an escape pair or a surrogate pair across two.
fn segments_for(encoding: Encoding, text: &str) -> u32 {
    let (single, per_segment) = encoding.capacity();
    let cost = |c: char| match encoding {
        Encoding::Gsm7 => septets(c).unwrap_or(1),
        Encoding::Ucs2 => c.len_utf16(),
    };
    let total: usize = text.chars().map(cost).sum();
    if total <= single {
        return 1;
    }
    let mut segments = 1;
    let mut used = 0;
    for c in text.chars() {
        let n = cost(c);
        if used + n > per_segment {
            segments += 1;
            used = 0;
        }
        used += n;
    }
    segments
}

/// Replaces characters outside GSM-7 that have a usual GSM-7 spelling, so that one capital
/// accent or typographic quote does not turn the whole message into UCS-2 (and halve what each
/// segment holds). Anything else is kept as it is.
pub fn fold_to_gsm7(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let folded: &str = match c {
            'È' => "E'",
            'À' => "A'",
            'Ì' => "I'",
            'Ò' => "O'",
            'Ù' => "U'",
            'Á' => "A'",
            'Í' => "I'",
            'Ó' => "O'",
            'Ú' => "U'",
            'á' => "a'",
            'í' => "i'",
            'ó' => "o'",
            'ú' => "u'",
            'ê' | 'ë' => "e",
            'â' => "a",
            'î' | 'ï' => "i",
            'ô' => "o",
            'û' => "u",
            'ç' => "c",
            '‘' | '’' | '‚' | '′' | '`' | '´' => "'",
            '“' | '”' | '„' | '«' | '»' | '″' => "\"",
            '–' | '—' | '‐' | '‑' | '−' => "-",
            '…' => "...",
            '•' | '·' => "-",
            '\u{00A0}' | '\u{2007}' | '\u{202F}' | '\t' => " ",
            '\u{200B}' | '\u{FEFF}' => "",
            _ => {
                out.push(c);
                continue;
            }
        };
        out.push_str(folded);
    }
    out
}

/// Cuts `text` to fit `max_segments`, at a word where one is near, ending with "..." (GSM-7)
/// or "…" (UCS-2). The encoding is the text's own: cutting never changes it.
/// `body` cut so that it and `tail` (measured as `measured_tail`, which is at least as long)
/// fit in `max_segments`; then `tail`, whole.
pub fn truncate_before(body: &str, measured_tail: &str, tail: &str, max_segments: u32) -> String {
    let mut keep = body.chars().count();
    loop {
        let cut: String = body.chars().take(keep).collect();
        let cut = if keep < body.chars().count() {
            format!("{}...", cut.trim_end())
        } else {
            cut
        };
        if keep == 0 || measure(&format!("{cut}{measured_tail}")).segments <= max_segments {
            return format!("{cut}{tail}");
        }
        keep -= 1;
    }
}

pub fn truncate(text: &str, max_segments: u32) -> String {
    let m = measure(text);
    if m.segments <= max_segments {
        return text.to_owned();
    }
    let (single, per_segment) = m.encoding.capacity();
    let budget = if max_segments <= 1 {
        single
    } else {
        per_segment * max_segments as usize
    };
    let ellipsis = match m.encoding {
        Encoding::Gsm7 => "...",
        Encoding::Ucs2 => "…",
    };
    let cost = |c: char| match m.encoding {
        Encoding::Gsm7 => septets(c).unwrap_or(1),
        Encoding::Ucs2 => c.len_utf16(),
    };
    let room = budget.saturating_sub(ellipsis.chars().map(cost).sum());
    let mut used = 0;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        if used + cost(c) > room {
            break;
        }
        used += cost(c);
        end = i + c.len_utf8();
    }
    let mut kept = &text[..end];
    // Back to the last space if it is not far: a cut word reads worse than a shorter text.
    if let Some(space) = kept.rfind([' ', '\n'])
        && kept.len() - space < 20
    {
        kept = &kept[..space];
    }
    let mut out = kept.trim_end().to_owned();
    out.push_str(ellipsis);
    // Segment boundaries (an escape pair never split) can cost a unit or two more: trim on.
    while measure(&out).segments > max_segments && out.len() > ellipsis.len() {
        let cut = out.len() - ellipsis.len();
        let mut base = out[..cut].to_owned();
        base.pop();
        out = base + ellipsis;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ascii_and_italian_lower_case_accents_are_gsm7() {
        let m = measure("Disservizio in corso: è già risolto, perché sì");
        assert_eq!(m.encoding, Encoding::Gsm7);
        assert_eq!(m.segments, 1);
    }

    #[test]
    fn extension_characters_cost_two_septets() {
        assert_eq!(measure("€").units, 2);
        assert_eq!(measure(&"€".repeat(80)).segments, 1);
        assert_eq!(measure(&"€".repeat(81)).segments, 2);
    }

    #[test]
    fn segment_boundaries_are_160_153_and_70_67() {
        assert_eq!(measure(&"a".repeat(160)).segments, 1);
        assert_eq!(measure(&"a".repeat(161)).segments, 2);
        assert_eq!(measure(&"a".repeat(306)).segments, 2);
        assert_eq!(measure(&"a".repeat(307)).segments, 3);
        let ucs = |n: usize| format!("È{}", "a".repeat(n - 1));
        assert_eq!(measure(&ucs(70)).encoding, Encoding::Ucs2);
        assert_eq!(measure(&ucs(70)).segments, 1);
        assert_eq!(measure(&ucs(71)).segments, 2);
        assert_eq!(measure(&ucs(134)).segments, 2);
        assert_eq!(measure(&ucs(135)).segments, 3);
    }

    #[test]
    fn an_escape_pair_or_a_surrogate_pair_is_never_split() {
        // 152 septets, then "€" (2): it does not fit in the first segment's last septet.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(measure(&text).units, 306);
        assert_eq!(measure(&text).segments, 3);
        let emoji = format!("{}🚨{}", "a".repeat(66), "a".repeat(66));
        assert_eq!(measure(&emoji).segments, 3);
    }

    #[test]
    fn one_capital_accent_makes_the_whole_text_ucs2_unless_folded() {
        let text = "È in corso un disservizio del CUP: le prenotazioni sono sospese.";
        assert_eq!(measure(text).encoding, Encoding::Ucs2);
        let folded = fold_to_gsm7(text);
        assert_eq!(
            folded,
            "E' in corso un disservizio del CUP: le prenotazioni sono sospese."
        );
        assert_eq!(measure(&folded).encoding, Encoding::Gsm7);
        assert_eq!(
            fold_to_gsm7("“Così” – l’ufficio…"),
            "\"Così\" - l'ufficio..."
        );
        // Nothing to fold: unchanged, and still UCS-2.
        assert_eq!(fold_to_gsm7("Ω 🚨"), "Ω 🚨");
        assert_eq!(measure("🚨").encoding, Encoding::Ucs2);
    }

    #[test]
    fn truncation_fits_the_segments_and_keeps_the_encoding() {
        let long = "parola ".repeat(100);
        for max in 1..=3 {
            let cut = truncate(&long, max);
            let m = measure(&cut);
            assert!(m.segments <= max, "{max}: {m:?}");
            assert_eq!(m.encoding, Encoding::Gsm7);
            assert!(cut.ends_with("..."));
            assert!(
                cut.len() > 100 * max as usize,
                "{max}: too short: {}",
                cut.len()
            );
        }
        let ucs = format!("È {}", "città ".repeat(60));
        let cut = truncate(&ucs, 2);
        assert_eq!(measure(&cut).encoding, Encoding::Ucs2);
        assert!(measure(&cut).segments <= 2);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("breve", 1), "breve");
    }
}
