//! The HTTP routes of the sign-in, on the site origin (`CONVEX_SITE_URL`).
//!
//! | route | what it does |
//! |---|---|
//! | `GET /.well-known/openid-configuration` | discovery of our own issuer (Convex Auth's three fields, plus the ones strict parsers require) |
//! | `GET /.well-known/jwks.json` | our public key (the `JWKS` value) |
//! | `GET /api/auth/signin/<provider>?code=<verifier>[&redirectTo=]` | starts an OAuth sign-in: PKCE, `state`, `nonce`, cookies, 302 to the provider |
//! | `GET`/`POST /api/auth/callback/<provider>` | finishes it: checks, code exchange, ID token, user, 302 to `SITE_URL?code=<8 digits>` or `?error=<code>` |
//! | `POST /api/auth/signout` | ends the session of a Bearer token (even an expired one) or of a refresh token |
//! | `GET /api/auth/session` | `{authenticated, userId, sessionId, expiresAt}` for a Bearer token, validated in memory |
//! | `POST /api/auth/token` | `{code, verifier}` or `{refreshToken}` → `{token, refreshToken}` |
//!
//! Why the last three exist: Convex Auth 0.0.95 has no way to sign a user out, check a
//! session or exchange a code from server code (a Next.js route handler, a middleware, any
//! backend). These endpoints give server code the same powers as the browser client, with
//! plain HTTP and JSON.
//!
//! Why failures redirect: an OAuth failure (declined consent, a `state` that does not
//! match, a provider error) sends the browser back to the app with `?error=<code>` and logs
//! the cause, instead of Convex Auth's silent redirect without a code that looks like a
//! random sign-out.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use conflux_common::{Error, Identity, Result};
use conflux_http::{
    handler, HttpActionCtx, HttpActionRequest, NamedRoutes, Route, RouteMethod,
    CALLBACK_PATH_PREFIX, SIGN_IN_PATH_PREFIX,
};
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use http::{HeaderValue, Response, StatusCode};
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

use crate::signin::cookies::SignInCookie;
use crate::signin::oauth::{OAuthFailure, ProviderClient};
use crate::signin::store::{self, OAuthUser, VerifyCode};
use crate::signin::{now_ms, redirect, Core};
use crate::validation::SessionChecker;

/// `Cache-Control` of the discovery document and the JWKS (Convex Auth's).
const KEYS_CACHE_CONTROL: &str =
    "public, max-age=15, stale-while-revalidate=15, stale-if-error=86400";

/// The route set of the sign-in.
pub(crate) fn routes(core: &Arc<Core>) -> NamedRoutes {
    let mut routes = vec![
        route(
            core,
            RouteMethod::Get,
            "/.well-known/openid-configuration",
            Kind::Exact,
            |core, _| Box::pin(async move { Ok(discovery(&core)) }),
        ),
        route(
            core,
            RouteMethod::Get,
            "/.well-known/jwks.json",
            Kind::Exact,
            |core, _| Box::pin(async move { Ok(jwks(&core)) }),
        ),
        route(
            core,
            RouteMethod::Post,
            "/api/auth/signout",
            Kind::Exact,
            |core, req| Box::pin(sign_out(core, req)),
        ),
        route(
            core,
            RouteMethod::Get,
            "/api/auth/session",
            Kind::Exact,
            |core, req| Box::pin(session(core, req)),
        ),
        route(
            core,
            RouteMethod::Post,
            "/api/auth/token",
            Kind::Exact,
            |core, req| Box::pin(token(core, req)),
        ),
    ];
    if !core.providers.is_empty() {
        routes.push(route(
            core,
            RouteMethod::Get,
            SIGN_IN_PATH_PREFIX,
            Kind::Prefix,
            |core, req| Box::pin(sign_in(core, req)),
        ));
        for method in [RouteMethod::Get, RouteMethod::Post] {
            routes.push(route(
                core,
                method,
                CALLBACK_PATH_PREFIX,
                Kind::Prefix,
                |core, req| Box::pin(callback(core, req)),
            ));
        }
    }
    NamedRoutes::new("auth", routes)
        .with_sign_in_providers(core.providers.keys().cloned().collect())
}

enum Kind {
    Exact,
    Prefix,
}

type Reply = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<Bytes>>> + Send>>;

