//! The bot: a desk binds its chat with an invite (`/start <invite>`), then asks what is going on
//! (`/status`), follows or mutes services (`/subscribe`, `/unsubscribe`), picks its language
//! (`/lingua`) or stops everything (`/stop`). Built on teloxide's dispatcher; the answers are the
//! macros of `templates/telegram/<language>/bot.j2`.
//!
//! In polling mode only the leading replica asks Telegram for updates (Telegram allows one
//! poller per bot); in webhook mode every replica hands the updates it receives to its own
//! dispatcher. Every answer is read from and written to the store, so any replica can answer.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use minijinja::Value;
use sha2::{Digest, Sha256};
use teloxide::dispatching::{Dispatcher, HandlerExt, UpdateFilterExt, UpdateHandler};
use teloxide::payloads::{
    AnswerCallbackQuerySetters, EditMessageTextSetters, SendMessageSetters, SetMyCommandsSetters,
    SetWebhookSetters,
};
use teloxide::prelude::{Requester, dptree};
use teloxide::stop::{StopToken, mk_stop_token};
use teloxide::types::{
    BotCommand, CallbackQuery, ChatId, ForceReply, Me, Message, ParseMode, Update,
};
use teloxide::update_listeners::{Polling, StatefulListener, UpdateListener};
use teloxide::utils::command::BotCommands;
use teloxide::{Bot, RequestError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::approval::{ApprovalLinks, Button};
use crate::channel::telegram::Pacer;
use crate::cluster::Leadership;
use crate::domain::subscriber::{ChannelKind, Language, TelegramChat};
use crate::render::Renderer;
use crate::settings::{Permission, Role};
use crate::store::{
    ChatBinding, Decision, IncidentFilter, Redeemed, ServiceMode, Store, StoreError, Topic,
};
use crate::wake::Bells;

/// The commands, as Telegram users type them.
#[derive(BotCommands, Clone, Debug, PartialEq, Eq)]
#[command(rename_rule = "lowercase")]
pub enum Command {
    Start(String),
    Help,
    Status,
    Subscribe(String),
    Unsubscribe(String),
    Stop,
    Lingua(String),
}

impl Command {
    /// The command as typed, without its argument (which may be a secret invite).
    fn name(&self) -> &'static str {
        match self {
            Command::Start(_) => "start",
            Command::Help => "help",
            Command::Status => "status",
            Command::Subscribe(_) => "subscribe",
            Command::Unsubscribe(_) => "unsubscribe",
            Command::Stop => "stop",
            Command::Lingua(_) => "lingua",
        }
    }
}

/// What the handlers need.
pub struct BotContext {
    pub store: Arc<dyn Store>,
    pub renderer: Renderer,
    pub default_language: Language,
    /// Shared with the channel: answers and alerts to one chat take turns.
    pub pacer: Arc<Pacer>,
    /// The Approve buttons of draft notices, when the communications office has an audience.
    pub approvals: Option<BotApprovals>,
}

/// What the draft buttons need: their signatures, and whom to wake. Who may press them: a
/// Telegram account linked to a console user whose roles allow deciding on drafts.
pub struct BotApprovals {
    pub links: ApprovalLinks,
    pub wake: Bells,
}

/// How long one `getUpdates` long poll waits for updates.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(25);

/// How many open incidents `/status` lists.
const STATUS_MAX: usize = 15;

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
        .branch(Update::filter_callback_query().endpoint(on_button))
}

