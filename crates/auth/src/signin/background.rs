//! Work the sign-in does on its own: cleaning up, and announcing ended sessions.
//!
//! Why cleanup: Convex Auth never deletes abandoned verifiers, expired sessions or used
//! refresh tokens (about one per hour per active client accumulates). Here a task deletes
//! them every `AUTH_CLEANUP_INTERVAL_MS`, looking at no more than
//! `AUTH_CLEANUP_BATCH_COUNT` documents per table per run, so a run never becomes a long
//! transaction. Tables whose garbage is not in creation order are walked with a cursor that
//! wraps around. Deleting a used refresh token after its reuse window keeps the security
//! outcome: presenting it later ends the session, just as reuse detection does. Expired
//! sessions that are deleted are announced as ended, like any other.
//!
//! Why an announcer task: sessions deleted by app code calling `auth:store` itself are
//! noted by the mutation but settled by nobody else; the task settles after every commit.
//!
//! Both tasks hold the sign-in only weakly and stop when the deployment is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use conflux_common::{knobs, Identity, Result};
use conflux_db::{Database, IndexRange};
use parking_lot::Mutex;

use crate::signin::store::{end_session, Scan, Store};
use crate::signin::tables::{
    id_field, num_field, RATE_LIMITS, REFRESH_TOKENS, SESSIONS, VERIFICATION_CODES, VERIFIERS,
};
use crate::signin::Core;

/// A rate-limit row untouched this long has refilled completely.
const RATE_LIMIT_IDLE_MS: f64 = 3_600_000.0;
/// How often the announcer checks that the sign-in still exists when nothing commits.
const LIVENESS_CHECK: Duration = Duration::from_secs(30);

/// What one cleanup run deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Expired sessions deleted (each announced as ended).
    pub sessions_ended: usize,
    /// Refresh tokens deleted: expired, used longer ago than the reuse window, or orphaned.
    pub refresh_tokens_deleted: usize,
    /// Verifiers of sign-ins abandoned for longer than the verifier lifetime.
    pub verifiers_deleted: usize,
    /// Expired one-time codes.
    pub codes_deleted: usize,
    /// Rate-limit rows that refilled completely.
    pub rate_limits_deleted: usize,
}

/// Where the walk of each table resumes (a `_creationTime`; 0 = from the start).
#[derive(Default)]
pub(crate) struct Cursors {
    positions: Mutex<HashMap<&'static str, f64>>,
}

impl Cursors {
    fn get(&self, table: &'static str) -> f64 {
        self.positions.lock().get(table).copied().unwrap_or(0.0)
    }

    fn set(&self, table: &'static str, position: f64) {
        self.positions.lock().insert(table, position);
    }
}

/// Start the cleanup and announcer tasks (inside a Tokio runtime).
pub(crate) fn spawn(core: Weak<Core>, db: &Database) {
    if tokio::runtime::Handle::try_current().is_err() {
        tracing::warn!(
            "InstalledAuth::attach was called outside a Tokio runtime: no background cleanup"
        );
        return;
    }
    let mut commits = db.commit_watch();
    let announcer = core.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = commits.changed() => if changed.is_err() { break },
                () = tokio::time::sleep(LIVENESS_CHECK) => {}
            }
            let Some(core) = announcer.upgrade() else {
                break;
            };
            if core.sessions.has_noted() {
                core.settle().await;
            }
        }
    });
    tokio::spawn(async move {
        let interval =
            Duration::from_millis(*knobs::AUTH_CLEANUP_INTERVAL_MS).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(interval).await;
            let Some(core) = core.upgrade() else { break };
            match cleanup(&core).await {
                Ok(report) if report != CleanupReport::default() => {
                    tracing::info!(?report, "sign-in cleanup")
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "sign-in cleanup failed; retrying next run")
                }
            }
        }
    });
}

/// One page of a table walked in creation order from its cursor; the cursor moves past it,
/// or back to the start when the page was the last.
fn page(
    tx: &mut impl Store,
    table: &'static str,
    cursor: f64,
    batch: usize,
) -> Result<(Vec<conflux_db::Document>, f64)> {
    let docs = tx.scan(Scan::new(
        table,
        "by_creation_time",
        IndexRange::new().gt("_creationTime", cursor),
        batch,
    ))?;
    let next = if docs.len() < batch {
        0.0
    } else {
        docs.last().map_or(0.0, |doc| doc.creation_time)
    };
    Ok((docs, next))
}

