//! W4 mutations under contention: K closed-loop clients each increment a counter chosen at
//! random from M keys (M = 1, 16, 10,000), as fast as the system answers. Committed
//! mutations per second, conflict retries per commit (Conflux: the database's OCC
//! conflicts, each of which the runner re-runs; SurrealDB: transaction conflicts the
//! script retried), and the latency of each increment (closed loop: from its send to its
//! answer, so it is not subject to coordinated omission by construction, but the rate is
//! whatever the system sustains).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use conflux_common::Result;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::notify::{surreal_outcome, Skip};
use super::{Context, Driven};
use crate::measure::latency::{ms, new_histogram, record, thousands, RunResult, RunSet, Summary};
use crate::report::{cpu_cell, ratios, Outcome, Table};
use crate::targets::{System, Target};

/// Run W4 and return its section.
pub async fn run(ctx: &Context) -> Result<String> {
    let profile = &ctx.profile;
    let clients = profile.w4_clients;
    let mut outcomes: Vec<Outcome> = Vec::new();
    for &keys in &profile.w4_keys {
        let config = format!(
            "M = {} key{}, K = {clients} clients",
            thousands(keys as u64),
            if keys == 1 { "" } else { "s" }
        );
        for system in Driven::ALL {
            let info = ctx.describe(system);
            ctx.progress(&format!("{config}: {}", info.label()));
            let outcome = match ctx.start(system).await {
                Ok(target) => {
                    let result = run_target(ctx, target.clone(), clients, keys)
                        .await
                        .map_err(|err| err.to_string());
                    target.shutdown().await;
                    Outcome {
                        target: target.info().clone(),
                        config: config.clone(),
                        result,
                    }
                }
                Err(reason) => Outcome {
                    target: info,
                    config: config.clone(),
                    result: Err(reason),
                },
            };
            outcomes.push(outcome);
        }
        let skip: Skip = None;
        let spec = json!({
            "mode": "increment",
            "clients": clients,
            "keys": keys,
            "warmup_s": profile.warmup.as_secs_f64(),
            "run_s": profile.run.as_secs_f64(),
            "runs": profile.runs,
        });
        let budget = std::time::Duration::from_secs(120);
        outcomes.push(surreal_outcome(ctx, &config, skip, |peer| peer.run(&spec, budget)).await);
    }
    Ok(render(ctx, &outcomes))
}

struct Phase {
    latencies: Mutex<Histogram<u64>>,
    failed: AtomicUsize,
}

