//! The introspection hot path: live sessions by id, their bearer secrets
//! by hash, and each identity's current claims, in memory.
//!
//! Sharded `RwLock<HashMap>`s. Token hashes are already uniformly random,
//! so the shard index and the map's hash are simply bytes of them (no
//! SipHash on the hot path); session and identity ids are v7 UUIDs, whose
//! last bytes are random. Locks are `std` locks held for one lookup and
//! never across an `.await`; the last use of a session is an atomic written
//! under the read lock.
//!
//! A token is a pointer to its session: revoking a session removes the
//! session, and with it every token of it at once (a token whose session
//! is gone introspects inactive; the sweep drops it later). The engine
//! removes a session here *before* it commits the revocation, so a token
//! stops introspecting active no later than the moment its revocation is
//! acknowledged, and a failed commit errs towards closed (the replay at
//! start-up re-applies it). Suspension is flagged here before its commit
//! for the same reason.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use lockstep_domain::{
    ClientId, CredentialKind, GroupId, IdentityId, IdentityKind, Session, SessionId, Tiers, Timestamp, Token,
    TokenHash,
};
use lockstep_store::LiveSession;

const SHARDS: usize = 64;

/// What introspection needs about a live session. Secrets are not here.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) identity: IdentityId,
    pub(crate) kind: CredentialKind,
    pub(crate) issued_to: Option<ClientId>,
    pub(crate) expires_at: Timestamp,
    /// Suspended sessions introspect inactive until resumed.
    pub(crate) suspended: bool,
    /// Last use, in µs; the idle timeout counts from here.
    last_seen: AtomicI64,
    /// Used since the last time last use was persisted.
    dirty: AtomicBool,
}

/// One bearer secret (an access token or an API key) of a live session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenEntry {
    pub(crate) session: SessionId,
    pub(crate) issued_at: Timestamp,
    pub(crate) expires_at: Timestamp,
}

impl TokenEntry {
    /// What the map keeps of a stored token.
    pub(crate) fn of(token: &Token) -> Self {
        Self { session: token.session, issued_at: token.issued_at, expires_at: token.expires_at }
    }
}

/// Who a live session held in memory belongs to (a lookup by session id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeldSession {
    pub(crate) identity: IdentityId,
    pub(crate) kind: CredentialKind,
    pub(crate) issued_to: Option<ClientId>,
    /// Last use (the idle clock), as held in memory.
    pub(crate) last_seen: Timestamp,
}

/// A copy of a live session and the token presented, as introspection
/// answers them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedSession {
    /// Session id.
    pub id: SessionId,
    /// The identity it belongs to.
    pub identity: IdentityId,
    /// What it is.
    pub kind: CredentialKind,
    /// The API client it was issued to, if any.
    pub issued_to: Option<ClientId>,
    /// When the token presented was issued.
    pub issued_at: Timestamp,
    /// When the token presented stops working (its own expiry or its
    /// session's, whichever comes first).
    pub expires_at: Timestamp,
    /// Last use before this one.
    pub last_seen: Timestamp,
    /// Whether it is suspended.
    pub suspended: bool,
}

impl Entry {
    fn from_session(s: &Session) -> Self {
        Self::from_live(&LiveSession::of(s))
    }

    fn from_live(s: &LiveSession) -> Self {
        Self {
            identity: s.identity,
            kind: s.kind,
            issued_to: s.issued_to,
            expires_at: s.expires_at,
            suspended: s.suspended,
            last_seen: AtomicI64::new(s.last_seen.micros()),
            dirty: AtomicBool::new(false),
        }
    }

    fn snapshot(&self, id: SessionId, token: &TokenEntry) -> CachedSession {
        CachedSession {
            id,
            identity: self.identity,
            kind: self.kind,
            issued_to: self.issued_to,
            issued_at: token.issued_at,
            expires_at: token.expires_at.min(self.expires_at),
            last_seen: Timestamp(self.last_seen.load(Ordering::Relaxed)),
            suspended: self.suspended,
        }
    }
}

