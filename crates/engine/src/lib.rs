//! The bridge: the only code that touches both the directory and the
//! session authority.
//!
//! Every directory write goes through [`Engine`]: it commits the change and
//! its ordered directory events, asks [`lockstep_policy::evaluate`] for the
//! session impact of each event, and applies that impact — session changes,
//! `directory.*` and `session.*` audit records, and the consumed directory
//! position — in one session-store transaction, all before the write
//! returns. If the process dies between the two commits, [`Engine::open`]
//! replays the directory log from the recorded position before anything is
//! served, so no acknowledged directory change ever goes unapplied.
//!
//! Store calls block; callers on an async runtime run engine methods on a
//! blocking thread. Two exceptions: [`Engine::introspect`] reads memory
//! (and, only while the start-up load of bearer secrets runs, one indexed
//! row of a secret not loaded yet) and is cheap enough to call directly,
//! and the authority's [`authority::Call`]s can be awaited (its worker
//! thread does the commit and the fsync; making an open's call reads its
//! subject's directory row and groups on the caller's thread, two indexed
//! reads, so that the worker does not).
//!
//! Where the pieces live: `bridge.rs` applies directory events (the policy
//! decision and its session impact); `batch.rs` prepares identity writes
//! (tiers, owner fan-out) and commits them together; `groups.rs` writes
//! groups; `authority/` issues, refreshes, rotates and revokes sessions
//! and credentials (its own group commit, beside the bridge's);
//! `sessions.rs` introspects and lists; `upkeep.rs` runs what time triggers
//! (grace deadlines, idle clocks, retention, policy changes at start);
//! `reach.rs` answers read-only questions (what a change reached, a fresh
//! decision for a privileged action).
//!
//! Three locks order the writers, always taken in this order. The *commit*
//! lock serialises directory commits; the *writer* lock serialises bridge
//! steps (in commit order: a committed batch queues its bridge step in the
//! writer state, and the server's bridge thread runs it while the directory
//! worker commits the next batch); the *sessions* lock serialises every
//! read-decide-write of the session store (a bridge step takes it inside
//! the writer lock; the authority takes only it, so issuance never queues
//! behind a directory batch). Other directory writers (groups, sources,
//! upkeep) take the commit and writer locks together and run every queued
//! bridge step first. The authority reads the directory's current
//! state under the sessions lock (or reads it just before, and re-reads
//! under the lock if a bridge step started in between), so a session opened
//! concurrently with a deactivation either sees it (and is refused) or
//! commits first (and the deactivation's bridge step, which takes the
//! sessions lock after it, revokes it).

mod ack;
pub use ack::{EARLY_ACK_SESSIONS, EarlyAck};
mod auth;
pub mod authority;
mod batch;
pub use batch::DirectoryCall;
mod bridge;
mod cache;
pub mod clock;
mod derive;
mod group;
mod groups;
mod metrics;
mod reach;
pub mod secrets;
mod sessions;
pub mod signals;
pub mod sources;
pub mod status;
#[cfg(test)]
mod testing;
mod upkeep;

use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use lockstep_domain::{ClientId, DirectoryEventId, IdentityId, IdentityStatus, SessionId};
use lockstep_policy::Policy;
use lockstep_store::{CredentialStore, DirectoryRead, DirectoryStore, SessionStore, StoreError};

