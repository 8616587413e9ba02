//! Checks that several sections share (a URL, a secret, a timeout within a send's time), so
//! that each channel's section reports the same mistake in the same words.

use std::net::IpAddr;

use super::{ApprovalPolicy, Dur, Secret, SecretSource, Settings};
use crate::domain::Severity;
use crate::domain::subscriber::{ChannelKind, Subscription, ValidSubscriber};

/// Reports `raw` at `path` unless it is an http(s) URL with a host.
pub fn check_url(path: &str, raw: &str, push: &mut impl FnMut(&str, String)) {
    match url::Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => push(path, format!("`{raw}` is not an http(s) URL")),
    }
}

/// What is wrong with a provider's `name`, which is part of the URLs its callbacks come to
/// (`used_in`): not a word of lower-case letters, digits, `-` or `_`, or already taken by another
/// provider of the section (`names` gathers them).
pub fn provider_name_problem(
    name: &str,
    names: &mut std::collections::BTreeSet<String>,
    used_in: &str,
) -> Option<String> {
    let word = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !word {
        Some(format!(
            "`{name}` must be a word of lower-case letters, digits, `-` or `_` (it is part of {used_in})"
        ))
    } else if !names.insert(name.to_owned()) {
        Some(format!("`{name}` is used by two providers"))
    } else {
        None
    }
}

/// Reads a secret that must be given, reporting at `path` when it is not.
pub fn secret(
    path: &str,
    source: SecretSource,
    key: &str,
    push: &mut impl FnMut(&str, String),
) -> Option<Secret> {
    match source.resolve(key) {
        Ok(Some(s)) => Some(s),
        Ok(None) => {
            push(path, format!("give `{key}`, `{key}_file` or `{key}_env`"));
            None
        }
        Err(e) => {
            push(path, e);
            None
        }
    }
}

/// Reports a timeout that is zero or longer than a send may take.
pub fn check_timeout(
    path: &str,
    timeout: Dur,
    settings: &Settings,
    push: &mut impl FnMut(&str, String),
) {
    if timeout.get().is_zero() || timeout.get() > settings.outbox.send_timeout.get() {
        push(
            path,
            "must be more than 0 and at most outbox.send_timeout (a send must end within it)"
                .into(),
        );
    }
}

/// Whether `host` names this machine: a password may then go in clear.
pub fn is_loopback_name(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Refuses a public account whose audience would be posted to without approval: an account
/// posts what the `public` audience hears, and that must wait for the communications office.
pub fn require_approval(
    settings: &Settings,
    channel: ChannelKind,
    enabled: bool,
    push: &mut impl FnMut(&str, String),
) {
    let (policy, _) = settings.approval.policy("public");
    if enabled && policy == ApprovalPolicy::Auto {
        push(
            &format!("channels.{channel}.enabled"),
            "the account posts public statements, but approval.audiences.public lets them out without approval: set its policy to \"approval\" or \"approval_with_timeout\"".into(),
        );
    }
}

/// An enabled account as a subscriber of the `public` audience, named `name`, following every
/// incident at `min_severity` or worse on its own channel; none when off or without an address.
pub fn public_account(
    settings: &Settings,
    channel: ChannelKind,
    name: &str,
    enabled: bool,
    address: String,
    min_severity: Severity,
) -> Vec<ValidSubscriber> {
    if !enabled || address.is_empty() {
        return Vec::new();
    }
    vec![ValidSubscriber {
        name: name.to_owned(),
        language: settings.routing.default_language.clone(),
        audience: "public".to_owned(),
        addresses: vec![(channel, address)],
        subscriptions: vec![Subscription {
            matchers: Vec::new(),
            min_severity,
            channels: vec![channel],
        }],
        escalation: None,
    }]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::provider_name_problem;

    #[test]
    fn a_provider_name_is_a_url_word_used_once() {
        let mut names = BTreeSet::new();
        let used_in = "the callback URL";
        assert_eq!(
            provider_name_problem("twilio-it_2", &mut names, used_in),
            None
        );
        assert_eq!(
            provider_name_problem("twilio-it_2", &mut names, used_in).as_deref(),
            Some("`twilio-it_2` is used by two providers")
        );
        for bad in ["", "Twilio", "a/b", "a b", "è", "x..", "%2e"] {
            let problem = provider_name_problem(bad, &mut names, used_in)
                .unwrap_or_else(|| panic!("{bad:?} is no URL word"));
            assert!(
                problem.ends_with("(it is part of the callback URL)"),
                "{problem}"
            );
        }
        assert_eq!(names.len(), 1, "refused names are not taken");
    }
}
