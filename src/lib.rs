//! Conflux: a reactive realtime backend, wire-compatible with the official Convex clients.
//!
//! App developers write queries, mutations, actions and HTTP routes in Rust; clients
//! (the `convex` npm package, its React hooks, `@convex-dev/auth`, the `convex` Rust crate)
//! subscribe to queries over a WebSocket and get new results the moment a commit changes
//! what a query read. Sign-in with Google or any OpenID Connect provider is built in.
//!
//! This facade assembles the layers (values → db → functions → http / auth / sync, see
//! `docs/architecture.md`) into an [`App`] that runs the standard server with its command
//! line ([`App::run`]), starts in a test ([`App::start`]), or runs in-process
//! ([`App::embed`]).
//!
//! ```no_run
//! use conflux::{object, v, App, IndexRange, Order, TableDef, Value};
//!
//! fn main() -> std::process::ExitCode {
//!     App::new("chat")
//!         .table(TableDef::new("messages").index("by_channel", &["channel"]))
//!         .query("messages:list", v::object([("channel", v::string())]), |ctx, args| {
//!             let channel = args.get("channel").cloned().unwrap_or(Value::from("general"));
//!             let messages = ctx
//!                 .db()
//!                 .query("messages")?
//!                 .with_index("by_channel", IndexRange::new().eq("channel", channel))?
//!                 .order(Order::Desc)
//!                 .take(100)?;
//!             Ok(Value::Array(messages.iter().rev().map(|m| m.to_value()).collect()))
//!         })
//!         .mutation(
//!             "messages:send",
//!             v::object([("body", v::string()), ("channel", v::string())]),
//!             |ctx, args| {
//!                 let id = ctx.db().insert("messages", args)?;
//!                 Ok(Value::from(id.to_string()))
//!             },
//!         )
//!         .run()
//! }
//! ```

mod app;
mod cli;
mod config;
mod embedded;
mod logging;
mod server;
pub mod transfer;

pub use app::App;
pub use config::{LogFormat, ServeConfig};
pub use embedded::Embedded;
pub use server::Server;

pub use conflux_auth as auth;
pub use conflux_common::{Error, ErrorCode, Identity, Result, UserIdentity};
pub use conflux_db::{Document, IndexRange, Order, PaginationOpts, Schema, TableDef};
pub use conflux_functions::{ActionCtx, Caller, FunctionRunner, MutationCtx, QueryCtx};
pub use conflux_http::{handler, HttpActionCtx, HttpActionRequest, RouteMethod};
pub use conflux_sync::LiveQuery;
pub use conflux_values::validator::v;
pub use conflux_values::{object, DocumentId, Object, Value};

/// The `users` document id of the signed-in user, for tokens issued by the built-in
/// sign-in (their subject is `userId|sessionId`); `None` when signed out or signed in with a
/// third-party token.
pub fn auth_user_id(identity: &Identity) -> Option<DocumentId> {
    let user = identity.user()?;
    user.session_id.as_ref()?;
    let (user_id, _session) = user.subject.split_once('|')?;
    user_id.parse().ok()
}

impl App {
    /// Start serving with `config` (ports of 0 pick free ports) and return the running
    /// server; what `run` does for `serve`, for tests and programs that embed the server.
    pub async fn start(self, config: &ServeConfig) -> Result<Server> {
        server::start(self, config).await
    }
}

/// The README's code sample is compiled as a doctest, so it cannot drift from the API.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The code of `docs/getting-started.md`, compiled.
#[doc = include_str!("../docs/getting-started.md")]
#[cfg(doctest)]
pub struct GettingStartedDoctests;

/// The examples of `docs/embedding.md`, compiled and run.
#[doc = include_str!("../docs/embedding.md")]
#[cfg(doctest)]
pub struct EmbeddingDoctests;

/// The code of `docs/auth.md`, compiled.
#[doc = include_str!("../docs/auth.md")]
#[cfg(doctest)]
pub struct AuthDoctests;