pub use auth::{Principal, PrincipalKind};
pub use authority::{
    AccessClaims, Authority, Call, CredentialRequest, IssuedCredential, IssuedTokens, OpenRequest, SignError,
    Signer, TokenSettings,
};
pub use bridge::{Applied, UpdateError};
pub use cache::{CachedSession, Claims};
pub use clock::{Clock, Entropy, OsEntropy, SystemClock};
pub use groups::AppliedGroup;
pub use metrics::Metrics;
pub use reach::{Check, Reach, reach};
pub use sessions::{CreatedClient, Introspected, SessionLimits};
pub use upkeep::Opened;

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No identity has this id or user name.
    #[error("unknown subject {0:?}")]
    UnknownSubject(String),
    /// The identity exists but is not entitled to sessions.
    #[error("subject {subject:?} is {status} and may not hold sessions")]
    SubjectNotEntitled {
        /// The subject as given.
        subject: String,
        /// Its status.
        status: IdentityStatus,
    },
    /// The identity was deleted.
    #[error("subject {0:?} has been deleted")]
    SubjectDeleted(String),
    /// A non-human identity without an active owner gets no new sessions or
    /// credentials.
    #[error("subject {0:?} is a non-human identity without an active owner; set an active owner first")]
    NoActiveOwner(String),
    /// A privileged identity whose directory source is staler than its
    /// bound gets no new session until the source is fresh.
    #[error(
        "subject {subject:?} is privileged and its directory source {stale_source:?} is staler than its max_staleness; privileged access fails closed until the source is fresh"
    )]
    SourceStale {
        /// The subject as given.
        subject: String,
        /// The stale source.
        stale_source: String,
    },
    /// Credentials are for non-human identities only.
    #[error(
        "{0:?} is a human identity; credentials are only for non-human identities (kind service_account, workload, api_client or agent, or riskTier non_human)"
    )]
    HumanIdentity(String),
    /// A resource does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// `If-Match` or a concurrent writer: the resource changed.
    #[error("version mismatch: expected {expected}, current {current}")]
    VersionMismatch {
        /// What the caller expected.
        expected: u64,
        /// What is current.
        current: u64,
    },
    /// A uniqueness constraint.
    #[error("{field} {value:?} is already in use")]
    Conflict {
        /// Attribute.
        field: &'static str,
        /// Value.
        value: String,
    },
    /// A write to an identity or group that another source owns (two
    /// sources never fight over one record).
    #[error("{what} is owned by the directory source {owner:?}; change it there, not through {writer:?}")]
    OwnedBySource {
        /// What (e.g. `identity 1f…`).
        what: String,
        /// The source that owns it.
        owner: String,
        /// The source that tried to write it.
        writer: String,
    },
    /// A requested value is out of bounds.
    #[error("{field}: {message}")]
    Invalid {
        /// Which input field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A client asked to revoke a token that was issued to someone else
    /// (RFC 7009 §2.1).
    #[error(
        "the token was not issued to this client; only the client it was issued to, or the admin, may revoke it"
    )]
    NotIssuedToCaller,
    /// An OAuth grant was refused (RFC 6749 §5.2 `invalid_grant`): an
    /// unknown, expired, reused or revoked refresh token, or a subject no
    /// longer entitled.
    #[error("{0}")]
    InvalidGrant(String),
    /// OAuth client authentication failed (RFC 6749 §5.2 `invalid_client`):
    /// an unknown, expired or revoked client credential.
    #[error("{0}")]
    InvalidClient(String),
    /// A JWT could not be signed (no signing key, or the key failed).
    #[error("signing: {0}")]
    Signing(#[from] authority::SignError),
    /// The random source failed.
    #[error(transparent)]
    Entropy(#[from] clock::EntropyError),
    /// Storage failed.
    #[error("storage: {0}")]
    Store(StoreError),
    /// A directory write was committed but its session impact could not be
    /// applied yet; it will be, before the next write and at start-up.
    /// Affected sessions were already removed from the introspection cache.
    #[error("directory change committed but its session impact is pending: {0}")]
    BridgePending(StoreError),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { field, value } => EngineError::Conflict { field, value },
            StoreError::VersionMismatch { expected, found } => {
                EngineError::VersionMismatch { expected: expected.unwrap_or(0), current: found.unwrap_or(0) }
            }
            other => EngineError::Store(other),
        }
    }
}

/// Result alias for engine calls.
pub type EngineResult<T> = Result<T, EngineError>;

/// The three stores the engine joins.
#[derive(Debug, Clone)]
pub struct Stores {
    /// Entitlement truth.
    pub directory: Arc<dyn DirectoryStore>,
    /// Session validity, bridge cursor, audit.
    pub sessions: Arc<dyn SessionStore>,
    /// API clients and the admin token.
    pub credentials: Arc<dyn CredentialStore>,
}

/// Engine settings.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// The session-impact policy.
    pub policy: Policy,
    /// Where the policy came from, for the `policy.changed` audit record
    /// (e.g. `file=/etc/lockstep.toml file_sha256=…`).
    pub policy_source: Option<String>,
    /// Session lifetime limits.
    pub limits: SessionLimits,
    /// Token formats, lifetimes, issuer and retention.
    pub tokens: TokenSettings,
    /// Directory sources besides SCIM.
    pub sources: Vec<sources::SourceSettings>,
}

/// The writer lock held with the directory's commit lock (see
/// [`Engine::lock_writer`]).
struct WriterGuard<'a> {
    writer: MutexGuard<'a, WriterState>,
    _committing: MutexGuard<'a, ()>,
}

impl std::ops::Deref for WriterGuard<'_> {
    type Target = WriterState;

    fn deref(&self) -> &WriterState {
        &self.writer
    }
}

impl std::ops::DerefMut for WriterGuard<'_> {
    fn deref_mut(&mut self) -> &mut WriterState {
        &mut self.writer
    }
}

/// State guarded by the writer lock: everything that must be serialised so
/// that directory events are bridged in order.
#[derive(Debug)]
struct WriterState {
    consumed: Option<DirectoryEventId>,
    /// Directory batches committed whose bridge steps have not run yet,
    /// oldest first (see `batch`).
    unsettled: std::collections::VecDeque<batch::Unsettled>,
    /// The hook of the group write about to run, if its caller asked to
    /// be answered early (see [`ack`]); the write takes it at its start,
    /// so no other bridge step can fire it.
    early_ack: Option<EarlyAck>,
}

