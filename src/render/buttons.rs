//! Buttons under a message, for the channels that can show them (Telegram's inline keyboard):
//! the notice of a draft carries Approve and Reject, which answer to the bot, and a link to the
//! console. They are part of what is rendered, so the store keeps them beside the message's text
//! (as JSON) and the outbox hands them to the channel; a channel without buttons ignores them.

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

#[cfg(test)]
mod tests {
    use super::*;

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
