//! The session-authority role and Lockstep's own credentials.
//!
//! # What every `SessionStore` promises
//!
//! * **One transaction per batch.** A [`SessionBatch`] — new sessions,
//!   session changes, their audit records, the bridge cursor, the policy
//!   hash — commits together or not at all.
//! * **Idempotent replay.** A batch whose `consumed` position is not beyond
//!   the stored cursor was applied before and is skipped whole.
//! * **Revoked is terminal.** An update or a last-seen write to a revoked
//!   session is ignored; nothing turns a revoked session back.
//! * **A gap-free audit chain.** Audit records get consecutive sequence
//!   numbers and each links to the hash of the one before ([`crate::seal`]).
//! * **Durability.** `apply` returns once the batch survives a crash, except
//!   a `replayable` batch, which the next synchronous commit makes durable
//!   and the directory log can re-derive.

use lockstep_domain::{
    ApiClient, AuditEntry, AuditRecord, ClientId, CredentialKind, DirectoryEventId, IdentityId, Session,
    SessionId, SessionState, Timestamp, Token, TokenHash,
};

use crate::error::StoreResult;

/// A change to one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionUpdate {
    /// Which session.
    pub session: SessionId,
    /// Its new state.
    pub state: SessionState,
    /// A new absolute expiry, if it changes.
    pub expires_at: Option<Timestamp>,
}

/// A change to one token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenUpdate {
    /// Which token.
    pub hash: TokenHash,
    /// Retire it at this time (kept if it is already retired: the first
    /// retirement stands).
    pub retired_at: Option<Timestamp>,
    /// A new expiry (the end of a rotated secret's grace period), never
    /// later than the current one.
    pub expires_at: Option<Timestamp>,
}

/// One atomic session-store write: new sessions and tokens, session and
/// token changes, the audit records that explain them and, for bridge
/// batches, the directory position consumed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionBatch {
    /// Bridge cursor after this batch. A batch whose position is not beyond
    /// the stored cursor was already applied and is skipped whole, which
    /// makes replay after a crash idempotent.
    pub consumed: Option<DirectoryEventId>,
    /// New sessions (a conflicting id fails the whole batch).
    pub inserts: Vec<Session>,
    /// New tokens, each of a session stored or inserted by this batch (a
    /// conflicting hash, or an unknown session, fails the whole batch).
    pub tokens: Vec<Token>,
    /// Token changes (an unknown token fails the whole batch).
    pub token_updates: Vec<TokenUpdate>,
    /// Session changes. An update to a revoked session is ignored: revoked
    /// is terminal.
    pub updates: Vec<SessionUpdate>,
    /// Last use of sessions, persisted in batches off the hot path. Applied
    /// after `updates`; ignored for revoked sessions; never moves a
    /// session's last use backwards.
    pub last_seen: Vec<(SessionId, Timestamp)>,
    /// The hash of the policy in force after this batch, when it changed.
    pub policy: Option<String>,
    /// Audit entries, sealed into the chain in order.
    pub audit: Vec<AuditEntry>,
    /// Signals for downstream streams, queued in this transaction (the
    /// Shared Signals outbox; see `signals.rs`).
    pub outbox: Vec<lockstep_domain::Outgoing>,
    /// Token Status List indexes given to sessions (a JWT carries its
    /// session's index; the list's bit there tells a resource server
    /// whether the session still lives). An index is never reused.
    pub status_indexes: Vec<(u32, SessionId)>,
    /// The commit need not reach stable storage before `apply` returns:
    /// everything in it (session changes, audit records, the cursor) is
    /// re-derived by replaying the durable directory log if it is lost, and
    /// the next synchronous commit makes it durable. For bridge batches,
    /// and for the last-use clock (losing it only makes sessions look idle
    /// earlier); a revocation by hand and an opened session are synchronous.
    pub replayable: bool,
}

/// What the introspection map keeps of a live session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveSession {
    /// Session id.
    pub id: SessionId,
    /// The identity it belongs to.
    pub identity: IdentityId,
    /// What kind of credential it is.
    pub kind: CredentialKind,
    /// The API client it was issued to.
    pub issued_to: Option<ClientId>,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// Absolute expiry.
    pub expires_at: Timestamp,
    /// Last use as persisted.
    pub last_seen: Timestamp,
    /// Whether it is suspended.
    pub suspended: bool,
}

impl LiveSession {
    /// The projection of a session.
    pub fn of(s: &Session) -> Self {
        Self {
            id: s.id,
            identity: s.identity,
            kind: s.kind,
            issued_to: s.issued_to,
            issued_at: s.issued_at,
            expires_at: s.expires_at,
            last_seen: s.last_seen,
            suspended: s.state.is_suspended(),
        }
    }
}

/// A place in a store's commit order: [`SessionStore::wait_durable`] with
/// it returns once that commit, and every earlier one, is on stable storage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DurableTicket(pub u64);

