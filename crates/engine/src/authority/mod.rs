//! The session and credential authority: opening sessions, refresh-token
//! rotation with reuse detection, OAuth `client_credentials`, credentials of
//! non-human identities, and every revocation that is not the bridge's.
//!
//! Every request goes through one group commit (`group.rs`): the worker
//! thread (a server runs one, see [`Authority::serve`]) — or, without one,
//! the calling thread that finds no batch forming — takes the sessions
//! lock, prepares each queued request against the stores (reads, checks,
//! the decision), commits all their writes in one session-store
//! transaction, and answers each request once that commit is on disk (one
//! fsync for the batch; with a worker, a syncer thread waits for the disk
//! while the next batch is built). A request that touches what an earlier request of the
//! batch touches (the same session; the same identity when a limit counts
//! its sessions) waits for the next batch, so every request decides on
//! committed state. If the shared commit fails, each request's writes are
//! committed alone, so one bad request fails only itself.
//!
//! The authority takes only the sessions lock, never the directory writer
//! lock: issuance does not queue behind directory batches. It reads the
//! directory's current state under the sessions lock (see the crate
//! documentation for why that is enough to never miss a deactivation).
//!
//! What the introspection map holds changes here too: a revoked session
//! leaves it *before* the commit (fail closed); a new session or token
//! enters it after (never active before it is durable).

mod call;
mod credentials;
mod issue;
mod revoke;

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use lockstep_domain::{
    Actor, AuditEntry, AuditKind, CredentialKind, GroupId, Identity, IdentityId, RevocationReason, Session,
    SessionId, SessionState, Signal, SignalKind, Tiers, Timestamp, Token, TokenFormat, TokenHash,
};
use lockstep_store::{DurableTicket, SessionBatch, SessionUpdate};

use crate::group::{Batch as GroupBatch, Item};
use crate::metrics::ReasonLabel;
use crate::{Engine, EngineError, EngineResult, Principal, secrets};

pub use call::Call;
pub(crate) use call::Syncer;
pub use credentials::CredentialInfo;
pub use revoke::SubjectId;

/// Token formats, lifetimes, issuer and retention (`[tokens]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// `iss` of JWT access tokens and of the RFC 8414 metadata.
    pub issuer: String,
    /// `aud` of JWT access tokens.
    pub audience: String,
    /// The format of access tokens when a request names none.
    pub access_token_format: TokenFormat,
    /// Lifetime of short access tokens: those of a session with a refresh
    /// token, JWTs, and `client_credentials` tokens (never beyond their
    /// session or credential).
    pub access_token_ttl: Duration,
    /// How long expired and revoked sessions and credentials stay in the
    /// store before they are purged.
    pub retention: Duration,
    /// The longest grace a credential rotation may keep the old secret.
    pub max_rotation_grace: Duration,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".into(),
            audience: "http://127.0.0.1:8080".into(),
            access_token_format: TokenFormat::Opaque,
            access_token_ttl: Duration::from_secs(5 * 60),
            retention: Duration::from_secs(7 * 24 * 3600),
            max_rotation_grace: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The claims of an RFC 9068 JWT access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// The identity's SCIM id.
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// Session id.
    pub sid: String,
    /// Unique token id.
    pub jti: String,
    /// Issue time, seconds since the epoch.
    pub iat: i64,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// The identity's login name.
    pub username: String,
    /// The identity's groups (display names) at issue.
    pub groups: Vec<String>,
    /// The identity's tiers at issue.
    pub tier: String,
    /// The session's Token Status List index.
    pub status_idx: u32,
}

/// Why a JWT could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SignError(pub String);

/// Signs JWT access tokens. The engine decides what a token says; the
/// signer (keys in the data directory, in the binary) encodes and signs it.
pub trait Signer: Send + Sync + fmt::Debug {
    /// An RFC 9068 access token (`typ: at+jwt`) carrying `claims`.
    fn sign_access_token(&self, claims: &AccessClaims) -> Result<String, SignError>;
}

