//! HTTP actions calling functions: [`ActionRunner`] over the function runner.
//!
//! An HTTP action handler calls `ctx.run_query("messages:list", json!({...}))` with Convex
//! JSON; [`FunctionRunnerActions`] decodes the arguments, runs the function as the request's
//! caller through [`FunctionRunner`], and encodes the result back. HTTP actions are server
//! code, so internal functions are visible to them, as they are to actions.
//!
//! The caller's identity follows the rule of [`Caller`]: a request whose token was rejected
//! still reaches its handler, but every function it calls fails with the rejection, because
//! a function cannot be run as "someone whose token was refused" and running it as
//! anonymous would hide the problem.
//!
//! Log lines of the functions have no client to go to; they are written to the server log
//! (target `conflux::function_log`).

use async_trait::async_trait;
use conflux_common::{Error, Result};
use conflux_functions::runner::Caller as FunctionCaller;
use conflux_functions::{FunctionRunner, LogLines, Object, Value};
use serde_json::Value as Json;

use crate::action::{ActionRunner, Caller};

/// Runs the functions HTTP actions call on a [`FunctionRunner`]; hand it to the server as
/// [`crate::SiteRoutes::runner`].
///
/// ```no_run
/// use std::sync::Arc;
/// use conflux_http::{FunctionRunnerActions, SiteRoutes};
/// # fn site(runner: conflux_functions::FunctionRunner, router: conflux_http::HttpRouter) -> SiteRoutes {
/// SiteRoutes {
///     router: Arc::new(router),
///     runner: Arc::new(FunctionRunnerActions::new(runner)),
///     token_validator: None,
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct FunctionRunnerActions {
    runner: FunctionRunner,
}

impl FunctionRunnerActions {
    /// Run functions on `runner`.
    pub fn new(runner: FunctionRunner) -> Self {
        FunctionRunnerActions { runner }
    }

    /// The runner.
    pub fn runner(&self) -> &FunctionRunner {
        &self.runner
    }
}

impl std::fmt::Debug for FunctionRunnerActions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionRunnerActions")
            .finish_non_exhaustive()
    }
}

/// The arguments object of a call: Convex JSON, an object or `null` (no arguments).
fn decode_args(path: &str, args: &Json) -> Result<Object> {
    let bad = |what: &str| {
        Error::bad_request(format!(
            "The arguments of `{path}` must be an object of named arguments in Convex JSON \
             (e.g. `json!({{\"channel\": \"general\"}})`), not {what}."
        ))
    };
    match args {
        Json::Null => Ok(Object::new()),
        Json::Object(_) => match Value::from_convex_json(args)
            .map_err(|err| err.context(format!("the arguments of `{path}`")))?
        {
            Value::Object(object) => Ok(object),
            other => Err(bad(other.type_name())),
        },
        Json::Bool(_) => Err(bad("a boolean")),
        Json::Number(_) => Err(bad("a number")),
        Json::String(_) => Err(bad("a string")),
        Json::Array(_) => Err(bad("an array")),
    }
}

fn log_function_lines(path: &str, log_lines: LogLines) {
    for line in log_lines.into_vec() {
        tracing::info!(target: "conflux::function_log", function = path, "{line}");
    }
}

#[async_trait]
impl ActionRunner for FunctionRunnerActions {
    async fn run_query(&self, caller: &Caller, path: &str, args: Json) -> Result<Json> {
        let identity = caller.identity()?.clone();
        let args = decode_args(path, &args)?;
        let outcome = self
            .runner
            .run_query(path, args, identity, FunctionCaller::Internal, None)
            .await;
        log_function_lines(path, outcome.log_lines);
        outcome.result.map(|value| value.to_convex_json())
    }

    async fn run_mutation(&self, caller: &Caller, path: &str, args: Json) -> Result<Json> {
        let identity = caller.identity()?.clone();
        let args = decode_args(path, &args)?;
        let outcome = self
            .runner
            .run_mutation(path, args, identity, FunctionCaller::Internal, None)
            .await;
        log_function_lines(path, outcome.log_lines);
        outcome.result.map(|value| value.to_convex_json())
    }

    async fn run_action(&self, caller: &Caller, path: &str, args: Json) -> Result<Json> {
        let identity = caller.identity()?.clone();
        let args = decode_args(path, &args)?;
        let outcome = self
            .runner
            .run_action(path, args, identity, FunctionCaller::Internal)
            .await;
        log_function_lines(path, outcome.log_lines);
        outcome.result.map(|value| value.to_convex_json())
    }
}
