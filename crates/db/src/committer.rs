//! The committer: the one thread that orders, checks, writes and publishes commits.
//!
//! Commits arrive on a bounded channel. The committer takes the first one, then everything
//! else already waiting (up to `COMMIT_MAX_BATCH_COUNT`): a *group*. For each commit of the
//! group, in arrival order, it checks the read set against the write log (commits published
//! after the snapshot) and against the commits accepted earlier in the same group, assigns
//! the next timestamp, and turns the writes into document versions and index changes. The
//! whole group is one [`Persistence::write`](crate::Persistence::write), so one `fsync`
//! makes every commit of the group durable. Only then is the group published: appended to
//! the write log, made visible to new snapshots, matched against subscriptions, and
//! acknowledged.
//!
//! If the write fails, every commit of the group fails with `StorageUnavailable` and
//! nothing is published; their timestamps are never reused. The committer runs on its own
//! thread so that validation, encoding and the blocking `fsync` never run on the async
//! reactor.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use conflux_common::{Error, ErrorCode, Result};
use conflux_values::DocumentId;
use tokio::sync::{mpsc, oneshot};

use crate::database::{Shared, CREATION_TIME_WATERMARK};
use crate::pause::PausePoint;
use crate::persistence::{DocumentLogEntry, IndexLogEntry, WriteBatch};
use crate::read_set::{IndexId, ReadSet, WriteSet};
use crate::timestamp::Timestamp;
use crate::transaction::PendingWrite;
use crate::write_log::LogCheck;

/// A transaction handed to the committer.
pub(crate) struct CommitRequest {
    pub(crate) snapshot: Timestamp,
    pub(crate) reads: ReadSet,
    pub(crate) writes: Vec<(DocumentId, PendingWrite)>,
    pub(crate) reply: oneshot::Sender<Result<Timestamp>>,
}

struct Accepted {
    ts: Timestamp,
    writes: Arc<WriteSet>,
    reply: oneshot::Sender<Result<Timestamp>>,
}

/// Start the committer thread.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    receiver: mpsc::Receiver<CommitRequest>,
    creation_watermark: f64,
) -> Result<JoinHandle<()>> {
    let last_assigned = shared.latest();
    let committer = Committer {
        shared,
        last_assigned,
        creation_watermark,
    };
    std::thread::Builder::new()
        .name("conflux-committer".to_owned())
        .spawn(move || committer.run(receiver))
        .map_err(|err| Error::internal(format!("could not start the committer thread: {err}")))
}

struct Committer {
    shared: Arc<Shared>,
    /// The greatest timestamp handed out, published or burnt by a failed write.
    last_assigned: Timestamp,
    /// The greatest creation time made durable.
    creation_watermark: f64,
}

impl Committer {
    fn run(mut self, mut receiver: mpsc::Receiver<CommitRequest>) {
        while let Some(first) = receiver.blocking_recv() {
            self.shared.pause.reach(PausePoint::BeforeValidate);
            let mut group = vec![first];
            while group.len() < self.shared.options.max_batch.max(1) {
                match receiver.try_recv() {
                    Ok(request) => group.push(request),
                    Err(_) => break,
                }
            }
            self.commit_group(group);
        }
        tracing::debug!("committer stopped: the database was closed");
    }

    fn commit_group(&mut self, group: Vec<CommitRequest>) {
        let mut accepted: Vec<Accepted> = Vec::with_capacity(group.len());
        let mut batch = WriteBatch::default();
        let mut creation_max = self.creation_watermark;
        for request in group {
            if let Err(err) = self.validate(&request, &accepted) {
                self.shared.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                let _ = request.reply.send(Err(err));
                continue;
            }
            let ts = match self.last_assigned.next_commit(Timestamp::now()) {
                Ok(ts) => ts,
                Err(err) => {
                    let _ = request.reply.send(Err(err));
                    continue;
                }
            };
            self.last_assigned = ts;
            let writes = prepare(&request.writes, ts, &mut batch, &mut creation_max);
            accepted.push(Accepted {
                ts,
                writes: Arc::new(writes),
                reply: request.reply,
            });
        }
        let Some(latest) = accepted.last().map(|a| a.ts) else {
            return;
        };
        batch.max_ts = Some(latest);
        if creation_max > self.creation_watermark {
            batch.metadata.push((
                CREATION_TIME_WATERMARK.to_owned(),
                creation_max.to_bits().to_be_bytes().to_vec(),
            ));
        }

        self.shared.pause.reach(PausePoint::BeforeWrite);
        if let Err(err) = self.shared.persistence.write(&batch) {
            let err = match err.code() {
                ErrorCode::StorageUnavailable => err,
                _ => Error::new(
                    ErrorCode::StorageUnavailable,
                    format!(
                        "could not write to disk ({}): {}; nothing was committed",
                        self.shared.persistence.describe(),
                        err.detail().unwrap_or(err.message())
                    ),
                ),
            };
            tracing::error!(commits = accepted.len(), error = %err, "group commit failed");
            self.shared
                .stats
                .failed_commits
                .fetch_add(accepted.len() as u64, Ordering::Relaxed);
            for commit in accepted {
                let _ = commit.reply.send(Err(err.clone()));
            }
            return;
        }
        self.creation_watermark = creation_max;
        self.shared
            .stats
            .durable_writes
            .fetch_add(1, Ordering::Relaxed);
        self.shared
            .stats
            .commits
            .fetch_add(accepted.len() as u64, Ordering::Relaxed);
        self.shared.pause.reach(PausePoint::AfterWrite);

        // Publish: write log first (see the ordering argument in `subscription`), then the
        // new snapshot, then subscriptions, then the callers.
        for commit in &accepted {
            self.shared
                .write_log
                .append(commit.ts, commit.writes.clone());
        }
        self.shared.publish(latest);
        for commit in &accepted {
            self.shared.subscriptions.notify(commit.ts, &commit.writes);
        }
        self.shared.commit_watch.send_replace(latest);
        self.shared.write_log.trim(
            self.shared.options.write_log_max_entries,
            self.shared.options.write_log_retention,
            latest,
        );
        tracing::debug!(commits = accepted.len(), %latest, "group committed");
        for commit in accepted {
            let _ = commit.reply.send(Ok(commit.ts));
        }
    }