/// `POST /v1/sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    /// SCIM id or `userName`.
    pub subject: String,
    /// Session lifetime asked for (the default if `None`).
    pub ttl: Option<Duration>,
    /// Also issue a rotating refresh token.
    pub refresh: bool,
    /// Access token format (the configured default if `None`).
    pub format: Option<TokenFormat>,
}

/// `POST /v1/identities/{id}/credentials`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialRequest {
    /// `api_key` or `client_secret`.
    pub kind: CredentialKind,
    /// Lifetime asked for (the tier default if `None`).
    pub ttl: Option<Duration>,
}

/// Tokens issued by opening, refreshing or a `client_credentials` grant.
/// The secrets are shown to the caller once and never stored.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    /// The session (or credential) they belong to, as stored.
    pub session: Session,
    /// The access token.
    pub access_token: String,
    /// When the access token expires.
    pub access_expires_at: Timestamp,
    /// The new refresh token, if the session has one.
    pub refresh_token: Option<String>,
}

/// A created or rotated credential with its secret, shown once.
#[derive(Debug, Clone)]
pub struct IssuedCredential {
    /// The credential as stored.
    pub credential: Session,
    /// The secret (`lst_ak_…` or `lst_cs_…`).
    pub secret: String,
    /// When the previous secret stops working (a rotation).
    pub previous_until: Option<Timestamp>,
}

/// What a revocation names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A session by id (admin API); with `owner`, only a credential of that
    /// identity (the credentials API).
    Session { id: SessionId, owner: Option<IdentityId> },
    /// The session a secret belongs to (RFC 7009).
    Token(TokenHash),
}

/// A request to the authority.
#[derive(Debug)]
pub(crate) enum Op {
    Open { request: OpenRequest, principal: Principal, read: Box<SubjectRead> },
    Refresh { hash: TokenHash, principal: Principal },
    ClientCredentials { client: SessionId, hash: TokenHash },
    Revoke { target: Target, reason: RevocationReason, principal: Principal },
    RevokeAll { identity: IdentityId, principal: Principal, why: String },
    CreateCredential { identity: IdentityId, request: CredentialRequest, principal: Principal },
    Rotate { identity: IdentityId, credential: SessionId, grace: Duration, principal: Principal },
}

/// The subject of an open as read from the directory before its batch
/// (off the batch thread), and the directory generation it was read at.
/// The batch uses it only if no bridge step started since
/// ([`Engine::directory_generation`]); otherwise it reads again.
#[derive(Debug)]
pub(crate) struct SubjectRead {
    generation: u64,
    identity: Identity,
    groups: Vec<(GroupId, String)>,
}

impl SubjectRead {
    /// Reads `subject` now. An unknown or not entitled subject is refused
    /// here: a refusal writes nothing, so it needs no lock.
    fn take(engine: &Engine, subject: &str) -> EngineResult<Self> {
        let generation = engine.directory_generation();
        let identity = engine.resolve_subject(subject)?;
        let groups = engine.stores.directory.groups_of(identity.id)?;
        Ok(Self { generation, identity, groups })
    }
}

/// What a request achieved.
#[derive(Debug)]
pub(crate) enum Done {
    Tokens(Box<IssuedTokens>),
    Revoked(bool),
    RevokedAll(usize),
    Credential(Box<IssuedCredential>),
}

pub(crate) type Outcome = EngineResult<Done>;

/// What a request reads and writes, for ordering requests within a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Identity(IdentityId),
    Session(SessionId),
}

/// Whether a request only adds beside others (`Shared`) or decides on the
/// whole of a thing (`Exclusive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Shared,
    Exclusive,
}

/// The keys the requests of a batch so far hold.
#[derive(Debug, Default)]
struct Footprint {
    held: HashMap<Key, Mode>,
}

