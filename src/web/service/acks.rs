//! Who knows: for every desk sent a message about an incident, what was sent where, how far it
//! got and whether (and how) someone at the desk said they saw it. The API answers it as JSON
//! and the console shows it as a table; both read it from here, in three queries whatever the
//! number of desks (their messages, the incident's acknowledgements, the ladders' next steps).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

use super::ServiceError;
use super::incidents::masked;
use crate::domain::subscriber::ChannelKind;
use crate::settings::Permission;
use crate::store::{AckRow, DeskMessage, NextEscalation};
use crate::web::{AppState, Principal};

/// The desks sent a message about an incident, those who have not acknowledged it first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AckBoard {
    pub incident_id: i64,
    /// Desks sent at least one message about the incident.
    pub desks_total: usize,
    /// Of those, desks that have acknowledged it.
    pub desks_acknowledged: usize,
    pub desks: Vec<AckDesk>,
}

/// One desk: its acknowledgement, if any, and every message it was sent about the incident.
#[derive(Debug, Serialize, ToSchema)]
pub struct AckDesk {
    pub subscriber_id: i64,
    pub name: String,
    /// `null` until someone at the desk says they have seen it.
    pub acknowledged: Option<DeskAck>,
    pub messages: Vec<AckMessage>,
    /// The desk's next escalation step, while one waits: `null` when the desk has no policy,
    /// has acknowledged, has climbed its whole ladder, or the incident has ended.
    pub next_escalation: Option<NextStep>,
}

/// The next step of a desk's escalation ladder: which step, the channels it adds, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct NextStep {
    /// The step's place in the policy, from 0.
    pub step: i64,
    pub channels: Vec<ChannelKind>,
    #[schema(value_type = String, format = DateTime)]
    pub due_at: Timestamp,
}

/// A desk's acknowledgement: when, through which channel, from which address.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeskAck {
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub channel: ChannelKind,
    /// Masked for readers who are not administrators when it is a webhook's URL.
    pub recipient: String,
}

/// One message to one of the desk's addresses.
#[derive(Debug, Serialize, ToSchema)]
pub struct AckMessage {
    pub delivery_id: i64,
    /// The incident's update it carried.
    pub update_seq: i64,
    pub channel: ChannelKind,
    /// Masked for readers who are not administrators when it is a webhook's URL.
    pub recipient: String,
    /// pending, sending, sent, failed or gone.
    pub state: String,
    /// What the provider reported: `true` delivered (or read, or a call answered), `false` not
    /// delivered (or a call unanswered, busy, or taken by a machine); `null` where the provider
    /// sends no report (email, Telegram, webhooks) or none came yet.
    pub delivered: Option<bool>,
    /// The provider's last report as it named it (`delivered`, `undelivered`…).
    pub report_status: Option<String>,
    /// When it was handed to the provider.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub sent_at: Option<Timestamp>,
}

/// Whether a provider's report says the message reached the phone: `None` when it says neither.
pub fn delivered(report_status: Option<&str>) -> Option<bool> {
    match report_status? {
        // Texts' and messages' reports, and calls': a call answered and ended reached someone.
        // App IO's `processed`: in the citizen's inbox.
        "delivered" | "read" | "completed" | "processed" => Some(true),
        "undelivered" | "failed" | "expired" | "rejected" | "no-answer" | "unanswered" | "busy"
        | "timeout" | "machine" | "canceled" | "cancelled" => Some(false),
        _ => None,
    }
}

/// An address as `whole` readers (administrators) see it, or masked when it is a credential (a
/// webhook's URL); a desk's email, number or chat is shown to everyone who may read incidents,
/// as the deliveries and the subscribers are.
pub fn shown(channel: ChannelKind, recipient: &str, whole: bool) -> String {
    if whole || channel != ChannelKind::Webhook {
        recipient.to_owned()
    } else {
        masked(channel, recipient)
    }
}

/// The board of incident `id` as `reader` may see it; `NotFound` for no such incident.
pub async fn board(
    state: &AppState,
    id: i64,
    reader: &Principal,
) -> Result<AckBoard, ServiceError> {
    if state.store.incident(id).await?.is_none() {
        return Err(ServiceError::NotFound(format!("incident {id} not found")));
    }
    let messages = state.store.desk_messages(id).await?;
    let acks = state.store.acknowledgements(id).await?;
    let next = state.store.next_escalations(id).await?;
    Ok(with_next_steps(
        build(id, messages, &acks, reader.may(Permission::Admin)),
        next,
    ))
}

/// Adds each desk's next escalation step, and the desks whose ladder waits with no message sent
/// yet (a first step after a while, an address another desk shares): they know nothing so far.
pub fn with_next_steps(mut board: AckBoard, next: Vec<NextEscalation>) -> AckBoard {
    let mut next: BTreeMap<i64, NextEscalation> =
        next.into_iter().map(|n| (n.subscriber_id, n)).collect();
    for desk in &mut board.desks {
        desk.next_escalation = next.remove(&desk.subscriber_id).map(NextStep::from);
    }
    let waiting: Vec<AckDesk> = next
        .into_values()
        .map(|n| AckDesk {
            subscriber_id: n.subscriber_id,
            name: n.subscriber_name.clone(),
            acknowledged: None,
            messages: Vec::new(),
            next_escalation: Some(NextStep::from(n)),
        })
        .collect();
    if !waiting.is_empty() {
        board.desks.extend(waiting);
        sort(&mut board.desks);
        board.desks_total = board.desks.len();
    }
    board
}

impl From<NextEscalation> for NextStep {
    fn from(n: NextEscalation) -> NextStep {
        NextStep {
            step: n.step,
            channels: n.channels,
            due_at: n.due_at,
        }
    }
}

