//! `conflux-bench __serve <conflux|floor> <port> [<data dir>]`: a server in a process of
//! its own, for W5.
//!
//! Why a separate process: W5 measures memory per idle connection (the server's resident
//! memory, without the load client's), and the time to reconnect and resync after a
//! *restart*, which means killing the process and starting it again on the same port and
//! the same data. The child prints `listening <port>` once it accepts connections.

use std::path::PathBuf;
use std::process::ExitCode;

use conflux_common::{Error, Result};

use crate::targets::conflux_app;
use crate::targets::floor::FloorServer;

/// The hidden first argument that selects this mode.
pub const COMMAND: &str = "__serve";

/// Run the server named by `args` until killed.
pub fn main(args: &[String]) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the Tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{COMMAND}: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: &[String]) -> Result<()> {
    let usage = || {
        Error::bad_request(format!(
            "usage: {COMMAND} <conflux|floor> <port> [<data dir>]"
        ))
    };
    let kind = args.first().ok_or_else(usage)?;
    let port: u16 = args.get(1).and_then(|p| p.parse().ok()).ok_or_else(usage)?;
    match kind.as_str() {
        "conflux" => {
            let dir = PathBuf::from(args.get(2).ok_or_else(usage)?);
            let server = conflux_app::app()
                .start(&conflux_app::serve_config(&dir, port))
                .await?;
            println!("listening {port}");
            std::future::pending::<()>().await;
            drop(server);
            Ok(())
        }
        "floor" => {
            let server = FloorServer::start(port).await?;
            println!("listening {}", server.addr().port());
            std::future::pending::<()>().await;
            drop(server);
            Ok(())
        }
        _ => Err(usage()),
    }
}
