//! A gateway described in the configuration: a method, a URL, headers and a form or JSON body,
//! each value a template over the message (`to`, `to_digits`, `text`, `sender`, `unicode`,
//! `report_url`, `reference`) and the account (`username`, `password`); the `b64encode` filter
//! writes basic auth (`Basic {{ (username ~ ":" ~ password) | b64encode }}`). `2xx` is success,
//! `429` throttling, `5xx` and `408` trouble at the provider, any other `4xx` a refusal.

use async_trait::async_trait;
use base64::Engine as _;
use minijinja::Environment;

use super::{Accepted, Answer, Gateway, GatewayError, SmsMessage, unreachable};
use crate::settings::{BodyFormat, Secret, SmsProviderKeys};

pub struct Generic {
    name: String,
    method: reqwest::Method,
    format: BodyFormat,
    id_pointer: String,
    username: String,
    password: Option<Secret>,
    sender: String,
    env: Environment<'static>,
    headers: Vec<String>,
    fields: Vec<String>,
    http: reqwest::Client,
}

const URL: &str = "url";

impl Generic {
    pub fn new(keys: &SmsProviderKeys, http: reqwest::Client) -> Result<Generic, String> {
        let p = &keys.settings;
        let mut env = Environment::new();
        // Values go into URLs, headers and bodies as they are; reqwest encodes the body.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_filter("b64encode", |value: String| {
            base64::engine::general_purpose::STANDARD.encode(value)
        });
        let mut add = |name: String, source: &str| {
            env.add_template_owned(name.clone(), source.to_owned())
                .map_err(|e| format!("channels.sms.providers `{}`: {name}: {e}", p.name))
        };
        add(URL.into(), &p.url)?;
        for (k, v) in &p.headers {
            add(format!("header:{k}"), v)?;
        }
        for (k, v) in &p.body {
            add(format!("body:{k}"), v)?;
        }
        Ok(Generic {
            name: p.name.clone(),
            method: reqwest::Method::from_bytes(p.method.to_ascii_uppercase().as_bytes())
                .map_err(|e| format!("channels.sms.providers `{}`: method: {e}", p.name))?,
            format: p.body_format,
            id_pointer: p.id_pointer.clone(),
            username: p.username.clone(),
            password: keys.password.clone(),
            sender: p.sender.clone(),
            headers: p.headers.keys().cloned().collect(),
            fields: p.body.keys().cloned().collect(),
            env,
            http,
        })
    }

    fn render(&self, name: &str, ctx: &minijinja::Value) -> Result<String, GatewayError> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| GatewayError::Unavailable(format!("template {name}: {e}")))
    }
}

#[async_trait]
impl Gateway for Generic {
    async fn send(&self, msg: &SmsMessage<'_>) -> Result<Accepted, GatewayError> {
        let ctx = minijinja::context! {
            to => msg.to,
            to_digits => msg.to_digits(),
            text => msg.text,
            sender => &self.sender,
            unicode => msg.is_unicode(),
            report_url => msg.report_url.unwrap_or(""),
            reference => msg.reference,
            username => &self.username,
            password => self.password.as_ref().map_or("", Secret::expose),
        };
        let url = self.render(URL, &ctx)?;
        let mut request = self.http.request(self.method.clone(), &url);
        for key in &self.headers {
            request = request.header(key, self.render(&format!("header:{key}"), &ctx)?);
        }
        let mut fields = serde_json::Map::new();
        for key in &self.fields {
            fields.insert(
                key.clone(),
                self.render(&format!("body:{key}"), &ctx)?.into(),
            );
        }
        if !fields.is_empty() {
            request = match self.format {
                BodyFormat::Form => request.form(&fields),
                BodyFormat::Json => request.json(&fields),
            };
        }
        let resp = request
            .send()
            .await
            .map_err(|e| unreachable(&self.name, &e))?;
        let answer = Answer::read(resp).await;
        let reason = || format!("HTTP {}: {}", answer.status.as_u16(), answer.excerpt());
        match answer.status.as_u16() {
            200..=299 => {
                let id = serde_json::from_str::<serde_json::Value>(&answer.body)
                    .ok()
                    .and_then(|v| v.pointer(&self.id_pointer).cloned())
                    .filter(|_| !self.id_pointer.is_empty())
                    .map(|v| match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    })
                    .unwrap_or_else(|| format!("banditore-{}", msg.reference));
                Ok(Accepted { id, segments: None })
            }
            429 => Err(GatewayError::Throttled {
                after: answer.retry_after,
                reason: reason(),
            }),
            408 | 500..=599 => Err(GatewayError::Unavailable(reason())),
            401 | 403 => Err(GatewayError::Credentials(reason())),
            _ => Err(GatewayError::Refused(reason())),
        }
    }
}
