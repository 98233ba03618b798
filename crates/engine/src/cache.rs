//! The introspection hot path: live sessions by token hash, in memory.
//!
//! Sharded `RwLock<HashMap>`s keyed by the token hash. The hash is already
//! uniformly random, so the shard index and the map's hash are simply bytes
//! of it (no SipHash on the hot path). Locks are `std` locks held for one
//! lookup and never across an `.await`.
//!
//! The cache is never stale about revocation: the engine removes a session
//! here *before* it commits the revocation, so a token stops introspecting
//! active no later than the moment its revocation is acknowledged, and a
//! failed commit errs towards closed (the replay at start-up re-applies it).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::RwLock;

use lockstep_domain::{ClientId, IdentityId, Session, SessionId, SessionState, Timestamp, TokenHash};

const SHARDS: usize = 64;

/// What introspection needs about a live session. Secrets are not here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedSession {
    /// Session id.
    pub id: SessionId,
    /// The identity it belongs to.
    pub identity: IdentityId,
    /// Issued login name.
    pub user_name: Box<str>,
    /// Client it was issued to, if any.
    pub client: Option<ClientId>,
    /// Issue time.
    pub issued_at: Timestamp,
    /// Absolute expiry.
    pub expires_at: Timestamp,
    /// Whether the next use needs a fresh directory decision.
    pub needs_recheck: bool,
}

impl CachedSession {
    fn from_session(s: &Session) -> Self {
        Self {
            id: s.id,
            identity: s.identity,
            user_name: s.user_name.clone().into_boxed_str(),
            client: s.client,
            issued_at: s.issued_at,
            expires_at: s.expires_at,
            needs_recheck: matches!(s.state, SessionState::NeedsRecheck),
        }
    }
}

/// Hasher that takes the first 8 bytes of an already random key.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 |= u64::from(*b) << (8 * i);
        }
    }
}

type Shard = HashMap<TokenHash, CachedSession, BuildHasherDefault<PassThrough>>;

/// Live sessions by token hash.
#[derive(Debug)]
pub struct SessionCache {
    shards: Vec<RwLock<Shard>>,
}

impl Default for SessionCache {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect() }
    }
}

impl SessionCache {
    fn shard(&self, key: &TokenHash) -> &RwLock<Shard> {
        // The last byte picks the shard; the first eight feed the map hash.
        &self.shards[usize::from(key.0[31]) % SHARDS]
    }

    /// Adds a live session.
    pub fn insert(&self, session: &Session) {
        let entry = CachedSession::from_session(session);
        let mut shard = self.shard(&session.token_hash).write().unwrap_or_else(|p| p.into_inner());
        shard.insert(session.token_hash, entry);
    }

    /// Looks a token hash up. Returns a copy so no lock outlives the call.
    pub fn get(&self, key: &TokenHash) -> Option<CachedSession> {
        let shard = self.shard(key).read().unwrap_or_else(|p| p.into_inner());
        shard.get(key).cloned()
    }

    /// Removes a session (revoked or expired).
    pub fn remove(&self, key: &TokenHash) {
        let mut shard = self.shard(key).write().unwrap_or_else(|p| p.into_inner());
        shard.remove(key);
    }

    /// Updates a session in place, if present.
    pub fn update(&self, key: &TokenHash, f: impl FnOnce(&mut CachedSession)) {
        let mut shard = self.shard(key).write().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = shard.get_mut(key) {
            f(entry);
        }
    }

    /// Number of cached sessions.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().map_or(0, |s| s.len())).sum()
    }

    /// Drops entries that expired before `now` (memory hygiene; expired
    /// entries already introspect inactive).
    pub fn sweep_expired(&self, now: Timestamp) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut shard = shard.write().unwrap_or_else(|p| p.into_inner());
            let before = shard.len();
            shard.retain(|_, s| s.expires_at > now);
            removed += before - shard.len();
        }
        removed
    }
}
