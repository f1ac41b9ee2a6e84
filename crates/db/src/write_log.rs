//! The in-memory log of recent commits and the index keys each one wrote.
//!
//! Two questions are answered from it: "did anything committed after my snapshot touch
//! what I read?" (the optimistic-concurrency check at commit) and "did anything committed
//! after this query ran touch what it read?" (a subscription created a little after its
//! query ran). Both only concern recent history, so the log keeps the last
//! `WRITE_LOG_MAX_ENTRIES_COUNT` commits no older than `WRITE_LOG_RETENTION_MS`. Below its
//! *horizon* the log knows nothing, and both questions are answered conservatively with
//! "yes".

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use crate::read_set::{IndexId, ReadSet, WriteSet};
use crate::timestamp::Timestamp;

/// One commit in the log.
#[derive(Clone, Debug)]
pub(crate) struct LogEntry {
    /// The commit timestamp.
    pub(crate) ts: Timestamp,
    /// The keys it wrote.
    pub(crate) writes: Arc<WriteSet>,
}

/// The answer to "did a commit after `ts` write into this read set?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LogCheck {
    /// No commit after the snapshot wrote into the read set.
    Clean,
    /// The commit at `ts` wrote `key` of `index`, which the read set covers.
    Overlap {
        /// The commit timestamp.
        ts: Timestamp,
        /// The index written.
        index: IndexId,
    },
    /// The snapshot is older than the log's horizon: the log cannot tell.
    NotCovered {
        /// Every commit after this timestamp is in the log.
        horizon: Timestamp,
    },
}

#[derive(Debug)]
struct Inner {
    entries: VecDeque<LogEntry>,
    /// Every commit with a timestamp above this one is in `entries`.
    horizon: Timestamp,
}

/// The log of recent commits, shared by the committer and the subscription index.
#[derive(Debug)]
pub(crate) struct WriteLog {
    inner: RwLock<Inner>,
}

impl WriteLog {
    /// An empty log that covers every commit after `horizon` (the latest timestamp at open).
    pub(crate) fn new(horizon: Timestamp) -> WriteLog {
        WriteLog {
            inner: RwLock::new(Inner {
                entries: VecDeque::new(),
                horizon,
            }),
        }
    }

    /// Append the commit at `ts`; timestamps must increase.
    pub(crate) fn append(&self, ts: Timestamp, writes: Arc<WriteSet>) {
        let mut inner = self.inner.write();
        debug_assert!(inner.entries.back().is_none_or(|last| last.ts < ts));
        inner.entries.push_back(LogEntry { ts, writes });
    }

    /// Drop entries beyond `max_entries` and entries older than `retention` before `latest`.
    pub(crate) fn trim(&self, max_entries: usize, retention: Duration, latest: Timestamp) {
        let oldest_kept = latest.saturating_sub(retention);
        let mut inner = self.inner.write();
        while let Some(front) = inner.entries.front() {
            if inner.entries.len() > max_entries || front.ts < oldest_kept {
                let ts = front.ts;
                inner.entries.pop_front();
                inner.horizon = ts;
            } else {
                break;
            }
        }
    }

    /// Whether a commit after `since` wrote a key covered by `read_set`.
    pub(crate) fn check(&self, read_set: &ReadSet, since: Timestamp) -> LogCheck {
        let inner = self.inner.read();
        if since < inner.horizon {
            return LogCheck::NotCovered {
                horizon: inner.horizon,
            };
        }
        let first = inner.entries.partition_point(|entry| entry.ts <= since);
        for entry in inner.entries.range(first..) {
            if let Some((index, _key)) = entry.writes.first_overlap(read_set) {
                return LogCheck::Overlap {
                    ts: entry.ts,
                    index,
                };
            }
        }
        LogCheck::Clean
    }

    /// Every commit above this timestamp is in the log.
    #[cfg(test)]
    pub(crate) fn horizon(&self) -> Timestamp {
        self.inner.read().horizon
    }

    /// How many commits the log holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.read().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(value: u64) -> Timestamp {
        Timestamp::new(value).expect("small timestamps are valid")
    }

    fn writes(key: &[u8]) -> Arc<WriteSet> {
        let mut set = WriteSet::new();
        set.push(IndexId(1), key.to_vec());
        Arc::new(set)
    }

    #[test]
    fn only_commits_after_the_snapshot_count() {
        let log = WriteLog::new(ts(10));
        log.append(ts(11), writes(b"a"));
        log.append(ts(12), writes(b"b"));
        let mut reads = ReadSet::new();
        reads.record_point(IndexId(1), b"a".to_vec());
        assert_eq!(
            log.check(&reads, ts(10)),
            LogCheck::Overlap {
                ts: ts(11),
                index: IndexId(1)
            }
        );
        assert_eq!(log.check(&reads, ts(11)), LogCheck::Clean);
    }

    #[test]
    fn snapshots_below_the_horizon_are_not_covered() {
        let log = WriteLog::new(ts(10));
        for t in 11..=20 {
            log.append(ts(t), writes(b"x"));
        }
        log.trim(5, Duration::from_secs(3600), ts(20));
        assert_eq!(log.len(), 5);
        assert_eq!(log.horizon(), ts(15));
        let reads = ReadSet::new();
        assert_eq!(
            log.check(&reads, ts(14)),
            LogCheck::NotCovered { horizon: ts(15) }
        );
        assert_eq!(log.check(&reads, ts(15)), LogCheck::Clean);
    }
}
