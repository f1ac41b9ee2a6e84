//! A dynamic interval tree: "which stored intervals contain this key?" without looking at
//! the intervals that do not.
//!
//! The subscription index must answer, for every key a commit writes, which subscribed
//! intervals contain it, in time that does not grow with the number of unaffected
//! subscriptions. This is the classic augmented search tree: a treap (a binary search tree
//! balanced by random priorities, expected depth `O(log n)`) ordered by `(start, end)`, where
//! every node also knows the largest `end` in its subtree. A stabbing query for key `p`
//! descends only into subtrees whose largest end is beyond `p` and whose starts can be at or
//! below `p`, so it costs `O(log n)` to find the first match plus `O(log n)` per reported
//! interval: `O((1 + k) log n)` for `k` matches.
//!
//! Nodes live in a `Vec` arena addressed by index (no `unsafe`, no `Rc` cycles); freed slots
//! are reused. Identical intervals are one node carrying one value, so the caller can keep
//! a set of subscribers per distinct interval.

use std::cmp::Ordering;

use crate::interval::{Interval, IntervalEnd};

const NIL: usize = usize::MAX;

#[derive(Debug)]
struct Node<V> {
    interval: Interval,
    value: V,
    priority: u64,
    left: usize,
    right: usize,
    /// The node of this subtree whose interval has the largest end.
    max_end: usize,
}

/// Intervals (each distinct interval once) with a value each, answering stabbing queries.
#[derive(Debug)]
pub(crate) struct IntervalTree<V> {
    nodes: Vec<Option<Node<V>>>,
    free: Vec<usize>,
    root: usize,
    len: usize,
    seed: u64,
}

