//! Conflux as a library: the database, the functions and live queries in-process, with no
//! sockets.
//!
//! Useful for tests of an app's functions, for command-line tools over the same data, and
//! for programs that want reactive queries without a network hop. The embedded handle runs
//! functions exactly as the server does (same runner, same transactions, same shared
//! subscriptions); only the transports are missing. The built-in sign-in needs the HTTP
//! routes, so it is not installed here; pass identities explicitly instead.

use std::path::PathBuf;
use std::sync::Arc;

use conflux_common::{Identity, Result};
use conflux_functions::{Caller, FunctionRunner, RunnerOptions};
use conflux_sync::{LiveQuery, SubscriptionManager};
use conflux_values::{Object, Value};

use crate::app::App;

/// An app running in-process. Cheap to clone.
#[derive(Clone)]
pub struct Embedded {
    runner: FunctionRunner,
    subscriptions: Arc<SubscriptionManager>,
    data_dir: PathBuf,
}

impl App {
    /// Open the app in-process on the data folder `data_dir`.
    ///
    /// ```no_run
    /// # async fn demo() -> conflux::Result<()> {
    /// use conflux::{App, v, Identity, Object, Value};
    /// let app = App::new("counter").query("hello:get", v::no_args(), |_ctx, _args| {
    ///     Ok(Value::from("hello"))
    /// });
    /// let embedded = app.embed("./.conflux/counter").await?;
    /// let hello = embedded.query("hello:get", Object::new(), Identity::Anonymous).await?;
    /// assert_eq!(hello, Value::from("hello"));
    /// # Ok(()) }
    /// ```
    pub async fn embed(mut self, data_dir: impl Into<PathBuf>) -> Result<Embedded> {
        self.take_errors()?;
        let data_dir = data_dir.into();
        if self.auth.take().is_some() {
            tracing::warn!(
                "the built-in sign-in needs the HTTP server; it is not installed in an embedded app"
            );
        }
        let db = {
            let app = &self;
            let dir = data_dir.clone();
            tokio::task::spawn_blocking({
                let tables = app.tables.clone();
                move || crate::server::open_tables(tables, &dir)
            })
            .await
            .map_err(conflux_common::Error::internal)??
        };
        let registry = std::mem::take(&mut self.registry);
        let runner = FunctionRunner::new(
            db,
            registry,
            RunnerOptions {
                dev_mode: true,
                env: self.env.clone(),
                ..RunnerOptions::default()
            },
        );
        Ok(Embedded {
            subscriptions: Arc::new(SubscriptionManager::new(runner.clone())),
            runner,
            data_dir,
        })
    }
}

impl Embedded {
    /// Run a query at the latest snapshot.
    pub async fn query(&self, path: &str, args: Object, identity: Identity) -> Result<Value> {
        self.runner
            .run_query(path, args, identity, Caller::Client, None)
            .await
            .result
    }

    /// Run a mutation; returns once it is durable.
    pub async fn mutation(&self, path: &str, args: Object, identity: Identity) -> Result<Value> {
        self.runner
            .run_mutation(path, args, identity, Caller::Client, None)
            .await
            .result
    }

    /// Run an action.
    pub async fn action(&self, path: &str, args: Object, identity: Identity) -> Result<Value> {
        self.runner
            .run_action(path, args, identity, Caller::Client)
            .await
            .result
    }

    /// Subscribe to a query: the returned [`LiveQuery`] yields a new result each time a
    /// commit changes what the query read. Identical subscriptions share one execution.
    pub fn subscribe(&self, path: &str, args: Object, identity: Identity) -> Result<LiveQuery> {
        self.subscriptions.subscribe(path, args, identity)
    }

    /// The function runner (database access, counters).
    pub fn runner(&self) -> &FunctionRunner {
        &self.runner
    }

    /// The shared subscriptions and their counters.
    pub fn subscriptions(&self) -> &Arc<SubscriptionManager> {
        &self.subscriptions
    }

    /// The data folder.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }
}
