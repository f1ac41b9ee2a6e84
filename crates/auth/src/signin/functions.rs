//! The functions the official clients call by name: `auth:signIn`, `auth:signOut`,
//! `auth:isAuthenticated`, and the internal mutation `auth:store`.
//!
//! Why the shapes are exact: `@convex-dev/auth` 0.0.95 hard-codes these paths and reads
//! these results (`{redirect, verifier}`, `{tokens}` with `tokens` possibly `null`,
//! `"Could not find public function"` for a missing `auth:isAuthenticated`). Omitted fields
//! are absent, never `null`.
//!
//! The actions do their writes through `auth:store` (so app code that calls `auth:store`
//! itself runs the same rules), then announce the sessions those writes ended.

use std::sync::{Arc, Weak};

use conflux_common::{Error, ErrorCode, Result};
use conflux_functions::registry::Handler;
use conflux_functions::{v, ActionCtx, MutationCtx, Registry, Visibility};
use conflux_values::{DocumentId, Object, Value};

use crate::signin::store::{self, OAuthUser, Profile, StoreCtx, VerifyCode};
use crate::signin::tables::fields;
use crate::signin::{redirect, Core};

/// The path of the internal mutation.
pub(crate) const STORE: &str = "auth:store";

fn gone() -> Error {
    Error::new(
        ErrorCode::Internal,
        "The built-in sign-in was shut down with its server",
    )
}

fn upgrade(core: &Weak<Core>) -> Result<Arc<Core>> {
    core.upgrade().ok_or_else(gone)
}

/// The four functions of the sign-in. Handlers hold the core weakly: the core holds the
/// database, and the runner (which owns these handlers) must not keep itself alive.
pub(crate) fn registry(core: &Arc<Core>) -> Result<Registry> {
    let mut registry = Registry::new();
    let weak = Arc::downgrade(core);
    registry.register(
        "auth:signIn",
        Visibility::Public,
        v::object([
            ("provider", v::optional(v::string())),
            ("params", v::optional(v::any())),
            ("verifier", v::optional(v::string())),
            ("refreshToken", v::optional(v::string())),
            ("calledBy", v::optional(v::string())),
        ]),
        action_handler(weak.clone(), sign_in_action),
    )?;
    registry.register(
        "auth:signOut",
        Visibility::Public,
        v::no_args(),
        action_handler(weak.clone(), sign_out_action),
    )?;
    registry.query("auth:isAuthenticated", v::no_args(), |ctx, _args| {
        Ok(Value::Boolean(ctx.auth().user().is_some()))
    })?;
    let store_core = weak;
    registry.register(
        STORE,
        Visibility::Internal,
        v::object([("args", v::any())]),
        Handler::Mutation(Arc::new(move |ctx: &mut MutationCtx<'_>, args: Object| {
            let core = upgrade(&store_core)?;
            store_mutation(&core, ctx, args)
        })),
    )?;
    Ok(registry)
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;
type ActionFn = fn(Arc<Core>, ActionCtx, Object) -> BoxFuture<Result<Value>>;

fn action_handler(core: Weak<Core>, action: ActionFn) -> Handler {
    Handler::Action(Arc::new(move |ctx: ActionCtx, args: Object| {
        let core = core.upgrade();
        Box::pin(async move {
            let core = core.ok_or_else(gone)?;
            action(core, ctx, args).await
        })
    }))
}

fn string_arg<'a>(args: &'a Object, name: &str) -> Option<&'a str> {
    args.get(name).and_then(Value::as_str)
}

/// Run `auth:store` with `{args: operation}` as the caller, then announce ended sessions.
async fn run_store(core: &Core, ctx: &ActionCtx, operation: Object) -> Result<Value> {
    let result = ctx
        .run_mutation(STORE, fields([("args", Some(Value::Object(operation)))])?)
        .await;
    core.settle().await;
    result
}

