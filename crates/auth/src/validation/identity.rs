//! From verified claims to the identity functions see (`ctx.auth.getUserIdentity()`).
//!
//! Why it is spelled out: apps written for Convex read `identity.pictureUrl` for an OIDC
//! provider but `identity.picture` for a custom JWT, and `identity["org.id"]` for a nested
//! custom claim. The mapping below follows the protocol spec §9.1 exactly so those apps
//! work unchanged:
//!
//! - OIDC providers (and our own tokens): standard claims are renamed (`picture` →
//!   `pictureUrl`, `locale` → `language`, `updated_at` → `updatedAt` as RFC 3339, ...), the
//!   protocol claims (`aud`, `exp`, `nonce`, ...) and `jti`, `nbf`, `fva` are dropped, every
//!   other claim is copied verbatim.
//! - Custom JWT providers: every private claim is copied under its own name with nested
//!   objects flattened to dotted keys (`org.id`); the registered claims and `fva` are dropped.

use conflux_common::UserIdentity;
use serde_json::{Map, Value as Json};

/// Deepest object nesting flattened into dotted keys; deeper values are kept whole.
const MAX_FLATTEN_DEPTH: usize = 16;

/// Which mapping a provider's claims get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClaimStyle {
    /// OpenID Connect standard claims, renamed.
    Oidc,
    /// Private claims flattened, nothing renamed.
    CustomJwt,
}

/// Claims that are part of the token protocol, not of the identity (OIDC).
const OIDC_DROPPED: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "at_hash",
    "c_hash",
    "middle_name",
    "fva",
];

