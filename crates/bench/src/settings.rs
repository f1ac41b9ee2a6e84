//! How long and how big each workload runs: the full profile (`all` in under 15 minutes on
//! 2 cores) and `--quick` (a smoke check in under 2 minutes).

use std::time::Duration;

/// Sizes and durations of one invocation.
#[derive(Clone, Debug)]
pub struct Profile {
    /// `--quick`.
    pub quick: bool,
    /// Measured runs per configuration (after one warm-up).
    pub runs: usize,
    /// Length of the warm-up.
    pub warmup: Duration,
    /// Length of each measured run's schedule.
    pub run: Duration,
    /// After a run's last scheduled write, how long late deliveries are still awaited.
    pub drain: Duration,
    /// W1: (writes per second, document bytes).
    pub w1: Vec<(f64, usize)>,
    /// W2: subscriber counts.
    pub w2_subscribers: Vec<usize>,
    /// W2: writes per second.
    pub w2_rate: f64,
    /// W3: subscription counts.
    pub w3_subscriptions: Vec<usize>,
    /// W3: above this many subscriptions, only the in-process API is used.
    pub w3_loopback_max: usize,
    /// W3: writes per second.
    pub w3_rate: f64,
    /// W4: key counts.
    pub w4_keys: Vec<usize>,
    /// W4: closed-loop clients.
    pub w4_clients: usize,
    /// W5: idle connection counts.
    pub w5_connections: Vec<usize>,
    /// A1: authentications measured.
    pub a1_authentications: usize,
    /// A1: connections they are spread over.
    pub a1_connections: usize,
    /// A1: queries subscribed per connection.
    pub a1_queries: usize,
    /// A1: how long each validations-per-second figure runs.
    pub a1_validation_time: Duration,
}

/// Writers (connections) the loopback systems use for one open-loop write stream, so
/// that a slow commit never delays the next scheduled send.
pub const WRITER_CONNECTIONS: usize = 16;

/// The query every subscriber runs in W2 and W3: the latest 10 messages of the channel.
pub const SMALL_LIMIT: usize = 10;

/// The query of W1: the latest 100 messages of the channel.
pub const W1_LIMIT: usize = 100;

/// Most subscriptions one loopback connection carries in W3.
pub const W3_MAX_CONNECTIONS: usize = 1000;

impl Profile {
    /// The full profile.
    pub fn full() -> Profile {
        Profile {
            quick: false,
            runs: 3,
            warmup: Duration::from_millis(1000),
            run: Duration::from_millis(2000),
            drain: Duration::from_secs(3),
            w1: vec![(50.0, 200), (500.0, 200), (500.0, 1024)],
            w2_subscribers: vec![100, 1000, 5000],
            w2_rate: 10.0,
            w3_subscriptions: vec![100, 10_000, 100_000],
            w3_loopback_max: 10_000,
            w3_rate: 20.0,
            w4_keys: vec![1, 16, 10_000],
            w4_clients: 16,
            w5_connections: vec![1000, 10_000],
            a1_authentications: 10_000,
            a1_connections: 50,
            a1_queries: 10,
            a1_validation_time: Duration::from_millis(1000),
        }
    }

    /// The `--quick` profile.
    pub fn quick() -> Profile {
        Profile {
            quick: true,
            runs: 1,
            warmup: Duration::from_millis(500),
            run: Duration::from_millis(1000),
            drain: Duration::from_secs(2),
            w1: vec![(50.0, 200), (500.0, 200)],
            w2_subscribers: vec![100, 1000],
            w2_rate: 10.0,
            w3_subscriptions: vec![100, 1000],
            w3_loopback_max: 1000,
            w3_rate: 20.0,
            w4_keys: vec![1, 10_000],
            w4_clients: 16,
            w5_connections: vec![1000],
            a1_authentications: 1000,
            a1_connections: 20,
            a1_queries: 10,
            a1_validation_time: Duration::from_millis(300),
        }
    }

    /// Writes in the warm-up and in each run at `rate` per second (warm-up first).
    pub fn runs_writes(&self, rate: f64) -> Vec<u64> {
        let per = |duration: Duration| ((duration.as_secs_f64() * rate).round() as u64).max(1);
        let mut writes = vec![per(self.warmup)];
        writes.extend(std::iter::repeat_n(per(self.run), self.runs));
        writes
    }

    /// How the tables describe the runs.
    pub fn describe_runs(&self) -> String {
        format!(
            "{} s warm-up, then {} measured run{} of {} s each; the median run (by p50) is shown, \
             ranges are min–max over the runs",
            self.warmup.as_secs_f64(),
            self.runs,
            if self.runs == 1 { "" } else { "s" },
            self.run.as_secs_f64()
        )
    }
}