/// `auth:signIn` (convex-auth.md §2.1, rows 0 to 3, 7 and 8).
fn sign_in_action(core: Arc<Core>, ctx: ActionCtx, args: Object) -> BoxFuture<Result<Value>> {
    Box::pin(async move {
        let provider = string_arg(&args, "provider").map(str::to_owned);
        let params = match args.get("params") {
            None | Some(Value::Null) => Object::new(),
            Some(Value::Object(params)) => params.clone(),
            Some(other) => {
                return Err(Error::bad_request(format!(
                    "`params` must be an object, not {}",
                    other.type_name()
                )))
            }
        };
        if let Some(called_by) = string_arg(&args, "calledBy") {
            tracing::debug!(called_by, "auth:signIn");
        }
        if let Some(provider) = &provider {
            if !core.providers.contains_key(provider) {
                let available: Vec<&str> = core.providers.keys().map(String::as_str).collect();
                return Err(Error::bad_request(format!(
                    "Provider `{provider}` is not configured, available providers are {}.",
                    if available.is_empty() {
                        "none (configure one, e.g. AUTH_GOOGLE_ID and AUTH_GOOGLE_SECRET)"
                            .to_owned()
                    } else {
                        available.join(", ")
                    }
                )));
            }
        }
        let has_code = params.get("code").is_some();
        match (&provider, string_arg(&args, "refreshToken"), has_code) {
            (None, Some(refresh_token), _) => {
                let result = run_store(
                    &core,
                    &ctx,
                    fields([
                        ("type", Some(Value::from("refreshSession"))),
                        ("refreshToken", Some(Value::from(refresh_token))),
                    ])?,
                )
                .await?;
                Ok(tokens_result(result))
            }
            (_, _, true) => {
                let result = run_store(
                    &core,
                    &ctx,
                    fields([
                        ("type", Some(Value::from("verifyCodeAndSignIn"))),
                        ("params", Some(Value::Object(params.clone()))),
                        ("verifier", string_arg(&args, "verifier").map(Value::from)),
                        ("provider", provider.as_deref().map(Value::from)),
                        ("generateTokens", Some(Value::Boolean(true))),
                    ])?,
                )
                .await?;
                let tokens = match result {
                    Value::Object(signed_in) => {
                        signed_in.get("tokens").cloned().unwrap_or(Value::Null)
                    }
                    _ => Value::Null,
                };
                Ok(tokens_result(tokens))
            }
            (None, None, false) => Err(Error::bad_request(
                "Cannot sign in: Missing `provider`, `params.code` or `refreshToken`",
            )),
            (Some(provider), _, false) => {
                let redirect_to = match params.get("redirectTo") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(text)) => Some(text.clone()),
                    Some(_) => {
                        return Err(Error::bad_request("Expected `redirectTo` to be a string"))
                    }
                };
                if let Some(redirect_to) = &redirect_to {
                    redirect::resolve(&core.settings.site_url, Some(redirect_to))
                        .map_err(Error::bad_request)?;
                }
                let verifier = run_store(
                    &core,
                    &ctx,
                    fields([("type", Some(Value::from("verifier")))])?,
                )
                .await?;
                let verifier = verifier
                    .as_str()
                    .ok_or_else(|| Error::internal("auth:store verifier returned no id"))?
                    .to_owned();
                let mut url = url::Url::parse(&format!(
                    "{}{}{provider}",
                    core.settings.auth_origin,
                    conflux_http::SIGN_IN_PATH_PREFIX
                ))
                .map_err(|err| Error::internal(format!("the sign-in URL is invalid: {err}")))?;
                {
                    let mut query = url.query_pairs_mut();
                    query.append_pair("code", &verifier);
                    if let Some(redirect_to) = &redirect_to {
                        query.append_pair("redirectTo", redirect_to);
                    }
                }
                Ok(Value::Object(fields([
                    ("redirect", Some(Value::from(url.to_string()))),
                    ("verifier", Some(Value::from(verifier))),
                ])?))
            }
        }
    })
}

/// `{tokens: <tokens or null>}`.
fn tokens_result(tokens: Value) -> Value {
    let mut object = Object::new();
    // "tokens" is a valid field name.
    let _ = object.insert("tokens".to_owned(), tokens);
    Value::Object(object)
}

/// `auth:signOut`: end the caller's session; returns `null`.
fn sign_out_action(core: Arc<Core>, ctx: ActionCtx, _args: Object) -> BoxFuture<Result<Value>> {
    Box::pin(async move {
        run_store(
            &core,
            &ctx,
            fields([("type", Some(Value::from("signOut")))])?,
        )
        .await?;
        Ok(Value::Null)
    })
}

fn bool_arg(args: &Object, name: &str) -> bool {
    args.get(name).and_then(Value::as_bool).unwrap_or(false)
}

fn required_str<'a>(args: &'a Object, operation: &str, name: &str) -> Result<&'a str> {
    string_arg(args, name).ok_or_else(|| {
        Error::bad_request(format!("auth:store `{operation}` needs a string `{name}`"))
    })
}

fn required_id(args: &Object, operation: &str, name: &str) -> Result<DocumentId> {
    required_str(args, operation, name)?
        .parse()
        .map_err(|_| Error::bad_request(format!("auth:store `{operation}`: `{name}` is not an id")))
}

