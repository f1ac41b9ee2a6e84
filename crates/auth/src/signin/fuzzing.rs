//! Entry points for the fuzz targets in `fuzz/`; compiled only in fuzzing builds.
//!
//! Why: the `Cookie` header and the `redirectTo` parameter come straight from the browser,
//! and the parsers that read them are internal to the sign-in. `cargo fuzz` builds every
//! crate with `--cfg fuzzing`, so these thin wrappers exist there and nowhere else.
//!
//! Cookies are named by index, in the order of the sign-in: 0 the PKCE verifier, 1 the
//! `state`, 2 the `nonce`, 3 the `redirectTo` (any other index is taken modulo 4).

use http::HeaderMap;

use super::cookies::{CookieJar, SignInCookie};
use super::redirect;

fn cookie(index: usize) -> SignInCookie {
    SignInCookie::ALL[index % SignInCookie::ALL.len()]
}

/// The `Set-Cookie` value the sign-in route sends for cookie `index` of `provider` on the
/// site `origin`.
pub fn set_cookie(origin: &str, provider: &str, index: usize, value: &str) -> String {
    CookieJar::for_origin(origin).set(provider, cookie(index), value)
}

/// The `Set-Cookie` value the callback sends to delete cookie `index`.
pub fn clear_cookie(origin: &str, provider: &str, index: usize) -> String {
    CookieJar::for_origin(origin).clear(provider, cookie(index))
}

/// What the callback reads as cookie `index` of `provider` from the request's headers.
pub fn cookie_value(
    origin: &str,
    headers: &HeaderMap,
    provider: &str,
    index: usize,
) -> Option<String> {
    CookieJar::for_origin(origin).get(headers, provider, cookie(index))
}

/// Where a sign-in with `redirect_to` ends for the site `site_url`, or why it is refused.
pub fn resolve_redirect(site_url: &str, redirect_to: Option<&str>) -> Result<String, String> {
    redirect::resolve(site_url, redirect_to)
}

/// `url` with query parameter `name` set to `value` and the parameters in `remove` dropped,
/// as the final redirect of a sign-in is built.
pub fn with_param(url: &str, name: &str, value: &str, remove: &[&str]) -> String {
    redirect::with_param(url, name, value, remove)
}
