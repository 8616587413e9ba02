//! `channels.email`: the SMTP relay, its credentials, and how many messages go at once.

use std::path::PathBuf;

use serde::Deserialize;

use crate::settings::check::is_loopback_name;
use crate::settings::{Dur, Secret, SecretSource, Settings, word_enum};

word_enum! {
    pub enum EmailTls {
        None => "none",
        Starttls => "starttls",
        Tls => "tls",
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct EmailSettings {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    pub tls: EmailTls,
    pub from: String,
    pub username: String,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub pool_size: u32,
    pub timeout: Dur,
    pub rate_per_second: u32,
    /// Extra certificate authority (PEM) to trust, for a relay with a private certificate.
    pub ca_file: Option<PathBuf>,
}

impl EmailSettings {
    pub fn password(&self) -> SecretSource {
        SecretSource {
            value: self.password.clone(),
            file: self.password_file.clone(),
            env: self.password_env.clone(),
        }
    }
}

/// Checks `channels.email` when enabled and reads its password (`None` when there is none).
pub fn validate(settings: &Settings, push: &mut impl FnMut(&str, String)) -> Option<Secret> {
    let e = &settings.channels.email;
    let o = &settings.outbox;
    let mut email_password = None;
    if !e.enabled {
        return None;
    }
    {
        if e.host.trim().is_empty() {
            push("channels.email.host", "must not be empty".into());
        }
        if e.from.parse::<lettre::message::Mailbox>().is_err() {
            push(
                "channels.email.from",
                format!(
                    "`{}` is not a mailbox like `Banditore <noreply@example.org>`",
                    e.from
                ),
            );
        }
        if e.pool_size == 0 {
            push("channels.email.pool_size", "must be at least 1".into());
        }
        // The SMTP timeout must fit in a send's time or sends are cut short.
        if e.timeout.get() > o.send_timeout.get() {
            push(
                "channels.email.timeout",
                format!(
                    "must be at most outbox.send_timeout ({:?})",
                    o.send_timeout.get()
                ),
            );
        }
        let resolved = e.password().resolve("password");
        let readable = resolved.is_ok();
        match resolved {
            Ok(p) => email_password = p,
            Err(msg) => push("channels.email.password", msg),
        }
        match (e.username.is_empty(), email_password.is_some() || !readable) {
            (false, false) => push("channels.email.password", "a username is set but no password".into()),
            (true, true) => push("channels.email.username", "a password is set but no username".into()),
            (false, true) if e.tls == EmailTls::None && !is_loopback_name(&e.host) => push(
                "channels.email.tls",
                "`none` would send the SMTP password in clear to a remote host: use starttls or tls".into(),
            ),
            _ => {}
        }
    }

    email_password
}
