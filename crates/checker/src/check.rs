//! Judging a [`History`]: dependency cycles, lost, duplicated and phantom appends, reads
//! that go back in time, and live queries that stop updating.
//!
//! # The inference (list-append, after Elle)
//!
//! Every append writes a unique value and every read returns a whole list, so:
//!
//! - the final list of a key is the order in which the appends to it took effect; every
//!   list read during the run must be a prefix of it (anything else means two histories
//!   diverged);
//! - **ww**: the writer of the *i*-th element precedes the writer of the (*i*+1)-th;
//! - **wr**: a read whose last element is *v* comes after the writer of *v*;
//! - **rw** (anti-dependency): a read of the first *n* elements comes before the writer of
//!   element *n* + 1, which it did not see;
//! - **process order**: a client's mutations run one after the other; an update a client
//!   saw precedes the mutations it sends afterwards; for the npm client (which reports
//!   updates and results on one ordered stream) a mutation it saw complete precedes the
//!   updates that follow. The Rust client's update stream is not ordered with its
//!   mutation results, so that last kind of edge is not drawn for it;
//! - **real time**: a mutation acknowledged before another one was sent (by any client)
//!   precedes it: mutations are strictly serializable.
//!
//! A serializable execution orders all transactions consistently with these edges, so
//! any cycle is a violation. Each read-only update a client saw is one transaction: the
//! npm and Rust clients both apply a `Transition` (one snapshot for every query) at once.
//!
//! # The other checks
//!
//! Acknowledged appends missing from the final lists (lost writes), values present twice
//! (a resent mutation applied twice), values nobody appended, values of mutations that
//! failed (aborted reads), a client's live query showing a list that does not extend the
//! previous one it showed (time going backwards), a decreasing server timestamp seen by
//! one client, and clients whose live queries did not reach the final lists at the end.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;

use crate::history::{show_list, show_time, ClientKind, History, Op, OpKind, Outcome};

/// A dependency between two transactions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edge {
    /// `from` appended `first`, and `to` appended `then` right after it on `key`.
    WriteWrite {
        /// The key.
        key: String,
        /// The earlier value.
        first: i64,
        /// The next value.
        then: i64,
    },
    /// `to` read `key` up to `value`, which `from` appended.
    WriteRead {
        /// The key.
        key: String,
        /// The last value read.
        value: i64,
    },
    /// `from` read `seen` elements of `key` and missed `missed`, appended next by `to`.
    ReadWrite {
        /// The key.
        key: String,
        /// How many elements the read saw.
        seen: usize,
        /// The value it did not see.
        missed: i64,
    },
    /// Both belong to client `client`, `from` first.
    Process {
        /// The client.
        client: usize,
    },
    /// `from` was acknowledged before `to` was sent.
    RealTime,
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Edge::WriteWrite { key, first, then } => {
                write!(f, "ww on {key}: {then} was appended right after {first}")
            }
            Edge::WriteRead { key, value } => write!(f, "wr on {key}: read up to {value}"),
            Edge::ReadWrite { key, seen, missed } => write!(
                f,
                "rw on {key}: read {seen} element(s), not {missed}, which was appended next"
            ),
            Edge::Process { client } => write!(f, "process order of client {client}"),
            Edge::RealTime => write!(f, "real time: acknowledged before the next was sent"),
        }
    }
}

/// One step of a cycle: a transaction and the edge to the next one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CycleStep {
    /// The transaction, described.
    pub txn: String,
    /// Why the next transaction must come after it.
    pub edge: Edge,
}

/// A dependency cycle: no serial order explains what the clients saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cycle {
    /// The steps; the last edge leads back to the first transaction.
    pub steps: Vec<CycleStep>,
}