/// The console user a Telegram account is linked to, if that user may decide on drafts: who
/// acts when a draft button is pressed or a reason given.
async fn decider(ctx: &BotContext, from: Option<&teloxide::types::User>) -> Option<String> {
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
async fn decide_from_chat(
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
            if decided.deliveries > 0 {
                approvals.wake.ring();
                ctx.store.announce(Topic::Deliveries).await;
            }
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
async fn on_button(bot: Bot, q: CallbackQuery, ctx: Arc<BotContext>) -> HandlerResult {
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
fn prompted_draft(msg: &Message, me: &Me) -> Option<i64> {
    let asked = msg.reply_to_message()?;
    if asked.from.as_ref().map(|u| u.id) != Some(me.id) {
        return None;
    }
    let text = asked.text()?;
    let after = &text[text.find('#')? + 1..];
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The SHA-256 under which an invite token is stored.
pub fn invite_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` can be a deep-link payload (Telegram: 1–64 of `A-Z a-z 0-9 _ -`).
fn is_invite_token(token: &str) -> bool {
    (1..=64).contains(&token.len())
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn is_service_name(service: &str) -> bool {
    (1..=100).contains(&service.len())
        && service
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'))
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

async fn on_command(bot: Bot, msg: Message, cmd: Command, ctx: Arc<BotContext>) -> HandlerResult {
    let chat = msg.chat.id.0.to_string();
    let binding = match ctx.store.chat(ChannelKind::Telegram, &chat).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, chat = %chat, "cannot read the chat's binding");
            let language = ctx.language(None, &msg);
            return reply(&bot, &ctx, msg.chat.id, ctx.say(&language, "trouble", &[])).await;
        }
    };
    let language = ctx.language(binding.as_ref(), &msg);
    let answer = match answer(&ctx, &cmd, &chat, binding, &language).await {
        Ok(text) => text,
        Err(e) => {
            // The command's name only: a /start argument is an invite, still good after a failure.
            tracing::warn!(error = %e, chat = %chat, command = cmd.name(), "bot command failed");
            ctx.say(&language, "trouble", &[])
        }
    };
    reply(&bot, &ctx, msg.chat.id, answer).await
}

/// What to answer `cmd` from `chat`; store errors bubble up and become an apology.
async fn answer(
    ctx: &BotContext,
    cmd: &Command,
    chat: &str,
    binding: Option<ChatBinding>,
    language: &Language,
) -> Result<String, crate::store::StoreError> {
    let say = |name: &str, args: &[Value]| ctx.say(language, name, args);
    let now = Timestamp::now();
    // A console user links this Telegram account, with the link the console gave them.
    if let Command::Start(token) = cmd
        && let Some(approvals) = &ctx.approvals
        && token.trim().starts_with("u_")
    {
        // The payload signs the user's link as it was: once used, it verifies no more.
        let linked = match crate::approval::ApprovalLinks::link_user(token.trim()) {
            Some(id) => ctx
                .store
                .users()
                .await?
                .into_iter()
                .find(|u| u.id == id)
                .and_then(|u| u.telegram_user),
            None => None,
        };
        return Ok(
            match approvals
                .links
                .verify_link(token.trim(), now.as_second(), linked.as_deref())
            {
                Some(_) if chat.starts_with('-') => say("user_link_private", &[]),
                Some(user_id) => {
                    if ctx.store.link_telegram(user_id, Some(chat)).await? {
                        tracing::warn!(chat, user_id, "Telegram account linked to a console user");
                        let entry = crate::store::NewAudit {
                            actor: format!("telegram:{chat}"),
                            action: "user.telegram_linked",
                            incident_id: None,
                            draft_id: None,
                            detail: serde_json::json!({ "user_id": user_id, "telegram_user": chat }),
                            at: now,
                        };
                        if let Err(e) = ctx.store.record_audit(&entry).await {
                            tracing::warn!(error = %e, "cannot audit a Telegram link");
                        }
                        say("user_linked", &[])
                    } else {
                        say("invite_unknown", &[])
                    }
                }
                None => say("invite_expired", &[]),
            },
        );
    }
    if let Command::Start(token) = cmd {
        let token = token.trim();
        if token.is_empty() {
            return Ok(match binding {
                None => say("not_registered", &[]),
                Some(b) if b.address.is_active() => {
                    say("already_active", &[b.subscriber_name.into()])
                }
                Some(b) => {
                    ctx.store
                        .set_address_stopped(b.address.id, false, now)
                        .await?;
                    tracing::info!(chat, subscriber = %b.subscriber_name, "chat resumed its alerts");
                    say("resumed", &[b.subscriber_name.into()])
                }
            });
        }
        if !is_invite_token(token) {
            return Ok(say("invite_unknown", &[]));
        }
        let redeemed = ctx
            .store
            .redeem_invite(ChannelKind::Telegram, &invite_digest(token), chat, now)
            .await?;
        return Ok(match redeemed {
            Redeemed::Bound(b) => {
                tracing::info!(chat, subscriber = %b.subscriber_name, "chat bound with an invite");
                ctx.say(b.language(), "bound", &[b.subscriber_name.clone().into()])
            }
            Redeemed::BoundElsewhere { subscriber_name } => {
                say("bound_elsewhere", &[subscriber_name.into()])
            }
            Redeemed::Expired => say("invite_expired", &[]),
            Redeemed::AlreadyUsed => say("invite_used", &[]),
            Redeemed::Unknown => say("invite_unknown", &[]),
        });
    }
    if *cmd == Command::Help {
        return Ok(say("help", &[]));
    }
    // Everything else is for bound chats only.
    let Some(binding) = binding else {
        return Ok(say("not_registered", &[]));
    };
    let address = binding.address.id;
    Ok(match cmd {
        Command::Status => {
            let open = ctx
                .store
                .list_incidents(&IncidentFilter {
                    open: Some(true),
                    limit: STATUS_MAX as u32 + 1,
                    before: None,
                })
                .await?;
            let more = open.len().saturating_sub(STATUS_MAX);
            let mut listed = Vec::new();
            for i in open.iter().take(STATUS_MAX) {
                let mut services: Vec<String> = ctx
                    .store
                    .incident_alerts(i.id)
                    .await?
                    .into_iter()
                    .map(|a| a.service)
                    .chain(i.labels.get("service").cloned())
                    .collect();
                services.sort();
                services.dedup();
                listed.push(minijinja::context! {
                    id => i.id,
                    title => i.title.clone(),
                    status => i.status.as_str(),
                    severity => i.severity.as_str(),
                    opened_at => i.opened_at.to_string(),
                    services => services,
                });
            }
            say("status", &[Value::from(listed), Value::from(more)])
        }
        Command::Subscribe(service) | Command::Unsubscribe(service) => {
            let service = service.trim();
            let subscribe = matches!(cmd, Command::Subscribe(_));
            if service.is_empty() {
                return Ok(if subscribe {
                    let known = ctx.store.known_services(20).await?;
                    say("subscribe_usage", &[Value::from(known)])
                } else {
                    let services = &binding.address.services;
                    let of = |mode: ServiceMode| -> Value {
                        services
                            .iter()
                            .filter(|(_, m)| **m == mode)
                            .map(|(s, _)| s.clone())
                            .collect::<Vec<_>>()
                            .into()
                    };
                    say(
                        "unsubscribe_usage",
                        &[of(ServiceMode::Follow), of(ServiceMode::Mute)],
                    )
                });
            }
            if !is_service_name(service) {
                return Ok(say("bad_service", &[service.into()]));
            }
            let mode = if subscribe {
                ServiceMode::Follow
            } else {
                ServiceMode::Mute
            };
            ctx.store
                .set_address_service(address, service, Some(mode))
                .await?;
            tracing::info!(
                chat,
                service,
                mode = mode.as_str(),
                "chat changed what it follows"
            );
            say(
                if subscribe {
                    "subscribed"
                } else {
                    "unsubscribed"
                },
                &[service.into()],
            )
        }
        Command::Stop => {
            ctx.store.set_address_stopped(address, true, now).await?;
            tracing::info!(chat, subscriber = %binding.subscriber_name, "chat stopped its alerts");
            say("stopped", &[])
        }
        Command::Lingua(wanted) => {
            let available = ctx.renderer.languages(ChannelKind::Telegram);
            let wanted = wanted.trim().to_ascii_lowercase();
            match Language::try_from(wanted.clone()) {
                Ok(l) if available.contains(&wanted) => {
                    ctx.store.set_address_language(address, Some(&l)).await?;
                    ctx.say(&l, "language_set", &[])
                }
                _ => say("language_usage", &[Value::from(available)]),
            }
        }
        Command::Start(_) | Command::Help => say("help", &[]),
    })
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

/// The command menu shown in Telegram's clients, in each language the templates speak.
async fn publish_commands(bot: &Bot, renderer: &Renderer) {
    for language in renderer.languages(ChannelKind::Telegram) {
        let it = language == "it";
        let pick = |i: &str, e: &str| if it { i.to_owned() } else { e.to_owned() };
        let commands = vec![
            BotCommand::new(
                "status",
                pick("disservizi in corso", "disruptions under way"),
            ),
            BotCommand::new("subscribe", pick("segui un servizio", "follow a service")),
            BotCommand::new(
                "unsubscribe",
                pick("silenzia un servizio", "mute a service"),
            ),
            BotCommand::new(
                "lingua",
                pick("lingua degli avvisi", "language of the alerts"),
            ),
            BotCommand::new("stop", pick("sospendi gli avvisi", "pause the alerts")),
            BotCommand::new("help", pick("aiuto", "help")),
        ];
        if let Err(e) = bot
            .set_my_commands(commands)
            .language_code(language.clone())
            .await
        {
            tracing::warn!(error = %e, language, "cannot publish the bot's command menu");
        }
    }
}

/// Updates received on the webhook, on their way to the dispatcher.
pub type UpdateSender = mpsc::UnboundedSender<Update>;
pub type UpdateReceiver = mpsc::UnboundedReceiver<Update>;

/// A teloxide listener fed by the webhook endpoint.
fn webhook_listener(
    rx: UpdateReceiver,
) -> impl UpdateListener<Err = std::convert::Infallible> + Send {
    let (stop_token, stop_flag) = mk_stop_token();
    let stream = futures_util::StreamExt::take_until(
        futures_util::StreamExt::map(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
            Ok::<Update, std::convert::Infallible>,
        ),
        stop_flag,
    );
    StatefulListener::new(
        (stream, stop_token),
        first_mut,
        |state: &mut (_, StopToken)| state.1.clone(),
    )
}

fn first_mut<A, B>(pair: &mut (A, B)) -> &mut A {
    &mut pair.0
}

/// Runs the bot until `shutdown`: in polling mode while this replica leads, in webhook mode
/// (`webhook` given: the URL to register, its secret, and the updates the endpoint receives)
/// all the time.
pub async fn run_bot(
    bot: Bot,
    ctx: Arc<BotContext>,
    webhook: Option<(url::Url, String, UpdateReceiver)>,
    mut leadership: Leadership,
    shutdown: CancellationToken,
) {
    let errors = Arc::new(|e: RequestError| async move {
        tracing::warn!(error = %e, "Telegram bot request failed");
    });
    let mut delay = Duration::from_secs(1);
    if let Some((url, secret, updates)) = webhook {
        // Every replica sets the same webhook; Telegram keeps the last, which is the same.
        loop {
            match bot
                .set_webhook(url.clone())
                .secret_token(secret.clone())
                .await
            {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot set the Telegram webhook; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
            }
        }
        // The dispatcher asks getMe once and gives up if that fails: ask until it answers.
        delay = Duration::from_secs(1);
        while let Err(e) = bot.get_me().await {
            tracing::warn!(error = %e, "Telegram does not answer getMe; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(60));
        }
        publish_commands(&bot, &ctx.renderer).await;
        let mut dispatcher = Dispatcher::builder(bot.clone(), schema())
            .dependencies(dptree::deps![ctx.clone()])
            .error_handler(errors.clone())
            .build();
        let token = dispatcher.shutdown_token();
        let listener_errors = Arc::new(|_: std::convert::Infallible| async {});
        let run = dispatcher.try_dispatch_with_listener(webhook_listener(updates), listener_errors);
        tokio::pin!(run);
        tokio::select! {
            result = &mut run => {
                if let Err(e) = result {
                    tracing::error!(error = %e, "the Telegram bot stopped: Telegram refused getMe");
                }
                return;
            }
            _ = shutdown.cancelled() => {}
        }
        stop_dispatching(token, run).await;
        return;
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = leadership.wait() => {}
        }
        tracing::info!("leading: polling Telegram for bot updates");
        publish_commands(&bot, &ctx.renderer).await;
        let polling = Polling::builder(bot.clone())
            .timeout(POLL_TIMEOUT)
            .delete_webhook()
            .await
            .build();
        let mut dispatcher = Dispatcher::builder(bot.clone(), schema())
            .dependencies(dptree::deps![ctx.clone()])
            .error_handler(errors.clone())
            .build();
        let token = dispatcher.shutdown_token();
        let listener_errors = Arc::new(|e: RequestError| async move {
            tracing::warn!(error = %e, "polling Telegram for updates failed");
        });
        let run = dispatcher.try_dispatch_with_listener(polling, listener_errors);
        tokio::pin!(run);
        // Some(failed) when the dispatcher ended by itself; None on shutdown or lost leadership.
        let ended = tokio::select! {
            result = &mut run => Some(result.is_err()),
            _ = shutdown.cancelled() => None,
            _ = leadership.lost() => {
                tracing::info!("no longer leading: another replica polls Telegram");
                None
            }
        };
        stop_dispatching(token, run).await;
        if shutdown.is_cancelled() {
            return;
        }
        if ended == Some(true) {
            tracing::warn!("cannot start polling Telegram; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(60));
        } else {
            delay = Duration::from_secs(1);
        }
    }
}

/// Asks the dispatcher to finish the updates it is handling, for a moment; then drops it, with
/// the long poll it may be waiting on (Telegram answers that only after 25 s).
async fn stop_dispatching<F: std::future::Future>(
    token: teloxide::dispatching::ShutdownToken,
    run: std::pin::Pin<&mut F>,
) {
    let _ = tokio::time::timeout(STOP_GRACE, async {
        if let Ok(done) = token.shutdown() {
            done.await;
        }
        run.await;
    })
    .await;
}

const STOP_GRACE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_as_users_type_them() {
        let parse = |t: &str| Command::parse(t, "banditore_bot").ok();
        assert_eq!(
            parse("/start abc_DEF-1"),
            Some(Command::Start("abc_DEF-1".into()))
        );
        assert_eq!(parse("/start"), Some(Command::Start(String::new())));
        assert_eq!(parse("/status@banditore_bot"), Some(Command::Status));
        assert_eq!(
            parse("/subscribe cup-backend"),
            Some(Command::Subscribe("cup-backend".into()))
        );
        assert_eq!(parse("/lingua en"), Some(Command::Lingua("en".into())));
        assert_eq!(parse("/status@other_bot"), None);
        assert_eq!(parse("hello"), None);
    }

    #[test]
    fn invite_tokens_and_service_names() {
        assert!(is_invite_token("Ab3_-x"));
        assert!(!is_invite_token(""));
        assert!(!is_invite_token("a b"));
        assert!(!is_invite_token(&"a".repeat(65)));
        assert!(is_service_name("cup-backend"));
        assert!(!is_service_name("<b>"));
        assert_eq!(invite_digest("x").len(), 64);
    }
}
