//! The history checker's command line: run seeds, print a line per seed and the full
//! report (seed, replay command, anomalies, offending cycles) of every failure.
//!
//! ```text
//! cargo run -p conflux-checker --bin checker -- --seed 1 --runs 20 --clients 4 --duration-ms 3000
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use conflux_checker::server::locate_server_binary;
use conflux_checker::workload::{run, RunConfig};
use conflux_testkit::node::NpmClients;

/// Check Conflux's promises under faults with the official clients.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many seeds to run (seed, seed + 1, ...).
    #[arg(long, default_value_t = 1)]
    runs: u64,
    /// Clients per run (even: Rust client, odd: npm client).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// How long the clients append, per run.
    #[arg(long, default_value_t = 3000)]
    duration_ms: u64,
    /// Keys (lists) per run.
    #[arg(long, default_value_t = 3)]
    keys: usize,
    /// Shortest pause of a client between two mutations.
    #[arg(long, default_value_t = 0)]
    think_min_ms: u64,
    /// Longest pause of a client between two mutations.
    #[arg(long, default_value_t = 15)]
    think_max_ms: u64,
    /// No link cuts and no restarts.
    #[arg(long)]
    no_faults: bool,
    /// Rust clients only (no Node).
    #[arg(long)]
    rust_only: bool,
    /// Run the server with its conflict check switched off: the checker must fail.
    #[arg(long)]
    broken: bool,
    /// Write the history of every failed run to `<work dir>/seed-<n>/history.txt`.
    #[arg(long)]
    dump_history: bool,
    /// Where to keep data folders and server logs (default: a temporary folder, kept
    /// only when a run fails).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // `RUST_LOG=convex=debug` shows what the official Rust clients do (the server child
    // inherits `RUST_LOG` too and logs into its own file).
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("checker: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(main_async(args))
}

async fn main_async(args: Args) -> ExitCode {
    let binary = match locate_server_binary() {
        Ok(binary) => binary,
        Err(err) => {
            eprintln!("checker: {err}");
            return ExitCode::FAILURE;
        }
    };
    let npm = if args.rust_only {
        None
    } else {
        NpmClients::locate_or_skip()
    };
    let temp = match tempfile::Builder::new()
        .prefix("conflux-checker-")
        .tempdir()
    {
        Ok(temp) => temp,
        Err(err) => {
            eprintln!("checker: cannot create a temporary folder: {err}");
            return ExitCode::FAILURE;
        }
    };
    let work_dir = args
        .work_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let mut failures = 0u64;
    for seed in args.seed..args.seed.saturating_add(args.runs) {
        let mut config = RunConfig::new(seed, binary.clone(), work_dir.clone());
        config.clients = args.clients.max(1);
        config.keys = args.keys.max(1);
        config.duration = Duration::from_millis(args.duration_ms);
        config.think_ms = (args.think_min_ms, args.think_max_ms.max(args.think_min_ms));
        config.faults = !args.no_faults;
        config.broken = args.broken;
        config.npm = npm.clone();
        match run(&config).await {
            Ok(report) if report.analysis.is_valid() && std::env::var("CHK_DUMP").is_err() => {
                println!("{}", report.summary())
            }
            Ok(report) => {
                failures += 1;
                println!("{}", report.failure_report());
                if args.dump_history {
                    let path = work_dir.join(format!("seed-{seed}/history.txt"));
                    match std::fs::write(&path, format!("{:#?}", report.history)) {
                        Ok(()) => println!("history written to {}", path.display()),
                        Err(err) => println!("could not write {}: {err}", path.display()),
                    }
                }
            }
            Err(err) => {
                failures += 1;
                println!("seed {seed}: the harness failed: {err}");
            }
        }
    }
    println!(
        "{} of {} runs passed{}",
        args.runs - failures,
        args.runs,
        if args.broken {
            " (broken build: failures are expected)"
        } else {
            ""
        }
    );
    if failures > 0 && args.work_dir.is_none() {
        let kept = temp.keep();
        println!("data folders and server logs kept in {}", kept.display());
    }
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
