//! A local stand-in for the Telegram Bot API, good enough for teloxide: `POST
//! {api_url}/bot{token}/{method}` with a JSON, form or multipart body, answered with the Bot API
//! envelope `{"ok":true,"result":…}` or `{"ok":false,"error_code":N,"description":"…"}`.
//! Descriptions are Telegram's, character for character, because teloxide matches them exactly.
//!
//! It knows a few chats, parses HTML parse mode like Telegram (and rejects what Telegram rejects),
//! enforces the Bot FAQ's flood limits with sliding windows (one message a second in any chat,
//! twenty a minute in a group, about thirty a second in all), refuses chats as Telegram does
//! (blocked, deactivated, never started, bot kicked or demoted, group deactivated), moves a group
//! to a supergroup (400 with `parameters.migrate_to_chat_id`), can be scripted to fail, flood or
//! send a message and lose the answer, and delivers user messages through `getUpdates` long
//! polling or a webhook. A user's press on an inline button is a `callback_query` update, whose
//! id `answerCallbackQuery` answers once (with at most 200 characters of text);
//! `editMessageReplyMarkup` changes a sent message's buttons, refusing an edit that changes
//! nothing as Telegram does.
//! Everything it receives and sends is recorded for the assertions.

// Shared by the integration tests and a benchmark (`#[path]`), which each use part of it.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Form, FromRequest, Request, State as AxumState};
use axum::http::{Method, StatusCode, header::CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// The only token the double accepts; any other gets 401 "Unauthorized".
pub const TELEGRAM_TOKEN: &str = "7000001:AAtest-token_0123456789abcdefghijkl";
pub const BOT_USERNAME: &str = "banditore_test_bot";
pub const BOT_ID: i64 = 7_000_001;

/// Update ids count up from here, as Telegram's never start at 1.
const FIRST_UPDATE_ID: i64 = 100_000;
/// Attempts to deliver one update to the webhook, with 100, 200, 400 ms between them.
const WEBHOOK_ATTEMPTS: u32 = 4;
const MAX_TEXT_UTF16: usize = 4096;
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

/// Telegram's answers to an `answerCallbackQuery` for an id it does not know, or knows as
/// answered or expired, and to an edit that changes nothing or finds no message.
const QUERY_INVALID: &str =
    "Bad Request: query is too old and response timeout expired or query ID is invalid";
const NOT_MODIFIED: &str = "Bad Request: message is not modified: specified new message content \
                            and reply markup are exactly the same as a current content and reply \
                            markup of the message";
const EDIT_NOT_FOUND: &str = "Bad Request: message to edit not found";
/// An inline button's `callback_data` outside 1 to 64 bytes.
const BUTTON_DATA_INVALID: &str = "Bad Request: BUTTON_DATA_INVALID";
const BUTTON_URL_INVALID: &str = "Bad Request: BUTTON_URL_INVALID";
/// The answer's text that Telegram shows: 0 to 200 characters; a longer one is refused.
pub const MAX_ANSWER_CHARS: usize = 200;
/// Telegram's answer to an `answerCallbackQuery` whose text is too long.
const ANSWER_TOO_LONG: &str = "Bad Request: MESSAGE_TOO_LONG";

const WEBHOOK_CONFLICT: &str = "Conflict: can't use getUpdates method while webhook is active; \
                                use deleteWebhook to delete the webhook first";
const TERMINATED: &str = "Conflict: terminated by other getUpdates request; \
                          make sure that only one bot instance is running";

/// The flood limits the double enforces on `sendMessage` (Telegram's Bot FAQ numbers by default:
/// "avoid sending more than one message per second" inside a particular chat, "not more than 20
/// messages per minute to the same group", about 30 a second in all).
#[derive(Clone, Debug)]
pub struct TelegramOptions {
    /// Sliding 1-second window for sendMessage over all chats; None = no limit. Default Some(30).
    pub overall_per_second: Option<u32>,
    /// Per chat of any kind: at most this many per 1-second sliding window. Default Some(1).
    pub per_chat_per_second: Option<u32>,
    /// Per group/supergroup/channel chat, besides the per-second limit: at most this many per
    /// 60-second sliding window. Default Some(20).
    pub group_per_minute: Option<u32>,
}

/// Why Telegram refuses to deliver to a chat. The answers are Telegram's own bodies, as clients
/// (teloxide's `ApiError`, grammY, telegraf) match them word for word; the Bot API pages do not
/// list them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 403 "Forbidden: bot was blocked by the user".
    Blocked,
    /// 403 "Forbidden: user is deactivated": the account was deleted or banned.
    UserDeactivated,
    /// 403 "Forbidden: bot can't initiate conversation with a user": a user id that never
    /// pressed Start.
    NeverStarted,
    /// 403 "Forbidden: bot was kicked from the group chat" (or "supergroup chat", "channel
    /// chat", after the chat's kind).
    Kicked,
    /// 400 "Bad Request: need administrator rights in the channel chat": a channel where the
    /// bot may no longer post.
    NotAdmin,
    /// 400 "Bad Request: group is deactivated".
    GroupDeactivated,
}

impl Default for TelegramOptions {
    fn default() -> Self {
        TelegramOptions {
            overall_per_second: Some(30),
            per_chat_per_second: Some(1),
            group_per_minute: Some(20),
        }
    }
}

/// A message the bot sent successfully (answered 200).
#[derive(Clone, Debug)]
pub struct SentMessage {
    /// As the client wrote it: a number rendered as a string ("123", "-100…"), or "@name".
    pub chat_id: String,
    /// The raw text, markup included.
    pub text: String,
    pub parse_mode: Option<String>,
    /// What the user sees: tags removed and entities decoded in HTML mode, else `text`.
    pub visible: String,
    pub at: Instant,
    pub message_id: i64,
    /// The whole request body (reply_markup, link_preview_options, …).
    pub body: serde_json::Value,
}

/// The bot's answer to a press (`answerCallbackQuery`), as accepted.
#[derive(Clone, Debug)]
pub struct CallbackAnswer {
    pub query_id: String,
    pub text: Option<String>,
    pub show_alert: bool,
}

