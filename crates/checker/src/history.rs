//! What the clients did and saw: the history the checker judges.
//!
//! Why a plain data structure: the workload (real clients, real faults, real time) and the
//! analysis (pure graph reasoning) are separate so the analysis can be tested on
//! hand-written histories, including the anomalies a correct server never produces.
//!
//! Times are nanoseconds since the start of the run on the checker's monotonic clock. An
//! invocation is recorded *before* the request leaves and a completion *after* the answer
//! arrived, so every recorded interval contains the real one: orders inferred from the
//! intervals are never stronger than the truth.

use std::collections::BTreeMap;
use std::fmt;

/// Which official client a workload client is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    /// The Rust crate `convex` 0.10.4.
    Rust,
    /// The npm package `convex` 1.48.0 (`ConvexClient` in Node).
    Npm,
}

impl fmt::Display for ClientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientKind::Rust => "rust",
            ClientKind::Npm => "npm",
        })
    }
}

/// One client of the workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    /// Its kind.
    pub kind: ClientKind,
    /// Whether it was still connected and settled when the run ended, so its live queries
    /// must show the final lists.
    pub alive_at_end: bool,
}

/// What an operation asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// `lists:append {key, value, dedupe}`.
    Append {
        /// The key.
        key: String,
        /// The unique value.
        value: i64,
        /// Whether an already present value is not appended again.
        dedupe: bool,
    },
    /// `lists:appendAndRead {key, value, read, dedupe}`.
    AppendAndRead {
        /// The key appended to.
        key: String,
        /// The unique value.
        value: i64,
        /// The other keys read in the same transaction.
        read: Vec<String>,
        /// Whether an already present value is not appended again.
        dedupe: bool,
    },
}

impl OpKind {
    /// The key appended to.
    pub fn key(&self) -> &str {
        match self {
            OpKind::Append { key, .. } | OpKind::AppendAndRead { key, .. } => key,
        }
    }

    /// The value appended.
    pub fn value(&self) -> i64 {
        match self {
            OpKind::Append { value, .. } | OpKind::AppendAndRead { value, .. } => *value,
        }
    }

    /// Whether the append is idempotent by value.
    pub fn dedupe(&self) -> bool {
        match self {
            OpKind::Append { dedupe, .. } | OpKind::AppendAndRead { dedupe, .. } => *dedupe,
        }
    }
}

/// What an acknowledged append returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpResult {
    /// The lists the transaction returned, by key (its own key: as read plus its value).
    pub lists: BTreeMap<String, Vec<i64>>,
    /// The value was found already appended (an idempotent resend): this transaction
    /// appended nothing and every list is as read.
    pub already_appended: bool,
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The client received a result.
    Ok(OpResult),
    /// The server answered with an error: the mutation did not commit.
    Failed(String),
    /// The server answered with something that is not the function's result shape.
    Garbled(String),
    /// No answer (why, in words): it may or may not have committed, now or later.
    Unknown(String),
}

/// One mutation of one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// The client's index.
    pub client: usize,
    /// What it asked for.
    pub kind: OpKind,
    /// When it was sent.
    pub invoked_ns: u64,
    /// When its answer arrived.
    pub completed_ns: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
}

/// What a client's live queries showed after one update: the lists of every key it had a
/// result for, all at one server snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The client's index.
    pub client: usize,
    /// When it was seen.
    pub at_ns: u64,
    /// The server timestamp of the snapshot, when the client exposes it (the npm client
    /// does; the Rust client does not).
    pub ts: Option<u64>,
    /// The lists, by key.
    pub lists: BTreeMap<String, Vec<i64>>,
}

/// A fault injected during the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRecord {
    /// When it was injected.
    pub at_ns: u64,
    /// What it was.
    pub description: String,
}

/// The whole history of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// The seed of the run.
    pub seed: u64,
    /// The clients, by index.
    pub clients: Vec<ClientInfo>,
    /// The keys.
    pub keys: Vec<String>,
    /// Every mutation, in invocation order per client.
    pub ops: Vec<Op>,
    /// Every live-query update, in arrival order per client.
    pub observations: Vec<Observation>,
    /// The lists read after the run, once every client was done.
    pub final_lists: BTreeMap<String, Vec<i64>>,
    /// The faults injected.
    pub faults: Vec<FaultRecord>,
}

/// A list for humans: its length and last few elements.
pub fn show_list(list: &[i64]) -> String {
    const SHOWN: usize = 4;
    let tail: Vec<String> = list
        .iter()
        .skip(list.len().saturating_sub(SHOWN))
        .map(i64::to_string)
        .collect();
    if list.len() > SHOWN {
        format!("[…{} earlier, {}]", list.len() - SHOWN, tail.join(", "))
    } else {
        format!("[{}]", tail.join(", "))
    }
}

/// Seconds since the start of the run, for humans.
pub fn show_time(ns: u64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}
