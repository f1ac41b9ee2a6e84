//! The shape W1, W2 and W3 share: subscribers hold the latest messages of their channels,
//! one open-loop writer sends messages, and every delivery's latency counts from the
//! write's scheduled time.
//!
//! A [`NotifyPlan`] says who subscribes to what, how the subscriptions are spread over
//! connections, which channel each write goes to, and how many writes each run has;
//! [`run_target`] executes it on any [`Target`], and [`run_surreal`] hands the same plan
//! to the SurrealDB script.

use std::sync::Arc;
use std::time::Duration;

use conflux_common::Result;
use futures::StreamExt;
use serde_json::json;

use crate::measure::latency::{RunResult, RunSet};
use crate::measure::recorder::Recorder;
use crate::measure::schedule::open_loop;
use crate::message::MessageSpec;
use crate::settings::{Profile, SMALL_LIMIT, WRITER_CONNECTIONS};
use crate::targets::surreal::SurrealPeer;
use crate::targets::Target;

/// Subscriber connections opened at once during setup.
const CONNECT_CONCURRENCY: usize = 64;
/// Longest wait for every subscriber's first result.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// One configuration of a notify workload.
#[derive(Clone, Debug)]
pub struct NotifyPlan {
    /// One entry per subscription: its channel.
    pub channels: Vec<String>,
    /// Subscriptions per connection (loopback systems).
    pub per_connection: usize,
    /// The `limit` of the list query.
    pub limit: usize,
    /// Writes per second.
    pub rate: f64,
    /// The channel of each write, by sequence number.
    pub write_channels: Vec<String>,
    /// Writes of the warm-up, then of each run.
    pub runs_writes: Vec<u64>,
    /// Subscriptions of the channel each write goes to.
    pub expected_per_write: u32,
    /// Document size in bytes.
    pub size: usize,
    /// How long late deliveries are awaited after a run's schedule.
    pub drain: Duration,
}

impl NotifyPlan {
    /// A plan at `rate` for `profile`: one subscription per entry of `channels`, each write
    /// going to `channel_of(seq)`. Defaults: one subscription per connection, the latest
    /// [`SMALL_LIMIT`] messages, 200 B documents, one subscriber per written channel.
    pub fn new(
        profile: &Profile,
        channels: Vec<String>,
        rate: f64,
        channel_of: impl Fn(u64) -> String,
    ) -> NotifyPlan {
        let runs_writes = profile.runs_writes(rate);
        let total: u64 = runs_writes.iter().sum();
        NotifyPlan {
            channels,
            per_connection: 1,
            limit: SMALL_LIMIT,
            rate,
            write_channels: (0..total).map(channel_of).collect(),
            runs_writes,
            expected_per_write: 1,
            size: 200,
            drain: profile.drain,
        }
    }

    /// Spread the subscriptions `per_connection` to a connection.
    pub fn per_connection(mut self, per_connection: usize) -> NotifyPlan {
        self.per_connection = per_connection.max(1);
        self
    }

    /// Subscribe to the latest `limit` messages.
    pub fn limit(mut self, limit: usize) -> NotifyPlan {
        self.limit = limit;
        self
    }

    /// Documents of `size` bytes.
    pub fn size(mut self, size: usize) -> NotifyPlan {
        self.size = size;
        self
    }

    /// Each write reaches `subscribers` subscriptions.
    pub fn expected_per_write(mut self, subscribers: u32) -> NotifyPlan {
        self.expected_per_write = subscribers;
        self
    }
}

