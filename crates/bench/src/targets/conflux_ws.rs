//! Conflux over loopback: the production server (`conflux::App::start`: sync WebSocket,
//! shared live queries, function runner, sled) started in this process on 127.0.0.1,
//! driven by the load client of [`super::sync_client`].
//!
//! The server gets its own Tokio runtime whose threads are named `cfx-server`, so that
//! its CPU time can be told apart from the load client's (see [`CpuScope`]).

use std::sync::Arc;

use async_trait::async_trait;
use conflux::auth::AuthConfig;
use conflux::Server;
use conflux_common::{Error, Result};
use parking_lot::Mutex;
use serde_json::{json, Value as Json};
use tempfile::TempDir;

use super::conflux_app::{self, INCREMENT, LIST, SEND};
use super::sync_client::SyncClient;
use super::{Counters, Guard, System, Target, TargetInfo, Transport};
use crate::measure::cpu::CpuScope;
use crate::measure::recorder::Recorder;
use crate::message::MessageSpec;

/// Worker threads of the server runtime (the machine has two cores).
const SERVER_THREADS: usize = 2;

/// The durability of every Conflux row.
pub const DURABILITY: &str = "sled, fsync per commit group";

/// Conflux served over loopback from this process.
pub struct ConfluxWs {
    info: TargetInfo,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    server: Mutex<Option<Server>>,
    url: String,
    writers: Mutex<Vec<Arc<SyncClient>>>,
    counter_clients: Mutex<Vec<Arc<SyncClient>>>,
    _dir: TempDir,
}

impl ConfluxWs {
    /// Start the app with a fresh database in a temporary folder, trusting the token
    /// issuers of `token_providers` (none: no authentication).
    pub async fn start(token_providers: Option<AuthConfig>) -> Result<ConfluxWs> {
        let dir = tempfile::tempdir().map_err(Error::internal)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(SERVER_THREADS)
            .thread_name("cfx-server")
            .enable_all()
            .build()
            .map_err(Error::internal)?;
        let config = conflux_app::serve_config(dir.path(), 0);
        let server = runtime
            .spawn(async move {
                let mut app = conflux_app::app();
                if let Some(providers) = token_providers {
                    app = app.token_providers(providers);
                }
                app.start(&config).await
            })
            .await
            .map_err(Error::internal)??;
        Ok(ConfluxWs {
            info: TargetInfo {
                system: System::Conflux,
                name: "Conflux".into(),
                transport: Transport::Loopback,
                durability: DURABILITY.into(),
            },
            url: conflux_app::sync_url(server.client_url()),
            runtime: Mutex::new(Some(runtime)),
            server: Mutex::new(Some(server)),
            writers: Mutex::new(Vec::new()),
            counter_clients: Mutex::new(Vec::new()),
            _dir: dir,
        })
    }

    /// The sync URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for ConfluxWs {
    fn drop(&mut self) {
        // A runtime must not be dropped (blocking) inside another runtime's task.
        if let Some(runtime) = self.runtime.lock().take() {
            runtime.shutdown_background();
        }
    }
}

/// The arguments of the list query.
pub fn list_args(channel: &str, limit: usize) -> Json {
    json!({"channel": channel, "limit": limit as f64})
}

#[async_trait]
impl Target for ConfluxWs {
    fn info(&self) -> &TargetInfo {
        &self.info
    }

    async fn subscribe(
        &self,
        channels: &[String],
        limit: usize,
        recorder: Arc<Recorder>,
    ) -> Result<Guard> {
        let client = SyncClient::connect(&self.url).await?;
        let args: Vec<Json> = channels.iter().map(|c| list_args(c, limit)).collect();
        client.add_queries(LIST, &args, Some(recorder)).await?;
        Ok(Box::new(client))
    }

    async fn prepare_writers(&self, count: usize) -> Result<()> {
        let mut fresh = Vec::with_capacity(count);
        for _ in 0..count {
            fresh.push(Arc::new(SyncClient::connect(&self.url).await?));
        }
        *self.writers.lock() = fresh;
        Ok(())
    }

    async fn write(&self, writer: usize, message: &MessageSpec) -> Result<()> {
        let client = {
            let writers = self.writers.lock();
            writers
                .get(writer % writers.len().max(1))
                .cloned()
                .ok_or_else(|| Error::internal("no writer connections were prepared"))?
        };
        client.mutation(SEND, Json::Object(message.fields())).await
    }

    async fn prepare_counters(&self, clients: usize, keys: usize) -> Result<()> {
        let runner = self
            .server
            .lock()
            .as_ref()
            .map(|server| server.runner().clone())
            .ok_or_else(|| Error::internal("the server was shut down"))?;
        conflux_app::seed_counters(&runner, keys).await?;
        let mut fresh = Vec::with_capacity(clients);
        for _ in 0..clients {
            fresh.push(Arc::new(SyncClient::connect(&self.url).await?));
        }
        *self.counter_clients.lock() = fresh;
        Ok(())
    }

    async fn increment(&self, client: usize, key: usize) -> Result<()> {
        let connection = self
            .counter_clients
            .lock()
            .get(client)
            .cloned()
            .ok_or_else(|| Error::internal(format!("counter client {client} was not prepared")))?;
        connection
            .mutation(INCREMENT, json!({"key": conflux_app::counter_key(key)}))
            .await
    }

    fn cpu_scope(&self) -> CpuScope {
        CpuScope::OwnProcessWithoutClient
    }

    fn counters(&self) -> Counters {
        let server = self.server.lock();
        let Some(server) = server.as_ref() else {
            return Counters::default();
        };
        let subscriptions = server.sync().metrics().subscriptions;
        let stats = server.runner().database().stats();
        Counters {
            executions: Some(subscriptions.executions),
            reruns: Some(subscriptions.reruns),
            spurious_reruns: Some(subscriptions.spurious_reruns),
            commits: Some(stats.commits),
            conflicts: Some(stats.conflicts),
        }
    }

    async fn shutdown(&self) {
        self.writers.lock().clear();
        self.counter_clients.lock().clear();
        let server = self.server.lock().take();
        let runtime = self.runtime.lock().take();
        if let (Some(server), Some(runtime)) = (server, runtime) {
            let stopped = runtime.spawn(async move {
                server.shutdown().await;
            });
            let _ = stopped.await;
            runtime.shutdown_background();
        }
    }
}
