//! Whether the session behind one of our own tokens still exists.
//!
//! Why: our own access tokens live up to an hour, but signing out must take effect at once.
//! Their `sub` is `"<userId>|<sessionId>"`, so on every use of such a token (cached or not)
//! the validator asks a [`SessionChecker`] whether the session is still active. The
//! built-in sign-in implements the lookup against its sessions table; [`SessionCache`] puts
//! a bounded cache in front of it that ending a session clears through
//! [`SessionCache::invalidate`], so the common case costs a hash-map lookup.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use conflux_common::{Result, SessionEnded};
use parking_lot::Mutex;
use tokio::sync::broadcast;

/// Ended sessions buffered for slow listeners of [`SessionCache`]'s events; a listener that
/// falls further behind gets `Lagged` and must re-check its identities.
const SESSION_EVENTS_BUFFER_COUNT: usize = 1024;

/// Answers whether a session of the built-in sign-in is still active.
#[async_trait]
pub trait SessionChecker: Send + Sync + 'static {
    /// `Ok(false)` once the session was signed out, expired or deleted.
    async fn is_session_active(&self, session_id: &str) -> Result<bool>;

    /// Ended sessions as they end, for checkers that learn of them (see
    /// [`SessionCache::invalidate`]); long-lived connections drop identities at once.
    fn session_events(&self) -> Option<broadcast::Receiver<SessionEnded>> {
        None
    }
}

#[derive(Clone, Copy, Debug)]
enum Known {
    /// Active when last looked up, at this instant.
    Active(Instant),
    /// Ended: sessions never come back, so this never expires.
    Ended,
}

struct Inner {
    entries: HashMap<String, Known>,
    order: VecDeque<String>,
    /// Bumped by every invalidation, so a lookup that raced with one is not cached.
    epoch: u64,
}

/// A bounded cache of session states in front of a [`SessionChecker`].
pub struct SessionCache {
    lookup: Arc<dyn SessionChecker>,
    capacity: usize,
    active_ttl: Duration,
    inner: Mutex<Inner>,
    ended: broadcast::Sender<SessionEnded>,
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache")
            .field("capacity", &self.capacity)
            .field("active_ttl", &self.active_ttl)
            .finish_non_exhaustive()
    }
}

impl SessionCache {
    /// Cache up to `capacity` session states from `lookup`; an "active" answer is trusted
    /// for `active_ttl` (so sessions that expire by time are noticed), an "ended" answer
    /// forever.
    pub fn new(
        lookup: Arc<dyn SessionChecker>,
        capacity: usize,
        active_ttl: Duration,
    ) -> SessionCache {
        SessionCache {
            lookup,
            capacity: capacity.max(1),
            active_ttl,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                order: VecDeque::new(),
                epoch: 0,
            }),
            ended: broadcast::channel(SESSION_EVENTS_BUFFER_COUNT).0,
        }
    }

    /// Forget what is known about `session_id` and announce that it ended: call it when a
    /// session ends (sign-out, refresh-token reuse), so its tokens are refused from the next
    /// use on and listeners of [`SessionChecker::session_events`] drop it at once.
    pub fn invalidate(&self, session_id: &str) {
        {
            let mut inner = self.inner.lock();
            inner.epoch += 1;
            inner.entries.remove(session_id);
        }
        // No listener is fine: nobody holds an identity of that session.
        let _ = self.ended.send(SessionEnded {
            session_id: session_id.to_owned(),
        });
    }

    fn remember(&self, session_id: &str, known: Known, epoch_before: u64) {
        let mut inner = self.inner.lock();
        if inner.epoch != epoch_before {
            // An invalidation happened while the lookup ran; its answer may be stale.
            return;
        }
        if inner.entries.insert(session_id.to_owned(), known).is_none() {
            inner.order.push_back(session_id.to_owned());
        }
        while inner.entries.len() > self.capacity {
            match inner.order.pop_front() {
                Some(oldest) => {
                    inner.entries.remove(&oldest);
                }
                None => break,
            }
        }
        if inner.order.len() > self.capacity.saturating_mul(2) {
            let Inner { entries, order, .. } = &mut *inner;
            order.retain(|id| entries.contains_key(id));
        }
    }
}

#[async_trait]
impl SessionChecker for SessionCache {
    async fn is_session_active(&self, session_id: &str) -> Result<bool> {
        let epoch_before = {
            let inner = self.inner.lock();
            match inner.entries.get(session_id) {
                Some(Known::Ended) => return Ok(false),
                Some(Known::Active(at)) if at.elapsed() < self.active_ttl => return Ok(true),
                Some(Known::Active(_)) | None => inner.epoch,
            }
        };
        let active = self.lookup.is_session_active(session_id).await?;
        let known = if active {
            Known::Active(Instant::now())
        } else {
            Known::Ended
        };
        self.remember(session_id, known, epoch_before);
        Ok(active)
    }

    fn session_events(&self) -> Option<broadcast::Receiver<SessionEnded>> {
        Some(self.ended.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A sessions table: the ids in `active`, counting lookups.
    #[derive(Default)]
    struct Table {
        active: Mutex<HashSet<String>>,
        lookups: AtomicUsize,
    }

    #[async_trait]
    impl SessionChecker for Table {
        async fn is_session_active(&self, session_id: &str) -> Result<bool> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            Ok(self.active.lock().contains(session_id))
        }
    }

    #[tokio::test]
    async fn signing_out_takes_effect_on_the_next_check_and_checks_are_cached() -> Result<()> {
        let table = Arc::new(Table::default());
        table.active.lock().insert("s1".into());
        let cache = SessionCache::new(table.clone(), 100, Duration::from_secs(60));
        let mut events = cache
            .session_events()
            .expect("the cache announces ended sessions");

        assert!(cache.is_session_active("s1").await?);
        assert!(cache.is_session_active("s1").await?);
        assert_eq!(
            table.lookups.load(Ordering::SeqCst),
            1,
            "the second check is served from the cache"
        );

        // Sign-out: the row goes, the cache is told.
        table.active.lock().remove("s1");
        cache.invalidate("s1");
        assert!(!cache.is_session_active("s1").await?);
        assert!(!cache.is_session_active("s1").await?);
        assert_eq!(
            table.lookups.load(Ordering::SeqCst),
            2,
            "an ended session is remembered as ended"
        );
        assert_eq!(
            events.try_recv().ok(),
            Some(SessionEnded {
                session_id: "s1".into()
            })
        );
        Ok(())
    }

    #[tokio::test]
    async fn active_answers_are_rechecked_after_their_ttl() -> Result<()> {
        let table = Arc::new(Table::default());
        table.active.lock().insert("s1".into());
        let cache = SessionCache::new(table.clone(), 100, Duration::ZERO);
        assert!(cache.is_session_active("s1").await?);
        table.active.lock().remove("s1");
        assert!(
            !cache.is_session_active("s1").await?,
            "a session that expired by time is noticed"
        );
        Ok(())
    }
}
