//! The HTTP endpoints of the provider: discovery, JWKS, authorization, token and userinfo.
//!
//! Why it is strict: a sign-in flow tested against a lenient provider passes tests that a
//! real provider would fail. So `/authorize` only accepts registered clients and exact
//! redirect URIs and insists on PKCE S256, and `/token` checks client authentication, the
//! code's single use, its redirect URI and the PKCE verifier, as RFC 6749, RFC 7636 and
//! OpenID Connect Core require. Errors before the redirect URI is trusted are shown as a
//! 400 page (never redirected); errors after it are redirected with `error` and `state`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use rand::RngCore;
use serde_json::{json, Value as JsonValue};
use sha2::{Digest, Sha256};

use crate::keys::{KidHeader, SignOptions};
use crate::provider::{Admission, Endpoint, PendingCode, Shared, TestUser, AUTHORIZATION_CODE_TTL};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/userinfo", get(userinfo))
        .with_state(shared)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the local OpenID provider is switched down",
    )
        .into_response()
}

/// A JSON response carrying the configured `Cache-Control`.
fn cacheable_json(shared: &Shared, body: JsonValue) -> Response {
    let mut response = Json(body).into_response();
    if let Some(max_age) = shared.jwks_max_age {
        if let Ok(value) = HeaderValue::from_str(&format!("public, max-age={}", max_age.as_secs()))
        {
            response.headers_mut().insert(header::CACHE_CONTROL, value);
        }
    }
    response
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    match shared.admit(Endpoint::Discovery).await {
        Admission::Unavailable => return unavailable(),
        Admission::Serve => {}
    }
    let issuer = &shared.issuer;
    let mut algs = vec!["RS256"];
    if shared.keys.read().ec.is_some() {
        algs.push("ES256");
    }
    let document = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["authorization_code"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": ["openid", "email", "profile"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "email", "email_verified", "name", "picture"],
        "authorization_response_iss_parameter_supported": true,
    });
    cacheable_json(&shared, document)
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    match shared.admit(Endpoint::Jwks).await {
        Admission::Unavailable => return unavailable(),
        Admission::Serve => {}
    }
    let body = shared.jwks();
    cacheable_json(&shared, body)
}

/// Collect parameters, refusing any that appears twice (RFC 6749 §3.1).
fn single_valued(pairs: Vec<(String, String)>) -> Result<HashMap<String, String>, String> {
    let mut map = HashMap::new();
    for (name, value) in pairs {
        if map.contains_key(&name) {
            return Err(format!("parameter `{name}` is given more than once"));
        }
        map.insert(name, value);
    }
    Ok(map)
}

fn bad_request_page(reason: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        format!("local OpenID provider: invalid authorization request: {reason}\n"),
    )
        .into_response()
}

fn redirect(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let query = params
        .iter()
        .map(|(name, value)| format!("{name}={}", utf8_percent_encode(value, NON_ALPHANUMERIC)))
        .collect::<Vec<_>>()
        .join("&");
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    let location = format!("{redirect_uri}{separator}{query}");
    match HeaderValue::from_str(&location) {
        Ok(value) => (StatusCode::FOUND, [(header::LOCATION, value)]).into_response(),
        Err(_) => bad_request_page("the redirect URI cannot be used in a Location header"),
    }
}

/// Whether `value` is a PKCE code verifier or S256 challenge: 43 to 128 characters of
/// `[A-Za-z0-9-._~]` (RFC 7636 §4.1).
fn is_pkce_string(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    match shared.admit(Endpoint::Authorize).await {
        Admission::Unavailable => return unavailable(),
        Admission::Serve => {}
    }
    let params = match single_valued(pairs) {
        Ok(params) => params,
        Err(reason) => return bad_request_page(&reason),
    };
    let Some(client_id) = params.get("client_id") else {
        return bad_request_page("`client_id` is missing");
    };
    let Some(client) = shared.client(client_id) else {
        return bad_request_page(&format!("client_id `{client_id}` is not registered"));
    };
    let Some(redirect_uri) = params.get("redirect_uri") else {
        return bad_request_page("`redirect_uri` is missing");
    };
    if !client
        .redirect_uris
        .iter()
        .any(|registered| registered == redirect_uri)
    {
        return bad_request_page(&format!(
            "redirect_uri `{redirect_uri}` is not registered for client `{client_id}` (registered: {})",
            client.redirect_uris.join(", ")
        ));
    }
    // From here on the redirect URI is trusted: errors go back to the client.
    let state = params.get("state").map(String::as_str);
    let fail = |error: &str, description: &str| {
        let mut out = vec![("error", error), ("error_description", description)];
        if let Some(state) = state {
            out.push(("state", state));
        }
        out.push(("iss", shared.issuer.as_str()));
        redirect(redirect_uri, &out)
    };
    if params.get("response_type").map(String::as_str) != Some("code") {
        return fail(
            "unsupported_response_type",
            "only response_type=code is supported",
        );
    }
    let has_openid_scope = params
        .get("scope")
        .is_some_and(|scope| scope.split(' ').any(|item| item == "openid"));
    if !has_openid_scope {
        return fail("invalid_scope", "the scope must include `openid`");
    }
    let Some(challenge) = params.get("code_challenge") else {
        return fail(
            "invalid_request",
            "PKCE is required: send code_challenge (S256)",
        );
    };
    if params.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return fail("invalid_request", "code_challenge_method must be S256");
    }
    if !is_pkce_string(challenge) {
        return fail(
            "invalid_request",
            "code_challenge is not a base64url SHA-256 digest",
        );
    }
    let code = random_token();
    shared.codes.lock().insert(
        code.clone(),
        PendingCode {
            client_id: client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            code_challenge: challenge.clone(),
            nonce: params.get("nonce").cloned(),
            user: shared.user.read().clone(),
            issued_at: Instant::now(),
        },
    );
    let mut out = vec![("code", code.as_str())];
    if let Some(state) = state {
        out.push(("state", state));
    }
    out.push(("iss", shared.issuer.as_str()));
    redirect(redirect_uri, &out)
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"local-oidc\""),
        );
    }
    response
}

