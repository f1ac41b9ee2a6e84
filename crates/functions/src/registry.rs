//! The registry: every function of an app, by canonical path.
//!
//! Registration happens once at start-up, so the registry is a plain map that the runner
//! shares read-only. Registering the same path twice is a start-up error, not a silent
//! override: two modules defining `messages:list` is always a bug.

use std::collections::BTreeMap;
use std::sync::Arc;

use conflux_common::{Error, ErrorCode, Result};
use conflux_values::validator::Validator;
use conflux_values::{Object, Value};
use futures::future::BoxFuture;

use crate::context::{ActionCtx, MutationCtx, QueryCtx};
use crate::path::UdfPath;

/// What kind of function a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FunctionKind {
    /// Read-only, reactive.
    Query,
    /// Transactional read-write.
    Mutation,
    /// Side effects; reaches the database through other functions.
    Action,
}

impl FunctionKind {
    /// `"query"`, `"mutation"` or `"action"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionKind::Query => "query",
            FunctionKind::Mutation => "mutation",
            FunctionKind::Action => "action",
        }
    }
}

/// Who may call a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// Clients may call it.
    Public,
    /// Only other functions (actions, HTTP actions) may call it.
    Internal,
}

/// A query handler: synchronous, read-only.
pub type QueryHandler = Arc<dyn Fn(&mut QueryCtx<'_>, Object) -> Result<Value> + Send + Sync>;
/// A mutation handler: synchronous, one transaction.
pub type MutationHandler = Arc<dyn Fn(&mut MutationCtx<'_>, Object) -> Result<Value> + Send + Sync>;
/// An action handler: asynchronous, free side effects.
pub type ActionHandler =
    Arc<dyn Fn(ActionCtx, Object) -> BoxFuture<'static, Result<Value>> + Send + Sync>;

/// The code of a registered function.
#[derive(Clone)]
pub enum Handler {
    /// A query.
    Query(QueryHandler),
    /// A mutation.
    Mutation(MutationHandler),
    /// An action.
    Action(ActionHandler),
}

/// One registered function.
#[derive(Clone)]
pub struct FunctionDef {
    /// Canonical path.
    pub path: UdfPath,
    /// Who may call it.
    pub visibility: Visibility,
    /// The validator of its argument object.
    pub args: Validator,
    /// Its code.
    pub handler: Handler,
}

impl FunctionDef {
    /// Its kind.
    pub fn kind(&self) -> FunctionKind {
        match self.handler {
            Handler::Query(_) => FunctionKind::Query,
            Handler::Mutation(_) => FunctionKind::Mutation,
            Handler::Action(_) => FunctionKind::Action,
        }
    }
}

/// Every function of an app.
#[derive(Clone, Default)]
pub struct Registry {
    functions: BTreeMap<UdfPath, FunctionDef>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn add(
        &mut self,
        path: &str,
        visibility: Visibility,
        args: Validator,
        handler: Handler,
    ) -> Result<&mut Self> {
        let path = UdfPath::parse(path)?;
        if self.functions.contains_key(&path) {
            return Err(Error::new(
                ErrorCode::BadRequest,
                format!(
                    "The function `{path}` is registered twice; give each function its own name."
                ),
            ));
        }
        self.functions.insert(
            path.clone(),
            FunctionDef {
                path,
                visibility,
                args,
                handler,
            },
        );
        Ok(self)
    }

    /// Register a public query.
    pub fn query<F>(&mut self, path: &str, args: Validator, handler: F) -> Result<&mut Self>
    where
        F: Fn(&mut QueryCtx<'_>, Object) -> Result<Value> + Send + Sync + 'static,
    {
        self.add(
            path,
            Visibility::Public,
            args,
            Handler::Query(Arc::new(handler)),
        )
    }

    /// Register a public mutation.
    pub fn mutation<F>(&mut self, path: &str, args: Validator, handler: F) -> Result<&mut Self>
    where
        F: Fn(&mut MutationCtx<'_>, Object) -> Result<Value> + Send + Sync + 'static,
    {
        self.add(
            path,
            Visibility::Public,
            args,
            Handler::Mutation(Arc::new(handler)),
        )
    }

    /// Register a public action.
    pub fn action<F, Fut>(&mut self, path: &str, args: Validator, handler: F) -> Result<&mut Self>
    where
        F: Fn(ActionCtx, Object) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Value>> + Send + 'static,
    {
        let handler: ActionHandler = Arc::new(move |ctx, args| Box::pin(handler(ctx, args)));
        self.add(path, Visibility::Public, args, Handler::Action(handler))
    }

    /// Register any function with an explicit visibility (internal functions, or handlers
    /// built elsewhere such as the built-in sign-in).
    pub fn register(
        &mut self,
        path: &str,
        visibility: Visibility,
        args: Validator,
        handler: Handler,
    ) -> Result<&mut Self> {
        self.add(path, visibility, args, handler)
    }

    /// Look a function up by canonical path.
    pub fn get(&self, path: &UdfPath) -> Option<&FunctionDef> {
        self.functions.get(path)
    }

    /// Every function, in path order.
    pub fn iter(&self) -> impl Iterator<Item = &FunctionDef> {
        self.functions.values()
    }

    /// Move every function of `other` into this registry; a path defined in both is an
    /// error naming it.
    pub fn merge(&mut self, other: Registry) -> Result<()> {
        for (path, def) in other.functions {
            if self.functions.contains_key(&path) {
                return Err(Error::new(
                    ErrorCode::BadRequest,
                    format!("The function `{path}` is registered twice; give each function its own name."),
                ));
            }
            self.functions.insert(path, def);
        }
        Ok(())
    }
}