fn route(
    core: &Arc<Core>,
    method: RouteMethod,
    path: &str,
    kind: Kind,
    serve: fn(Arc<Core>, HttpActionRequest) -> Reply,
) -> Route {
    let core = core.clone();
    let handler =
        handler(move |req: HttpActionRequest, _ctx: HttpActionCtx| serve(core.clone(), req));
    match kind {
        Kind::Exact => Route::new(method, path, handler),
        Kind::Prefix => Route::path_prefix(method, path, handler),
    }
}

// ---- responses ----

fn response(status: StatusCode, content_type: &str, body: Bytes) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

fn json_response(status: StatusCode, body: &Json) -> Response<Bytes> {
    let mut response = response(status, "application/json", Bytes::from(body.to_string()));
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn text(status: StatusCode, message: &str) -> Response<Bytes> {
    response(
        status,
        "text/plain; charset=utf-8",
        Bytes::from(format!("{message}\n")),
    )
}

fn found(
    location: &str,
    cookies: &[String],
    cache_control: &'static str,
) -> Result<Response<Bytes>> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::FOUND;
    let headers = response.headers_mut();
    headers.insert(
        LOCATION,
        HeaderValue::from_str(location)
            .map_err(|_| Error::internal(format!("cannot redirect to {location:?}")))?,
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache_control));
    for cookie in cookies {
        let value = HeaderValue::from_str(cookie)
            .map_err(|_| Error::internal("a sign-in cookie is not a valid header value"))?;
        headers.append(SET_COOKIE, value);
    }
    Ok(response)
}

/// A refusal of a session endpoint: the specific reason in dev mode, `public` otherwise.
fn refusal(
    core: &Core,
    status: StatusCode,
    code: &str,
    public: &str,
    detail: &str,
    extra: Json,
) -> Response<Bytes> {
    let reason = if core.settings.dev_mode {
        format!("{public}: {detail}")
    } else {
        public.to_owned()
    };
    let mut body = json!({"error": code, "reason": reason});
    if let (Some(body), Json::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    json_response(status, &body)
}

// ---- our issuer ----

fn discovery(core: &Core) -> Response<Bytes> {
    let issuer = core.issuer.issuer();
    let body = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "authorization_endpoint": format!("{issuer}/oauth/authorize"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    let mut response = response(
        StatusCode::OK,
        "application/json",
        Bytes::from(body.to_string()),
    );
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static(KEYS_CACHE_CONTROL));
    response
}

fn jwks(core: &Core) -> Response<Bytes> {
    let mut response = response(
        StatusCode::OK,
        "application/json",
        Bytes::from(core.issuer.jwks_json().to_owned()),
    );
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static(KEYS_CACHE_CONTROL));
    response
}

// ---- OAuth ----

/// The provider named by the path after `prefix`.
fn provider_of<'c>(
    core: &'c Core,
    req: &HttpActionRequest,
    prefix: &str,
) -> Option<&'c ProviderClient> {
    let rest = req.url.path().strip_prefix(prefix)?;
    let id = rest.split('/').next().unwrap_or(rest);
    core.providers.get(id)
}

