//! Fetching discovery documents and key sets over HTTP, defensively.
//!
//! Why its own module: every byte fetched here comes from outside and every fetch can hang.
//! So a fetch has a time limit, a size cap checked while the body streams in, requires
//! status 200 and a JSON content type, never follows redirects (a redirect would fetch keys
//! from a URL nobody configured), and reads `Cache-Control` so the caller knows how long the
//! answer may be kept. Loopback URLs bypass any system proxy, so tests and local providers
//! work behind one.

use std::time::Duration;

use reqwest::header::{HeaderMap, ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use serde_json::Value as Json;
use url::Url;

use crate::config::is_loopback;
use crate::validation::token::untrusted;

/// What is being fetched, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Document {
    Discovery,
    Jwks,
}

impl Document {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Document::Discovery => "discovery",
            Document::Jwks => "JWKS",
        }
    }
}

/// A fetched JSON document and how long it may be cached.
#[derive(Clone, Debug)]
pub(crate) struct Fetched {
    pub body: Json,
    /// The `Cache-Control` lifetime (`max-age`, or zero for `no-store`/`no-cache`), if any.
    pub max_age: Option<Duration>,
}

/// Why a fetch failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FetchFailure {
    /// No TCP/TLS connection could be made.
    Unreachable(String),
    /// No complete answer within the time limit.
    TimedOut(Duration),
    /// An answer other than 200.
    Status(u16, String),
    /// 200 but not a JSON content type.
    ContentType(String),
    /// Larger than the cap.
    TooLarge(usize),
    /// 200 with a JSON content type, but the body does not parse.
    NotJson(String),
    /// The connection broke while reading.
    Transport(String),
}

impl FetchFailure {
    /// Whether the provider itself is unavailable (as opposed to misconfigured).
    pub(crate) fn provider_down(&self) -> bool {
        match self {
            FetchFailure::Unreachable(_) | FetchFailure::TimedOut(_) => true,
            FetchFailure::Status(status, _) => *status >= 500,
            FetchFailure::ContentType(_)
            | FetchFailure::TooLarge(_)
            | FetchFailure::NotJson(_)
            | FetchFailure::Transport(_) => false,
        }
    }

    /// `discovery returned 503 Service Unavailable`, `JWKS `URL` timed out after 5000 ms`...
    pub(crate) fn describe(&self, document: Document, url: &Url) -> String {
        let what = document.name();
        match self {
            FetchFailure::Unreachable(reason) => format!("cannot connect to {what} `{url}` ({reason})"),
            FetchFailure::TimedOut(limit) => format!(
                "{what} `{url}` did not answer within {} ms (JWKS_FETCH_TIMEOUT_MS)",
                limit.as_millis()
            ),
            FetchFailure::Status(status, reason) => {
                format!("{what} `{url}` returned {status} {reason}")
            }
            FetchFailure::ContentType(content_type) => format!(
                "{what} `{url}` returned Content-Type `{}`; expected application/json or application/jwk-set+json",
                untrusted(content_type)
            ),
            FetchFailure::TooLarge(limit) => format!(
                "{what} `{url}` is larger than {limit} bytes (JWKS_MAX_BYTES)"
            ),
            FetchFailure::NotJson(reason) => format!("{what} `{url}` is not valid JSON ({reason})"),
            FetchFailure::Transport(reason) => {
                format!("reading {what} `{url}` failed ({reason})")
            }
        }
    }
}

/// HTTP client for discovery and JWKS fetches.
#[derive(Clone, Debug)]
pub(crate) struct Fetcher {
    remote: reqwest::Client,
    loopback: reqwest::Client,
    timeout: Duration,
    max_bytes: usize,
}

