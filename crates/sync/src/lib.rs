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
//!                                                      │
//!                     state::SocketState ◀─────────────┘  versions, identity, query set
//!                          │ plan_transition / commit_transition
//!                          ▼
//!  text frame ◀── ServerMessage::to_json_text ◀── Transition, MutationResponse, ...
//! ```
//!
//! - [`protocol`]: every message and field encoding, decoded with errors that name the
//!   offending field. `docs/protocol.md` describes the wire format and the client
//!   versions it is tested with.
//! - [`udf_path`]: the one canonical spelling of a function path.
//! - [`state`]: the per-connection version state machine (spec §4), pure and unit-tested.

// `conflux_common::Error` is returned by value everywhere in the workspace; it is larger than
// clippy's threshold for `Result` errors, which is a property of the shared type, not of
// this crate's functions.
#![allow(clippy::result_large_err)]

pub mod protocol;
pub mod state;
pub mod udf_path;
