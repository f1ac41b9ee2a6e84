//! Commit timestamps: the clock of the database.
//!
//! Every commit gets a [`Timestamp`] strictly greater than every earlier one, and every
//! read happens "at" a timestamp: it sees exactly the commits at or before it. Timestamps
//! are nanoseconds since the Unix epoch when the wall clock allows (so they mean something
//! to an operator), but monotonicity wins over the clock: the next timestamp is
//! `max(previous + 1, now)`, and the previous one is persisted with every commit, so a clock
//! that jumps backwards or a restart never reuses a timestamp.
//!
//! Timestamps never exceed `i64::MAX` so that they fit a signed 64-bit column in SQL
//! engines and a JavaScript `bigint` without surprises.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conflux_common::{Error, ErrorCode, Result};
use serde::{Deserialize, Serialize};

/// A point in the commit history of a database (nanoseconds since the Unix epoch, or later
/// when commits come faster than the clock). At most `i64::MAX`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "u64", into = "u64")]
pub struct Timestamp(u64);

impl Timestamp {
    /// The smallest timestamp: before any commit.
    pub const MIN: Timestamp = Timestamp(0);
    /// Same as [`Timestamp::MIN`]: the state of an empty database.
    pub const ZERO: Timestamp = Timestamp(0);
    /// The largest timestamp, `2^63 - 1`.
    pub const MAX: Timestamp = Timestamp(i64::MAX as u64);

    /// A timestamp from its raw value; fails with [`ErrorCode::BadRequest`] above
    /// [`Timestamp::MAX`].
    pub fn new(value: u64) -> Result<Timestamp> {
        if value > Timestamp::MAX.0 {
            return Err(Error::bad_request(format!(
                "timestamp {value} is larger than the largest timestamp {} (2^63 - 1)",
                Timestamp::MAX.0
            )));
        }
        Ok(Timestamp(value))
    }

    /// The raw value.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The next timestamp; fails once [`Timestamp::MAX`] is reached (after 292 years of
    /// nanoseconds, so in practice never).
    pub fn succ(self) -> Result<Timestamp> {
        if self.0 >= Timestamp::MAX.0 {
            return Err(Error::new(
                ErrorCode::Internal,
                "the database ran out of timestamps (2^63 - 1 reached)",
            ));
        }
        Ok(Timestamp(self.0 + 1))
    }

    /// The wall clock as a timestamp (nanoseconds since the Unix epoch); zero if the clock
    /// is before 1970.
    pub fn now() -> Timestamp {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Timestamp(nanos.min(u128::from(Timestamp::MAX.0)) as u64)
    }

    /// The timestamp for the commit after `self`: `max(self + 1, now)`.
    pub fn next_commit(self, now: Timestamp) -> Result<Timestamp> {
        Ok(self.succ()?.max(now))
    }

    /// `self - duration`, saturating at [`Timestamp::MIN`].
    pub fn saturating_sub(self, duration: Duration) -> Timestamp {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_sub(nanos))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl TryFrom<u64> for Timestamp {
    type Error = Error;

    fn try_from(value: u64) -> Result<Timestamp> {
        Timestamp::new(value)
    }
}

impl From<Timestamp> for u64 {
    fn from(ts: Timestamp) -> u64 {
        ts.0
    }
}

impl FromStr for Timestamp {
    type Err = Error;

    fn from_str(text: &str) -> Result<Timestamp> {
        let value: u64 = text.trim().parse().map_err(|_| {
            Error::bad_request(format!(
                "`{text}` is not a timestamp: expected a decimal number of nanoseconds"
            ))
        })?;
        Timestamp::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_commit_is_monotonic_even_when_the_clock_goes_back() {
        let previous = Timestamp::new(1_000).expect("small timestamps are valid");
        assert_eq!(
            previous.next_commit(Timestamp(10)).ok(),
            Some(Timestamp(1_001))
        );
        assert_eq!(
            previous.next_commit(Timestamp(5_000)).ok(),
            Some(Timestamp(5_000))
        );
    }

    #[test]
    fn timestamps_stay_within_i64() {
        assert!(Timestamp::new(u64::MAX).is_err());
        assert!(Timestamp::MAX.succ().is_err());
        assert_eq!(Timestamp::MAX.as_u64(), i64::MAX as u64);
        assert!(serde_json::from_str::<Timestamp>("18446744073709551615").is_err());
    }

    #[test]
    fn timestamps_round_trip_through_text() {
        let ts: Timestamp = "1700000000000000000".parse().expect("a valid timestamp");
        assert_eq!(ts.as_u64(), 1_700_000_000_000_000_000);
        assert_eq!(ts.to_string().parse::<Timestamp>().ok(), Some(ts));
        assert_eq!(
            "soon".parse::<Timestamp>().map_err(|e| e.code()),
            Err(ErrorCode::BadRequest)
        );
    }
}
