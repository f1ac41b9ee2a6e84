//! The cache of validated tokens, so that a token seen before validates in microseconds.
//!
//! Why: clients re-send the same token on every reconnect and every HTTP request, and a
//! signature check costs tens of microseconds to a millisecond. Entries are keyed by the
//! SHA-256 of the token (the token itself is a credential and is not kept as a key), the
//! cache is bounded (oldest entries go first), and an entry is dropped once its token's
//! `exp` has passed, so the cache never extends a token's life. Only successes are cached;
//! the session of our own tokens (`UserIdentity::session_id`) is still checked on every hit.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use conflux_common::UserIdentity;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

/// The cache key of a token.
pub(crate) type TokenDigest = [u8; 32];

/// Hash a token for the cache.
pub(crate) fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// A validated token.
#[derive(Clone, Debug)]
pub(crate) struct CachedToken {
    pub identity: Arc<UserIdentity>,
    /// The token's `exp`: the entry is unusable from this second on.
    pub expires_at_secs: u64,
}

struct Inner {
    entries: HashMap<TokenDigest, CachedToken>,
    /// Insertion order, for eviction. May hold digests already removed; they are skipped.
    order: VecDeque<TokenDigest>,
}

/// A bounded map from token digest to validated identity.
pub(crate) struct TokenCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens; 0 disables it.
    pub(crate) fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The cached validation of the token, unless it has expired at `now_secs`.
    pub(crate) fn get(&self, key: &TokenDigest, now_secs: u64) -> Option<CachedToken> {
        if !self.enabled() {
            return None;
        }
        let mut inner = self.inner.lock();
        let entry = inner.entries.get(key)?;
        if now_secs >= entry.expires_at_secs {
            inner.entries.remove(key);
            return None;
        }
        Some(entry.clone())
    }

    /// Remember a validated token, evicting the oldest entries beyond the capacity.
    pub(crate) fn insert(&self, key: TokenDigest, entry: CachedToken) {
        if !self.enabled() {
            return;
        }
        let mut inner = self.inner.lock();
        if inner.entries.insert(key, entry).is_some() {
            return;
        }
        inner.order.push_back(key);
        while inner.entries.len() > self.capacity {
            match inner.order.pop_front() {
                Some(oldest) => {
                    inner.entries.remove(&oldest);
                }
                None => break,
            }
        }
        // Digests of entries removed on expiry linger in `order`; compact when they pile up.
        if inner.order.len() > self.capacity.saturating_mul(2) {
            let Inner { entries, order } = &mut *inner;
            order.retain(|digest| entries.contains_key(digest));
        }
    }

    /// Number of cached tokens.
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn entry(sub: &str, exp: u64) -> CachedToken {
        CachedToken {
            identity: Arc::new(UserIdentity {
                token_identifier: format!("iss|{sub}"),
                subject: sub.into(),
                issuer: "iss".into(),
                attributes: Map::new(),
                expires_at_secs: Some(exp),
                session_id: None,
            }),
            expires_at_secs: exp,
        }
    }

    #[test]
    fn entries_expire_with_their_token() {
        let cache = TokenCache::new(10);
        cache.insert(digest("t1"), entry("u1", 100));
        assert!(cache.get(&digest("t1"), 99).is_some());
        assert!(cache.get(&digest("t1"), 100).is_none());
        assert_eq!(cache.len(), 0, "an expired entry is dropped when seen");
    }

    #[test]
    fn the_cache_stays_within_its_capacity_dropping_the_oldest() {
        let cache = TokenCache::new(3);
        for i in 0..10 {
            cache.insert(digest(&format!("t{i}")), entry(&format!("u{i}"), 1_000));
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&digest("t9"), 0).is_some());
        assert!(cache.get(&digest("t6"), 0).is_none());
        let disabled = TokenCache::new(0);
        disabled.insert(digest("t"), entry("u", 1_000));
        assert!(disabled.get(&digest("t"), 0).is_none());
    }
}
