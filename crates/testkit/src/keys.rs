//! Signing key pairs for tests, generated once per machine.
//!
//! Why: generating an RSA key takes seconds in a debug build, and many tests need the
//! sign-in's key pair (`JWT_PRIVATE_KEY`, `JWKS`). The pair is kept in a file under the
//! target folder and read back by later test runs.

use std::path::Path;

use serde_json::{json, Value as Json};

/// The `(private key, JWKS)` pair stored at `path`, or a new one from `generate`, stored
/// there for next time (written to a temporary file and renamed, so concurrent test
/// binaries never read half a file). A file that cannot be read or written only costs a
/// new generation.
pub fn cached_pair(path: &Path, generate: impl FnOnce() -> (String, String)) -> (String, String) {
    if let Ok(text) = std::fs::read_to_string(path) {
        if let Ok(stored) = serde_json::from_str::<Json>(&text) {
            if let (Some(private), Some(jwks)) =
                (stored["private"].as_str(), stored["jwks"].as_str())
            {
                return (private.to_owned(), jwks.to_owned());
            }
        }
    }
    let pair = generate();
    let temporary = path.with_extension(format!("{}.tmp", std::process::id()));
    let text = json!({"private": pair.0, "jwks": pair.1}).to_string();
    if std::fs::write(&temporary, text).is_ok() {
        let _ = std::fs::rename(&temporary, path);
    }
    pair
}