/// Query parameters (first value of each name).
fn query_params(req: &HttpActionRequest) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for (name, value) in req.url.query_pairs() {
        params
            .entry(name.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    params
}

/// The signature binding a verifier to the three secrets of one browser's sign-in.
fn signature_of(pkce: &str, state: &str, nonce: &str) -> String {
    store::sha256_hex(&format!("{pkce} {state} {nonce}"))
}

fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// `GET /api/auth/signin/<provider>?code=<verifier id>[&redirectTo=...]`.
async fn sign_in(core: Arc<Core>, req: HttpActionRequest) -> Result<Response<Bytes>> {
    let Some(provider) = provider_of(&core, &req, SIGN_IN_PATH_PREFIX) else {
        return Ok(text(StatusCode::NOT_FOUND, "Unknown sign-in provider."));
    };
    let params = query_params(&req);
    let Some(verifier) = params.get("code").cloned() else {
        return Ok(text(
            StatusCode::BAD_REQUEST,
            "This sign-in link has no `code`. Start the sign-in from the app (auth:signIn), \
             which returns the link to follow.",
        ));
    };
    let redirect_to = params.get("redirectTo").cloned();
    let destination = match redirect::resolve(&core.settings.site_url, redirect_to.as_deref()) {
        Ok(destination) => destination,
        Err(why) => {
            tracing::warn!(provider = %provider.id(), "sign-in refused: {why}");
            return Ok(text(StatusCode::BAD_REQUEST, &why));
        }
    };
    let start = match provider.start().await {
        Ok(start) => start,
        Err(failure) => {
            tracing::warn!(provider = %provider.id(), code = failure.code(), "OAuth sign-in could not start: {}", failure.cause());
            let location = redirect::with_param(&destination, "error", failure.code(), &["code"]);
            return redirect_to_location(&location);
        }
    };
    let signature = signature_of(&start.pkce_verifier, &start.state, &start.nonce);
    let claimed = core
        .transact(Identity::Anonymous, move |tx, _ctx| {
            store::claim_verifier(tx, &verifier, &signature)
        })
        .await?;
    if let Err(refused) = claimed {
        tracing::warn!(provider = %provider.id(), "sign-in link refused: {}", refused.0);
        return Ok(text(
            StatusCode::BAD_REQUEST,
            "This sign-in link is invalid or was already used. Start the sign-in again from \
             the app.",
        ));
    }
    let jar = &core.cookies;
    let id = provider.id();
    let mut cookies = vec![
        jar.set(id, SignInCookie::Pkce, &start.pkce_verifier),
        jar.set(id, SignInCookie::State, &start.state),
        jar.set(id, SignInCookie::Nonce, &start.nonce),
    ];
    match &redirect_to {
        Some(redirect_to) => cookies.push(jar.set(id, SignInCookie::RedirectTo, redirect_to)),
        None => cookies.push(jar.clear(id, SignInCookie::RedirectTo)),
    }
    found(start.url.as_str(), &cookies, "no-store")
}

fn redirect_to_location(location: &str) -> Result<Response<Bytes>> {
    found(location, &[], "no-store")
}

/// What the browser brought back to the callback.
struct Returned {
    params: HashMap<String, String>,
    pkce: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
}

impl Returned {
    fn signature(&self) -> Option<String> {
        match (&self.pkce, &self.state, &self.nonce) {
            (Some(pkce), Some(state), Some(nonce)) => Some(signature_of(pkce, state, nonce)),
            _ => None,
        }
    }
}

/// `GET` or `POST /api/auth/callback/<provider>`.
async fn callback(core: Arc<Core>, req: HttpActionRequest) -> Result<Response<Bytes>> {
    let Some(provider) = provider_of(&core, &req, CALLBACK_PATH_PREFIX) else {
        return Ok(text(StatusCode::NOT_FOUND, "Unknown sign-in provider."));
    };
    let id = provider.id().to_owned();
    let mut params = query_params(&req);
    let is_form = req
        .headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.split(';').next().is_some_and(|mime| {
                mime.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if req.method == http::Method::POST && is_form {
        for (name, value) in url::form_urlencoded::parse(&req.body) {
            params
                .entry(name.into_owned())
                .or_insert_with(|| value.into_owned());
        }
    }
    let jar = &core.cookies;
    let returned = Returned {
        params,
        pkce: jar.get(&req.headers, &id, SignInCookie::Pkce),
        state: jar.get(&req.headers, &id, SignInCookie::State),
        nonce: jar.get(&req.headers, &id, SignInCookie::Nonce),
    };
    let clear: Vec<String> = SignInCookie::ALL
        .iter()
        .map(|cookie| jar.clear(&id, *cookie))
        .collect();
    let kept_redirect = jar.get(&req.headers, &id, SignInCookie::RedirectTo);
    let base = redirect::resolve(&core.settings.site_url, None).unwrap_or_default();
    let outcome = match redirect::resolve(&core.settings.site_url, kept_redirect.as_deref()) {
        Ok(destination) => finish(&core, provider, &returned)
            .await
            .map(|code| (destination.clone(), code))
            .map_err(|failure| (destination, failure)),
        Err(why) => Err((base, OAuthFailure::InvalidRedirectTo(why))),
    };
    match outcome {
        Ok((destination, code)) => {
            tracing::info!(provider = %id, "OAuth sign-in completed; handing the one-time code to the app");
            let location = redirect::with_param(&destination, "code", &code, &["error"]);
            found(&location, &clear, "must-revalidate")
        }
        Err((destination, failure)) => {
            tracing::warn!(
                provider = %id,
                code = failure.code(),
                "OAuth sign-in failed; sending the browser back to the app with ?error={}: {}",
                failure.code(),
                failure.cause()
            );
            if let Some(signature) = returned.signature() {
                // The sign-in is over: its verifier must not serve another attempt.
                let consumed = core
                    .transact(Identity::Anonymous, move |tx, _ctx| {
                        store::delete_verifier_by_signature(tx, &signature)
                    })
                    .await;
                if let Err(err) = consumed {
                    tracing::warn!(error = %err, "could not delete the verifier of a failed sign-in");
                }
            }
            let location = redirect::with_param(&destination, "error", failure.code(), &["code"]);
            found(&location, &clear, "must-revalidate")
        }
    }
}

/// Every check of the callback, the code exchange, the ID token, and the user: the
/// one-time code for the app.
async fn finish(
    core: &Arc<Core>,
    provider: &ProviderClient,
    returned: &Returned,
) -> std::result::Result<String, OAuthFailure> {
    let params = &returned.params;
    if let Some(error) = params.get("error") {
        let description = params
            .get("error_description")
            .map(|text| format!(" ({text})"))
            .unwrap_or_default();
        let cause = format!(
            "provider `{}` answered error `{error}`{description}",
            provider.id()
        );
        return Err(if error == "access_denied" {
            OAuthFailure::AccessDenied(cause)
        } else {
            OAuthFailure::ProviderError(cause)
        });
    }
    let (Some(pkce), Some(state_cookie), Some(nonce), Some(signature)) = (
        returned.pkce.as_deref(),
        returned.state.as_deref(),
        returned.nonce.as_deref(),
        returned.signature(),
    ) else {
        return Err(OAuthFailure::StateMismatch(
            "the sign-in cookies are missing: they expired (15 minutes), the browser refused \
             them, or the callback was opened in another browser than the one that started \
             the sign-in"
                .into(),
        ));
    };
    let Some(state) = params.get("state") else {
        return Err(OAuthFailure::StateMismatch(
            "the callback has no `state` parameter".into(),
        ));
    };
    if !same_secret(state, state_cookie) {
        return Err(OAuthFailure::StateMismatch(
            "the callback's `state` is not the one this browser started the sign-in with \
             (a forged or crossed callback)"
                .into(),
        ));
    }
    if let Some(iss) = params.get("iss") {
        let expected = provider.discovered_issuer().await?;
        if iss.trim_end_matches('/') != expected.trim_end_matches('/') {
            return Err(OAuthFailure::IssuerMismatch(format!(
                "the authorization response comes from issuer `{iss}`, not `{expected}`"
            )));
        }
    }
    let Some(code) = params.get("code") else {
        return Err(OAuthFailure::ProviderError(format!(
            "provider `{}` returned neither `code` nor `error`",
            provider.id()
        )));
    };
    let lookup = signature.clone();
    let in_progress = core
        .transact(Identity::Anonymous, move |tx, _ctx| {
            Ok(store::verifier_by_signature(tx, &lookup)?.is_some())
        })
        .await
        .map_err(|err| OAuthFailure::ServerError(err.to_string()))?;
    if !in_progress {
        return Err(OAuthFailure::StateMismatch(
            "no sign-in is in progress for these cookies (it was already completed, or \
             abandoned and cleaned up)"
                .into(),
        ));
    }
    let (subject, profile) = provider.finish(code, pkce, nonce).await?;
    let provider_id = provider.id().to_owned();
    let issued = core
        .transact(Identity::Anonymous, move |tx, ctx| {
            store::user_oauth(
                tx,
                ctx,
                &OAuthUser {
                    provider: &provider_id,
                    provider_account_id: &subject,
                    profile: &profile,
                    signature: &signature,
                },
            )
        })
        .await
        .map_err(|err| OAuthFailure::ServerError(err.to_string()))?;
    issued.map_err(|refused| OAuthFailure::StateMismatch(refused.0))
}

// ---- session endpoints ----

fn bearer(req: &HttpActionRequest) -> Option<&str> {
    let value = req.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn json_body(
    req: &HttpActionRequest,
) -> std::result::Result<serde_json::Map<String, Json>, String> {
    if req.body.is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Json>(&req.body) {
        Ok(Json::Object(object)) => Ok(object),
        Ok(_) => Err("the body must be a JSON object".into()),
        Err(err) => Err(format!("the body is not JSON: {err}")),
    }
}

/// `POST /api/auth/signout`: `Authorization: Bearer <access token>` (expired ones too), or
/// `{"refreshToken": "..."}` → `{"signedOut": true}`.
async fn sign_out(core: Arc<Core>, req: HttpActionRequest) -> Result<Response<Bytes>> {
    let signed_out = || json_response(StatusCode::OK, &json!({"signedOut": true}));
    let not_signed_out = json!({"signedOut": false});
    if let Some(token) = bearer(&req) {
        let now_secs = (now_ms() / 1000.0) as u64;
        let claims = match core.issuer.verify(token, now_secs, true) {
            Ok(claims) => claims,
            Err(why) => {
                return Ok(refusal(
                    &core,
                    StatusCode::UNAUTHORIZED,
                    "InvalidToken",
                    "the token is not an access token of this deployment",
                    &why,
                    not_signed_out,
                ))
            }
        };
        let Ok(session_id) = claims.session_id.parse::<conflux_values::DocumentId>() else {
            return Ok(refusal(
                &core,
                StatusCode::UNAUTHORIZED,
                "InvalidToken",
                "the token is not an access token of this deployment",
                "its session id is malformed",
                not_signed_out,
            ));
        };
        core.transact(Identity::Anonymous, move |tx, ctx| {
            store::end_session(tx, ctx.core, &session_id)
        })
        .await?;
        return Ok(signed_out());
    }
    let body = match json_body(&req) {
        Ok(body) => body,
        Err(why) => {
            return Ok(refusal(
                &core,
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "malformed request",
                &why,
                not_signed_out,
            ))
        }
    };
    let Some(refresh_token) = body.get("refreshToken").and_then(Json::as_str) else {
        return Ok(refusal(
            &core,
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "send `Authorization: Bearer <access token>` or the JSON body {\"refreshToken\": \"...\"}",
            "neither was given",
            not_signed_out,
        ));
    };
    let Ok((token_id, session_id)) = store::parse_refresh_token(refresh_token) else {
        return Ok(refusal(
            &core,
            StatusCode::UNAUTHORIZED,
            "InvalidRefreshToken",
            "the refresh token is not valid",
            "it is not `<refreshTokenId>|<sessionId>`",
            not_signed_out,
        ));
    };
    let ended = core
        .transact(Identity::Anonymous, move |tx, ctx| {
            let token = store::Store::get_in(tx, crate::signin::tables::REFRESH_TOKENS, &token_id)?;
            let belongs = token
                .as_ref()
                .and_then(|doc| crate::signin::tables::id_field(doc, "sessionId"))
                == Some(session_id);
            if belongs {
                store::end_session(tx, ctx.core, &session_id)?;
            }
            Ok(belongs)
        })
        .await?;
    if ended {
        Ok(signed_out())
    } else {
        Ok(refusal(
            &core,
            StatusCode::UNAUTHORIZED,
            "InvalidRefreshToken",
            "the refresh token is not valid",
            "no such refresh token in that session (already signed out?)",
            not_signed_out,
        ))
    }
}

/// `GET /api/auth/session` with `Authorization: Bearer <access token>`.
async fn session(core: Arc<Core>, req: HttpActionRequest) -> Result<Response<Bytes>> {
    let signed_out = |reason: &str| {
        let body = if core.settings.dev_mode {
            json!({"authenticated": false, "reason": reason})
        } else {
            json!({"authenticated": false})
        };
        json_response(StatusCode::OK, &body)
    };
    let Some(token) = bearer(&req) else {
        return Ok(signed_out("no `Authorization: Bearer <token>` header"));
    };
    let validated = match core.validator() {
        Some(validator) => validator.validate(token).await.map(|identity| {
            (
                identity.session_id.clone(),
                identity.subject.clone(),
                identity.expires_at_secs.unwrap_or(0),
            )
        }),
        None => validate_own(&core, token).await,
    };
    match validated {
        Ok((Some(session_id), subject, expires_secs)) => {
            let user_id = subject.split_once('|').map_or(subject.as_str(), |(user, _)| user);
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "authenticated": true,
                    "userId": user_id,
                    "sessionId": session_id,
                    "expiresAt": expires_secs.saturating_mul(1000),
                }),
            ))
        }
        Ok((None, _, _)) => Ok(signed_out(
            "the token is valid but was not issued by this deployment's sign-in (it has no session)",
        )),
        Err(err) => Ok(signed_out(&err.client_message(true))),
    }
}

