//! Drafts: the one check of an edited part (`check_part`), what a text costs on its channel
//! (`measure`), and editing, approving and rejecting a draft.

use jiff::Timestamp;

use super::ServiceError;
use crate::domain::subscriber::ChannelKind;
use crate::domain::text;
use crate::render::social::{self, Limits};
use crate::render::{sms, telegram};
use crate::store::{Decision, Draft, PartEdit, Topic};
use crate::web::AppState;

/// The longest edited text accepted for a channel without a limit of its own.
const MAX_BODY_CHARS: usize = 20_000;

/// What a text costs on its channel, and the channel's limit.
pub fn measure(limits: &Limits, channel: ChannelKind, body: &str) -> Length {
    let chars = body.chars().count();
    let mut m = Length {
        unit: "characters",
        used: chars,
        limit: Some(MAX_BODY_CHARS),
        bytes: None,
        byte_limit: None,
        encoding: None,
        characters: None,
    };
    if let Some(limit) = limits.limit(channel) {
        m.unit = Limits::unit(channel);
        m.used = limits.length(channel, body);
        m.limit = Some(limit);
        if channel == ChannelKind::Bluesky {
            m.bytes = Some(body.len());
            m.byte_limit = Some(social::BLUESKY_MAX_BYTES);
        }
        return m;
    }
    match channel {
        ChannelKind::Telegram => {
            m.used = telegram::visible_len(body);
            m.limit = Some(telegram::MAX_LEN);
        }
        ChannelKind::Sms => {
            let s = sms::measure(body);
            m.unit = "segments";
            m.used = s.segments as usize;
            m.limit = None;
            m.encoding = Some(s.encoding.as_str());
            m.characters = Some(chars);
        }
        _ => {}
    }
    m
}

/// How long a part's text is on its channel, and the most the channel takes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Length {
    /// `characters`, `weighted characters` (X), `graphemes` (Bluesky) or `segments` (SMS).
    pub unit: &'static str,
    /// The text's length in `unit`.
    pub used: usize,
    /// The most the channel takes, in `unit`; an SMS has no fixed limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Bluesky: the text's UTF-8 bytes, and the most it takes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub byte_limit: Option<usize>,
    /// SMS: `gsm7` or `ucs2`, and the text's characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub characters: Option<usize>,
}

/// Why an edit of a part is refused: which of its fields (`subject` or `body`), and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub field: &'static str,
    pub message: String,
}

fn refuse(field: &'static str, message: impl Into<String>) -> Result<(), Refused> {
    Err(Refused {
        field,
        message: message.into(),
    })
}

/// Refuses a text its channel would refuse, or a title a page, a feed or an alert could not carry:
/// the one check of an edit, whether it comes from the API or from the console.
pub fn check_part(limits: &Limits, part: &PartEdit) -> Result<(), Refused> {
    if let Some(subject) = &part.subject {
        if subject.trim().is_empty() {
            return refuse("subject", "must not be empty");
        }
        if let Err(e) = text::one_line(subject) {
            return refuse("subject", e.to_string());
        }
        let chars = subject.chars().count();
        if part.channel == ChannelKind::Status && chars > text::PUBLIC_TITLE_CHARS {
            return refuse(
                "subject",
                format!(
                    "is {chars} characters; a public title takes at most {}",
                    text::PUBLIC_TITLE_CHARS
                ),
            );
        }
    }
    if part.body.trim().is_empty() {
        return refuse("body", "must not be empty");
    }
    if let Err(e) = text::lines(&part.body) {
        return refuse("body", e.to_string());
    }
    if part.channel.is_social()
        && let Some(c) = part.body.chars().find(|c| social::refused(*c))
    {
        let network = part.channel.title();
        return refuse(
            "body",
            format!(
                "holds U+{:04X}, which {network} refuses or shows as nothing; remove it",
                u32::from(c)
            ),
        );
    }
    if let Some(limit) = limits.limit(part.channel)
        && !limits.fits(part.channel, &part.body)
    {
        let used = limits.length(part.channel, &part.body);
        let bytes = if used <= limit {
            format!(
                " ({} bytes; Bluesky takes at most {})",
                part.body.len(),
                social::BLUESKY_MAX_BYTES
            )
        } else {
            String::new()
        };
        return refuse(
            "body",
            format!(
                "is {used} {} as {} counts them{bytes}; it takes at most {limit}",
                Limits::unit(part.channel),
                part.channel.title(),
            ),
        );
    }
    match part.channel {
        ChannelKind::Telegram if telegram::visible_len(&part.body) > telegram::MAX_LEN => refuse(
            "body",
            format!(
                "is {} characters; Telegram takes at most {}",
                telegram::visible_len(&part.body),
                telegram::MAX_LEN
            ),
        ),
        ChannelKind::Sms if sms::measure(&part.body).segments > 10 => refuse(
            "body",
            format!(
                "would cost {} SMS segments; at most 10",
                sms::measure(&part.body).segments
            ),
        ),
        _ if limits.limit(part.channel).is_none() && part.body.chars().count() > MAX_BODY_CHARS => {
            refuse(
                "body",
                format!("is longer than {MAX_BODY_CHARS} characters"),
            )
        }
        _ => Ok(()),
    }
}

