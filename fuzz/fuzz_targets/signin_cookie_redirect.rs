//! What the built-in sign-in reads from the browser: its cookies (the PKCE verifier, the
//! `state`, the `nonce` and the `redirectTo`, read back from the `Cookie` header by the OAuth
//! callback) and the `redirectTo` parameter that decides where the browser, carrying the
//! one-time code, is sent at the end.
//!
//! Input, two modes chosen by the first line:
//!
//! - `cookie`, then a provider id, a cookie value, and the rest of a `Cookie` header (other
//!   cookies, possibly hostile). Oracle: the `Set-Cookie` the sign-in sends is a valid header
//!   value, and the callback reads back exactly the value that was set, wherever the cookie
//!   sits among the others and on either kind of site (`__Host-` prefix or not). Whatever the
//!   header holds, a value read is never empty.
//! - `redirect`, then `SITE_URL`, then `redirectTo` (no third line: no `redirectTo`).
//!   Oracle: an accepted destination never leaves the site (same scheme, host and port as
//!   `SITE_URL`) and holds no control character; adding the one-time code (or an error)
//!   keeps it on the site, with exactly one `code` (or `error`) and none of the other, and
//!   gives a valid `Location` header value.

#![no_main]

use conflux_auth::signin::fuzzing::{
    clear_cookie, cookie_value, resolve_redirect, set_cookie, with_param,
};
use conflux_fuzz::{first_line, text};
use http::header::{HeaderMap, HeaderValue, COOKIE};
use libfuzzer_sys::fuzz_target;
use url::Url;

const ORIGINS: [&str; 2] = ["https://site.example.com", "http://127.0.0.1:3211"];

/// Provider ids as a configuration names them.
fn plausible_provider(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn cookie_mode(input: &str) {
    let (provider, rest) = first_line(input);
    let (value, others) = first_line(rest);
    for origin in ORIGINS {
        for index in 0..4 {
            let set = set_cookie(origin, provider, index, value);
            let clear = clear_cookie(origin, provider, index);
            if !plausible_provider(provider) {
                continue;
            }
            assert!(
                HeaderValue::from_str(&set).is_ok(),
                "Set-Cookie is not a valid header value: {set:?}"
            );
            assert!(HeaderValue::from_str(&clear).is_ok());
            let pair = set.split(';').next().unwrap_or_default().trim();

            // The cookie first, then the others; and alone in a second Cookie header after
            // the others (browsers may send several).
            for header in [format!("{pair}; {others}"), pair.to_owned()] {
                let Ok(header) = HeaderValue::from_str(&header) else {
                    continue;
                };
                let mut headers = HeaderMap::new();
                headers.append(COOKIE, header);
                if let Ok(others) = HeaderValue::from_str(others) {
                    headers.append(COOKIE, others);
                }
                let read = cookie_value(origin, &headers, provider, index);
                let expected = (!value.is_empty()).then(|| value.to_owned());
                assert_eq!(read, expected, "cookie {index} of {provider} on {origin}");
            }
        }
        // Hostile headers alone: never a panic, never an empty value.
        if let Ok(header) = HeaderValue::from_str(others) {
            let mut headers = HeaderMap::new();
            headers.append(COOKIE, header);
            for index in 0..4 {
                if let Some(read) = cookie_value(origin, &headers, provider, index) {
                    assert!(!read.is_empty());
                }
            }
        }
    }
}

fn authority(url: &Url) -> (String, Option<String>, Option<u16>) {
    (
        url.scheme().to_owned(),
        url.host_str().map(str::to_owned),
        url.port_or_known_default(),
    )
}

fn check_param(url: &str, name: &str, value: &str, other: &str, site: &Url) {
    let out = with_param(url, name, value, &[other]);
    let Ok(parsed) = Url::parse(&out) else {
        return;
    };
    assert_eq!(
        authority(&parsed),
        authority(site),
        "adding `{name}` moved {url:?} off the site: {out:?}"
    );
    let values: Vec<String> = parsed
        .query_pairs()
        .filter(|(key, _)| key == name)
        .map(|(_, v)| v.into_owned())
        .collect();
    assert_eq!(values, vec![value.to_owned()], "`{name}` in {out:?}");
    assert!(
        !parsed.query_pairs().any(|(key, _)| key == other),
        "`{other}` survived in {out:?}"
    );
}

fn redirect_mode(input: &str) {
    let (site_url, rest) = first_line(input);
    if site_url.chars().any(char::is_control) {
        // SITE_URL is configuration, not input; the oracles are about `redirectTo`.
        return;
    }
    let redirect_to = if rest.is_empty() {
        None
    } else {
        Some(first_line(rest).0)
    };
    let Ok(destination) = resolve_redirect(site_url, redirect_to) else {
        return;
    };
    if redirect_to.is_some() {
        // The final redirect puts the destination, with the code or the error, into a
        // `Location` header; one that cannot be a header value fails the sign-in with a 500.
        assert!(
            !destination.chars().any(char::is_control),
            "a control character in the destination {destination:?}"
        );
        for (name, value, other) in [
            ("code", "12345678", "error"),
            ("error", "OAuthAccessDenied", "code"),
        ] {
            let location = with_param(&destination, name, value, &[other]);
            assert!(
                HeaderValue::from_str(&location).is_ok(),
                "the Location {location:?} is not a valid header value"
            );
        }
    }
    // The property is about well-formed sites (a SITE_URL already in its canonical URL
    // form, with a host), as a deployment configures them; the fuzzer varies `redirectTo`.
    let Ok(site) = Url::parse(site_url) else {
        return;
    };
    let canonical = site.as_str().trim_end_matches('/') == site_url.trim_end_matches('/');
    if !canonical || site.host_str().is_none() || !site.is_special() {
        return;
    }
    let Ok(parsed) = Url::parse(&destination) else {
        panic!("the destination {destination:?} for the site {site_url:?} is not a URL");
    };
    assert_eq!(
        authority(&parsed),
        authority(&site),
        "redirectTo {redirect_to:?} sends the browser off the site {site_url:?}: {destination:?}"
    );
    check_param(&destination, "code", "12345678", "error", &site);
    check_param(&destination, "error", "OAuthAccessDenied", "code", &site);
}

fuzz_target!(|data: &[u8]| {
    let input = text(data);
    let (mode, rest) = first_line(&input);
    match mode {
        "cookie" => cookie_mode(rest),
        "redirect" => redirect_mode(rest),
        _ => {}
    }
});
