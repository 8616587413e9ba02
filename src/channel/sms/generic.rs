//! A gateway described in the configuration: a method, a URL, headers and a form or JSON body,
//! each value a template over the message (`to`, `to_digits`, `text`, `sender`, `unicode`,
//! `report_url`, `reference`) and the account (`username`, `password`); the `b64encode` filter
//! writes basic auth (`Basic {{ (username ~ ":" ~ password) | b64encode }}`). `2xx` is success,
//! `429` throttling, `5xx` and `408` trouble at the provider, any other `4xx` a refusal.
//!
//! Every value is encoded for its place by construction, never trusted to the template's author:
//! in the URL each value is percent-encoded (so a monitor's `&to=…` in a summary stays text), in
//! a header control characters become spaces (no header can be added), and form and JSON bodies
//! are encoded by reqwest and serde.

use async_trait::async_trait;
use base64::Engine as _;
use minijinja::{AutoEscape, Environment};

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
/// How values are written in the URL and in headers.
const IN_URL: &str = "url";
const IN_HEADER: &str = "header";

/// A value as one component of a URL: everything but letters, digits and `-._~` percent-encoded
/// (RFC 3986 unreserved), so it cannot end a parameter, start another or cut the URL short.
fn percent_encoded(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Generic {
    pub fn new(keys: &SmsProviderKeys, http: reqwest::Client) -> Result<Generic, String> {
        let p = &keys.settings;
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|name| {
            if name == URL {
                AutoEscape::Custom(IN_URL.into())
            } else if name.starts_with("header:") {
                AutoEscape::Custom(IN_HEADER.into())
            } else {
                AutoEscape::None
            }
        });
        env.set_formatter(|out, state, value| {
            let text = value.to_string();
            let written = match state.auto_escape() {
                AutoEscape::Custom(place) if place == IN_URL && !value.is_safe() => {
                    percent_encoded(&text)
                }
                AutoEscape::Custom(place) if place == IN_HEADER => text
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect(),
                _ => text,
            };
            out.write_str(&written).map_err(minijinja::Error::from)
        });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::SmsProviderSettings;

    proptest::proptest! {
        /// Whatever a monitor writes, its text is one query value: the URL parses, keeps its
        /// one `to` and gives the text back whole.
        #[test]
        fn a_text_stays_one_value_in_a_url_template(text in crate::hostile::text()) {
            let url = format!(
                "https://gw.example/send?to=393330000001&text={}",
                percent_encoded(&text)
            );
            let parsed = url::Url::parse(&url).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
            proptest::prop_assert_eq!(pairs.len(), 2);
            proptest::prop_assert_eq!(&pairs[0], &("to".to_owned(), "393330000001".to_owned()));
            proptest::prop_assert_eq!(&pairs[1].1, &text);
            proptest::prop_assert!(parsed.fragment().is_none());
        }
    }

    #[test]
    fn a_summary_cannot_add_a_recipient_to_a_url_or_a_header() {
        let settings: SmsProviderSettings = serde_json::from_value(serde_json::json!({
            "name": "gw",
            "kind": "generic",
            "url": "https://gw.example/send?to={{ to_digits }}&text={{ text }}",
            "headers": {"X-Text": "{{ text }}"},
        }))
        .unwrap();
        let keys = SmsProviderKeys {
            settings,
            password: None,
            base_url: url::Url::parse("https://gw.example/").unwrap(),
        };
        let g = Generic::new(&keys, reqwest::Client::new()).unwrap();
        let ctx = minijinja::context! {
            to => "+393331234567", to_digits => "393331234567",
            text => "CUP giù&to=393330000000&text=PWNED#tail\r\nX-Evil: 1",
            sender => "", unicode => false, report_url => "", reference => 1,
            username => "", password => "",
        };
        let url = url::Url::parse(&g.render(URL, &ctx).unwrap()).unwrap();
        let to: Vec<_> = url.query_pairs().filter(|(k, _)| k == "to").collect();
        assert_eq!(to.len(), 1, "{url}");
        assert!(url.fragment().is_none(), "{url}");
        let header = g.render("header:X-Text", &ctx).unwrap();
        assert!(!header.contains(['\r', '\n']), "{header}");
    }
}