/// One request as received: method lower-cased (`"sendmessage"`), parameters, the HTTP status
/// answered (0 while it is still in flight, e.g. a long poll, or if the client went away).
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub body: serde_json::Value,
    pub status: u16,
    pub at: Instant,
}

/// The Bot API double, serving on a loopback port until dropped.
pub struct TelegramDouble {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

struct Shared {
    options: TelegramOptions,
    state: Mutex<State>,
    /// Wakes long polls: a new update, a new getUpdates, a webhook set.
    wake: Notify,
    http: reqwest::Client,
}

#[derive(Default)]
struct State {
    chats: HashMap<i64, Chat>,
    /// Lower-cased channel username (without "@") → chat id.
    channels: HashMap<String, i64>,
    refused: HashMap<i64, Refusal>,
    /// Groups that became supergroups: old id → new id.
    migrated: HashMap<i64, i64>,
    /// The token was revoked (BotFather's /revoke): every method answers 401 "Unauthorized".
    revoked: bool,
    fail_next: usize,
    /// sendMessage calls still to be accepted with their answer lost.
    lose_next: usize,
    flood: Option<(Instant, u32)>,
    /// When accepted messages were sent, over all chats and per chat (the sliding windows).
    accepted: VecDeque<Instant>,
    accepted_by_chat: HashMap<i64, VecDeque<Instant>>,
    last_message_id: i64,
    last_update_id: i64,
    /// Updates not yet confirmed (getUpdates) or delivered (webhook), oldest first.
    pending: VecDeque<Value>,
    /// Bumped by every getUpdates; a long poll that sees it change was superseded.
    poll_generation: u64,
    webhook: Option<Webhook>,
    sent: Vec<SentMessage>,
    requests: Vec<Recorded>,
    throttled: Vec<Instant>,
    deliveries: Vec<(i64, u16)>,
    /// Callback query ids given out by presses and not answered yet.
    open_queries: HashSet<String>,
    answers: Vec<CallbackAnswer>,
}

#[derive(Clone, PartialEq)]
struct Webhook {
    url: String,
    secret: Option<String>,
}

#[derive(Clone)]
struct Chat {
    id: i64,
    kind: ChatKind,
}

#[derive(Clone)]
enum ChatKind {
    Private {
        first_name: String,
        language_code: Option<String>,
    },
    Group {
        title: String,
    },
    Channel {
        username: String,
    },
}

impl TelegramDouble {
    /// Starts with the default flood limits.
    pub async fn start() -> TelegramDouble {
        TelegramDouble::start_with(TelegramOptions::default()).await
    }

    pub async fn start_with(options: TelegramOptions) -> TelegramDouble {
        let state = State {
            last_update_id: FIRST_UPDATE_ID - 1,
            ..State::default()
        };
        let shared = Arc::new(Shared {
            options,
            state: Mutex::new(state),
            wake: Notify::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("webhook HTTP client"),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind Telegram double");
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("Telegram double server");
        });
        TelegramDouble {
            addr,
            shared,
            server,
        }
    }

    /// Base URL for teloxide's `api_url`, e.g. "http://127.0.0.1:41234" (no trailing slash).
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }

    /// Registers a private chat (its id is the user's id). Unknown chat ids get
    /// 400 "Bad Request: chat not found".
    pub fn add_private_chat(&self, id: i64, first_name: &str, language_code: Option<&str>) {
        let kind = ChatKind::Private {
            first_name: first_name.to_owned(),
            language_code: language_code.map(str::to_owned),
        };
        self.state().chats.insert(id, Chat { id, kind });
    }

    /// Registers a group: negative id; `id <= -1_000_000_000_000` makes it a supergroup.
    pub fn add_group(&self, id: i64, title: &str) {
        let kind = ChatKind::Group {
            title: title.to_owned(),
        };
        self.state().chats.insert(id, Chat { id, kind });
    }

    /// Registers a public channel, reachable as "@username" or by id.
    pub fn add_channel(&self, username: &str, id: i64) {
        let username = username.trim_start_matches('@').to_owned();
        let mut state = self.state();
        state.channels.insert(username.to_lowercase(), id);
        let kind = ChatKind::Channel { username };
        state.chats.insert(id, Chat { id, kind });
    }

    /// From now on, sendMessage and editMessageText to this chat get the answer of `refusal`.
    pub fn refuse(&self, chat_id: i64, refusal: Refusal) {
        self.state().refused.insert(chat_id, refusal);
    }

    /// The group `old_id` becomes the supergroup `new_id` (same title): from now on a message to
    /// `old_id` gets HTTP 400 "Bad Request: group chat was upgraded to a supergroup chat" with
    /// `parameters.migrate_to_chat_id` (ResponseParameters in the Bot API reference), and
    /// `new_id` takes messages. Telegram also posts service messages in both chats, which
    /// `announce_migration` queues, so that a test chooses whether the bot has heard of it.
    pub fn migrate(&self, old_id: i64, new_id: i64) {
        let mut state = self.state();
        let Some(old) = state.chats.get(&old_id).cloned() else {
            panic!("migrate: chat {old_id} is not registered with the Telegram double");
        };
        let ChatKind::Group { title } = old.kind else {
            panic!("migrate: chat {old_id} is not a group");
        };
        let kind = ChatKind::Group { title };
        state.chats.insert(new_id, Chat { id: new_id, kind });
        state.migrated.insert(old_id, new_id);
    }

