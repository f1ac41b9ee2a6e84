//! Server configuration: flags, each also an environment variable.
//!
//! The same names work for every app built on Conflux (`--port` / `CONFLUX_PORT`, ...), so
//! an operator can run any of them without reading its code. Defaults match the ports the
//! Convex tooling uses (3210 for the client API, 3211 for HTTP actions).

use std::path::PathBuf;

use clap::Args;

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event, for log collectors.
    Json,
}

/// Where and how the server runs.
#[derive(Clone, Debug, Args)]
pub struct ServeConfig {
    /// Interface to listen on.
    #[arg(long, env = "CONFLUX_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port of the client API (sync WebSocket and function HTTP API); 0 picks a free port.
    #[arg(long, env = "CONFLUX_PORT", default_value_t = 3210)]
    pub port: u16,
    /// Port of the HTTP actions and sign-in routes (the site origin); 0 picks a free port.
    #[arg(long, env = "CONFLUX_SITE_PORT", default_value_t = 3211)]
    pub site_port: u16,
    /// Data folder (the embedded store lives here).
    #[arg(long, env = "CONFLUX_DATA")]
    pub data: Option<PathBuf>,
    /// Development mode: detailed errors are sent to clients.
    #[arg(long, env = "CONFLUX_DEV", num_args = 0..=1, default_missing_value = "true")]
    pub dev: Option<bool>,
    /// Log format.
    #[arg(long, env = "CONFLUX_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl ServeConfig {
    /// The configuration with every default, as a library user starts from.
    pub fn defaults() -> Self {
        ServeConfig {
            host: "127.0.0.1".into(),
            port: 3210,
            site_port: 3211,
            data: None,
            dev: None,
            log_format: LogFormat::Text,
        }
    }

    /// A configuration for tests: loopback, free ports, the given data folder, dev mode.
    pub fn for_tests(data: impl Into<PathBuf>) -> Self {
        ServeConfig {
            host: "127.0.0.1".into(),
            port: 0,
            site_port: 0,
            data: Some(data.into()),
            dev: Some(true),
            log_format: LogFormat::Text,
        }
    }
}