/// The bridge between directory and session authority.
#[derive(Debug)]
pub struct Engine {
    stores: Stores,
    config: EngineConfig,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    cache: cache::SessionCache,
    claims: cache::ClaimsIndex,
    clients: RwLock<auth::ClientTable>,
    writer: Mutex<WriterState>,
    /// Serialises directory commits: held by a batch while it is prepared
    /// and committed, and by `lock_writer` (taken before `writer`).
    committing: Mutex<()>,
    /// Hands committed batches from the directory worker to the bridge
    /// thread (see `batch`).
    bridge_queue: batch::BridgeQueue,
    /// Serialises every read-decide-write of the session store (see the
    /// crate documentation for the lock order).
    sessions_lock: Mutex<()>,
    /// Set while a bridge step that acknowledged early still writes the
    /// session store (see [`ack`]); readers of session state then wait.
    writing_after_ack: std::sync::atomic::AtomicBool,
    /// Bridge steps started, counted under the sessions lock (see
    /// [`Engine::directory_generation`]).
    bridge_steps: std::sync::atomic::AtomicU64,
    /// Session-store requests waiting for the authority's next group commit.
    issuance: group::Group<authority::Op, authority::Outcome>,
    /// Batches the authority's worker committed, waiting for the disk.
    syncer: authority::Syncer,
    /// Signs JWT access tokens (`None`: only opaque tokens can be issued).
    signer: Option<Arc<dyn Signer>>,
    metrics: Metrics,
    /// When API clients were last re-read after an authentication miss.
    last_client_reload: AtomicI64,
    /// Directory writes waiting for the next group commit.
    queue: batch::Queue,
    /// Configured directory sources and their state.
    sources: sources::Registry,
    /// Shared Signals streams (written through to the session store).
    streams: RwLock<Vec<lockstep_domain::Stream>>,
    /// Rung after a commit that queued signals.
    doorbell: RwLock<Option<signals::Doorbell>>,
    /// Token Status List indexes of sessions holding JWTs.
    status: Mutex<status::StatusIndex>,
}

