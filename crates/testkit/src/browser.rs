//! A browser for sign-in tests: it keeps cookies and never follows a redirect by itself.
//!
//! Why: the OAuth sign-in is a chain of redirects across the app's site, the client API and
//! the identity provider, with cookies set and cleared on the way. A test of it has to see
//! each hop (its status, `Location`, `Set-Cookie` attributes, cache headers) and follow the
//! redirect itself, exactly as a browser would, so [`Browser`] sends the cookies it holds
//! for a host and hands every response back as a [`Hop`].
//!
//! Cookies are kept per host, not per port, as browsers keep them (RFC 6265 §8.5): the
//! site origin and the client API on `127.0.0.1` share their cookies.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value as Json;
use url::Url;

/// How long one request may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// One `Set-Cookie` header, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetCookie {
    /// Its name.
    pub name: String,
    /// Its value, as sent.
    pub value: String,
    /// The attributes as written, e.g. `["Max-Age=900", "Path=/", "HttpOnly"]`.
    pub attributes: Vec<String>,
}

impl SetCookie {
    /// Parse a `Set-Cookie` header value; `None` when it has no `name=value`.
    pub fn parse(header: &str) -> Option<SetCookie> {
        let mut parts = header.split(';').map(str::trim);
        let (name, value) = parts.next()?.split_once('=')?;
        Some(SetCookie {
            name: name.to_owned(),
            value: value.to_owned(),
            attributes: parts.map(str::to_owned).collect(),
        })
    }

    /// Whether the cookie carries `attribute` (case-insensitive, e.g. `HttpOnly`).
    pub fn has(&self, attribute: &str) -> bool {
        self.attributes
            .iter()
            .any(|a| a.eq_ignore_ascii_case(attribute))
    }

    /// Whether it deletes the cookie (`Max-Age=0`).
    pub fn clears(&self) -> bool {
        self.has("Max-Age=0")
    }
}

/// One response the browser got.
#[derive(Clone, Debug)]
pub struct Hop {
    /// The URL that was requested.
    pub url: Url,
    /// The status code.
    pub status: u16,
    /// The `Location` header as sent.
    pub location: Option<String>,
    /// The cookies it set or cleared.
    pub set_cookies: Vec<SetCookie>,
    /// The `Cache-Control` header.
    pub cache_control: Option<String>,
    /// The body.
    pub body: String,
}

impl Hop {
    /// Where the response redirects, resolved against the requested URL.
    ///
    /// # Panics
    ///
    /// When the response has no `Location` or it is not a URL reference.
    pub fn location_url(&self) -> Url {
        let location = self
            .location
            .as_deref()
            .unwrap_or_else(|| panic!("{} did not redirect: {}", self.url, self.status));
        self.url
            .join(location)
            .unwrap_or_else(|err| panic!("Location {location:?} is not a URL: {err}"))
    }

    /// The cookie named `name` that this response set or cleared.
    pub fn cookie(&self, name: &str) -> Option<&SetCookie> {
        self.set_cookies.iter().find(|cookie| cookie.name == name)
    }

    /// The body as JSON.
    ///
    /// # Panics
    ///
    /// When the body is not JSON.
    pub fn json(&self) -> Json {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("expected a JSON body ({err}): {}", self.body))
    }
}

/// A browser without automatic redirects that keeps cookies per host; see the module docs.
pub struct Browser {
    http: reqwest::Client,
    jar: HashMap<String, HashMap<String, String>>,
}

impl Default for Browser {
    fn default() -> Self {
        Browser::new()
    }
}

fn host_of(url: &str) -> String {
    let url = Url::parse(url).unwrap_or_else(|err| panic!("{url:?} is not a URL: {err}"));
    url.host_str().unwrap_or_default().to_owned()
}

impl Browser {
    /// A browser with no cookies.
    ///
    /// # Panics
    ///
    /// When the HTTP client cannot be built.
    pub fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(PATIENCE)
                .build()
                .expect("an HTTP client builds"),
            jar: HashMap::new(),
        }
    }

    /// The cookies the browser holds for `url`'s host.
    pub fn cookies_for(&self, url: &str) -> HashMap<String, String> {
        self.jar.get(&host_of(url)).cloned().unwrap_or_default()
    }

    /// The `Cookie` header it would send to `url` (names sorted).
    pub fn cookie_header(&self, url: &str) -> String {
        let mut pairs: Vec<String> = self
            .cookies_for(url)
            .into_iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        pairs.sort();
        pairs.join("; ")
    }

    /// Forget every cookie (as another browser would start).
    pub fn clear_cookies(&mut self) {
        self.jar.clear();
    }

    /// A navigation: `GET` with `Accept: text/html`.
    pub async fn get(&mut self, url: &str) -> Hop {
        let request = self
            .http
            .get(url)
            .header("accept", "text/html,application/xhtml+xml");
        self.send(url, request).await
    }

    /// A form post, as providers using `response_mode=form_post` make the browser do.
    pub async fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> Hop {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let request = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(url, request).await
    }

    /// A `fetch` from the page: `POST` with a JSON body.
    pub async fn post_json(&mut self, url: &str, body: &Json) -> Hop {
        let request = self.http.post(url).json(body);
        self.send(url, request).await
    }

    async fn send(&mut self, url: &str, mut request: reqwest::RequestBuilder) -> Hop {
        let parsed = Url::parse(url).unwrap_or_else(|err| panic!("{url:?} is not a URL: {err}"));
        let cookie = self.cookie_header(url);
        if !cookie.is_empty() {
            request = request.header("cookie", cookie);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|err| panic!("{url} does not answer: {err}"));
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let location = header("location");
        let cache_control = header("cache-control");
        let set_cookies: Vec<SetCookie> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter_map(SetCookie::parse)
            .collect();
        let jar = self.jar.entry(host_of(url)).or_default();
        for cookie in &set_cookies {
            if cookie.clears() {
                jar.remove(&cookie.name);
            } else {
                jar.insert(cookie.name.clone(), cookie.value.clone());
            }
        }
        let body = response.text().await.unwrap_or_default();
        Hop {
            url: parsed,
            status,
            location,
            set_cookies,
            cache_control,
            body,
        }
    }
}
