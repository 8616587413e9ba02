//! The "seen" button under a desk's message: a press records the desk's acknowledgement through
//! [`crate::ack::Acknowledgements::by_token`] (the button's data carries the token signed for
//! the chat's address and the incident), answers the press with a short text, and turns the
//! button into "seen by <first name> at HH:MM" for everyone in the chat. A press on a button
//! that shows who saw it answers who did; forged data is answered "not valid" and records
//! nothing. Whoever sees the message in the chat may press: the chat is the desk's.

use std::sync::Arc;

use jiff::Timestamp;
use minijinja::Value;
use teloxide::Bot;
use teloxide::payloads::{AnswerCallbackQuerySetters, EditMessageReplyMarkupSetters};
use teloxide::prelude::Requester;
use teloxide::types::{CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup};
use teloxide::{ApiError, RequestError};

use super::{BotContext, HandlerResult};
use crate::domain::subscriber::{ChannelKind, Language, TelegramChat};
use crate::render::telegram::plain;
use crate::store::{AckRow, Acknowledged};

/// Whether a press is on a "seen" button.
pub(super) fn is_ack(q: CallbackQuery) -> bool {
    q.data
        .as_deref()
        .and_then(crate::render::ack_token)
        .is_some()
}

/// The chat's language: its binding's, else the deployment's.
async fn language(ctx: &BotContext, q: &CallbackQuery) -> Language {
    let Some(chat) = q.message.as_ref().map(|m| m.chat().id) else {
        return ctx.default_language.clone();
    };
    match ctx
        .store
        .chat(ChannelKind::Telegram, &chat.0.to_string())
        .await
    {
        Ok(Some(binding)) => binding.language().clone(),
        _ => ctx.default_language.clone(),
    }
}

/// A press on a "seen" button.
pub(super) async fn on_press(bot: Bot, q: CallbackQuery, ctx: Arc<BotContext>) -> HandlerResult {
    let language = language(&ctx, &q).await;
    // Answers and labels are plain text: the templates' Telegram escaping is undone.
    let say = |name: &str, args: &[Value]| plain(&ctx.say(&language, name, args));
    let Some(token) = q.data.as_deref().and_then(crate::render::ack_token) else {
        return Ok(());
    };
    let outcome = ctx.acks.by_token(token, Timestamp::now()).await;
    let at = |a: &AckRow| Value::from(a.acked_at.to_string());
    let (answer, label) = match &outcome {
        Ok(Acknowledged::Recorded(a)) => (
            say("ack_recorded", &[]),
            Some(say(
                "ack_seen",
                &[Value::from(q.from.first_name.clone()), at(a)],
            )),
        ),
        Ok(Acknowledged::Already(a)) => {
            let channel = Value::from(a.channel.as_str());
            // A button that already names who saw it stays as it is.
            let asking = q
                .message
                .as_ref()
                .and_then(|m| m.regular_message())
                .and_then(|m| m.reply_markup())
                .is_some_and(|k| {
                    k.inline_keyboard
                        .iter()
                        .flatten()
                        .any(|b| crate::render::ACK_LABELS.contains(&b.text.as_str()))
                });
            (
                say("ack_already", &[channel.clone(), at(a)]),
                asking.then(|| say("ack_seen_before", &[channel, at(a)])),
            )
        }
        Ok(Acknowledged::NotSent) => {
            tracing::warn!(
                from = q.from.id.0,
                "a \"seen\" button pressed with data that is not ours"
            );
            (say("ack_not_valid", &[]), None)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot record a desk's acknowledgement from Telegram");
            (say("trouble", &[]), None)
        }
    };
    // Telegram shows at most 200 characters.
    let answer: String = answer.chars().take(200).collect();
    if let Err(e) = bot.answer_callback_query(q.id.clone()).text(answer).await {
        // Too old (Telegram waits only seconds for the answer): the press still counted.
        tracing::info!(error = %e, "the press on a \"seen\" button was not answered");
    }
    let (Some(label), Some(message)) = (label, q.message.as_ref()) else {
        return Ok(());
    };
    let data = q.data.clone().unwrap_or_default();
    let keyboard = InlineKeyboardMarkup::new([[InlineKeyboardButton::callback(label, data)]]);
    let chat = message.chat().id;
    let _turn = ctx.pacer.turn_patiently(&TelegramChat::Id(chat.0)).await;
    match bot
        .edit_message_reply_markup(chat, message.id())
        .reply_markup(keyboard)
        .await
    {
        // Pressed again on a button that already says it.
        Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => Ok(()),
        Err(e) => {
            tracing::info!(error = %e, "cannot show under the message who saw it");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::render::Renderer;

    fn renderer() -> Renderer {
        let it = Language::try_from("it".to_owned()).unwrap();
        Renderer::new(
            std::path::Path::new(""),
            &it,
            jiff::tz::TimeZone::UTC,
            &crate::channel::forms(),
        )
        .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A first name is the presser's to choose: the button's label (plain text) shows it
        /// as written, whatever it holds.
        #[test]
        fn any_first_name_is_shown_as_written(name in crate::hostile::text()) {
            let r = renderer();
            for lang in ["it", "en"] {
                let language = Language::try_from(lang.to_owned()).unwrap();
                let args = [
                    Value::from(name.clone()),
                    Value::from("2026-12-05T09:42:00Z"),
                ];
                let label = plain(&r.bot_text(&language, "ack_seen", &args).unwrap());
                prop_assert!(label.contains(&name), "{label:?}");
                prop_assert!(label.ends_with("09:42"), "{label:?}");
            }
        }
    }
}
