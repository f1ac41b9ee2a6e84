//! The seven tables of the built-in sign-in, with the names, fields and indexes of Convex
//! Auth's `authTables`.
//!
//! Why exactly these: apps written for Convex Auth query `users` and call `getAuthUserId`,
//! and their data may be moved between deployments, so the names, the field names and the
//! index names are a contract. All times are milliseconds since the Unix epoch (float64).
//!
//! `users` has no document validator, so apps can add their own fields to it; the other
//! tables belong to the sign-in and are validated.

use conflux_common::Result;
use conflux_db::{Document, TableDef};
use conflux_values::validator::{v, FieldValidator, Validator};
use conflux_values::{DocumentId, Object, Value};

/// `users`: one document per person, shared by every provider they sign in with.
pub const USERS: &str = "users";
/// `authAccounts`: one document per (provider, account at that provider).
pub const ACCOUNTS: &str = "authAccounts";
/// `authSessions`: one document per signed-in browser or device.
pub const SESSIONS: &str = "authSessions";
/// `authRefreshTokens`: the refresh tokens of the sessions, used ones included.
pub const REFRESH_TOKENS: &str = "authRefreshTokens";
/// `authVerifiers`: one document per OAuth sign-in in progress.
pub const VERIFIERS: &str = "authVerifiers";
/// `authVerificationCodes`: the one-time codes that finish a sign-in.
pub const VERIFICATION_CODES: &str = "authVerificationCodes";
/// `authRateLimits`: failed attempts per identifier.
pub const RATE_LIMITS: &str = "authRateLimits";

/// Index of `users` on `email`.
pub(crate) const USERS_BY_EMAIL: &str = "email";
/// Index of `users` on `phone`.
pub(crate) const USERS_BY_PHONE: &str = "phone";
/// Index of `authSessions` on `userId`.
pub(crate) const SESSIONS_BY_USER: &str = "userId";
/// Index of `authAccounts` on `[userId, provider]`.
pub(crate) const ACCOUNTS_BY_USER_AND_PROVIDER: &str = "userIdAndProvider";
/// Index of `authAccounts` on `[provider, providerAccountId]`.
pub(crate) const ACCOUNTS_BY_PROVIDER_AND_ID: &str = "providerAndAccountId";
/// Index of `authRefreshTokens` on `sessionId` (creation order within a session).
pub(crate) const REFRESH_TOKENS_BY_SESSION: &str = "sessionId";
/// Index of `authRefreshTokens` on `[sessionId, parentRefreshTokenId]`.
pub(crate) const REFRESH_TOKENS_BY_SESSION_AND_PARENT: &str = "sessionIdAndParentRefreshTokenId";
/// Index of `authVerificationCodes` on `accountId`.
pub(crate) const CODES_BY_ACCOUNT: &str = "accountId";
/// Index of `authVerificationCodes` on `code` (the SHA-256 of the code).
pub(crate) const CODES_BY_CODE: &str = "code";
/// Index of `authVerifiers` on `signature`.
pub(crate) const VERIFIERS_BY_SIGNATURE: &str = "signature";
/// Index of `authRateLimits` on `identifier`.
pub(crate) const RATE_LIMITS_BY_IDENTIFIER: &str = "identifier";

fn required(validator: Validator) -> FieldValidator {
    validator.into()
}

/// The table definitions, to add to the app's schema.
pub(crate) fn table_defs() -> Vec<TableDef> {
    vec![
        TableDef::new(USERS)
            .index(USERS_BY_EMAIL, &["email"])
            .index(USERS_BY_PHONE, &["phone"]),
        TableDef::new(SESSIONS)
            .validator(v::object([
                ("userId", required(v::id(USERS))),
                ("expirationTime", required(v::number())),
            ]))
            .index(SESSIONS_BY_USER, &["userId"]),
        TableDef::new(ACCOUNTS)
            .validator(v::object([
                ("userId", required(v::id(USERS))),
                ("provider", required(v::string())),
                ("providerAccountId", required(v::string())),
                ("secret", v::optional(v::string())),
                ("emailVerified", v::optional(v::string())),
                ("phoneVerified", v::optional(v::string())),
            ]))
            .index(ACCOUNTS_BY_USER_AND_PROVIDER, &["userId", "provider"])
            .index(
                ACCOUNTS_BY_PROVIDER_AND_ID,
                &["provider", "providerAccountId"],
            ),
        TableDef::new(REFRESH_TOKENS)
            .validator(v::object([
                ("sessionId", required(v::id(SESSIONS))),
                ("expirationTime", required(v::number())),
                ("firstUsedTime", v::optional(v::number())),
                ("parentRefreshTokenId", v::optional(v::id(REFRESH_TOKENS))),
            ]))
            .index(REFRESH_TOKENS_BY_SESSION, &["sessionId"])
            .index(
                REFRESH_TOKENS_BY_SESSION_AND_PARENT,
                &["sessionId", "parentRefreshTokenId"],
            ),
        TableDef::new(VERIFICATION_CODES)
            .validator(v::object([
                ("accountId", required(v::id(ACCOUNTS))),
                ("provider", required(v::string())),
                ("code", required(v::string())),
                ("expirationTime", required(v::number())),
                ("verifier", v::optional(v::string())),
                ("emailVerified", v::optional(v::string())),
                ("phoneVerified", v::optional(v::string())),
            ]))
            .index(CODES_BY_ACCOUNT, &["accountId"])
            .index(CODES_BY_CODE, &["code"]),
        TableDef::new(VERIFIERS)
            .validator(v::object([
                ("sessionId", v::optional(v::id(SESSIONS))),
                ("signature", v::optional(v::string())),
            ]))
            .index(VERIFIERS_BY_SIGNATURE, &["signature"]),
        TableDef::new(RATE_LIMITS)
            .validator(v::object([
                ("identifier", required(v::string())),
                ("lastAttemptTime", required(v::number())),
                ("attemptsLeft", required(v::number())),
            ]))
            .index(RATE_LIMITS_BY_IDENTIFIER, &["identifier"]),
    ]
}

/// A string field of a stored document.
pub(crate) fn str_field<'d>(doc: &'d Document, name: &str) -> Option<&'d str> {
    doc.value.get(name).and_then(Value::as_str)
}

/// A number field of a stored document (times are float64; an int64 is accepted too).
pub(crate) fn num_field(doc: &Document, name: &str) -> Option<f64> {
    match doc.value.get(name)? {
        Value::Float64(x) => Some(*x),
        Value::Int64(n) => Some(*n as f64),
        Value::Null
        | Value::Boolean(_)
        | Value::String(_)
        | Value::Bytes(_)
        | Value::Array(_)
        | Value::Object(_) => None,
    }
}

/// An id field of a stored document.
pub(crate) fn id_field(doc: &Document, name: &str) -> Option<DocumentId> {
    str_field(doc, name).and_then(|text| text.parse().ok())
}

/// An object from `(name, value)` pairs whose names are known-good constants; `None` values
/// are left out (Convex's `undefined`).
pub(crate) fn fields<const N: usize>(pairs: [(&str, Option<Value>); N]) -> Result<Object> {
    let mut object = Object::new();
    for (name, value) in pairs {
        if let Some(value) = value {
            object.insert(name.to_owned(), value)?;
        }
    }
    Ok(object)
}
