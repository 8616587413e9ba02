//! The draft notices' buttons: Approve decides at once, Reject asks for the reason, which the
//! reply to that question gives. Only a Telegram account linked to a console user whose roles
//! allow deciding on drafts may press them.

use std::sync::Arc;

use jiff::Timestamp;
use minijinja::Value;
use teloxide::Bot;
use teloxide::payloads::{AnswerCallbackQuerySetters, EditMessageTextSetters, SendMessageSetters};
use teloxide::prelude::Requester;
use teloxide::types::{CallbackQuery, ForceReply, Me, Message, ParseMode};

use super::{BotApprovals, BotContext, HandlerResult};
use crate::approval::Button;
use crate::domain::subscriber::TelegramChat;
use crate::settings::{Permission, Role};
use crate::store::{Decision, StoreError, Topic};

/// The console user a Telegram account is linked to, if that user may decide on drafts: who
/// acts when a draft button is pressed or a reason given.
pub(super) async fn decider(
    ctx: &BotContext,
    from: Option<&teloxide::types::User>,
) -> Option<String> {
    let from = from?;
    match ctx.store.user_by_telegram(&from.id.0.to_string()).await {
        Ok(Some(user)) => {
            let allowed = user
                .roles
                .iter()
                .filter_map(|r| r.parse::<Role>().ok())
                .any(|r| r.allows(Permission::Drafts));
            allowed.then(|| match from.username.as_deref() {
                Some(tg) => format!("{} (@{tg})", user.username),
                None => user.username,
            })
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the linked console users");
            None
        }
    }
}

/// Approves or rejects a draft for the office; the answer to show.
pub(super) async fn decide_from_chat(
    ctx: &BotContext,
    approvals: &BotApprovals,
    id: i64,
    decision: Decision,
    who: &str,
) -> (bool, String) {
    let language = ctx.default_language.clone();
    let say = |name: &str, args: &[Value]| ctx.say(&language, name, args);
    let actor = format!("telegram: {who}");
    let rejected = matches!(decision, Decision::Reject { .. });
    match ctx
        .store
        .decide_draft(id, &decision, &actor, Timestamp::now())
        .await
    {
        Ok(Some(decided)) => {
            let what = if rejected { "rejected" } else { "approved" };
            tracing::info!(draft = id, by = %actor, decision = what, deliveries = decided.deliveries, "draft decided from Telegram");
            metrics::counter!("banditore_drafts_decided_total", "decision" => what).increment(1);
            // As from the console: the bell wakes the dispatchers and the citizen writer,
            // which writes what the affected lists hear even when nothing else was written.
            approvals.wake.ring();
            ctx.store.announce(Topic::Deliveries).await;
            let name = if rejected {
                "draft_rejected"
            } else {
                "draft_approved"
            };
            (
                true,
                say(name, &[Value::from(id), Value::from(who.to_owned())]),
            )
        }
        Ok(None) => (false, say("draft_not_allowed", &[])),
        Err(StoreError::Conflict(_)) => {
            let state = ctx
                .store
                .draft(id)
                .await
                .ok()
                .flatten()
                .map_or_else(String::new, |d| d.state);
            (
                false,
                say("draft_decided", &[Value::from(id), Value::from(state)]),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, draft = id, "cannot decide the draft from Telegram");
            (false, say("trouble", &[]))
        }
    }
}

/// A draft notice's buttons: signed, pressed in a chat of the communications office. Approve
/// publishes (and the notice says who decided); Reject asks for the reason, which the reply to
/// that question gives.
pub(super) async fn on_button(bot: Bot, q: CallbackQuery, ctx: Arc<BotContext>) -> HandlerResult {
    let Some(approvals) = &ctx.approvals else {
        return bot.answer_callback_query(q.id.clone()).await.map(|_| ());
    };
    let Some((chat, message_id)) = q.message.as_ref().map(|m| (m.chat().id, m.id())) else {
        return bot.answer_callback_query(q.id.clone()).await.map(|_| ());
    };
    let language = ctx.default_language.clone();
    let say = |name: &str, args: &[Value]| ctx.say(&language, name, args);
    let button = q
        .data
        .as_deref()
        .and_then(|d| approvals.links.verify_button(d));
    let who = decider(&ctx, Some(&q.from)).await;
    let (Some((button, id)), Some(who)) = (button, who) else {
        tracing::warn!(
            chat = chat.0,
            from = q.from.id.0,
            "draft button pressed by someone who may not decide, or forged"
        );
        return bot
            .answer_callback_query(q.id.clone())
            .text(say("draft_not_allowed", &[]))
            .show_alert(true)
            .await
            .map(|_| ());
    };
    let answer = match button {
        Button::Approve => {
            let (done, text) = decide_from_chat(
                &ctx,
                approvals,
                id,
                Decision::Approve { channels: None },
                &who,
            )
            .await;
            if done {
                // The notice says who decided, and loses its buttons.
                let _ = bot
                    .edit_message_text(chat, message_id, text.clone())
                    .parse_mode(ParseMode::Html)
                    .await;
            }
            text
        }
        Button::Reject => {
            let _turn = ctx.pacer.turn_patiently(&TelegramChat::Id(chat.0)).await;
            bot.send_message(chat, say("draft_reason_prompt", &[Value::from(id)]))
                .parse_mode(ParseMode::Html)
                .reply_markup(ForceReply::new().selective())
                .await?;
            String::new()
        }
    };
    let mut answer_query = bot.answer_callback_query(q.id.clone());
    if !answer.is_empty() {
        answer_query = answer_query.text(crate::render::telegram::truncate(&answer, 190));
    }
    answer_query.await.map(|_| ())
}

/// The draft a reason prompt asks about: the number after `#` in the bot's own message.
pub(super) fn prompted_draft(msg: &Message, me: &Me) -> Option<i64> {
    let asked = msg.reply_to_message()?;
    if asked.from.as_ref().map(|u| u.id) != Some(me.id) {
        return None;
    }
    let text = asked.text()?;
    let after = &text[text.find('#')? + 1..];
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}
