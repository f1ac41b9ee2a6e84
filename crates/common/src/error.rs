//! The one error type of Conflux.
//!
//! Why one type: an error raised deep in the storage layer must reach a WebSocket client or
//! an HTTP response with the right status, the right close frame and the right amount of
//! detail. A single type with a stable [`ErrorCode`] makes that mapping one `match` instead
//! of a chain of conversions that lose information.
//!
//! Redaction: [`Error::message`] is always safe to show to a client. [`Error::detail`] may
//! carry information that would help an attacker (which `kid` was missing, which provider
//! was configured); it is logged always and sent to clients only in dev mode, see
//! [`Error::client_message`].

use std::fmt;

/// A stable short code naming what went wrong.
///
/// Codes never change meaning once released: tests, metrics and client code match on them.
/// The code decides the HTTP status ([`ErrorCode::http_status`]) and how a WebSocket is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    // ---- bad input (400) ----
    /// The request or message is malformed (bad JSON, wrong field types, wrong content type).
    BadRequest,
    /// A value exceeds a documented limit (size, nesting, field count, array length).
    LimitExceeded,
    /// A value or document is not valid (reserved field name, bad id, bad encoding).
    InvalidValue,
    /// Function arguments did not match the function's argument validator.
    ArgumentValidation,
    /// A write does not match the table's schema.
    SchemaValidation,
    /// A table, index or field referenced by a query does not exist.
    UnknownTable,
    /// An index name is not declared for the table.
    UnknownIndex,
    /// A protocol-level version or state mismatch from a client.
    BaseVersionMismatch,
    /// The request body is larger than the configured limit (413).
    PayloadTooLarge,
    /// The client version in the sync URL is not a semantic version.
    InvalidVersion,

    // ---- not found (404) ----
    /// No public function with that path is registered.
    FunctionNotFound,
    /// A document id refers to nothing.
    DocumentNotFound,
    /// No HTTP route matched.
    NoMatchingRoute,

    // ---- auth (401 / 403) ----
    /// The caller must be authenticated for this operation.
    Unauthenticated,
    /// The `Authorization` header is not `Bearer <token>`.
    InvalidAuthHeader,
    /// The token could not be parsed as a JWT.
    TokenMalformed,
    /// The token's issuer (and audience) match no configured provider.
    NoAuthProvider,
    /// The token's audience does not contain the provider's application id.
    TokenAudienceMismatch,
    /// The token's `exp` has passed (beyond the leeway).
    TokenExpired,
    /// The token's `nbf` or `iat` lies in the future (beyond the leeway).
    TokenNotYetValid,
    /// The token lacks a claim that is required (`exp`, `sub`, `iss`).
    TokenMissingClaim,
    /// The token's signature does not verify with the provider's keys.
    TokenSignatureInvalid,
    /// The token's `alg` is not the algorithm configured for the provider.
    TokenAlgorithmNotAllowed,
    /// The token's `kid` is not in the provider's key set.
    TokenUnknownKey,
    /// The identity provider's discovery document or JWKS could not be fetched.
    AuthProviderDiscoveryFailed,
    /// The session behind one of our own tokens has ended (signed out or expired).
    SessionEnded,
    /// The caller is authenticated but not allowed to do this.
    Forbidden,

    // ---- conflicts and load (409 / 429 / 503) ----
    /// A transaction lost an optimistic-concurrency conflict; it is retried automatically.
    OccConflict,
    /// Too many requests from this client; slow down.
    RateLimited,
    /// The server is overloaded (a bounded queue is full); retry later.
    Overloaded,
    /// A function ran past its time limit.
    FunctionTimeout,
    /// An HTTP request was not answered within the request time limit (503).
    RequestTimeout,
    /// Storage refused the write (disk full, I/O error); nothing was acknowledged.
    StorageUnavailable,

    // ---- user errors ----
    /// A function threw a user error (`ConvexError`) carrying data for the client.
    UserError,

    // ---- server bugs (500) ----
    /// An unexpected internal failure. Details are logged, not sent outside dev mode.
    Internal,
}

