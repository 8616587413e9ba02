//! The commands a chat types: `/start` with an invite (or a console user's link), `/help`,
//! `/status`, `/subscribe`, `/unsubscribe`, `/stop`, `/lingua`, and the menu Telegram's clients
//! show for them.

use std::sync::Arc;

use jiff::Timestamp;
use minijinja::Value;
use sha2::{Digest, Sha256};
use teloxide::Bot;
use teloxide::payloads::SetMyCommandsSetters;
use teloxide::prelude::Requester;
use teloxide::types::{BotCommand, Message};
use teloxide::utils::command::BotCommands;

use super::{BotContext, HandlerResult, reply};
use crate::domain::subscriber::{ChannelKind, Language};
use crate::render::Renderer;
use crate::store::{ChatBinding, IncidentFilter, Redeemed, ServiceMode};

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

/// How many open incidents `/status` lists.
const STATUS_MAX: usize = 15;

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

pub(super) async fn on_command(
    bot: Bot,
    msg: Message,
    cmd: Command,
    ctx: Arc<BotContext>,
) -> HandlerResult {
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
    // A console user links this Telegram account, with the link the console gave them
    // (`u_<user>_<expiry>_<tag>`). Invites are never minted with that prefix; one handed out
    // before that rule is an invite unless its next part is a number too.
    if let Command::Start(token) = cmd
        && let Some(approvals) = &ctx.approvals
        && crate::approval::ApprovalLinks::link_user(token.trim()).is_some()
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

/// The command menu shown in Telegram's clients, in each language the templates speak.
pub(super) async fn publish_commands(bot: &Bot, renderer: &Renderer) {
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
