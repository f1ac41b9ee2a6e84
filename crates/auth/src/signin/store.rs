//! What the sign-in writes: sessions, tokens, verifiers, accounts and one-time codes.
//!
//! Why one module for all of it: these operations are the `auth:store` mutation of Convex
//! Auth, and the same code must run in two places. App code and the sign-in's own actions
//! reach it through the `auth:store` internal mutation (a [`MutationCtx`]); the sign-in's
//! HTTP routes and the background cleanup run it in a plain [`Transaction`] (they have no
//! caller to run a function as). The [`Store`] trait is the small surface both provide, so
//! each rule (single use, expiry, the verifier binding, account linking) is written once.
//!
//! Refusals (a wrong code, an expired session) are not errors: the transaction still
//! commits what the refusal implies (an expired code is deleted, a session whose refresh
//! token was invalid is ended), and callers turn the [`Refusal`] into `null` or a 401. The
//! reason is logged, never sent to a client outside dev mode.

use conflux_common::{Error, ErrorCode, Identity, Result};
use conflux_db::{Document, IndexRange, Order, Query, Transaction};
use conflux_functions::MutationCtx;
use conflux_values::{DocumentId, Object, Value};
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::signin::tables::{
    fields, id_field, num_field, str_field, ACCOUNTS, ACCOUNTS_BY_PROVIDER_AND_ID,
    CODES_BY_ACCOUNT, CODES_BY_CODE, RATE_LIMITS, RATE_LIMITS_BY_IDENTIFIER, REFRESH_TOKENS,
    REFRESH_TOKENS_BY_SESSION, SESSIONS, SESSIONS_BY_USER, USERS, USERS_BY_EMAIL,
    VERIFICATION_CODES, VERIFIERS, VERIFIERS_BY_SIGNATURE,
};
use crate::signin::Core;

/// Most refresh tokens of one session deleted with it in one transaction; any left over
/// are orphans the background cleanup removes.
const SESSION_TOKENS_MAX_COUNT: usize = 2048;
/// Most sessions of one user ended by one `invalidateSessions`.
const USER_SESSIONS_MAX_COUNT: usize = 1024;
/// Failed code attempts per identifier per hour before it is rate limited (Convex Auth's
/// default `maxFailedAttempsPerHour`).
const MAX_FAILED_ATTEMPTS_PER_HOUR: f64 = 10.0;
const HOUR_MS: f64 = 3_600_000.0;
/// Digits of the one-time code an OAuth sign-in hands back to the app.
const OAUTH_CODE_DIGITS: u32 = 8;

/// A read of one index range: the table, the index, the range, the order, how many
/// documents, and an optional filter.
pub(crate) struct Scan<'s> {
    pub table: &'s str,
    pub index: &'s str,
    pub range: IndexRange,
    pub order: Order,
    pub limit: usize,
    pub keep: Option<&'s (dyn Fn(&Document) -> bool + Sync)>,
}

impl<'s> Scan<'s> {
    /// Up to `limit` documents of `table` in `range` of `index`, ascending.
    pub(crate) fn new(table: &'s str, index: &'s str, range: IndexRange, limit: usize) -> Self {
        Scan {
            table,
            index,
            range,
            order: Order::Asc,
            limit,
            keep: None,
        }
    }

    fn run<'t>(self, query: Query<'t>) -> Result<Vec<Document>>
    where
        's: 't,
    {
        let mut query = query.with_index(self.index, self.range)?.order(self.order);
        if let Some(keep) = self.keep {
            query = query.filter(move |doc| keep(doc));
        }
        query.take(self.limit)
    }
}

