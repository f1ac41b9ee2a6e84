//! Token validation: from a bearer token to a [`conflux_common::UserIdentity`], or to an
//! error that names the check that failed.
//!
//! Why these pieces: each answers one question a rejected user (or an attacker) raises.
//!
//! | module | question |
//! |---|---|
//! | [`token`] | is this a JWT at all, and what does it claim (unverified)? |
//! | [`keys`] | which key may verify it, given its `kid` and `alg`? |
//! | `fetch`, `jwks_cache` | where do the keys come from, and how often may we ask? |
//! | [`validator`] | which provider, which checks, in which order? |
//! | [`identity`] | what does `ctx.auth.getUserIdentity()` return? |
//! | `token_cache` | have we validated this exact token already? |
//! | [`session`] | is the session behind one of our own tokens still alive? |
//! | [`report`] | what does `auth check <token>` print? |

pub(crate) mod errors;
mod fetch;
pub mod identity;
mod jwks_cache;
pub mod keys;
pub mod report;
pub mod session;
pub mod settings;
pub mod token;
mod token_cache;
pub mod validator;

pub use keys::{KeyKind, KeySet, VerificationKey};
pub use report::{Check, StepOutcome, ValidationReport, ValidationStep};
pub use session::{SessionCache, SessionChecker};
pub use settings::{system_clock, Clock, ValidatorSettings};
pub use token::untrusted;
pub use validator::{JwtValidator, JwtValidatorBuilder};