/// Run `plan` on `target`.
pub async fn run_target(target: Arc<dyn Target>, plan: &NotifyPlan) -> Result<RunSet> {
    let recorder = Arc::new(Recorder::new(&plan.runs_writes));
    let groups: Vec<Vec<String>> = plan
        .channels
        .chunks(plan.per_connection)
        .map(<[String]>::to_vec)
        .collect();
    let guards: Vec<_> = futures::stream::iter(groups)
        .map(|group| {
            let target = target.clone();
            let recorder = recorder.clone();
            let limit = plan.limit;
            async move { target.subscribe(&group, limit, recorder).await }
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    recorder
        .wait_ready(plan.channels.len(), READY_TIMEOUT)
        .await?;
    target.prepare_writers(WRITER_CONNECTIONS).await?;
    let scope = target.cpu_scope();
    let mut runs = Vec::new();
    for run in 0..plan.runs_writes.len() {
        let cpu_before = scope.snapshot().ok();
        let counters_before = target.counters();
        let started = tokio::time::Instant::now();
        let seqs = recorder.seqs(run);
        open_loop(plan.rate, seqs.clone(), |seq, scheduled_us| {
            let message = MessageSpec {
                channel: plan.write_channels[seq as usize].clone(),
                seq,
                scheduled_us,
                size: plan.size,
            };
            let target = target.clone();
            let recorder = recorder.clone();
            tokio::spawn(async move {
                match target.write(seq as usize, &message).await {
                    Ok(()) => recorder.acked(seq, scheduled_us),
                    Err(err) => {
                        if recorder.failed(seq) == 1 {
                            tracing::warn!("write {seq} failed (later failures of this run are only counted): {err}");
                        }
                    }
                }
            });
        })
        .await;
        let seconds = started.elapsed().as_secs_f64();
        let writes = seqs.end - seqs.start;
        let expected = writes * u64::from(plan.expected_per_write);
        let deadline = tokio::time::Instant::now() + plan.drain;
        recorder.wait_run(run, expected, true, deadline).await;
        let cpu_after = scope.snapshot().ok();
        let counters = target.counters().since(&counters_before);
        if run == 0 {
            continue;
        }
        let cpu_seconds = cpu_before
            .zip(cpu_after)
            .map(|(before, after)| after.seconds_since(&before));
        runs.push(RunResult {
            latency: recorder.delivery_summary(run),
            last_subscriber: recorder.last_subscriber_summary(run, plan.expected_per_write),
            ack: recorder.ack_summary(run),
            delivered: recorder.delivered_in(run),
            expected,
            writes,
            failed_writes: recorder.failed_in(run),
            seconds,
            cpu_seconds,
            executions: counters.executions,
            reruns: counters.reruns,
            spurious_reruns: counters.spurious_reruns,
            commits: counters.commits,
            conflicts: counters.conflicts,
        });
    }
    drop(guards);
    Ok(RunSet { runs })
}

/// Run `plan` in the SurrealDB script.
pub async fn run_surreal(peer: &SurrealPeer, plan: &NotifyPlan) -> Result<RunSet> {
    let spec = json!({
        "mode": "notify",
        "channels": plan.channels,
        "write_channels": plan.write_channels,
        "runs_writes": plan.runs_writes,
        "rate": plan.rate,
        "size": plan.size,
        "expected_per_write": plan.expected_per_write,
        "drain_s": plan.drain.as_secs_f64(),
    });
    let schedule: f64 = plan.runs_writes.iter().sum::<u64>() as f64 / plan.rate;
    let budget = Duration::from_secs_f64(120.0 + schedule * 2.0);
    peer.run(&spec, budget).await
}

/// Why a system has no number for a configuration (printed as `n/a (reason)`).
pub type Skip = Option<String>;

/// Run `plan` on every driven system of `systems` and on SurrealDB, one after the other,
/// each on a fresh instance. `skip` gives the systems that cannot run this configuration
/// and why (the row still appears, with the reason).
pub async fn run_systems(
    ctx: &super::Context,
    config: &str,
    plan: &NotifyPlan,
    skip: impl Fn(super::Driven) -> Skip,
    surreal_skip: Skip,
) -> Vec<crate::report::Outcome> {
    use crate::report::Outcome;
    let mut outcomes = Vec::new();
    for system in super::Driven::ALL {
        if let Some(reason) = skip(system) {
            outcomes.push(Outcome {
                target: ctx.describe(system),
                config: config.to_string(),
                result: Err(reason),
            });
            continue;
        }
        let info = ctx.describe(system);
        ctx.progress(&format!("{config}: {}", info.label()));
        let outcome = match ctx.start(system).await {
            Ok(target) => {
                let result = run_target(target.clone(), plan)
                    .await
                    .map_err(|err| err.to_string());
                target.shutdown().await;
                Outcome {
                    target: target.info().clone(),
                    config: config.to_string(),
                    result,
                }
            }
            Err(reason) => Outcome {
                target: info,
                config: config.to_string(),
                result: Err(reason),
            },
        };
        if let Err(reason) = &outcome.result {
            ctx.progress(&format!("  n/a: {reason}"));
        }
        outcomes.push(outcome);
    }
    outcomes.push(surreal_outcome(ctx, config, surreal_skip, |peer| run_surreal(peer, plan)).await);
    outcomes
}

/// SurrealDB's outcome for a configuration: run by `run` when installed and not skipped.
pub async fn surreal_outcome<'a, F, Fut>(
    ctx: &'a super::Context,
    config: &str,
    skip: Skip,
    run: F,
) -> crate::report::Outcome
where
    F: FnOnce(&'a SurrealPeer) -> Fut,
    Fut: std::future::Future<Output = Result<RunSet>>,
{
    use crate::report::Outcome;
    use crate::targets::{System, TargetInfo, Transport};
    let fallback = TargetInfo {
        system: System::Surreal,
        name: "SurrealDB embedded".into(),
        transport: Transport::InProcess,
        durability: crate::targets::surreal::DURABILITY.into(),
    };
    let (target, result) = match (&ctx.peers.surreal, skip) {
        (Err(reason), _) => (fallback, Err(format!("not installed: {reason}"))),
        (Ok(peer), Some(reason)) => (peer.info().clone(), Err(reason)),
        (Ok(peer), None) => {
            ctx.progress(&format!("{config}: {}", peer.info().label()));
            let result = run(peer).await.map_err(|err| err.to_string());
            if let Err(reason) = &result {
                ctx.progress(&format!("  n/a: {reason}"));
            }
            (peer.info().clone(), result)
        }
    };
    Outcome {
        target,
        config: config.to_string(),
        result,
    }
}
