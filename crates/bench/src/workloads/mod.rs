//! The workloads of the benchmark plan (`shared/bench-plan.md`): W1–W5 and A1.
//!
//! Each workload runs every system that can run it, one after the other on the same
//! machine, and returns its Markdown section: the table of results with each row's
//! transport and durability, the ratios computed within the run, and "n/a" with the reason
//! for every system that cannot run it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use conflux_common::Result;

use crate::settings::Profile;
use crate::targets::conflux_inprocess::ConfluxInProcess;
use crate::targets::conflux_ws::ConfluxWs;
use crate::targets::floor::Floor;
use crate::targets::pocketbase::PocketBase;
use crate::targets::surreal::SurrealPeer;
use crate::targets::{Target, TargetInfo};

pub mod a1_auth;
pub mod notify;
pub mod w1_write_notify;
pub mod w2_fanout;
pub mod w3_selective;
pub mod w4_contention;
pub mod w5_connections;

/// One workload of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Write → notify latency.
    W1,
    /// Fan-out to N identical subscriptions.
    W2,
    /// Selective invalidation.
    W3,
    /// Mutations under contention.
    W4,
    /// Idle connections, reconnect and resync.
    W5,
    /// Authentication.
    A1,
}

impl Workload {
    /// Every workload, in plan order.
    pub const ALL: [Workload; 6] = [
        Workload::W1,
        Workload::W2,
        Workload::W3,
        Workload::W4,
        Workload::W5,
        Workload::A1,
    ];

    /// `w1` … `a1`.
    pub fn id(self) -> &'static str {
        match self {
            Workload::W1 => "w1",
            Workload::W2 => "w2",
            Workload::W3 => "w3",
            Workload::W4 => "w4",
            Workload::W5 => "w5",
            Workload::A1 => "a1",
        }
    }

    /// The section title.
    pub fn title(self) -> &'static str {
        match self {
            Workload::W1 => "W1 write → notify",
            Workload::W2 => "W2 fan-out",
            Workload::W3 => "W3 selective invalidation",
            Workload::W4 => "W4 mutations under contention",
            Workload::W5 => "W5 connections",
            Workload::A1 => "A1 auth",
        }
    }

    /// Parse `w1` … `a1` (any case).
    pub fn parse(text: &str) -> Option<Workload> {
        Workload::ALL
            .into_iter()
            .find(|w| w.id().eq_ignore_ascii_case(text))
    }
}

/// The peers, installed (or why not).
pub struct Peers {
    /// The PocketBase binary and its version.
    pub pocketbase: std::result::Result<(PathBuf, String), String>,
    /// The SurrealDB script runner.
    pub surreal: std::result::Result<SurrealPeer, String>,
}

/// What every workload gets.
pub struct Context {
    /// Sizes and durations.
    pub profile: Profile,
    /// The peers.
    pub peers: Peers,
    /// When the invocation started.
    pub started: Instant,
}

/// The systems a workload runs through the [`Target`] trait (SurrealDB runs its own
/// script instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driven {
    /// Conflux over loopback.
    ConfluxWs,
    /// Conflux in-process.
    ConfluxInProcess,
    /// The bare WebSocket floor.
    Floor,
    /// PocketBase.
    PocketBase,
}

impl Driven {
    /// Loopback systems first (Conflux, floor, PocketBase), then in-process.
    pub const ALL: [Driven; 4] = [
        Driven::ConfluxWs,
        Driven::Floor,
        Driven::PocketBase,
        Driven::ConfluxInProcess,
    ];
}

impl Context {
    /// Start a fresh instance of `system`; the error is the note to print.
    pub async fn start(&self, system: Driven) -> std::result::Result<Arc<dyn Target>, String> {
        let started: Result<Arc<dyn Target>> = match system {
            Driven::ConfluxWs => ConfluxWs::start(None)
                .await
                .map(|t| Arc::new(t) as Arc<dyn Target>),
            Driven::ConfluxInProcess => ConfluxInProcess::start()
                .await
                .map(|t| Arc::new(t) as Arc<dyn Target>),
            Driven::Floor => Floor::start().await.map(|t| Arc::new(t) as Arc<dyn Target>),
            Driven::PocketBase => match &self.peers.pocketbase {
                Ok((binary, version)) => PocketBase::start(binary, version)
                    .await
                    .map(|t| Arc::new(t) as Arc<dyn Target>),
                Err(reason) => return Err(format!("not installed: {reason}")),
            },
        };
        started.map_err(|err| format!("could not start: {err}"))
    }

    /// What a system is, for rows of systems that could not start.
    pub fn describe(&self, system: Driven) -> TargetInfo {
        use crate::targets::{System, Transport};
        let (system, name, transport, durability) = match system {
            Driven::ConfluxWs => (
                System::Conflux,
                "Conflux".to_string(),
                Transport::Loopback,
                crate::targets::conflux_ws::DURABILITY,
            ),
            Driven::ConfluxInProcess => (
                System::Conflux,
                "Conflux".to_string(),
                Transport::InProcess,
                crate::targets::conflux_ws::DURABILITY,
            ),
            Driven::Floor => (
                System::Floor,
                "Floor (bare WebSocket)".to_string(),
                Transport::Loopback,
                crate::targets::floor::DURABILITY,
            ),
            Driven::PocketBase => (
                System::PocketBase,
                match &self.peers.pocketbase {
                    Ok((_, version)) => format!("PocketBase {version}"),
                    Err(_) => "PocketBase".to_string(),
                },
                Transport::Loopback,
                crate::targets::pocketbase::DURABILITY,
            ),
        };
        TargetInfo {
            system,
            name,
            transport,
            durability: durability.to_string(),
        }
    }

    /// Print a progress line to stderr (tables go to stdout).
    pub fn progress(&self, text: &str) {
        eprintln!("[{:>6.1} s] {text}", self.started.elapsed().as_secs_f64());
    }
}

/// Run `workload` and return its Markdown section.
pub async fn run(workload: Workload, ctx: &Context) -> Result<String> {
    match workload {
        Workload::W1 => w1_write_notify::run(ctx).await,
        Workload::W2 => w2_fanout::run(ctx).await,
        Workload::W3 => w3_selective::run(ctx).await,
        Workload::W4 => w4_contention::run(ctx).await,
        Workload::W5 => w5_connections::run(ctx).await,
        Workload::A1 => a1_auth::run(ctx).await,
    }
}
