//! Where a finished (or failed) sign-in sends the browser: `SITE_URL`, or a `redirectTo`
//! that stays under it.
//!
//! Why the boundary check matters: `redirectTo` comes from the client, and the final
//! redirect carries the one-time code. A prefix test alone would accept
//! `https://site.example.com.evil.com` for the site `https://site.example.com` and hand the
//! code to another host. So, as Convex Auth's default `redirect` callback does, a value is
//! accepted only as a path or query (`/…`, `?…`, appended to `SITE_URL`) or as an absolute
//! URL that starts with `SITE_URL` followed by the end, `/` or `?`. Values with control
//! characters are refused (they could split a `Location` header).

use url::Url;

/// The destination for `redirect_to` under `site_url` (`SITE_URL`), or why it is refused.
pub(crate) fn resolve(site_url: &str, redirect_to: Option<&str>) -> Result<String, String> {
    let base = site_url.strip_suffix('/').unwrap_or(site_url);
    let Some(redirect_to) = redirect_to else {
        return Ok(base.to_owned());
    };
    if redirect_to.chars().any(char::is_control) {
        return Err(format!(
            "Invalid `redirectTo` {redirect_to:?}: it contains control characters"
        ));
    }
    if redirect_to.starts_with('/') || redirect_to.starts_with('?') {
        return Ok(format!("{base}{redirect_to}"));
    }
    if let Some(rest) = redirect_to.strip_prefix(base) {
        if rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') {
            return Ok(redirect_to.to_owned());
        }
    }
    Err(format!(
        "Invalid `redirectTo` {redirect_to} for configured SITE_URL: {base}; use a path such as \
         `/dashboard`, or a URL under SITE_URL"
    ))
}

/// `url` with query parameter `name` set to `value` (replacing any), and the parameters in
/// `remove` dropped. Works for custom schemes (`myapp://callback`) too.
pub(crate) fn with_param(url: &str, name: &str, value: &str, remove: &[&str]) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            let kept: Vec<(String, String)> = parsed
                .query_pairs()
                .filter(|(key, _)| key != name && !remove.contains(&key.as_ref()))
                .map(|(key, value)| (key.into_owned(), value.into_owned()))
                .collect();
            {
                let mut query = parsed.query_pairs_mut();
                query.clear();
                for (key, value) in &kept {
                    query.append_pair(key, value);
                }
                query.append_pair(name, value);
            }
            parsed.to_string()
        }
        Err(_) => {
            let separator = if url.contains('?') { '&' } else { '?' };
            format!(
                "{url}{separator}{name}={}",
                url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = "https://site.example.com";

    #[test]
    fn paths_and_urls_under_the_site_are_accepted() {
        assert_eq!(resolve(SITE, None).as_deref(), Ok(SITE));
        assert_eq!(
            resolve("https://site.example.com/", None).as_deref(),
            Ok(SITE)
        );
        assert_eq!(
            resolve(SITE, Some("/dashboard?tab=1")).as_deref(),
            Ok("https://site.example.com/dashboard?tab=1")
        );
        assert_eq!(
            resolve(SITE, Some("?welcome=1")).as_deref(),
            Ok("https://site.example.com?welcome=1")
        );
        for ok in [
            SITE,
            "https://site.example.com/a",
            "https://site.example.com?x",
        ] {
            assert_eq!(resolve(SITE, Some(ok)).as_deref(), Ok(ok));
        }
    }

    #[test]
    fn other_origins_are_refused_including_lookalike_hosts() {
        for bad in [
            "https://site.example.com.evil.com",
            "https://site.example.com.evil.com/path",
            "https://site.example.comx",
            "https://evil.com/?https://site.example.com",
            "//evil.com",
            "evil.com",
            "http://site.example.com",
            "https://site.example.com@evil.com",
            "/ok\r\nSet-Cookie: x=1",
        ] {
            if bad == "//evil.com" {
                // Appended to SITE_URL it stays on the site: https://site.example.com//evil.com.
                assert_eq!(
                    resolve(SITE, Some(bad)).as_deref(),
                    Ok("https://site.example.com//evil.com")
                );
                continue;
            }
            assert!(resolve(SITE, Some(bad)).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn the_code_replaces_any_code_already_in_the_url() {
        assert_eq!(
            with_param(
                "https://site.example.com/a?code=old&x=1",
                "code",
                "12345678",
                &[]
            ),
            "https://site.example.com/a?x=1&code=12345678"
        );
        assert_eq!(
            with_param("myapp://callback", "code", "1", &["error"]),
            "myapp://callback?code=1"
        );
        assert_eq!(
            with_param(
                "https://site.example.com?code=1",
                "error",
                "OAuthAccessDenied",
                &["code"]
            ),
            "https://site.example.com/?error=OAuthAccessDenied"
        );
    }
}