/// One cleanup run (see the module docs).
pub(crate) async fn cleanup(core: &Arc<Core>) -> Result<CleanupReport> {
    let batch = (*knobs::AUTH_CLEANUP_BATCH_COUNT).max(1);
    let mut report = CleanupReport::default();
    let mut first_error = None;

    let cursor = core.cleanup.get(SESSIONS);
    match core
        .transact(Identity::Anonymous, move |tx, ctx| {
            let (docs, next) = page(tx, SESSIONS, cursor, batch)?;
            let mut ended = 0;
            for doc in docs {
                if num_field(&doc, "expirationTime").is_none_or(|expires| expires <= ctx.now_ms)
                    && end_session(tx, ctx.core, &doc.id)?
                {
                    ended += 1;
                }
            }
            Ok((ended, next))
        })
        .await
    {
        Ok((ended, next)) => {
            report.sessions_ended = ended;
            core.cleanup.set(SESSIONS, next);
        }
        Err(err) => first_error = first_error.or(Some(err)),
    }

    let cursor = core.cleanup.get(REFRESH_TOKENS);
    let window_ms = core.lifetimes.refresh_reuse_window.as_millis() as f64;
    match core
        .transact(Identity::Anonymous, move |tx, ctx| {
            let (docs, next) = page(tx, REFRESH_TOKENS, cursor, batch)?;
            let mut deleted = 0;
            for doc in docs {
                let expired =
                    num_field(&doc, "expirationTime").is_none_or(|expires| expires <= ctx.now_ms);
                let spent = num_field(&doc, "firstUsedTime")
                    .is_some_and(|first| first + window_ms <= ctx.now_ms);
                let orphan = match id_field(&doc, "sessionId") {
                    Some(session) => tx.get_in(SESSIONS, &session)?.is_none(),
                    None => true,
                };
                if expired || spent || orphan {
                    tx.delete(&doc.id)?;
                    deleted += 1;
                }
            }
            Ok((deleted, next))
        })
        .await
    {
        Ok((deleted, next)) => {
            report.refresh_tokens_deleted = deleted;
            core.cleanup.set(REFRESH_TOKENS, next);
        }
        Err(err) => first_error = first_error.or(Some(err)),
    }

    let verifier_ms = core.lifetimes.verifier.as_millis() as f64;
    match core
        .transact(Identity::Anonymous, move |tx, ctx| {
            let abandoned = tx.scan(Scan::new(
                VERIFIERS,
                "by_creation_time",
                IndexRange::new().lt("_creationTime", ctx.now_ms - verifier_ms),
                batch,
            ))?;
            for doc in &abandoned {
                tx.delete(&doc.id)?;
            }
            Ok(abandoned.len())
        })
        .await
    {
        Ok(deleted) => report.verifiers_deleted = deleted,
        Err(err) => first_error = first_error.or(Some(err)),
    }

    let cursor = core.cleanup.get(VERIFICATION_CODES);
    match core
        .transact(Identity::Anonymous, move |tx, ctx| {
            let (docs, next) = page(tx, VERIFICATION_CODES, cursor, batch)?;
            let mut deleted = 0;
            for doc in docs {
                if num_field(&doc, "expirationTime").is_none_or(|expires| expires <= ctx.now_ms) {
                    tx.delete(&doc.id)?;
                    deleted += 1;
                }
            }
            Ok((deleted, next))
        })
        .await
    {
        Ok((deleted, next)) => {
            report.codes_deleted = deleted;
            core.cleanup.set(VERIFICATION_CODES, next);
        }
        Err(err) => first_error = first_error.or(Some(err)),
    }

    let cursor = core.cleanup.get(RATE_LIMITS);
    match core
        .transact(Identity::Anonymous, move |tx, ctx| {
            let (docs, next) = page(tx, RATE_LIMITS, cursor, batch)?;
            let mut deleted = 0;
            for doc in docs {
                if num_field(&doc, "lastAttemptTime")
                    .is_none_or(|last| last + RATE_LIMIT_IDLE_MS <= ctx.now_ms)
                {
                    tx.delete(&doc.id)?;
                    deleted += 1;
                }
            }
            Ok((deleted, next))
        })
        .await
    {
        Ok((deleted, next)) => {
            report.rate_limits_deleted = deleted;
            core.cleanup.set(RATE_LIMITS, next);
        }
        Err(err) => first_error = first_error.or(Some(err)),
    }

    match first_error {
        Some(err) => Err(err),
        None => Ok(report),
    }
}
