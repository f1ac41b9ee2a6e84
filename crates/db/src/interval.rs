//! Intervals of index keys, and sets of them.
//!
//! Read sets, subscription ranges and query ranges are all "which index keys does this
//! cover": half-open byte intervals `[start, end)` over the encoded keys of one index (the
//! encoding of `conflux_values::index_key` sorts like the values). A point read is the
//! interval `[key, key ++ 0x00)`, which contains `key` and nothing else, because no byte
//! string lies strictly between `k` and `k ++ 0x00`.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;

/// The exclusive end of an [`Interval`]: a key, or past every key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IntervalEnd {
    /// Keys strictly below this one.
    Excluded(Vec<u8>),
    /// Every key from the start on.
    Unbounded,
}

impl IntervalEnd {
    /// Whether `key` lies before this end.
    pub fn is_after(&self, key: &[u8]) -> bool {
        match self {
            IntervalEnd::Excluded(end) => key < end.as_slice(),
            IntervalEnd::Unbounded => true,
        }
    }

    /// The end as a key, if bounded.
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            IntervalEnd::Excluded(end) => Some(end),
            IntervalEnd::Unbounded => None,
        }
    }
}

impl PartialOrd for IntervalEnd {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IntervalEnd {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (IntervalEnd::Excluded(a), IntervalEnd::Excluded(b)) => a.cmp(b),
            (IntervalEnd::Excluded(_), IntervalEnd::Unbounded) => Ordering::Less,
            (IntervalEnd::Unbounded, IntervalEnd::Excluded(_)) => Ordering::Greater,
            (IntervalEnd::Unbounded, IntervalEnd::Unbounded) => Ordering::Equal,
        }
    }
}

/// A half-open interval `[start, end)` of encoded index keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Interval {
    /// The first key inside the interval.
    pub start: Vec<u8>,
    /// The end, excluded.
    pub end: IntervalEnd,
}

impl Interval {
    /// `[start, end)`.
    pub fn new(start: Vec<u8>, end: IntervalEnd) -> Interval {
        Interval { start, end }
    }

    /// Every key.
    pub fn all() -> Interval {
        Interval {
            start: Vec::new(),
            end: IntervalEnd::Unbounded,
        }
    }

    /// Exactly `key`.
    pub fn point(key: Vec<u8>) -> Interval {
        let end = successor(&key);
        Interval {
            start: key,
            end: IntervalEnd::Excluded(end),
        }
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: Vec<u8>) -> Interval {
        let end = match prefix_successor(&prefix) {
            Some(end) => IntervalEnd::Excluded(end),
            None => IntervalEnd::Unbounded,
        };
        Interval { start: prefix, end }
    }

