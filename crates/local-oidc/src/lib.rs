//! A real OpenID Connect provider on loopback, for tests and for trying sign-in offline.
//!
//! Why it exists: token validation and the sign-in flow talk to identity providers over
//! HTTP (discovery, JWKS, authorization code with PKCE, ID tokens). Mocking those calls would
//! test our assumptions instead of the protocol, and real providers cannot be reached from
//! tests. [`LocalOidcProvider`] is a small but honest provider: it binds `127.0.0.1`, signs
//! with real RSA (and optionally P-256) keys, and lets a test rotate keys, take the provider
//! down, slow it down and count the requests that reached it.
//!
//! ```text
//!   test / developer                         LocalOidcProvider (127.0.0.1:<port>)
//!   ─────────────────                        ────────────────────────────────────
//!   GET /.well-known/openid-configuration ─▶ issuer, endpoints, algorithms
//!   GET /jwks                             ─▶ RS256 keys with kid (+ ES256 if configured)
//!   GET /authorize?…&code_challenge=…     ─▶ 302 redirect_uri?code=…&state=…&iss=…
//!   POST /token (code + code_verifier)    ─▶ {access_token, id_token (RS256), …}
//!   GET /userinfo (Bearer access_token)   ─▶ the test user
//! ```
//!
//! The `local-oidc` binary starts one and prints its issuer, so sign-in can be tried without
//! a network.

mod keys;
mod provider;
mod routes;

pub use keys::{KidHeader, SignOptions, TestAlg, TestKey};
pub use provider::{LocalOidcConfig, LocalOidcProvider, RetiredKey, TestClient, TestUser};
