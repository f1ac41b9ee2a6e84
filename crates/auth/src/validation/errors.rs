//! The errors token validation produces: one [`ErrorCode`] per failed check.
//!
//! Why a module of constructors: the public message of each code must be the same
//! everywhere (it is what production clients see), while the detail (which `kid`, which
//! issuer, how many seconds) changes with every failure and is only sent in dev mode.
//! Keeping the messages here makes them consistent and easy to review for leaks.

use conflux_common::{Error, ErrorCode};

fn auth_error(code: ErrorCode, message: &str, detail: impl Into<String>) -> Error {
    Error::new(code, message).with_detail(detail.into())
}

/// `TokenMalformed`: the token is not a parseable JWT.
pub(crate) fn malformed(detail: impl Into<String>) -> Error {
    auth_error(
        ErrorCode::TokenMalformed,
        "Could not parse JWT payload. Check that the token is a valid JWT format with three base64-encoded parts separated by dots.",
        detail,
    )
}

/// `NoAuthProvider`: no configured provider has the token's issuer.
pub(crate) fn no_provider(detail: impl Into<String>) -> Error {
    auth_error(
        ErrorCode::NoAuthProvider,
        "No auth provider found matching the given token",
        detail,
    )
}

/// `TokenAudienceMismatch`: the issuer is configured but not for this audience.
pub(crate) fn audience_mismatch(detail: impl Into<String>) -> Error {
    auth_error(
        ErrorCode::TokenAudienceMismatch,
        "The token's audience does not match the auth provider's applicationID",
        detail,
    )
}

/// `TokenExpired`.
pub(crate) fn expired(detail: impl Into<String>) -> Error {
    auth_error(ErrorCode::TokenExpired, "The token has expired", detail)
}

/// `TokenNotYetValid`: `nbf` or `iat` in the future.
pub(crate) fn not_yet_valid(detail: impl Into<String>) -> Error {
    auth_error(
        ErrorCode::TokenNotYetValid,
        "The token is not valid yet",
        detail,
    )
}

/// `TokenMissingClaim`: `iss`, `sub` or `exp` missing or of the wrong type.
pub(crate) fn missing_claim(detail: impl Into<String>) -> Error {
    auth_error(
        ErrorCode::TokenMissingClaim,
        "The token lacks a required claim",
        detail,
    )
}

/// `TokenSignatureInvalid`.
pub(crate) fn bad_signature(detail: impl Into<String>) -> Error {
    auth_error(
        ErrorCode::TokenSignatureInvalid,
        "Could not verify the token's signature",
        detail,
    )
}

/// `TokenAlgorithmNotAllowed`: the header's `alg` is not configured for the provider.
pub(crate) fn algorithm_not_allowed(detail: impl Into<String>) -> Error {
    auth_error(
        ErrorCode::TokenAlgorithmNotAllowed,
        "The token's signing algorithm is not allowed",
        detail,
    )
}

/// `TokenUnknownKey`: no key of the provider's key set may verify the token.
pub(crate) fn unknown_key(detail: impl Into<String>) -> Error {
    auth_error(
        ErrorCode::TokenUnknownKey,
        "Could not find the key that signed the token",
        detail,
    )
}

/// `AuthProviderDiscoveryFailed`: discovery or the JWKS could not be fetched.
pub(crate) fn discovery_failed(detail: impl Into<String>) -> Error {
    auth_error(
        ErrorCode::AuthProviderDiscoveryFailed,
        "Could not fetch the auth provider's keys",
        detail,
    )
}

/// `SessionEnded`: one of our own tokens whose session was signed out or expired.
pub(crate) fn session_ended(detail: impl Into<String>) -> Error {
    auth_error(
        ErrorCode::SessionEnded,
        "The session has ended; sign in again",
        detail,
    )
}
