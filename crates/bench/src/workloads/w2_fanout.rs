//! W2 fan-out: N subscribers on the same query (N = 100, 1,000, 5,000), one writer at
//! 10 writes/s. Per-subscriber latency, the time until the *last* subscriber has each
//! write, and for Conflux the query executions per write (the goal is one, not N: the
//! shared live queries of the sync crate run an identical subscription once).

use std::fmt::Write as _;

use conflux_common::Result;

use super::notify::{run_systems, NotifyPlan};
use super::Context;
use crate::measure::latency::{ms, thousands};
use crate::report::{cpu_cell, latency_cell, ratios, Outcome, Table};
use crate::settings::SMALL_LIMIT;
use crate::targets::System;

/// Run W2 and return its section.
pub async fn run(ctx: &Context) -> Result<String> {
    let profile = &ctx.profile;
    let mut outcomes: Vec<Outcome> = Vec::new();
    for &subscribers in &profile.w2_subscribers {
        let config = format!("N = {}", thousands(subscribers as u64));
        let channel = format!("w2-{subscribers}");
        let plan = NotifyPlan::new(
            profile,
            vec![channel.clone(); subscribers],
            profile.w2_rate,
            |_| channel.clone(),
        )
        .expected_per_write(subscribers as u32);
        outcomes.extend(run_systems(ctx, &config, &plan, |_| None, None).await);
    }
    Ok(render(ctx, &outcomes))
}

fn executions_per_write(outcome: &Outcome) -> String {
    match (outcome.target.system, outcome.median()) {
        (System::Conflux, Some(run)) => match run.executions {
            Some(executions) if run.writes > 0 => {
                format!("{:.2}", executions as f64 / run.writes as f64)
            }
            _ => "n/a".into(),
        },
        (System::Floor, _) => "– (no query: renders once per write)".into(),
        _ => "n/a (not exposed)".into(),
    }
}

fn render(ctx: &Context, outcomes: &[Outcome]) -> String {
    let mut table = Table::new(&[
        "System",
        "Transport",
        "Durability",
        "Subscribers",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "last subscriber p50 ms",
        "last subscriber p99 ms",
        "delivered",
        "query executions / write",
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
            (Ok(set), Some(run)) => row.extend([
                latency_cell(&run.latency, |s| s.p50),
                latency_cell(&run.latency, |s| s.p95),
                latency_cell(&run.latency, |s| s.p99),
                latency_cell(&run.latency, |s| s.max),
                run.last_subscriber
                    .map(|s| ms(s.p50))
                    .unwrap_or_else(|| "n/a".into()),
                run.last_subscriber
                    .map(|s| ms(s.p99))
                    .unwrap_or_else(|| "n/a".into()),
                format!("{}/{}", thousands(run.delivered), thousands(run.expected)),
                executions_per_write(outcome),
                cpu_cell(run.cpu_per_1k()),
                set.spread(|r| r.latency.p50, ms),
            ]),
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
    let _ = writeln!(out, "## W2 fan-out\n");
    let _ = writeln!(
        out,
        "N subscribers to the same query (the latest {SMALL_LIMIT} messages of one channel; one \
         connection each over loopback), one open-loop writer at {} writes/s, 200 B documents. \
         \"Last subscriber\": per write, the latency of the last subscriber to hold it (writes \
         that reached all N only). Query executions per write come from the sync crate's \
         counters (goal: 1). Conflux and the floor send the whole query result (the latest \
         {SMALL_LIMIT} messages) to each subscriber; PocketBase and SurrealDB send only the new \
         record. A lagging subscriber gets only the latest result (Conflux coalesces updates for \
         slow readers), so a write that already left the latest {SMALL_LIMIT} when its next result \
         arrives is never held and counts as not delivered. {}.\n",
        ctx.profile.w2_rate,
        ctx.profile.describe_runs()
    );
    out.push_str(&table.markdown());
    let _ = writeln!(
        out,
        "\nRatios (Conflux ÷ peer, same transport, same run), per-subscriber latency:\n"
    );
    out.push_str(
        &ratios(outcomes, |run| {
            (run.latency.p50, run.latency.p99, run.cpu_per_1k())
        })
        .markdown(),
    );
    let _ = writeln!(
        out,
        "\nRatios on the time until the last subscriber has the write:\n"
    );
    out.push_str(
        &ratios(outcomes, |run| {
            let last = run.last_subscriber.unwrap_or_default();
            (last.p50, last.p99, run.cpu_per_1k())
        })
        .markdown(),
    );
    out
}
