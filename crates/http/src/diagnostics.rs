//! Misses that explain themselves.
//!
//! "No matching routes found" is what a user sees after the most common sign-in mistake:
//! an OAuth redirect URI pointing at the client API origin (port 3210) instead of the site
//! origin (port 3211), or sign-in routes that were never mounted. The bare sentence gives
//! no hint, and users lose hours on it. So every miss is explained: the method and the
//! URL, the closest registered routes, and, when the path is a sign-in path, what exactly
//! is wrong and the one line or setting that fixes it.
//!
//! The explanation is always logged (warn level). It is sent in the response body only in
//! dev mode: in production the body is exactly `No matching routes found`, as in Convex,
//! because the explanation lists routes and configured providers.
//!
//! The same explanation guards start-up: [`check_auth_mounted`] refuses to start a server
//! whose configured sign-in providers have no routes, instead of failing later at the
//! redirect.

use std::cmp::Reverse;
use std::fmt;

use axum::response::Response;
use conflux_common::{Error, ErrorCode, Result};
use http::{Method, StatusCode};

use crate::origins::Origins;
use crate::response::text_response;
use crate::router::{
    HttpRouter, RouteInfo, RouteKind, RouteMethod, AUTH_PATH_PREFIX, CALLBACK_PATH_PREFIX,
    SIGN_IN_PATH_PREFIX,
};

/// The first line of every unmatched request's body, and the whole body in production.
pub const NO_MATCHING_ROUTES: &str = "No matching routes found";

/// The line that mounts the sign-in routes, quoted in explanations.
pub const MOUNT_AUTH_ROUTES: &str = "app.auth(AuthSetup::from_env()?)";

/// How many close routes an explanation lists.
const CLOSEST_ROUTES_COUNT: usize = 3;

/// Only this many leading bytes of a path are compared when ranking close routes, so a
/// huge path cannot make a miss expensive.
const COMPARED_PATH_BYTES: usize = 256;

/// Where an unmatched request arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// On the site origin, at a root path.
    Site,
    /// On the client API origin under `/http/`, which serves the site routes.
    SiteViaClient,
    /// On the client API origin outside `/http/`, where the client API did not match.
    Client,
}

/// Why a request matched no route, in sentences a user can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissExplanation {
    /// The method and URL, and where it was looked up.
    pub summary: String,
    /// What is wrong and how to fix it, most specific first (may be empty).
    pub reasons: Vec<String>,
    /// The heading of the route list (`Closest routes:`), or a sentence saying there are
    /// no routes at all; `None` when the list would not help.
    pub closest_heading: Option<String>,
    /// Up to three registered routes closest to the request's path.
    pub closest: Vec<RouteInfo>,
}

impl fmt::Display for MissExplanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.summary)?;
        for reason in &self.reasons {
            writeln!(f, "{reason}")?;
        }
        if let Some(heading) = &self.closest_heading {
            writeln!(f, "{heading}")?;
        }
        for route in &self.closest {
            writeln!(f, "    {route}")?;
        }
        Ok(())
    }
}

impl MissExplanation {
    /// The 404 response: `text/plain; charset=utf-8`, body `No matching routes found`,
    /// followed by the explanation in dev mode. The explanation is logged either way.
    pub fn into_response(self, dev_mode: bool) -> Response {
        tracing::warn!("{NO_MATCHING_ROUTES}: {self}");
        let body = if dev_mode {
            format!("{NO_MATCHING_ROUTES}\n\n{self}")
        } else {
            NO_MATCHING_ROUTES.to_string()
        };
        text_response(StatusCode::NOT_FOUND, body)
    }
}

impl HttpRouter {
    /// Explain why `method` on `path` (normalized, percent-encoded) matched nothing.
    pub fn explain_miss(
        &self,
        method: &Method,
        path: &str,
        arrival: Arrival,
        origins: &Origins,
    ) -> MissExplanation {
        let shown_path = truncate(path, COMPARED_PATH_BYTES);
        let summary = match arrival {
            Arrival::Site => format!(
                "{method} {}{shown_path} matches no route on the site origin.",
                origins.site
            ),
            Arrival::SiteViaClient => format!(
                "{method} {}/http{shown_path} matches no route (the site routes, reached through \
                 the client API origin).",
                origins.client
            ),
            Arrival::Client => format!(
                "{method} {}{shown_path} matches no route on the client API origin.",
                origins.client
            ),
        };
        let mut explanation = MissExplanation {
            summary,
            reasons: Vec::new(),
            closest_heading: None,
            closest: Vec::new(),
        };
        match arrival {
            Arrival::Site | Arrival::SiteViaClient => {
                self.explain_site_miss(method, path, &mut explanation);
                self.add_closest(method, path, None, &mut explanation);
            }
            Arrival::Client => {
                if self.is_site_path(path) {
                    self.explain_wrong_origin(path, origins, &mut explanation);
                } else {
                    explanation.reasons.push(format!(
                        "The client API origin {} serves the function API under /api/ and the \
                         HTTP actions under /http/; HTTP actions are served at the root of the \
                         site origin {}.",
                        origins.client, origins.site
                    ));
                    let location = format!(
                        "HTTP actions, at {} and under {}/http",
                        origins.site, origins.client
                    );
                    self.add_closest(method, path, Some(location), &mut explanation);
                }
            }
        }
        explanation
    }