/// What a decision came to.
#[derive(Debug)]
pub struct Decided {
    pub draft: i64,
    /// `approved` or `rejected`.
    pub decision: &'static str,
    pub parts: usize,
    /// Deliveries written to the outbox.
    pub deliveries: u64,
    /// About how many citizens the leader now writes deliveries for, batch by batch.
    pub citizens: u64,
}

/// Edits the pending parts of a draft, each checked by [`check_part`] first: the first refused
/// part stops the edit, with its place in `edits`. `NotFound` when the draft is gone.
pub async fn edit(
    state: &AppState,
    id: i64,
    edits: &[PartEdit],
    actor: &str,
    now: Timestamp,
) -> Result<Draft, ServiceError> {
    let limits = state.renderer.social_limits();
    for (index, part) in edits.iter().enumerate() {
        check_part(&limits, part).map_err(|part| ServiceError::PartRefused { index, part })?;
    }
    let draft = state
        .store
        .edit_draft(id, edits, actor, now)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("draft {id} not found")))?;
    tracing::info!(draft = id, by = %actor, "draft edited");
    Ok(draft)
}

/// Approves the draft's pending parts on `channels` (all of them when `None`).
pub async fn approve(
    state: &AppState,
    id: i64,
    channels: Option<Vec<ChannelKind>>,
    actor: &str,
    now: Timestamp,
) -> Result<Decided, ServiceError> {
    decide(state, id, Decision::Approve { channels }, actor, now).await
}

/// Rejects the draft's pending parts; `reason` must say why.
pub async fn reject(
    state: &AppState,
    id: i64,
    reason: &str,
    actor: &str,
    now: Timestamp,
) -> Result<Decided, ServiceError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ServiceError::invalid(
            "reason",
            "say why the draft is rejected",
        ));
    }
    let decision = Decision::Reject {
        reason: reason.to_owned(),
    };
    decide(state, id, decision, actor, now).await
}