impl Footprint {
    /// Records `keys` unless one conflicts with what is held (exclusive
    /// against anything); then records nothing and answers `false`.
    fn claim(&mut self, keys: &[(Key, Mode)]) -> bool {
        let free = keys.iter().all(|(key, mode)| {
            matches!((self.held.get(key), mode), (None, _) | (Some(Mode::Shared), Mode::Shared))
        });
        if free {
            for (key, mode) in keys {
                let slot = self.held.entry(*key).or_insert(*mode);
                if *mode == Mode::Exclusive {
                    *slot = Mode::Exclusive;
                }
            }
        }
        free
    }
}

/// The session an audit record concerns, as the record names it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Whose {
    session: SessionId,
    identity: IdentityId,
    user_name: String,
    kind: CredentialKind,
}

impl From<&Session> for Whose {
    fn from(s: &Session) -> Self {
        Self { session: s.id, identity: s.identity, user_name: s.user_name.clone(), kind: s.kind }
    }
}

impl Whose {
    /// The signal a change of this session or credential is: CAEP
    /// `session-revoked` for a session, `credential-change` for a
    /// credential (`change`: `create`, `update`, `revoke`).
    fn signal(&self, at: Timestamp, change: &str, actor: &Actor, reason: &str) -> Signal {
        let credential = self.kind != CredentialKind::Session;
        Signal {
            kind: if credential { SignalKind::CredentialChange } else { SignalKind::SessionRevoked },
            at,
            identity: Some(self.identity),
            user_name: Some(self.user_name.clone()),
            session: Some(self.session),
            change: credential.then(|| change.to_owned()),
            credential_type: credential.then(|| self.kind.as_str().to_owned()),
            claims: None,
            initiator: crate::signals::initiator(actor).to_owned(),
            reason: reason.to_owned(),
            txn: String::new(),
            state: None,
        }
    }
}

/// An identity that now holds a session, with its tiers and groups.
type Holder = (Identity, Tiers, Vec<(GroupId, String)>);

/// Everything one request does, prepared before the shared commit.
#[derive(Debug, Default)]
struct Plan {
    /// Its share of the session-store transaction.
    writes: SessionBatch,
    /// Sessions that stop introspecting active before the commit.
    forget: Vec<SessionId>,
    /// Secrets whose life ends earlier, before the commit (a rotation's
    /// grace).
    expire: Vec<(TokenHash, Timestamp)>,
    /// Sessions that enter (or are refreshed in) memory after the commit.
    remember: Vec<Session>,
    /// Bearer secrets that enter memory after the commit.
    tokens: Vec<Token>,
    /// Claims to start following (the identity now holds a session).
    claims: Option<Holder>,
    /// Revocations, for the metrics.
    revoked: Vec<RevocationReason>,
    /// Sessions and credentials opened, for the metrics.
    opened: usize,
    /// Signals for downstream streams (addressed when the batch commits).
    signals: Vec<Signal>,
}

/// A prepared request.
enum Prepared {
    /// It touches what an earlier request of the batch touched: next batch.
    Defer,
    /// Writes to commit, and the answer once they are committed (which may
    /// itself be a refusal: a detected refresh-token reuse revokes and
    /// refuses).
    Commit(Box<Plan>, Outcome),
}

impl From<EngineError> for Prepared {
    fn from(e: EngineError) -> Self {
        Prepared::Commit(Box::default(), Err(e))
    }
}

/// A batch being prepared: the engine, its clock reading and the keys held.
struct Batch<'e> {
    engine: &'e Engine,
    now: Timestamp,
    footprint: Footprint,
}

/// The session and credential authority of an engine ([`Engine::authority`]).
#[derive(Debug, Clone, Copy)]
pub struct Authority<'e> {
    engine: &'e Engine,
}

impl<'e> Authority<'e> {
    pub(crate) fn new(engine: &'e Engine) -> Self {
        Self { engine }
    }