impl Cycle {
    /// Adya's name for the anomaly (G0, G1c, G-single, G2), with the non-data edges noted.
    pub fn classification(&self) -> String {
        let rw = self
            .steps
            .iter()
            .filter(|s| matches!(s.edge, Edge::ReadWrite { .. }))
            .count();
        let wr = self
            .steps
            .iter()
            .any(|s| matches!(s.edge, Edge::WriteRead { .. }));
        let process = self
            .steps
            .iter()
            .any(|s| matches!(s.edge, Edge::Process { .. }));
        let realtime = self.steps.iter().any(|s| matches!(s.edge, Edge::RealTime));
        let base = match (rw, wr) {
            (0, false) => "G0 (write cycle)",
            (0, true) => "G1c (circular information flow)",
            (1, _) => "G-single (read skew / lost update)",
            _ => "G2 (anti-dependency cycle, e.g. write skew)",
        };
        let mut extra = Vec::new();
        if process {
            extra.push("process order");
        }
        if realtime {
            extra.push("real time");
        }
        if extra.is_empty() {
            base.to_owned()
        } else {
            format!("{base} with {}", extra.join(" and "))
        }
    }
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "dependency cycle of {} transactions, {}:",
            self.steps.len(),
            self.classification()
        )?;
        for step in &self.steps {
            writeln!(f, "    {}", step.txn)?;
            writeln!(f, "      --[{}]-->", step.edge)?;
        }
        if let Some(first) = self.steps.first() {
            write!(f, "    {} (again)", first.txn)?;
        }
        Ok(())
    }
}

/// A violation of a promise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anomaly {
    /// An acknowledged append is missing from the final list.
    LostAppend {
        /// The operation.
        op: String,
        /// The key.
        key: String,
        /// The value.
        value: i64,
    },
    /// A value appears more than once in a list (a resent mutation applied twice).
    Duplicate {
        /// The key.
        key: String,
        /// The value.
        value: i64,
        /// How many times.
        count: usize,
        /// Who appended it.
        op: Option<String>,
    },
    /// A value nobody appended.
    UnknownValue {
        /// The key.
        key: String,
        /// The value.
        value: i64,
    },
    /// The value of a mutation that failed is visible (an aborted read).
    FailedAppendVisible {
        /// The operation.
        op: String,
        /// The key.
        key: String,
        /// The error the client received.
        error: String,
    },
    /// A read that is not a prefix of the final list: two orders of one key.
    NotAPrefix {
        /// Who read it.
        reader: String,
        /// The key.
        key: String,
        /// What was read.
        read: Vec<i64>,
        /// The final list.
        final_list: Vec<i64>,
    },
    /// A mutation's result does not show its own append where it must be.
    OwnAppendMisplaced {
        /// The operation.
        op: String,
        /// The list it returned.
        returned: Vec<i64>,
    },
    /// A result the function never returns.
    Garbled {
        /// The operation.
        op: String,
        /// What arrived.
        text: String,
    },
    /// A client's live query showed a list that does not extend the one it showed before.
    WentBackwards {
        /// The client.
        client: usize,
        /// The key.
        key: String,
        /// Seen first.
        before: Vec<i64>,
        /// Seen later.
        after: Vec<i64>,
        /// When the later one was seen.
        at_ns: u64,
    },
    /// A client saw the server timestamp decrease.
    TimestampWentBackwards {
        /// The client.
        client: usize,
        /// Seen first.
        before: u64,
        /// Seen later.
        after: u64,
        /// When the later one was seen.
        at_ns: u64,
    },
    /// At the end, a connected client's live query did not show the final list.
    StaleSubscription {
        /// The client.
        client: usize,
        /// The key.
        key: String,
        /// The last list it showed.
        last_seen: Option<Vec<i64>>,
        /// The final list.
        final_list: Vec<i64>,
    },
    /// A dependency cycle.
    Cycle(Cycle),
}

