//! The bot: a desk binds its chat with an invite (`/start <invite>`), then asks what is going on
//! (`/status`), follows or mutes services (`/subscribe`, `/unsubscribe`), picks its language
//! (`/lingua`) or stops everything (`/stop`). Built on teloxide's dispatcher; the answers are the
//! macros of `templates/telegram/<language>/bot.j2`.
//!
//! In polling mode only the leading replica asks Telegram for updates (Telegram allows one
//! poller per bot); in webhook mode every replica hands the updates it receives to its own
//! dispatcher. Every answer is read from and written to the store, so any replica can answer.
//!
//! The bot is an input, like `web/`: it sends only answers to the chat that wrote, and takes
//! from the Telegram channel its client construction and pacer. `commands.rs` answers the
//! commands, `drafts.rs` the draft notices' buttons, `acks.rs` the "seen" button under a desk's
//! message, `run.rs` runs the dispatcher.

mod acks;
mod commands;
mod drafts;
mod run;
mod web;

use std::sync::Arc;

use minijinja::Value;
use teloxide::dispatching::{HandlerExt, UpdateFilterExt, UpdateHandler};
use teloxide::payloads::SendMessageSetters;
use teloxide::prelude::{Requester, dptree};
use teloxide::types::{ChatId, Me, Message, ParseMode, Update};
use teloxide::{Bot, RequestError};

pub use commands::invite_digest;
pub use run::{POLL_TIMEOUT, UpdateReceiver, UpdateSender, run_bot};
pub use web::{HandOver, TelegramWeb, bot_username, hand_over};

use crate::approval::ApprovalLinks;
use crate::channel::telegram::Pacer;
use crate::domain::subscriber::{ChannelKind, Language, TelegramChat};
use crate::render::Renderer;
use crate::store::{ChatBinding, Decision, Store};
use crate::wake::Bells;
use commands::{Command, on_command};
use drafts::{decide_from_chat, decider, on_button, prompted_draft};

/// What the handlers need.
pub struct BotContext {
    pub store: Arc<dyn Store>,
    pub renderer: Renderer,
    pub default_language: Language,
    /// Shared with the channel: answers and alerts to one chat take turns.
    pub pacer: Arc<Pacer>,
    /// Desks' acknowledgements, from the "seen" button under their messages.
    pub acks: crate::ack::Acknowledgements,
    /// The Approve buttons of draft notices, when the communications office has an audience.
    pub approvals: Option<BotApprovals>,
}

/// What the draft buttons need: their signatures, and whom to wake. Who may press them: a
/// Telegram account linked to a console user whose roles allow deciding on drafts.
pub struct BotApprovals {
    pub links: ApprovalLinks,
    pub wake: Bells,
}

type HandlerResult = Result<(), RequestError>;

fn schema() -> UpdateHandler<RequestError> {
    dptree::entry()
        .branch(
            Update::filter_message()
                .branch(
                    dptree::entry()
                        .filter_command::<Command>()
                        .endpoint(on_command),
                )
                .branch(dptree::endpoint(on_message)),
        )
        .branch(
            Update::filter_callback_query()
                .branch(dptree::filter(acks::is_ack).endpoint(acks::on_press))
                .branch(dptree::endpoint(on_button)),
        )
}

impl BotContext {
    /// A bot answer in `language`; if the template fails, a plain apology rather than silence.
    fn say(&self, language: &Language, name: &str, args: &[Value]) -> String {
        self.renderer
            .bot_text(language, name, args)
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, answer = name, "bot template failed");
                "Banditore: /help".to_owned()
            })
    }

    /// The language to answer a chat in: its own, its subscriber's, the writer's Telegram
    /// language if there are templates for it, or the default.
    fn language(&self, binding: Option<&ChatBinding>, msg: &Message) -> Language {
        if let Some(b) = binding {
            return b.language().clone();
        }
        let available = self.renderer.languages(ChannelKind::Telegram);
        msg.from
            .as_ref()
            .and_then(|u| u.language_code.clone())
            .and_then(|code| Language::try_from(code).ok())
            .filter(|l| available.iter().any(|a| a == l.primary()))
            .unwrap_or_else(|| self.default_language.clone())
    }
}

/// Answers in `chat`, in turn with the alerts, waiting out Telegram's `retry_after` a few times.
async fn reply(bot: &Bot, ctx: &BotContext, chat: ChatId, text: String) -> HandlerResult {
    // Lists (open incidents, followed services) can outgrow one message: cut, never refused.
    let text = crate::render::telegram::truncate(&text, crate::render::telegram::MAX_LEN);
    let mut tries = 0;
    loop {
        let turn = ctx.pacer.turn_patiently(&TelegramChat::Id(chat.0)).await;
        let sent = bot
            .send_message(chat, text.clone())
            .parse_mode(ParseMode::Html)
            .await;
        drop(turn);
        match sent {
            Err(RequestError::RetryAfter(after)) if tries < 3 => {
                ctx.pacer.freeze(after.duration());
                tries += 1;
            }
            sent => return sent.map(|_| ()),
        }
    }
}

/// Messages that are not one of our commands.
async fn on_message(bot: Bot, msg: Message, me: Me, ctx: Arc<BotContext>) -> HandlerResult {
    if let Some(to) = msg.migrate_to_chat_id() {
        // The group became a supergroup with a new id: its address follows.
        let (from, to) = (msg.chat.id.0.to_string(), to.0.to_string());
        match ctx.store.move_chat(ChannelKind::Telegram, &from, &to).await {
            Ok(n) if n > 0 => tracing::info!(from, to, "group chat moved to a supergroup"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, from, to, "cannot move the chat's address"),
        }
        return Ok(());
    }
    let Some(text) = msg.text() else {
        return Ok(());
    };
    // The reason for rejecting a draft, given as a reply to the bot's question.
    if let (Some(approvals), Some(id)) = (&ctx.approvals, prompted_draft(&msg, &me))
        && !text.trim().is_empty()
        && let Some(who) = decider(&ctx, msg.from.as_ref()).await
    {
        let (_, answer) = decide_from_chat(
            &ctx,
            approvals,
            id,
            Decision::Reject {
                reason: text.trim().to_owned(),
            },
            &who,
        )
        .await;
        return reply(&bot, &ctx, msg.chat.id, answer).await;
    }
    let command = text.starts_with('/');
    let to_us = text
        .split_whitespace()
        .next()
        .and_then(|word| word.split_once('@'))
        .is_some_and(|(_, bot)| bot.eq_ignore_ascii_case(me.username()));
    // In groups, people talk to each other: answer only commands addressed to this bot.
    if !msg.chat.is_private() && !to_us {
        return Ok(());
    }
    let binding = ctx
        .store
        .chat(ChannelKind::Telegram, &msg.chat.id.0.to_string())
        .await
        .ok()
        .flatten();
    let language = ctx.language(binding.as_ref(), &msg);
    let answer = match (command, binding) {
        (true, _) => ctx.say(&language, "unknown_command", &[]),
        (false, Some(_)) => ctx.say(&language, "help", &[]),
        (false, None) => ctx.say(&language, "not_registered", &[]),
    };
    reply(&bot, &ctx, msg.chat.id, answer).await
}