/// The database operations the sign-in needs, provided by mutations and by plain
/// transactions alike.
pub(crate) trait Store {
    /// The documents of one index range.
    fn scan(&mut self, scan: Scan<'_>) -> Result<Vec<Document>>;
    /// Insert into `table`.
    fn insert(&mut self, table: &str, value: Object) -> Result<DocumentId>;
    /// Set top-level fields.
    fn patch(&mut self, id: &DocumentId, fields: Object) -> Result<()>;
    /// Replace the user fields.
    fn replace(&mut self, id: &DocumentId, value: Object) -> Result<()>;
    /// Delete a document.
    fn delete(&mut self, id: &DocumentId) -> Result<()>;

    /// The document `id` if it exists *in `table`* (an id of another table, which a client
    /// could send in its place, is not found).
    fn get_in(&mut self, table: &str, id: &DocumentId) -> Result<Option<Document>> {
        let range = IndexRange::new().eq("_id", id.to_string());
        Ok(self.scan(Scan::new(table, "by_id", range, 1))?.pop())
    }
}

impl Store for MutationCtx<'_> {
    fn scan(&mut self, scan: Scan<'_>) -> Result<Vec<Document>> {
        let mut db = self.db();
        let query = db.query(scan.table)?;
        scan.run(query)
    }

    fn insert(&mut self, table: &str, value: Object) -> Result<DocumentId> {
        self.db().insert(table, value)
    }

    fn patch(&mut self, id: &DocumentId, fields: Object) -> Result<()> {
        self.db().patch(id, fields)
    }

    fn replace(&mut self, id: &DocumentId, value: Object) -> Result<()> {
        self.db().replace(id, value)
    }

    fn delete(&mut self, id: &DocumentId) -> Result<()> {
        self.db().delete(id)
    }
}

impl Store for Transaction {
    fn scan(&mut self, scan: Scan<'_>) -> Result<Vec<Document>> {
        let query = self.query(scan.table)?;
        scan.run(query)
    }

    fn insert(&mut self, table: &str, value: Object) -> Result<DocumentId> {
        Transaction::insert(self, table, value)
    }

    fn patch(&mut self, id: &DocumentId, fields: Object) -> Result<()> {
        Transaction::patch(self, id, fields)
    }

    fn replace(&mut self, id: &DocumentId, value: Object) -> Result<()> {
        Transaction::replace(self, id, value)
    }

    fn delete(&mut self, id: &DocumentId) -> Result<()> {
        Transaction::delete(self, id)
    }
}

/// Who is acting and when, for one store operation.
pub(crate) struct StoreCtx<'a> {
    pub core: &'a Core,
    pub identity: &'a Identity,
    /// The operation's time, ms since the epoch (fixed for the whole transaction).
    pub now_ms: f64,
}

impl StoreCtx<'_> {
    /// The caller's session, for callers signed in with one of our own tokens.
    pub(crate) fn caller_session(&self) -> Option<DocumentId> {
        self.identity
            .user()
            .and_then(|user| user.session_id.as_deref())
            .and_then(|session| session.parse().ok())
    }
}

/// Why the store refused (logged; turned into `null` or a 401 by callers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal(pub String);

impl Refusal {
    pub(crate) fn new(reason: impl Into<String>) -> Refusal {
        let reason = reason.into();
        tracing::info!(reason = %reason, "sign-in refused");
        Refusal(reason)
    }
}

/// A refusal or a result.
pub(crate) type Outcome<T> = std::result::Result<T, Refusal>;

/// An access token and its refresh token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tokens {
    pub token: String,
    pub refresh_token: String,
}

impl Tokens {
    /// `{token, refreshToken}`.
    pub(crate) fn to_value(&self) -> Result<Value> {
        Ok(Value::Object(fields([
            ("token", Some(Value::from(self.token.as_str()))),
            (
                "refreshToken",
                Some(Value::from(self.refresh_token.as_str())),
            ),
        ])?))
    }

    /// `{token, refreshToken}` as JSON.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"token": self.token, "refreshToken": self.refresh_token})
    }
}

/// A signed-in session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SignedIn {
    pub user_id: DocumentId,
    pub session_id: DocumentId,
    pub tokens: Option<Tokens>,
}

impl SignedIn {
    /// `{userId, sessionId, tokens}` (tokens `null` when none were generated).
    pub(crate) fn to_value(&self) -> Result<Value> {
        let tokens = match &self.tokens {
            Some(tokens) => tokens.to_value()?,
            None => Value::Null,
        };
        Ok(Value::Object(fields([
            ("userId", Some(self.user_id.into())),
            ("sessionId", Some(self.session_id.into())),
            ("tokens", Some(tokens)),
        ])?))
    }
}