/// The session-authority role: session validity, the bridge cursor and the
/// audit chain, which must commit together.
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    /// The Shared Signals role of this store, if it has one: streams and
    /// the outbox live beside the sessions because the outbox commits in
    /// their batches.
    fn signals(&self) -> Option<&dyn crate::SignalStore> {
        None
    }

    /// Every Token Status List index given out, with its session.
    fn status_indexes(&self) -> StoreResult<Vec<(u32, SessionId)>> {
        Ok(Vec::new())
    }

    /// Commits a batch atomically without waiting for stable storage: once
    /// it returns, every later read sees the batch and every later commit is
    /// ordered after it, but a power loss may still take it (a crash of the
    /// process does not). [`SessionStore::wait_durable`] with the ticket
    /// waits for the disk. Split so that a caller can prepare and commit its
    /// next batch while this one's fsync runs; one fsync then covers every
    /// commit before it. The default commits durably at once.
    fn commit(&self, batch: SessionBatch) -> StoreResult<(Vec<AuditRecord>, DurableTicket)> {
        Ok((self.apply(batch)?, DurableTicket::default()))
    }

    /// Returns once the commit with `ticket` (and so every earlier commit)
    /// survives power loss.
    fn wait_durable(&self, _ticket: DurableTicket) -> StoreResult<()> {
        Ok(())
    }

    /// Stores a new session, its tokens and its `session.created` audit entry.
    fn insert_session(
        &self,
        session: &Session,
        tokens: &[Token],
        audit: AuditEntry,
    ) -> StoreResult<AuditRecord> {
        let mut sealed = self.apply(SessionBatch {
            inserts: vec![session.clone()],
            tokens: tokens.to_vec(),
            audit: vec![audit],
            ..SessionBatch::default()
        })?;
        sealed.pop().ok_or_else(|| crate::StoreError::Backend("audit record not sealed".into()))
    }

    /// A session by id.
    fn session(&self, id: SessionId) -> StoreResult<Option<Session>>;

    /// A token by the hash of its secret.
    fn token(&self, hash: &TokenHash) -> StoreResult<Option<Token>>;

    /// The session a secret belongs to, with the token.
    fn session_by_token(&self, hash: &TokenHash) -> StoreResult<Option<(Session, Token)>> {
        let Some(token) = self.token(hash)? else { return Ok(None) };
        Ok(self.session(token.session)?.map(|s| (s, token)))
    }

    /// Every token of a session, in issue order.
    fn tokens_of(&self, session: SessionId) -> StoreResult<Vec<Token>>;

    /// Calls `f` with every token that can be presented as a bearer secret
    /// (access tokens and API keys) and works at `now`, of a session live at
    /// `now` (to warm the introspection map at start). It may also list such
    /// tokens of sessions that were revoked: checking each token's session
    /// would cost a random read per token at ten million, and the caller
    /// already holds the live sessions and drops the rest.
    fn for_each_live_token(&self, now: Timestamp, f: &mut dyn FnMut(Token)) -> StoreResult<()>;

    /// Deletes up to `limit` sessions (with their tokens) that expired, or
    /// were revoked, before `before`; returns how many. The audit chain
    /// keeps their history; an unknown token introspects inactive, so a
    /// purged one can never come back.
    fn purge(&self, before: Timestamp, limit: usize) -> StoreResult<usize>;

    /// Every session of an identity, in issue order.
    fn sessions_of(&self, identity: IdentityId) -> StoreResult<Vec<Session>>;

    /// The sessions of these identities live at `now` (not revoked, not
    /// expired), each identity's in issue order: what a bridge step decides
    /// on. The default asks for each identity; a backend reads them together.
    fn live_sessions_of(&self, identities: &[IdentityId], now: Timestamp) -> StoreResult<Vec<Session>> {
        let mut out = Vec::new();
        for identity in identities {
            out.extend(self.sessions_of(*identity)?.into_iter().filter(|s| s.is_live(now)));
        }
        Ok(out)
    }

    /// Calls `f` with every session live at `now` (to warm caches at start).
    fn for_each_live(&self, now: Timestamp, f: &mut dyn FnMut(Session)) -> StoreResult<()>;

    /// [`SessionStore::for_each_live`], but only what the introspection map
    /// keeps of each session: at ten million sessions, decoding the rest
    /// (the issued name, the state's detail) is a good part of start-up.
    /// The same sessions, in any order: a backend may read parts of the
    /// table side by side (the caller files each session by its id).
    fn for_each_live_entry(&self, now: Timestamp, f: &mut dyn FnMut(LiveSession)) -> StoreResult<()> {
        self.for_each_live(now, &mut |s| f(LiveSession::of(&s)))
    }

    /// Suspended, live sessions whose grace period ended at or before `now`
    /// (answered from an index: a timer asks every second).
    fn suspensions_due(&self, now: Timestamp) -> StoreResult<Vec<Session>>;

    /// Applies a batch atomically; returns the sealed audit records (empty
    /// if the batch had already been applied). On return the batch survives
    /// power loss, unless it is `replayable` (then it survives a crash of
    /// the process, and the next durable commit makes it durable too).
    fn apply(&self, batch: SessionBatch) -> StoreResult<Vec<AuditRecord>>;

    /// The highest directory position the bridge has consumed.
    fn consumed(&self) -> StoreResult<Option<DirectoryEventId>>;

    /// The hash of the policy recorded by the last batch that set one.
    fn policy(&self) -> StoreResult<Option<String>>;

    /// Audit records with `seq > after`, oldest first.
    fn audit_after(&self, after: u64, limit: usize) -> StoreResult<Vec<AuditRecord>>;

    /// Audit records citing any of these directory events, oldest first
    /// (answered from an index: the reach report of an event).
    fn audit_of_events(&self, events: &[DirectoryEventId]) -> StoreResult<Vec<AuditRecord>>;
}

/// Lockstep's own credentials: API clients and the admin token.
pub trait CredentialStore: Send + Sync + std::fmt::Debug {
    /// Stores a new client with its audit entry. Client names are unique
    /// under the identifier key ([`lockstep_domain::text::fold`]):
    /// `Conflict { field: "name" }` otherwise.
    fn insert_client(&self, client: &ApiClient, audit: AuditEntry) -> StoreResult<()>;

    /// Every client.
    fn clients(&self) -> StoreResult<Vec<ApiClient>>;

    /// The stored admin token hash, if one was generated.
    fn admin_token_hash(&self) -> StoreResult<Option<TokenHash>>;

    /// Replaces the stored admin token hash.
    fn set_admin_token_hash(&self, hash: TokenHash) -> StoreResult<()>;
}