    /// Runs one request through the group commit, blocking this thread.
    pub(crate) fn submit(&self, op: Op) -> Outcome {
        let engine = self.engine;
        engine.issuance.submit(
            op,
            |batch| engine.run_authority_batch(batch),
            || {
                Err(EngineError::Store(lockstep_store::StoreError::Backend(
                    "an issuance batch failed".into(),
                )))
            },
        )
    }

    /// Opens a session for an entitled subject: an access token (opaque, or
    /// a JWT) and, if asked, a rotating refresh token.
    ///
    /// The lifetime is the one asked for (or the default), capped by the
    /// server-wide maximum and the subject's tier (the session shows its
    /// real expiry); beyond the tier's `max_sessions` the oldest live
    /// sessions are revoked in the same transaction. A non-human identity
    /// without an active owner gets none.
    pub fn open_session(&self, request: OpenRequest, principal: &Principal) -> Call<'e, IssuedTokens> {
        if request.ttl.is_some_and(|t| t.is_zero()) {
            let e = EngineError::Invalid { field: "ttl", message: "must be more than 0s".into() };
            return Call::refused(self.engine, e, tokens);
        }
        // The directory reads happen here, on the caller's thread, so the
        // batch thread only checks that they are still current.
        let read = match SubjectRead::take(self.engine, &request.subject) {
            Ok(read) => Box::new(read),
            Err(e) => return Call::refused(self.engine, e, tokens),
        };
        Call::new(self.engine, Op::Open { request, principal: principal.clone(), read }, tokens)
    }

    /// `grant_type=refresh_token` (RFC 6749 §6): a new access token and a
    /// new refresh token; the one presented is retired. Presenting a
    /// retired refresh token again is reuse (RFC 9700 §4.14): the whole
    /// session is revoked in the same transaction and the grant refused.
    pub fn refresh(&self, refresh_token: &str, principal: &Principal) -> Call<'e, IssuedTokens> {
        let hash = secrets::hash(refresh_token);
        Call::new(self.engine, Op::Refresh { hash, principal: principal.clone() }, tokens)
    }

    /// `grant_type=client_credentials` (RFC 6749 §4.4) with a non-human
    /// identity's client secret: a short access token whose subject is the
    /// identity.
    pub fn client_credentials(&self, client_id: &str, secret: &str) -> Call<'e, IssuedTokens> {
        let Ok(client) = client_id.parse::<SessionId>() else {
            let e = EngineError::InvalidClient("unknown client_id or wrong client_secret".into());
            return Call::refused(self.engine, e, tokens);
        };
        Call::new(self.engine, Op::ClientCredentials { client, hash: secrets::hash(secret) }, tokens)
    }

    /// Revokes one session or credential by id. `false`: it already was.
    pub fn revoke_session(&self, id: SessionId, principal: &Principal) -> Call<'e, bool> {
        let target = Target::Session { id, owner: None };
        self.revoke(target, RevocationReason::AdminRevoked, principal)
    }

    /// RFC 7009 revocation by token value: the session the token belongs
    /// to is revoked, with every token of it. Unknown tokens are not an
    /// error (`false`). RFC 7009 §2.1 binds revocation to the client the
    /// token was issued to (a resource server's introspection credential
    /// cannot log users out); the admin may revoke any token.
    pub fn revoke_token(&self, token: &str, principal: &Principal) -> Call<'e, bool> {
        let target = Target::Token(secrets::hash(token));
        self.revoke(target, RevocationReason::ClientRevoked, principal)
    }

    fn revoke(&self, target: Target, reason: RevocationReason, principal: &Principal) -> Call<'e, bool> {
        Call::new(self.engine, Op::Revoke { target, reason, principal: principal.clone() }, |done| match done
        {
            Done::Revoked(done) => Ok(done),
            other => Err(unexpected(&other)),
        })
    }

    /// Revokes every live session and credential of an identity, audited as
    /// one decision (`session.subject_revoked`) and a `session.revoked` per
    /// session. Returns how many were revoked.
    pub fn revoke_all(&self, identity: IdentityId, principal: &Principal, why: &str) -> Call<'e, usize> {
        let op = Op::RevokeAll { identity, principal: principal.clone(), why: why.to_owned() };
        Call::new(self.engine, op, |done| match done {
            Done::RevokedAll(n) => Ok(n),
            other => Err(unexpected(&other)),
        })
    }

    /// Creates a credential for a non-human identity with an active owner.
    pub fn create_credential(
        &self,
        identity: IdentityId,
        request: CredentialRequest,
        principal: &Principal,
    ) -> Call<'e, IssuedCredential> {
        if !request.kind.is_credential() {
            let e =
                EngineError::Invalid { field: "kind", message: "must be api_key or client_secret".into() };
            return Call::refused(self.engine, e, credential);
        }
        if request.ttl.is_some_and(|t| t.is_zero()) {
            let e = EngineError::Invalid { field: "ttl", message: "must be more than 0s".into() };
            return Call::refused(self.engine, e, credential);
        }
        Call::new(
            self.engine,
            Op::CreateCredential { identity, request, principal: principal.clone() },
            credential,
        )
    }

    /// Issues a new secret for a credential; the old one keeps working for
    /// `grace` (at most `[tokens] max_rotation_grace`), then stops.
    pub fn rotate_credential(
        &self,
        identity: IdentityId,
        credential_id: SessionId,
        grace: Duration,
        principal: &Principal,
    ) -> Call<'e, IssuedCredential> {
        let max = self.engine.config.tokens.max_rotation_grace;
        if grace > max {
            let e = EngineError::Invalid {
                field: "grace",
                message: format!(
                    "{} is longer than the longest grace allowed ({}; [tokens] max_rotation_grace)",
                    humantime::format_duration(grace),
                    humantime::format_duration(max)
                ),
            };
            return Call::refused(self.engine, e, credential);
        }
        let op = Op::Rotate { identity, credential: credential_id, grace, principal: principal.clone() };
        Call::new(self.engine, op, credential)
    }

    /// Revokes one credential of an identity.
    pub fn revoke_credential(
        &self,
        identity: IdentityId,
        credential: SessionId,
        principal: &Principal,
    ) -> Call<'e, bool> {
        let target = Target::Session { id: credential, owner: Some(identity) };
        self.revoke(target, RevocationReason::AdminRevoked, principal)
    }
}

