//! Conflux sync: the WebSocket protocol of the official Convex clients.
//!
//! A client holds one WebSocket. Over it, it subscribes to queries, runs mutations and
//! actions and changes its identity; the server answers with `Transition`s that move the
//! client's query results from one consistent snapshot to the next. This crate speaks that
//! protocol so that the unmodified official clients (npm `convex` 1.48.x, the `convex`
//! Rust crate 0.10.4) work against Conflux.
//!
//! ```text
//!  text frame ──▶ protocol::parse_client_message ──▶ ClientMessage
//!                                                      │   (worker: reader task)
//!                     state::SocketState ◀─────────────┘   versions, identity, query set
//!                          │ plan_transition                (worker: processing loop)
//!                          ▼
//!        SubscriptionManager::consistent_results ◀── shared live queries, re-run once per
//!                          │ commit_transition          invalidating commit (db subscriptions)
//!                          ▼
//!  text frame ◀── ServerMessage::to_json_text ◀── Transition, MutationResponse, ...
//!                                                      (worker: bounded outbox → writer task)
//! ```
//!
//! The facade merges [`sync_routes`] into the client API router it serves with
//! `conflux_http::bind(..).serve(..)`, and uses [`SubscriptionManager::subscribe`] for
//! in-process live queries.
//!
//! - [`protocol`]: every message and field encoding, decoded with errors that name the
//!   offending field. `docs/protocol.md` describes the wire format and the client
//!   versions it is tested with.
//! - [`udf_path`]: the one canonical spelling of a function path (shared with the
//!   function registry and the HTTP API).
//! - [`state`]: the per-connection version state machine (spec §4), pure and unit-tested.
//! - [`subscriptions`]: the [`SubscriptionManager`]: identical subscriptions share one
//!   execution and one cached result, re-run once per invalidating commit and fanned out
//!   without waiting for any subscriber; also the in-process [`LiveQuery`].
//! - [`server`]: [`sync_routes`] (`/api/sync`, `/api/<semver>/sync`), [`SyncState`],
//!   [`SyncConfig`] and [`SyncMetrics`].
//! - `rate_limit` (private): the per-socket token bucket of requests.
//! - `worker` (private): one socket: a reader task, a processing loop and a writer task
//!   with a bounded outbox; ordering, back-pressure, identity changes, keep-alive and
//!   close codes are described in its module docs.

// `conflux_common::Error` is returned by value everywhere in the workspace; it is larger than
// clippy's threshold for `Result` errors, which is a property of the shared type, not of
// this crate's functions.
#![allow(clippy::result_large_err)]

pub mod protocol;
mod rate_limit;
pub mod server;
pub mod state;
pub mod subscriptions;
/// Function paths; defined in `conflux-functions`, where the registry looks them up.
pub use conflux_functions::path as udf_path;
mod worker;

pub use server::{sync_routes, SyncConfig, SyncMetrics, SyncState};
pub use subscriptions::{
    LiveQuery, LiveUpdate, QueryKey, SubscriptionManager, SubscriptionMetrics,
};
pub use worker::{FIRST_TRANSITION_GRACE, IDENTITY_EXPIRED, SESSION_ENDED};
