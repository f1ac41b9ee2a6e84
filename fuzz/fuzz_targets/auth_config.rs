//! The auth configuration and the key sets it carries: the JSON of `auth.config`, the `jwks`
//! field of a custom JWT provider (an https URL, a `data:` URL in base64 or percent-encoded,
//! or inline JSON) and the own issuer's JWKS. Key sets also arrive from remote JWKS
//! endpoints, which are not to be trusted either.
//!
//! Beyond "no panic":
//! - a configuration that parses describes exactly its providers;
//! - a JWKS that parses as a key set describes every key it kept and every key it skipped
//!   (the messages `auth check` prints), and an own issuer is never built without a key;
//! - a `data:` URL and the same JWKS given inline give the same keys.

#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use conflux_auth::validation::KeySet;
use conflux_auth::{AuthConfig, JwksSource, OwnIssuer};
use conflux_common::ErrorCode;
use conflux_fuzz::text;
use libfuzzer_sys::fuzz_target;

fn kids(source: &JwksSource) -> Option<String> {
    match source {
        JwksSource::Inline(keys) => Some(keys.kid_list()),
        JwksSource::Url(_) => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let input = text(data);

    match AuthConfig::from_json_str(&input) {
        Ok(config) => {
            assert_eq!(config.describe_providers().len(), config.providers.len());
            assert!(config.own_issuer.is_none());
        }
        Err(err) => assert_eq!(err.code(), ErrorCode::InvalidValue, "{err}"),
    }

    match JwksSource::parse(&input) {
        Ok(JwksSource::Inline(keys)) => {
            let _ = (keys.kid_list(), keys.skipped_summary(), format!("{keys:?}"));
            // The same document given inline and as a base64 data: URL is the same set.
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(input.trim()) {
                let url = format!(
                    "data:application/json;base64,{}",
                    STANDARD.encode(json.to_string())
                );
                let via_url = JwksSource::parse(&url)
                    .unwrap_or_else(|err| panic!("inline JWKS accepted, data: URL not: {err}"));
                assert_eq!(kids(&via_url), Some(keys.kid_list()));
            }
        }
        Ok(JwksSource::Url(url)) => {
            assert!(
                url.scheme() == "https" || url.scheme() == "http",
                "a key URL with scheme {}",
                url.scheme()
            );
        }
        Err(err) => assert_eq!(err.code(), ErrorCode::InvalidValue, "{err}"),
    }

    match OwnIssuer::new("https://site.conflux.test", &input) {
        Ok(own) => assert!(!own.keys().is_empty(), "an own issuer without keys"),
        Err(err) => assert_eq!(err.code(), ErrorCode::InvalidValue, "{err}"),
    }

    if let Ok(json) = serde_json::from_str::<serde_json::Value>(&input) {
        if let Ok(keys) = KeySet::from_jwks(&json, "from the fuzzer") {
            let kept = keys.len();
            let listed = keys.kid_list();
            if kept == 0 {
                assert_eq!(listed, "none");
            } else {
                assert!(
                    listed.split(", ").count() >= kept,
                    "{listed} lists fewer keys than {kept}"
                );
            }
            for key in keys.keys() {
                let _ = (key.kid(), key.kind(), format!("{key:?}"));
            }
        }
    }
});