fn tokens(done: Done) -> EngineResult<IssuedTokens> {
    match done {
        Done::Tokens(t) => Ok(*t),
        other => Err(unexpected(&other)),
    }
}

fn credential(done: Done) -> EngineResult<IssuedCredential> {
    match done {
        Done::Credential(c) => Ok(*c),
        other => Err(unexpected(&other)),
    }
}

fn unexpected(done: &Done) -> EngineError {
    EngineError::Store(lockstep_store::StoreError::Backend(format!("unexpected outcome {done:?}")))
}

impl Engine {
    /// One authority batch: prepare every request, commit once, answer.
    fn run_authority_batch(&self, group: &GroupBatch<'_, Op, Outcome>) {
        // Prepared and committed under the sessions lock; the wait for the
        // disk happens after it is released and the next batch has started,
        // so one batch's fsync overlaps the next one's work.
        let started = self.clock.now();
        let (answers, ticket) = {
            let _sessions = self.lock_sessions();
            let mut batch = Batch { engine: self, now: self.clock.now(), footprint: Footprint::default() };
            let mut plans: Vec<(&Item<Op, Outcome>, Box<Plan>, Outcome)> =
                Vec::with_capacity(group.items().len());
            for item in group.items() {
                let Some(op) = item.take() else { continue };
                match batch.prepare(&op) {
                    Prepared::Defer => item.defer(op),
                    Prepared::Commit(plan, outcome) if plan.is_empty() => item.finish(outcome),
                    Prepared::Commit(plan, outcome) => plans.push((item, plan, outcome)),
                }
            }
            if plans.is_empty() {
                return;
            }
            // Fail closed: what is revoked or cut short stops working before
            // the commit that records it.
            for (_, plan, _) in &plans {
                self.before_commit(plan);
            }
            let mut all = SessionBatch::default();
            for (_, plan, _) in &mut plans {
                match self.address(std::mem::take(&mut plan.signals)) {
                    Ok(outbox) => plan.writes.outbox = outbox,
                    Err(e) => tracing::error!(error = %e, "signals could not be addressed"),
                }
                merge(&mut all, &plan.writes);
            }
            let queued = !all.outbox.is_empty();
            let indexes = self.status_index().take_unsaved();
            all.status_indexes.clone_from(&indexes);
            let mut answers = Vec::with_capacity(plans.len());
            let mut ticket = DurableTicket::default();
            match self.stores.sessions.commit(all) {
                Ok((_, t)) => {
                    ticket = t;
                    for (item, plan, outcome) in plans {
                        self.after_commit(&plan);
                        answers.push((item.clone(), outcome));
                    }
                }
                Err(shared) => {
                    tracing::warn!(error = %shared, requests = plans.len(), "issuance batch failed; committing one by one");
                    for (item, plan, outcome) in plans {
                        // Indexes are stored idempotently: each commit
                        // carries them all.
                        let mut writes = plan.writes.clone();
                        writes.status_indexes.clone_from(&indexes);
                        match self.stores.sessions.commit(writes) {
                            Ok((_, t)) => {
                                ticket = ticket.max(t);
                                self.after_commit(&plan);
                                answers.push((item.clone(), outcome));
                            }
                            Err(e) => item.finish(Err(e.into())),
                        }
                    }
                }
            }
            self.metrics.authority_batch.observe(answers.len() as f64);
            if queued {
                self.ring();
            }
            (answers, ticket)
        };
        let committed = self.clock.now();
        self.metrics.authority_locked.observe(committed.since(started).as_secs_f64());
        // The new sessions and tokens are not known to anyone before their
        // requester is answered, once the commit is on disk; what was
        // revoked already answers inactive. A worker's batch is answered by
        // the syncer thread; a leader hands over and waits itself.
        if group.by_worker() {
            self.syncer.push(ticket, answers);
            return;
        }
        group.hand_over();
        let durable = self.stores.sessions.wait_durable(ticket);
        self.metrics.authority_durable.observe(self.clock.now().since(committed).as_secs_f64());
        match durable {
            Ok(()) => {
                for (item, outcome) in answers {
                    item.finish(outcome);
                }
            }
            Err(e) => {
                for (item, _) in answers {
                    item.finish(Err(EngineError::Store(e.clone())));
                }
            }
        }
    }

