//! The subscription (invalidation) index: which live queries does a commit affect?
//!
//! A live query is a read set plus the timestamp it was read at. After every commit the
//! index must find the subscriptions whose read set contains one of the written keys,
//! *without looking at the others*: with 100,000 clients each watching their own channel,
//! a message to one channel must cost the same as with 100.
//!
//! # Structure
//!
//! Per index, two structures over the subscribed intervals:
//!
//! - **points** (`get(id)` reads, the common case): a hash map from the key to the
//!   subscriptions reading it: `O(1)` per written key, plus one step per affected
//!   subscription;
//! - **ranges**: an augmented interval tree (module `interval_tree`) of the distinct
//!   intervals, each carrying the set of subscriptions reading it: `O((1 + k) log R)` per
//!   written key for `k` affected distinct intervals among `R`.
//!
//! A commit writing `W` keys therefore costs `O(W (log S + affected))`, never `O(S)`.
//! Identical reads (many clients on the same query) share one interval.
//!
//! # Semantics
//!
//! A [`Subscription`] fires once, with the timestamp of the first commit after its own
//! timestamp that writes inside its read set, and is then removed from the index (the
//! caller re-runs its query and subscribes again). If such a commit happened between the
//! query's timestamp and the call to [`SubscriptionIndex::subscribe`], it fires at once
//! (the write log is consulted); if the write log no longer reaches back that far it also
//! fires at once, conservatively. Dropping a [`Subscription`] unsubscribes.
//!
//! Ordering argument (no lost wake-ups): the committer appends a commit to the write log
//! *before* notifying the index, and `subscribe` inserts into the index *before* reading the
//! log. Either the commit is in the log when `subscribe` reads it, or the subscription is
//! in the index when the committer notifies it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::interval::Interval;
use crate::interval_tree::IntervalTree;
use crate::read_set::{IndexId, ReadSet, WriteSet};
use crate::timestamp::Timestamp;
use crate::write_log::{LogCheck, WriteLog};

type SubscriptionId = u64;

#[derive(Debug, Default)]
struct IndexSubscriptions {
    points: HashMap<Vec<u8>, HashSet<SubscriptionId>>,
    ranges: IntervalTree<HashSet<SubscriptionId>>,
}

impl IndexSubscriptions {
    fn insert(&mut self, interval: &Interval, id: SubscriptionId) {
        if interval.is_point() {
            self.points
                .entry(interval.start.clone())
                .or_default()
                .insert(id);
        } else {
            self.ranges
                .get_or_insert_with(interval, HashSet::new)
                .insert(id);
        }
    }

    fn remove(&mut self, interval: &Interval, id: SubscriptionId) {
        if interval.is_point() {
            if let Some(ids) = self.points.get_mut(&interval.start) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.points.remove(&interval.start);
                }
            }
        } else if let Some(ids) = self.ranges.get_mut(interval) {
            ids.remove(&id);
            if ids.is_empty() {
                self.ranges.remove(interval);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.points.is_empty() && self.ranges.is_empty()
    }

    fn affected(&self, key: &[u8], out: &mut Vec<SubscriptionId>) {
        if let Some(ids) = self.points.get(key) {
            out.extend(ids.iter().copied());
        }
        self.ranges
            .stab(key, &mut |_, ids| out.extend(ids.iter().copied()));
    }
}

#[derive(Debug)]
struct Entry {
    read_set: ReadSet,
    ts: Timestamp,
    fire: watch::Sender<Option<Timestamp>>,
}

#[derive(Debug, Default)]
struct State {
    next_id: SubscriptionId,
    by_index: HashMap<IndexId, IndexSubscriptions>,
    entries: HashMap<SubscriptionId, Entry>,
}

impl State {
    fn unindex(&mut self, id: SubscriptionId) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        for (index, interval) in entry.read_set.iter() {
            if let Some(subs) = self.by_index.get_mut(&index) {
                subs.remove(&interval, id);
                if subs.is_empty() {
                    self.by_index.remove(&index);
                }
            }
        }
        Some(entry)
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    write_log: Arc<WriteLog>,
}

/// Maps the read sets of live queries to their subscribers; see the module docs.
#[derive(Clone, Debug)]
pub struct SubscriptionIndex {
    shared: Arc<Shared>,
}

impl SubscriptionIndex {
    pub(crate) fn new(write_log: Arc<WriteLog>) -> SubscriptionIndex {
        SubscriptionIndex {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                write_log,
            }),
        }
    }

    /// Watch `read_set`, read at `ts`: the returned [`Subscription`] fires when a commit
    /// after `ts` writes a key inside it (at once if that already happened).
    pub fn subscribe(&self, read_set: ReadSet, ts: Timestamp) -> Subscription {
        let (fire, fired) = watch::channel(None);
        let id = {
            let mut state = self.shared.state.lock();
            let id = state.next_id;
            state.next_id += 1;
            for (index, interval) in read_set.iter() {
                state
                    .by_index
                    .entry(index)
                    .or_default()
                    .insert(&interval, id);
            }
            state.entries.insert(id, Entry { read_set, ts, fire });
            id
        };
        // A commit after `ts` may have been published before we were indexed.
        let missed = {
            let state = self.shared.state.lock();
            state
                .entries
                .get(&id)
                .map(|entry| self.shared.write_log.check(&entry.read_set, ts))
        };
        match missed {
            Some(LogCheck::Overlap { ts: commit_ts, .. }) => self.fire(id, commit_ts),
            Some(LogCheck::NotCovered { horizon }) => self.fire(id, horizon),
            Some(LogCheck::Clean) | None => {}
        }
        Subscription {
            id,
            ts,
            index: Arc::downgrade(&self.shared),
            fired,
        }
    }

    fn fire(&self, id: SubscriptionId, ts: Timestamp) {
        let entry = self.shared.state.lock().unindex(id);
        if let Some(entry) = entry {
            // A closed receiver means the subscription is being dropped: nothing to tell.
            let _ = entry.fire.send(Some(ts));
        }
    }

    /// Fire every subscription older than `ts` whose read set contains a key of `writes`.
    /// Returns how many fired.
    pub(crate) fn notify(&self, ts: Timestamp, writes: &WriteSet) -> usize {
        let mut state = self.shared.state.lock();
        let mut candidates = Vec::new();
        for (index, key) in writes.iter() {
            if let Some(subs) = state.by_index.get(&index) {
                subs.affected(key, &mut candidates);
            }
        }
        if candidates.is_empty() {
            return 0;
        }
        candidates.sort_unstable();
        candidates.dedup();
        let mut fired = 0;
        for id in candidates {
            let older = state.entries.get(&id).is_some_and(|entry| entry.ts < ts);
            if older {
                if let Some(entry) = state.unindex(id) {
                    let _ = entry.fire.send(Some(ts));
                    fired += 1;
                }
            }
        }
        fired
    }

    /// How many subscriptions are waiting (not yet fired, not dropped).
    pub fn len(&self) -> usize {
        self.shared.state.lock().entries.len()
    }

    /// Whether no subscription is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A live read set. Fires once when a later commit writes inside it; dropping it
/// unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    id: SubscriptionId,
    ts: Timestamp,
    index: Weak<Shared>,
    fired: watch::Receiver<Option<Timestamp>>,
}

impl Subscription {
    /// Wait until the subscription fires, and return the timestamp of the commit that
    /// invalidated it (or, when the write log could not tell, the timestamp up to which it
    /// could not). Returns `None` if the database shut down first.
    pub async fn invalidated(&self) -> Option<Timestamp> {
        let mut fired = self.fired.clone();
        let result = fired.wait_for(Option::is_some).await;
        match result {
            Ok(value) => *value,
            Err(_) => None,
        }
    }

    /// The timestamp of the invalidating commit, if it fired already.
    pub fn invalidated_at(&self) -> Option<Timestamp> {
        *self.fired.borrow()
    }

    /// The timestamp the read set was read at.
    pub fn ts(&self) -> Timestamp {
        self.ts
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(shared) = self.index.upgrade() {
            shared.state.lock().unindex(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interval::IntervalEnd;

    fn ts(value: u64) -> Timestamp {
        Timestamp::new(value).expect("small timestamps are valid")
    }

    fn range(index: u32, start: &[u8], end: &[u8]) -> ReadSet {
        let mut reads = ReadSet::new();
        reads.record(
            IndexId(index),
            Interval::new(start.to_vec(), IntervalEnd::Excluded(end.to_vec())),
        );
        reads
    }

    fn write(index: u32, key: &[u8]) -> WriteSet {
        let mut writes = WriteSet::new();
        writes.push(IndexId(index), key.to_vec());
        writes
    }

    #[test]
    fn a_commit_fires_only_the_subscriptions_it_touches() {
        let log = Arc::new(WriteLog::new(ts(1)));
        let index = SubscriptionIndex::new(log.clone());
        let general = index.subscribe(range(1, b"general/", b"general0"), ts(1));
        let random = index.subscribe(range(1, b"random/", b"random0"), ts(1));
        let mut point = ReadSet::new();
        point.record_point(IndexId(2), b"id-1".to_vec());
        let doc = index.subscribe(point, ts(1));
        assert_eq!(index.len(), 3);

        let writes = write(1, b"general/42");
        log.append(ts(2), Arc::new(writes.clone()));
        assert_eq!(index.notify(ts(2), &writes), 1);
        assert_eq!(general.invalidated_at(), Some(ts(2)));
        assert_eq!(random.invalidated_at(), None);
        assert_eq!(doc.invalidated_at(), None);
        assert_eq!(index.len(), 2, "a fired subscription leaves the index");

        let writes = write(2, b"id-1");
        log.append(ts(3), Arc::new(writes.clone()));
        assert_eq!(index.notify(ts(3), &writes), 1);
        assert_eq!(doc.invalidated_at(), Some(ts(3)));
        drop(random);
        assert!(index.is_empty(), "dropping unsubscribes");
    }

    #[test]
    fn a_commit_between_the_read_and_the_subscribe_fires_at_once() {
        let log = Arc::new(WriteLog::new(ts(1)));
        let index = SubscriptionIndex::new(log.clone());
        log.append(ts(5), Arc::new(write(1, b"k")));
        let late = index.subscribe(range(1, b"a", b"z"), ts(4));
        assert_eq!(late.invalidated_at(), Some(ts(5)));
        let current = index.subscribe(range(1, b"a", b"z"), ts(5));
        assert_eq!(current.invalidated_at(), None);
        // A commit the reader already saw never fires it.
        assert_eq!(index.notify(ts(5), &write(1, b"k")), 0);
        let before_horizon = index.subscribe(range(1, b"a", b"b"), ts(0));
        assert_eq!(before_horizon.invalidated_at(), Some(ts(1)));
    }

    #[tokio::test]
    async fn invalidated_resolves_with_the_commit_timestamp() {
        let log = Arc::new(WriteLog::new(ts(1)));
        let index = SubscriptionIndex::new(log.clone());
        let sub = index.subscribe(range(3, b"a", b"c"), ts(1));
        let waiter = tokio::spawn(async move { sub.invalidated().await });
        tokio::task::yield_now().await;
        index.notify(ts(9), &write(3, b"b"));
        assert_eq!(waiter.await.ok().flatten(), Some(ts(9)));
    }
}
