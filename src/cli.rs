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
use crate::config::{LogFormat, ServeConfig};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "A Conflux app: reactive backend with live queries and sign-in"
)]
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
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
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
            let (report, origins) = crate::server::explain_token(app, &cli.serve, &token).await?;
            println!("{report}");
            // A token of the built-in sign-in is only valid while its session lasts, which
            // only the deployment knows (its data folder is in use while it runs).
            let session = report.outcome.as_ref().ok().and_then(|identity| {
                let own = identity.issuer == origins.site;
                let from_subject = || {
                    identity
                        .subject
                        .split_once('|')
                        .map(|(_, session)| session.to_owned())
                };
                identity
                    .session_id
                    .clone()
                    .or_else(|| own.then(from_subject).flatten())
            });
            if let Some(session) = session {
                println!(
                    "Session `{session}`: not checked here. The deployment also refuses the \
                     token once this session is signed out or expired; ask it with\n  curl -H \
                     'Authorization: Bearer <token>' {}/api/auth/session",
                    origins.site
                );
            }
            if report.accepted() {
                Ok(())
            } else {
                Err(Error::new(
                    ErrorCode::Unauthenticated,
                    "the token was rejected",
                ))
            }
        }
        Command::Routes => {
            print_routes(&crate::server::plan_routes(app, &cli.serve)?);
            Ok(())
        }
        Command::Functions => {
            let functions = crate::server::plan_functions(app, &cli.serve)?;
            let width = functions
                .iter()
                .map(|(name, _, _)| name.len())
                .max()
                .unwrap_or(0)
                .max("NAME".len());
            println!("{:<width$}  {:<8}  VISIBILITY", "NAME", "KIND");
            for (name, kind, visibility) in functions {
                let visibility = match visibility {
                    conflux_functions::Visibility::Public => "public",
                    conflux_functions::Visibility::Internal => "internal",
                };
                println!("{name:<width$}  {:<8}  {visibility}", kind.as_str());
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

/// `routes`: one line per route with the URL it answers on. Every route of the site origin
/// also answers on the client API origin under `/http`.
fn print_routes(plan: &crate::server::RoutePlan) {
    let origins = &plan.origins;
    println!(
        "site origin:       {} (HTTP actions and sign-in routes)",
        origins.site
    );
    println!(
        "client API origin: {} (the same routes under {}/http/...)",
        origins.client, origins.client
    );
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    for route in &plan.routes {
        let per_provider = route.kind == conflux_http::RouteKind::Prefix
            && (route.path == conflux_http::SIGN_IN_PATH_PREFIX
                || route.path == conflux_http::CALLBACK_PATH_PREFIX);
        if per_provider && !plan.providers.is_empty() {
            // The sign-in and callback URL of each provider: the callback is the redirect URI
            // to register with the provider.
            for provider in &plan.providers {
                let path = format!("{}{provider}", route.path);
                let url = origins.site_url(&path);
                rows.push((route.method.to_string(), path, route.set.clone(), url));
            }
            continue;
        }
        let shown = match route.kind {
            conflux_http::RouteKind::Exact => route.path.clone(),
            conflux_http::RouteKind::Prefix => format!("{}*", route.path),
        };
        let url = origins.site_url(&route.path);
        rows.push((route.method.to_string(), shown, route.set.clone(), url));
    }
    if let Some(dir) = &plan.web_app {
        rows.push((
            "GET".into(),
            "/*".into(),
            format!("web front-end ({})", dir.display()),
            origins.site_url("/"),
        ));
    }
    let width = |pick: fn(&(String, String, String, String)) -> &String, title: &str| {
        rows.iter()
            .map(|row| pick(row).len())
            .max()
            .unwrap_or(0)
            .max(title.len())
    };
    let method_w = width(|row| &row.0, "METHOD");
    let path_w = width(|row| &row.1, "PATH");
    let url_w = width(|row| &row.3, "URL");
    println!(
        "{:<method_w$}  {:<path_w$}  {:<url_w$}  FROM",
        "METHOD", "PATH", "URL"
    );
    for (method, path, set, url) in &rows {
        println!("{method:<method_w$}  {path:<path_w$}  {url:<url_w$}  {set}");
    }
}

async fn serve(app: App, config: &ServeConfig) -> Result<()> {
    let mut signals = Signals::install();
    let server = crate::server::start(app, config).await?;
    println!("conflux: client api listening on {}", server.client_url());
    println!("conflux: http actions listening on {}", server.site_url());
    let _ = std::io::stdout().flush();
    // What a person starting the server wants to know next; stdout keeps exactly the two
    // lines above for programs that read them.
    let format = config.log_format;
    if let Some(dir) = server.web_app_dir() {
        tell(
            format,
            &format!(
                "web app at {}/ (the built front-end in {})",
                server.site_url(),
                dir.display()
            ),
        );
    }
    if server.sign_in_providers().is_some_and(<[String]>::is_empty) {
        let callback = format!("{}/api/auth/callback/google", server.site_url());
        tell(
            format,
            &format!(
                "no sign-in provider is configured. For Google, set AUTH_GOOGLE_ID and \
                 AUTH_GOOGLE_SECRET (redirect URI {callback}); to try sign-in offline, run the \
                 local provider `cargo run -p conflux-local-oidc -- --redirect-uri {callback}` \
                 and set AUTH_GOOGLE_ISSUER to the issuer it prints, \
                 AUTH_GOOGLE_ID=conflux-test and AUTH_GOOGLE_SECRET=conflux-test-secret."
            ),
        );
    }
    signals.next().await;
    tell(
        format,
        "shutting down: no new connections; finishing the requests in flight",
    );
    let outcome = tokio::select! {
        outcome = server.shutdown() => outcome,
        () = signals.next() => {
            tell(format, "second signal: stopping without waiting for the requests in flight");
            return Err(Error::new(
                ErrorCode::Internal,
                "stopped by a second signal before the requests in flight finished",
            ));
        }
    };
    match outcome {
        conflux_http::ShutdownOutcome::Graceful => tell(format, "stopped"),
        conflux_http::ShutdownOutcome::Forced { open_connections } => tell(
            format,
            &format!(
                "stopped; {open_connections} connection(s) were still busy at the shutdown \
                 deadline (CONFLUX_HTTP_SHUTDOWN_TIMEOUT_MS) and were closed"
            ),
        ),
    }
    Ok(())
}

/// A message for the person running the server: a plain line next to the text logs, or a
/// log event when logs are JSON (so a log collector sees only JSON).
fn tell(format: LogFormat, text: &str) {
    match format {
        LogFormat::Text => eprintln!("conflux: {text}"),
        LogFormat::Json => tracing::info!("{text}"),
    }
}

/// SIGTERM and Ctrl-C (SIGINT), listened to from before the server announces itself: a
/// signal sent right after the "listening" lines must stop it gracefully, not kill it.
struct Signals {
    #[cfg(unix)]
    unix: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let unix = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(term), Ok(interrupt)) => Some((term, interrupt)),
                (Err(err), _) | (_, Err(err)) => {
                    tracing::warn!("cannot listen for SIGTERM/SIGINT ({err}); only Ctrl-C stops the server gracefully");
                    None
                }
            };
            Signals { unix }
        }
        #[cfg(not(unix))]
        {
            Signals {}
        }
    }

    /// Wait for the next SIGTERM or Ctrl-C.
    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some((term, interrupt)) = &mut self.unix {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
            return;
        }
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot wait for Ctrl-C: {err}");
            std::future::pending::<()>().await;
        }
    }
}
