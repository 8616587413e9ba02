//! The REST API shared by Skebby, Aruba and Esendex Italia (`…/API/v1.0/REST/`): `login` with
//! the account's credentials answers `USER_KEY;SESSION_KEY`, sent as headers with every call;
//! `POST sms` with a JSON body answers `201` and `{"result": "OK", "order_id": …}`. A session
//! expires when idle: a `401` logs in again once.

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::{Accepted, Answer, Gateway, GatewayError, SmsMessage, unreachable};
use crate::settings::{Secret, SmsProviderKeys};

pub struct Skebby {
    name: String,
    base: url::Url,
    username: String,
    password: Option<Secret>,
    sender: String,
    message_type: String,
    http: reqwest::Client,
    /// `(user key, session key)` of the current session.
    session: Mutex<Option<(String, String)>>,
}

#[derive(Deserialize)]
struct Sent {
    result: Option<String>,
    order_id: Option<String>,
}

impl Skebby {
    pub fn new(keys: &SmsProviderKeys, http: reqwest::Client) -> Skebby {
        let mut base = keys.base_url.clone();
        // `join` replaces the last segment unless the path ends with a slash.
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Skebby {
            name: keys.settings.name.clone(),
            base,
            username: keys.settings.username.trim().to_owned(),
            password: keys.password.clone(),
            sender: keys.settings.sender.clone(),
            message_type: keys.settings.message_type.clone(),
            http,
            session: Mutex::new(None),
        }
    }

    fn url(&self, path: &str) -> Result<url::Url, GatewayError> {
        self.base
            .join(path)
            .map_err(|e| GatewayError::Unavailable(format!("bad base_url: {e}")))
    }

    async fn login(&self) -> Result<(String, String), GatewayError> {
        let resp = self
            .http
            .get(self.url("login")?)
            .basic_auth(&self.username, self.password.as_ref().map(Secret::expose))
            .send()
            .await
            .map_err(|e| unreachable(&self.name, &e))?;
        let answer = Answer::read(resp).await;
        match answer.status.as_u16() {
            200..=299 => {}
            401 | 403 => {
                return Err(GatewayError::Credentials(format!(
                    "login refused: HTTP {}",
                    answer.status.as_u16()
                )));
            }
            status => {
                return Err(GatewayError::Unavailable(format!(
                    "login refused: HTTP {status}"
                )));
            }
        }
        match answer.body.trim().split_once(';') {
            Some((user, session)) if !user.is_empty() && !session.is_empty() => {
                Ok((user.to_owned(), session.to_owned()))
            }
            _ => Err(GatewayError::Unavailable(
                "login answered something other than USER_KEY;SESSION_KEY".into(),
            )),
        }
    }

    async fn post(
        &self,
        msg: &SmsMessage<'_>,
        keys: &(String, String),
    ) -> Result<Answer, GatewayError> {
        let body = serde_json::json!({
            "message_type": self.message_type,
            "message": msg.text,
            "recipient": [msg.to],
            "sender": self.sender,
            "returnCredits": false,
        });
        let resp = self
            .http
            .post(self.url("sms")?)
            .header("user_key", &keys.0)
            .header("Session_key", &keys.1)
            .json(&body)
            .send()
            .await
            .map_err(|e| unreachable(&self.name, &e))?;
        Ok(Answer::read(resp).await)
    }
}

#[async_trait]
impl Gateway for Skebby {
    async fn send(&self, msg: &SmsMessage<'_>) -> Result<Accepted, GatewayError> {
        let mut session = self.session.lock().await;
        let mut fresh = false;
        let keys = match session.as_ref() {
            Some(keys) => keys.clone(),
            None => {
                fresh = true;
                self.login().await?
            }
        };
        *session = Some(keys.clone());
        // Sends wait for one another only while logging in.
        drop(session);
        let mut answer = self.post(msg, &keys).await?;
        if answer.status.as_u16() == 401 && !fresh {
            let keys = self.login().await?;
            *self.session.lock().await = Some(keys.clone());
            answer = self.post(msg, &keys).await?;
        }
        let reason = || format!("HTTP {}: {}", answer.status.as_u16(), answer.excerpt());
        match answer.status.as_u16() {
            200 | 201 => {
                let sent: Sent = serde_json::from_str(&answer.body).map_err(|e| {
                    GatewayError::Unavailable(format!(
                        "unexpected answer ({e}): {}",
                        answer.excerpt()
                    ))
                })?;
                match (sent.result.as_deref(), sent.order_id) {
                    (Some("OK"), Some(id)) => Ok(Accepted { id, segments: None }),
                    _ => Err(GatewayError::Unavailable(reason())),
                }
            }
            401 => {
                *self.session.lock().await = None;
                Err(GatewayError::Credentials(reason()))
            }
            429 => Err(GatewayError::Throttled {
                after: answer.retry_after,
                reason: reason(),
            }),
            400..=499 => Err(GatewayError::Refused(reason())),
            _ => Err(GatewayError::Unavailable(reason())),
        }
    }
}
