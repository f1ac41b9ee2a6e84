//! The request rate limit of one connection: a token bucket.
//!
//! Why: one client sending thousands of mutations a second must not take the committer,
//! the function threads and the CPU away from everyone else. Each socket gets a bucket of
//! [`SyncConfig::rate_limit_burst`](crate::SyncConfig) tokens refilled at
//! [`SyncConfig::rate_limit_per_second`](crate::SyncConfig); every `Mutation` and `Action`
//! takes one, and a request that finds the bucket empty is answered at once with a
//! `RateLimited` failure instead of running (the socket stays open: a well-behaved client
//! that bursts once is not disconnected). The burst covers what the official clients
//! resend after a reconnect (every unanswered mutation at once).

use std::time::Instant;

/// A token bucket; see the module docs.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A full bucket, or `None` when `per_second` is 0 (no limit).
    pub(crate) fn new(per_second: u64, burst: u64, now: Instant) -> Option<TokenBucket> {
        if per_second == 0 {
            return None;
        }
        let burst = burst.max(1) as f64;
        Some(TokenBucket {
            per_second: per_second as f64,
            burst,
            tokens: burst,
            refilled_at: now,
        })
    }

    /// Take one token if there is one.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::TokenBucket;

    #[test]
    fn a_burst_passes_then_requests_pass_at_the_refill_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(100, 10, start).expect("a limit");
        let passed = (0..50).filter(|_| bucket.try_take(start)).count();
        assert_eq!(passed, 10, "the burst, then nothing without time passing");
        // One second later: 100 more tokens, but never more than the burst at once.
        let later = start + Duration::from_secs(1);
        let passed = (0..50).filter(|_| bucket.try_take(later)).count();
        assert_eq!(passed, 10);
        // 10,000 requests spread over one second get about 100 through.
        let mut bucket = TokenBucket::new(100, 10, start).expect("a limit");
        let passed = (0..10_000u64)
            .filter(|i| bucket.try_take(start + Duration::from_micros(i * 100)))
            .count();
        assert!((105..=112).contains(&passed), "{passed}");
    }

    #[test]
    fn zero_per_second_means_no_limit() {
        assert!(TokenBucket::new(0, 10, Instant::now()).is_none());
    }
}