/// What a provider told us about the user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Profile {
    pub email: Option<String>,
    /// Only a provider's explicit `email_verified: true` makes this true.
    pub email_verified: bool,
    pub name: Option<String>,
    pub image: Option<String>,
}

/// Lowercase hex of SHA-256 (how one-time codes and verifier signatures are stored).
pub(crate) fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::BadRequest, message.into())
}

// ---- sessions and tokens ----

/// A new session of `user_id`; returns its id and expiration time.
fn new_session(
    store: &mut impl Store,
    ctx: &StoreCtx<'_>,
    user_id: &DocumentId,
) -> Result<(DocumentId, f64)> {
    let expires = ctx.now_ms + ctx.core.lifetimes.session_total.as_millis() as f64;
    let id = store.insert(
        SESSIONS,
        fields([
            ("userId", Some((*user_id).into())),
            ("expirationTime", Some(Value::Float64(expires))),
        ])?,
    )?;
    Ok((id, expires))
}

/// A signed access token for the session (never outliving the session).
pub(crate) fn access_token(
    ctx: &StoreCtx<'_>,
    user_id: &str,
    session_id: &DocumentId,
    session_expires_ms: f64,
) -> Result<String> {
    let now_secs = (ctx.now_ms / 1000.0) as u64;
    let wanted = now_secs + ctx.core.lifetimes.jwt.as_secs().max(1);
    let session_end = (session_expires_ms / 1000.0) as u64;
    let expires = wanted.min(session_end).max(now_secs + 1);
    ctx.core
        .issuer
        .issue(user_id, &session_id.to_string(), now_secs, expires)
}

/// A new refresh token of the session (a child of `parent` when rotating) and a new access
/// token.
pub(crate) fn issue_tokens(
    store: &mut impl Store,
    ctx: &StoreCtx<'_>,
    user_id: &str,
    session_id: &DocumentId,
    session_expires_ms: f64,
    parent: Option<&DocumentId>,
) -> Result<Tokens> {
    let expires = ctx.now_ms + ctx.core.lifetimes.session_inactive.as_millis() as f64;
    let refresh_id = store.insert(
        REFRESH_TOKENS,
        fields([
            ("sessionId", Some((*session_id).into())),
            ("expirationTime", Some(Value::Float64(expires))),
            ("parentRefreshTokenId", parent.map(|id| (*id).into())),
        ])?,
    )?;
    Ok(Tokens {
        token: access_token(ctx, user_id, session_id, session_expires_ms)?,
        refresh_token: format!("{refresh_id}|{session_id}"),
    })
}

