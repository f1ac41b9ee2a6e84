//! Taking a compact JWT apart before anything trusts it.
//!
//! Why by hand: the validator must say precisely what is wrong with a broken token (two
//! segments? a payload that is not UTF-8? a header that is not JSON?) and must read the
//! header's `alg` as a plain string so that `none` or `HS256` are reported as "algorithm not
//! allowed" rather than as a parse failure. Nothing here is trusted: the parsed header and
//! claims are only used to route the token to a provider and to pick a key; the signature is
//! verified over the exact bytes received.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use conflux_common::Result;
use serde_json::{Map, Value as Json};

use crate::validation::errors;

/// Longest untrusted text (a `kid`, an issuer) quoted in an error message.
const MAX_QUOTED_CHARS: usize = 100;

/// Quote text that came from a token or a remote document for an error message or a log
/// line: control characters and backticks are escaped and long text is cut, so a hostile
/// `kid` cannot forge log lines or flood them.
pub fn untrusted(text: &str) -> String {
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == MAX_QUOTED_CHARS {
            out.push('…');
            break;
        }
        match c {
            '`' => out.push_str("\\`"),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// A compact JWT split into its parts, header and claims decoded but not verified.
#[derive(Clone, Debug)]
pub(crate) struct ParsedToken<'a> {
    /// `base64url(header) "." base64url(payload)`: the bytes the signature covers.
    pub signing_input: &'a str,
    /// The signature segment, still base64url.
    pub signature: &'a str,
    /// The decoded protected header.
    pub header: Map<String, Json>,
    /// The decoded claims.
    pub claims: Map<String, Json>,
}

impl<'a> ParsedToken<'a> {
    /// Split and decode `token`, refusing anything that is not three base64url segments of
    /// which the first two are JSON objects.
    pub fn parse(token: &'a str, max_bytes: usize) -> Result<ParsedToken<'a>> {
        if token.len() > max_bytes {
            return Err(errors::malformed(format!(
                "the token is {} bytes; the limit is {max_bytes} bytes (AUTH_TOKEN_MAX_BYTES)",
                token.len()
            )));
        }
        if token.is_empty() {
            return Err(errors::malformed("the token is empty"));
        }
        let segments: Vec<&str> = token.split('.').collect();
        let [header_b64, payload_b64, signature] = segments.as_slice() else {
            return Err(errors::malformed(format!(
                "the token has {} segment{}; a JWT has three base64url parts separated by dots (header.payload.signature)",
                segments.len(),
                if segments.len() == 1 { "" } else { "s" }
            )));
        };
        let header = decode_object(header_b64, "header")?;
        if header.contains_key("crit") {
            // RFC 7515 §4.1.11: extensions listed as critical must be understood; none are.
            return Err(errors::malformed(
                "the header lists critical extensions (`crit`), which are not supported",
            ));
        }
        let claims = decode_object(payload_b64, "payload")?;
        if signature.is_empty() {
            return Err(errors::malformed(
                "the signature segment is empty; unsigned tokens are never accepted",
            ));
        }
        decode_segment(signature, "signature")?;
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        Ok(ParsedToken {
            signing_input,
            signature,
            header,
            claims,
        })
    }

    /// The header's `alg`, verbatim.
    pub fn alg(&self) -> Result<&str> {
        match self.header.get("alg") {
            Some(Json::String(alg)) => Ok(alg),
            Some(_) => Err(errors::malformed("the header's `alg` is not a string")),
            None => Err(errors::malformed("the header has no `alg`")),
        }
    }

    /// The header's `kid`, if any.
    pub fn kid(&self) -> Result<Option<&str>> {
        match self.header.get("kid") {
            None => Ok(None),
            Some(Json::String(kid)) => Ok(Some(kid)),
            Some(_) => Err(errors::malformed("the header's `kid` is not a string")),
        }
    }

    /// A string claim, `None` when absent; an error when present with another type.
    pub fn string_claim(&self, name: &str) -> Result<Option<&str>> {
        match self.claims.get(name) {
            None => Ok(None),
            Some(Json::String(value)) => Ok(Some(value)),
            Some(_) => Err(errors::missing_claim(format!(
                "the `{name}` claim is not a string"
            ))),
        }
    }

    /// The `aud` claim as a list (a string is a one-element list). `Err` carries a reason
    /// when `aud` has another type.
    pub fn audiences(&self) -> std::result::Result<Vec<&str>, String> {
        match self.claims.get("aud") {
            None => Ok(Vec::new()),
            Some(Json::String(aud)) => Ok(vec![aud.as_str()]),
            Some(Json::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .ok_or_else(|| "`aud` holds a value that is not a string".to_owned())
                })
                .collect(),
            Some(_) => Err("`aud` is neither a string nor an array of strings".to_owned()),
        }
    }

    /// A NumericDate claim (`exp`, `nbf`, `iat`) in whole seconds, `None` when absent.
    pub fn time_claim(&self, name: &str) -> Result<Option<i64>> {
        match self.claims.get(name) {
            None => Ok(None),
            Some(Json::Number(number)) => {
                if let Some(secs) = number.as_i64() {
                    return Ok(Some(secs));
                }
                match number.as_f64() {
                    // Fractional NumericDates are allowed (RFC 7519 §2); whole seconds suffice.
                    Some(secs) if secs.is_finite() && secs.abs() < 1e15 => {
                        Ok(Some(secs.floor() as i64))
                    }
                    _ => Err(errors::missing_claim(format!(
                        "the `{name}` claim {number} is not a usable NumericDate"
                    ))),
                }
            }
            Some(other) => Err(errors::missing_claim(format!(
                "the `{name}` claim must be a NumericDate (seconds since 1970), got {}",
                untrusted(&other.to_string())
            ))),
        }
    }
}

fn decode_segment(segment: &str, part: &str) -> Result<Vec<u8>> {
    // JWS uses unpadded base64url (RFC 7515 §2); padding or the standard alphabet is refused.
    URL_SAFE_NO_PAD.decode(segment).map_err(|_| {
        errors::malformed(format!(
            "the {part} segment is not base64url (RFC 7515: URL-safe alphabet, no padding)"
        ))
    })
}

fn decode_object(segment: &str, part: &str) -> Result<Map<String, Json>> {
    let bytes = decode_segment(segment, part)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| errors::malformed(format!("the {part} segment is not UTF-8")))?;
    let value: Json = serde_json::from_str(&text)
        .map_err(|err| errors::malformed(format!("the {part} segment is not JSON ({err})")))?;
    match value {
        Json::Object(object) => Ok(object),
        other => Err(errors::malformed(format!(
            "the {part} segment is JSON but not an object (got {})",
            json_kind(&other)
        ))),
    }
}

fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conflux_common::ErrorCode;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn detail_of(result: Result<ParsedToken<'_>>) -> String {
        match result {
            Ok(parsed) => panic!("expected a malformed token, parsed {parsed:?}"),
            Err(err) => {
                assert_eq!(err.code(), ErrorCode::TokenMalformed);
                err.detail().unwrap_or_default().to_owned()
            }
        }
    }

    #[test]
    fn each_kind_of_broken_token_is_named() {
        let header = b64(br#"{"alg":"RS256"}"#);
        let payload = b64(br#"{"sub":"u"}"#);
        let cases = [
            (format!("{header}.{payload}"), "has 2 segments"),
            (format!("{header}.{payload}.c2ln.x"), "has 4 segments"),
            (
                format!("{header}.{}.c2ln", b64(&[0xff, 0xfe, 0x80])),
                "payload segment is not UTF-8",
            ),
            (
                format!("{header}.{}.c2ln", b64(b"not json")),
                "payload segment is not JSON",
            ),
            (
                format!("{header}.{}.c2ln", b64(b"[1,2]")),
                "not an object (got an array)",
            ),
            (
                format!("{header}.{payload}=.c2ln"),
                "payload segment is not base64url",
            ),
            (format!("{header}.{payload}."), "signature segment is empty"),
            (
                format!("{}.{payload}.c2ln", b64(b"{\"alg\":")),
                "header segment is not JSON",
            ),
            (
                format!(
                    "{}.{payload}.c2ln",
                    b64(br#"{"alg":"RS256","crit":["exp"]}"#)
                ),
                "critical extensions",
            ),
        ];
        for (token, expected) in cases {
            let detail = detail_of(ParsedToken::parse(&token, 16 * 1024));
            assert!(
                detail.contains(expected),
                "{token}: {detail:?} lacks {expected:?}"
            );
        }
        let huge = format!("{header}.{}.c2ln", "A".repeat(20_000));
        assert!(
            detail_of(ParsedToken::parse(&huge, 16 * 1024)).contains("the limit is 16384 bytes")
        );
    }

    #[test]
    fn untrusted_text_cannot_forge_log_lines() {
        assert_eq!(untrusted("k1\nFAKE LOG LINE"), "k1\\nFAKE LOG LINE");
        assert_eq!(untrusted("a`b"), "a\\`b");
        assert_eq!(
            untrusted(&"x".repeat(500)).chars().count(),
            MAX_QUOTED_CHARS + 1
        );
    }
}
