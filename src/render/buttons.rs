//! Buttons under a message, for the channels that can show them (Telegram's inline keyboard):
//! the notice of a draft carries Approve and Reject, which answer to the bot, and a link to the
//! console; a desk's message carries "seen", which answers with its acknowledgement token
//! (added per recipient when it is sent). The draft's are part of what is rendered, so the
//! store keeps them beside the message's text (as JSON) and the outbox hands them to the
//! channel; a channel without buttons ignores them.

use serde::{Deserialize, Serialize};

/// Rows of buttons, top to bottom, each row left to right.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Buttons(pub Vec<Vec<Button>>);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    pub label: String,
    #[serde(flatten)]
    pub action: ButtonAction,
}

/// What pressing a button does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ButtonAction {
    /// Sends this data back to the bot (at most 64 bytes in Telegram).
    Callback(String),
    /// Opens this link.
    Url(String),
}

/// What an acknowledgement button's data starts with; the token follows.
pub const ACK_DATA: &str = "ack:";

/// The "seen" button's labels, Italian and English, before anyone presses it.
pub const ACK_LABELS: [&str; 2] = ["✅ Ricevuto", "✅ Seen"];

/// Telegram's limit on a button's data, in bytes (1 to 64).
pub const MAX_CALLBACK_BYTES: usize = 64;

/// The button under a desk's message by which it says it has seen the incident, labelled in
/// the message's language (Italian, else English): it answers to the bot with the token, or
/// opens the acknowledgement page when the token would not fit in a button's data.
pub fn ack_button(language: &str, token: &str, url: &str) -> Button {
    let label = match language {
        "it" => ACK_LABELS[0],
        _ => ACK_LABELS[1],
    };
    let data = format!("{ACK_DATA}{token}");
    let action = if data.len() <= MAX_CALLBACK_BYTES {
        ButtonAction::Callback(data)
    } else {
        ButtonAction::Url(url.to_owned())
    };
    Button {
        label: label.to_owned(),
        action,
    }
}

/// The token an acknowledgement button's data carries; `None` for any other button.
pub fn ack_token(data: &str) -> Option<&str> {
    data.strip_prefix(ACK_DATA)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_button_carries_its_token_or_falls_back_to_the_page() {
        let b = ack_button(
            "it",
            "12.42.abcdefghijklmnopqrstuv",
            "https://b.example/ack/x",
        );
        assert_eq!(b.label, "✅ Ricevuto");
        let ButtonAction::Callback(data) = &b.action else {
            panic!("{b:?}");
        };
        assert_eq!(ack_token(data), Some("12.42.abcdefghijklmnopqrstuv"));
        assert_eq!(ack_button("en", "1.1.x", "u").label, "✅ Seen");
        assert_eq!(ack_button("de", "1.1.x", "u").label, "✅ Seen");
        // The longest ids there are: 4 + 19 + 1 + 19 + 1 + 22 = 66 bytes, past Telegram's 64.
        let long = format!("{}.{}.{}", i64::MAX, i64::MAX, "s".repeat(22));
        assert_eq!(
            ack_button("it", &long, "https://b.example/ack/long").action,
            ButtonAction::Url("https://b.example/ack/long".into())
        );
        let edge = format!("{}.{}", "1".repeat(37), "s".repeat(22));
        assert_eq!(ACK_DATA.len() + edge.len(), MAX_CALLBACK_BYTES);
        assert!(matches!(
            ack_button("it", &edge, "u").action,
            ButtonAction::Callback(_)
        ));
        assert_eq!(ack_token("ap:1:x"), None);
    }

    #[test]
    fn buttons_are_kept_as_plain_json() {
        let buttons = Buttons(vec![
            vec![Button {
                label: "Approve".into(),
                action: ButtonAction::Callback("ap:1:x".into()),
            }],
            vec![Button {
                label: "Open".into(),
                action: ButtonAction::Url("https://b.example/console/drafts/1".into()),
            }],
        ]);
        let json = serde_json::to_string(&buttons).unwrap();
        assert_eq!(
            json,
            r#"[[{"label":"Approve","callback":"ap:1:x"}],[{"label":"Open","url":"https://b.example/console/drafts/1"}]]"#
        );
        assert_eq!(serde_json::from_str::<Buttons>(&json).unwrap(), buttons);
    }
}