/// Delete session `session_id` (if it exists) and its refresh tokens, and note that it
/// ended. Returns whether the session existed.
pub(crate) fn end_session(
    store: &mut impl Store,
    core: &Core,
    session_id: &DocumentId,
) -> Result<bool> {
    let tokens = store.scan(Scan::new(
        REFRESH_TOKENS,
        crate::signin::tables::REFRESH_TOKENS_BY_SESSION,
        IndexRange::new().eq("sessionId", session_id.to_string()),
        SESSION_TOKENS_MAX_COUNT,
    ))?;
    for token in tokens {
        store.delete(&token.id)?;
    }
    match store.get_in(SESSIONS, session_id)? {
        Some(_) => {
            store.delete(session_id)?;
            core.sessions.note_ended(session_id);
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Sign `user_id` in: a new session (replacing the caller's own, if any) unless
/// `session_id` names an existing one, and tokens if asked for.
pub(crate) fn sign_in(
    store: &mut impl Store,
    ctx: &StoreCtx<'_>,
    user_id: &DocumentId,
    session_id: Option<&DocumentId>,
    generate_tokens: bool,
) -> Result<SignedIn> {
    let (session_id, expires) = match session_id {
        Some(session_id) => {
            let session = store
                .get_in(SESSIONS, session_id)?
                .ok_or_else(|| invalid(format!("Session `{session_id}` does not exist")))?;
            let expires = num_field(&session, "expirationTime").unwrap_or(0.0);
            (*session_id, expires)
        }
        None => {
            if let Some(current) = ctx.caller_session() {
                end_session(store, ctx.core, &current)?;
            }
            new_session(store, ctx, user_id)?
        }
    };
    let tokens = if generate_tokens {
        Some(issue_tokens(
            store,
            ctx,
            &user_id.to_string(),
            &session_id,
            expires,
            None,
        )?)
    } else {
        None
    };
    Ok(SignedIn {
        user_id: *user_id,
        session_id,
        tokens,
    })
}

/// End the caller's session: `(userId, sessionId)` of the ended session, or `None` when the
/// caller has no session of ours.
pub(crate) fn sign_out(
    store: &mut impl Store,
    ctx: &StoreCtx<'_>,
) -> Result<Option<(DocumentId, DocumentId)>> {
    let Some(session_id) = ctx.caller_session() else {
        return Ok(None);
    };
    let Some(session) = store.get_in(SESSIONS, &session_id)? else {
        return Ok(None);
    };
    let user_id = id_field(&session, "userId")
        .ok_or_else(|| Error::internal(format!("session {session_id} has no userId")))?;
    end_session(store, ctx.core, &session_id)?;
    Ok(Some((user_id, session_id)))
}

/// End every session of `user_id` except those in `except`.
pub(crate) fn invalidate_sessions(
    store: &mut impl Store,
    ctx: &StoreCtx<'_>,
    user_id: &DocumentId,
    except: &[DocumentId],
) -> Result<()> {
    let sessions = store.scan(Scan::new(
        SESSIONS,
        SESSIONS_BY_USER,
        IndexRange::new().eq("userId", user_id.to_string()),
        USER_SESSIONS_MAX_COUNT,
    ))?;
    for session in sessions {
        if !except.contains(&session.id) {
            end_session(store, ctx.core, &session.id)?;
        }
    }
    Ok(())
}

// ---- verifiers ----

/// A new verifier for an OAuth sign-in, remembering the caller's session if any.
pub(crate) fn create_verifier(store: &mut impl Store, ctx: &StoreCtx<'_>) -> Result<DocumentId> {
    let session = match ctx.caller_session() {
        Some(session) if store.get_in(SESSIONS, &session)?.is_some() => Some(session),
        Some(_) | None => None,
    };
    store.insert(
        VERIFIERS,
        fields([("sessionId", session.map(Value::from))])?,
    )
}

/// Set the signature of verifier `verifier` (`auth:store {type: "verifierSignature"}`).
pub(crate) fn set_verifier_signature(
    store: &mut impl Store,
    verifier: &str,
    signature: &str,
) -> Result<()> {
    let found = match verifier.parse::<DocumentId>() {
        Ok(id) => store.get_in(VERIFIERS, &id)?,
        Err(_) => None,
    };
    let Some(doc) = found else {
        return Err(invalid("Invalid verifier"));
    };
    store.patch(
        &doc.id,
        fields([("signature", Some(Value::from(signature)))])?,
    )
}

/// Bind verifier `verifier` to a browser's sign-in: set its signature, once. A verifier
/// that does not exist or already started a sign-in is refused.
pub(crate) fn claim_verifier(
    store: &mut impl Store,
    verifier: &str,
    signature: &str,
) -> Result<Outcome<()>> {
    let found = match verifier.parse::<DocumentId>() {
        Ok(id) => store.get_in(VERIFIERS, &id)?,
        Err(_) => None,
    };
    match found {
        None => Ok(Err(Refusal::new(
            "the verifier does not exist (unknown or already used)",
        ))),
        Some(doc) if str_field(&doc, "signature").is_some() => Ok(Err(Refusal::new(
            "the verifier already started a sign-in (a sign-in link is single use)",
        ))),
        Some(doc) => {
            store.patch(
                &doc.id,
                fields([("signature", Some(Value::from(signature)))])?,
            )?;
            Ok(Ok(()))
        }
    }
}

/// The verifier with this signature, if any.
pub(crate) fn verifier_by_signature(
    store: &mut impl Store,
    signature: &str,
) -> Result<Option<Document>> {
    Ok(store
        .scan(Scan::new(
            VERIFIERS,
            VERIFIERS_BY_SIGNATURE,
            IndexRange::new().eq("signature", signature),
            1,
        ))?
        .pop())
}

/// Delete the verifier with this signature (a failed callback consumes it too).
pub(crate) fn delete_verifier_by_signature(
    store: &mut impl Store,
    signature: &str,
) -> Result<bool> {
    match verifier_by_signature(store, signature)? {
        Some(doc) => {
            store.delete(&doc.id)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

// ---- OAuth accounts and one-time codes ----

/// A user who signed in at an OAuth provider.
pub(crate) struct OAuthUser<'a> {
    pub provider: &'a str,
    pub provider_account_id: &'a str,
    pub profile: &'a Profile,
    /// The signature of the verifier of this sign-in.
    pub signature: &'a str,
}

/// Record an OAuth sign-in (`userOAuth`): find or create the account and its user, consume
/// the verifier, and return a new one-time code (8 digits) bound to the verifier.
///
/// Linking: an existing account of this provider wins; otherwise the user is linked to the
/// single existing user with the same *verified* email, but only when the provider said the
/// email is verified; otherwise a new user is created.
pub(crate) fn user_oauth(
    store: &mut impl Store,
    ctx: &StoreCtx<'_>,
    sign_in: &OAuthUser<'_>,
) -> Result<Outcome<String>> {
    let Some(verifier) = verifier_by_signature(store, sign_in.signature)? else {
        return Ok(Err(Refusal::new(
            "Invalid state: no sign-in in progress has this signature (replayed or expired)",
        )));
    };
    let existing_account = store
        .scan(Scan::new(
            ACCOUNTS,
            ACCOUNTS_BY_PROVIDER_AND_ID,
            IndexRange::new()
                .eq("provider", sign_in.provider)
                .eq("providerAccountId", sign_in.provider_account_id),
            1,
        ))?
        .pop();
    let profile = sign_in.profile;
    let verified_email = profile.email.as_deref().filter(|_| profile.email_verified);
    let user_id = match existing_account
        .as_ref()
        .and_then(|acc| id_field(acc, "userId"))
    {
        Some(user_id) => user_id,
        None => match verified_email {
            Some(email) => match single_verified_user(store, email)? {
                Some(user_id) => user_id,
                None => store.insert(USERS, Object::new())?,
            },
            None => store.insert(USERS, Object::new())?,
        },
    };
    update_user(store, ctx, &user_id, profile)?;
    let account_fields = fields([
        ("userId", Some(user_id.into())),
        ("provider", Some(Value::from(sign_in.provider))),
        (
            "providerAccountId",
            Some(Value::from(sign_in.provider_account_id)),
        ),
        ("emailVerified", verified_email.map(Value::from)),
    ])?;
    let account_id = match &existing_account {
        Some(account) => {
            let mut value = account.value.clone();
            for (name, field) in account_fields.into_inner() {
                value.insert(name, field)?;
            }
            if verified_email.is_none() {
                value.remove("emailVerified");
            }
            store.replace(&account.id, value)?;
            account.id
        }
        None => store.insert(ACCOUNTS, account_fields)?,
    };
    store.delete(&verifier.id)?;
    let pending = store.scan(Scan::new(
        VERIFICATION_CODES,
        CODES_BY_ACCOUNT,
        IndexRange::new().eq("accountId", account_id.to_string()),
        16,
    ))?;
    for code in pending {
        store.delete(&code.id)?;
    }
    let code = random_digits(OAUTH_CODE_DIGITS);
    let expires = ctx.now_ms + ctx.core.lifetimes.oauth_code.as_millis() as f64;
    store.insert(
        VERIFICATION_CODES,
        fields([
            ("accountId", Some(account_id.into())),
            ("provider", Some(Value::from(sign_in.provider))),
            ("code", Some(Value::from(sha256_hex(&code)))),
            ("expirationTime", Some(Value::Float64(expires))),
            ("verifier", Some(verifier.id.into())),
            ("emailVerified", verified_email.map(Value::from)),
        ])?,
    )?;
    Ok(Ok(code))
}

/// The one user whose email is `email` and verified, if exactly one exists.
fn single_verified_user(store: &mut impl Store, email: &str) -> Result<Option<DocumentId>> {
    let verified = |doc: &Document| doc.value.contains_key("emailVerificationTime");
    let users = store.scan(Scan {
        keep: Some(&verified),
        ..Scan::new(
            USERS,
            USERS_BY_EMAIL,
            IndexRange::new().eq("email", email),
            2,
        )
    })?;
    Ok(match users.as_slice() {
        [only] => Some(only.id),
        [] | [_, _, ..] => None,
    })
}

/// Copy the provider's profile onto the user. The email counts as verified only when the
/// provider said so; an unverified email never replaces a verified one.
fn update_user(
    store: &mut impl Store,
    ctx: &StoreCtx<'_>,
    user_id: &DocumentId,
    profile: &Profile,
) -> Result<()> {
    let user = store
        .get_in(USERS, user_id)?
        .ok_or_else(|| Error::internal(format!("user {user_id} vanished during sign-in")))?;
    let mut value = user.value.clone();
    if let Some(name) = &profile.name {
        value.insert("name".into(), Value::from(name.as_str()))?;
    }
    if let Some(image) = &profile.image {
        value.insert("image".into(), Value::from(image.as_str()))?;
    }
    if let Some(email) = &profile.email {
        let current = value.get("email").and_then(Value::as_str);
        let current_verified = value.contains_key("emailVerificationTime");
        if profile.email_verified {
            value.insert("email".into(), Value::from(email.as_str()))?;
            value.insert("emailVerificationTime".into(), Value::Float64(ctx.now_ms))?;
        } else if current != Some(email.as_str()) && !current_verified {
            value.insert("email".into(), Value::from(email.as_str()))?;
        }
    }
    if value != user.value {
        store.replace(user_id, value)?;
    }
    Ok(())
}

/// `n` random decimal digits, leading zeros kept.
fn random_digits(n: u32) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

/// The arguments of `verifyCodeAndSignIn`.
pub(crate) struct VerifyCode<'a> {
    /// `params` of `auth:signIn`: `code`, and `email` or `phone` for the rate limit.
    pub params: &'a Object,
    /// The provider the client named, if any.
    pub provider: Option<&'a str>,
    /// The verifier the client kept since it started the sign-in.
    pub verifier: Option<&'a str>,
    pub generate_tokens: bool,
}

/// Finish a sign-in with a one-time code: the code must exist, be bound to `verifier`, be
/// unexpired and belong to a configured provider; it is consumed, and a new session starts.
pub(crate) fn verify_code_and_sign_in(
    store: &mut impl Store,
    ctx: &StoreCtx<'_>,
    args: &VerifyCode<'_>,
) -> Result<Outcome<SignedIn>> {
    let identifier = args
        .params
        .get("email")
        .or_else(|| args.params.get("phone"))
        .and_then(Value::as_str);
    if let Some(identifier) = identifier {
        if is_rate_limited(store, ctx, identifier)? {
            return Ok(Err(Refusal::new(format!(
                "too many failed attempts for `{identifier}`; try again later"
            ))));
        }
    }
    let Some(code) = args.params.get("code").and_then(Value::as_str) else {
        return Ok(Err(Refusal::new("no `params.code` was given")));
    };
    let found = store
        .scan(Scan::new(
            VERIFICATION_CODES,
            CODES_BY_CODE,
            IndexRange::new().eq("code", sha256_hex(code)),
            1,
        ))?
        .pop();
    let Some(doc) = found else {
        if let Some(identifier) = identifier {
            record_failure(store, ctx, identifier)?;
        }
        return Ok(Err(Refusal::new(
            "the code is unknown (mistyped, or already used)",
        )));
    };
    if str_field(&doc, "verifier") != args.verifier {
        return Ok(Err(Refusal::new(
            "the code was issued for another verifier (another browser or tab started this sign-in)",
        )));
    }
    if num_field(&doc, "expirationTime").is_none_or(|expires| expires <= ctx.now_ms) {
        store.delete(&doc.id)?;
        return Ok(Err(Refusal::new("the code has expired")));
    }
    let code_provider = str_field(&doc, "provider").unwrap_or_default().to_owned();
    if args
        .provider
        .is_some_and(|provider| provider != code_provider)
    {
        return Ok(Err(Refusal::new(format!(
            "the code belongs to provider `{code_provider}`, not the one named"
        ))));
    }
    if !ctx.core.providers.contains_key(&code_provider) {
        return Ok(Err(Refusal::new(format!(
            "the code's provider `{code_provider}` is no longer configured"
        ))));
    }
    let account = match id_field(&doc, "accountId") {
        Some(account_id) => store.get_in(ACCOUNTS, &account_id)?,
        None => None,
    };
    store.delete(&doc.id)?;
    let Some(user_id) = account
        .as_ref()
        .and_then(|account| id_field(account, "userId"))
    else {
        return Ok(Err(Refusal::new("the code's account no longer exists")));
    };
    if let Some(identifier) = identifier {
        reset_rate_limit(store, identifier)?;
    }
    Ok(Ok(sign_in(
        store,
        ctx,
        &user_id,
        None,
        args.generate_tokens,
    )?))
}

// ---- rate limits ----

fn rate_limit_row(store: &mut impl Store, identifier: &str) -> Result<Option<Document>> {
    Ok(store
        .scan(Scan::new(
            RATE_LIMITS,
            RATE_LIMITS_BY_IDENTIFIER,
            IndexRange::new().eq("identifier", identifier),
            1,
        ))?
        .pop())
}

/// Attempts left now: the stored count refilled linearly at the hourly rate.
fn attempts_left(row: &Document, now_ms: f64) -> f64 {
    let stored = num_field(row, "attemptsLeft").unwrap_or(0.0);
    let since = (now_ms - num_field(row, "lastAttemptTime").unwrap_or(0.0)).max(0.0);
    (stored + since * MAX_FAILED_ATTEMPTS_PER_HOUR / HOUR_MS).min(MAX_FAILED_ATTEMPTS_PER_HOUR)
}

fn is_rate_limited(store: &mut impl Store, ctx: &StoreCtx<'_>, identifier: &str) -> Result<bool> {
    Ok(rate_limit_row(store, identifier)?.is_some_and(|row| attempts_left(&row, ctx.now_ms) < 1.0))
}

fn record_failure(store: &mut impl Store, ctx: &StoreCtx<'_>, identifier: &str) -> Result<()> {
    match rate_limit_row(store, identifier)? {
        Some(row) => {
            let left = attempts_left(&row, ctx.now_ms) - 1.0;
            store.patch(
                &row.id,
                fields([
                    ("attemptsLeft", Some(Value::Float64(left))),
                    ("lastAttemptTime", Some(Value::Float64(ctx.now_ms))),
                ])?,
            )
        }
        None => {
            store.insert(
                RATE_LIMITS,
                fields([
                    ("identifier", Some(Value::from(identifier))),
                    (
                        "attemptsLeft",
                        Some(Value::Float64(MAX_FAILED_ATTEMPTS_PER_HOUR - 1.0)),
                    ),
                    ("lastAttemptTime", Some(Value::Float64(ctx.now_ms))),
                ])?,
            )?;
            Ok(())
        }
    }
}

fn reset_rate_limit(store: &mut impl Store, identifier: &str) -> Result<()> {
    if let Some(row) = rate_limit_row(store, identifier)? {
        store.delete(&row.id)?;
    }
    Ok(())
}

// ---- refresh ----

/// `(refreshTokenId, sessionId)` of a refresh token `"<refreshTokenId>|<sessionId>"`.
pub(crate) fn parse_refresh_token(token: &str) -> Result<(DocumentId, DocumentId)> {
    let parsed = token.split_once('|').and_then(|(token_id, session_id)| {
        Some((token_id.parse().ok()?, session_id.parse().ok()?))
    });
    parsed.ok_or_else(|| invalid("Can't parse refresh token"))
}

/// Rotate a refresh token (Convex Auth's `refreshSession`, with the reuse window).
///
/// - A valid, unused token is marked used and replaced by a child: new tokens.
/// - A used token presented again within the reuse window (two tabs, or a middleware and
///   the browser, refreshing at once) gets the session's current token if it is that
///   token's child, or another child: new tokens, so both callers stay signed in.
/// - A used token presented after the window is a stolen token being replayed (or a stale
///   copy): the whole session and every refresh token of it are revoked.
/// - An unknown or expired token, or an ended or expired session, ends the session too.
pub(crate) fn refresh_session(
    store: &mut impl Store,
    ctx: &StoreCtx<'_>,
    refresh_token: &str,
) -> Result<Outcome<Tokens>> {
    let (token_id, session_id) = parse_refresh_token(refresh_token)?;
    refresh_inner(store, ctx, &token_id, &session_id)
}

fn refresh_inner(
    store: &mut impl Store,
    ctx: &StoreCtx<'_>,
    token_id: &DocumentId,
    session_id: &DocumentId,
) -> Result<Outcome<Tokens>> {
    let now = ctx.now_ms;
    let token = store.get_in(REFRESH_TOKENS, token_id)?;
    let token_problem = match &token {
        None => Some("the refresh token is unknown"),
        Some(doc) if id_field(doc, "sessionId").as_ref() != Some(session_id) => {
            Some("the refresh token belongs to another session")
        }
        Some(doc) if num_field(doc, "expirationTime").is_none_or(|expires| expires <= now) => {
            Some("the refresh token has expired")
        }
        Some(_) => None,
    };
    let session = store.get_in(SESSIONS, session_id)?;
    let session_problem = match &session {
        None => Some("the session has ended"),
        Some(doc) if num_field(doc, "expirationTime").is_none_or(|expires| expires <= now) => {
            Some("the session has expired")
        }
        Some(_) => None,
    };
    let (Some(token), Some(session), None, None) = (token, session, token_problem, session_problem)
    else {
        let reason = token_problem
            .or(session_problem)
            .unwrap_or("the refresh token is invalid");
        end_session(store, ctx.core, session_id)?;
        return Ok(Err(Refusal::new(format!(
            "{reason}; the session was ended"
        ))));
    };
    let user_id = str_field(&session, "userId").unwrap_or_default().to_owned();
    let session_expires = num_field(&session, "expirationTime").unwrap_or(0.0);
    match num_field(&token, "firstUsedTime") {
        None => {
            store.patch(
                token_id,
                fields([("firstUsedTime", Some(Value::Float64(now)))])?,
            )?;
            Ok(Ok(issue_tokens(
                store,
                ctx,
                &user_id,
                session_id,
                session_expires,
                Some(token_id),
            )?))
        }
        Some(first_used)
            if now < first_used + ctx.core.lifetimes.refresh_reuse_window.as_millis() as f64 =>
        {
            let unused = |doc: &Document| !doc.value.contains_key("firstUsedTime");
            let active = store
                .scan(Scan {
                    order: Order::Desc,
                    keep: Some(&unused),
                    ..Scan::new(
                        REFRESH_TOKENS,
                        REFRESH_TOKENS_BY_SESSION,
                        IndexRange::new().eq("sessionId", session_id.to_string()),
                        1,
                    )
                })?
                .pop();
            match active {
                Some(active)
                    if id_field(&active, "parentRefreshTokenId").as_ref() == Some(token_id) =>
                {
                    Ok(Ok(Tokens {
                        token: access_token(ctx, &user_id, session_id, session_expires)?,
                        refresh_token: format!("{}|{session_id}", active.id),
                    }))
                }
                Some(_) | None => Ok(Ok(issue_tokens(
                    store,
                    ctx,
                    &user_id,
                    session_id,
                    session_expires,
                    Some(token_id),
                )?)),
            }
        }
        Some(_) => {
            end_session(store, ctx.core, session_id)?;
            Ok(Err(Refusal::new(
                "a used refresh token was presented again after its reuse window (replayed or \
                 stolen); the session and all its refresh tokens were revoked",
            )))
        }
    }
}
