//! The foundation shared by every Conflux crate.
//!
//! Three things live here because every layer needs them and none of them owns them:
//!
//! - [`Error`] and [`ErrorCode`]: the one error type of the system. Each error carries a
//!   stable ScreamingCamelCase code (used by tests, metrics and clients), a message that
//!   tells the developer what to do, and optionally a detail that is only sent to clients in
//!   dev mode (it is always logged).
//! - [`knobs`]: every tunable limit and timeout, named with its unit, each overridable from
//!   the environment.
//! - [`identity`]: who is calling a function, and the [`identity::TokenValidator`] trait that
//!   the sync and HTTP layers use to turn a bearer token into an identity without knowing
//!   how tokens are validated.

pub mod error;
pub mod identity;
pub mod knobs;

pub use error::{Error, ErrorCode, Result};
pub use identity::{Identity, SessionEnded, TokenValidator, UserIdentity};