impl Fetcher {
    pub(crate) fn new(timeout: Duration, max_bytes: usize) -> Result<Fetcher, String> {
        let build = |no_proxy: bool| {
            let builder = reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("conflux-auth/", env!("CARGO_PKG_VERSION")));
            let builder = if no_proxy {
                builder.no_proxy()
            } else {
                builder
            };
            builder
                .build()
                .map_err(|err| format!("cannot build the HTTP client: {err}"))
        };
        Ok(Fetcher {
            remote: build(false)?,
            loopback: build(true)?,
            timeout,
            max_bytes,
        })
    }

    /// GET `url` and parse the JSON body, within the time and size limits.
    pub(crate) async fn get_json(&self, url: &Url) -> Result<Fetched, FetchFailure> {
        let client = if is_loopback(url) {
            &self.loopback
        } else {
            &self.remote
        };
        let request = client
            .get(url.clone())
            .header(ACCEPT, "application/json, application/jwk-set+json");
        // The client timeout covers the whole exchange; this one also covers the streamed
        // body reads below, whatever the client does.
        match tokio::time::timeout(self.timeout, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => Err(FetchFailure::TimedOut(self.timeout)),
        }
    }

    async fn exchange(&self, request: reqwest::RequestBuilder) -> Result<Fetched, FetchFailure> {
        let mut response = request.send().await.map_err(|err| self.classify(&err))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(FetchFailure::Status(
                status.as_u16(),
                status.canonical_reason().unwrap_or("").to_owned(),
            ));
        }
        let headers = response.headers().clone();
        check_content_type(&headers)?;
        if response
            .content_length()
            .is_some_and(|length| length > self.max_bytes as u64)
        {
            return Err(FetchFailure::TooLarge(self.max_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|err| self.classify(&err))? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(FetchFailure::TooLarge(self.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        let json =
            serde_json::from_slice(&body).map_err(|err| FetchFailure::NotJson(err.to_string()))?;
        Ok(Fetched {
            body: json,
            max_age: cache_lifetime(&headers),
        })
    }

    fn classify(&self, err: &reqwest::Error) -> FetchFailure {
        if err.is_timeout() {
            FetchFailure::TimedOut(self.timeout)
        } else if err.is_connect() {
            FetchFailure::Unreachable(root_cause(err))
        } else {
            FetchFailure::Transport(root_cause(err))
        }
    }
}

/// The innermost cause of an error (e.g. "Connection refused (os error 111)").
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

fn check_content_type(headers: &HeaderMap) -> Result<(), FetchFailure> {
    let raw = headers
        .get(CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .unwrap_or_default();
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" | "application/jwk-set+json" => Ok(()),
        _ => Err(FetchFailure::ContentType(if raw.is_empty() {
            "(none)".to_owned()
        } else {
            raw
        })),
    }
}

/// The lifetime `Cache-Control` grants: `max-age=N`, or zero for `no-store`/`no-cache`.
pub(crate) fn cache_lifetime(headers: &HeaderMap) -> Option<Duration> {
    let mut lifetime = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(text) = value.to_str() else { continue };
        for directive in text.split(',') {
            let directive = directive.trim().to_ascii_lowercase();
            if directive == "no-store" || directive == "no-cache" {
                return Some(Duration::ZERO);
            }
            if let Some(seconds) = directive.strip_prefix("max-age=") {
                if let Ok(seconds) = seconds.trim_matches('"').parse::<u64>() {
                    lifetime = Some(Duration::from_secs(seconds));
                }
            }
        }
    }
    lifetime
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(cache_control: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in cache_control {
            map.append(
                CACHE_CONTROL,
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        map
    }

    #[test]
    fn cache_control_lifetimes_are_read() {
        assert_eq!(
            cache_lifetime(&headers(&["public, max-age=3600"])),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            cache_lifetime(&headers(&["max-age=60, must-revalidate"])),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            cache_lifetime(&headers(&["no-store"])),
            Some(Duration::ZERO)
        );
        assert_eq!(
            cache_lifetime(&headers(&["max-age=60", "no-cache"])),
            Some(Duration::ZERO)
        );
        assert_eq!(cache_lifetime(&headers(&["public"])), None);
        assert_eq!(cache_lifetime(&headers(&["max-age=soon"])), None);
    }

    #[test]
    fn only_json_content_types_are_accepted() {
        let with = |ct: &str| {
            let mut map = HeaderMap::new();
            map.insert(
                CONTENT_TYPE,
                HeaderValue::from_str(ct).expect("header value"),
            );
            check_content_type(&map)
        };
        assert_eq!(with("application/json"), Ok(()));
        assert_eq!(with("Application/JSON; charset=utf-8"), Ok(()));
        assert_eq!(with("application/jwk-set+json"), Ok(()));
        assert_eq!(
            with("text/html"),
            Err(FetchFailure::ContentType("text/html".into()))
        );
        assert_eq!(
            check_content_type(&HeaderMap::new()),
            Err(FetchFailure::ContentType("(none)".into()))
        );
    }
}