/// K closed-loop clients over a warm-up and the measured runs.
async fn run_target(
    ctx: &Context,
    target: Arc<dyn Target>,
    clients: usize,
    keys: usize,
) -> Result<RunSet> {
    let profile = &ctx.profile;
    target.prepare_counters(clients, keys).await?;
    let phases: Arc<Vec<Phase>> = Arc::new(
        (0..=profile.runs)
            .map(|_| Phase {
                latencies: Mutex::new(new_histogram()),
                failed: AtomicUsize::new(0),
            })
            .collect(),
    );
    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let (target, phases, phase, stop) =
            (target.clone(), phases.clone(), phase.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(client as u64 + 1);
            while !stop.load(Ordering::Relaxed) {
                let key = rng.gen_range(0..keys);
                let started = Instant::now();
                let outcome = target.increment(client, key).await;
                let now = phase.load(Ordering::Relaxed);
                let Some(cell) = phases.get(now) else {
                    break;
                };
                match outcome {
                    Ok(()) => record(
                        &mut cell.latencies.lock(),
                        started.elapsed().as_micros() as u64,
                    ),
                    Err(err) => {
                        if cell.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                            tracing::warn!("increment failed: {err}");
                        }
                    }
                }
            }
        }));
    }
    let scope = target.cpu_scope();
    let mut runs = Vec::new();
    for index in 0..=profile.runs {
        let length = if index == 0 {
            profile.warmup
        } else {
            profile.run
        };
        let cpu_before = scope.snapshot().ok();
        let counters_before = target.counters();
        phase.store(index, Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(length).await;
        let seconds = started.elapsed().as_secs_f64();
        let cpu_after = scope.snapshot().ok();
        let counters = target.counters().since(&counters_before);
        if index == 0 {
            continue;
        }
        let Some(cell) = phases.get(index) else {
            continue;
        };
        let latency = Summary::of(&cell.latencies.lock());
        runs.push(RunResult {
            latency,
            delivered: latency.count,
            expected: latency.count,
            writes: latency.count,
            failed_writes: cell.failed.load(Ordering::Relaxed) as u64,
            seconds,
            cpu_seconds: cpu_before
                .zip(cpu_after)
                .map(|(before, after)| after.seconds_since(&before)),
            commits: counters.commits,
            conflicts: counters.conflicts,
            ..RunResult::default()
        });
    }
    phase.store(usize::MAX, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    // A client may be sleeping in a retry back-off; nothing after the last run counts.
    for task in tasks {
        task.abort();
    }
    Ok(RunSet { runs })
}

fn commits_per_second(run: &RunResult) -> f64 {
    if run.seconds > 0.0 {
        run.writes as f64 / run.seconds
    } else {
        0.0
    }
}

fn conflict_rate(outcome: &Outcome, run: &RunResult) -> String {
    match (outcome.target.system, run.conflicts, run.commits) {
        (System::Conflux | System::Surreal, Some(conflicts), Some(commits)) if commits > 0 => {
            format!(
                "{:.3} ({} conflicts)",
                conflicts as f64 / commits as f64,
                thousands(conflicts)
            )
        }
        (System::PocketBase, _, _) => {
            "0 by design (atomic `n+` update, SQLite serializes writers)".into()
        }
        (System::Floor, _, _) => "– (in-memory counter, no transactions)".into(),
        _ => "n/a".into(),
    }
}

fn render(ctx: &Context, outcomes: &[Outcome]) -> String {
    let mut table = Table::new(&[
        "System",
        "Transport",
        "Durability",
        "Keys / clients",
        "commits/s",
        "conflict retries / commit",
        "p50 ms",
        "p99 ms",
        "max ms",
        "failed",
        "CPU s / 1k commits",
        "commits/s range",
    ]);
    for outcome in outcomes {
        let mut row = vec![
            outcome.target.name.clone(),
            outcome.target.transport.label().into(),
            outcome.target.durability.clone(),
            outcome.config.clone(),
        ];
        let median = outcome
            .result
            .as_ref()
            .ok()
            .and_then(|set| set.median_by(commits_per_second));
        match (&outcome.result, median) {
            (Ok(set), Some(run)) => row.extend([
                thousands(commits_per_second(run).round() as u64),
                conflict_rate(outcome, run),
                ms(run.latency.p50),
                ms(run.latency.p99),
                ms(run.latency.max),
                thousands(run.failed_writes),
                cpu_cell(run.cpu_per_1k()),
                set.spread(|r| commits_per_second(r).round() as u64, thousands),
            ]),
            (Err(reason), _) => {
                row.push(format!("n/a ({reason})"));
                row.extend(std::iter::repeat_n("–".to_string(), 7));
            }
            (Ok(_), None) => {
                row.push("n/a (no run completed)".into());
                row.extend(std::iter::repeat_n("–".to_string(), 7));
            }
        }
        table.row(row);
    }
    let mut out = String::new();
    let _ = writeln!(out, "## W4 mutations under contention\n");
    let _ = writeln!(
        out,
        "K = {} closed-loop clients (one connection each over loopback), each incrementing a \
         counter chosen at random from M keys, as fast as answers come back. Conflux: a mutation \
         that reads the counter through the `by_key` index and patches it, re-run by the runner on \
         an OCC conflict; conflict retries come from the database's counters. The median run is \
         chosen by commits/s. {}.\n",
        ctx.profile.w4_clients,
        ctx.profile.describe_runs()
    );
    out.push_str(&table.markdown());
    let _ = writeln!(
        out,
        "\nRatios (Conflux ÷ peer, same transport, same run) on increment latency:\n"
    );
    out.push_str(
        &ratios(outcomes, |run| {
            (run.latency.p50, run.latency.p99, run.cpu_per_1k())
        })
        .markdown(),
    );
    out
}