impl Anomaly {
    /// The kind of violation, for grouping in reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Anomaly::LostAppend { .. } => "lost acknowledged append",
            Anomaly::Duplicate { .. } => "duplicated append",
            Anomaly::UnknownValue { .. } => "phantom value",
            Anomaly::FailedAppendVisible { .. } => "aborted read",
            Anomaly::NotAPrefix { .. } => "incompatible order",
            Anomaly::OwnAppendMisplaced { .. } => "own append misplaced",
            Anomaly::Garbled { .. } => "garbled result",
            Anomaly::WentBackwards { .. } => "live query went backwards",
            Anomaly::TimestampWentBackwards { .. } => "server timestamp went backwards",
            Anomaly::StaleSubscription { .. } => "stale live query",
            Anomaly::Cycle(_) => "dependency cycle",
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anomaly::LostAppend { op, key, value } => write!(
                f,
                "lost acknowledged append: {op} was acknowledged, but {value} is not in the \
                 final list of {key}"
            ),
            Anomaly::Duplicate {
                key,
                value,
                count,
                op,
            } => write!(
                f,
                "duplicated append: {value} appears {count} times in {key} (appended by {})",
                op.as_deref().unwrap_or("nobody known")
            ),
            Anomaly::UnknownValue { key, value } => {
                write!(f, "phantom value: {value} in {key} was never appended")
            }
            Anomaly::FailedAppendVisible { op, key, error } => write!(
                f,
                "aborted read: {op} failed ({error}) but its value is visible in {key}"
            ),
            Anomaly::NotAPrefix {
                reader,
                key,
                read,
                final_list,
            } => write!(
                f,
                "incompatible order of {key}: {reader} read {read:?}, which is not a prefix of \
                 the final list {final_list:?}"
            ),
            Anomaly::OwnAppendMisplaced { op, returned } => write!(
                f,
                "{op}: the list it returned, {}, does not end with its own append",
                show_list(returned)
            ),
            Anomaly::Garbled { op, text } => write!(f, "{op} returned something else: {text}"),
            Anomaly::WentBackwards {
                client,
                key,
                before,
                after,
                at_ns,
            } => write!(
                f,
                "time went backwards for client {client} at {}: its live query of {key} showed \
                 {} after {}",
                show_time(*at_ns),
                show_list(after),
                show_list(before)
            ),
            Anomaly::TimestampWentBackwards {
                client,
                before,
                after,
                at_ns,
            } => write!(
                f,
                "time went backwards for client {client} at {}: server timestamp {after} after \
                 {before}",
                show_time(*at_ns)
            ),
            Anomaly::StaleSubscription {
                client,
                key,
                last_seen,
                final_list,
            } => write!(
                f,
                "stale live query: client {client} last saw {} for {key}, the final list is {}",
                last_seen
                    .as_deref()
                    .map(show_list)
                    .unwrap_or_else(|| "nothing".into()),
                show_list(final_list)
            ),
            Anomaly::Cycle(cycle) => write!(f, "{cycle}"),
        }
    }
}

/// Counts of what was checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Mutations acknowledged.
    pub acknowledged: usize,
    /// Mutations that failed with an error.
    pub failed: usize,
    /// Mutations without an answer.
    pub unknown: usize,
    /// Live-query updates.
    pub observations: usize,
    /// Transactions in the dependency graph.
    pub transactions: usize,
    /// Edges in the dependency graph.
    pub edges: usize,
    /// Elements in the final lists.
    pub final_elements: usize,
}

/// The verdict on a history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Analysis {
    /// Every violation found (empty: the history is consistent with every promise).
    pub anomalies: Vec<Anomaly>,
    /// What was checked.
    pub stats: Stats,
}

impl Analysis {
    /// Whether no violation was found.
    pub fn is_valid(&self) -> bool {
        self.anomalies.is_empty()
    }

    /// Whether a dependency cycle was found.
    pub fn has_cycle(&self) -> bool {
        self.anomalies
            .iter()
            .any(|a| matches!(a, Anomaly::Cycle(_)))
    }

    /// Whether an acknowledged append was lost.
    pub fn has_lost_append(&self) -> bool {
        self.anomalies
            .iter()
            .any(|a| matches!(a, Anomaly::LostAppend { .. }))
    }
}

/// Most cycles reported per history.
const MAX_CYCLES: usize = 5;

struct Txn {
    describe: String,
    reads: Vec<(String, Vec<i64>)>,
    appends: Vec<(String, i64)>,
}

#[derive(Default)]
struct Graph {
    txns: Vec<Txn>,
    edges: Vec<Vec<(usize, Edge)>>,
    edge_count: usize,
}

impl Graph {
    fn add(&mut self, txn: Txn) -> usize {
        self.txns.push(txn);
        self.edges.push(Vec::new());
        self.txns.len() - 1
    }

    fn edge(&mut self, from: usize, to: usize, edge: Edge) {
        if from != to {
            self.edges[from].push((to, edge));
            self.edge_count += 1;
        }
    }
}

