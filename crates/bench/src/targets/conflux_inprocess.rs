//! Conflux in-process: the same app and database, opened with `conflux::App::embed`.
//! Subscribers are [`LiveQuery`](conflux::LiveQuery)s of the sync crate's shared
//! subscription manager and writers call the function runner: no socket, no JSON on a
//! wire, which is what an app embedding Conflux gets.

use std::sync::Arc;

use async_trait::async_trait;
use conflux::Embedded;
use conflux_common::{Error, Identity, Result};
use conflux_values::{Object, Value};
use serde_json::Value as Json;
use tempfile::TempDir;

use super::conflux_app::{self, LIST, SEND};
use super::conflux_ws::DURABILITY;
use super::{Counters, Guard, System, Target, TargetInfo, TaskGuard, Transport};
use crate::measure::cpu::CpuScope;
use crate::measure::recorder::{Recorder, SeenSet};
use crate::message::{seq_and_time, MessageSpec};

/// Conflux embedded in this process.
pub struct ConfluxInProcess {
    info: TargetInfo,
    app: Embedded,
    _dir: TempDir,
}

impl ConfluxInProcess {
    /// Open the app on a fresh database in a temporary folder.
    pub async fn start() -> Result<ConfluxInProcess> {
        let dir = tempfile::tempdir().map_err(Error::internal)?;
        let app = conflux_app::embed(dir.path()).await?;
        Ok(ConfluxInProcess {
            info: TargetInfo {
                system: System::Conflux,
                name: "Conflux".into(),
                transport: Transport::InProcess,
                durability: DURABILITY.into(),
            },
            app,
            _dir: dir,
        })
    }
}

fn list_args(channel: &str, limit: usize) -> Result<Object> {
    let mut args = Object::new();
    args.insert("channel".into(), Value::String(channel.to_string()))?;
    args.insert("limit".into(), Value::Float64(limit as f64))?;
    Ok(args)
}

#[async_trait]
impl Target for ConfluxInProcess {
    fn info(&self) -> &TargetInfo {
        &self.info
    }

    async fn subscribe(
        &self,
        channels: &[String],
        limit: usize,
        recorder: Arc<Recorder>,
    ) -> Result<Guard> {
        let mut guards: Vec<TaskGuard> = Vec::with_capacity(channels.len());
        for channel in channels {
            let mut live =
                self.app
                    .subscribe(LIST, list_args(channel, limit)?, Identity::Anonymous)?;
            let recorder = recorder.clone();
            guards.push(TaskGuard(tokio::spawn(async move {
                let mut seen = SeenSet::default();
                let mut first = true;
                while let Ok(update) = live.next().await {
                    if let Ok(Json::Array(docs)) = update.result.outcome() {
                        for doc in docs {
                            if let Some((seq, time)) = seq_and_time(doc) {
                                if seen.insert(seq) && !first {
                                    recorder.delivered(seq, time);
                                }
                            }
                        }
                    }
                    if first {
                        first = false;
                        recorder.mark_ready();
                    }
                }
            })));
        }
        Ok(Box::new(guards))
    }

    async fn prepare_writers(&self, _count: usize) -> Result<()> {
        Ok(())
    }

    async fn write(&self, _writer: usize, message: &MessageSpec) -> Result<()> {
        let args = match Value::from_convex_json(&Json::Object(message.fields()))? {
            Value::Object(args) => args,
            other => {
                return Err(Error::internal(format!(
                    "a message encoded as {}",
                    other.type_name()
                )))
            }
        };
        self.app
            .mutation(SEND, args, Identity::Anonymous)
            .await
            .map(|_| ())
    }

    async fn prepare_counters(&self, _clients: usize, keys: usize) -> Result<()> {
        conflux_app::seed_counters(self.app.runner(), keys).await
    }

    async fn increment(&self, _client: usize, key: usize) -> Result<()> {
        conflux_app::increment_in_process(&self.app, key).await
    }

    fn cpu_scope(&self) -> CpuScope {
        CpuScope::OwnProcess
    }

    fn counters(&self) -> Counters {
        let subscriptions = self.app.subscriptions().metrics();
        let stats = self.app.runner().database().stats();
        Counters {
            executions: Some(subscriptions.executions),
            reruns: Some(subscriptions.reruns),
            spurious_reruns: Some(subscriptions.spurious_reruns),
            commits: Some(stats.commits),
            conflicts: Some(stats.conflicts),
        }
    }

    async fn shutdown(&self) {}
}
