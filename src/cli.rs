//! The command line every app gets: `serve` (the default), `auth keys`, `auth check`,
//! `routes`, `functions`, `export` and `import`.
//!
//! An app's `main` is one line, `App::new("chat")…run()`, and operators get the same
//! commands for every app: no app needs its own tooling for keys, token debugging or
//! backups.

use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use conflux_common::{Error, ErrorCode, Result};

use crate::app::App;
use crate::config::ServeConfig;

#[derive(Parser, Debug)]
#[command(version, about = "A Conflux app: reactive backend with live queries and sign-in")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeConfig,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Sign-in keys and token debugging.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// List the HTTP routes (HTTP actions and sign-in routes) with their origin.
    Routes,
    /// List the functions: name, kind and visibility.
    Functions,
    /// Write every document to a JSON-lines file (a backup).
    Export {
        /// The file to write (`-` for standard output).
        file: PathBuf,
    },
    /// Load documents from a JSON-lines file written by `export`, keeping their ids.
    Import {
        /// The file to read.
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum AuthCommand {
    /// Print a fresh `JWT_PRIVATE_KEY` and `JWKS` pair for the built-in sign-in.
    Keys,
    /// Decode a token and show each validation step with pass or fail.
    Check {
        /// The JWT to check.
        token: String,
    },
}

impl App {
    /// Run the app's command line (`serve` by default) and return the process exit code.
    pub fn run(self) -> ExitCode {
        let cli = Cli::parse();
        crate::logging::init(cli.serve.log_format);
        let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(err) => {
                eprintln!("conflux: could not start the async runtime: {err}");
                return ExitCode::FAILURE;
            }
        };
        match runtime.block_on(dispatch(self, cli)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("conflux: {}", err.client_message(true));
                ExitCode::FAILURE
            }
        }
    }
}

async fn dispatch(app: App, cli: Cli) -> Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(app, &cli.serve).await,
        Command::Auth(AuthCommand::Keys) => {
            let keys = tokio::task::spawn_blocking(conflux_auth::generate_signing_keys)
                .await
                .map_err(Error::internal)??;
            println!("JWT_PRIVATE_KEY=\"{}\"", keys.private_key_env());
            println!("JWKS='{}'", keys.jwks_json());
            Ok(())
        }
        Command::Auth(AuthCommand::Check { token }) => {
            let report = crate::server::explain_token(app, &cli.serve, &token).await?;
            println!("{report}");
            if report.accepted() {
                Ok(())
            } else {
                Err(Error::new(ErrorCode::Unauthenticated, "the token was rejected"))
            }
        }
        Command::Routes => {
            for route in crate::server::plan_routes(app, &cli.serve)? {
                println!("{route}");
            }
            Ok(())
        }
        Command::Functions => {
            println!("{:<40} {:<9} VISIBILITY", "NAME", "KIND");
            for def in app.registry.iter() {
                let visibility = match def.visibility {
                    conflux_functions::Visibility::Public => "public",
                    conflux_functions::Visibility::Internal => "internal",
                };
                println!("{:<40} {:<9} {visibility}", def.path, def.kind().as_str());
            }
            if app.auth.is_some() {
                println!("(plus the built-in sign-in functions auth:signIn, auth:signOut, auth:isAuthenticated)");
            }
            Ok(())
        }
        Command::Export { file } => {
            let db = crate::server::open_for_maintenance(&app, &cli.serve)?;
            let started = std::time::Instant::now();
            let mut progress = |n: u64| eprintln!("conflux: exported {n} documents");
            let count = if file.as_os_str() == "-" {
                let stdout = std::io::stdout();
                let mut out = BufWriter::new(stdout.lock());
                crate::transfer::export(&db, &mut out, &mut progress)?
            } else {
                let created = std::fs::File::create(&file).map_err(|err| {
                    Error::bad_request(format!("could not create `{}`: {err}", file.display()))
                })?;
                let mut out = BufWriter::new(created);
                let count = crate::transfer::export(&db, &mut out, &mut progress)?;
                out.flush().map_err(Error::internal)?;
                count
            };
            eprintln!(
                "conflux: export finished: {count} documents in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Import { file } => {
            let db = crate::server::open_for_maintenance(&app, &cli.serve)?;
            let opened = std::fs::File::open(&file).map_err(|err| {
                Error::bad_request(format!("could not open `{}`: {err}", file.display()))
            })?;
            let mut input = BufReader::new(opened);
            let started = std::time::Instant::now();
            let count = crate::transfer::import(&db, &mut input, &mut |n| {
                eprintln!("conflux: imported {n} documents")
            })
            .await?;
            eprintln!(
                "conflux: import finished: {count} documents in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}

async fn serve(app: App, config: &ServeConfig) -> Result<()> {
    let server = crate::server::start(app, config).await?;
    println!("conflux: client api listening on {}", server.client_url());
    println!("conflux: http actions listening on {}", server.site_url());
    let _ = std::io::stdout().flush();
    wait_for_signal().await;
    eprintln!("conflux: shutting down");
    server.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
