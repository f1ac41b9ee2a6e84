//! What an HTTP action handler receives: the request, and a context through which it
//! calls functions as the caller.
//!
//! [`ActionRunner`] is the narrow seam between handlers and the function runtime, in
//! Convex JSON: [`crate::FunctionRunnerActions`] implements it over the function runner
//! (tests plug in their own), the server holds it, and handlers reach it through
//! [`HttpActionCtx`]. Likewise, tokens are validated through the
//! [`conflux_common::TokenValidator`] trait, never by this crate.
//!
//! Identity follows the rule users of Convex rely on: a request whose `Authorization`
//! header fails validation still reaches its handler. The failure is kept in the
//! [`Caller`] and only surfaces when the handler (or a function it calls) asks who is
//! calling.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use conflux_common::{Error, ErrorCode, Identity, Result, TokenValidator};
use futures::future::BoxFuture;
use futures::FutureExt;
use http::{HeaderMap, Method};
use serde_json::Value as Json;
use url::Url;

use crate::origins::Origins;

/// An HTTP request as an HTTP action handler sees it: fully buffered, with the URL the
/// client used.
#[derive(Clone, Debug)]
pub struct HttpActionRequest {
    /// The request method as sent. A `HEAD` request is routed to the `GET` handler and
    /// keeps `HEAD` here; its response body is dropped by the server.
    pub method: Method,
    /// The full URL, rebuilt from `X-Forwarded-Proto` / `Forwarded: proto=` (default
    /// `http`), the `Host` header and the path as the site origin sees it (a request
    /// that arrived at `<client api>/http/<path>` has the URL path `/<path>`).
    pub url: Url,
    /// The request headers.
    pub headers: HeaderMap,
    /// The request body, bounded by the server's body limit.
    pub body: Bytes,
}

/// Who is calling, as far as the request's bearer token tells.
///
/// A token that failed validation does not stop an HTTP action; the failure is kept here
/// and returned by [`Caller::identity`], so only code that asks for the identity fails.
#[derive(Clone, Debug, PartialEq)]
pub struct Caller {
    identity: std::result::Result<Identity, Error>,
}

impl Caller {
    /// A caller who sent no token.
    pub fn anonymous() -> Self {
        Caller {
            identity: Ok(Identity::Anonymous),
        }
    }

    /// A caller whose token was validated into `identity`.
    pub fn identified(identity: Identity) -> Self {
        Caller {
            identity: Ok(identity),
        }
    }

    /// A caller whose token was rejected with `error`.
    pub fn rejected(error: Error) -> Self {
        Caller {
            identity: Err(error),
        }
    }

    /// The caller's identity, or the error that rejected their token.
    pub fn identity(&self) -> Result<&Identity> {
        self.identity.as_ref().map_err(Clone::clone)
    }

    /// Resolve the caller of a request from its headers: no `Authorization` header means
    /// anonymous; `Bearer <token>` is validated through `validator`; anything else is
    /// kept as an error.
    pub async fn from_headers(
        headers: &HeaderMap,
        validator: Option<&Arc<dyn TokenValidator>>,
    ) -> Caller {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Caller::anonymous();
        };
        let Some(token) = value.to_str().ok().and_then(bearer_token) else {
            return Caller::rejected(Error::new(
                ErrorCode::InvalidAuthHeader,
                "The Authorization header must be `Bearer <token>`.",
            ));
        };
        let Some(validator) = validator else {
            return Caller::rejected(Error::new(
                ErrorCode::NoAuthProvider,
                "This deployment has no auth configured, so the bearer token in the \
                 Authorization header cannot be validated. Configure an auth provider, or \
                 stop sending the header.",
            ));
        };
        match validator.validate(token).await {
            Ok(user) => Caller::identified(Identity::User(Arc::new(user))),
            Err(err) => Caller::rejected(err),
        }
    }
}

/// The token of a `Bearer <token>` header value (scheme case-insensitive), if well formed.
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Runs functions on behalf of an HTTP action; implemented over the function runner by
/// [`crate::FunctionRunnerActions`].
///
/// `args` and the returned value are in the Convex JSON encoding (`$integer`, `$bytes`,
/// ...); `args` is the arguments object.
#[async_trait]
pub trait ActionRunner: Send + Sync + 'static {
    /// Run the public or internal query at `path` (`module:name`) at the latest snapshot.
    async fn run_query(&self, caller: &Caller, path: &str, args: Json) -> Result<Json>;
    /// Run the mutation at `path`, with its usual conflict retries.
    async fn run_mutation(&self, caller: &Caller, path: &str, args: Json) -> Result<Json>;
    /// Run the action at `path`.
    async fn run_action(&self, caller: &Caller, path: &str, args: Json) -> Result<Json>;
}

/// The context an HTTP action handler receives: function calls as the caller, and the
/// caller's identity.
#[derive(Clone)]
pub struct HttpActionCtx {
    runner: Arc<dyn ActionRunner>,
    caller: Caller,
    origins: Origins,
}

impl HttpActionCtx {
    /// A context that runs functions through `runner` on behalf of `caller`.
    pub fn new(runner: Arc<dyn ActionRunner>, caller: Caller, origins: Origins) -> Self {
        HttpActionCtx {
            runner,
            caller,
            origins,
        }
    }

    /// Run a query as the caller.
    pub async fn run_query(&self, path: &str, args: Json) -> Result<Json> {
        self.runner.run_query(&self.caller, path, args).await
    }

    /// Run a mutation as the caller.
    pub async fn run_mutation(&self, path: &str, args: Json) -> Result<Json> {
        self.runner.run_mutation(&self.caller, path, args).await
    }

    /// Run an action as the caller.
    pub async fn run_action(&self, path: &str, args: Json) -> Result<Json> {
        self.runner.run_action(&self.caller, path, args).await
    }

    /// The caller's identity, or the error that rejected their token (an HTTP action
    /// runs even when the token is bad; asking for the identity is what fails).
    pub fn identity(&self) -> Result<&Identity> {
        self.caller.identity()
    }

    /// The caller, to pass on to other code that runs functions.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The public origins of this deployment (client API and site).
    pub fn origins(&self) -> &Origins {
        &self.origins
    }
}

impl std::fmt::Debug for HttpActionCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpActionCtx")
            .field("caller", &self.caller)
            .field("origins", &self.origins)
            .finish_non_exhaustive()
    }
}

/// The future an HTTP action handler returns.
pub type HttpActionFuture = BoxFuture<'static, Result<http::Response<Bytes>>>;

/// An HTTP action handler: any shareable function from request and context to a response.
pub type HttpActionHandler =
    Arc<dyn Fn(HttpActionRequest, HttpActionCtx) -> HttpActionFuture + Send + Sync>;

/// Wrap an async function or closure into an [`HttpActionHandler`].
///
/// ```
/// use bytes::Bytes;
/// use conflux_http::{handler, HttpActionHandler};
///
/// let hello: HttpActionHandler = handler(|req, _ctx| async move {
///     let name = req.url.query().unwrap_or("world").to_string();
///     Ok(http::Response::new(Bytes::from(format!("hello {name}"))))
/// });
/// ```
pub fn handler<F, Fut>(f: F) -> HttpActionHandler
where
    F: Fn(HttpActionRequest, HttpActionCtx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<http::Response<Bytes>>> + Send + 'static,
{
    Arc::new(move |req, ctx| f(req, ctx).boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