    fn before_commit(&self, plan: &Plan) {
        for id in &plan.forget {
            self.forget(id);
        }
        for (hash, at) in &plan.expire {
            self.cache.expire_token(hash, *at);
        }
    }

    fn after_commit(&self, plan: &Plan) {
        for session in &plan.remember {
            if self.cache.insert(session) {
                self.metrics.live_sessions.inc();
            }
        }
        for token in &plan.tokens {
            self.cache.insert_token(token);
        }
        if let Some((identity, tiers, groups)) = &plan.claims {
            self.hold_claims(identity, *tiers, groups);
        }
        for _ in 0..plan.opened {
            self.metrics.sessions_opened.inc();
        }
        for reason in &plan.revoked {
            self.metrics.revocations.get_or_create(&ReasonLabel { reason: reason.as_str().to_owned() }).inc();
        }
    }
}

impl Plan {
    /// Records an audit entry about a session.
    fn record(
        &mut self,
        at: Timestamp,
        kind: AuditKind,
        whose: impl Into<Whose>,
        actor: Actor,
        detail: String,
    ) {
        let whose = whose.into();
        self.writes.audit.push(AuditEntry {
            at,
            kind,
            identity: Some(whose.identity),
            user_name: Some(whose.user_name),
            session: Some(whose.session),
            directory_event: None,
            actor,
            detail,
        });
    }

