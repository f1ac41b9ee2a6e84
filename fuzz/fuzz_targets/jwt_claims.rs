//! Tokens with a valid signature and hostile contents: the fuzzer chooses the header and the
//! payload bytes, the target signs them with one of the fixed keys, so every input gets past
//! the signature check whenever its header routes it to that key, and exercises the claim
//! checks and the identity mapping that only signed tokens reach.
//!
//! Input: the key name (`rsa`, `ed25519` or `p256`) on the first line, the header bytes on
//! the second line, the payload bytes on the rest. (RSA signatures are slow under coverage
//! instrumentation, so RSA inputs that cannot get past the issuer and algorithm checks carry
//! the signature of another token instead: the verdict is the same, and must be a refusal.)
//!
//! Beyond "no panic", for an accepted token (an oracle computed from the payload as signed):
//! - no algorithm or key confusion: the header's `alg` is the signing key's own algorithm,
//!   and `iss` is the one issuer that trusts that key;
//! - the claims are what the validator promised to check: `exp` present and not past the
//!   leeway, `nbf` and `iat` not in the future beyond it, `sub` a non-empty string, the
//!   audience right for the issuer;
//! - the identity's subject and issuer are the claims', verbatim, and for the own issuer
//!   with a session in `sub`, the session is active;
//! - `validate` and `explain` agree, and a rejection is never an internal error.

#![no_main]

use std::sync::LazyLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use conflux_common::ErrorCode;
use conflux_fuzz::jwt::{
    self, KeyName, CUSTOM_AUDIENCE, ENDED_SESSION_PREFIX, NOW_SECS, OWN_ISSUER,
};
use conflux_fuzz::{block_on, first_line, text};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value as Json};

fn number_secs(claims: &Map<String, Json>, name: &str) -> Option<i128> {
    let number = claims.get(name)?.as_number()?;
    number
        .as_i64()
        .map(i128::from)
        .or_else(|| number.as_f64().map(|secs| secs.floor() as i128))
}

fn audiences(claims: &Map<String, Json>) -> Vec<String> {
    match claims.get("aud") {
        Some(Json::String(aud)) => vec![aud.clone()],
        Some(Json::Array(items)) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// A real RS256 signature by the own issuer's key, of another token.
static OTHER_RSA_SIGNATURE: LazyLock<String> = LazyLock::new(|| {
    let token = jwt::keys().get(KeyName::Rsa).sign_raw(b"{}", b"{}");
    token.rsplit('.').next().unwrap_or_default().to_owned()
});

/// Whether a token with this header and payload gets past the checks before the signature
/// for the own issuer (RS256, `iss` the own issuer); only such tokens need a real signature.
fn reaches_own_signature_check(header: &str, payload: &str) -> bool {
    let header: Option<Map<String, Json>> = serde_json::from_str(header).ok();
    let claims: Option<Map<String, Json>> = serde_json::from_str(payload).ok();
    let (Some(header), Some(claims)) = (header, claims) else {
        return false;
    };
    header.get("alg").and_then(Json::as_str) == Some("RS256")
        && claims
            .get("iss")
            .and_then(Json::as_str)
            .is_some_and(|iss| iss.trim_end_matches('/') == OWN_ISSUER)
}

fuzz_target!(|data: &[u8]| {
    let input = text(data);
    let (key_line, rest) = first_line(&input);
    let Some(key) = KeyName::parse(key_line) else {
        return;
    };
    let (header, payload) = first_line(rest);
    let signed = key != KeyName::Rsa || reaches_own_signature_check(header, payload);
    let token = if signed {
        jwt::keys()
            .get(key)
            .sign_raw(header.as_bytes(), payload.as_bytes())
    } else {
        // An RSA signature costs milliseconds here; a token refused before its signature is
        // checked is judged the same with any signature, so it gets a dummy one.
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.as_bytes()),
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            *OTHER_RSA_SIGNATURE
        )
    };

    let validator = jwt::validator();
    let validated = block_on(validator.validate(&token));
    let report = block_on(validator.explain(&token));
    let printed = report.to_string();
    if conflux_fuzz::verbose() {
        eprintln!("{printed}");
    }
    let identity = match (&validated, &report.outcome) {
        (Ok(identity), Ok(explained)) => {
            assert_eq!(identity, explained, "validate and explain disagree");
            identity
        }
        (Err(err), Err(explained)) => {
            assert_eq!(
                err.code(),
                explained.code(),
                "validate and explain disagree"
            );
            assert_ne!(
                err.code(),
                ErrorCode::Internal,
                "a bad token is never internal: {err}"
            );
            return;
        }
        (validated, explained) => {
            panic!("validate says {validated:?} but explain says {explained:?}")
        }
    };

    // Accepted: everything below was checked on the signed bytes.
    assert!(
        signed,
        "a token with another token's signature was accepted"
    );
    let header: Map<String, Json> = serde_json::from_str(header)
        .unwrap_or_else(|err| panic!("accepted a token whose header is not an object: {err}"));
    let claims: Map<String, Json> = serde_json::from_str(payload)
        .unwrap_or_else(|err| panic!("accepted a token whose payload is not an object: {err}"));
    assert_eq!(
        header.get("alg").and_then(Json::as_str),
        Some(key.algorithm()),
        "accepted a header `alg` that is not the signing key's algorithm"
    );
    let iss = claims.get("iss").and_then(Json::as_str).unwrap_or_default();
    assert_eq!(
        iss.trim_end_matches('/'),
        key.issuer(),
        "a key verified a token of an issuer that does not trust it"
    );
    let sub = claims.get("sub").and_then(Json::as_str).unwrap_or_default();
    assert!(!sub.is_empty(), "accepted a token without `sub`");
    assert_eq!(identity.subject, sub);
    assert_eq!(identity.issuer, iss);

    let now = i128::from(NOW_SECS);
    let leeway = i128::from(jwt::leeway().as_secs());
    let exp = number_secs(&claims, "exp").unwrap_or_else(|| panic!("accepted without `exp`"));
    assert!(now - exp <= leeway, "accepted an expired token (exp {exp})");
    if let Some(nbf) = number_secs(&claims, "nbf") {
        assert!(nbf - now <= leeway, "accepted a token before its nbf {nbf}");
    }
    if let Some(iat) = number_secs(&claims, "iat") {
        assert!(
            iat - now <= leeway,
            "accepted a token issued in the future (iat {iat})"
        );
    }

    let audiences = audiences(&claims);
    match key {
        KeyName::Rsa => {
            assert!(
                audiences.iter().any(|aud| aud == "convex"),
                "own token without aud convex"
            );
            let session = sub.split_once('|').map(|(_, session)| session);
            let session = session.unwrap_or_else(|| panic!("own token without a session: {sub}"));
            assert!(
                !session.starts_with(ENDED_SESSION_PREFIX),
                "accepted a token of an ended session"
            );
            assert_eq!(identity.session_id.as_deref(), Some(session));
        }
        KeyName::Ed25519 => {
            assert!(
                audiences.iter().any(|aud| aud == CUSTOM_AUDIENCE),
                "custom token accepted without its audience"
            );
            assert_eq!(identity.session_id, None);
        }
        KeyName::P256 => assert_eq!(identity.session_id, None),
    }
});
