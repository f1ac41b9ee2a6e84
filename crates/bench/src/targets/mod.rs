//! The systems under test, behind one [`Target`] trait so that the workloads do not know
//! which system they drive.
//!
//! A workload speaks of subscribers ("hold the latest messages of channel c"), writers
//! ("send this message") and counter clients ("increment key k"); each target maps those
//! onto its own API: the Convex sync protocol over a WebSocket, the in-process live
//! queries, PocketBase's REST and SSE, or the bare WebSocket floor. SurrealDB embedded
//! runs inside a Node process and drives the same workloads itself
//! ([`surreal::SurrealPeer`]), so it is not a [`Target`].
//!
//! Every target says how it moves data ([`Transport`]) and how durable a commit is, and
//! both are printed next to every number.

use std::sync::Arc;

use async_trait::async_trait;
use conflux_common::Result;

use crate::measure::cpu::CpuScope;
use crate::measure::recorder::Recorder;
use crate::message::MessageSpec;

pub mod conflux_app;
pub mod conflux_inprocess;
pub mod conflux_ws;
pub mod floor;
pub mod pocketbase;
pub mod sse;
pub mod surreal;
pub mod sync_client;

/// How a target's clients reach it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A real TCP connection on 127.0.0.1.
    Loopback,
    /// Function calls inside one process, no sockets.
    InProcess,
}

impl Transport {
    /// The label printed in every row.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Loopback => "over loopback",
            Transport::InProcess => "in-process",
        }
    }
}

/// Which system a target is, for the ratios computed between rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// Conflux.
    Conflux,
    /// The bare WebSocket broadcast server with no database.
    Floor,
    /// PocketBase.
    PocketBase,
    /// SurrealDB embedded.
    Surreal,
}

/// What a row says about the system it measured.
#[derive(Clone, Debug)]
pub struct TargetInfo {
    /// Which system.
    pub system: System,
    /// The name printed in tables (with the version when known).
    pub name: String,
    /// Loopback or in-process.
    pub transport: Transport,
    /// What a commit costs in durability ("fsync per commit group", ...).
    pub durability: String,
}

impl TargetInfo {
    /// `Name (transport)`.
    pub fn label(&self) -> String {
        format!("{} ({})", self.name, self.transport.label())
    }
}

/// Counters a system exposes (Conflux does; peers do not, and the tables say so).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Query executions for live subscriptions.
    pub executions: Option<u64>,
    /// Re-runs after an invalidation.
    pub reruns: Option<u64>,
    /// Re-runs whose result did not change.
    pub spurious_reruns: Option<u64>,
    /// Commits.
    pub commits: Option<u64>,
    /// Commits refused by a conflict (each one is retried).
    pub conflicts: Option<u64>,
}

impl Counters {
    /// `self − before`, field by field.
    pub fn since(&self, before: &Counters) -> Counters {
        let diff = |now: Option<u64>, then: Option<u64>| Some(now?.saturating_sub(then?));
        Counters {
            executions: diff(self.executions, before.executions),
            reruns: diff(self.reruns, before.reruns),
            spurious_reruns: diff(self.spurious_reruns, before.spurious_reruns),
            commits: diff(self.commits, before.commits),
            conflicts: diff(self.conflicts, before.conflicts),
        }
    }
}

/// Something that keeps a subscriber alive; dropping it ends the subscriber.
pub type Guard = Box<dyn Send + Sync>;

/// A system under test, driven by the workloads.
#[async_trait]
pub trait Target: Send + Sync {
    /// What it is, how it is reached and how durable it is.
    fn info(&self) -> &TargetInfo;

    /// One client (a connection where the transport has them) subscribed to the latest
    /// `limit` messages of each of `channels`. Every message a subscription sees for the
    /// first time after its first result is reported to `recorder`, and each subscription
    /// calls [`Recorder::mark_ready`] once it holds its first result.
    async fn subscribe(
        &self,
        channels: &[String],
        limit: usize,
        recorder: Arc<Recorder>,
    ) -> Result<Guard>;

