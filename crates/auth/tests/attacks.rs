//! The attacks of `security.md` §2, each against a real provider on loopback. Every test
//! fails if the attack succeeds (the token is accepted, or keys are fetched from where the
//! attacker says).

mod common;

use common::*;
use conflux_auth::{AuthConfig, CustomJwtProvider, JwksSource, JwtValidator, SigningAlgorithm};
use conflux_common::ErrorCode;
use conflux_local_oidc::{KidHeader, LocalOidcConfig, LocalOidcProvider, SignOptions, TestKey};
use serde_json::{json, Map, Value as Json};

/// A provider and a validator trusting it, with time pinned at `AT`.
struct Setup {
    provider: LocalOidcProvider,
    validator: JwtValidator,
}

const AT: u64 = 1_800_000_000;

async fn setup() -> Setup {
    let provider = start_provider(LocalOidcConfig::default()).await;
    let validator =
        JwtValidator::builder(AuthConfig::new().with_provider(
            conflux_auth::OidcProvider::new(&provider.issuer(), APP).expect("valid"),
        ))
        .settings(test_settings())
        .clock(fixed_clock(AT))
        .build()
        .expect("builds");
    Setup {
        provider,
        validator,
    }
}

impl Setup {
    fn claims(&self) -> Json {
        claims_at(&self.provider.issuer(), AT)
    }

    fn sign(&self, claims: Json) -> String {
        self.provider.sign_token(claims).expect("signed")
    }

    async fn assert_valid_baseline(&self) {
        let token = self.sign(self.claims());
        self.validator
            .validate(&token)
            .await
            .expect("the untouched token is accepted");
    }
}

