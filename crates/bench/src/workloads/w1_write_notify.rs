//! W1 write → notify: one subscriber holds "the latest 100 messages of channel c"; one
//! open-loop writer sends to c at 50 writes/s, then 500 writes/s (and a 1 KB document
//! variant). Latency is from the scheduled write to the subscriber holding a result that
//! contains it.

use std::fmt::Write as _;

use conflux_common::Result;

use super::notify::{run_systems, NotifyPlan};
use super::Context;
use crate::measure::latency::{ms, thousands};
use crate::report::{cpu_cell, latency_cell, ratios, Outcome, Table};
use crate::settings::{W1_LIMIT, WRITER_CONNECTIONS};

/// Run W1 and return its section.
pub async fn run(ctx: &Context) -> Result<String> {
    let profile = &ctx.profile;
    let mut outcomes: Vec<Outcome> = Vec::new();
    for (index, &(rate, size)) in profile.w1.iter().enumerate() {
        let config = format!("{rate} writes/s, {size} B docs");
        let channel = format!("w1-{index}");
        let plan = NotifyPlan::new(profile, vec![channel.clone()], rate, |_| channel.clone())
            .limit(W1_LIMIT)
            .size(size);
        outcomes.extend(run_systems(ctx, &config, &plan, |_| None, None).await);
    }
    Ok(render(ctx, &outcomes))
}

fn render(ctx: &Context, outcomes: &[Outcome]) -> String {
    let mut table = Table::new(&[
        "System",
        "Transport",
        "Durability",
        "Load",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "n",
        "delivered",
        "CPU s / 1k notif.",
        "p50 range",
        "p99 range",
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
                thousands(run.latency.count),
                format!("{}/{}", thousands(run.delivered), thousands(run.expected)),
                cpu_cell(run.cpu_per_1k()),
                set.spread(|r| r.latency.p50, ms),
                set.spread(|r| r.latency.p99, ms),
            ]),
            (Err(reason), _) => {
                row.push(format!("n/a ({reason})"));
                row.extend(std::iter::repeat_n("–".to_string(), 8));
            }
            (Ok(_), None) => {
                row.push("n/a (no run completed)".into());
                row.extend(std::iter::repeat_n("–".to_string(), 8));
            }
        }
        table.row(row);
    }
    let mut out = String::new();
    let _ = writeln!(out, "## W1 write → notify\n");
    let _ = writeln!(
        out,
        "One subscriber to the latest {W1_LIMIT} messages of one channel; one open-loop writer \
         ({WRITER_CONNECTIONS} connections for the loopback systems, so a slow commit never delays \
         the next send). Latency: scheduled write → the subscriber holds a result containing it. \
         {}. CPU: Conflux and the floor over loopback count the server's threads only (the load \
         client's are excluded), PocketBase its process, in-process rows the whole process.\n",
        ctx.profile.describe_runs()
    );
    out.push_str(&table.markdown());
    let _ = writeln!(
        out,
        "\nRatios (Conflux ÷ peer, same transport, same run):\n"
    );
    out.push_str(
        &ratios(outcomes, |run| {
            (run.latency.p50, run.latency.p99, run.cpu_per_1k())
        })
        .markdown(),
    );
    out
}
