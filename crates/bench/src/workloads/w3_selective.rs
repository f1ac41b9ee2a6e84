//! W3 selective invalidation: N subscriptions, each on its own channel; writes go to
//! random channels. A write must wake only the one subscription of its channel: the
//! tables report the latency, the re-runs per write and the spurious re-runs (re-runs
//! whose result did not change; goal: zero) from the sync crate's counters, and the commit
//! cost (scheduled write → the writer's acknowledgement) as N grows from 100 to 100,000
//! (goal: flat).
//!
//! Over loopback the subscriptions are spread over at most 1,000 connections (several
//! queries per connection, as a real client with several views does). 100,000
//! subscriptions run through the in-process API only: 100,000 sockets on each side do not
//! fit the file-descriptor limit of this machine, and the row label says so.

use std::fmt::Write as _;

use conflux_common::Result;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::notify::{run_systems, NotifyPlan};
use super::{Context, Driven};
use crate::measure::latency::{ms, thousands};
use crate::report::{cpu_cell, latency_cell, ratios, Outcome, Table};
use crate::settings::{SMALL_LIMIT, W3_MAX_CONNECTIONS};
use crate::targets::pocketbase::MAX_SUBSCRIPTIONS_PER_CLIENT;
use crate::targets::System;

/// SurrealDB is run up to this many LIVE SELECTs (registering them one by one is slow).
const SURREAL_MAX: usize = 10_000;

/// Run W3 and return its section.
pub async fn run(ctx: &Context) -> Result<String> {
    let profile = &ctx.profile;
    let mut outcomes: Vec<Outcome> = Vec::new();
    for &subscriptions in &profile.w3_subscriptions {
        let connections = subscriptions.min(W3_MAX_CONNECTIONS);
        let per_connection = subscriptions
            .div_ceil(connections)
            .min(MAX_SUBSCRIPTIONS_PER_CLIENT);
        let channels: Vec<String> = (0..subscriptions)
            .map(|i| format!("w3-{subscriptions}-{i}"))
            .collect();
        let mut rng = StdRng::seed_from_u64(subscriptions as u64);
        let total: u64 = profile.runs_writes(profile.w3_rate).iter().sum();
        let targets: Vec<String> = (0..total)
            .map(|_| channels[rng.gen_range(0..channels.len())].clone())
            .collect();
        let plan = NotifyPlan::new(profile, channels, profile.w3_rate, |seq| {
            targets[seq as usize].clone()
        })
        .per_connection(per_connection);
        let config = format!("N = {}", thousands(subscriptions as u64));
        let loopback_max = profile.w3_loopback_max;
        let quick = profile.quick;
        let skip = |system: Driven| {
            match system {
            Driven::ConfluxInProcess => None,
            _ if subscriptions > loopback_max && quick => Some(format!(
                "--quick runs loopback systems up to {} subscriptions",
                thousands(loopback_max as u64)
            )),
            _ if subscriptions > loopback_max => Some(format!(
                "{} subscriptions run through the in-process API only: the loopback runs stop at {} \
                 subscriptions to stay within the open-files limit and the time budget",
                thousands(subscriptions as u64),
                thousands(loopback_max as u64)
            )),
            _ => None,
        }
        };
        let surreal_skip = (subscriptions > SURREAL_MAX).then(|| {
            format!(
                "run up to {} LIVE SELECTs only, to keep `all` within its time budget",
                thousands(SURREAL_MAX as u64)
            )
        });
        outcomes.extend(run_systems(ctx, &config, &plan, skip, surreal_skip).await);
    }
    Ok(render(ctx, &outcomes))
}

fn per_write(value: Option<u64>, writes: u64) -> String {
    match value {
        Some(value) if writes > 0 => format!("{:.2}", value as f64 / writes as f64),
        _ => "n/a".into(),
    }
}

fn render(ctx: &Context, outcomes: &[Outcome]) -> String {
    let mut table = Table::new(&[
        "System",
        "Transport",
        "Durability",
        "Subscriptions",
        "p50 ms",
        "p99 ms",
        "max ms",
        "delivered",
        "re-runs / write",
        "spurious re-runs",
        "commit p50 ms",
        "commit p99 ms",
        "CPU s / 1k notif.",
        "p50 range",
    ]);
    for outcome in outcomes {
        let mut row = vec![
            outcome.target.name.clone(),
            outcome.target.transport.label().into(),
            outcome.target.durability.clone(),
            outcome.config.clone(),
        ];
        match (&outcome.result, outcome.median()) {
            (Ok(set), Some(run)) => {
                let conflux = outcome.target.system == System::Conflux;
                row.extend([
                    latency_cell(&run.latency, |s| s.p50),
                    latency_cell(&run.latency, |s| s.p99),
                    latency_cell(&run.latency, |s| s.max),
                    format!("{}/{}", thousands(run.delivered), thousands(run.expected)),
                    if conflux {
                        per_write(run.reruns, run.writes)
                    } else {
                        "n/a (not exposed)".into()
                    },
                    match (conflux, run.spurious_reruns) {
                        (true, Some(spurious)) => thousands(spurious),
                        _ => "n/a (not exposed)".into(),
                    },
                    run.ack.map(|a| ms(a.p50)).unwrap_or_else(|| "none".into()),
                    run.ack.map(|a| ms(a.p99)).unwrap_or_else(|| "none".into()),
                    cpu_cell(run.cpu_per_1k()),
                    set.spread(|r| r.latency.p50, ms),
                ]);
            }
            (Err(reason), _) => {
                row.push(format!("n/a ({reason})"));
                row.extend(std::iter::repeat_n("–".to_string(), 9));
            }
            (Ok(_), None) => {
                row.push("n/a (no run completed)".into());
                row.extend(std::iter::repeat_n("–".to_string(), 9));
            }
        }
        table.row(row);
    }
    let mut out = String::new();
    let _ = writeln!(out, "## W3 selective invalidation\n");
    let _ = writeln!(
        out,
        "N subscriptions, each to the latest {SMALL_LIMIT} messages of its own channel; one \
         open-loop writer at {} writes/s to channels chosen at random (seeded), 200 B documents. \
         Over loopback the subscriptions are spread over min(N, {W3_MAX_CONNECTIONS}) connections. \
         Re-runs and spurious re-runs (re-runs whose result did not change, goal 0) come from \
         the sync crate's counters; commit = scheduled write → the writer's acknowledgement \
         (Conflux: MutationResponse after the durable commit; PocketBase: the REST answer; \
         SurrealDB: the CREATE query resolving). PocketBase checks each subscription's filter \
         with one SQL query per subscription and record. {}.\n",
        ctx.profile.w3_rate,
        ctx.profile.describe_runs()
    );
    out.push_str(&table.markdown());
    let _ = writeln!(
        out,
        "\nRatios on delivery latency (Conflux ÷ peer, same transport, same run):\n"
    );
    out.push_str(
        &ratios(outcomes, |run| {
            (run.latency.p50, run.latency.p99, run.cpu_per_1k())
        })
        .markdown(),
    );
    let _ = writeln!(out, "\nRatios on commit cost:\n");
    out.push_str(
        &ratios(outcomes, |run| {
            let ack = run.ack.unwrap_or_default();
            (ack.p50, ack.p99, run.cpu_per_1k())
        })
        .markdown(),
    );
    out
}