    fn validate(&self, request: &CommitRequest, accepted: &[Accepted]) -> Result<()> {
        #[cfg(feature = "unsafe-test-knobs")]
        if self.shared.options.unsafe_skip_conflict_check_for_tests {
            return Ok(());
        }
        match self
            .shared
            .write_log
            .check(&request.reads, request.snapshot)
        {
            LogCheck::Clean => {}
            LogCheck::Overlap { ts, index } => return Err(self.conflict(index, ts)),
            LogCheck::NotCovered { horizon } => {
                let tables = self.tables_read(&request.reads);
                return Err(Error::new(
                    ErrorCode::OccConflict,
                    format!(
                        "this transaction read {tables} at ts {}, which is older than the \
                         conflict-checking window (commits after ts {horizon}; see \
                         WRITE_LOG_MAX_ENTRIES_COUNT and WRITE_LOG_RETENTION_MS); retry it",
                        request.snapshot
                    ),
                ));
            }
        }
        for earlier in accepted {
            if let Some((index, _)) = earlier.writes.first_overlap(&request.reads) {
                return Err(self.conflict(index, earlier.ts));
            }
        }
        Ok(())
    }

    fn conflict(&self, index: IndexId, ts: Timestamp) -> Error {
        let (table, index_name) = match self.shared.catalog.index_name(index) {
            Some((table, name)) => (table.as_str(), name.as_str()),
            None => ("(unknown)", "(unknown)"),
        };
        Error::new(
            ErrorCode::OccConflict,
            format!(
                "documents read from the table `{table}` (index `{index_name}`) were changed by \
                 a concurrent commit at ts {ts} while this transaction ran; retry it"
            ),
        )
    }

    fn tables_read(&self, reads: &ReadSet) -> String {
        let mut tables: Vec<&str> = reads
            .indexes()
            .filter_map(|index| self.shared.catalog.index_name(index))
            .map(|(table, _)| table.as_str())
            .collect();
        tables.sort_unstable();
        tables.dedup();
        if tables.is_empty() {
            "nothing".to_owned()
        } else {
            format!(
                "the table(s) {}",
                tables
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
}

/// Turn the writes of one commit at `ts` into log entries in `batch`, and return the index
/// keys it wrote (old and new key of every index of every written document).
fn prepare(
    writes: &[(DocumentId, PendingWrite)],
    ts: Timestamp,
    batch: &mut WriteBatch,
    creation_max: &mut f64,
) -> WriteSet {
    let mut keys = WriteSet::new();
    for (id, write) in writes {
        let (old, new) = (write.original.as_ref(), write.current.as_ref());
        if old.is_none() && new.is_none() {
            // Inserted and deleted by the same transaction: nothing happened.
            continue;
        }
        if let (None, Some(doc)) = (old, new) {
            *creation_max = creation_max.max(doc.creation_time);
        }
        batch.documents.push(DocumentLogEntry {
            id: *id,
            ts,
            value: new.map(|doc| doc.encode()),
        });
        for index in &write.table.indexes {
            let old_key = old.map(|doc| doc.index_key(&index.fields));
            let new_key = new.map(|doc| doc.index_key(&index.fields));
            if old_key != new_key {
                if let Some(key) = &old_key {
                    batch.index_entries.push(IndexLogEntry {
                        index: index.id,
                        key: key.clone(),
                        ts,
                        id: None,
                    });
                }
                if let Some(key) = &new_key {
                    batch.index_entries.push(IndexLogEntry {
                        index: index.id,
                        key: key.clone(),
                        ts,
                        id: Some(*id),
                    });
                }
            }
            // Readers of an unchanged key still see a changed document.
            if let Some(key) = &old_key {
                keys.push(index.id, key.clone());
            }
            if let Some(key) = new_key {
                if old_key.as_ref() != Some(&key) {
                    keys.push(index.id, key);
                }
            }
        }
    }
    keys
}
