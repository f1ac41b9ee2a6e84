//! Public key sets (JWKS) and choosing the one key that may verify a token.
//!
//! Why the care: the key set is where most JWT attacks land. A key is bound to one
//! algorithm family by its `kty`/`crv` (an RSA key never verifies an HMAC or ECDSA token),
//! its `use`, `key_ops` and `alg` members must allow verifying with the token's algorithm,
//! and the token's `kid` is only ever an exact-match lookup key. Key material is validated
//! when the set is parsed (RSA modulus size, points on the curve), so a bad key in a JWKS is
//! skipped with a reason instead of failing, or worse panicking, during verification.
//! Symmetric (`oct`) keys are never loaded.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::DecodingKey;
use serde_json::{Map, Value as Json};

use crate::config::SigningAlgorithm;
use crate::validation::token::untrusted;

/// Smallest RSA modulus accepted (RFC 7518 §3.3 requires 2048 bits).
const RSA_MIN_BITS: usize = 2048;
/// Largest RSA modulus accepted (also the limit of the RSA backend).
const RSA_MAX_BITS: usize = 4096;

/// The family of a public key, which decides the one algorithm it can verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// An RSA key: RS256.
    Rsa,
    /// A P-256 key: ES256.
    P256,
    /// An Ed25519 key: EdDSA.
    Ed25519,
}

impl KeyKind {
    fn for_algorithm(alg: SigningAlgorithm) -> KeyKind {
        match alg {
            SigningAlgorithm::RS256 => KeyKind::Rsa,
            SigningAlgorithm::ES256 => KeyKind::P256,
            SigningAlgorithm::EdDSA => KeyKind::Ed25519,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            KeyKind::Rsa => "an RSA key",
            KeyKind::P256 => "a P-256 key",
            KeyKind::Ed25519 => "an Ed25519 key",
        }
    }
}

/// One public key of a JWKS, ready to verify signatures.
#[derive(Clone)]
pub struct VerificationKey {
    kid: Option<String>,
    kind: KeyKind,
    usage: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    decoding: DecodingKey,
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("use", &self.usage)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerificationKey {
    /// The key id, if the JWK has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The key family.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    /// `kid` for messages: `` `k1` `` or `(no kid)`.
    pub(crate) fn label(&self) -> String {
        match &self.kid {
            Some(kid) => format!("`{}`", untrusted(kid)),
            None => "(no kid)".to_owned(),
        }
    }

    /// Why this key may not verify a token signed with `alg`, if it may not.
    fn unfit_for(&self, alg: SigningAlgorithm) -> Option<String> {
        let wanted = KeyKind::for_algorithm(alg);
        if self.kind != wanted {
            return Some(format!(
                "it is {}, which cannot verify {alg}",
                self.kind.describe()
            ));
        }
        if let Some(usage) = &self.usage {
            if usage != "sig" {
                return Some(format!("its `use` is `{}`, not `sig`", untrusted(usage)));
            }
        }
        if let Some(ops) = &self.key_ops {
            if !ops.iter().any(|op| op == "verify") {
                return Some("its `key_ops` do not include `verify`".to_owned());
            }
        }
        if let Some(key_alg) = &self.alg {
            if key_alg != alg.as_str() {
                return Some(format!("its `alg` is `{}`, not {alg}", untrusted(key_alg)));
            }
        }
        None
    }
}

/// Why no key was chosen for a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyLookupError {
    /// No key has the token's `kid`.
    UnknownKid,
    /// Keys with the `kid` exist but none may verify the token's algorithm.
    Unfit { reason: String },
    /// The token has no `kid` and no key of the right type exists.
    NoKeyOfType,
    /// The token has no `kid` and several keys of the right type exist.
    Ambiguous { count: usize },
}