impl ErrorCode {
    /// The stable short code as text, e.g. `"OccConflict"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BadRequest",
            ErrorCode::LimitExceeded => "LimitExceeded",
            ErrorCode::InvalidValue => "InvalidValue",
            ErrorCode::ArgumentValidation => "ArgumentValidation",
            ErrorCode::SchemaValidation => "SchemaValidation",
            ErrorCode::UnknownTable => "UnknownTable",
            ErrorCode::UnknownIndex => "UnknownIndex",
            ErrorCode::BaseVersionMismatch => "BaseVersionMismatch",
            ErrorCode::PayloadTooLarge => "PayloadTooLarge",
            ErrorCode::InvalidVersion => "InvalidVersion",
            ErrorCode::FunctionNotFound => "FunctionNotFound",
            ErrorCode::DocumentNotFound => "DocumentNotFound",
            ErrorCode::NoMatchingRoute => "NoMatchingRoute",
            ErrorCode::Unauthenticated => "Unauthenticated",
            ErrorCode::InvalidAuthHeader => "InvalidAuthHeader",
            ErrorCode::TokenMalformed => "TokenMalformed",
            ErrorCode::NoAuthProvider => "NoAuthProvider",
            ErrorCode::TokenAudienceMismatch => "TokenAudienceMismatch",
            ErrorCode::TokenExpired => "TokenExpired",
            ErrorCode::TokenNotYetValid => "TokenNotYetValid",
            ErrorCode::TokenMissingClaim => "TokenMissingClaim",
            ErrorCode::TokenSignatureInvalid => "TokenSignatureInvalid",
            ErrorCode::TokenAlgorithmNotAllowed => "TokenAlgorithmNotAllowed",
            ErrorCode::TokenUnknownKey => "TokenUnknownKey",
            ErrorCode::AuthProviderDiscoveryFailed => "AuthProviderDiscoveryFailed",
            ErrorCode::SessionEnded => "SessionEnded",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::OccConflict => "OccConflict",
            ErrorCode::RateLimited => "RateLimited",
            ErrorCode::Overloaded => "Overloaded",
            ErrorCode::FunctionTimeout => "FunctionTimeout",
            ErrorCode::RequestTimeout => "RequestTimeout",
            ErrorCode::StorageUnavailable => "StorageUnavailable",
            ErrorCode::UserError => "UserError",
            ErrorCode::Internal => "Internal",
        }
    }

    /// The HTTP status a response carrying this error gets.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::LimitExceeded
            | ErrorCode::InvalidValue
            | ErrorCode::ArgumentValidation
            | ErrorCode::SchemaValidation
            | ErrorCode::UnknownTable
            | ErrorCode::UnknownIndex
            | ErrorCode::BaseVersionMismatch
            | ErrorCode::InvalidVersion
            | ErrorCode::UserError => 400,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::FunctionNotFound
            | ErrorCode::DocumentNotFound
            | ErrorCode::NoMatchingRoute => 404,
            ErrorCode::Unauthenticated
            | ErrorCode::InvalidAuthHeader
            | ErrorCode::TokenMalformed
            | ErrorCode::NoAuthProvider
            | ErrorCode::TokenAudienceMismatch
            | ErrorCode::TokenExpired
            | ErrorCode::TokenNotYetValid
            | ErrorCode::TokenMissingClaim
            | ErrorCode::TokenSignatureInvalid
            | ErrorCode::TokenAlgorithmNotAllowed
            | ErrorCode::TokenUnknownKey
            | ErrorCode::AuthProviderDiscoveryFailed
            | ErrorCode::SessionEnded => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::RateLimited => 429,
            ErrorCode::OccConflict
            | ErrorCode::Overloaded
            | ErrorCode::FunctionTimeout
            | ErrorCode::RequestTimeout
            | ErrorCode::StorageUnavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// Whether the error is about authentication (the token or the session), so that the
    /// sync layer answers it with `AuthError` rather than `FatalError`.
    pub fn is_auth(self) -> bool {
        self.http_status() == 401
    }

    /// Whether a client may succeed by simply retrying later (load, conflicts, storage).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::OccConflict
                | ErrorCode::Overloaded
                | ErrorCode::RateLimited
                | ErrorCode::StorageUnavailable
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error type of Conflux: a stable code, a message for the developer, an optional
/// detail that is redacted outside dev mode, and optional user data (`ConvexError` data,
/// already in the Convex JSON encoding).
///
/// The fields live behind one `Box`, so an `Error` is a single pointer and `Result<T>` stays
/// as small as `T` allows on hot paths.
#[derive(Clone, Debug, PartialEq)]
pub struct Error(Box<ErrorInner>);

#[derive(Clone, Debug, PartialEq)]
struct ErrorInner {
    code: ErrorCode,
    message: String,
    detail: Option<String>,
    data: Option<serde_json::Value>,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with a code and a message that is safe to show to any client.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error(Box::new(ErrorInner {
            code,
            message: message.into(),
            detail: None,
            data: None,
        }))
    }

    /// Attach a detail that is logged always and sent to clients only in dev mode.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.0.detail = Some(detail.into());
        self
    }

    /// A user error (`ConvexError`) carrying data in the Convex JSON encoding.
    pub fn user(message: impl Into<String>, data: serde_json::Value) -> Self {
        Error(Box::new(ErrorInner {
            code: ErrorCode::UserError,
            message: message.into(),
            detail: None,
            data: Some(data),
        }))
    }

    /// Shorthand for [`ErrorCode::BadRequest`].
    pub fn bad_request(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::BadRequest, message)
    }

    /// Shorthand for [`ErrorCode::Internal`]: the message is generic, the cause goes into
    /// the (redacted) detail.
    pub fn internal(cause: impl fmt::Display) -> Self {
        Error::new(ErrorCode::Internal, "Server Error").with_detail(cause.to_string())
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.0.code
    }

    /// The message, safe for any client.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The redacted detail, if any.
    pub fn detail(&self) -> Option<&str> {
        self.0.detail.as_deref()
    }

    /// User data (`ConvexError` data in Convex JSON), if any.
    pub fn data(&self) -> Option<&serde_json::Value> {
        self.0.data.as_ref()
    }

    /// The text a client receives: the message, followed by the detail in dev mode.
    pub fn client_message(&self, dev_mode: bool) -> String {
        match (&self.0.detail, dev_mode) {
            (Some(detail), true) => format!("{}: {}", self.0.message, detail),
            _ => self.0.message.clone(),
        }
    }

    /// Prefix the message with context, keeping code, detail and data.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.0.message = format!("{context}: {}", self.0.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.0.code, self.0.message)?;
        if let Some(detail) = &self.0.detail {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_is_only_shown_in_dev_mode() {
        let err = Error::new(ErrorCode::TokenUnknownKey, "Could not verify the token")
            .with_detail("kid `k1` not in the JWKS of http://idp/jwks (keys: k0)");
        assert_eq!(err.client_message(false), "Could not verify the token");
        assert!(err.client_message(true).contains("kid `k1`"));
        assert_eq!(err.code().http_status(), 401);
        assert!(err.code().is_auth());
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let err = Error::internal("sled: corrupted page 12");
        assert_eq!(err.client_message(false), "Server Error");
        assert_eq!(err.code().as_str(), "Internal");
    }
}
