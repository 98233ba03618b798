//! The introspection hot path: live sessions by token hash, and each
//! identity's current claims, in memory.
//!
//! Sharded `RwLock<HashMap>`s keyed by the token hash. The hash is already
//! uniformly random, so the shard index and the map's hash are simply bytes
//! of it (no SipHash on the hot path). Locks are `std` locks held for one
//! lookup and never across an `.await`; the last use of a session is an
//! atomic written under the read lock.
//!
//! The cache is never stale about revocation: the engine removes a session
//! here *before* it commits the revocation, so a token stops introspecting
//! active no later than the moment its revocation is acknowledged, and a
//! failed commit errs towards closed (the replay at start-up re-applies it).
//! Suspension is flagged here before its commit for the same reason.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use lockstep_domain::{
    ClientId, GroupId, IdentityId, IdentityKind, Session, SessionId, Tiers, Timestamp, TokenHash,
};

const SHARDS: usize = 64;

/// What introspection needs about a live session. Secrets are not here.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) id: SessionId,
    pub(crate) identity: IdentityId,
    /// The login name issued.
    pub(crate) user_name: Box<str>,
    pub(crate) client: Option<ClientId>,
    pub(crate) issued_at: Timestamp,
    pub(crate) expires_at: Timestamp,
    /// Suspended sessions introspect inactive until resumed.
    pub(crate) suspended: bool,
    /// Last use, in µs; the idle timeout counts from here.
    last_seen: AtomicI64,
    /// Used since the last time last use was persisted.
    dirty: AtomicBool,
}

/// A copy of a live session as introspection answers it.
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
    /// Last use before this one.
    pub last_seen: Timestamp,
    /// Whether it is suspended.
    pub suspended: bool,
}

impl Entry {
    fn from_session(s: &Session) -> Self {
        Self {
            id: s.id,
            identity: s.identity,
            user_name: s.user_name.clone().into_boxed_str(),
            client: s.client,
            issued_at: s.issued_at,
            expires_at: s.expires_at,
            suspended: s.state.is_suspended(),
            last_seen: AtomicI64::new(s.last_seen.micros()),
            dirty: AtomicBool::new(false),
        }
    }

    fn snapshot(&self) -> CachedSession {
        CachedSession {
            id: self.id,
            identity: self.identity,
            user_name: self.user_name.clone(),
            client: self.client,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            last_seen: Timestamp(self.last_seen.load(Ordering::Relaxed)),
            suspended: self.suspended,
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

type Shard = HashMap<TokenHash, Entry, BuildHasherDefault<PassThrough>>;

/// Live sessions by token hash.
#[derive(Debug)]
pub(crate) struct SessionCache {
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
    pub(crate) fn insert(&self, session: &Session) {
        let entry = Entry::from_session(session);
        let mut shard = self.shard(&session.token_hash).write().unwrap_or_else(|p| p.into_inner());
        shard.insert(session.token_hash, entry);
    }

    /// Looks a token hash up. Returns a copy so no lock outlives the call.
    pub(crate) fn get(&self, key: &TokenHash) -> Option<CachedSession> {
        let shard = self.shard(key).read().unwrap_or_else(|p| p.into_inner());
        shard.get(key).map(Entry::snapshot)
    }

    /// Looks a token hash up and, if `use_it` accepts the session as it
    /// was, records `now` as its last use. The introspection path.
    pub(crate) fn use_session(
        &self,
        key: &TokenHash,
        now: Timestamp,
        use_it: impl FnOnce(&CachedSession) -> bool,
    ) -> Option<CachedSession> {
        let shard = self.shard(key).read().unwrap_or_else(|p| p.into_inner());
        let entry = shard.get(key)?;
        let snapshot = entry.snapshot();
        if !use_it(&snapshot) {
            return None;
        }
        entry.last_seen.fetch_max(now.micros(), Ordering::Relaxed);
        if !entry.dirty.load(Ordering::Relaxed) {
            entry.dirty.store(true, Ordering::Relaxed);
        }
        Some(snapshot)
    }

    /// Removes a session (revoked or expired).
    pub(crate) fn remove(&self, key: &TokenHash) -> bool {
        let mut shard = self.shard(key).write().unwrap_or_else(|p| p.into_inner());
        shard.remove(key).is_some()
    }

    /// Updates a session in place, if present.
    pub(crate) fn update(&self, key: &TokenHash, f: impl FnOnce(&mut Entry)) {
        let mut shard = self.shard(key).write().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = shard.get_mut(key) {
            f(entry);
        }
    }

    /// Number of cached sessions.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().map_or(0, |s| s.len())).sum()
    }

    /// Drops entries that expired (or are idle beyond `idle(identity)`)
    /// before `now`; returns how many went (memory hygiene: they already
    /// introspect inactive).
    pub(crate) fn sweep(&self, now: Timestamp, idle: impl Fn(IdentityId) -> Option<i64>) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut shard = shard.write().unwrap_or_else(|p| p.into_inner());
            let before = shard.len();
            shard.retain(|_, s| {
                let idle_out = idle(s.identity)
                    .is_some_and(|limit| now.micros() - s.last_seen.load(Ordering::Relaxed) > limit);
                s.expires_at > now && !idle_out
            });
            removed += before - shard.len();
        }
        removed
    }