impl Engine {
    /// Opens the engine: replays any directory events the session store has
    /// not consumed yet (a crash between the two commits), loads live
    /// sessions and their identities' claims into memory, records a changed
    /// policy (shortening sessions beyond a new cap) and applies grace
    /// periods that ended while the process was down. Call before serving.
    pub fn open(
        stores: Stores,
        config: EngineConfig,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> EngineResult<Self> {
        Self::open_reporting(stores, config, clock, entropy).map(|(engine, _)| engine)
    }

    /// An engine for local administrative commands beside a running server
    /// (API clients, the admin token): nothing is replayed, no session is
    /// loaded and no policy is recorded — the running server owns those.
    pub fn open_detached(
        stores: Stores,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> EngineResult<Self> {
        let engine = Self::new(stores, EngineConfig::default(), clock, entropy)?;
        engine.reload_clients()?;
        Ok(engine)
    }

    fn new(
        stores: Stores,
        config: EngineConfig,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> EngineResult<Self> {
        let consumed = stores.sessions.consumed()?;
        let config_sources = config.sources.clone();
        let status = status::StatusIndex::load(stores.sessions.status_indexes()?);
        let streams = match stores.sessions.signals() {
            Some(signals) => signals.streams()?,
            None => Vec::new(),
        };
        Ok(Self {
            stores,
            config,
            clock,
            entropy,
            cache: cache::SessionCache::default(),
            claims: cache::ClaimsIndex::default(),
            clients: RwLock::new(auth::ClientTable::default()),
            writer: Mutex::new(WriterState { consumed, unsettled: Default::default(), early_ack: None }),
            committing: Mutex::new(()),
            bridge_queue: batch::BridgeQueue::default(),
            sessions_lock: Mutex::new(()),
            writing_after_ack: std::sync::atomic::AtomicBool::new(false),
            bridge_steps: std::sync::atomic::AtomicU64::new(0),
            issuance: group::Group::default(),
            syncer: authority::Syncer::default(),
            signer: None,
            metrics: Metrics::new(),
            last_client_reload: AtomicI64::new(0),
            queue: batch::Queue::default(),
            sources: sources::Registry::new(&config_sources),
            streams: RwLock::new(streams),
            doorbell: RwLock::new(None),
            status: Mutex::new(status),
        })
    }

    /// [`Engine::open`], also saying what start-up did.
    pub fn open_reporting(
        stores: Stores,
        config: EngineConfig,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> EngineResult<(Self, Opened)> {
        let engine = Self::new(stores, config, clock, entropy)?;
        let opened = engine.start_up()?;
        engine.reload_clients()?;
        Ok((engine, opened))
    }
    /// Gives the engine a JWT signer (before serving).
    pub fn with_signer(mut self, signer: Arc<dyn Signer>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Sets the JWT issuer (and audience) once the address served is known
    /// (before serving).
    pub fn with_issuer(mut self, issuer: String, audience: Option<String>) -> Self {
        if let Some(audience) = audience {
            self.config.tokens.audience = audience;
        }
        self.config.tokens.issuer = issuer;
        self
    }

    /// The writer lock, taken after the directory's commit lock (so no batch
    /// commits while it is held) and with the bridge steps of every batch
    /// already committed run first: the holder sees the bridge at the head
    /// of the directory log, and may commit to the directory itself.
    fn lock_writer(&self) -> EngineResult<WriterGuard<'_>> {
        let committing = self.committing.lock().unwrap_or_else(|p| p.into_inner());
        let mut writer = self
            .writer
            .lock()
            .map_err(|_| EngineError::Store(StoreError::Backend("writer lock poisoned".into())))?;
        self.settle(&mut writer);
        Ok(WriterGuard { writer, _committing: committing })
    }

    /// The sessions lock. A poisoned lock is taken anyway: it guards no data
    /// of its own (the store's transactions keep the stored state whole).
    fn lock_sessions(&self) -> MutexGuard<'_, ()> {
        self.sessions_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many bridge steps have started. Each step counts itself when it
    /// takes the sessions lock, and every directory commit is followed by
    /// the step that applies it. So a directory read taken after this
    /// returned `g` is as good as one taken under the sessions lock, if the
    /// count is still `g` once the lock is held: a commit the read missed
    /// has a step that has not started, which will see (and act on) what
    /// the lock holder commits. This lets the authority read the directory
    /// before its batch instead of on the batch thread.
    fn directory_generation(&self) -> u64 {
        self.bridge_steps.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until no early-acknowledged bridge step is still writing the
    /// session store, so a read of session state or the audit trail sees
    /// every cut already acknowledged. Costs one atomic load otherwise.
    /// Never call it holding the sessions lock.
    fn await_acknowledged_writes(&self) {
        if self.writing_after_ack.load(std::sync::atomic::Ordering::Acquire) {
            drop(self.lock_sessions());
        }
    }

    /// The session and credential authority: issuance, refresh, rotation,
    /// revocation.
    pub fn authority(&self) -> Authority<'_> {
        Authority::new(self)
    }

    /// Token settings in force.
    pub fn tokens(&self) -> &TokenSettings {
        &self.config.tokens
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The clock the engine uses.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// The directory, read-only: what protocol layers may see of it.
    pub fn directory(&self) -> &dyn DirectoryRead {
        self.stores.directory.as_ref()
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.config.policy
    }

    /// Session limits in force.
    pub fn limits(&self) -> &SessionLimits {
        &self.config.limits
    }

    /// A fresh identity id.
    pub fn new_identity_id(&self) -> EngineResult<IdentityId> {
        Ok(IdentityId::from_uuid(secrets::uuid_v7(self.clock.now(), self.entropy.as_ref())?))
    }

    fn new_session_id(&self) -> EngineResult<SessionId> {
        Ok(SessionId::from_uuid(secrets::uuid_v7(self.clock.now(), self.entropy.as_ref())?))
    }

    fn new_client_id(&self) -> EngineResult<ClientId> {
        Ok(ClientId::from_uuid(secrets::uuid_v7(self.clock.now(), self.entropy.as_ref())?))
    }

    /// How many sessions the introspection cache holds.
    pub fn cached_sessions(&self) -> usize {
        self.cache.len()
    }

    /// Whether the start-up load has put every bearer secret in memory
    /// (until then introspection reads the ones it lacks from the store).
    pub fn bearer_tokens_loaded(&self) -> bool {
        !self.cache.tokens_loading()
    }

    /// The directory position the bridge has applied up to.
    pub fn consumed(&self) -> EngineResult<Option<DirectoryEventId>> {
        Ok(self.lock_writer()?.consumed)
    }

    /// Stops a session (and every token of it) introspecting active.
    fn forget(&self, id: &SessionId) {
        if self.cache.remove(id) {
            self.metrics.live_sessions.dec();
        }
    }
}

/// `If-Match` semantics: a stated version must be the current one.
pub(crate) fn check_if_match(expected: Option<u64>, current: u64) -> EngineResult<()> {
    match expected {
        Some(expected) if expected != current => Err(EngineError::VersionMismatch { expected, current }),
        _ => Ok(()),
    }
}

/// Default lifetime and ceiling of sessions.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(15 * 60);
