//! A pacing limiter: at most `per_second` acquisitions per second, spread evenly, with a burst of
//! up to one second's worth after a quiet spell.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub struct RateLimiter {
    interval: Duration,
    burst: Duration,
    next: Mutex<Instant>,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> RateLimiter {
        let per_second = per_second.max(1);
        RateLimiter {
            interval: Duration::from_secs(1) / per_second,
            burst: Duration::from_secs(1),
            next: Mutex::new(Instant::now()),
        }
    }

    /// How many acquisitions fit in `span` at the configured pace.
    pub fn within(&self, span: Duration) -> usize {
        (span.as_nanos() / self.interval.as_nanos().max(1)) as usize
    }

    /// Waits for a slot.
    pub async fn acquire(&self) {
        let slot = {
            let mut next = match self.next.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            let now = Instant::now();
            // Unused time up to the burst allowance can be spent at once.
            let earliest = now.checked_sub(self.burst).unwrap_or(now);
            let slot = (*next).max(earliest);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_to_the_rate_after_the_burst() {
        let limiter = RateLimiter::new(10);
        tokio::time::advance(Duration::from_secs(5)).await;
        let start = Instant::now();
        for _ in 0..30 {
            limiter.acquire().await;
        }
        // 10 come from the one-second burst, the other 20 at 10 per second.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1900) && elapsed <= Duration::from_millis(2100),
            "{elapsed:?}"
        );
    }
}