/// Approves or rejects, and wakes the dispatchers when something entered the outbox.
async fn decide(
    state: &AppState,
    id: i64,
    decision: Decision,
    actor: &str,
    now: Timestamp,
) -> Result<Decided, ServiceError> {
    let decided = state
        .store
        .decide_draft(id, &decision, actor, now)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("draft {id} not found")))?;
    let what = match decision {
        Decision::Reject { .. } => "rejected",
        _ => "approved",
    };
    metrics::counter!("banditore_drafts_decided_total", "decision" => what).increment(1);
    tracing::info!(
        draft = id,
        by = actor,
        decision = what,
        deliveries = decided.deliveries,
        citizens = decided.citizens,
        "draft decided"
    );
    // The bell also wakes the leader's writer of citizens' deliveries (other replicas hear it
    // through the announcement): a statement published with nothing written yet still goes
    // to the incident's affected lists.
    state.wake.dispatch.ring();
    state.store.announce(Topic::Deliveries).await;
    Ok(Decided {
        draft: id,
        decision: what,
        parts: decided.parts,
        deliveries: decided.deliveries,
        citizens: decided.citizens,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::board::{Board, PublicIncident, Statement};
    use crate::domain::Severity;

    fn status_edit(subject: &str, body: &str) -> PartEdit {
        PartEdit {
            channel: ChannelKind::Status,
            language: "en".into(),
            subject: Some(subject.to_owned()),
            body: body.to_owned(),
        }
    }

    #[test]
    fn a_public_title_is_one_short_line() {
        let limits = Limits::default();
        let ok = status_edit("Bookings suspended", "Online booking is suspended.");
        assert_eq!(check_part(&limits, &ok), Ok(()));
        for bad in ["", "  ", "Outage\nBcc: x@y", "a\u{fffe}"] {
            let refused = check_part(&limits, &status_edit(bad, "x")).unwrap_err();
            assert_eq!(refused.field, "subject", "{bad:?}");
        }
        let long = "x".repeat(text::PUBLIC_TITLE_CHARS + 1);
        let refused = check_part(&limits, &status_edit(&long, "x")).unwrap_err();
        assert!(refused.message.contains("at most 160"), "{refused:?}");
        let refused = check_part(&limits, &status_edit("ok", "a\u{1b}b")).unwrap_err();
        assert_eq!(refused.field, "body");
    }

    /// What XML 1.0 can carry.
    fn xml_char(c: char) -> bool {
        matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && !matches!(c, '\u{fffe}' | '\u{ffff}'))
    }

    proptest! {
        /// Whatever the office types, an edit is refused with its field named, or it makes a CAP
        /// alert that XML can carry, headed by that one-line title.
        #[test]
        fn an_accepted_title_and_statement_make_a_valid_alert(
            title in crate::hostile::text(),
            body in crate::hostile::text(),
        ) {
            let edit = status_edit(&title, &body);
            match check_part(&Limits::default(), &edit) {
                Err(refused) => prop_assert!(["subject", "body"].contains(&refused.field)),
                Ok(()) => {
                    prop_assert!(text::one_line(&title).is_ok());
                    prop_assert!(title.chars().count() <= text::PUBLIC_TITLE_CHARS);
                    let at = jiff::Timestamp::UNIX_EPOCH;
                    let board = Board {
                        generated_at: at,
                        overall: "major_outage",
                        services: Vec::new(),
                        maintenance: Vec::new(),
                        incidents: vec![PublicIncident {
                            id: 1,
                            state: "major_outage",
                            resolved: false,
                            opened_at: at,
                            resolved_at: None,
                            severity: Severity::Critical,
                            services: vec!["cup".into()],
                            statements: vec![Statement {
                                draft: 7,
                                at,
                                kind: "opened".into(),
                                language: "en".into(),
                                title: title.clone(),
                                text: body.clone(),
                            }],
                        }],
                    };
                    let site = crate::feeds::Site {
                        base: "https://stato.example",
                        title: "Service status",
                        sender: "banditore@stato.example",
                        area: "Regione",
                    };
                    let alert = crate::feeds::cap_alert(&board, &site, 7);
                    prop_assert!(alert.is_some());
                    let alert = alert.unwrap_or_default();
                    prop_assert!(alert.chars().all(xml_char), "{alert:?}");
                    prop_assert_eq!(alert.matches("<headline>").count(), 1);
                    let headline = alert
                        .split("<headline>")
                        .nth(1)
                        .and_then(|h| h.split("</headline>").next())
                        .unwrap_or_default();
                    prop_assert!(!headline.contains('\n'), "{headline:?}");
                }
            }
        }
    }

    #[test]
    fn an_edit_holding_a_character_the_network_refuses_is_refused_naming_it() {
        let limits = Limits::default();
        let part = |channel: ChannelKind, body: &str| PartEdit {
            channel,
            language: "it".into(),
            subject: None,
            body: body.into(),
        };
        let refused =
            check_part(&limits, &part(ChannelKind::X, "Guasto\u{feff} al CUP")).unwrap_err();
        assert_eq!(refused.field, "body");
        assert!(refused.message.contains("U+FEFF"), "{refused:?}");
        for (channel, body) in [
            (ChannelKind::Mastodon, "CUP\0 giù"),
            (ChannelKind::Bluesky, "CUP \u{1b}[31m giù"),
            (ChannelKind::Facebook, "CUP \u{fffe}"),
        ] {
            assert!(
                check_part(&limits, &part(channel, body)).is_err(),
                "{channel}"
            );
        }
        // Line ends as a browser sends them are fine.
        let lines = part(ChannelKind::Bluesky, "CUP giù\r\nsportelli chiusi\ttutti");
        assert!(check_part(&limits, &lines).is_ok());
    }
}
