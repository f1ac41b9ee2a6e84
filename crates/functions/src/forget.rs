//! Forgetting old mutation records: the background cleanup of `_session_requests`.
//!
//! Why: every mutation sent over a WebSocket leaves a record `(sessionId, requestId,
//! result)` so that a client resending it after a reconnect gets the first result instead
//! of a second execution. Kept forever, these records would make the database (and the
//! store's caches) grow with every mutation ever made. A client resends only mutations it
//! sent before a disconnect, when it reconnects, so a record is needed only for as long as
//! a client may stay away with a mutation unanswered: `SESSION_REQUEST_RETENTION_MS`
//! (24 hours by default). A resend arriving later than that runs the mutation again.
//!
//! The cleanup runs every `SESSION_REQUEST_CLEANUP_INTERVAL_MS` and deletes expired
//! records in creation order, `SESSION_REQUEST_CLEANUP_BATCH_COUNT` per transaction; it
//! conflicts with nothing but a concurrent cleanup, and a failed round is retried at the
//! next interval.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conflux_common::{knobs, Result};
use conflux_db::{Database, IndexRange};

use crate::runner::SESSION_REQUESTS_TABLE;

/// Delete the records of mutations made more than `retention` ago, `batch` per
/// transaction; returns how many were deleted. Does nothing (and returns 0) when the
/// schema has no `_session_requests` table.
pub async fn forget_session_requests(
    db: &Database,
    retention: Duration,
    batch: usize,
) -> Result<usize> {
    if !db
        .table_names()
        .iter()
        .any(|name| name == SESSION_REQUESTS_TABLE)
    {
        return Ok(0);
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0);
    let cutoff = now_ms - retention.as_secs_f64() * 1000.0;
    let batch = batch.max(1);
    let mut deleted = 0;
    loop {
        let worker = db.clone();
        let tx = tokio::task::spawn_blocking(move || -> Result<_> {
            let mut tx = worker.begin();
            let expired = tx
                .query(SESSION_REQUESTS_TABLE)?
                .with_index(
                    "by_creation_time",
                    IndexRange::new().lt("_creationTime", cutoff),
                )?
                .take(batch)?;
            for doc in &expired {
                tx.delete(&doc.id)?;
            }
            Ok((tx, expired.len()))
        })
        .await
        .map_err(|err| conflux_common::Error::internal(format!("cleanup task failed: {err}")))?;
        let (tx, count) = tx?;
        if count == 0 {
            return Ok(deleted);
        }
        db.commit(tx).await?;
        deleted += count;
        if count < batch {
            return Ok(deleted);
        }
    }
}

/// Run [`forget_session_requests`] every `SESSION_REQUEST_CLEANUP_INTERVAL_MS` for as long
/// as `database` returns the database (it holds the runner weakly, so a dropped runner
/// neither keeps the database open nor keeps the task alive).
pub(crate) fn spawn(database: impl Fn() -> Option<Database> + Send + 'static) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::debug!("no Tokio runtime: mutation records are not cleaned up in the background");
        return;
    };
    let interval = Duration::from_millis(*knobs::SESSION_REQUEST_CLEANUP_INTERVAL_MS);
    if interval.is_zero() {
        return;
    }
    let retention = Duration::from_millis(*knobs::SESSION_REQUEST_RETENTION_MS);
    let batch = *knobs::SESSION_REQUEST_CLEANUP_BATCH_COUNT;
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(db) = database() else { break };
            match forget_session_requests(&db, retention, batch).await {
                Ok(0) => {}
                Ok(deleted) => tracing::debug!(deleted, "old mutation records forgotten"),
                Err(err) => {
                    tracing::warn!(error = %err, "cleanup of old mutation records failed; retrying next interval")
                }
            }
        }
    });
}