fn form_decode(value: &str) -> Option<String> {
    let spaced = value.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|text| text.into_owned())
}

/// `client_secret_basic` credentials (RFC 6749 §2.3.1: form-encoded id and secret).
fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), ()>> {
    let value = headers.get(header::AUTHORIZATION)?;
    let parsed = (|| {
        let text = value.to_str().ok()?;
        let (scheme, encoded) = text.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = STANDARD.decode(encoded.trim()).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        Some((form_decode(id)?, form_decode(secret)?))
    })();
    Some(parsed.ok_or(()))
}

/// Constant-time comparison, so the secret cannot be guessed byte by byte from timings.
fn secrets_equal(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    match shared.admit(Endpoint::Token).await {
        Admission::Unavailable => return unavailable(),
        Admission::Serve => {}
    }
    let params = match single_valued(pairs) {
        Ok(params) => params,
        Err(reason) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &reason),
    };
    let basic = basic_credentials(&headers);
    let posted = params.get("client_secret");
    let (client_id, client_secret) = match (basic, posted) {
        (Some(_), Some(_)) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "use one client authentication method, not both Basic and client_secret",
            )
        }
        (Some(Err(())), None) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "the Authorization header is not valid Basic credentials",
            )
        }
        (Some(Ok((id, secret))), None) => (id, secret),
        (None, Some(secret)) => match params.get("client_id") {
            Some(id) => (id.clone(), secret.clone()),
            None => {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "client_id is missing",
                )
            }
        },
        (None, None) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication is required (client_secret_basic or client_secret_post)",
            )
        }
    };
    let Some(client) = shared.client(&client_id) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "unknown client");
    };
    if !secrets_equal(&client.client_secret, &client_secret) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "wrong client secret",
        );
    }
    if params.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=authorization_code is supported",
        );
    }
    let Some(code) = params.get("code") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "code is missing",
        );
    };
    // Removed before any other check: a code is single-use even when redemption fails.
    let Some(pending) = shared.codes.lock().remove(code) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the code is unknown or was already used",
        );
    };
    if pending.issued_at.elapsed() > AUTHORIZATION_CODE_TTL {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the code has expired",
        );
    }
    if pending.client_id != client_id {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the code was issued to another client",
        );
    }
    if params.get("redirect_uri") != Some(&pending.redirect_uri) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "redirect_uri does not match the one of the authorization request",
        );
    }
    let Some(verifier) = params.get("code_verifier") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "code_verifier is missing (PKCE)",
        );
    };
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if !is_pkce_string(verifier) || !secrets_equal(&computed, &pending.code_challenge) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "code_verifier does not match the code_challenge",
        );
    }

    let now = now_secs();
    let ttl = shared.token_ttl.as_secs();
    let user = pending.user;
    let mut claims = json!({
        "iss": shared.issuer,
        "sub": user.sub,
        "aud": client_id,
        "exp": now + ttl,
        "iat": now,
        "auth_time": now,
        "email": user.email,
        "email_verified": user.email_verified,
        "name": user.name,
    });
    if let Some(object) = claims.as_object_mut() {
        if let Some(picture) = &user.picture {
            object.insert("picture".into(), JsonValue::String(picture.clone()));
        }
        if let Some(nonce) = &pending.nonce {
            object.insert("nonce".into(), JsonValue::String(nonce.clone()));
        }
    }
    let signing_key = shared.keys.read().signing.clone();
    let forged = shared.forged_id_token_key.read().clone();
    let signed = match forged {
        Some(forger) => forger.sign_with(
            &claims,
            &SignOptions {
                kid: KidHeader::Custom(signing_key.kid().to_owned()),
                ..SignOptions::default()
            },
        ),
        None => signing_key.sign(&claims),
    };
    let id_token = match signed {
        Ok(id_token) => id_token,
        Err(err) => {
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                err.message(),
            )
        }
    };
    let access_token = random_token();
    shared
        .access_tokens
        .lock()
        .insert(access_token.clone(), user);
    let mut response = Json(json!({
        "access_token": access_token,
        "id_token": id_token,
        "token_type": "Bearer",
        "expires_in": ttl,
        "scope": "openid email profile",
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

async fn userinfo(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match shared.admit(Endpoint::UserInfo).await {
        Admission::Unavailable => return unavailable(),
        Admission::Serve => {}
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.strip_prefix("Bearer "));
    let user: Option<TestUser> =
        bearer.and_then(|token| shared.access_tokens.lock().get(token).cloned());
    match user {
        Some(user) => Json(json!({
            "sub": user.sub,
            "email": user.email,
            "email_verified": user.email_verified,
            "name": user.name,
            "picture": user.picture,
        }))
        .into_response(),
        None => {
            let mut response =
                (StatusCode::UNAUTHORIZED, "invalid or missing access token").into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            response
        }
    }
}