fn describe_op(index: usize, op: &Op, kind: ClientKind) -> String {
    let what = match &op.kind {
        OpKind::Append { key, value, .. } => format!("append {value} to {key}"),
        OpKind::AppendAndRead {
            key, value, read, ..
        } => format!("append {value} to {key} and read {}", read.join(",")),
    };
    let outcome = match &op.outcome {
        Outcome::Ok(result) => {
            let shown: Vec<String> = result
                .lists
                .iter()
                .map(|(k, l)| format!("{k}={}", show_list(l)))
                .collect();
            format!(
                "→ {}{}",
                shown.join(" "),
                if result.already_appended {
                    " (already appended)"
                } else {
                    ""
                }
            )
        }
        Outcome::Failed(err) => format!("→ failed: {}", first_line(err)),
        Outcome::Garbled(text) => format!("→ garbled: {text}"),
        Outcome::Unknown(why) => format!("→ no answer ({why})"),
    };
    format!(
        "op#{index} [client {} {kind}, sent {}{}] {what} {outcome}",
        op.client,
        show_time(op.invoked_ns),
        op.completed_ns
            .map(|c| format!(", acked {}", show_time(c)))
            .unwrap_or_default()
    )
}

fn first_line(text: &str) -> &str {
    text.lines().last().unwrap_or(text)
}