/// A parsed JWKS: the usable keys, plus a note for every key that was skipped.
#[derive(Clone)]
pub struct KeySet {
    keys: Vec<VerificationKey>,
    skipped: Vec<String>,
    source: String,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("source", &self.source)
            .field("kids", &self.kid_list())
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl KeySet {
    /// Parse a JWKS document `{"keys": [...]}`. `source` says where it comes from, as it
    /// reads after "the JWKS" in messages: `` of `https://idp/jwks` `` or `configured inline`.
    /// Unusable keys are skipped with a reason; only a document that is not a JWKS at all is
    /// an error.
    pub fn from_jwks(document: &Json, source: &str) -> Result<KeySet, String> {
        let keys = document
            .get("keys")
            .and_then(Json::as_array)
            .ok_or_else(|| format!("the JWKS {source} is not a JWKS: it needs a `keys` array"))?;
        let mut set = KeySet {
            keys: Vec::new(),
            skipped: Vec::new(),
            source: source.to_owned(),
        };
        for (index, jwk) in keys.iter().enumerate() {
            match parse_jwk(jwk) {
                Ok(key) => set.keys.push(key),
                Err(reason) => {
                    let name = jwk
                        .get("kid")
                        .and_then(Json::as_str)
                        .map(|kid| format!("`{}`", untrusted(kid)))
                        .unwrap_or_else(|| format!("#{index}"));
                    set.skipped.push(format!("key {name} skipped: {reason}"));
                }
            }
        }
        Ok(set)
    }

    /// Where the keys come from, as it reads after "the JWKS" in messages.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The usable keys.
    pub fn keys(&self) -> &[VerificationKey] {
        &self.keys
    }

    /// `k1, k2, (no kid)`, or `none` for an empty set.
    pub fn kid_list(&self) -> String {
        if self.keys.is_empty() {
            return "none".to_owned();
        }
        self.keys
            .iter()
            .map(|key| match &key.kid {
                Some(kid) => untrusted(kid),
                None => "(no kid)".to_owned(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Why keys were skipped, or `no keys` when none were.
    pub fn skipped_summary(&self) -> String {
        if self.skipped.is_empty() {
            "it has no keys".to_owned()
        } else {
            self.skipped.join("; ")
        }
    }

    /// Choose the key for a token with `kid` signed with `alg`: the key with exactly that
    /// `kid`; or, when the token has no `kid` or the set's keys have none, the only key of
    /// the algorithm's type.
    pub(crate) fn select(
        &self,
        kid: Option<&str>,
        alg: SigningAlgorithm,
    ) -> Result<usize, KeyLookupError> {
        match kid {
            Some(kid) => {
                let mut first_reason = None;
                for (index, key) in self.keys.iter().enumerate() {
                    if key.kid.as_deref() != Some(kid) {
                        continue;
                    }
                    match key.unfit_for(alg) {
                        None => return Ok(index),
                        Some(reason) => {
                            first_reason.get_or_insert(reason);
                        }
                    }
                }
                match first_reason {
                    Some(reason) => Err(KeyLookupError::Unfit { reason }),
                    // A set whose keys carry no kid at all (like Convex Auth's) cannot be
                    // matched by kid: fall back to its only key of the right type.
                    None if self.keys.iter().all(|key| key.kid.is_none()) => self
                        .select(None, alg)
                        .map_err(|_| KeyLookupError::UnknownKid),
                    None => Err(KeyLookupError::UnknownKid),
                }
            }
            None => {
                let fitting: Vec<usize> = self
                    .keys
                    .iter()
                    .enumerate()
                    .filter(|(_, key)| key.unfit_for(alg).is_none())
                    .map(|(index, _)| index)
                    .collect();
                match fitting.as_slice() {
                    [only] => Ok(*only),
                    [] => Err(KeyLookupError::NoKeyOfType),
                    several => Err(KeyLookupError::Ambiguous {
                        count: several.len(),
                    }),
                }
            }
        }
    }

    pub(crate) fn key(&self, index: usize) -> Option<&VerificationKey> {
        self.keys.get(index)
    }
}

fn string_member<'a>(jwk: &'a Map<String, Json>, name: &str) -> Result<Option<&'a str>, String> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Json::String(text)) => Ok(Some(text)),
        Some(_) => Err(format!("`{name}` is not a string")),
    }
}

fn required_b64(jwk: &Map<String, Json>, name: &str) -> Result<Vec<u8>, String> {
    let text = string_member(jwk, name)?.ok_or_else(|| format!("`{name}` is missing"))?;
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| format!("`{name}` is not base64url"))
}

fn parse_jwk(jwk: &Json) -> Result<VerificationKey, String> {
    let jwk = jwk.as_object().ok_or("it is not a JSON object")?;
    let kty = string_member(jwk, "kty")?.ok_or("`kty` is missing")?;
    let (kind, decoding) = match kty {
        "RSA" => {
            let n = required_b64(jwk, "n")?;
            let e = required_b64(jwk, "e")?;
            let n = strip_leading_zeros(&n);
            let e = strip_leading_zeros(&e);
            // An empty (or all-zero) modulus has 0 bits, not `0 - 8`.
            let bits = n.len() * 8 - n.first().map_or(0, |b| b.leading_zeros() as usize);
            if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                return Err(format!(
                    "its RSA modulus has {bits} bits; {RSA_MIN_BITS} to {RSA_MAX_BITS} are accepted"
                ));
            }
            let exponent_ok =
                !e.is_empty() && e.len() <= 4 && e.last().is_some_and(|b| b & 1 == 1) && e != [1];
            if !exponent_ok {
                return Err("its RSA exponent is not a small odd number".to_owned());
            }
            (KeyKind::Rsa, DecodingKey::from_rsa_raw_components(n, e))
        }
        "EC" => {
            let crv = string_member(jwk, "crv")?.ok_or("`crv` is missing")?;
            if crv != "P-256" {
                return Err(format!(
                    "curve `{}` is not supported (only P-256)",
                    untrusted(crv)
                ));
            }
            let x = required_b64(jwk, "x")?;
            let y = required_b64(jwk, "y")?;
            if x.len() != 32 || y.len() != 32 {
                return Err("P-256 coordinates must be 32 bytes each".to_owned());
            }
            let mut sec1 = Vec::with_capacity(65);
            sec1.push(0x04);
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            // Rejects points that are not on the curve (invalid-curve attacks).
            p256::PublicKey::from_sec1_bytes(&sec1)
                .map_err(|_| "its point is not on the P-256 curve".to_owned())?;
            (KeyKind::P256, DecodingKey::from_ec_der(&sec1))
        }
        "OKP" => {
            let crv = string_member(jwk, "crv")?.ok_or("`crv` is missing")?;
            if crv != "Ed25519" {
                return Err(format!(
                    "curve `{}` is not supported (only Ed25519)",
                    untrusted(crv)
                ));
            }
            let x = required_b64(jwk, "x")?;
            let bytes: [u8; 32] = x
                .as_slice()
                .try_into()
                .map_err(|_| "an Ed25519 key must be 32 bytes".to_owned())?;
            ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map_err(|_| "it is not a valid Ed25519 point".to_owned())?;
            (KeyKind::Ed25519, DecodingKey::from_ed_der(&bytes))
        }
        "oct" => return Err("symmetric keys are never used to verify tokens".to_owned()),
        other => return Err(format!("key type `{}` is not supported", untrusted(other))),
    };
    let key_ops = match jwk.get("key_ops") {
        None => None,
        Some(Json::Array(ops)) => Some(
            ops.iter()
                .map(|op| {
                    op.as_str()
                        .map(str::to_owned)
                        .ok_or("`key_ops` holds a non-string")
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err("`key_ops` is not an array".to_owned()),
    };
    Ok(VerificationKey {
        kid: string_member(jwk, "kid")?.map(str::to_owned),
        kind,
        usage: string_member(jwk, "use")?.map(str::to_owned),
        key_ops,
        alg: string_member(jwk, "alg")?.map(str::to_owned),
        decoding,
    })
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use conflux_local_oidc::TestKey;
    use serde_json::json;

    fn jwk_with(key: &TestKey, changes: Json) -> Json {
        let mut jwk = key.public_jwk();
        if let (Some(target), Some(changes)) = (jwk.as_object_mut(), changes.as_object()) {
            for (name, value) in changes {
                if value.is_null() {
                    target.remove(name);
                } else {
                    target.insert(name.clone(), value.clone());
                }
            }
        }
        jwk
    }

    #[test]
    fn a_kid_selects_exactly_and_never_by_prefix_or_pattern() -> Result<(), String> {
        let rsa = TestKey::rsa_blocking(0).map_err(|e| e.to_string())?;
        let set = KeySet::from_jwks(
            &json!({"keys": [jwk_with(&rsa, json!({"kid": "k1"}))]}),
            "test",
        )?;
        assert_eq!(set.select(Some("k1"), SigningAlgorithm::RS256), Ok(0));
        for probe in ["k", "k1 ", "K1", "' OR 1=1 --", "../../etc/passwd", "*"] {
            assert_eq!(
                set.select(Some(probe), SigningAlgorithm::RS256),
                Err(KeyLookupError::UnknownKid)
            );
        }
        Ok(())
    }

    #[test]
    fn a_key_only_verifies_its_own_algorithm_and_use() -> Result<(), String> {
        let rsa = TestKey::rsa_blocking(0).map_err(|e| e.to_string())?;
        let ec = TestKey::es256().map_err(|e| e.to_string())?;
        let set = KeySet::from_jwks(
            &json!({"keys": [
                jwk_with(&rsa, json!({"kid": "r"})),
                jwk_with(&ec, json!({"kid": "e", "use": "enc"})),
            ]}),
            "test",
        )?;
        assert!(matches!(
            set.select(Some("r"), SigningAlgorithm::ES256),
            Err(KeyLookupError::Unfit { reason }) if reason.contains("cannot verify ES256")
        ));
        assert!(matches!(
            set.select(Some("e"), SigningAlgorithm::ES256),
            Err(KeyLookupError::Unfit { reason }) if reason.contains("`use` is `enc`")
        ));
        Ok(())
    }

    #[test]
    fn without_a_kid_the_only_key_of_the_right_type_is_used() -> Result<(), String> {
        let rsa = TestKey::rsa_blocking(0).map_err(|e| e.to_string())?;
        let rsa2 = TestKey::rsa_blocking(1).map_err(|e| e.to_string())?;
        let ec = TestKey::es256().map_err(|e| e.to_string())?;
        let one = KeySet::from_jwks(
            &json!({"keys": [rsa.public_jwk_without_kid(), ec.public_jwk()]}),
            "t",
        )?;
        assert_eq!(one.select(None, SigningAlgorithm::RS256), Ok(0));
        assert_eq!(one.select(None, SigningAlgorithm::ES256), Ok(1));
        assert_eq!(
            one.select(None, SigningAlgorithm::EdDSA),
            Err(KeyLookupError::NoKeyOfType)
        );
        let no_kids = KeySet::from_jwks(&json!({"keys": [rsa.public_jwk_without_kid()]}), "t")?;
        assert_eq!(
            no_kids.select(Some("any"), SigningAlgorithm::RS256),
            Ok(0),
            "kid-less sets ignore the kid"
        );
        let two = KeySet::from_jwks(&json!({"keys": [rsa.public_jwk(), rsa2.public_jwk()]}), "t")?;
        assert_eq!(
            two.select(None, SigningAlgorithm::RS256),
            Err(KeyLookupError::Ambiguous { count: 2 })
        );
        Ok(())
    }

    #[test]
    fn an_empty_or_zero_rsa_modulus_is_skipped_not_a_crash() -> Result<(), String> {
        // Found by fuzzing: a JWKS (served by any issuer) whose RSA key had an empty `n`
        // made the bit count underflow.
        let set = KeySet::from_jwks(
            &json!({"keys": [
                {"kty": "RSA", "kid": "empty", "n": "", "e": "AQAB"},
                {"kty": "RSA", "kid": "zeros", "n": "AAAA", "e": "AQAB"},
            ]}),
            "t",
        )?;
        assert!(set.is_empty());
        let summary = set.skipped_summary();
        assert!(
            summary.contains("`empty` skipped: its RSA modulus has 0 bits"),
            "{summary}"
        );
        assert!(
            summary.contains("`zeros` skipped: its RSA modulus has 0 bits"),
            "{summary}"
        );
        Ok(())
    }

    #[test]
    fn bad_key_material_is_skipped_with_a_reason() -> Result<(), String> {
        let ec = TestKey::es256().map_err(|e| e.to_string())?;
        let ed = TestKey::ed25519().map_err(|e| e.to_string())?;
        let short_ed = jwk_with(&ed, json!({"x": "AAAA", "kid": "short"}));
        let off_curve = jwk_with(
            &ec,
            json!({"y": URL_SAFE_NO_PAD.encode([7u8; 32]), "kid": "bad-point"}),
        );
        let weak_rsa = json!({"kty": "RSA", "kid": "weak", "n": URL_SAFE_NO_PAD.encode([0xffu8; 128]), "e": "AQAB"});
        let secret = json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"});
        let set = KeySet::from_jwks(
            &json!({"keys": [short_ed, off_curve, weak_rsa, secret, ed.public_jwk()]}),
            "t",
        )?;
        assert_eq!(
            set.len(),
            1,
            "only the good Ed25519 key is usable: {}",
            set.skipped_summary()
        );
        let summary = set.skipped_summary();
        assert!(
            summary.contains("`short` skipped: an Ed25519 key must be 32 bytes"),
            "{summary}"
        );
        assert!(
            summary.contains("`bad-point` skipped: its point is not on the P-256 curve"),
            "{summary}"
        );
        assert!(
            summary.contains("`weak` skipped: its RSA modulus has 1024 bits"),
            "{summary}"
        );
        assert!(
            summary.contains("`hmac` skipped: symmetric keys are never used"),
            "{summary}"
        );
        Ok(())
    }
}
