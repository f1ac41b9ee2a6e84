//! The short-lived cookies that bind an OAuth sign-in to the browser that started it.
//!
//! Why cookies: the PKCE verifier, the `state` and the `nonce` must come back with the
//! callback from the browser that started the sign-in, and from no other. They are set by
//! the sign-in route on the site origin and read by the callback on the same origin.
//!
//! Names and attributes are Convex Auth's (`__Host-<provider>OAuthpkce`, ...,
//! `HttpOnly; Secure; SameSite=None; Path=/; Partitioned`, 15 minutes) so that anything
//! inspecting them sees the familiar shape. `SameSite=None` lets providers that post their
//! callback as a form (Apple) send them back. Unlike Convex Auth, the callback clears them.
//! The `__Host-` prefix is left off when the site is `localhost` or `127.0.0.1` (or plain
//! `http://`), where browsers would refuse a `__Host-` cookie.

use http::HeaderMap;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use url::Url;

/// Lifetime of the sign-in cookies, in seconds.
pub(crate) const SIGN_IN_COOKIE_MAX_AGE_SECS: u64 = 900;

/// Characters escaped in cookie values: everything but what `encodeURIComponent` keeps.
const COOKIE_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Which sign-in cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SignInCookie {
    /// The PKCE code verifier.
    Pkce,
    /// The `state`.
    State,
    /// The `nonce`.
    Nonce,
    /// The `redirectTo` of the sign-in.
    RedirectTo,
}

impl SignInCookie {
    pub(crate) const ALL: [SignInCookie; 4] = [
        SignInCookie::Pkce,
        SignInCookie::State,
        SignInCookie::Nonce,
        SignInCookie::RedirectTo,
    ];

    fn suffix(self) -> &'static str {
        match self {
            SignInCookie::Pkce => "OAuthpkce",
            SignInCookie::State => "OAuthstate",
            SignInCookie::Nonce => "OAuthnonce",
            SignInCookie::RedirectTo => "RedirectTo",
        }
    }
}

/// The cookie names and attributes of one site origin.
#[derive(Clone, Debug)]
pub(crate) struct CookieJar {
    prefix: &'static str,
}

impl CookieJar {
    /// Cookies set on `origin` (where the sign-in and callback routes are served).
    pub(crate) fn for_origin(origin: &str) -> CookieJar {
        let local = Url::parse(origin).is_ok_and(|url| {
            url.scheme() == "http"
                || matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
        });
        CookieJar {
            prefix: if local { "" } else { "__Host-" },
        }
    }

    /// The cookie's name for `provider`, e.g. `__Host-googleOAuthpkce`.
    pub(crate) fn name(&self, provider: &str, cookie: SignInCookie) -> String {
        format!("{}{provider}{}", self.prefix, cookie.suffix())
    }

    /// A `Set-Cookie` value setting `cookie` to `value` for 15 minutes.
    pub(crate) fn set(&self, provider: &str, cookie: SignInCookie, value: &str) -> String {
        format!(
            "{}={}; Max-Age={SIGN_IN_COOKIE_MAX_AGE_SECS}; Path=/; HttpOnly; Secure; SameSite=None; Partitioned",
            self.name(provider, cookie),
            utf8_percent_encode(value, COOKIE_VALUE)
        )
    }

    /// A `Set-Cookie` value deleting `cookie`.
    pub(crate) fn clear(&self, provider: &str, cookie: SignInCookie) -> String {
        format!(
            "{}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; HttpOnly; Secure; SameSite=None; Partitioned",
            self.name(provider, cookie)
        )
    }

    /// The value of `cookie` in the request's `Cookie` headers, if present and not empty.
    pub(crate) fn get(
        &self,
        headers: &HeaderMap,
        provider: &str,
        cookie: SignInCookie,
    ) -> Option<String> {
        let name = self.name(provider, cookie);
        // Split the raw bytes: browsers send UTF-8 in other cookies' values, which would
        // make the whole header unreadable as ASCII and hide the sign-in cookies in it.
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .flat_map(|value| value.as_bytes().split(|byte| *byte == b';'))
            .filter_map(|pair| std::str::from_utf8(pair).ok())
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| *key == name)
            .and_then(|(_, value)| {
                percent_decode_str(value.trim().trim_matches('"'))
                    .decode_utf8()
                    .ok()
                    .map(|text| text.into_owned())
            })
            .filter(|value| !value.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn host_prefix_only_on_secure_public_origins() {
        let public = CookieJar::for_origin("https://api.example.com");
        assert_eq!(
            public.name("google", SignInCookie::Pkce),
            "__Host-googleOAuthpkce"
        );
        for local in [
            "http://127.0.0.1:3211",
            "https://localhost:3211",
            "http://example.com",
        ] {
            assert_eq!(
                CookieJar::for_origin(local).name("google", SignInCookie::State),
                "googleOAuthstate",
                "{local}"
            );
        }
    }

    #[test]
    fn values_round_trip_through_set_cookie_and_cookie_headers() {
        let jar = CookieJar::for_origin("https://api.example.com");
        let set = jar.set("google", SignInCookie::RedirectTo, "/path?a=1&b=two words");
        assert!(set.contains("HttpOnly; Secure; SameSite=None; Partitioned"));
        let pair = set.split(';').next().unwrap_or_default().to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {pair}"))
                .unwrap_or(HeaderValue::from_static("")),
        );
        assert_eq!(
            jar.get(&headers, "google", SignInCookie::RedirectTo)
                .as_deref(),
            Some("/path?a=1&b=two words")
        );
        assert_eq!(jar.get(&headers, "github", SignInCookie::RedirectTo), None);
    }

    #[test]
    fn a_sign_in_cookie_is_read_beside_cookies_holding_utf8() {
        // Found by fuzzing: one cookie of the site with a UTF-8 value (browsers send them
        // as they are) made the whole Cookie header unreadable, and the callback then saw
        // no state and failed the sign-in. A value that is not even UTF-8 is skipped alone.
        let jar = CookieJar::for_origin("https://api.example.com");
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            HeaderValue::from_bytes(b"theme=caf\xc3\xa9; __Host-googleOAuthstate=abc; raw=\xff")
                .unwrap_or(HeaderValue::from_static("")),
        );
        assert_eq!(
            jar.get(&headers, "google", SignInCookie::State).as_deref(),
            Some("abc")
        );
    }
}