    /// Last uses not persisted yet: (session, last use), clearing the marks.
    pub(crate) fn take_dirty(&self) -> Vec<(SessionId, Timestamp)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let shard = shard.read().unwrap_or_else(|p| p.into_inner());
            for entry in shard.values() {
                if entry.dirty.swap(false, Ordering::Relaxed) {
                    out.push((entry.id, Timestamp(entry.last_seen.load(Ordering::Relaxed))));
                }
            }
        }
        out
    }

    /// The identities with a session in the cache.
    pub(crate) fn identities(&self) -> std::collections::HashSet<IdentityId> {
        let mut out = std::collections::HashSet::new();
        for shard in &self.shards {
            let shard = shard.read().unwrap_or_else(|p| p.into_inner());
            out.extend(shard.values().map(|e| e.identity));
        }
        out
    }
}

/// An identity's claims as of the last bridge step: what introspection
/// reports beside the session (groups, tiers, kind).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// Kind.
    pub kind: IdentityKind,
    /// Policy tiers.
    pub tiers: Tiers,
    /// Groups (id, displayName), by name.
    pub groups: Vec<(GroupId, Box<str>)>,
}

type ClaimsShard = HashMap<IdentityId, Arc<Claims>>;

/// Claims of the identities that hold live sessions, maintained by the
/// bridge step from the events it applies, so that no introspection answer
/// is older than the last bridge step and none reads the disk.
#[derive(Debug)]
pub(crate) struct ClaimsIndex {
    shards: Vec<RwLock<ClaimsShard>>,
}

impl Default for ClaimsIndex {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| RwLock::new(ClaimsShard::default())).collect() }
    }
}

impl ClaimsIndex {
    fn shard(&self, id: &IdentityId) -> &RwLock<ClaimsShard> {
        &self.shards[usize::from(id.as_uuid().as_bytes()[15]) % SHARDS]
    }

    pub(crate) fn get(&self, id: &IdentityId) -> Option<Arc<Claims>> {
        self.shard(id).read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    pub(crate) fn contains(&self, id: &IdentityId) -> bool {
        self.shard(id).read().unwrap_or_else(|p| p.into_inner()).contains_key(id)
    }

    pub(crate) fn set(&self, id: IdentityId, claims: Claims) {
        self.shard(&id).write().unwrap_or_else(|p| p.into_inner()).insert(id, Arc::new(claims));
    }

    /// Changes an identity's claims, if held.
    pub(crate) fn update(&self, id: &IdentityId, f: impl FnOnce(&mut Claims)) {
        let mut shard = self.shard(id).write().unwrap_or_else(|p| p.into_inner());
        if let Some(claims) = shard.get_mut(id) {
            f(Arc::make_mut(claims));
        }
    }

    pub(crate) fn remove(&self, id: &IdentityId) {
        self.shard(id).write().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// A group was renamed: every holder's claims show the new name.
    pub(crate) fn rename_group(&self, group: GroupId, name: &str) {
        for shard in &self.shards {
            let mut shard = shard.write().unwrap_or_else(|p| p.into_inner());
            for claims in shard.values_mut() {
                if claims.groups.iter().any(|(g, _)| *g == group) {
                    let claims = Arc::make_mut(claims);
                    for (g, n) in &mut claims.groups {
                        if *g == group {
                            *n = name.into();
                        }
                    }
                    claims.groups.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
                }
            }
        }
    }

    /// Keeps only the identities `keep` says to.
    pub(crate) fn retain(&self, keep: impl Fn(&IdentityId) -> bool) {
        for shard in &self.shards {
            shard.write().unwrap_or_else(|p| p.into_inner()).retain(|id, _| keep(id));
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().map_or(0, |s| s.len())).sum()
    }
}
