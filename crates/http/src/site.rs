//! Serving one request on the site routes: find the route, build the
//! [`HttpActionRequest`] and [`HttpActionCtx`], run the handler, turn its result into a
//! response.
//!
//! Handlers are user code: a handler that panics becomes a 500 with code `Internal`,
//! never a dropped connection, and its error is logged with the route it came from.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use conflux_common::{Error, TokenValidator};
use futures::FutureExt;
use http::header::{HeaderMap, CONTENT_LENGTH, FORWARDED, HOST};
use http::{HeaderValue, Method, Request};
use url::Url;

use crate::action::{ActionRunner, Caller, HttpActionCtx, HttpActionRequest};
use crate::diagnostics::Arrival;
use crate::origins::Origins;
use crate::response::error_response;
use crate::router::{HttpRouter, RouteMethod};

/// What the site routes need to serve requests.
pub(crate) struct SiteState {
    pub(crate) router: Arc<HttpRouter>,
    pub(crate) runner: Arc<dyn ActionRunner>,
    pub(crate) token_validator: Option<Arc<dyn TokenValidator>>,
    pub(crate) origins: Origins,
    pub(crate) dev_mode: bool,
}

impl SiteState {
    /// Serve `req`, whose body is already buffered, at the site path `path` (the request
    /// path with `/http` removed when it arrived on the client API origin).
    pub(crate) async fn serve(&self, req: Request<Body>, path: &str, arrival: Arrival) -> Response {
        let (parts, body) = req.into_parts();
        let route = RouteMethod::for_request(&parts.method)
            .and_then(|method| self.router.resolve(method, path));
        let Some(index) = route else {
            return self
                .router
                .explain_miss(&parts.method, path, arrival, &self.origins)
                .into_response(self.dev_mode);
        };
        // The body was buffered by the server's limit layer: this only takes it out.
        let body = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(body) => body,
            Err(err) => {
                let err = Error::bad_request(format!("Could not read the request body: {err}"));
                return error_response(&err, self.dev_mode);
            }
        };
        let url = match request_url(&parts.headers, &self.origins, path, parts.uri.query()) {
            Ok(url) => url,
            Err(err) => return error_response(&err, self.dev_mode),
        };
        let caller = Caller::from_headers(&parts.headers, self.token_validator.as_ref()).await;
        let ctx = HttpActionCtx::new(self.runner.clone(), caller, self.origins.clone());
        let entry = self.router.entry(index);
        let request = HttpActionRequest {
            method: parts.method.clone(),
            url,
            headers: parts.headers,
            body,
        };
        let outcome = AssertUnwindSafe((entry.handler)(request, ctx))
            .catch_unwind()
            .await;
        let route = self.router.info(index);
        match outcome {
            Ok(Ok(response)) => {
                if parts.method == Method::HEAD {
                    without_body(response)
                } else {
                    response.map(Body::from)
                }
            }
            Ok(Err(err)) => {
                if err.code().http_status() >= 500 {
                    tracing::error!(route = %route, error = %err, "HTTP action failed");
                } else {
                    tracing::info!(route = %route, error = %err, "HTTP action returned an error");
                }
                error_response(&err, self.dev_mode)
            }
            Err(_panic) => {
                let err = Error::internal(format!("the HTTP action handler of {route} panicked"));
                tracing::error!(route = %route, "HTTP action handler panicked");
                error_response(&err, self.dev_mode)
            }
        }
    }
}

/// Drop the body of a `GET` response answering a `HEAD` request, keeping its headers
/// (including the `Content-Length` the `GET` would have had).
fn without_body(response: http::Response<Bytes>) -> Response {
    let (mut parts, body) = response.into_parts();
    if !parts.headers.contains_key(CONTENT_LENGTH) {
        parts
            .headers
            .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    Response::from_parts(parts, Body::empty())
}

/// The URL the client used: scheme from `X-Forwarded-Proto` or `Forwarded: proto=`
/// (default `http`), host from `Host` (default: the site origin), then the site path.
fn request_url(
    headers: &HeaderMap,
    origins: &Origins,
    path: &str,
    query: Option<&str>,
) -> Result<Url, Error> {
    let scheme = forwarded_proto(headers).unwrap_or("http");
    let host = match headers.get(HOST).map(HeaderValue::to_str) {
        Some(Ok(host)) => host.to_string(),
        Some(Err(_)) => return Err(Error::bad_request("The Host header is not valid ASCII.")),
        None => Url::parse(&origins.site)
            .ok()
            .and_then(|site| {
                let host = site.host_str()?.to_string();
                Some(match site.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host,
                })
            })
            .unwrap_or_else(|| "localhost".to_string()),
    };
    if host.contains(['/', '?', '#', '@', ' ']) {
        return Err(Error::bad_request(format!(
            "The Host header `{host}` is not a valid host."
        )));
    }
    let text = match query {
        Some(query) => format!("{scheme}://{host}{path}?{query}"),
        None => format!("{scheme}://{host}{path}"),
    };
    Url::parse(&text)
        .map_err(|err| Error::bad_request(format!("The request URL `{text}` is not valid: {err}.")))
}

/// `https` or `http` from `X-Forwarded-Proto` or the `proto=` of `Forwarded`.
fn forwarded_proto(headers: &HeaderMap) -> Option<&'static str> {
    let from_x = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim);
    let from_forwarded = || {
        let value = headers.get(FORWARDED)?.to_str().ok()?;
        let first = value.split(',').next()?;
        first.split(';').find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            key.eq_ignore_ascii_case("proto")
                .then(|| value.trim_matches('"').trim())
        })
    };
    let proto = from_x.or_else(from_forwarded)?;
    if proto.eq_ignore_ascii_case("https") {
        Some("https")
    } else if proto.eq_ignore_ascii_case("http") {
        Some("http")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn url_is_rebuilt_from_forwarded_headers_and_host() {
        let origins = Origins::new("http://127.0.0.1:3210", "http://127.0.0.1:3211");
        let url = request_url(
            &headers(&[("host", "app.example"), ("x-forwarded-proto", "https")]),
            &origins,
            "/hook",
            Some("a=1"),
        )
        .expect("valid URL");
        assert_eq!(url.as_str(), "https://app.example/hook?a=1");
        let url = request_url(
            &headers(&[
                ("host", "app.example"),
                ("forwarded", "for=1.2.3.4;proto=https"),
            ]),
            &origins,
            "/hook",
            None,
        )
        .expect("valid URL");
        assert_eq!(url.scheme(), "https");
        let url = request_url(&HeaderMap::new(), &origins, "/hook", None).expect("valid URL");
        assert_eq!(url.as_str(), "http://127.0.0.1:3211/hook");
        assert!(request_url(&headers(&[("host", "a/b")]), &origins, "/", None).is_err());
    }
}