/// Validate one of our own tokens without a validator: signature, claims, live session.
async fn validate_own(core: &Core, token: &str) -> Result<(Option<String>, String, u64)> {
    let now_secs = (now_ms() / 1000.0) as u64;
    let claims = core.issuer.verify(token, now_secs, false).map_err(|why| {
        Error::new(
            conflux_common::ErrorCode::TokenSignatureInvalid,
            "The token was rejected",
        )
        .with_detail(why)
    })?;
    let active = core
        .sessions
        .checker()
        .is_session_active(&claims.session_id)
        .await
        .map_err(|err| err.context("checking the session"))?;
    if !active {
        return Err(Error::new(
            conflux_common::ErrorCode::SessionEnded,
            "The session has ended",
        )
        .with_detail(format!(
            "session `{}` was signed out or expired",
            claims.session_id
        )));
    }
    Ok((
        Some(claims.session_id.clone()),
        format!("{}|{}", claims.user_id, claims.session_id),
        claims.expires_at_secs,
    ))
}

/// `POST /api/auth/token`: `{code, verifier}` or `{refreshToken}` → `{token, refreshToken}`.
async fn token(core: Arc<Core>, req: HttpActionRequest) -> Result<Response<Bytes>> {
    let body = match json_body(&req) {
        Ok(body) => body,
        Err(why) => {
            return Ok(refusal(
                &core,
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "malformed request",
                &why,
                Json::Null,
            ))
        }
    };
    let code = body.get("code").and_then(Json::as_str).map(str::to_owned);
    let verifier = body
        .get("verifier")
        .and_then(Json::as_str)
        .map(str::to_owned);
    let refresh_token = body
        .get("refreshToken")
        .and_then(Json::as_str)
        .map(str::to_owned);
    match (code, refresh_token) {
        (Some(code), _) => {
            let outcome = core
                .transact(Identity::Anonymous, move |tx, ctx| {
                    let mut params = conflux_values::Object::new();
                    params.insert("code".into(), conflux_values::Value::from(code.as_str()))?;
                    store::verify_code_and_sign_in(
                        tx,
                        ctx,
                        &VerifyCode {
                            params: &params,
                            provider: None,
                            verifier: verifier.as_deref(),
                            generate_tokens: true,
                        },
                    )
                })
                .await?;
            match outcome.map(|signed_in| signed_in.tokens) {
                Ok(Some(tokens)) => Ok(json_response(StatusCode::OK, &tokens.to_json())),
                Ok(None) => Err(Error::internal("a sign-in generated no tokens")),
                Err(refused) => Ok(refusal(
                    &core,
                    StatusCode::UNAUTHORIZED,
                    "InvalidCode",
                    "the code is invalid, expired, already used, or was issued for another verifier",
                    &refused.0,
                    Json::Null,
                )),
            }
        }
        (None, Some(refresh_token)) => {
            if store::parse_refresh_token(&refresh_token).is_err() {
                return Ok(refusal(
                    &core,
                    StatusCode::UNAUTHORIZED,
                    "InvalidRefreshToken",
                    "the refresh token is invalid, expired, or was revoked",
                    "it is not `<refreshTokenId>|<sessionId>`",
                    Json::Null,
                ));
            }
            let outcome = core
                .transact(Identity::Anonymous, move |tx, ctx| {
                    store::refresh_session(tx, ctx, &refresh_token)
                })
                .await?;
            match outcome {
                Ok(tokens) => Ok(json_response(StatusCode::OK, &tokens.to_json())),
                Err(refused) => Ok(refusal(
                    &core,
                    StatusCode::UNAUTHORIZED,
                    "InvalidRefreshToken",
                    "the refresh token is invalid, expired, or was revoked",
                    &refused.0,
                    Json::Null,
                )),
            }
        }
        (None, None) => Ok(refusal(
            &core,
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "send {\"code\": ..., \"verifier\": ...} or {\"refreshToken\": ...}",
            "neither was given",
            Json::Null,
        )),
    }
}