/// Desks still to acknowledge first, then by name.
fn sort(desks: &mut [AckDesk]) {
    desks.sort_by(|a, b| {
        (a.acknowledged.is_some(), &a.name, a.subscriber_id).cmp(&(
            b.acknowledged.is_some(),
            &b.name,
            b.subscriber_id,
        ))
    });
}

/// Groups the messages (ordered by desk) into desks, adds their acknowledgements and puts the
/// desks still to acknowledge first, then by name.
pub fn build(
    incident_id: i64,
    messages: Vec<DeskMessage>,
    acks: &[AckRow],
    whole: bool,
) -> AckBoard {
    let acked: BTreeMap<i64, &AckRow> = acks
        .iter()
        .filter_map(|a| a.subscriber_id.map(|s| (s, a)))
        .collect();
    let mut desks: Vec<AckDesk> = Vec::new();
    for m in messages {
        if desks
            .last()
            .is_none_or(|d| d.subscriber_id != m.subscriber_id)
        {
            desks.push(AckDesk {
                subscriber_id: m.subscriber_id,
                name: m.subscriber_name.clone(),
                acknowledged: acked.get(&m.subscriber_id).map(|a| DeskAck {
                    at: a.acked_at,
                    channel: a.channel,
                    recipient: shown(a.channel, &a.recipient, whole),
                }),
                messages: Vec::new(),
                next_escalation: None,
            });
        }
        if let Some(desk) = desks.last_mut() {
            desk.messages.push(AckMessage {
                delivery_id: m.delivery_id,
                update_seq: m.update_seq,
                channel: m.channel,
                recipient: shown(m.channel, &m.recipient, whole),
                state: m.state,
                delivered: delivered(m.report_status.as_deref()),
                report_status: m.report_status,
                sent_at: m.sent_at,
            });
        }
    }
    sort(&mut desks);
    AckBoard {
        incident_id,
        desks_total: desks.len(),
        desks_acknowledged: desks.iter().filter(|d| d.acknowledged.is_some()).count(),
        desks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn message(
        desk: i64,
        name: &str,
        delivery: i64,
        channel: ChannelKind,
        to: &str,
    ) -> DeskMessage {
        DeskMessage {
            subscriber_id: desk,
            subscriber_name: name.into(),
            delivery_id: delivery,
            update_seq: 1,
            channel,
            recipient: to.into(),
            state: "sent".into(),
            report_status: (channel == ChannelKind::Sms).then(|| "delivered".into()),
            report_at: None,
            sent_at: Some(at(1)),
        }
    }

    #[test]
    fn desks_still_to_acknowledge_come_first_and_are_counted() {
        let messages = vec![
            message(1, "Alfa", 1, ChannelKind::Email, "a@asl.example"),
            message(1, "Alfa", 2, ChannelKind::Sms, "+393331234567"),
            message(
                2,
                "Beta",
                3,
                ChannelKind::Webhook,
                "https://hooks.example/secret/path",
            ),
            message(3, "Gamma", 4, ChannelKind::Email, "g@asl.example"),
        ];
        let ack = AckRow {
            id: 1,
            incident_id: 9,
            subscriber_id: Some(1),
            subscriber_name: "Alfa".into(),
            address_id: Some(1),
            channel: ChannelKind::Sms,
            recipient: "+393331234567".into(),
            delivery_id: Some(2),
            first_sent_at: Some(at(1)),
            acked_at: at(40),
        };
        let board = build(9, messages.clone(), std::slice::from_ref(&ack), false);
        assert_eq!((board.desks_total, board.desks_acknowledged), (3, 1));
        let names: Vec<&str> = board.desks.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["Beta", "Gamma", "Alfa"]);
        let alfa = &board.desks[2];
        assert_eq!(alfa.messages.len(), 2);
        assert_eq!(alfa.messages[1].delivered, Some(true));
        assert_eq!(alfa.messages[0].delivered, None);
        assert_eq!(alfa.acknowledged.as_ref().unwrap().at, at(40));
        assert!(board.desks.iter().all(|d| d.next_escalation.is_none()));
        // A webhook's URL is a credential: whole for administrators only.
        assert!(!board.desks[0].messages[0].recipient.contains("secret"));
        let whole = build(9, messages, &[ack], true);
        assert!(whole.desks[0].messages[0].recipient.contains("secret"));
    }

    #[test]
    fn a_desk_whose_ladder_waits_is_on_the_board_before_its_first_message() {
        let messages = vec![message(1, "Alfa", 1, ChannelKind::Email, "a@asl.example")];
        let next = |desk: i64, name: &str, due: i64| NextEscalation {
            subscriber_id: desk,
            subscriber_name: name.into(),
            step: 1,
            channels: vec![ChannelKind::Sms],
            due_at: at(due),
        };
        let board = with_next_steps(
            build(9, messages, &[], false),
            vec![next(2, "Beta", 300), next(1, "Alfa", 300)],
        );
        assert_eq!((board.desks_total, board.desks_acknowledged), (2, 0));
        let beta = &board.desks[1];
        assert_eq!((beta.name.as_str(), beta.messages.len()), ("Beta", 0));
        assert_eq!(
            beta.next_escalation.as_ref().map(|n| n.due_at),
            Some(at(300))
        );
        assert!(board.desks[0].next_escalation.is_some());
    }

    #[test]
    fn reports_say_delivered_only_when_the_provider_says_so() {
        assert_eq!(delivered(Some("delivered")), Some(true));
        assert_eq!(delivered(Some("undelivered")), Some(false));
        assert_eq!(delivered(Some("accepted")), None);
        assert_eq!(delivered(Some("completed")), Some(true));
        assert_eq!(delivered(Some("no-answer")), Some(false));
        assert_eq!(delivered(Some("machine")), Some(false));
        assert_eq!(delivered(None), None);
    }
}