/// Registered JWT claims (RFC 7519 §4.1) and `fva`, dropped for custom JWTs.
const CUSTOM_DROPPED: &[&str] = &["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "fva"];

/// OIDC standard claims and the names they are exposed under.
const OIDC_RENAMES: &[(&str, &str)] = &[
    ("name", "name"),
    ("given_name", "givenName"),
    ("family_name", "familyName"),
    ("nickname", "nickname"),
    ("preferred_username", "preferredUsername"),
    ("profile", "profileUrl"),
    ("picture", "pictureUrl"),
    ("website", "websiteUrl"),
    ("email", "email"),
    ("gender", "gender"),
    ("birthdate", "birthday"),
    ("zoneinfo", "timezone"),
    ("locale", "language"),
    ("phone_number", "phoneNumber"),
];

/// Build the identity of a verified token. `session_id` is set for our own tokens.
pub(crate) fn map_identity(
    claims: &Map<String, Json>,
    issuer: &str,
    subject: &str,
    expires_at_secs: u64,
    style: ClaimStyle,
    session_id: Option<String>,
) -> UserIdentity {
    let attributes = match style {
        ClaimStyle::Oidc => oidc_attributes(claims),
        ClaimStyle::CustomJwt => custom_attributes(claims),
    };
    UserIdentity {
        token_identifier: format!("{issuer}|{subject}"),
        subject: subject.to_owned(),
        issuer: issuer.to_owned(),
        attributes,
        expires_at_secs: Some(expires_at_secs),
        session_id,
    }
}

fn oidc_attributes(claims: &Map<String, Json>) -> Map<String, Json> {
    let mut out = Map::new();
    for (name, value) in claims {
        let name = name.as_str();
        if OIDC_DROPPED.contains(&name) {
            continue;
        }
        if let Some((_, exposed)) = OIDC_RENAMES.iter().find(|(claim, _)| *claim == name) {
            out.insert((*exposed).to_owned(), value.clone());
            continue;
        }
        match name {
            "email_verified" => insert_bool(&mut out, "emailVerified", value),
            "phone_number_verified" => insert_bool(&mut out, "phoneNumberVerified", value),
            "address" => {
                let formatted = match value {
                    Json::Object(address) => address.get("formatted").cloned(),
                    Json::String(_) => Some(value.clone()),
                    Json::Null | Json::Bool(_) | Json::Number(_) | Json::Array(_) => None,
                };
                if let Some(formatted) = formatted {
                    out.insert("address".to_owned(), formatted);
                }
            }
            "updated_at" => {
                let text = match value {
                    Json::Number(number) => number.as_i64().map(rfc3339),
                    Json::String(text) => Some(text.clone()),
                    Json::Null | Json::Bool(_) | Json::Array(_) | Json::Object(_) => None,
                };
                if let Some(text) = text {
                    out.insert("updatedAt".to_owned(), Json::String(text));
                }
            }
            _ => {
                out.insert(name.to_owned(), value.clone());
            }
        }
    }
    out
}

/// Booleans stay booleans; `"true"`/`"false"` strings (some providers send them) become
/// booleans; anything else is dropped.
fn insert_bool(out: &mut Map<String, Json>, name: &str, value: &Json) {
    let flag = match value {
        Json::Bool(flag) => Some(*flag),
        Json::String(text) if text.eq_ignore_ascii_case("true") => Some(true),
        Json::String(text) if text.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    };
    if let Some(flag) = flag {
        out.insert(name.to_owned(), Json::Bool(flag));
    }
}

fn custom_attributes(claims: &Map<String, Json>) -> Map<String, Json> {
    let mut out = Map::new();
    for (name, value) in claims {
        if CUSTOM_DROPPED.contains(&name.as_str()) {
            continue;
        }
        flatten_into(&mut out, name.clone(), value, 0);
    }
    out
}

fn flatten_into(out: &mut Map<String, Json>, key: String, value: &Json, depth: usize) {
    match value {
        Json::Object(fields) if depth < MAX_FLATTEN_DEPTH => {
            for (name, inner) in fields {
                flatten_into(out, format!("{key}.{name}"), inner, depth + 1);
            }
        }
        _ => {
            out.insert(key, value.clone());
        }
    }
}

/// Seconds since the epoch as RFC 3339 in UTC (`2024-01-31T12:00:00+00:00`).
pub(crate) fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let time = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}+00:00",
        time / 3600,
        (time % 3600) / 60,
        time % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Json) -> Map<String, Json> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn oidc_standard_claims_get_their_convex_names() {
        let identity = map_identity(
            &claims(json!({
                "iss": "https://idp", "sub": "u1", "aud": "app", "exp": 10, "iat": 1, "nonce": "n",
                "jti": "j", "nbf": 1, "fva": [1], "azp": "app",
                "name": "Ada", "given_name": "Ada", "family_name": "Lovelace",
                "picture": "https://p", "profile": "https://prof", "website": "https://w",
                "email": "ada@example.com", "email_verified": "true", "locale": "en-GB",
                "zoneinfo": "Europe/London", "birthdate": "1815-12-10",
                "phone_number": "+44", "phone_number_verified": false,
                "address": {"formatted": "12 St James's Square"},
                "updated_at": 1_700_000_000, "org": {"id": "o1"}, "roles": ["admin"],
            })),
            "https://idp",
            "u1",
            10,
            ClaimStyle::Oidc,
            None,
        );
        assert_eq!(identity.token_identifier, "https://idp|u1");
        assert_eq!(identity.expires_at_secs, Some(10));
        assert_eq!(
            identity.to_json(),
            json!({
                "tokenIdentifier": "https://idp|u1", "subject": "u1", "issuer": "https://idp",
                "name": "Ada", "givenName": "Ada", "familyName": "Lovelace",
                "pictureUrl": "https://p", "profileUrl": "https://prof", "websiteUrl": "https://w",
                "email": "ada@example.com", "emailVerified": true, "language": "en-GB",
                "timezone": "Europe/London", "birthday": "1815-12-10",
                "phoneNumber": "+44", "phoneNumberVerified": false,
                "address": "12 St James's Square", "updatedAt": "2023-11-14T22:13:20+00:00",
                "org": {"id": "o1"}, "roles": ["admin"],
            })
        );
    }

    #[test]
    fn custom_jwt_private_claims_are_flattened_and_not_renamed() {
        let identity = map_identity(
            &claims(json!({
                "iss": "https://issuer", "sub": "u1", "aud": "app", "exp": 10, "iat": 1, "nbf": 1, "jti": "j",
                "fva": [1], "email": "a@b.c", "picture": "https://p",
                "org": {"id": "o1", "team": {"name": "core"}}, "roles": ["admin"],
            })),
            "https://issuer",
            "u1",
            10,
            ClaimStyle::CustomJwt,
            None,
        );
        assert_eq!(
            identity.to_json(),
            json!({
                "tokenIdentifier": "https://issuer|u1", "subject": "u1", "issuer": "https://issuer",
                "email": "a@b.c", "picture": "https://p",
                "org.id": "o1", "org.team.name": "core", "roles": ["admin"],
            })
        );
    }

    #[test]
    fn rfc3339_dates_are_right_around_leap_years() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00+00:00");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59+00:00");
    }
}