    fn explain_site_miss(&self, method: &Method, path: &str, explanation: &mut MissExplanation) {
        let reasons = &mut explanation.reasons;
        let requested = RouteMethod::for_request(method);
        if requested.is_none() {
            reasons.push(format!(
                "{method} is not a method HTTP actions serve: routes are registered for GET, \
                 POST, PUT, PATCH, DELETE or OPTIONS, and HEAD is answered by the GET route."
            ));
        }
        if path.starts_with(AUTH_PATH_PREFIX) {
            if !self.auth_mounted() {
                reasons.push(not_mounted_reason());
            } else if let Some(reason) = self.provider_reason(path) {
                reasons.push(reason);
            }
        }
        let allowed: Vec<RouteMethod> = RouteMethod::ALL
            .into_iter()
            .filter(|&m| self.resolve(m, path).is_some())
            .collect();
        if let Some(requested) = requested {
            if !allowed.is_empty() && !allowed.contains(&requested) {
                let list: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
                let mut reason = format!(
                    "{} is registered for {}, but not for {requested}.",
                    truncate(path, COMPARED_PATH_BYTES),
                    list.join(", ")
                );
                if *method == Method::HEAD {
                    reason.push_str(" HEAD is answered by the GET route.");
                }
                reasons.push(reason);
            }
        }
    }

    /// The reason a sign-in path names a provider the mounted routes do not serve.
    fn provider_reason(&self, path: &str) -> Option<String> {
        let providers = self.sign_in_providers()?;
        let (prefix, rest) = if let Some(rest) = path.strip_prefix(SIGN_IN_PATH_PREFIX) {
            (SIGN_IN_PATH_PREFIX, rest)
        } else {
            (
                CALLBACK_PATH_PREFIX,
                path.strip_prefix(CALLBACK_PATH_PREFIX)?,
            )
        };
        let provider = rest.split('/').next().unwrap_or(rest);
        if providers.iter().any(|p| p == provider) {
            return None;
        }
        let configured = if providers.is_empty() {
            "No sign-in provider is configured.".to_string()
        } else {
            format!("Configured providers: {}.", providers.join(", "))
        };
        Some(if provider.is_empty() {
            format!("The path names no sign-in provider; use {prefix}<provider>. {configured}")
        } else {
            format!(
                "The sign-in provider `{}` is not configured. {configured}",
                truncate(provider, 64)
            )
        })
    }

    /// Whether `path` is served by the site origin: a registered route (any method) or a
    /// sign-in or well-known path.
    fn is_site_path(&self, path: &str) -> bool {
        path.starts_with(AUTH_PATH_PREFIX)
            || path.starts_with("/.well-known/")
            || RouteMethod::ALL
                .into_iter()
                .any(|m| self.resolve(m, path).is_some())
    }

    fn explain_wrong_origin(
        &self,
        path: &str,
        origins: &Origins,
        explanation: &mut MissExplanation,
    ) {
        let shown = truncate(path, COMPARED_PATH_BYTES);
        let reasons = &mut explanation.reasons;
        reasons.push(format!(
            "This path belongs to the site origin {site}, where HTTP actions and sign-in routes \
             are served, not to the client API origin {client}. Send the request to \
             {site}{shown} (or {client}/http{shown}).",
            site = origins.site,
            client = origins.client,
        ));
        if let Some(rest) = path.strip_prefix(CALLBACK_PATH_PREFIX) {
            let provider = rest.split('/').next().unwrap_or(rest);
            let provider = truncate(provider, 64);
            reasons.push(format!(
                "An OAuth redirect URI must use the site origin: set the redirect URI in the {} \
                 console to {}{CALLBACK_PATH_PREFIX}{provider}",
                provider_display_name(provider),
                origins.site
            ));
        } else if path.starts_with(SIGN_IN_PATH_PREFIX) {
            reasons.push(format!(
                "Sign-in URLs are built from the site origin (CONVEX_SITE_URL), which must be {}, \
                 not {}.",
                origins.site, origins.client
            ));
        }
        if path.starts_with(AUTH_PATH_PREFIX) && !self.auth_mounted() {
            reasons.push(not_mounted_reason());
        }
    }