impl<V> Default for IntervalTree<V> {
    fn default() -> Self {
        IntervalTree {
            nodes: Vec::new(),
            free: Vec::new(),
            root: NIL,
            len: 0,
            seed: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

impl<V> IntervalTree<V> {
    /// How many distinct intervals are stored.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the tree is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn node(&self, index: usize) -> &Node<V> {
        match self.nodes.get(index) {
            Some(Some(node)) => node,
            // Indices come only from links inside the tree, which always point at live
            // nodes; anything else is a bug in this module.
            _ => unreachable!("interval tree link {index} points at no node"),
        }
    }

    fn node_mut(&mut self, index: usize) -> &mut Node<V> {
        match self.nodes.get_mut(index) {
            Some(Some(node)) => node,
            _ => unreachable!("interval tree link {index} points at no node"),
        }
    }

    fn next_priority(&mut self) -> u64 {
        // splitmix64: well spread priorities keep the treap balanced whatever the key order.
        self.seed = self.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn end_of(&self, index: usize) -> &IntervalEnd {
        &self.node(index).interval.end
    }

    fn update(&mut self, index: usize) {
        let (left, right) = {
            let node = self.node(index);
            (node.left, node.right)
        };
        let mut best = index;
        for child in [left, right] {
            if child != NIL {
                let candidate = self.node(child).max_end;
                if self.end_of(candidate) > self.end_of(best) {
                    best = candidate;
                }
            }
        }
        self.node_mut(index).max_end = best;
    }

    /// Split `tree` into the nodes ordered before node `pivot` and the rest.
    fn split(&mut self, tree: usize, pivot: usize) -> (usize, usize) {
        if tree == NIL {
            return (NIL, NIL);
        }
        let before = self.node(tree).interval < self.node(pivot).interval;
        if before {
            let right = self.node(tree).right;
            let (lower, upper) = self.split(right, pivot);
            self.node_mut(tree).right = lower;
            self.update(tree);
            (tree, upper)
        } else {
            let left = self.node(tree).left;
            let (lower, upper) = self.split(left, pivot);
            self.node_mut(tree).left = upper;
            self.update(tree);
            (lower, tree)
        }
    }

    /// Join two trees where every node of `lower` is ordered before every node of `upper`.
    fn merge(&mut self, lower: usize, upper: usize) -> usize {
        if lower == NIL {
            return upper;
        }
        if upper == NIL {
            return lower;
        }
        if self.node(lower).priority > self.node(upper).priority {
            let right = self.node(lower).right;
            let merged = self.merge(right, upper);
            self.node_mut(lower).right = merged;
            self.update(lower);
            lower
        } else {
            let left = self.node(upper).left;
            let merged = self.merge(lower, left);
            self.node_mut(upper).left = merged;
            self.update(upper);
            upper
        }
    }

    fn find(&self, interval: &Interval) -> usize {
        let mut at = self.root;
        while at != NIL {
            let node = self.node(at);
            at = match interval.cmp(&node.interval) {
                Ordering::Less => node.left,
                Ordering::Greater => node.right,
                Ordering::Equal => return at,
            };
        }
        NIL
    }

    /// The value stored for exactly `interval`, inserting `make()` first if absent.
    pub(crate) fn get_or_insert_with(
        &mut self,
        interval: &Interval,
        make: impl FnOnce() -> V,
    ) -> &mut V {
        let mut at = self.find(interval);
        if at == NIL {
            let priority = self.next_priority();
            let node = Node {
                interval: interval.clone(),
                value: make(),
                priority,
                left: NIL,
                right: NIL,
                max_end: NIL,
            };
            at = match self.free.pop() {
                Some(slot) => {
                    self.nodes[slot] = Some(node);
                    slot
                }
                None => {
                    self.nodes.push(Some(node));
                    self.nodes.len() - 1
                }
            };
            self.node_mut(at).max_end = at;
            let root = self.root;
            let (lower, upper) = self.split(root, at);
            let joined = self.merge(lower, at);
            self.root = self.merge(joined, upper);
            self.len += 1;
        }
        &mut self.node_mut(at).value
    }

    /// The value stored for exactly `interval`.
    pub(crate) fn get_mut(&mut self, interval: &Interval) -> Option<&mut V> {
        let at = self.find(interval);
        if at == NIL {
            None
        } else {
            Some(&mut self.node_mut(at).value)
        }
    }

    /// Remove exactly `interval`, returning its value.
    pub(crate) fn remove(&mut self, interval: &Interval) -> Option<V> {
        let root = self.root;
        let mut removed = None;
        self.root = self.remove_from(root, interval, &mut removed);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    fn remove_from(&mut self, tree: usize, interval: &Interval, removed: &mut Option<V>) -> usize {
        if tree == NIL {
            return NIL;
        }
        match interval.cmp(&self.node(tree).interval) {
            Ordering::Less => {
                let left = self.node(tree).left;
                let new_left = self.remove_from(left, interval, removed);
                self.node_mut(tree).left = new_left;
                self.update(tree);
                tree
            }
            Ordering::Greater => {
                let right = self.node(tree).right;
                let new_right = self.remove_from(right, interval, removed);
                self.node_mut(tree).right = new_right;
                self.update(tree);
                tree
            }
            Ordering::Equal => {
                let (left, right) = {
                    let node = self.node(tree);
                    (node.left, node.right)
                };
                let merged = self.merge(left, right);
                if let Some(node) = self.nodes[tree].take() {
                    *removed = Some(node.value);
                }
                self.free.push(tree);
                merged
            }
        }
    }

    /// Call `visit` with the value of every stored interval that contains `key`.
    pub(crate) fn stab<'a>(&'a self, key: &[u8], visit: &mut impl FnMut(&'a Interval, &'a V)) {
        self.stab_from(self.root, key, visit);
    }

    fn stab_from<'a>(
        &'a self,
        tree: usize,
        key: &[u8],
        visit: &mut impl FnMut(&'a Interval, &'a V),
    ) {
        if tree == NIL {
            return;
        }
        let node = self.node(tree);
        // Nothing in this subtree reaches past `key`: no interval here contains it.
        if !self.end_of(node.max_end).is_after(key) {
            return;
        }
        self.stab_from(node.left, key, visit);
        if node.interval.start.as_slice() <= key {
            if node.interval.end.is_after(key) {
                visit(&node.interval, &node.value);
            }
            self.stab_from(node.right, key, visit);
        }
    }

    /// How many nodes a stabbing query for `key` visits (for tests of the complexity).
    #[cfg(test)]
    fn visits(&self, key: &[u8]) -> usize {
        fn go<V>(tree: &IntervalTree<V>, at: usize, key: &[u8], count: &mut usize) {
            if at == NIL {
                return;
            }
            *count += 1;
            let node = tree.node(at);
            if !tree.end_of(node.max_end).is_after(key) {
                return;
            }
            go(tree, node.left, key, count);
            if node.interval.start.as_slice() <= key {
                go(tree, node.right, key, count);
            }
        }
        let mut count = 0;
        go(self, self.root, key, &mut count);
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn interval(start: u16, end: Option<u16>) -> Interval {
        Interval::new(
            start.to_be_bytes().to_vec(),
            match end {
                Some(e) => IntervalEnd::Excluded(e.to_be_bytes().to_vec()),
                None => IntervalEnd::Unbounded,
            },
        )
    }

    #[test]
    fn a_stabbing_query_skips_disjoint_intervals() {
        // 10,000 disjoint ranges, like 10,000 subscribers each on their own channel.
        let mut tree = IntervalTree::default();
        for i in 0..10_000u16 {
            *tree.get_or_insert_with(&interval(i * 4, Some(i * 4 + 2)), || 0u32) += 1;
        }
        let mut found = Vec::new();
        tree.stab(&(4_001u16).to_be_bytes(), &mut |iv, _| {
            found.push(iv.clone())
        });
        assert_eq!(found, vec![interval(4_000, Some(4_002))]);
        let visited = tree.visits(&(4_001u16).to_be_bytes());
        assert!(
            visited < 200,
            "a query visited {visited} of 10,000 nodes; it must stay logarithmic"
        );
        tree.stab(&(4_003u16).to_be_bytes(), &mut |iv, _| {
            found.push(iv.clone())
        });
        assert_eq!(found.len(), 1, "4003 lies in a gap");
    }

    proptest! {
        #[test]
        fn stabbing_matches_a_linear_scan(
            ranges in proptest::collection::vec((0u16..200, proptest::option::of(0u16..200)), 0..60),
            removals in proptest::collection::vec(0usize..60, 0..30),
            probes in proptest::collection::vec(0u16..220, 1..30),
        ) {
            let mut tree = IntervalTree::default();
            let mut model: Vec<Interval> = Vec::new();
            for (start, end) in ranges {
                let iv = interval(start, end);
                tree.get_or_insert_with(&iv, || ());
                if !model.contains(&iv) {
                    model.push(iv);
                }
            }
            for r in removals {
                if r < model.len() {
                    let iv = model.remove(r);
                    prop_assert!(tree.remove(&iv).is_some());
                    prop_assert!(tree.remove(&iv).is_none());
                }
            }
            prop_assert_eq!(tree.len(), model.len());
            for p in probes {
                let key = p.to_be_bytes();
                let mut got = Vec::new();
                tree.stab(&key, &mut |iv, _| got.push(iv.clone()));
                got.sort();
                let mut want: Vec<Interval> = model.iter().filter(|iv| iv.contains(&key)).cloned().collect();
                want.sort();
                prop_assert_eq!(got, want);
            }
        }
    }
}