    /// The service messages of `migrate(old_id, new_id)`: a message with `migrate_to_chat_id`
    /// in the old group and one with `migrate_from_chat_id` in the supergroup, as the Bot API's
    /// Message object describes them, queued or POSTed like any update.
    pub async fn announce_migration(&self, old_id: i64, new_id: i64, by_user_id: i64) {
        let (updates, webhook) = {
            let mut state = self.state();
            let chat = |id: i64| state.chats.get(&id).cloned();
            let (Some(old), Some(new)) = (chat(old_id), chat(new_id)) else {
                panic!("announce_migration: migrate({old_id}, {new_id}) first");
            };
            let from = json!({"id": by_user_id, "is_bot": false,
                              "first_name": format!("User {by_user_id}")});
            let mut updates = Vec::new();
            for (chat, field, id) in [
                (old, "migrate_to_chat_id", new_id),
                (new, "migrate_from_chat_id", old_id),
            ] {
                state.last_update_id += 1;
                state.last_message_id += 1;
                let message = json!({"message_id": state.last_message_id, "date": unix_now(),
                                     "chat": chat.json(), "from": from, field: id});
                let update = json!({"update_id": state.last_update_id, "message": message});
                state.pending.push_back(update.clone());
                updates.push(update);
            }
            (updates, state.webhook.clone())
        };
        self.shared.wake.notify_waiters();
        if let Some(webhook) = webhook {
            for update in &updates {
                deliver(&self.shared, &webhook, update).await;
            }
        }
    }

    /// While `revoked`, the bot's token is refused as Telegram refuses a revoked one: HTTP 401
    /// `{"ok":false,"error_code":401,"description":"Unauthorized"}` to every method.
    pub fn revoke_token(&self, revoked: bool) {
        self.state().revoked = revoked;
    }

    /// The next `n` sendMessage calls (any chat) answer HTTP 500
    /// `{"ok":false,"error_code":500,"description":"Internal Server Error"}`.
    /// Beware: teloxide sleeps 10 s before reading any 5xx answer.
    pub fn fail_next(&self, n: usize) {
        self.state().fail_next = n;
    }

    /// The next `n` sendMessage calls that Telegram accepts (the message is sent and recorded in
    /// `sent()`) lose their answer: the connection is cut before the reply's body ends. The Bot
    /// API has no idempotency key, so a client cannot tell whether such a message went.
    pub fn lose_reply_next(&self, n: usize) {
        self.state().lose_next = n;
    }

    /// Flood: until `until`, every valid sendMessage gets 429 with the given retry_after
    /// (a "429 storm").
    pub fn flood_until(&self, until: Instant, retry_after: u32) {
        self.state().flood = Some((until, retry_after));
    }

    /// A user writes `text` in `chat_id` (the chat must be registered; for groups `from_user_id` is
    /// the member, named after their private chat if registered). Queued for getUpdates or, when a
    /// webhook is set, POSTed to it (with `X-Telegram-Bot-Api-Secret-Token` if a secret was set),
    /// retried a few times on failure. Returns the update_id. Commands get a `bot_command` entity
    /// over the command word (including any @mention), as Telegram does.
    pub async fn user_says(&self, chat_id: i64, from_user_id: i64, text: &str) -> i64 {
        let (update, webhook) = {
            let mut state = self.state();
            let Some(chat) = state.chats.get(&chat_id).cloned() else {
                panic!("user_says: chat {chat_id} is not registered with the Telegram double");
            };
            let from = match state.chats.get(&from_user_id).map(|c| &c.kind) {
                Some(ChatKind::Private {
                    first_name,
                    language_code,
                }) => json!({"id": from_user_id, "is_bot": false, "first_name": first_name,
                             "language_code": language_code}),
                _ => json!({"id": from_user_id, "is_bot": false,
                            "first_name": format!("User {from_user_id}")}),
            };
            state.last_update_id += 1;
            state.last_message_id += 1;
            let mut message = message_json(state.last_message_id, &chat, from, text);
            let command = text.split_whitespace().next().unwrap_or_default();
            if command.starts_with('/') && command.len() > 1 {
                let length = command.encode_utf16().count();
                message["entities"] =
                    json!([{"type": "bot_command", "offset": 0, "length": length}]);
            }
            let update = json!({"update_id": state.last_update_id, "message": message});
            state.pending.push_back(update.clone());
            (update, state.webhook.clone())
        };
        self.shared.wake.notify_waiters();
        if let Some(webhook) = webhook {
            deliver(&self.shared, &webhook, &update).await;
        }
        update["update_id"].as_i64().unwrap()
    }

    /// A user answers the bot's message `to_message_id` in `chat_id` (Telegram's reply, as a
    /// ForceReply prompt asks for): the update's message carries `reply_to_message`.
    pub async fn user_replies(
        &self,
        chat_id: i64,
        from_user_id: i64,
        to_message_id: i64,
        text: &str,
    ) -> i64 {
        let (update, webhook) = {
            let mut state = self.state();
            let Some(chat) = state.chats.get(&chat_id).cloned() else {
                panic!("user_replies: chat {chat_id} is not registered with the Telegram double");
            };
            let asked = state
                .sent
                .iter()
                .find(|m| m.message_id == to_message_id)
                .map(|m| m.visible.clone())
                .unwrap_or_default();
            let from = json!({"id": from_user_id, "is_bot": false,
                              "first_name": format!("User {from_user_id}")});
            state.last_update_id += 1;
            state.last_message_id += 1;
            let mut message = message_json(state.last_message_id, &chat, from, text);
            message["reply_to_message"] = message_json(to_message_id, &chat, bot_user(), &asked);
            let update = json!({"update_id": state.last_update_id, "message": message});
            state.pending.push_back(update.clone());
            (update, state.webhook.clone())
        };
        self.shared.wake.notify_waiters();
        if let Some(webhook) = webhook {
            deliver(&self.shared, &webhook, &update).await;
        }
        update["update_id"].as_i64().unwrap()
    }