    /// List up to three routes closest to `path`. A route is close when at most half of
    /// its characters differ (edit distance); when none is, a few routes are still listed,
    /// under a heading that says so, since seeing what exists is the next best help.
    /// `location` says where the listed routes are served, when that is not obvious.
    fn add_closest(
        &self,
        method: &Method,
        path: &str,
        location: Option<String>,
        explanation: &mut MissExplanation,
    ) {
        if self.is_empty() {
            explanation.closest_heading = Some("No HTTP action routes are registered.".into());
            return;
        }
        let requested = RouteMethod::for_request(method);
        let path = truncate(path, COMPARED_PATH_BYTES);
        let mut ranked: Vec<(bool, usize, bool, Reverse<usize>, usize)> = (0..self.entry_count())
            .map(|index| {
                let entry = self.entry(index);
                let compared = match entry.kind {
                    RouteKind::Exact => path,
                    RouteKind::Prefix => truncate(path, entry.path.len()),
                };
                let distance = edit_distance(compared.as_bytes(), entry.path.as_bytes());
                (
                    distance * 2 > entry.path.len(),
                    distance,
                    Some(entry.method) != requested,
                    Reverse(common_prefix_len(path, &entry.path)),
                    index,
                )
            })
            .collect();
        ranked.sort();
        let any_close = ranked.first().is_some_and(|(far, ..)| !far);
        let location = location.map(|l| format!(" ({l})")).unwrap_or_default();
        explanation.closest_heading = Some(if any_close {
            format!("Closest routes{location}:")
        } else {
            format!("No route is close to this path; registered routes{location} include:")
        });
        explanation.closest = ranked
            .into_iter()
            .filter(|(far, ..)| !any_close || !far)
            .take(CLOSEST_ROUTES_COUNT)
            .map(|(.., index)| self.info(index))
            .collect();
    }
}

fn not_mounted_reason() -> String {
    format!(
        "The sign-in routes are not mounted: no route set serves {AUTH_PATH_PREFIX}. Mount them \
         with:\n    {MOUNT_AUTH_ROUTES}"
    )
}

/// Fail start-up when sign-in providers are configured but no mounted route serves their
/// sign-in and callback paths: the OAuth redirect would otherwise end in "No matching
/// routes found" long after the server started.
///
/// `configured_providers` are the ids of the OAuth/OIDC providers of the auth
/// configuration. Fails with [`ErrorCode::NoMatchingRoute`] and the same explanation a
/// request would get.
pub fn check_auth_mounted(
    router: &HttpRouter,
    configured_providers: &[String],
    origins: &Origins,
) -> Result<()> {
    let unserved: Vec<&str> = configured_providers
        .iter()
        .map(String::as_str)
        .filter(|provider| {
            let sign_in = format!("{SIGN_IN_PATH_PREFIX}{provider}");
            let callback = format!("{CALLBACK_PATH_PREFIX}{provider}");
            router.resolve(RouteMethod::Get, &sign_in).is_none()
                || router.resolve(RouteMethod::Get, &callback).is_none()
        })
        .collect();
    let Some(first) = unserved.first() else {
        return Ok(());
    };
    let callback_url = origins.site_url(&format!("{CALLBACK_PATH_PREFIX}{first}"));
    let message = if router.auth_mounted() {
        let served = match router.sign_in_providers() {
            Some(served) if !served.is_empty() => {
                format!("they serve only: {}", served.join(", "))
            }
            Some(_) | None => "they serve no provider".to_string(),
        };
        format!(
            "Sign-in provider(s) {} are configured, but the mounted sign-in routes do not serve \
             them ({served}): the OAuth redirect to {callback_url} would fail with \
             \"{NO_MATCHING_ROUTES}\". Mount the sign-in routes of this auth configuration with:\n    \
             {MOUNT_AUTH_ROUTES}",
            unserved.join(", ")
        )
    } else {
        format!(
            "Sign-in provider(s) {} are configured, but the sign-in routes are not mounted: the \
             OAuth redirect to {callback_url} would fail with \"{NO_MATCHING_ROUTES}\". {}",
            unserved.join(", "),
            not_mounted_reason()
        )
    };
    Err(Error::new(ErrorCode::NoMatchingRoute, message))
}

/// How a provider is named in its own console ("Google", "GitHub").
fn provider_display_name(id: &str) -> String {
    match id {
        "github" => "GitHub".into(),
        "gitlab" => "GitLab".into(),
        "linkedin" => "LinkedIn".into(),
        "auth0" => "Auth0".into(),
        "microsoft-entra-id" | "azure-ad" => "Microsoft Entra ID".into(),
        _ => {
            let mut chars = id.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => "provider's".into(),
            }
        }
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn common_prefix_len(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

/// Levenshtein distance between two byte strings.
fn edit_distance(a: &[u8], b: &[u8]) -> usize {
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance(b"/messages", b"/messages"), 0);
        assert_eq!(edit_distance(b"/mesages", b"/messages"), 1);
        assert_eq!(edit_distance(b"/api/auth/sigin/g", b"/api/auth/signin/"), 2);
        assert_eq!(edit_distance(b"", b"/abc"), 4);
    }

    #[test]
    fn providers_are_named_as_in_their_consoles() {
        assert_eq!(provider_display_name("google"), "Google");
        assert_eq!(provider_display_name("github"), "GitHub");
        assert_eq!(provider_display_name(""), "provider's");
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate("/é", 2), "/");
        assert_eq!(truncate("/abc", 10), "/abc");
    }
}