    /// Whether `key` lies inside.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.start.as_slice() <= key && self.end.is_after(key)
    }

    /// Whether no key lies inside.
    pub fn is_empty(&self) -> bool {
        !self.end.is_after(&self.start)
    }

    /// Whether the interval holds exactly one key (as made by [`Interval::point`]).
    pub fn is_point(&self) -> bool {
        match &self.end {
            IntervalEnd::Excluded(end) => {
                end.len() == self.start.len() + 1
                    && end.last() == Some(&0)
                    && end.starts_with(&self.start)
            }
            IntervalEnd::Unbounded => false,
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, ", hex(&self.start))?;
        match &self.end {
            IntervalEnd::Excluded(end) => write!(f, "{})", hex(end)),
            IntervalEnd::Unbounded => write!(f, "..)"),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The smallest byte string greater than `key`: `key ++ 0x00`.
pub fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

/// The smallest byte string greater than every string starting with `prefix`, or `None`
/// when there is none (the prefix is empty or all `0xff`).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut next = prefix.to_vec();
    while let Some(last) = next.pop() {
        if last < u8::MAX {
            next.push(last + 1);
            return Some(next);
        }
    }
    None
}

/// A set of disjoint, non-adjacent intervals kept in key order; inserting merges.
///
/// Membership is `O(log n)`: the only interval that can hold a key is the one with the
/// greatest start at or below it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntervalSet {
    by_start: BTreeMap<Vec<u8>, IntervalEnd>,
}

impl IntervalSet {
    /// An empty set.
    pub fn new() -> IntervalSet {
        IntervalSet::default()
    }

    /// Add `interval`, merging it with the intervals it overlaps or touches.
    pub fn insert(&mut self, interval: Interval) {
        if interval.is_empty() {
            return;
        }
        let Interval { mut start, mut end } = interval;
        // An interval starting at or before `start` that reaches it absorbs the new one.
        let before = self
            .by_start
            .range(..=start.clone())
            .next_back()
            .map(|(s, e)| (s.clone(), e.clone()));
        if let Some((prev_start, prev_end)) = before {
            let reaches = match &prev_end {
                IntervalEnd::Excluded(e) => e.as_slice() >= start.as_slice(),
                IntervalEnd::Unbounded => true,
            };
            if reaches {
                self.by_start.remove(&prev_start);
                start = prev_start;
                end = end.max(prev_end);
            }
        }
        // Intervals starting inside (or right at the end of) the new one merge into it.
        loop {
            let next = self
                .by_start
                .range(start.clone()..)
                .next()
                .map(|(s, e)| (s.clone(), e.clone()));
            let Some((next_start, next_end)) = next else {
                break;
            };
            let touches = match &end {
                IntervalEnd::Excluded(e) => next_start.as_slice() <= e.as_slice(),
                IntervalEnd::Unbounded => true,
            };
            if !touches {
                break;
            }
            self.by_start.remove(&next_start);
            end = end.max(next_end);
        }
        self.by_start.insert(start, end);
    }

    /// Whether some interval of the set holds `key`.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self
            .by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
        {
            Some((_, end)) => end.is_after(key),
            None => false,
        }
    }

    /// The intervals in key order.
    pub fn iter(&self) -> impl Iterator<Item = Interval> + '_ {
        self.by_start.iter().map(|(start, end)| Interval {
            start: start.clone(),
            end: end.clone(),
        })
    }

    /// How many disjoint intervals the set holds.
    pub fn len(&self) -> usize {
        self.by_start.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.by_start.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(start: &[u8], end: Option<&[u8]>) -> Interval {
        Interval::new(
            start.to_vec(),
            match end {
                Some(e) => IntervalEnd::Excluded(e.to_vec()),
                None => IntervalEnd::Unbounded,
            },
        )
    }

    #[test]
    fn a_point_holds_exactly_its_key() {
        let point = Interval::point(b"abc".to_vec());
        assert!(point.is_point());
        assert!(point.contains(b"abc"));
        assert!(!point.contains(b"abc\0"));
        assert!(!point.contains(b"ab"));
        assert!(!point.contains(b"abd"));
    }

    #[test]
    fn a_prefix_covers_all_extensions() {
        let prefix = Interval::prefix(vec![1, 0xff]);
        assert!(prefix.contains(&[1, 0xff]));
        assert!(prefix.contains(&[1, 0xff, 0xff, 3]));
        assert!(!prefix.contains(&[2]));
        assert_eq!(prefix.end, IntervalEnd::Excluded(vec![2]));
        assert_eq!(Interval::prefix(vec![0xff]).end, IntervalEnd::Unbounded);
    }

    #[test]
    fn overlapping_and_touching_intervals_merge() {
        let mut set = IntervalSet::new();
        set.insert(iv(b"b", Some(b"d")));
        set.insert(iv(b"f", Some(b"h")));
        assert_eq!(set.len(), 2);
        set.insert(iv(b"d", Some(b"e")));
        assert_eq!(set.len(), 2, "[b,d) and [d,e) touch");
        set.insert(iv(b"a", Some(b"g")));
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![iv(b"a", Some(b"h"))]);
        set.insert(iv(b"c", None));
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![iv(b"a", None)]);
    }

    #[test]
    fn membership_respects_exclusive_ends() {
        let mut set = IntervalSet::new();
        set.insert(iv(b"b", Some(b"d")));
        set.insert(iv(b"x", Some(b"y")));
        set.insert(iv(b"q", Some(b"q")));
        assert!(!set.contains(b"a"));
        assert!(set.contains(b"b"));
        assert!(set.contains(b"cz"));
        assert!(!set.contains(b"d"));
        assert!(!set.contains(b"q"), "empty intervals are not stored");
        assert!(set.contains(b"x\xff"));
        assert!(!set.contains(b"y"));
    }
}
