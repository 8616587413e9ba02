//! Pacing a channel for the whole deployment: tokens come from a bucket in the store that every
//! replica shares (refilled at the configured rate, holding at most one second's worth), taken a
//! few at a time and spent locally.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::Mutex;

use crate::store::Store;

pub struct RateLimiter {
    store: Arc<dyn Store>,
    bucket: String,
    per_second: u32,
    /// Tokens taken from the bucket and not yet spent.
    local: Mutex<u32>,
}

impl RateLimiter {
    pub fn new(store: Arc<dyn Store>, bucket: impl Into<String>, per_second: u32) -> RateLimiter {
        RateLimiter {
            store,
            bucket: bucket.into(),
            per_second: per_second.max(1),
            local: Mutex::new(0),
        }
    }

    /// How many sends fit in `span` at the configured pace.
    pub fn within(&self, span: Duration) -> usize {
        (span.as_secs_f64() * f64::from(self.per_second)) as usize
    }

    /// Waits for a token.
    pub async fn acquire(&self) {
        // One refill at a time; the others wait for its tokens.
        let mut local = self.local.lock().await;
        loop {
            if *local > 0 {
                *local -= 1;
                return;
            }
            // A tenth of a second's worth at a time: few round trips, and replicas share fairly.
            let want = (self.per_second / 10).max(1);
            let burst = self.per_second;
            match self
                .store
                .take_tokens(&self.bucket, want, self.per_second, burst, Timestamp::now())
                .await
            {
                Ok(0) => {
                    let refill =
                        Duration::from_secs_f64(f64::from(want) / f64::from(self.per_second));
                    tokio::time::sleep(refill.min(Duration::from_secs(1))).await;
                }
                Ok(granted) => *local = granted,
                Err(e) => {
                    tracing::warn!(error = %e, bucket = %self.bucket, "cannot take send tokens; waiting");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}
