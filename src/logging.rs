//! Logging set-up: one line per request and per function run, human-readable or JSON.
//!
//! `RUST_LOG` refines the filter as usual; without it, Conflux logs at `info` (every
//! request, and in dev mode every function run, with its duration) and quietens its
//! dependencies and the per-index lines of the store's start-up
//! (`RUST_LOG=info,conflux_db=debug` shows them).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Install the global subscriber once; later calls are ignored (tests start many servers).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,hyper=warn,sled=warn,reqwest=warn,conflux_db::catalog=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // An error only means a subscriber is already installed.
    drop(result);
}
