//! Conflux: a reactive realtime backend, wire-compatible with the official Convex clients.
//!
//! This facade crate assembles the layers (values → db → functions → http/auth/sync) into
//! an [`App`] that runs the standard server or embeds it as a library.