/// Judge `history`; see the module docs.
pub fn check(history: &History) -> Analysis {
    let mut anomalies = Vec::new();
    let mut stats = Stats {
        observations: history.observations.len(),
        final_elements: history.final_lists.values().map(Vec::len).sum(),
        ..Stats::default()
    };
    let kind_of = |client: usize| {
        history
            .clients
            .get(client)
            .map(|c| c.kind)
            .unwrap_or(ClientKind::Rust)
    };

    // ---- transactions ----
    let mut graph = Graph::default();
    // The nodes of each op, in op order.
    let mut op_nodes: Vec<Vec<usize>> = Vec::with_capacity(history.ops.len());
    let mut writer: HashMap<(String, i64), usize> = HashMap::new();
    let mut failed: HashMap<(String, i64), (usize, String)> = HashMap::new();
    let mut acknowledged: Vec<usize> = Vec::new();
    for (index, op) in history.ops.iter().enumerate() {
        let describe = describe_op(index, op, kind_of(op.client));
        let key = op.kind.key().to_owned();
        let value = op.kind.value();
        let mut nodes = Vec::new();
        let write_only = |graph: &mut Graph| {
            graph.add(Txn {
                describe: describe.clone(),
                reads: Vec::new(),
                appends: vec![(key.clone(), value)],
            })
        };
        match &op.outcome {
            Outcome::Ok(result) => {
                stats.acknowledged += 1;
                acknowledged.push(index);
                let own = result.lists.get(&key).cloned().unwrap_or_default();
                let others: Vec<(String, Vec<i64>)> = result
                    .lists
                    .iter()
                    .filter(|(k, _)| **k != key)
                    .map(|(k, l)| (k.clone(), l.clone()))
                    .collect();
                let count = own.iter().filter(|v| **v == value).count();
                if !result.already_appended && count == 1 && own.last() == Some(&value) {
                    // The normal case: read the list, append to it.
                    let mut reads = others;
                    reads.push((key.clone(), own[..own.len() - 1].to_vec()));
                    nodes.push(graph.add(Txn {
                        describe: describe.clone(),
                        reads,
                        appends: vec![(key.clone(), value)],
                    }));
                } else {
                    // The append took effect in an earlier application of the same request
                    // (an idempotent resend), or the result is wrong: model the write and
                    // the read as two transactions within the op's interval.
                    let explained = result.already_appended && count == 1 && op.kind.dedupe();
                    if !explained {
                        anomalies.push(Anomaly::OwnAppendMisplaced {
                            op: describe.clone(),
                            returned: own.clone(),
                        });
                    }
                    nodes.push(write_only(&mut graph));
                    let mut reads = others;
                    reads.push((key.clone(), own));
                    nodes.push(graph.add(Txn {
                        describe: format!("{describe} (its read)"),
                        reads,
                        appends: Vec::new(),
                    }));
                }
            }
            Outcome::Failed(err) => {
                stats.failed += 1;
                failed.insert((key.clone(), value), (index, err.clone()));
            }
            Outcome::Garbled(text) => {
                anomalies.push(Anomaly::Garbled {
                    op: describe.clone(),
                    text: text.clone(),
                });
                nodes.push(write_only(&mut graph));
            }
            Outcome::Unknown(_) => {
                stats.unknown += 1;
                nodes.push(write_only(&mut graph));
            }
        }
        for node in &nodes {
            if !graph.txns[*node].appends.is_empty() {
                writer.insert((key.clone(), value), *node);
            }
        }
        op_nodes.push(nodes);
    }
    let mut observation_nodes = Vec::with_capacity(history.observations.len());
    for (index, observation) in history.observations.iter().enumerate() {
        let lists: Vec<String> = observation
            .lists
            .iter()
            .map(|(k, l)| format!("{k}={}", show_list(l)))
            .collect();
        let describe = format!(
            "update#{index} [client {} {}, seen {}{}] {}",
            observation.client,
            kind_of(observation.client),
            show_time(observation.at_ns),
            observation
                .ts
                .map(|ts| format!(", ts {ts}"))
                .unwrap_or_default(),
            lists.join(" ")
        );
        observation_nodes.push(
            graph.add(Txn {
                describe,
                reads: observation
                    .lists
                    .iter()
                    .map(|(k, l)| (k.clone(), l.clone()))
                    .collect(),
                appends: Vec::new(),
            }),
        );
    }

    // ---- the final lists ----
    let mut usable_keys: HashMap<String, bool> = HashMap::new();
    for (key, list) in &history.final_lists {
        let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
        for value in list {
            *counts.entry(*value).or_default() += 1;
        }
        let mut usable = true;
        for (value, count) in counts {
            let who = writer
                .get(&(key.clone(), value))
                .map(|node| graph.txns[*node].describe.clone());
            if count > 1 {
                usable = false;
                anomalies.push(Anomaly::Duplicate {
                    key: key.clone(),
                    value,
                    count,
                    op: who.clone(),
                });
            }
            if let Some((op, error)) = failed.get(&(key.clone(), value)) {
                anomalies.push(Anomaly::FailedAppendVisible {
                    op: describe_op(*op, &history.ops[*op], kind_of(history.ops[*op].client)),
                    key: key.clone(),
                    error: first_line(error).to_owned(),
                });
            } else if who.is_none() {
                usable = false;
                anomalies.push(Anomaly::UnknownValue {
                    key: key.clone(),
                    value,
                });
            }
        }
        usable_keys.insert(key.clone(), usable);
    }
    for index in &acknowledged {
        let op = &history.ops[*index];
        let key = op.kind.key();
        let present = history
            .final_lists
            .get(key)
            .is_some_and(|list| list.contains(&op.kind.value()));
        if !present {
            anomalies.push(Anomaly::LostAppend {
                op: describe_op(*index, op, kind_of(op.client)),
                key: key.to_owned(),
                value: op.kind.value(),
            });
        }
    }

    // ---- data dependencies ----
    let empty = Vec::new();
    for (key, list) in &history.final_lists {
        if !usable_keys.get(key).copied().unwrap_or(false) {
            continue;
        }
        for pair in list.windows(2) {
            let (Some(a), Some(b)) = (
                writer.get(&(key.clone(), pair[0])),
                writer.get(&(key.clone(), pair[1])),
            ) else {
                continue;
            };
            graph.edge(
                *a,
                *b,
                Edge::WriteWrite {
                    key: key.clone(),
                    first: pair[0],
                    then: pair[1],
                },
            );
        }
    }
    for node in 0..graph.txns.len() {
        let reads = std::mem::take(&mut graph.txns[node].reads);
        for (key, read) in &reads {
            let final_list = history.final_lists.get(key).unwrap_or(&empty);
            if !final_list.starts_with(read) {
                anomalies.push(Anomaly::NotAPrefix {
                    reader: graph.txns[node].describe.clone(),
                    key: key.clone(),
                    read: read.clone(),
                    final_list: final_list.clone(),
                });
                continue;
            }
            if !usable_keys.get(key).copied().unwrap_or(false) {
                continue;
            }
            if let Some(last) = read.last() {
                if let Some(from) = writer.get(&(key.clone(), *last)) {
                    graph.edge(
                        *from,
                        node,
                        Edge::WriteRead {
                            key: key.clone(),
                            value: *last,
                        },
                    );
                }
            }
            if let Some(next) = final_list.get(read.len()) {
                if let Some(to) = writer.get(&(key.clone(), *next)) {
                    graph.edge(
                        node,
                        *to,
                        Edge::ReadWrite {
                            key: key.clone(),
                            seen: read.len(),
                            missed: *next,
                        },
                    );
                }
            }
        }
        graph.txns[node].reads = reads;
    }

    // ---- process order ----
    for client in 0..history.clients.len() {
        let ops: Vec<usize> = (0..history.ops.len())
            .filter(|i| history.ops[*i].client == client)
            .collect();
        let observations: Vec<usize> = (0..history.observations.len())
            .filter(|i| history.observations[*i].client == client)
            .collect();
        // Each acknowledged mutation precedes the next ones up to the next acknowledged
        // one (unanswered ones in between are ordered after it, not before anything).
        for (position, from_op) in ops.iter().enumerate() {
            if history.ops[*from_op].completed_ns.is_none() {
                continue;
            }
            for to_op in &ops[position + 1..] {
                for from in &op_nodes[*from_op] {
                    for to in &op_nodes[*to_op] {
                        graph.edge(*from, *to, Edge::Process { client });
                    }
                }
                if history.ops[*to_op].completed_ns.is_some() {
                    break;
                }
            }
        }
        for pair in observations.windows(2) {
            graph.edge(
                observation_nodes[pair[0]],
                observation_nodes[pair[1]],
                Edge::Process { client },
            );
        }
        for o in &observations {
            let seen = history.observations[*o].at_ns;
            if let Some(next) = ops.iter().find(|i| history.ops[**i].invoked_ns > seen) {
                for to in &op_nodes[*next] {
                    graph.edge(observation_nodes[*o], *to, Edge::Process { client });
                }
            }
        }
        if kind_of(client) == ClientKind::Npm {
            for i in &ops {
                let Some(done) = history.ops[*i].completed_ns else {
                    continue;
                };
                if let Some(next) = observations
                    .iter()
                    .find(|o| history.observations[**o].at_ns > done)
                {
                    for from in &op_nodes[*i] {
                        graph.edge(*from, observation_nodes[*next], Edge::Process { client });
                    }
                }
            }
        }
    }

    // ---- real time between mutations ----
    let mut by_start: Vec<usize> = (0..history.ops.len())
        .filter(|i| !op_nodes[*i].is_empty())
        .collect();
    by_start.sort_by_key(|i| history.ops[*i].invoked_ns);
    // The smallest completion among the ops starting at or after each position.
    let mut suffix_min_end = vec![u64::MAX; by_start.len() + 1];
    for pos in (0..by_start.len()).rev() {
        let end = history.ops[by_start[pos]].completed_ns.unwrap_or(u64::MAX);
        suffix_min_end[pos] = suffix_min_end[pos + 1].min(end);
    }
    for a in &by_start {
        let Some(done) = history.ops[*a].completed_ns else {
            continue;
        };
        let first = by_start.partition_point(|i| history.ops[*i].invoked_ns <= done);
        // Only the minimal successors: those that began before any successor ended.
        let horizon = suffix_min_end[first];
        for b in &by_start[first..] {
            if history.ops[*b].invoked_ns > horizon {
                break;
            }
            for from in &op_nodes[*a] {
                for to in &op_nodes[*b] {
                    graph.edge(*from, *to, Edge::RealTime);
                }
            }
        }
    }
    stats.transactions = graph.txns.len();
    stats.edges = graph.edge_count;

    for cycle in find_cycles(&graph) {
        anomalies.push(Anomaly::Cycle(cycle));
    }

    // ---- what each client saw over time ----
    let mut last_seen: BTreeMap<(usize, String), Vec<i64>> = BTreeMap::new();
    let mut last_ts: BTreeMap<usize, u64> = BTreeMap::new();
    for observation in &history.observations {
        for (key, list) in &observation.lists {
            let slot = (observation.client, key.clone());
            if let Some(before) = last_seen.get(&slot) {
                if !list.starts_with(before) {
                    anomalies.push(Anomaly::WentBackwards {
                        client: observation.client,
                        key: key.clone(),
                        before: before.clone(),
                        after: list.clone(),
                        at_ns: observation.at_ns,
                    });
                }
            }
            last_seen.insert(slot, list.clone());
        }
        if let Some(ts) = observation.ts {
            if let Some(before) = last_ts.get(&observation.client) {
                if ts < *before {
                    anomalies.push(Anomaly::TimestampWentBackwards {
                        client: observation.client,
                        before: *before,
                        after: ts,
                        at_ns: observation.at_ns,
                    });
                }
            }
            last_ts.insert(observation.client, ts);
        }
    }
    for (client, info) in history.clients.iter().enumerate() {
        if !info.alive_at_end {
            continue;
        }
        for (key, final_list) in &history.final_lists {
            let seen = last_seen.get(&(client, key.clone()));
            if seen != Some(final_list) {
                anomalies.push(Anomaly::StaleSubscription {
                    client,
                    key: key.clone(),
                    last_seen: seen.cloned(),
                    final_list: final_list.clone(),
                });
            }
        }
    }

    Analysis { anomalies, stats }
}

