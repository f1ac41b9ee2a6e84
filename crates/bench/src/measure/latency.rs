//! Latency summaries and repeated runs.
//!
//! Every latency is recorded in microseconds into an HDR histogram (3 significant
//! digits), so percentiles stay exact to 0.1 % whatever the spread. A workload measures
//! several runs after one warm-up; [`RunSet`] reports the run with the median p50 and the
//! spread of p50 and p99 across runs, so a single lucky or unlucky run cannot make the
//! headline.

use hdrhistogram::Histogram;

/// Highest latency the histograms hold: 10 minutes, in microseconds.
const MAX_TRACKABLE_US: u64 = 600_000_000;

/// A new latency histogram in microseconds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKABLE_US, 3).expect("constant histogram bounds are valid")
}

/// Record one latency, clamped into the histogram's range.
pub fn record(histogram: &mut Histogram<u64>, micros: u64) {
    let value = micros.clamp(1, MAX_TRACKABLE_US);
    // In range by construction.
    let _ = histogram.record(value);
}

/// p50, p95, p99, max and count of one histogram, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest sample.
    pub max: u64,
}

impl Summary {
    /// The summary of `histogram` (all zero when it is empty).
    pub fn of(histogram: &Histogram<u64>) -> Summary {
        if histogram.is_empty() {
            return Summary::default();
        }
        Summary {
            count: histogram.len(),
            p50: histogram.value_at_quantile(0.50),
            p95: histogram.value_at_quantile(0.95),
            p99: histogram.value_at_quantile(0.99),
            max: histogram.max(),
        }
    }

    /// The summary of raw samples (microseconds), e.g. from a peer script.
    pub fn of_samples(samples: &[u64]) -> Summary {
        let mut histogram = new_histogram();
        for &sample in samples {
            record(&mut histogram, sample);
        }
        Summary::of(&histogram)
    }
}

/// Milliseconds with a precision that suits the value: `0.412`, `3.91`, `27.4`, `1,204`.
pub fn ms(micros: u64) -> String {
    let value = micros as f64 / 1000.0;
    if value < 1.0 {
        format!("{value:.3}")
    } else if value < 10.0 {
        format!("{value:.2}")
    } else if value < 100.0 {
        format!("{value:.1}")
    } else {
        thousands(value.round() as u64)
    }
}

/// An integer with `,` between thousands.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// What one measurement run produced.
#[derive(Clone, Debug, Default)]
pub struct RunResult {
    /// Latency of every delivery (scheduled write → subscriber holds it), or of every
    /// request for request/response workloads.
    pub latency: Summary,
    /// Per write: latency of the last subscriber to get it (fan-out).
    pub last_subscriber: Option<Summary>,
    /// Per write: scheduled time → the writer's acknowledgement (commit cost).
    pub ack: Option<Summary>,
    /// Deliveries observed.
    pub delivered: u64,
    /// Deliveries expected (writes × subscribers of the channel written).
    pub expected: u64,
    /// Writes (or requests) issued in the run.
    pub writes: u64,
    /// Writes that failed.
    pub failed_writes: u64,
    /// Length of the run's schedule, seconds.
    pub seconds: f64,
    /// CPU seconds of the system under test during the run, when measurable.
    pub cpu_seconds: Option<f64>,
    /// Query executions in the run (Conflux counters).
    pub executions: Option<u64>,
    /// Re-runs in the run (Conflux counters).
    pub reruns: Option<u64>,
    /// Re-runs whose result did not change (Conflux counters).
    pub spurious_reruns: Option<u64>,
    /// Commits in the run (Conflux counters).
    pub commits: Option<u64>,
    /// Conflicts (OCC retries) in the run (Conflux counters).
    pub conflicts: Option<u64>,
}

impl RunResult {
    /// CPU seconds per 1,000 deliveries, when both are known.
    pub fn cpu_per_1k(&self) -> Option<f64> {
        let cpu = self.cpu_seconds?;
        (self.delivered > 0).then(|| cpu * 1000.0 / self.delivered as f64)
    }
}

/// The runs of one configuration.
#[derive(Clone, Debug, Default)]
pub struct RunSet {
    /// Every measured run, in order (the warm-up is not included).
    pub runs: Vec<RunResult>,
}

impl RunSet {
    /// The run whose p50 latency is the median of the runs.
    pub fn median(&self) -> Option<&RunResult> {
        let mut order: Vec<&RunResult> = self.runs.iter().collect();
        order.sort_by_key(|run| run.latency.p50);
        order.get(order.len().saturating_sub(1) / 2).copied()
    }

    /// The run whose value of `key` is the median of the runs.
    pub fn median_by<F: Fn(&RunResult) -> f64>(&self, key: F) -> Option<&RunResult> {
        let mut order: Vec<&RunResult> = self.runs.iter().collect();
        order.sort_by(|a, b| key(a).total_cmp(&key(b)));
        order.get(order.len().saturating_sub(1) / 2).copied()
    }

    /// `min–max` of `key` over the runs that recorded anything, formatted with `fmt`; a
    /// single run gives one value, no such run gives `none`.
    pub fn spread<K, F>(&self, key: K, fmt: F) -> String
    where
        K: Fn(&RunResult) -> u64,
        F: Fn(u64) -> String,
    {
        let values: Vec<u64> = self
            .runs
            .iter()
            .filter(|run| run.latency.count > 0)
            .map(key)
            .collect();
        match (values.iter().min(), values.iter().max()) {
            (Some(min), Some(max)) if min != max => format!("{}–{}", fmt(*min), fmt(*max)),
            (Some(min), Some(_)) => fmt(*min),
            _ => "none".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_recorded_samples() {
        let samples: Vec<u64> = (1..=1000).collect();
        let summary = Summary::of_samples(&samples);
        assert_eq!(summary.count, 1000);
        assert_eq!(summary.p50, 500);
        assert_eq!(summary.p99, 990);
        assert_eq!(summary.max, 1000);
    }

    #[test]
    fn the_median_run_is_reported_with_the_spread() {
        let run = |p50| RunResult {
            latency: Summary {
                p50,
                count: 1,
                ..Summary::default()
            },
            ..RunResult::default()
        };
        let set = RunSet {
            runs: vec![run(900), run(300), run(500)],
        };
        assert_eq!(set.median().map(|r| r.latency.p50), Some(500));
        assert_eq!(set.spread(|r| r.latency.p50, ms), "0.300–0.900");
    }

    #[test]
    fn numbers_are_printed_for_people() {
        assert_eq!(ms(412), "0.412");
        assert_eq!(ms(3_914), "3.91");
        assert_eq!(ms(27_400), "27.4");
        assert_eq!(ms(1_204_000), "1,204");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