/// `auth:store {args: {type, ...}}` (convex-auth.md §2.4).
fn store_mutation(core: &Core, ctx: &mut MutationCtx<'_>, args: Object) -> Result<Value> {
    let Some(Value::Object(operation)) = args.get("args").cloned() else {
        return Err(Error::bad_request(
            "auth:store takes `{args: {type: ..., ...}}`",
        ));
    };
    let kind = required_str(&operation, "store", "type")?.to_owned();
    let identity = ctx.auth().clone();
    let now_ms = ctx.now_ms();
    let store_ctx = StoreCtx {
        core,
        identity: &identity,
        now_ms,
    };
    match kind.as_str() {
        "signIn" => {
            let user_id = required_id(&operation, "signIn", "userId")?;
            let session_id = match string_arg(&operation, "sessionId") {
                Some(text) => Some(text.parse::<DocumentId>().map_err(|_| {
                    Error::bad_request("auth:store `signIn`: `sessionId` is not an id")
                })?),
                None => None,
            };
            let signed_in = store::sign_in(
                ctx,
                &store_ctx,
                &user_id,
                session_id.as_ref(),
                bool_arg(&operation, "generateTokens"),
            )?;
            signed_in.to_value()
        }
        "signOut" => match store::sign_out(ctx, &store_ctx)? {
            Some((user_id, session_id)) => Ok(Value::Object(fields([
                ("userId", Some(user_id.into())),
                ("sessionId", Some(session_id.into())),
            ])?)),
            None => Ok(Value::Null),
        },
        "refreshSession" => {
            let token = required_str(&operation, "refreshSession", "refreshToken")?;
            match store::refresh_session(ctx, &store_ctx, token)? {
                Ok(tokens) => tokens.to_value(),
                Err(_) => Ok(Value::Null),
            }
        }
        "verifyCodeAndSignIn" => {
            let params = match operation.get("params") {
                Some(Value::Object(params)) => params.clone(),
                _ => Object::new(),
            };
            let verify = VerifyCode {
                params: &params,
                provider: string_arg(&operation, "provider"),
                verifier: string_arg(&operation, "verifier"),
                generate_tokens: bool_arg(&operation, "generateTokens"),
            };
            match store::verify_code_and_sign_in(ctx, &store_ctx, &verify)? {
                Ok(signed_in) => signed_in.to_value(),
                Err(_) => Ok(Value::Null),
            }
        }
        "verifier" => Ok(store::create_verifier(ctx, &store_ctx)?.into()),
        "verifierSignature" => {
            let verifier = required_str(&operation, "verifierSignature", "verifier")?;
            let signature = required_str(&operation, "verifierSignature", "signature")?;
            store::set_verifier_signature(ctx, verifier, signature)?;
            Ok(Value::Null)
        }
        "userOAuth" => {
            let provider = required_str(&operation, "userOAuth", "provider")?;
            let account_id = required_str(&operation, "userOAuth", "providerAccountId")?;
            let signature = required_str(&operation, "userOAuth", "signature")?;
            let profile = match operation.get("profile") {
                Some(Value::Object(profile)) => profile_of(profile),
                _ => Profile::default(),
            };
            let user = OAuthUser {
                provider,
                provider_account_id: account_id,
                profile: &profile,
                signature,
            };
            match store::user_oauth(ctx, &store_ctx, &user)? {
                Ok(code) => Ok(Value::from(code)),
                Err(refusal) => Err(Error::bad_request(refusal.0)),
            }
        }
        "invalidateSessions" => {
            let user_id = required_id(&operation, "invalidateSessions", "userId")?;
            let except = match operation.get("except") {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(|text| text.parse().ok())
                    .collect(),
                _ => Vec::new(),
            };
            store::invalidate_sessions(ctx, &store_ctx, &user_id, &except)?;
            Ok(Value::Null)
        }
        "createVerificationCode"
        | "createAccountFromCredentials"
        | "retrieveAccountWithCredentials"
        | "modifyAccount" => Err(Error::bad_request(format!(
            "auth:store `{kind}` belongs to email, phone and password providers, which the \
             built-in sign-in does not offer (it signs in with OpenID Connect providers)"
        ))),
        other => Err(Error::bad_request(format!(
            "auth:store has no operation `{other}`; the operations are signIn, signOut, \
             refreshSession, verifyCodeAndSignIn, verifier, verifierSignature, userOAuth and \
             invalidateSessions"
        ))),
    }
}

/// A profile given to `userOAuth` by app code: `{email?, emailVerified?, name?, image?}`.
/// The email links accounts only with `emailVerified: true`.
fn profile_of(profile: &Object) -> Profile {
    let text = |name: &str| profile.get(name).and_then(Value::as_str).map(str::to_owned);
    Profile {
        email: text("email"),
        email_verified: profile.get("emailVerified").and_then(Value::as_bool) == Some(true),
        name: text("name"),
        image: text("image"),
    }
}
