//! Pacing a channel for the whole deployment: tokens come from a bucket in the store that every
//! replica shares (refilled at the configured rate, holding at most `burst`), taken a few at a
//! time and spent locally. A burst of one spaces sends evenly, so that no window of a second ever
//! holds more than the rate and one: what a provider that counts per second needs.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::Mutex;

use crate::store::OutboxStore;

pub struct RateLimiter {
    store: Arc<dyn OutboxStore>,
    bucket: String,
    per_second: u32,
    burst: u32,
    state: Mutex<Local>,
}

struct Local {
    /// Tokens taken from the bucket and not yet spent.
    tokens: u32,
    /// When the bucket will next have a token, as it last said.
    next: Timestamp,
}

impl RateLimiter {
    pub fn new(
        store: Arc<dyn OutboxStore>,
        bucket: impl Into<String>,
        per_second: u32,
        burst: u32,
    ) -> RateLimiter {
        RateLimiter {
            store,
            bucket: bucket.into(),
            per_second: per_second.max(1),
            burst: burst.max(1),
            state: Mutex::new(Local {
                tokens: 0,
                next: Timestamp::UNIX_EPOCH,
            }),
        }
    }

    /// How many sends fit in `span` at the configured pace.
    pub fn within(&self, span: Duration) -> usize {
        (span.as_secs_f64() * f64::from(self.per_second)) as usize
    }

    /// Waits for a token.
    ///
    /// Tokens are asked for as of the moment the bucket said the next would be there, and the
    /// caller sleeps until then: one round trip per token (or per tenth of a second's worth),
    /// and no time lost between a token becoming due and its use.
    pub async fn acquire(&self) {
        // One taker at a time; the others wait for its tokens.
        let mut local = self.state.lock().await;
        loop {
            if local.tokens > 0 {
                local.tokens -= 1;
                return;
            }
            let now = Timestamp::now();
            let at = local.next.max(now);
            let want = (self.per_second / 10).clamp(1, self.burst);
            match self
                .store
                .take_tokens(&self.bucket, want, self.per_second, self.burst, at)
                .await
            {
                Ok(t) => {
                    local.next = at
                        .checked_add(jiff::SignedDuration::try_from(t.next_in).unwrap_or_default())
                        .unwrap_or(at);
                    if t.granted > 0 {
                        let wait = Duration::try_from(at.duration_since(Timestamp::now()))
                            .unwrap_or(Duration::ZERO);
                        tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
                        local.tokens = t.granted;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, bucket = %self.bucket, "cannot take send tokens; waiting");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}
