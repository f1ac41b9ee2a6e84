//! Conflux functions: how app code runs.
//!
//! App developers write three kinds of functions, exactly as Convex users know them:
//!
//! - **queries** read the database at one snapshot and are re-run by the sync layer when a
//!   commit changes what they read; they are synchronous and deterministic;
//! - **mutations** read and write in one serializable transaction; a mutation that loses an
//!   optimistic-concurrency conflict is re-run automatically, so it must be deterministic;
//! - **actions** are `async` and may do anything (HTTP calls, timers); they reach the database
//!   only through `run_query` / `run_mutation` / `run_action`.
//!
//! Queries and mutations are plain Rust closures: they run on the blocking thread pool, never
//! on the async reactor, and their function-time limit is checked at every database call.
//!
//! ```
//! use conflux_functions::{Registry, v, Value};
//!
//! let mut registry = Registry::new();
//! registry
//!     .query("messages:count", v::no_args(), |ctx, _args| {
//!         let n = ctx.db().query("messages")?.collect()?.len();
//!         Ok(Value::Float64(n as f64))
//!     })
//!     .unwrap();
//! ```

pub mod context;
mod forget;
pub mod path;
pub mod registry;
pub mod runner;

pub use conflux_common::{Error, ErrorCode, Identity, Result, UserIdentity};
pub use conflux_values::validator::v;
pub use conflux_values::{DocumentId, Object, Value};
pub use context::{ActionCtx, LogLines, MutationCtx, QueryCtx};
pub use forget::forget_session_requests;
pub use path::UdfPath;
pub use registry::{FunctionKind, Registry, Visibility};
pub use runner::{
    system_tables, ActionOutcome, Caller, FunctionFailure, FunctionRunner, MutationKey,
    MutationOutcome, QueryOutcome, RunnerOptions,
};
