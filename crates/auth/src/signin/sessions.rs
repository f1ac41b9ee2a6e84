//! Ending a session everywhere at once.
//!
//! Why this module exists: a session ends inside a transaction (sign-out, a refresh token
//! reused after its window, expiry cleanup, a new sign-in replacing the caller's session),
//! but two things must happen outside it, and only if the transaction committed:
//!
//! 1. the [`SessionCache`] in front of the sessions table forgets the session, so our tokens
//!    of that session are refused from the next use on (socket, HTTP API, session
//!    endpoint), even though their `exp` has not passed;
//! 2. a [`conflux_common::SessionEnded`] event goes out on the broadcast that
//!    [`conflux_common::TokenValidator::session_events`] hands to the sync layer, which
//!    drops the identity of every socket of that session.
//!
//! Code inside a transaction cannot know whether its transaction will commit (a mutation may
//! lose a conflict and run again, or fail later). So a transaction only *notes* the sessions
//! it deletes, and [`SessionLayer::settle`] runs after commits: a noted session that no
//! longer exists in the latest snapshot has ended, and is announced; one that still exists
//! stays noted (its transaction has not committed yet) until it is too old to matter.
//! Every path of the sign-in settles right after its own commit; a task settles after any
//! other commit, for app code that calls `auth:store` itself.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use conflux_common::{knobs, Error, Result};
use conflux_db::Database;
use conflux_values::DocumentId;
use parking_lot::Mutex;

use crate::signin::now_ms;
use crate::signin::tables::{num_field, SESSIONS};
use crate::validation::{SessionCache, SessionChecker};

/// A noted session that still exists after this long belongs to a transaction that never
/// committed; it is forgotten.
const NOTED_MAX_AGE: Duration = Duration::from_secs(30);
/// Most sessions noted at once; beyond this the oldest notes are forgotten (each settle
/// empties the notes of committed transactions, so this is only reached by runaway callers).
const NOTED_MAX_COUNT: usize = 100_000;

/// The database a sign-in installation works on, set once the function runner exists.
pub(crate) type DbCell = Arc<OnceLock<Database>>;

/// The database of `cell`, or an error saying the sign-in is not attached yet.
pub(crate) fn database(cell: &DbCell) -> Result<Database> {
    cell.get().cloned().ok_or_else(|| {
        Error::internal(
            "the built-in sign-in is not attached to a function runner yet (InstalledAuth::attach)",
        )
    })
}

/// Looks sessions up in the `authSessions` table.
struct TableLookup {
    db: DbCell,
}

#[async_trait]
impl SessionChecker for TableLookup {
    async fn is_session_active(&self, session_id: &str) -> Result<bool> {
        let Ok(id) = session_id.parse::<DocumentId>() else {
            return Ok(false);
        };
        let db = database(&self.db)?;
        if db.table_name_of(&id).as_deref() != Some(SESSIONS) {
            return Ok(false);
        }
        let now = now_ms();
        tokio::task::spawn_blocking(move || {
            let mut tx = db.begin();
            let session = tx.get(&id)?;
            Ok(session
                .and_then(|doc| num_field(&doc, "expirationTime"))
                .is_some_and(|expires| expires > now))
        })
        .await
        .map_err(|err| Error::internal(format!("a session lookup task failed: {err}")))?
    }
}

/// The session cache, and the sessions noted as ended by transactions not yet settled.
pub(crate) struct SessionLayer {
    cache: Arc<SessionCache>,
    db: DbCell,
    noted: Mutex<HashMap<String, Instant>>,
    /// Held for a whole settle: a settle that starts right after a commit must not find
    /// the notes drained by one that read an older snapshot and is about to put them back
    /// as "still pending".
    settling: tokio::sync::Mutex<()>,
}

impl SessionLayer {
    pub(crate) fn new(db: DbCell) -> SessionLayer {
        let lookup = Arc::new(TableLookup { db: db.clone() });
        let cache = SessionCache::new(
            lookup,
            *knobs::AUTH_SESSION_CACHE_ENTRIES_COUNT,
            Duration::from_millis(*knobs::AUTH_SESSION_CACHE_TTL_MS),
        );
        SessionLayer {
            cache: Arc::new(cache),
            db,
            noted: Mutex::new(HashMap::new()),
            settling: tokio::sync::Mutex::new(()),
        }
    }

    /// The checker to give the token validator.
    pub(crate) fn checker(&self) -> Arc<SessionCache> {
        self.cache.clone()
    }

    /// A transaction is deleting `session_id`; announce it once that commits.
    pub(crate) fn note_ended(&self, session_id: &DocumentId) {
        let mut noted = self.noted.lock();
        if noted.len() >= NOTED_MAX_COUNT {
            noted.retain(|_, at| at.elapsed() < NOTED_MAX_AGE);
        }
        noted
            .entry(session_id.to_string())
            .or_insert_with(Instant::now);
    }

    /// Whether some noted session waits to be settled.
    pub(crate) fn has_noted(&self) -> bool {
        !self.noted.lock().is_empty()
    }

    /// Announce every noted session that no longer exists: forget it in the cache and
    /// publish `SessionEnded`. Returns the sessions announced.
    pub(crate) async fn settle(&self) -> Result<Vec<String>> {
        let _one_at_a_time = self.settling.lock().await;
        let taken: Vec<(String, Instant)> = self.noted.lock().drain().collect();
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        let db = match database(&self.db) {
            Ok(db) => db,
            Err(err) => {
                self.noted.lock().extend(taken);
                return Err(err);
            }
        };
        let checked = tokio::task::spawn_blocking(move || {
            let mut tx = db.begin();
            let mut gone = Vec::new();
            let mut pending = Vec::new();
            for (session_id, noted_at) in taken {
                let exists = match session_id.parse::<DocumentId>() {
                    Ok(id) => tx.get(&id).map(|doc| doc.is_some()).unwrap_or(true),
                    Err(_) => false,
                };
                if !exists {
                    gone.push(session_id);
                } else if noted_at.elapsed() < NOTED_MAX_AGE {
                    pending.push((session_id, noted_at));
                }
            }
            (gone, pending)
        })
        .await
        .map_err(|err| Error::internal(format!("settling ended sessions failed: {err}")))?;
        let (gone, pending) = checked;
        if !pending.is_empty() {
            let mut noted = self.noted.lock();
            for (session_id, at) in pending {
                noted.entry(session_id).or_insert(at);
            }
        }
        for session_id in &gone {
            tracing::info!(session = %session_id, "session ended; its tokens are refused from now on");
            self.cache.invalidate(session_id);
        }
        Ok(gone)
    }
}
