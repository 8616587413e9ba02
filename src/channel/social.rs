//! What the four social networks' channels share: their HTTP client, the thread an incident's
//! posts form, and a gate that holds posting while a network's rate-limit window is spent.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::{Outgoing, SendError};
use crate::domain::subscriber::ChannelKind;
use crate::store::Store;

/// An HTTP client for one network, every request bounded by `timeout`.
pub fn http_client(channel: ChannelKind, timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_idle_timeout(Duration::from_secs(50))
        .user_agent(concat!("banditore/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("channels.{channel}: cannot build the HTTP client: {e}"))
}

/// A request that got no answer: worth retrying. reqwest names the URL, never the credentials
/// (they travel in headers and bodies).
pub fn unreachable(channel: ChannelKind, e: &reqwest::Error) -> SendError {
    let what = if e.is_timeout() {
        "no answer in time"
    } else {
        "unreachable"
    };
    SendError::Retry {
        after: None,
        reason: format!("{channel} {what}: {e}"),
    }
}

/// The posts already made about this message's incident on this account, oldest first (their
/// ids as the network gave them). An update continues this thread.
pub async fn thread(
    store: &Arc<dyn Store>,
    channel: ChannelKind,
    msg: &Outgoing,
) -> Result<Vec<String>, SendError> {
    store
        .sent_provider_ids(msg.incident_id, channel, &msg.recipient)
        .await
        .map_err(|e| SendError::Retry {
            after: None,
            reason: format!("cannot read the incident's earlier posts: {e}"),
        })
}

/// The start of a body, for error messages.
pub fn excerpt(body: &str) -> String {
    body.chars().take(300).collect()
}

/// Holds posting while a network's window is spent: a 429, or a `remaining` of 0 on any answer,
/// closes it until the window's reset.
#[derive(Default)]
pub struct RateGate {
    closed_until: Mutex<Option<Instant>>,
}

/// Waits shorter than this are not worth deferring for.
const LEAST_WAIT: Duration = Duration::from_secs(1);
/// A reset further away than this is taken as a clock problem and capped.
const LONGEST_WAIT: Duration = Duration::from_secs(3 * 3600);

impl RateGate {
    /// `Throttled` while the gate is closed.
    pub fn check(&self) -> Result<(), SendError> {
        let Ok(mut closed) = self.closed_until.lock() else {
            return Ok(());
        };
        match *closed {
            Some(until) if until > Instant::now() => Err(SendError::Throttled {
                after: until - Instant::now(),
            }),
            Some(_) => {
                *closed = None;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Closes the gate for `wait` (at least a second, at most three hours).
    pub fn close_for(&self, wait: Duration) -> Duration {
        let wait = wait.clamp(LEAST_WAIT, LONGEST_WAIT);
        if let Ok(mut closed) = self.closed_until.lock() {
            let until = Instant::now() + wait;
            if closed.is_none_or(|c| c < until) {
                *closed = Some(until);
            }
        }
        wait
    }

    /// Reads a network's `remaining` and `reset` headers: none left closes the gate until the
    /// reset. Returns the wait, when there is one.
    pub fn observe(&self, remaining: Option<u64>, reset: Option<Timestamp>) -> Option<Duration> {
        if remaining != Some(0) {
            return None;
        }
        let wait = until(reset).unwrap_or(Duration::from_secs(60));
        Some(self.close_for(wait))
    }

    /// After a 429: closed until the reset the network gave, or a minute.
    pub fn throttled(&self, reset: Option<Timestamp>) -> SendError {
        let wait = until(reset).unwrap_or(Duration::from_secs(60));
        SendError::Throttled {
            after: self.close_for(wait),
        }
    }
}

fn until(reset: Option<Timestamp>) -> Option<Duration> {
    let left = reset?.duration_since(Timestamp::now());
    // A reset already past (clocks differ) still waits a moment.
    Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
}

/// A header's value as text.
pub fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// A header holding a whole number.
pub fn header_number(headers: &reqwest::header::HeaderMap, name: &str) -> Option<u64> {
    header(headers, name).and_then(|v| v.parse().ok())
}

/// A reset written as unix seconds (X, Bluesky).
pub fn reset_unix(headers: &reqwest::header::HeaderMap, name: &str) -> Option<Timestamp> {
    header_number(headers, name)
        .and_then(|s| i64::try_from(s).ok())
        .and_then(|s| Timestamp::from_second(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_closes_on_an_empty_window_and_reopens() {
        let gate = RateGate::default();
        assert!(gate.check().is_ok());
        assert_eq!(gate.observe(Some(5), None), None);
        assert!(gate.check().is_ok());
        let reset = Timestamp::now() + jiff::SignedDuration::from_secs(30);
        let wait = gate.observe(Some(0), Some(reset)).unwrap();
        assert!((28..=30).contains(&wait.as_secs()), "{wait:?}");
        match gate.check() {
            Err(SendError::Throttled { after }) => assert!(after.as_secs() >= 28),
            other => panic!("{other:?}"),
        }
        // A reset in the past still waits a moment, never zero.
        let gate = RateGate::default();
        let past = Timestamp::now() - jiff::SignedDuration::from_secs(30);
        assert!(
            matches!(gate.throttled(Some(past)), SendError::Throttled { after } if after == LEAST_WAIT)
        );
    }
}