    /// Revokes a live session: its new state and record, and out of memory
    /// before the commit.
    fn revoke(
        &mut self,
        at: Timestamp,
        whose: impl Into<Whose>,
        reason: RevocationReason,
        actor: Actor,
        detail: String,
    ) {
        let whose = whose.into();
        self.writes.updates.push(SessionUpdate {
            session: whose.session,
            state: SessionState::Revoked { at, reason, cause: None },
            expires_at: None,
        });
        self.forget.push(whose.session);
        self.revoked.push(reason);
        self.signals.push(whose.signal(at, "revoke", &actor, &detail));
        self.record(at, AuditKind::SessionRevoked, whose, actor, detail);
    }

    fn is_empty(&self) -> bool {
        let w = &self.writes;
        w.inserts.is_empty()
            && w.tokens.is_empty()
            && w.token_updates.is_empty()
            && w.updates.is_empty()
            && w.last_seen.is_empty()
            && w.audit.is_empty()
            && self.forget.is_empty()
            && self.expire.is_empty()
    }
}

fn merge(into: &mut SessionBatch, from: &SessionBatch) {
    into.inserts.extend(from.inserts.iter().cloned());
    into.tokens.extend(from.tokens.iter().copied());
    into.token_updates.extend(from.token_updates.iter().copied());
    into.updates.extend(from.updates.iter().cloned());
    into.last_seen.extend(from.last_seen.iter().copied());
    into.audit.extend(from.audit.iter().cloned());
    into.outbox.extend(from.outbox.iter().cloned());
}

impl Batch<'_> {
    fn prepare(&mut self, op: &Op) -> Prepared {
        let prepared = match op {
            Op::Open { request, principal, read } => self.open(request, principal, read),
            Op::Refresh { hash, principal } => self.refresh(hash, principal),
            Op::ClientCredentials { client, hash } => self.client_credentials(*client, hash),
            Op::Revoke { target, reason, principal } => self.revoke(target, *reason, principal),
            Op::RevokeAll { identity, principal, why } => self.revoke_all(*identity, principal, why),
            Op::CreateCredential { identity, request, principal } => {
                self.create_credential(*identity, *request, principal)
            }
            Op::Rotate { identity, credential, grace, principal } => {
                self.rotate(*identity, *credential, *grace, principal)
            }
        };
        prepared.unwrap_or_else(Prepared::from)
    }

    /// A new, active session or credential of `identity`, issued now.
    fn new_session(
        &self,
        identity: &Identity,
        kind: CredentialKind,
        format: TokenFormat,
        principal: &Principal,
        ttl: Duration,
    ) -> EngineResult<Session> {
        Ok(Session {
            id: self.engine.new_session_id()?,
            identity: identity.id,
            kind,
            format,
            issued_to: principal.client_id(),
            user_name: identity.user_name.clone(),
            claims_version: identity.version,
            issued_at: self.now,
            expires_at: self.now.plus(ttl),
            last_seen: self.now,
            state: SessionState::Active,
        })
    }

    /// A new secret and its token record.
    fn mint(
        &self,
        prefix: &str,
        session: SessionId,
        kind: lockstep_domain::TokenKind,
        expires_at: Timestamp,
    ) -> EngineResult<(String, Token)> {
        let secret = secrets::mint(prefix, self.now, self.engine.entropy.as_ref())?;
        let token = Token {
            hash: secrets::hash(&secret),
            session,
            kind,
            issued_at: self.now,
            expires_at,
            retired_at: None,
        };
        Ok((secret, token))
    }
}