/// Strongly connected components (Tarjan, iterative), then the shortest cycle through a
/// few nodes of each non-trivial component.
fn find_cycles(graph: &Graph) -> Vec<Cycle> {
    let n = graph.txns.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next_index = 0;
    let mut components: Vec<Vec<usize>> = Vec::new();
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        // (node, next edge to look at)
        let mut work = vec![(root, 0usize)];
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some((node, edge)) = work.pop() {
            if let Some((to, _)) = graph.edges[node].get(edge) {
                let to = *to;
                work.push((node, edge + 1));
                if index[to] == usize::MAX {
                    index[to] = next_index;
                    low[to] = next_index;
                    next_index += 1;
                    stack.push(to);
                    on_stack[to] = true;
                    work.push((to, 0));
                } else if on_stack[to] {
                    low[node] = low[node].min(index[to]);
                }
                continue;
            }
            if let Some((parent, _)) = work.last() {
                let parent = *parent;
                low[parent] = low[parent].min(low[node]);
            }
            if low[node] == index[node] {
                let mut component = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    components.push(component);
                }
            }
        }
    }
    let mut cycles = Vec::new();
    for component in components {
        if cycles.len() >= MAX_CYCLES {
            break;
        }
        let members: std::collections::HashSet<usize> = component.iter().copied().collect();
        let mut best: Option<Vec<(usize, Edge)>> = None;
        for start in component.iter().take(16) {
            if let Some(path) = shortest_cycle(graph, *start, &members) {
                if best.as_ref().is_none_or(|b| path.len() < b.len()) {
                    best = Some(path);
                }
            }
        }
        if let Some(path) = best {
            cycles.push(Cycle {
                steps: path
                    .into_iter()
                    .map(|(node, edge)| CycleStep {
                        txn: graph.txns[node].describe.clone(),
                        edge,
                    })
                    .collect(),
            });
        }
    }
    cycles
}

/// The shortest cycle through `start` within `members` (breadth-first), as (node, edge to
/// the next node) pairs.
fn shortest_cycle(
    graph: &Graph,
    start: usize,
    members: &std::collections::HashSet<usize>,
) -> Option<Vec<(usize, Edge)>> {
    let mut parent: HashMap<usize, (usize, Edge)> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for (to, edge) in &graph.edges[node] {
            if !members.contains(to) {
                continue;
            }
            if *to == start {
                // Walk back from `node` to `start`.
                let mut path = vec![(node, edge.clone())];
                let mut at = node;
                while at != start {
                    let (from, e) = parent.get(&at)?.clone();
                    path.push((from, e));
                    at = from;
                }
                path.reverse();
                return Some(path);
            }
            if *to != start && !parent.contains_key(to) {
                parent.insert(*to, (node, edge.clone()));
                queue.push_back(*to);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;