/// Hasher for keys that are already random: eight random bytes of the key,
/// multiplied by an odd constant so every bit of the result depends on them.
///
/// Not the last byte: that one picks the shard, so within a shard it is the
/// same for every key, and a hash built on it left hashbrown with one home
/// bucket in 64 (sessions) or one control tag in 64 (tokens), which made
/// loading ten million sessions probe endlessly.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Bytes 7..15 of a v7 UUID are random (but two variant bits);
        // every byte of a token hash is.
        let end = bytes.len().saturating_sub(1);
        let mut word = [0u8; 8];
        for (w, b) in word.iter_mut().zip(&bytes[end.saturating_sub(8)..end]) {
            *w = *b;
        }
        self.0 = (self.0 ^ u64::from_le_bytes(word)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Map<K, V> = HashMap<K, V, BuildHasherDefault<PassThrough>>;

fn shards<K, V>() -> Vec<RwLock<Map<K, V>>> {
    (0..SHARDS).map(|_| RwLock::new(Map::default())).collect()
}

/// Adds staged entries to a shard, rebuilding its map at the final size.
fn install<K: std::hash::Hash + Eq, V>(shard: &RwLock<Map<K, V>>, staged: Vec<(K, V)>) {
    let mut map = shard.write().unwrap_or_else(|p| p.into_inner());
    let mut built = Map::with_capacity_and_hasher(map.len() + staged.len(), Default::default());
    built.extend(map.drain());
    built.extend(staged);
    *map = built;
}

fn session_shard(id: &SessionId) -> usize {
    usize::from(id.as_uuid().as_bytes()[15]) % SHARDS
}

fn token_shard(hash: &TokenHash) -> usize {
    usize::from(hash.0[31]) % SHARDS
}

/// Live sessions by id, and their bearer secrets by hash.
#[derive(Debug)]
pub(crate) struct SessionCache {
    sessions: Vec<RwLock<Map<SessionId, Entry>>>,
    tokens: Arc<Tokens>,
}

/// Bearer secrets by hash. Shared with the thread that loads them at
/// start-up: the server serves once the sessions are held, and a secret
/// the load has not reached yet is looked up in the store (see
/// [`Tokens::loading`]).
#[derive(Debug)]
pub(crate) struct Tokens {
    shards: Vec<RwLock<Map<TokenHash, TokenEntry>>>,
    /// Set until the start-up load has installed every shard: until then a
    /// miss is not an answer.
    loading: AtomicBool,
    /// Secrets shortened while loading, applied again once loaded: the
    /// load's snapshot may predate the shortening.
    shortened: std::sync::Mutex<Vec<(TokenHash, Timestamp)>>,
}

impl Default for SessionCache {
    fn default() -> Self {
        Self { sessions: shards(), tokens: Arc::default() }
    }
}

impl Default for Tokens {
    fn default() -> Self {
        Self { shards: shards(), loading: AtomicBool::new(false), shortened: Default::default() }
    }
}

impl Tokens {
    fn shard(&self, hash: &TokenHash) -> &RwLock<Map<TokenHash, TokenEntry>> {
        &self.shards[token_shard(hash)]
    }

    fn shorten(&self, key: &TokenHash, at: Timestamp) {
        let mut shard = self.shard(key).write().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = shard.get_mut(key) {
            t.expires_at = t.expires_at.min(at);
        }
    }

    /// Marks the map as loading (before serving starts).
    pub(crate) fn begin_loading(&self) {
        self.loading.store(true, Ordering::Release);
    }

    /// Whether the start-up load is still running.
    pub(crate) fn is_loading(&self) -> bool {
        self.loading.load(Ordering::Acquire)
    }

    /// Loads many bearer secrets (about `expected` of them) while the
    /// server serves. Secrets written since the scan's snapshot stay as
    /// written.
    ///
    /// Each shard is sized for its share first, then every secret goes
    /// straight in: no staging as for sessions. Staging ten million
    /// secrets after the sessions' staging buffers had been freed left
    /// about 40 bytes a session in glibc's heap for good (a freed large
    /// buffer raises its mmap threshold, so the later ones came from the
    /// heap), and this load is off the path to serving, so the cache
    /// misses of inserting in arrival order no longer delay anyone.
    pub(crate) fn load(&self, expected: usize, tokens: impl FnOnce(&mut dyn FnMut(&Token))) -> usize {
        let share = expected / SHARDS + expected / SHARDS / 8;
        for shard in &self.shards {
            shard.write().unwrap_or_else(|p| p.into_inner()).reserve(share);
        }
        let mut count = 0;
        tokens(&mut |t| {
            let mut shard = self.shard(&t.hash).write().unwrap_or_else(|p| p.into_inner());
            shard.entry(t.hash).or_insert_with(|| TokenEntry::of(t));
            count += 1;
        });
        count
    }

    /// Empties the map (tests: the state of a map not loaded yet).
    #[cfg(test)]
    pub(crate) fn forget_all(&self) {
        for shard in &self.shards {
            shard.write().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }

    /// Ends the loading state once every secret is in the map (a failed
    /// load leaves it on: the store keeps answering for what is missing).
    pub(crate) fn finish_loading(&self) {
        let mut shortened = self.shortened.lock().unwrap_or_else(|p| p.into_inner());
        for (key, at) in shortened.drain(..) {
            self.shorten(&key, at);
        }
        self.loading.store(false, Ordering::Release);
    }
}

impl SessionCache {
    /// Adds (or replaces) a live session; `true` if it was not held.
    pub(crate) fn insert(&self, session: &Session) -> bool {
        let entry = Entry::from_session(session);
        let mut shard = self.sessions[session_shard(&session.id)].write().unwrap_or_else(|p| p.into_inner());
        shard.insert(session.id, entry).is_none()
    }

    /// Loads many sessions at once (start-up). They are staged by shard
    /// first, then each shard's map is built pre-sized, one shard at a time:
    /// inserting ten million entries in arrival order touched a random
    /// spot of a 1 GB table each time (a cache miss apiece, plus every
    /// rehash on the way), while one shard's table fits in the CPU's cache.
    pub(crate) fn load_sessions(
        &self,
        sessions: impl FnOnce(&mut dyn FnMut(&LiveSession)) -> usize,
    ) -> usize {
        let mut staged: Vec<Vec<(SessionId, Entry)>> = (0..SHARDS).map(|_| Vec::new()).collect();
        let count = sessions(&mut |s| staged[session_shard(&s.id)].push((s.id, Entry::from_live(s))));
        for (shard, entries) in self.sessions.iter().zip(staged) {
            install(shard, entries);
        }
        count
    }

    /// Whether the bearer secrets are still loading.
    pub(crate) fn tokens_loading(&self) -> bool {
        self.tokens.is_loading()
    }

    /// The bearer secrets, for the thread that loads them at start-up.
    pub(crate) fn tokens(&self) -> Arc<Tokens> {
        self.tokens.clone()
    }

    /// Adds a bearer secret of a session.
    pub(crate) fn insert_token(&self, token: &Token) {
        let mut shard = self.tokens.shard(&token.hash).write().unwrap_or_else(|p| p.into_inner());
        shard.insert(token.hash, TokenEntry::of(token));
    }

    /// A secret: from the map, or while the map is still loading, from
    /// `unloaded` (the store).
    fn token(&self, key: &TokenHash, unloaded: impl FnOnce() -> Option<TokenEntry>) -> Option<TokenEntry> {
        let held = self.tokens.shard(key).read().unwrap_or_else(|p| p.into_inner()).get(key).copied();
        if held.is_some() || !self.tokens.is_loading() {
            return held;
        }
        unloaded()
    }

    /// The session a secret belongs to, if both are held (`unloaded`: see
    /// [`SessionCache::use_token`]).
    pub(crate) fn get(
        &self,
        key: &TokenHash,
        unloaded: impl FnOnce() -> Option<TokenEntry>,
    ) -> Option<CachedSession> {
        let token = self.token(key, unloaded)?;
        let shard = self.sessions[session_shard(&token.session)].read().unwrap_or_else(|p| p.into_inner());
        shard.get(&token.session).map(|e| e.snapshot(token.session, &token))
    }

    /// A live session's expiry and whether it is suspended (the Token
    /// Status List's bits).
    pub(crate) fn standing(&self, id: &SessionId) -> Option<(Timestamp, bool)> {
        let shard = self.sessions[session_shard(id)].read().unwrap_or_else(|p| p.into_inner());
        shard.get(id).map(|e| (e.expires_at, e.suspended))
    }

    /// A session by id.
    pub(crate) fn session(&self, id: &SessionId) -> Option<HeldSession> {
        let shard = self.sessions[session_shard(id)].read().unwrap_or_else(|p| p.into_inner());
        shard.get(id).map(|e| HeldSession {
            identity: e.identity,
            kind: e.kind,
            issued_to: e.issued_to,
            last_seen: Timestamp(e.last_seen.load(Ordering::Relaxed)),
        })
    }

    /// Looks a secret up and, if `use_it` accepts its session as it was,
    /// records `now` as the session's last use. The introspection path.
    /// `unloaded` finds a secret the start-up load has not reached yet (it
    /// is asked only while the load runs); its session must be held here
    /// all the same, so a revoked session's secret is never active.
    pub(crate) fn use_token(
        &self,
        key: &TokenHash,
        now: Timestamp,
        unloaded: impl FnOnce() -> Option<TokenEntry>,
        use_it: impl FnOnce(&CachedSession) -> bool,
    ) -> Option<CachedSession> {
        let token = self.token(key, unloaded)?;
        let shard = self.sessions[session_shard(&token.session)].read().unwrap_or_else(|p| p.into_inner());
        let entry = shard.get(&token.session)?;
        let snapshot = entry.snapshot(token.session, &token);
        if !use_it(&snapshot) {
            return None;
        }
        entry.last_seen.fetch_max(now.micros(), Ordering::Relaxed);
        if !entry.dirty.load(Ordering::Relaxed) {
            entry.dirty.store(true, Ordering::Relaxed);
        }
        Some(snapshot)
    }

    /// Removes a session (revoked or expired), and so every token of it.
    pub(crate) fn remove(&self, id: &SessionId) -> bool {
        let mut shard = self.sessions[session_shard(id)].write().unwrap_or_else(|p| p.into_inner());
        shard.remove(id).is_some()
    }

    /// Shortens one secret's life in memory (a rotated secret's grace).
    pub(crate) fn expire_token(&self, key: &TokenHash, at: Timestamp) {
        {
            let mut shortened = self.tokens.shortened.lock().unwrap_or_else(|p| p.into_inner());
            if self.tokens.is_loading() {
                shortened.push((*key, at));
            }
        }
        self.tokens.shorten(key, at);
    }

    /// Updates a session in place, if present.
    pub(crate) fn update(&self, id: &SessionId, f: impl FnOnce(&mut Entry)) {
        let mut shard = self.sessions[session_shard(id)].write().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = shard.get_mut(id) {
            f(entry);
        }
    }

    /// Number of cached sessions.
    pub(crate) fn len(&self) -> usize {
        self.sessions.iter().map(|s| s.read().map_or(0, |s| s.len())).sum()
    }

    /// Drops sessions that expired (or are idle beyond `idle(identity)`)
    /// before `now`, and tokens that expired or whose session is gone;
    /// returns how many sessions went (memory hygiene: they already
    /// introspect inactive).
    pub(crate) fn sweep(&self, now: Timestamp, idle: impl Fn(IdentityId) -> Option<i64>) -> usize {
        let mut removed = 0;
        for shard in &self.sessions {
            let mut shard = shard.write().unwrap_or_else(|p| p.into_inner());
            let before = shard.len();
            shard.retain(|_, s| {
                let idle_out = s.kind == CredentialKind::Session
                    && idle(s.identity)
                        .is_some_and(|limit| now.micros() - s.last_seen.load(Ordering::Relaxed) > limit);
                s.expires_at > now && !idle_out
            });
            removed += before - shard.len();
        }
        for shard in &self.tokens.shards {
            let mut shard = shard.write().unwrap_or_else(|p| p.into_inner());
            shard.retain(|_, t| {
                t.expires_at > now
                    && self.sessions[session_shard(&t.session)]
                        .read()
                        .is_ok_and(|s| s.contains_key(&t.session))
            });
        }
        removed
    }

    /// Last uses not persisted yet: (session, last use), clearing the marks.
    pub(crate) fn take_dirty(&self) -> Vec<(SessionId, Timestamp)> {
        let mut out = Vec::new();
        for shard in &self.sessions {
            let shard = shard.read().unwrap_or_else(|p| p.into_inner());
            for (id, entry) in shard.iter() {
                if entry.dirty.swap(false, Ordering::Relaxed) {
                    out.push((*id, Timestamp(entry.last_seen.load(Ordering::Relaxed))));
                }
            }
        }
        out
    }

    /// The identities with a session in the cache.
    pub(crate) fn identities(&self) -> std::collections::HashSet<IdentityId> {
        let mut out = std::collections::HashSet::new();
        for shard in &self.sessions {
            let shard = shard.read().unwrap_or_else(|p| p.into_inner());
            out.extend(shard.values().map(|e| e.identity));
        }
        out
    }
}

/// An identity's claims as of the last bridge step: what introspection
/// reports beside the session (login name, groups, tiers, kind).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// The current `userName`.
    pub user_name: Box<str>,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn token(byte: u8, session: u128, expires: i64) -> Token {
        Token {
            hash: TokenHash([byte; 32]),
            session: SessionId::from_uuid(uuid::Uuid::from_u128(session)),
            kind: lockstep_domain::TokenKind::Access,
            issued_at: Timestamp(0),
            expires_at: Timestamp(expires),
            retired_at: None,
        }
    }

    /// While the secrets load, a miss asks the store; once loaded, a miss
    /// is the answer. What was written during the load beats the load's
    /// older snapshot, and a shortening made during the load survives it.
    #[test]
    fn secrets_load_behind_the_server_without_undoing_what_happened_meanwhile() {
        let cache = SessionCache::default();
        let tokens = cache.tokens();
        tokens.begin_loading();
        let (old, rotated, fresh) = (token(1, 7, 1_000), token(2, 7, 1_000), token(3, 7, 2_000));
        // A miss while loading is the store's to answer.
        assert_eq!(
            cache.token(&old.hash, || Some(TokenEntry::of(&old))).map(|t| t.expires_at),
            Some(Timestamp(1_000))
        );
        // Meanwhile: a secret issued (newer than the snapshot) and one
        // shortened (its grace after a rotation) before the load reached it.
        let mut newer = fresh;
        newer.expires_at = Timestamp(3_000);
        cache.insert_token(&newer);
        cache.expire_token(&rotated.hash, Timestamp(10));
        // The load's snapshot predates both.
        let loaded = tokens.load(3, |add| {
            for t in [&old, &rotated, &fresh] {
                add(t);
            }
        });
        assert_eq!(loaded, 3);
        assert!(tokens.is_loading(), "loading until finished");
        tokens.finish_loading();
        let held = |t: &Token| cache.token(&t.hash, || panic!("the store is not asked once loaded"));
        assert_eq!(held(&old).map(|t| t.expires_at), Some(Timestamp(1_000)));
        assert_eq!(held(&fresh).map(|t| t.expires_at), Some(Timestamp(3_000)), "the newer write stays");
        assert_eq!(held(&rotated).map(|t| t.expires_at), Some(Timestamp(10)), "the shortening stays");
        assert!(held(&token(9, 7, 1)).is_none());
    }
}