    /// Prepare `count` writers (connections where the transport has them).
    async fn prepare_writers(&self, count: usize) -> Result<()>;

    /// Send one message through writer `writer`; returns once the system acknowledged
    /// (committed) it.
    async fn write(&self, writer: usize, message: &MessageSpec) -> Result<()>;

    /// Create counters `0..keys` (at zero) and `clients` counter clients.
    async fn prepare_counters(&self, clients: usize, keys: usize) -> Result<()>;

    /// Client `client` increments counter `key`; returns once committed.
    async fn increment(&self, client: usize, key: usize) -> Result<()>;

    /// Whose CPU time counts for this system.
    fn cpu_scope(&self) -> CpuScope;

    /// The system's own counters, where it has them.
    fn counters(&self) -> Counters {
        Counters::default()
    }

    /// Stop the system and release what it holds.
    async fn shutdown(&self);
}

/// Aborts a task when dropped: the guard of subscribers that are tasks.
pub struct TaskGuard(pub tokio::task::JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::conflux_inprocess::ConfluxInProcess;
    use super::conflux_ws::ConfluxWs;
    use super::floor::Floor;
    use super::{System, Target};
    use crate::measure::recorder::{now_us, Recorder};
    use crate::message::MessageSpec;

    /// What every workload relies on: a subscriber holds a write, and counters count.
    async fn a_write_reaches_the_subscriber_and_increments_commit(target: Arc<dyn Target>) {
        let label = target.info().label();
        let recorder = Arc::new(Recorder::new(&[0, 1]));
        let guard = target
            .subscribe(&["story".to_string()], 10, recorder.clone())
            .await
            .unwrap_or_else(|err| panic!("{label}: subscribe: {err}"));
        recorder
            .wait_ready(1, Duration::from_secs(10))
            .await
            .unwrap_or_else(|err| panic!("{label}: {err}"));
        target
            .prepare_writers(2)
            .await
            .unwrap_or_else(|err| panic!("{label}: {err}"));
        let before = target.counters();
        let message = MessageSpec {
            channel: "story".into(),
            seq: 0,
            scheduled_us: now_us(),
            size: 200,
        };
        target
            .write(1, &message)
            .await
            .unwrap_or_else(|err| panic!("{label}: write: {err}"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        recorder.wait_run(1, 1, false, deadline).await;
        assert_eq!(
            recorder.delivered_in(1),
            1,
            "{label}: the subscriber holds the write once"
        );
        assert!(
            recorder.delivery_summary(1).max < 10_000_000,
            "{label}: latency is measured"
        );

        target
            .prepare_counters(1, 3)
            .await
            .unwrap_or_else(|err| panic!("{label}: {err}"));
        target
            .increment(0, 2)
            .await
            .unwrap_or_else(|err| panic!("{label}: increment: {err}"));
        target
            .increment(0, 2)
            .await
            .unwrap_or_else(|err| panic!("{label}: increment: {err}"));
        if target.info().system == System::Conflux {
            let after = target.counters().since(&before);
            // One message, the seeded counters (one transaction), two increments.
            assert_eq!(after.commits, Some(4), "{label}: commits are counted");
            assert!(
                after.executions.unwrap_or(0) >= 1,
                "{label}: the live query re-ran"
            );
        }
        drop(guard);
        target.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conflux_over_loopback_delivers_and_counts() {
        let target = ConfluxWs::start(None)
            .await
            .expect("Conflux starts on a free port");
        a_write_reaches_the_subscriber_and_increments_commit(Arc::new(target)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conflux_in_process_delivers_and_counts() {
        let target = ConfluxInProcess::start()
            .await
            .expect("Conflux opens in a temporary folder");
        a_write_reaches_the_subscriber_and_increments_commit(Arc::new(target)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_floor_delivers_the_same_messages() {
        let target = Floor::start()
            .await
            .expect("the floor starts on a free port");
        a_write_reaches_the_subscriber_and_increments_commit(Arc::new(target)).await;
    }
}
