//! The soak command: N WebSocket connections with live queries and a steady mutation load
//! against a server child; the server's memory and the notification latency every 30 s,
//! then a summary (memory at start, middle and end, and whether it levelled off).
//!
//! ```text
//! cargo run --release -p conflux-checker --bin soak -- --connections 1000 --duration-secs 600 --writes-per-sec 50
//! ```
//!
//! Exits with status 1 when memory was still growing at the end.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use conflux_checker::server::locate_server_binary;
use conflux_checker::soak::{run_soak, SoakConfig};

/// Soak a Conflux server with live queries and writes.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Watching WebSocket connections.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// How long the load runs once every connection is open.
    #[arg(long, default_value_t = 600)]
    duration_secs: u64,
    /// Posts per second (over 4 writer connections).
    #[arg(long, default_value_t = 50)]
    writes_per_sec: u32,
    /// Seconds between progress reports.
    #[arg(long, default_value_t = 30)]
    report_secs: u64,
    /// Where the data folder and the server log go (default: a temporary folder).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("soak: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(main_async(args))
}

async fn main_async(args: Args) -> ExitCode {
    let binary = match locate_server_binary() {
        Ok(binary) => binary,
        Err(err) => {
            eprintln!("soak: {err}");
            return ExitCode::FAILURE;
        }
    };
    let temp = match tempfile::Builder::new().prefix("conflux-soak-").tempdir() {
        Ok(temp) => temp,
        Err(err) => {
            eprintln!("soak: cannot create a temporary folder: {err}");
            return ExitCode::FAILURE;
        }
    };
    let config = SoakConfig {
        connections: args.connections.max(1),
        duration: Duration::from_secs(args.duration_secs.max(1)),
        writes_per_sec: args.writes_per_sec.max(1),
        report_every: Duration::from_secs(args.report_secs.max(1)),
        server_binary: binary,
        work_dir: args
            .work_dir
            .clone()
            .unwrap_or_else(|| temp.path().to_path_buf()),
    };
    println!(
        "soak: {} connections watching {} rooms, {} posts/s, for {} s",
        config.connections,
        (config.connections / 10).max(1),
        config.writes_per_sec,
        config.duration.as_secs()
    );
    match run_soak(&config, |window| println!("{window}")).await {
        Ok(report) => {
            println!("{report}");
            if report.levelled_off {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("soak: {err}");
            let kept = temp.keep();
            eprintln!("soak: the server log is in {}", kept.display());
            ExitCode::FAILURE
        }
    }
}
