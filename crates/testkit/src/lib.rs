//! Test support shared by Conflux's integration tests.
//!
//! Conflux promises that the unmodified official clients work against it, so many tests
//! drive those clients. [`node`] runs the npm clients (installed under `tests/npm`) from a
//! Rust test: a scenario script reports what its client saw as JSON lines, and the test
//! asserts on them. [`browser`] walks the sign-in's redirects hop by hop with cookies, as a
//! browser would. [`keys`] keeps the sign-in's test key pair between runs.

pub mod browser;
pub mod keys;
pub mod node;
