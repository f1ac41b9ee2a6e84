//! Open-loop scheduling: the n-th send happens at `start + n / rate`, whatever happened
//! to the previous ones.
//!
//! The sender never waits for an answer before the next send (each send is handed to its
//! own task), and the time a write is *scheduled* for travels inside the write. A system
//! that stalls therefore collects the full latency of every write scheduled during the
//! stall, instead of silently slowing the load down (coordinated omission).

use std::time::Duration;

use tokio::time::Instant;

use crate::measure::recorder::us_of;

/// Fire `fire(seq, scheduled_us)` for each of `seqs` at `rate` per second, starting a few
/// milliseconds from now. Returns once the last one was fired.
pub async fn open_loop<F>(rate: f64, seqs: std::ops::Range<u64>, mut fire: F)
where
    F: FnMut(u64, f64),
{
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let start = Instant::now() + Duration::from_millis(5);
    for (index, seq) in seqs.enumerate() {
        let scheduled = start + interval.mul_f64(index as f64);
        tokio::time::sleep_until(scheduled).await;
        fire(seq, us_of(scheduled.into_std()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sends_follow_the_schedule_not_the_answers() {
        let mut fired = Vec::new();
        let begun = Instant::now();
        open_loop(200.0, 10..20, |seq, scheduled| fired.push((seq, scheduled))).await;
        let took = begun.elapsed();
        assert_eq!(fired.len(), 10);
        assert_eq!(fired[0].0, 10);
        let gap = fired[9].1 - fired[0].1;
        assert!(
            (gap - 45_000.0).abs() < 1.0,
            "9 intervals of 5 ms, got {gap} µs"
        );
        assert!(took >= Duration::from_millis(45));
    }
}