    /// A user presses an inline button with `data` under the bot's message `message_id` in
    /// `chat_id`: a `callback_query` update, queued or POSTed like a message. Returns the update id.
    pub async fn press_button(
        &self,
        chat_id: i64,
        from_user_id: i64,
        message_id: i64,
        data: &str,
    ) -> i64 {
        let (update, webhook) = {
            let mut state = self.state();
            let Some(chat) = state.chats.get(&chat_id).cloned() else {
                panic!("press_button: chat {chat_id} is not registered with the Telegram double");
            };
            let first_name = match state.chats.get(&from_user_id).map(|c| &c.kind) {
                Some(ChatKind::Private { first_name, .. }) => first_name.clone(),
                _ => format!("User {from_user_id}"),
            };
            let from = json!({"id": from_user_id, "is_bot": false, "first_name": first_name});
            state.last_update_id += 1;
            let pressed = state.sent.iter().find(|m| m.message_id == message_id);
            let text = pressed.map_or_else(|| "…".to_owned(), |m| m.visible.clone());
            let markup = pressed.and_then(|m| m.body.get("reply_markup").cloned());
            let mut message = message_json(message_id, &chat, bot_user(), &text);
            if let Some(markup) = markup {
                message["reply_markup"] = markup;
            }
            let id = format!("cb{}", state.last_update_id);
            state.open_queries.insert(id.clone());
            let update = json!({"update_id": state.last_update_id, "callback_query": {
                "id": id, "from": from, "message": message,
                "chat_instance": format!("ci{chat_id}"), "data": data,
            }});
            state.pending.push_back(update.clone());
            (update, state.webhook.clone())
        };
        self.shared.wake.notify_waiters();
        if let Some(webhook) = webhook {
            deliver(&self.shared, &webhook, &update).await;
        }
        update["update_id"].as_i64().unwrap()
    }

    /// Messages the bot sent successfully (HTTP 200), in order.
    pub fn sent(&self) -> Vec<SentMessage> {
        self.state().sent.clone()
    }

    /// Messages sent to `chat_id` as the client wrote it: "123", "-100…", "@name".
    pub fn sent_to(&self, chat_id: &str) -> Vec<SentMessage> {
        let state = self.state();
        state
            .sent
            .iter()
            .filter(|m| m.chat_id == chat_id)
            .cloned()
            .collect()
    }