#[tokio::test]
async fn alg_none_tokens_are_never_accepted() {
    let s = setup().await;
    let signed = s.sign(s.claims());
    let none_header = json!({"alg": "none", "typ": "JWT"});
    // Unsigned, as RFC 7519 §6 writes them...
    let unsigned = with_header(&signed, &none_header);
    let unsigned = format!(
        "{}.",
        unsigned.rsplit_once('.').map_or("", |(head, _)| head)
    );
    assert_rejected(
        s.validator.validate(&unsigned).await,
        ErrorCode::TokenMalformed,
        "unsigned tokens are never accepted",
    );
    // ...and with some signature left on.
    assert_rejected(
        s.validator
            .validate(&with_header(&signed, &none_header))
            .await,
        ErrorCode::TokenAlgorithmNotAllowed,
        "algorithm none not allowed",
    );
    for variant in ["None", "NONE", "nOnE"] {
        let token = with_header(&signed, &json!({"alg": variant}));
        assert_rejected(
            s.validator.validate(&token).await,
            ErrorCode::TokenAlgorithmNotAllowed,
            &format!("algorithm {variant} not allowed"),
        );
    }
    assert_eq!(
        s.provider.jwks_fetch_count(),
        0,
        "an unacceptable algorithm costs no key fetch"
    );
    s.assert_valid_baseline().await;
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_rejected() {
    let s = setup().await;
    let public_pem = s.provider.signing_key().public_key_pem().to_owned();
    for secret in [
        public_pem.as_bytes().to_vec(),
        s.provider.jwks_json().to_string().into_bytes(),
    ] {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(s.provider.signing_key().kid().to_owned());
        let forged = jsonwebtoken::encode(
            &header,
            &s.claims(),
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .expect("HS256 signs with anything");
        assert_rejected(
            s.validator.validate(&forged).await,
            ErrorCode::TokenAlgorithmNotAllowed,
            "algorithm HS256 not allowed for provider",
        );
    }

    // A custom JWT provider configured for RS256 refuses HS256 the same way.
    let custom = CustomJwtProvider::new(
        "https://custom.example",
        JwksSource::inline(&s.provider.jwks_json(), "configured inline").expect("jwks"),
        SigningAlgorithm::RS256,
    )
    .expect("valid");
    let validator = JwtValidator::new(AuthConfig::new().with_provider(custom)).expect("builds");
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims("https://custom.example"),
        &jsonwebtoken::EncodingKey::from_secret(public_pem.as_bytes()),
    )
    .expect("signed");
    assert_rejected(
        validator.validate(&forged).await,
        ErrorCode::TokenAlgorithmNotAllowed,
        "(allowed: RS256)",
    );
}

#[tokio::test]
async fn kid_injection_strings_are_only_exact_lookup_keys() {
    let s = setup().await;
    s.assert_valid_baseline().await;
    let key = s.provider.signing_key();
    for (kid, shown) in [
        ("../../etc/passwd", "../../etc/passwd"),
        ("' OR 1=1 --", "' OR 1=1 --"),
        ("k1\nINFO forged log line", "k1\\nINFO forged log line"),
        ("$(curl evil.example)", "$(curl evil.example)"),
        ("", ""),
    ] {
        let token = key
            .sign_with(
                &s.claims(),
                &SignOptions {
                    kid: KidHeader::Custom(kid.into()),
                    ..Default::default()
                },
            )
            .expect("signed");
        let err = assert_rejected(
            s.validator.validate(&token).await,
            ErrorCode::TokenUnknownKey,
            &format!("kid `{shown}` not in the JWKS"),
        );
        assert!(
            !err.client_message(true).contains('\n'),
            "control characters are escaped"
        );
    }
}

#[tokio::test]
async fn jku_x5u_and_x5c_headers_never_make_the_validator_fetch_or_trust_other_keys() {
    let s = setup().await;
    // The attacker runs their own provider with their own key and points the headers at it.
    let attacker = start_provider(LocalOidcConfig {
        first_rsa_key: 7,
        ..LocalOidcConfig::default()
    })
    .await;
    let attacker_key = attacker.signing_key();
    let mut headers = Map::new();
    headers.insert("jku".into(), json!(attacker.jwks_uri()));
    headers.insert(
        "x5u".into(),
        json!(format!("{}/cert.pem", attacker.issuer())),
    );
    headers.insert(
        "x5c".into(),
        json!(["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]),
    );
    headers.insert("jwk".into(), attacker_key.public_jwk());
    let options = SignOptions {
        kid: KidHeader::KeyId,
        extra_header: headers.clone(),
    };

    let forged = attacker_key
        .sign_with(&s.claims(), &options)
        .expect("signed");
    assert_rejected(
        s.validator.validate(&forged).await,
        ErrorCode::TokenUnknownKey,
        "not in the JWKS of",
    );

    // The same headers on a token the real provider signed change nothing either.
    let genuine = s
        .provider
        .signing_key()
        .sign_with(&s.claims(), &options)
        .expect("signed");
    s.validator
        .validate(&genuine)
        .await
        .expect("accepted: the key URL headers are ignored");

    assert_eq!(
        attacker.request_count(),
        0,
        "nothing was fetched from the attacker's server"
    );
    attacker.shutdown().await;
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_rejected_outside_the_leeway() {
    let s = setup().await;
    let base = s.claims();
    let cases = [
        (
            json!({"exp": AT - 60}),
            ErrorCode::TokenExpired,
            "token expired 60 s ago",
        ),
        (
            json!({"nbf": AT + 60}),
            ErrorCode::TokenNotYetValid,
            "token is not valid for another 60 s",
        ),
        (
            json!({"iat": AT + 600}),
            ErrorCode::TokenNotYetValid,
            "token was issued 600 s in the future",
        ),
        (
            json!({"exp": null}),
            ErrorCode::TokenMissingClaim,
            "the token has no `exp` claim",
        ),
        (
            json!({"exp": "tomorrow"}),
            ErrorCode::TokenMissingClaim,
            "the `exp` claim must be a NumericDate",
        ),
    ];
    for (changes, code, detail) in cases {
        let token = s.sign(with(base.clone(), changes));
        assert_rejected(s.validator.validate(&token).await, code, detail);
    }
    // Within the 5 s leeway, clock skew is forgiven.
    for changes in [
        json!({"exp": AT - 4}),
        json!({"nbf": AT + 4}),
        json!({"iat": AT + 4}),
    ] {
        let token = s.sign(with(base.clone(), changes.clone()));
        s.validator
            .validate(&token)
            .await
            .unwrap_or_else(|err| panic!("{changes} is within the leeway: {err}"));
    }
}

#[tokio::test]
async fn tokens_for_another_issuer_or_audience_are_rejected() {
    let s = setup().await;
    let token = s.sign(with(s.claims(), json!({"iss": "https://evil.example.com"})));
    assert_rejected(
        s.validator.validate(&token).await,
        ErrorCode::NoAuthProvider,
        &format!(
            "issuer `https://evil.example.com` matches no provider; configured: OIDC(domain={}, app_id=app)",
            s.provider.issuer()
        ),
    );
    let token = s.sign(with(s.claims(), json!({"aud": "other-app"})));
    assert_rejected(
        s.validator.validate(&token).await,
        ErrorCode::TokenAudienceMismatch,
        "audience `other-app` is not `app`",
    );
    let token = s.sign(with(s.claims(), json!({"aud": ["x", "y"]})));
    assert_rejected(
        s.validator.validate(&token).await,
        ErrorCode::TokenAudienceMismatch,
        "audience [`x`, `y`] does not contain `app`",
    );
    let token = s.sign(with(s.claims(), json!({"aud": null})));
    assert_rejected(
        s.validator.validate(&token).await,
        ErrorCode::TokenAudienceMismatch,
        "the token has no `aud` claim",
    );
    let token = s.sign(with(s.claims(), json!({"iss": null})));
    assert_rejected(
        s.validator.validate(&token).await,
        ErrorCode::TokenMissingClaim,
        "the payload has no `iss` claim",
    );
    // Several audiences including ours are fine (OIDC allows it).
    let token = s.sign(with(s.claims(), json!({"aud": ["other", APP]})));
    s.validator.validate(&token).await.expect("accepted");
}

#[tokio::test]
async fn a_tampered_payload_fails_the_signature_check() {
    let s = setup().await;
    let token = s.sign(s.claims());
    let parts: Vec<&str> = token.split('.').collect();
    let promoted = with(s.claims(), json!({"sub": "admin", "role": "admin"}));
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(promoted.to_string().as_bytes()),
        parts[2]
    );
    assert_rejected(
        s.validator.validate(&tampered).await,
        ErrorCode::TokenSignatureInvalid,
        &format!(
            "signature invalid for key `{}` of the JWKS of `{}`",
            s.provider.signing_key().kid(),
            s.provider.jwks_uri()
        ),
    );
    // A signature taken from another valid token does not fit either.
    let other = s.sign(with(s.claims(), json!({"sub": "user-2"})));
    let spliced = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        other.split('.').nth(2).unwrap_or_default()
    );
    assert_rejected(
        s.validator.validate(&spliced).await,
        ErrorCode::TokenSignatureInvalid,
        "signature invalid for key",
    );
}

#[tokio::test]
async fn truncated_oversized_and_garbled_tokens_are_rejected_as_malformed() {
    let s = setup().await;
    let token = s.sign(s.claims());
    let (header, rest) = token.split_once('.').unwrap_or_default();
    let (payload, signature) = rest.split_once('.').unwrap_or_default();

    let cases = vec![
        (format!("{header}.{payload}"), "the token has 2 segments"),
        (header.to_owned(), "the token has 1 segment;"),
        (String::new(), "the token is empty"),
        (
            format!("{header}.{payload}.{signature}.{signature}"),
            "the token has 4 segments",
        ),
        (
            format!("{header}.{}.{signature}", b64(&[0xc3, 0x28, 0xa0, 0xa1])),
            "the payload segment is not UTF-8",
        ),
        (
            format!("{header}.{}.{signature}", b64(b"{\"iss\": oops}")),
            "the payload segment is not JSON",
        ),
        (
            format!("{}.{payload}.{signature}", b64(&[0xff; 8])),
            "the header segment is not UTF-8",
        ),
        (
            format!("{header}.{payload}.{signature}=="),
            "the signature segment is not base64url",
        ),
        (
            format!("{header}.{}.{signature}", "A".repeat(20 * 1024)),
            "the limit is 16384 bytes (AUTH_TOKEN_MAX_BYTES)",
        ),
    ];
    for (bad, detail) in cases {
        assert_rejected(
            s.validator.validate(&bad).await,
            ErrorCode::TokenMalformed,
            detail,
        );
    }
    assert_eq!(
        s.provider.jwks_fetch_count(),
        0,
        "malformed tokens cost no key fetch"
    );
    // A signature cut short is garbage, never a valid signature. (Whether it is still
    // well-formed base64url depends on the random signature's last characters, so it may be
    // refused as malformed or only at the signature check, after a key fetch.)
    let truncated = &token[..token.len() - 12];
    let err = s
        .validator
        .validate(truncated)
        .await
        .expect_err("a truncated token is rejected");
    assert!(
        matches!(
            err.code(),
            ErrorCode::TokenSignatureInvalid | ErrorCode::TokenMalformed
        ),
        "{err}"
    );
}

#[tokio::test]
async fn ecdsa_psychic_signatures_and_keys_of_the_wrong_type_do_not_verify() {
    let ec = TestKey::es256().expect("key");
    let rsa = TestKey::rsa(0).await.expect("key");
    let jwks = json!({"keys": [ec.public_jwk(), rsa.public_jwk()]});
    let custom = CustomJwtProvider::new(
        "https://es.example",
        JwksSource::inline(&jwks, "configured inline").expect("jwks"),
        SigningAlgorithm::ES256,
    )
    .expect("valid");
    let validator = JwtValidator::new(AuthConfig::new().with_provider(custom)).expect("builds");
    let token = ec.sign(&claims("https://es.example")).expect("signed");
    validator
        .validate(&token)
        .await
        .expect("the genuine token is accepted");

    // CVE-2022-21449: r = s = 0.
    let (signed_part, _) = token.rsplit_once('.').unwrap_or_default();
    let psychic = format!("{signed_part}.{}", b64(&[0u8; 64]));
    assert_rejected(
        validator.validate(&psychic).await,
        ErrorCode::TokenSignatureInvalid,
        "signature invalid for key",
    );

    // An ES256 token naming the RSA key's kid: the key's type decides, not the header.
    let confused = ec
        .sign_with(
            &claims("https://es.example"),
            &SignOptions {
                kid: KidHeader::Custom(rsa.kid().into()),
                ..Default::default()
            },
        )
        .expect("signed");
    assert_rejected(
        validator.validate(&confused).await,
        ErrorCode::TokenUnknownKey,
        "cannot verify this ES256 token",
    );
}
