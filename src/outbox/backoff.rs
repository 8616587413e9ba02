//! When to try a failed delivery again: exponential backoff with ±20 % jitter, capped, and a
//! provider's own `retry_after` honoured (but never beyond the cap).

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Delay before attempt `attempt + 1`, after `attempt` failed attempts (1-based).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max);
        }
        let exp = attempt.saturating_sub(1).min(30);
        let base = self.initial.saturating_mul(1u32 << exp).min(self.max);
        let jitter = 0.8 + rand::random::<f64>() * 0.4;
        base.mul_f64(jitter).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_cap() {
        let b = Backoff {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(60),
        };
        for _ in 0..50 {
            let d1 = b.delay(1, None).as_secs_f64();
            assert!((4.0..=6.0).contains(&d1), "{d1}");
            let d3 = b.delay(3, None).as_secs_f64();
            assert!((16.0..=24.0).contains(&d3), "{d3}");
            assert!(b.delay(30, None) <= Duration::from_secs(60));
        }
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let b = Backoff {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(60),
        };
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(17))),
            Duration::from_secs(17)
        );
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(60)
        );
    }
}