    /// Waits until `chat_id` has at least `count` sent messages, or panics after `within`,
    /// listing everything that was sent.
    pub async fn wait_for(
        &self,
        chat_id: &str,
        count: usize,
        within: Duration,
    ) -> Vec<SentMessage> {
        let deadline = Instant::now() + within;
        loop {
            let messages = self.sent_to(chat_id);
            if messages.len() >= count {
                return messages;
            }
            if Instant::now() > deadline {
                let all: Vec<_> = self
                    .sent()
                    .into_iter()
                    .map(|m| format!("{}: {:?}", m.chat_id, m.visible))
                    .collect();
                panic!(
                    "expected {count} Telegram message(s) to {chat_id} within {within:?}, got {}; \
                     all sent: {all:#?}; 429s given: {}",
                    messages.len(),
                    self.throttled().len()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The bot's answers to presses, in order.
    pub fn answers(&self) -> Vec<CallbackAnswer> {
        self.state().answers.clone()
    }

    /// The buttons a sent message shows now (after any `editMessageReplyMarkup`): rows of
    /// `(text, callback_data or url)`.
    pub fn buttons(&self, message_id: i64) -> Vec<Vec<(String, String)>> {
        let state = self.state();
        let Some(message) = state.sent.iter().find(|m| m.message_id == message_id) else {
            return Vec::new();
        };
        let rows = message.body["reply_markup"]["inline_keyboard"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        rows.iter()
            .map(|row| {
                row.as_array()
                    .into_iter()
                    .flatten()
                    .map(|b| {
                        let action = b.get("callback_data").or_else(|| b.get("url"));
                        (
                            b["text"].as_str().unwrap_or_default().to_owned(),
                            action
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned(),
                        )
                    })
                    .collect()
            })
            .collect()
    }

    /// Every request received, in order of arrival.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// When each 429 was given to sendMessage.
    pub fn throttled(&self) -> Vec<Instant> {
        self.state().throttled.clone()
    }

    /// The webhook currently set (url, secret), if any.
    pub fn webhook(&self) -> Option<(String, Option<String>)> {
        let state = self.state();
        state.webhook.clone().map(|w| (w.url, w.secret))
    }

    /// Each webhook POST attempt: (update_id, HTTP status answered; 0 when no answer came).
    pub fn webhook_deliveries(&self) -> Vec<(i64, u16)> {
        self.state().deliveries.clone()
    }
}

impl Drop for TelegramDouble {
    fn drop(&mut self) {
        // Open connections finish their in-flight request, then close.
        self.server.abort();
    }
}

type Reply = (u16, Value);

fn ok(result: Value) -> Reply {
    (200, json!({"ok": true, "result": result}))
}

fn error(code: u16, description: &str) -> Reply {
    let body = json!({"ok": false, "error_code": code, "description": description});
    (code, body)
}

fn too_many_requests(retry_after: u32) -> Reply {
    let body = json!({"ok": false, "error_code": 429,
        "description": format!("Too Many Requests: retry after {retry_after}"),
        "parameters": {"retry_after": retry_after}});
    (429, body)
}

/// Every request: check the token, record it, answer it.
async fn handle(AxumState(shared): AxumState<Arc<Shared>>, request: Request) -> Response {
    let at = Instant::now();
    let path = request.uri().path().to_owned();
    let route = path
        .strip_prefix("/bot")
        .and_then(|rest| rest.split_once('/'))
        .map(|(token, method)| (token.to_owned(), method.to_ascii_lowercase()));
    let params = read_params(request).await;
    let index = {
        let mut state = shared.state.lock().unwrap();
        state.requests.push(Recorded {
            method: route.as_ref().map_or(path, |(_, m)| m.clone()),
            body: params.clone(),
            status: 0,
            at,
        });
        state.requests.len() - 1
    };
    let (status, body) = match route {
        None => error(404, "Not Found"),
        Some((token, _)) if token != TELEGRAM_TOKEN || shared.state.lock().unwrap().revoked => {
            error(401, "Unauthorized")
        }
        Some((_, method)) => call(&shared, &method, &params).await,
    };
    let lost = {
        let mut state = shared.state.lock().unwrap();
        state.requests[index].status = status;
        let sent = status == 200 && state.requests[index].method == "sendmessage";
        let lost = sent && state.lose_next > 0;
        if lost {
            state.lose_next -= 1;
        }
        lost
    };
    if lost {
        return super::double::lost_reply();
    }
    let status = StatusCode::from_u16(status).unwrap();
    (status, axum::Json(body)).into_response()
}

/// The parameters as one JSON object: a JSON body, or a form body / query string / multipart
/// body (teloxide sends setWebhook as multipart), whose fields are all strings.
async fn read_params(request: Request) -> Value {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if request.method() == Method::GET
        || content_type.starts_with("application/x-www-form-urlencoded")
    {
        let fields = Form::<HashMap<String, String>>::from_request(request, &()).await;
        return fields.map_or(json!({}), |Form(fields)| json!(fields));
    }
    let bytes = Bytes::from_request(request, &()).await.unwrap_or_default();
    if content_type.starts_with("multipart/form-data") {
        return multipart_fields(&content_type, &bytes);
    }
    if bytes.is_empty() {
        return json!({});
    }
    // Unparseable bodies are kept as text so that `requests()` shows them.
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
}

/// The text fields of a multipart/form-data body (file contents come out lossy; none are used).
fn multipart_fields(content_type: &str, body: &[u8]) -> Value {
    let mut fields = serde_json::Map::new();
    let Some(boundary) = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
    else {
        return Value::Object(fields);
    };
    let body = String::from_utf8_lossy(body);
    for part in body.split(&format!("--{}", boundary.trim_matches('"'))) {
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let name = head
            .lines()
            .filter(|line| {
                line.to_ascii_lowercase()
                    .starts_with("content-disposition:")
            })
            .flat_map(|line| line.split(';'))
            .find_map(|p| p.trim().strip_prefix("name="));
        if let Some(name) = name {
            let value = value.strip_suffix("\r\n").unwrap_or(value);
            fields.insert(name.trim_matches('"').to_owned(), json!(value));
        }
    }
    Value::Object(fields)
}

/// Dispatches on the lower-cased method name (the Bot API is case-insensitive; teloxide sends
/// `SendMessage`).
async fn call(shared: &Arc<Shared>, method: &str, params: &Value) -> Reply {
    match method {
        "getme" => ok(bot_user()),
        "sendmessage" => send_message(shared, params).unwrap_or_else(|reply| reply),
        "editmessagetext" => edit_message_text(shared, params).unwrap_or_else(|reply| reply),
        "getupdates" => get_updates(shared, params).await,
        "setwebhook" => set_webhook(shared, params),
        "deletewebhook" => {
            let mut state = shared.state.lock().unwrap();
            state.webhook = None;
            if bool_param(params, "drop_pending_updates") {
                state.pending.clear();
            }
            ok(json!(true))
        }
        "getwebhookinfo" => {
            let state = shared.state.lock().unwrap();
            let url = state.webhook.as_ref().map_or("", |w| w.url.as_str());
            ok(json!({"url": url, "has_custom_certificate": false,
                      "pending_update_count": state.pending.len()}))
        }
        "answercallbackquery" => answer_callback_query(shared, params),
        "editmessagereplymarkup" => {
            edit_message_reply_markup(shared, params).unwrap_or_else(|reply| reply)
        }
        "setmycommands" | "deletemycommands" | "sendchataction" => ok(json!(true)),
        _ => error(404, "Not Found"),
    }
}

/// answerCallbackQuery: once per press, recorded with its text.
fn answer_callback_query(shared: &Shared, params: &Value) -> Reply {
    let mut state = shared.state.lock().unwrap();
    let id = str_param(params, "callback_query_id").unwrap_or_default();
    let text = str_param(params, "text");
    if text
        .as_ref()
        .is_some_and(|t| t.chars().count() > MAX_ANSWER_CHARS)
    {
        return error(400, ANSWER_TOO_LONG);
    }
    if !state.open_queries.remove(&id) {
        return error(400, QUERY_INVALID);
    }
    state.answers.push(CallbackAnswer {
        query_id: id,
        text,
        show_alert: bool_param(params, "show_alert"),
    });
    ok(json!(true))
}

/// An inline keyboard's buttons: each `callback_data` 1 to 64 bytes; each `url` an "HTTP or
/// tg:// URL" (the Bot API's words) that Telegram can open. The servers refuse the whole message
/// for a host without a dot (`localhost`, an intranet name): observed and reported by bot
/// authors (rubenlagus/TelegramBots#302), not written in the documentation.
fn check_keyboard(markup: Option<&Value>) -> Result<(), Reply> {
    let rows = markup
        .and_then(|m| m.get("inline_keyboard"))
        .and_then(Value::as_array);
    for button in rows
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
    {
        if let Some(data) = button.get("callback_data").and_then(Value::as_str)
            && !(1..=64).contains(&data.len())
        {
            return Err(error(400, BUTTON_DATA_INVALID));
        }
        if let Some(url) = button.get("url").and_then(Value::as_str) {
            let opens = url::Url::parse(url).is_ok_and(|u| match u.scheme() {
                "http" | "https" => u.host_str().is_some_and(|h| h.contains('.')),
                "tg" => true,
                _ => false,
            });
            if !opens {
                return Err(error(400, BUTTON_URL_INVALID));
            }
        }
    }
    Ok(())
}

/// A `reply_markup` parameter: JSON, or JSON in a string (form bodies).
fn markup_param(params: &Value) -> Option<Value> {
    match params.get("reply_markup")? {
        Value::String(s) => serde_json::from_str(s).ok(),
        other => Some(other.clone()),
    }
}

/// editMessageReplyMarkup: the sent message's buttons replaced (removed without `reply_markup`);
/// answers the edited message.
fn edit_message_reply_markup(shared: &Shared, params: &Value) -> Result<Reply, Reply> {
    let mut state = shared.state.lock().unwrap();
    let chat_id = str_param(params, "chat_id").unwrap_or_default();
    let chat = state.find_chat(&chat_id)?;
    let message_id = int_param(params, "message_id").unwrap_or_default();
    let markup = markup_param(params);
    check_keyboard(markup.as_ref())?;
    let Some(message) = state
        .sent
        .iter_mut()
        .find(|m| m.message_id == message_id && m.chat_id == chat.id.to_string())
    else {
        return Err(error(400, EDIT_NOT_FOUND));
    };
    let empty = json!({"inline_keyboard": []});
    let now = message
        .body
        .get("reply_markup")
        .cloned()
        .map_or(empty.clone(), |m| {
            m.as_str()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or(m)
        });
    let new = markup.unwrap_or(empty);
    if now == new {
        return Err(error(400, NOT_MODIFIED));
    }
    message.body["reply_markup"] = new.clone();
    let mut answer = message_json(message_id, &chat, bot_user(), &message.visible);
    answer["edit_date"] = json!(unix_now());
    answer["reply_markup"] = new;
    Ok(ok(answer))
}

/// sendMessage: the reply for a valid, admitted message, or the error reply.
fn send_message(shared: &Shared, params: &Value) -> Result<Reply, Reply> {
    let mut state = shared.state.lock().unwrap();
    if state.fail_next > 0 {
        state.fail_next -= 1;
        return Err(error(500, "Internal Server Error"));
    }
    let chat_id = str_param(params, "chat_id").unwrap_or_default();
    let chat = state.find_chat(&chat_id)?;
    let text = str_param(params, "text").unwrap_or_default();
    let parse_mode = str_param(params, "parse_mode");
    let visible = visible_text(&text, parse_mode.as_deref())?;
    check_keyboard(markup_param(params).as_ref())?;
    let now = Instant::now();
    if let Some((until, retry_after)) = state.flood
        && now < until
    {
        state.throttled.push(now);
        return Err(too_many_requests(retry_after));
    }
    if let Some(wait) = state.rate_wait(&shared.options, &chat, now) {
        state.throttled.push(now);
        let seconds = wait.as_nanos().div_ceil(SECOND.as_nanos()).max(1);
        return Err(too_many_requests(seconds as u32));
    }
    state.accepted.push_back(now);
    state
        .accepted_by_chat
        .entry(chat.id)
        .or_default()
        .push_back(now);
    state.last_message_id += 1;
    let message_id = state.last_message_id;
    state.sent.push(SentMessage {
        chat_id,
        text,
        parse_mode,
        visible: visible.clone(),
        at: now,
        message_id,
        body: params.clone(),
    });
    Ok(ok(message_json(message_id, &chat, bot_user(), &visible)))
}

/// Checks chat, markup and length like sendMessage; answers the edited message. Not recorded in
/// `sent()` (see `requests()`).
fn edit_message_text(shared: &Shared, params: &Value) -> Result<Reply, Reply> {
    let chat_id = str_param(params, "chat_id").unwrap_or_default();
    let chat = shared.state.lock().unwrap().find_chat(&chat_id)?;
    let text = str_param(params, "text").unwrap_or_default();
    let visible = visible_text(&text, str_param(params, "parse_mode").as_deref())?;
    let message_id = int_param(params, "message_id").unwrap_or_default();
    let mut message = message_json(message_id, &chat, bot_user(), &visible);
    message["edit_date"] = json!(unix_now());
    Ok(ok(message))
}

/// The text users see, or the 400 Telegram gives for it.
fn visible_text(text: &str, parse_mode: Option<&str>) -> Result<String, Reply> {
    let visible = match parse_mode {
        Some(mode) if mode.eq_ignore_ascii_case("html") => parse_html(text).map_err(|reason| {
            error(400, &format!("Bad Request: can't parse entities: {reason}"))
        })?,
        _ => text.to_owned(),
    };
    if visible.trim().is_empty() {
        return Err(error(400, "Bad Request: message text is empty"));
    }
    if visible.encode_utf16().count() > MAX_TEXT_UTF16 {
        return Err(error(400, "Bad Request: message is too long"));
    }
    Ok(visible)
}

impl State {
    /// The chat for a `chat_id` parameter, or Telegram's answer when it is unknown (400), moved
    /// to a supergroup (400 with `migrate_to_chat_id`) or refused.
    fn find_chat(&self, chat_id: &str) -> Result<Chat, Reply> {
        let id = match chat_id.strip_prefix('@') {
            Some(name) => self.channels.get(&name.to_lowercase()).copied(),
            None => chat_id.trim().parse().ok(),
        };
        let Some(chat) = id.and_then(|id| self.chats.get(&id)) else {
            return Err(error(400, "Bad Request: chat not found"));
        };
        if let Some(new_id) = self.migrated.get(&chat.id) {
            let mut reply = error(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
            );
            reply.1["parameters"] = json!({"migrate_to_chat_id": new_id});
            return Err(reply);
        }
        let refused = |code, description: &str| Err(error(code, description));
        match self.refused.get(&chat.id) {
            None => Ok(chat.clone()),
            Some(Refusal::Blocked) => refused(403, "Forbidden: bot was blocked by the user"),
            Some(Refusal::UserDeactivated) => refused(403, "Forbidden: user is deactivated"),
            Some(Refusal::NeverStarted) => refused(
                403,
                "Forbidden: bot can't initiate conversation with a user",
            ),
            Some(Refusal::Kicked) => {
                let kind = chat.json()["type"].as_str().unwrap_or("group").to_owned();
                refused(
                    403,
                    &format!("Forbidden: bot was kicked from the {kind} chat"),
                )
            }
            Some(Refusal::NotAdmin) => refused(
                400,
                "Bad Request: need administrator rights in the channel chat",
            ),
            Some(Refusal::GroupDeactivated) => refused(400, "Bad Request: group is deactivated"),
        }
    }

    /// How long until the overall window and the chat's windows (its second; a group's minute
    /// too) admit one more message, if any is full.
    fn rate_wait(
        &mut self,
        options: &TelegramOptions,
        chat: &Chat,
        now: Instant,
    ) -> Option<Duration> {
        let overall = window_wait(&mut self.accepted, options.overall_per_second, SECOND, now);
        let stamps = self.accepted_by_chat.entry(chat.id).or_default();
        let per_minute = match chat.kind {
            ChatKind::Private { .. } => None,
            _ => options.group_per_minute,
        };
        // Also forgets what is older than a minute, for private chats too.
        let minute = window_wait(stamps, per_minute, MINUTE, now);
        let second = window_wait_within(stamps, options.per_chat_per_second, SECOND, now);
        overall.max(minute).max(second)
    }
}

/// Like `window_wait` over the stamps of the last `window` only, leaving older ones (a group's
/// minute still needs them).
fn window_wait_within(
    stamps: &VecDeque<Instant>,
    limit: Option<u32>,
    window: Duration,
    now: Instant,
) -> Option<Duration> {
    let mut recent: VecDeque<Instant> = (stamps.iter())
        .filter(|t| now - **t < window)
        .copied()
        .collect();
    window_wait(&mut recent, limit, window, now)
}

/// Forgets stamps older than `window`; if `limit` of them remain, how long until the oldest
/// that matters leaves the window.
fn window_wait(
    stamps: &mut VecDeque<Instant>,
    limit: Option<u32>,
    window: Duration,
    now: Instant,
) -> Option<Duration> {
    while stamps.front().is_some_and(|t| now - *t >= window) {
        stamps.pop_front();
    }
    let limit = limit? as usize;
    if stamps.len() < limit {
        return None;
    }
    let oldest = stamps.get(stamps.len() - limit);
    Some(oldest.map_or(window, |t| *t + window - now))
}

/// getUpdates: confirms updates below `offset`, returns the rest, long-polls up to `timeout`
/// seconds when there are none. A newer getUpdates ends an older long poll with 409.
async fn get_updates(shared: &Shared, params: &Value) -> Reply {
    let timeout = Duration::from_secs(int_param(params, "timeout").unwrap_or(0).max(0) as u64);
    let deadline = tokio::time::Instant::now() + timeout;
    let limit = int_param(params, "limit").unwrap_or(100).clamp(1, 100) as usize;
    let generation = {
        let mut state = shared.state.lock().unwrap();
        state.poll_generation += 1;
        match int_param(params, "offset") {
            Some(offset) if offset < 0 => {
                let keep = offset.unsigned_abs() as usize;
                let excess = state.pending.len().saturating_sub(keep);
                state.pending.drain(..excess);
            }
            Some(offset) => state
                .pending
                .retain(|u| u["update_id"].as_i64().unwrap() >= offset),
            None => {}
        }
        state.poll_generation
    };
    shared.wake.notify_waiters();
    loop {
        let woken = shared.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        {
            let state = shared.state.lock().unwrap();
            if state.webhook.is_some() {
                return error(409, WEBHOOK_CONFLICT);
            }
            if state.poll_generation != generation {
                return error(409, TERMINATED);
            }
            if !state.pending.is_empty() || tokio::time::Instant::now() >= deadline {
                let updates: Vec<Value> = state.pending.iter().take(limit).cloned().collect();
                return ok(json!(updates));
            }
        }
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// setWebhook: an empty url removes the webhook; otherwise the pending updates go to the new one.
fn set_webhook(shared: &Arc<Shared>, params: &Value) -> Reply {
    let url = str_param(params, "url").unwrap_or_default();
    let mut state = shared.state.lock().unwrap();
    if bool_param(params, "drop_pending_updates") {
        state.pending.clear();
    }
    state.webhook = (!url.is_empty()).then(|| Webhook {
        url,
        secret: str_param(params, "secret_token").filter(|s| !s.is_empty()),
    });
    if let Some(webhook) = state.webhook.clone() {
        let updates: Vec<Value> = state.pending.iter().cloned().collect();
        tokio::spawn(deliver_pending(shared.clone(), webhook, updates));
    }
    drop(state);
    shared.wake.notify_waiters();
    ok(json!(true))
}

/// Delivers the updates that were queued when the webhook was set, in order, while it stays set.
async fn deliver_pending(shared: Arc<Shared>, webhook: Webhook, updates: Vec<Value>) {
    for update in updates {
        let current = shared.state.lock().unwrap().webhook.clone();
        if current.as_ref() != Some(&webhook) || !deliver(&shared, &webhook, &update).await {
            return;
        }
    }
}

/// POSTs one update to the webhook, retrying a few times; a 2xx answer removes it from the queue.
async fn deliver(shared: &Shared, webhook: &Webhook, update: &Value) -> bool {
    let update_id = update["update_id"].as_i64().unwrap();
    for attempt in 0..WEBHOOK_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
        let mut request = shared.http.post(&webhook.url).json(update);
        if let Some(secret) = &webhook.secret {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
        }
        let status = request.send().await.map_or(0, |r| r.status().as_u16());
        let mut state = shared.state.lock().unwrap();
        state.deliveries.push((update_id, status));
        if (200..300).contains(&status) {
            state.pending.retain(|u| u["update_id"] != update_id);
            return true;
        }
    }
    false
}

/// Tags Telegram's HTML parse mode accepts.
const HTML_TAGS: &str =
    "a b strong i em u ins s strike del span tg-spoiler tg-emoji code pre blockquote";

/// Parses HTML parse mode like Telegram: the visible text, or why it is rejected (wording after
/// Telegram's). Stricter than Telegram on one point: a bare `&` is an error, where Telegram keeps
/// it, so that missing escaping shows up in tests. A bare `>` is accepted, as Telegram does.
fn parse_html(text: &str) -> Result<String, String> {
    let mut visible = String::with_capacity(text.len());
    let mut open: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(c) = text[i..].chars().next() {
        match c {
            '<' => i = parse_tag(text, i, &mut open)?,
            '&' => {
                let (decoded, next) = decode_entity(text, i).ok_or_else(|| {
                    format!("Character '&' is reserved at byte offset {i}; write it as \"&amp;\"")
                })?;
                visible.push(decoded);
                i = next;
            }
            _ => {
                visible.push(c);
                i += c.len_utf8();
            }
        }
    }
    match open.last() {
        Some(tag) => Err(format!(
            "Can't find end tag corresponding to start tag \"{tag}\""
        )),
        None => Ok(visible),
    }
}

/// Parses the tag at byte `start` (a `<`), keeping the stack of open tags; returns the byte
/// after it.
fn parse_tag(text: &str, start: usize, open: &mut Vec<String>) -> Result<usize, String> {
    let bytes = text.as_bytes();
    let unclosed = move || format!("Unclosed start tag at byte offset {start}");
    let mut i = start + 1;
    if bytes.get(i) == Some(&b'/') {
        let end = text[i..]
            .find('>')
            .map(|n| i + n)
            .ok_or_else(|| format!("Unclosed end tag at byte offset {start}"))?;
        let name = text[i + 1..end].trim().to_ascii_lowercase();
        let expected = open
            .pop()
            .ok_or_else(|| format!("Unexpected end tag at byte offset {start}"))?;
        if !name.is_empty() && name != expected {
            return Err(format!(
                "Unmatched end tag at byte offset {start}, expected \"</{expected}>\", found \"</{name}>\""
            ));
        }
        return Ok(end + 1);
    }
    // The first byte from `i` on that `skip` does not accept.
    let skip = |mut i: usize, skip: fn(&u8) -> bool| {
        while bytes.get(i).is_some_and(skip) {
            i += 1;
        }
        i
    };
    let name_end = skip(i, |b| !b.is_ascii_whitespace() && *b != b'>');
    if name_end == text.len() {
        return Err(unclosed());
    }
    let name = text[i..name_end].to_ascii_lowercase();
    let supported = HTML_TAGS.split(' ').any(|tag| tag == name);
    if !supported {
        return Err(format!(
            "Unsupported start tag \"{name}\" at byte offset {start}"
        ));
    }
    // Attributes: `name`, `name=token`, `name="value"` or `name='value'`.
    i = name_end;
    let mut class = "";
    loop {
        i = skip(i, u8::is_ascii_whitespace);
        match bytes.get(i) {
            None => return Err(unclosed()),
            Some(b'>') => break,
            Some(_) => {}
        }
        let attribute_start = i;
        i = skip(i, |b| !b.is_ascii_whitespace() && *b != b'=' && *b != b'>');
        let attribute = text[attribute_start..i].to_ascii_lowercase();
        if attribute.is_empty() {
            return Err(format!(
                "Empty attribute name in the tag \"{name}\" at byte offset {start}"
            ));
        }
        i = skip(i, u8::is_ascii_whitespace);
        let mut value = "";
        if bytes.get(i) == Some(&b'=') {
            i = skip(i + 1, u8::is_ascii_whitespace);
            match bytes.get(i) {
                None => return Err(unclosed()),
                Some(&quote @ (b'"' | b'\'')) => {
                    let close = text[i + 1..]
                        .find(quote as char)
                        .map(|n| i + 1 + n)
                        .ok_or_else(unclosed)?;
                    value = &text[i + 1..close];
                    i = close + 1;
                }
                Some(_) => {
                    let value_start = i;
                    i = skip(i, |b| !b.is_ascii_whitespace() && *b != b'>');
                    value = &text[value_start..i];
                }
            }
        }
        if attribute == "class" {
            class = value;
        }
    }
    if name == "span" && class != "tg-spoiler" {
        return Err(format!(
            "Tag \"span\" must have class \"tg-spoiler\" at byte offset {start}"
        ));
    }
    open.push(name);
    Ok(i + 1)
}

/// Decodes the entity at byte `at` (a `&`): `&lt; &gt; &amp; &quot;` or numeric (`&#NN;`,
/// `&#xHH;`). Returns the character and the byte after the `;`.
fn decode_entity(text: &str, at: usize) -> Option<(char, usize)> {
    let rest = &text[at + 1..];
    let semicolon = rest.find(';')?;
    let name = &rest[..semicolon];
    let decoded = match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        _ => {
            let number = name.strip_prefix('#')?;
            let (digits, radix) = match number.strip_prefix(['x', 'X']) {
                Some(hex) => (hex, 16),
                None => (number, 10),
            };
            if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
                return None;
            }
            let code = u32::from_str_radix(digits, radix).ok()?;
            char::from_u32(code).filter(|c| *c != '\0')?
        }
    };
    Some((decoded, at + 1 + semicolon + 1))
}

/// The bot as getMe returns it, with every flag teloxide's `Me` requires.
fn bot_user() -> Value {
    json!({
        "id": BOT_ID,
        "is_bot": true,
        "first_name": "Banditore",
        "username": BOT_USERNAME,
        "can_join_groups": true,
        "can_read_all_group_messages": false,
        "supports_inline_queries": false,
        "can_connect_to_business": false,
        "has_main_web_app": false,
    })
}

impl Chat {
    /// The Bot API `Chat` object.
    fn json(&self) -> Value {
        match &self.kind {
            ChatKind::Private { first_name, .. } => {
                json!({"id": self.id, "type": "private", "first_name": first_name})
            }
            ChatKind::Group { title } => {
                let kind = if self.id <= -1_000_000_000_000 {
                    "supergroup"
                } else {
                    "group"
                };
                json!({"id": self.id, "type": kind, "title": title})
            }
            ChatKind::Channel { username } => {
                json!({"id": self.id, "type": "channel", "title": username, "username": username})
            }
        }
    }
}

fn message_json(message_id: i64, chat: &Chat, from: Value, text: &str) -> Value {
    json!({"message_id": message_id, "date": unix_now(), "chat": chat.json(), "from": from,
           "text": text})
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A parameter as a string: JSON strings as they are, numbers rendered (`chat_id: 123` → "123").
fn str_param(params: &Value, key: &str) -> Option<String> {
    match params.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An integer parameter: a JSON number or a numeric string (form bodies).
fn int_param(params: &Value, key: &str) -> Option<i64> {
    match params.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn bool_param(params: &Value, key: &str) -> bool {
    match params.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}
