//! Directory writes and the bridge step that applies their session impact.

use std::collections::HashMap;

use lockstep_domain::{
    Actor, AuditEntry, AuditKind, DirectoryChange, DirectoryEvent, DirectoryEventId, GroupId, Identity,
    IdentityId, IdentityStatus, Origin, RevocationReason, Session, SessionId, SessionState, Subject,
    Timestamp, TokenKind,
};
use lockstep_policy::{SessionAction, evaluate};
use lockstep_store::{SessionBatch, SessionUpdate, StoreError, StoreResult, TokenUpdate};

use crate::batch::{DirectoryCall, Rejection, Request};
use crate::metrics::{KindLabel, ReasonLabel};
use crate::{Engine, EngineError, EngineResult, WriterState};

/// Events read from the directory log per bridge transaction during replay.
const REPLAY_CHUNK: usize = 512;

/// The outcome of a directory write, returned only after its session impact
/// is committed.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The identity as now stored.
    pub identity: Identity,
    /// Its groups (id, displayName) as the write left them; a new
    /// identity is in none.
    pub groups: Vec<(GroupId, String)>,
    /// The directory events the write produced (empty: nothing changed).
    pub events: Vec<DirectoryEvent>,
    /// How many sessions the write revoked.
    pub revoked: usize,
}

/// An update was refused by the caller's closure, or failed in the engine.
#[derive(Debug)]
pub enum UpdateError<E> {
    /// The closure refused the change (e.g. an invalid SCIM PATCH).
    Rejected(E),
    /// The engine failed.
    Engine(EngineError),
}

impl<E> From<EngineError> for UpdateError<E> {
    fn from(e: EngineError) -> Self {
        UpdateError::Engine(e)
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CatchUp {
    pub(crate) events: usize,
    pub(crate) revoked: usize,
}

impl Engine {
    /// Creates an identity. `draft.id` must be fresh (see
    /// [`Engine::new_identity_id`]); `version`, `created` and `modified`
    /// are set here. Returns once the write and its (empty) session impact
    /// are committed.
    pub fn create_identity(&self, draft: Identity, origin: Origin) -> EngineResult<Applied> {
        self.submit(Request::Create { identity: draft, origin }).map_err(|e| match e {
            UpdateError::Engine(e) => e,
            UpdateError::Rejected(_) => {
                EngineError::Store(StoreError::Backend("a create cannot be rejected".into()))
            }
        })
    }

    /// Reads, changes and writes an identity, so the closure always sees the
    /// current version (writes to one identity are serialised). `if_match`
    /// (a SCIM ETag) makes the write fail if the identity has moved on.
    /// Returns once the write and its session impact are committed.
    pub fn update_identity<E: Send + 'static>(
        &self,
        id: IdentityId,
        origin: Origin,
        if_match: Option<u64>,
        change: impl Fn(&Identity) -> Result<Identity, E> + Send + 'static,
    ) -> Result<Applied, UpdateError<E>> {
        crate::batch::rejected_as::<E>(self.submit(update_request(id, origin, if_match, change)))
    }

    /// [`Engine::update_identity`] to `.await`: the write is queued for the
    /// directory's worker (see [`Engine::serve_directory`]), which reads,
    /// changes and writes the identity.
    pub fn update_identity_call<E: Send + 'static>(
        &self,
        id: IdentityId,
        origin: Origin,
        if_match: Option<u64>,
        change: impl Fn(&Identity) -> Result<Identity, E> + Send + 'static,
    ) -> DirectoryCall<'_, Result<Applied, UpdateError<E>>> {
        DirectoryCall::new(self, update_request(id, origin, if_match, change), crate::batch::rejected_as::<E>)
    }

    /// [`Engine::delete_identity`] to `.await` (see
    /// [`Engine::update_identity_call`]), if `check` accepts the identity as
    /// it is (a SCIM resource type refusing another type's identity): the
    /// check runs on the identity the deletion reads anyway.
    pub fn delete_identity_call<E: Send + 'static>(
        &self,
        id: IdentityId,
        origin: Origin,
        if_match: Option<u64>,
        check: impl Fn(&Identity) -> Result<(), E> + Send + 'static,
    ) -> DirectoryCall<'_, Result<Applied, UpdateError<E>>> {
        self.update_identity_call(id, origin, if_match, move |current| {
            check(current)?;
            tombstone(current).map_err(|never| match never {})
        })
    }

    /// Deletes an identity: it becomes a tombstone and every session it
    /// holds is revoked before this returns.
    pub fn delete_identity(
        &self,
        id: IdentityId,
        origin: Origin,
        if_match: Option<u64>,
    ) -> EngineResult<Applied> {
        self.update_identity(id, origin, if_match, tombstone).map_err(|e| match e {
            UpdateError::Engine(e) => e,
            UpdateError::Rejected(never) => match never {},
        })
    }

    /// A live (not deleted) identity, or `NotFound`.
    pub fn live_identity(&self, id: IdentityId) -> EngineResult<Identity> {
        live(id, self.stores.directory.identity(id)?)
    }

    /// [`Engine::live_identity`] for the directory writer preparing a
    /// batch (under the commit lock): read where the writes go.
    pub(crate) fn live_identity_to_write(&self, id: IdentityId) -> EngineResult<Identity> {
        live(id, self.stores.directory.identity_to_write(id)?)
    }

    /// Applies every directory event after the consumed position. Only
    /// under the commit lock (a batch, `lock_writer`): the log is read
    /// where the writes go, as the directory's writer reads between its
    /// commits (before every batch, almost always to find nothing).
    pub(crate) fn catch_up(&self, writer: &mut WriterState) -> StoreResult<CatchUp> {
        self.replay(writer, None, |after| self.stores.directory.events_after_to_write(after, REPLAY_CHUNK))
    }

    /// Applies the directory events after the consumed position, up to and
    /// including `last` (what a failed bridge step left before a committed
    /// batch), read through a reader: the bridge thread holds no commit
    /// lock.
    pub(crate) fn catch_up_to(
        &self,
        writer: &mut WriterState,
        last: DirectoryEventId,
    ) -> StoreResult<CatchUp> {
        self.replay(writer, Some(last), |after| self.stores.directory.events_after(after, REPLAY_CHUNK))
    }

    /// Applies the events `read` returns after the consumed position, up to
    /// `last` (every one with `None`; then no committed batch may be waiting
    /// for its own bridge step, which would bridge them again).
    fn replay(
        &self,
        writer: &mut WriterState,
        last: Option<DirectoryEventId>,
        read: impl Fn(Option<DirectoryEventId>) -> StoreResult<Vec<DirectoryEvent>>,
    ) -> StoreResult<CatchUp> {
        let mut total = CatchUp::default();
        loop {
            let mut events = read(writer.consumed)?;
            if let Some(last) = last {
                events.retain(|e| e.id <= last);
            }
            if events.is_empty() {
                return Ok(total);
            }
            total.events += events.len();
            total.revoked += self.apply_events(writer, &events, None, None)?.values().sum::<usize>();
        }
    }

    /// The bridge step: policy decision and session impact for `events`, in
    /// one session-store transaction together with their audit records and
    /// the consumed position. Returns the number of sessions revoked per
    /// event.
    pub(crate) fn apply_events(
        &self,
        writer: &mut WriterState,
        events: &[DirectoryEvent],
        committed_at: Option<Timestamp>,
        ack: Option<crate::EarlyAck>,
    ) -> StoreResult<HashMap<DirectoryEventId, usize>> {
        let Some(last) = events.last() else {
            return Ok(HashMap::new());
        };
        let mut per_event: HashMap<DirectoryEventId, usize> = HashMap::new();
        // Inside the writer lock; the session store is decided on and
        // written under the sessions lock, like every authority batch.
        let _sessions = self.lock_sessions();
        // Counted under the lock: a directory read the authority took
        // before this step started is re-taken (`directory_generation`).
        self.bridge_steps.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let now = self.clock.now();
        let policy = &self.config.policy;
        let mut batch = SessionBatch { consumed: Some(last.id), ..SessionBatch::default() };
        // The live sessions of every identity an event here may act on, read
        // together (a group deletion is one event per member).
        let mut acted: Vec<IdentityId> =
            events.iter().filter(|e| policy.acts_on(e)).filter_map(|e| e.subject.identity()).collect();
        acted.sort();
        acted.dedup();
        let mut by_identity: HashMap<IdentityId, Vec<Session>> = HashMap::with_capacity(acted.len());
        for session in self.stores.sessions.live_sessions_of(&acted, now)? {
            by_identity.entry(session.identity).or_default().push(session);
        }
        let mut revoked: Vec<(SessionId, RevocationReason)> = Vec::new();
        let mut suspended: Vec<SessionId> = Vec::new();
        let mut reshaped: Vec<(SessionId, Option<Timestamp>, bool)> = Vec::new();
        let mut impacted_events = Vec::new();
        let mut signals: Vec<lockstep_domain::Signal> = Vec::new();
        let signalling = self.signalling();
        for event in events {
            let mut entry = directory_entry(event);
            if let Some(signal) = lifecycle_signal(event, &entry.detail) {
                signals.push(signal);
            }
            // Only identity events can touch sessions (group membership
            // changes arrive as events of each member). An event the policy
            // does not act on has an empty decision whatever the sessions:
            // skip it without reading them (most writes — creates, a
            // standard user's profile edits — are such events).
            let Some(identity) = event.subject.identity().filter(|_| policy.acts_on(event)) else {
                batch.audit.push(entry);
                continue;
            };
            let sessions = by_identity.entry(identity).or_default();
            let decision = evaluate(event, policy, sessions, now);
            let rule = decision.rule().to_owned();
            let why = decision.reasons.first().map_or("", |r| r.text.as_str());
            entry.detail.push_str(&format!("; decision {rule}: {why}"));
            batch.audit.push(entry);
            if !decision.actions.is_empty() {
                impacted_events.push(event.at);
            }
            for action in &decision.actions {
                let Some(session) = sessions.iter_mut().find(|s| s.id == action.session()) else {
                    continue;
                };
                let credential = session.kind != lockstep_domain::CredentialKind::Session;
                let signal = |kind, claims| lockstep_domain::Signal {
                    kind,
                    at: now,
                    identity: Some(session.identity),
                    user_name: Some(event.subject.name().to_owned()),
                    session: Some(session.id),
                    change: (kind == lockstep_domain::SignalKind::CredentialChange)
                        .then(|| "revoke".to_owned()),
                    credential_type: credential.then(|| session.kind.as_str().to_owned()),
                    claims,
                    initiator: "policy".into(),
                    reason: format!("{rule}: {why}"),
                    txn: format!("dir-{}", event.id.0),
                    state: None,
                };
                match action {
                    // Nothing to build when no stream would take it (most
                    // deployments; and a mass cut builds one per session).
                    _ if !signalling => {}
                    SessionAction::Revoke { .. } if credential => {
                        signals.push(signal(lockstep_domain::SignalKind::CredentialChange, None));
                    }
                    SessionAction::Revoke { .. } => {
                        signals.push(signal(lockstep_domain::SignalKind::SessionRevoked, None));
                    }
                    SessionAction::MarkForRecheck { .. } => {
                        let claims = self.claims_after(session.identity, event);
                        signals.push(signal(lockstep_domain::SignalKind::TokenClaimsChange, Some(claims)));
                    }
                    _ => {}
                }
                let (kind, detail) = match *action {
                    SessionAction::Revoke { reason, .. } => {
                        session.state = SessionState::Revoked { at: now, reason, cause: Some(event.id) };
                        revoked.push((session.id, reason));
                        *per_event.entry(event.id).or_default() += 1;
                        (AuditKind::SessionRevoked, format!("reason={reason}"))
                    }
                    SessionAction::MarkForRecheck { .. } => {
                        session.state = SessionState::NeedsRecheck;
                        (
                            AuditKind::SessionMarkedForRecheck,
                            "claims re-derived from the directory".to_owned(),
                        )
                    }
                    SessionAction::ShortenExpiry { expires_at, .. } => {
                        session.expires_at = expires_at;
                        reshaped.push((session.id, Some(expires_at), false));
                        let at = expires_at.unix_seconds();
                        (AuditKind::SessionExpiryShortened, format!("expires_at={at}"))
                    }
                    SessionAction::Suspend { condition, until, .. } => {
                        session.state =
                            SessionState::Suspended { at: now, condition, cause: Some(event.id), until };
                        suspended.push(session.id);
                        let until =
                            until.map_or_else(|| "never".to_owned(), |u| u.unix_seconds().to_string());
                        (
                            AuditKind::SessionSuspended,
                            format!("condition={condition}; revoke_at={until}; {why}"),
                        )
                    }
                    SessionAction::Resume { .. } => {
                        session.state = SessionState::Active;
                        reshaped.push((session.id, None, true));
                        (AuditKind::SessionResumed, "the condition cleared".to_owned())
                    }
                    SessionAction::RevokeRefresh { .. } => {
                        // A refresh token that expires now cannot renew the
                        // session (and is not mistaken for a stolen one, as
                        // a retired token would be).
                        let mut ended = 0;
                        for token in self.stores.sessions.tokens_of(session.id)? {
                            if token.kind == TokenKind::Refresh && token.works(now) {
                                batch.token_updates.push(TokenUpdate {
                                    hash: token.hash,
                                    retired_at: None,
                                    expires_at: Some(now),
                                });
                                ended += 1;
                            }
                        }
                        (
                            AuditKind::SessionRefreshRevoked,
                            format!("{ended} refresh token(s) ended; access tokens live out their lifetimes"),
                        )
                    }
                };
                let expires_at =
                    matches!(action, SessionAction::ShortenExpiry { .. }).then_some(session.expires_at);
                batch.updates.push(SessionUpdate { session: session.id, state: session.state, expires_at });
                batch.audit.push(AuditEntry {
                    at: now,
                    kind,
                    identity: Some(session.identity),
                    user_name: Some(event.subject.name().to_owned()),
                    session: Some(session.id),
                    directory_event: Some(event.id),
                    actor: Actor::policy(rule.clone()),
                    detail,
                });
            }
        }
        // Fail closed: stop answering "active" before the commit, so there is
        // no instant in which a revocation or suspension is durable but the
        // cache is not.
        for (id, _) in &revoked {
            self.forget(id);
        }
        for id in &suspended {
            self.cache.update(id, |c| c.suspended = true);
        }
        // Everything in a bridge batch follows from directory events that
        // are already durable: if the machine fails before this commit
        // reaches the disk, start-up replays them and decides again, before
        // anything is served. So it need not wait for an fsync of its own
        // (a crash of the process alone loses nothing either way).
        batch.replayable = true;
        batch.outbox = self.address(signals).map_err(|e| StoreError::Backend(e.to_string()))?;
        let queued = !batch.outbox.is_empty();
        // Shortened expiries fail closed like the cuts above, and the
        // claims follow the (already durable) directory: both before the
        // commit, so an early acknowledgement finds them in force.
        // Resumptions wait for the commit.
        let mut resumed = Vec::new();
        for (id, expires_at, resume) in reshaped {
            if let Some(exp) = expires_at {
                self.cache.update(&id, |c| c.expires_at = exp);
            }
            if resume {
                resumed.push(id);
            }
        }
        for event in events {
            self.follow_claims(event);
        }
        let acked = ack.is_some_and(|ack| {
            let impact = batch.updates.len();
            // Set before the caller can hear of it, cleared below, both
            // under the sessions lock: a reader that settles after the
            // acknowledgement waits for this commit.
            self.writing_after_ack.store(true, std::sync::atomic::Ordering::Release);
            let fired = ack.offer(impact);
            if !fired {
                self.writing_after_ack.store(false, std::sync::atomic::Ordering::Release);
            }
            fired
        });
        let applied = self.stores.sessions.apply(batch);
        if acked {
            self.writing_after_ack.store(false, std::sync::atomic::Ordering::Release);
        }
        applied?;
        writer.consumed = Some(last.id);
        if queued {
            self.ring();
        }
        for id in resumed {
            self.cache.update(&id, |c| c.suspended = false);
        }
        let done = self.clock.now();
        for event in events {
            self.metrics
                .directory_events
                .get_or_create(&KindLabel { kind: event.change.kind().as_str().to_owned() })
                .inc();
        }
        for at in impacted_events {
            self.metrics.observe_propagation(done.since(committed_at.unwrap_or(at).max(at)));
        }
        for (_, reason) in &revoked {
            self.metrics.revocations.get_or_create(&ReasonLabel { reason: reason.as_str().to_owned() }).inc();
        }
        Ok(per_event)
    }

    /// Keeps the in-memory claims of identities holding live sessions in
    /// step with the directory: after a bridge step, introspection shows
    /// the groups, tiers and kind the event left.
    fn follow_claims(&self, event: &DirectoryEvent) {
        match &event.subject {
            Subject::Group { id, display_name } => {
                if matches!(&event.change, DirectoryChange::GroupUpdated { changed } if changed.iter().any(|c| c == "displayName"))
                {
                    self.claims.rename_group(*id, display_name);
                }
            }
            Subject::Identity { id, kind, tiers, user_name, .. } => match &event.change {
                DirectoryChange::IdentityDeleted | DirectoryChange::IdentityDeactivated { .. } => {
                    self.claims.remove(id);
                }
                change => self.claims.update(id, |claims| {
                    if *claims.user_name != **user_name {
                        claims.user_name = user_name.as_str().into();
                    }
                    claims.kind = *kind;
                    claims.tiers = *tiers;
                    match change {
                        DirectoryChange::AddedToGroup { group, group_name }
                            if !claims.groups.iter().any(|(g, _)| g == group) =>
                        {
                            claims.groups.push((*group, group_name.as_str().into()));
                            claims.groups.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
                        }
                        DirectoryChange::RemovedFromGroup { group, .. } => {
                            claims.groups.retain(|(g, _)| g != group);
                        }
                        _ => {}
                    }
                }),
            },
        }
    }
}

impl Engine {
    /// An identity's groups and tiers once `event` is applied (for CAEP
    /// `token-claims-change`), from the claims held in memory.
    fn claims_after(
        &self,
        identity: IdentityId,
        event: &DirectoryEvent,
    ) -> (Vec<String>, lockstep_domain::Tiers) {
        let mut groups: Vec<String> = self
            .claims
            .get(&identity)
            .map(|c| c.groups.iter().map(|(_, n)| n.to_string()).collect())
            .unwrap_or_default();
        match &event.change {
            DirectoryChange::AddedToGroup { group_name, .. } if !groups.contains(group_name) => {
                groups.push(group_name.clone());
            }
            DirectoryChange::RemovedFromGroup { group_name, .. } => groups.retain(|g| g != group_name),
            _ => {}
        }
        groups.sort();
        let tiers = match &event.subject {
            Subject::Identity { tiers, .. } => *tiers,
            Subject::Group { .. } => lockstep_domain::Tiers::STANDARD,
        };
        (groups, tiers)
    }
}

/// The RISC account event a lifecycle change is, if it is one.
fn lifecycle_signal(event: &DirectoryEvent, detail: &str) -> Option<lockstep_domain::Signal> {
    use lockstep_domain::SignalKind as K;
    let kind = match event.change {
        DirectoryChange::IdentityDeactivated { .. } => K::AccountDisabled,
        DirectoryChange::IdentityReactivated { .. } => K::AccountEnabled,
        DirectoryChange::IdentityDeleted => K::AccountPurged,
        _ => return None,
    };
    let Subject::Identity { id, user_name, .. } = &event.subject else { return None };
    Some(lockstep_domain::Signal {
        kind,
        at: event.at,
        identity: Some(*id),
        user_name: Some(user_name.clone()),
        session: None,
        change: None,
        credential_type: None,
        claims: None,
        initiator: "admin".into(),
        reason: format!("{detail} (source {})", event.origin.source),
        txn: format!("dir-{}", event.id.0),
        state: None,
    })
}

fn directory_entry(event: &DirectoryEvent) -> AuditEntry {
    let show = |ids: &[IdentityId]| {
        if ids.is_empty() {
            "none".to_owned()
        } else {
            ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
        }
    };
    let mut detail = match &event.change {
        DirectoryChange::IdentityCreated => match &event.subject {
            Subject::Identity { kind, tiers, .. } => format!("kind={kind}; tier={tiers}"),
            Subject::Group { .. } => String::new(),
        },
        DirectoryChange::IdentityUpdated { changed } | DirectoryChange::GroupUpdated { changed } => {
            format!("changed={}", changed.join(","))
        }
        DirectoryChange::IdentityDeactivated { from, to } => format!("status {from} -> {to}"),
        DirectoryChange::IdentityReactivated { from } => format!("status {from} -> active"),
        DirectoryChange::OwnerChanged { from, to } => format!("owners {} -> {}", show(from), show(to)),
        DirectoryChange::OwnerLost { owner } => {
            format!(
                "no active owner left (owner {})",
                owner.map_or_else(|| "removed".to_owned(), |o| o.to_string())
            )
        }
        DirectoryChange::OwnerRestored { owner } => format!("active owner {owner}"),
        DirectoryChange::TierChanged { from, to } => format!("tier {from} -> {to}"),
        DirectoryChange::IdentityDeleted | DirectoryChange::GroupDeleted => "deleted".to_owned(),
        DirectoryChange::GroupCreated => "created".to_owned(),
        DirectoryChange::AddedToGroup { group, group_name }
        | DirectoryChange::RemovedFromGroup { group, group_name } => {
            format!("group={group} ({group_name})")
        }
    };
    let (identity, user_name) = match &event.subject {
        Subject::Identity { id, user_name, .. } => (Some(*id), Some(user_name.clone())),
        Subject::Group { id, display_name } => {
            detail = format!("group={id} ({display_name}); {detail}");
            (None, None)
        }
    };
    if let Some(cause) = event.cause {
        detail.push_str(&format!("; caused_by={}", cause.0));
    }
    if let Some(source_ref) = &event.origin.source_ref {
        detail.push_str(&format!("; source_ref={source_ref}"));
    }
    AuditEntry {
        at: event.at,
        kind: AuditKind::for_change(event.change.kind()),
        identity,
        user_name,
        session: None,
        directory_event: Some(event.id),
        actor: Actor::Source { source: event.origin.source.clone(), client: event.origin.client },
        detail,
    }
}

/// What a deletion makes of an identity.
fn tombstone(current: &Identity) -> Result<Identity, std::convert::Infallible> {
    let mut next = current.clone();
    next.status = IdentityStatus::Deprovisioned;
    Ok(next)
}

/// `found` if it is live (not deleted), or `NotFound`.
fn live(id: IdentityId, found: Option<Identity>) -> EngineResult<Identity> {
    match found {
        Some(identity) if identity.status != IdentityStatus::Deprovisioned => Ok(identity),
        _ => Err(EngineError::NotFound(format!("identity {id}"))),
    }
}

/// The queued form of an update. The change runs on the thread that
/// commits, against the identity as the writer reads it (under the
/// commit lock, so it is current): reading it first through a reader
/// to run the change on the caller's thread cost the caller a whole
/// read transaction — whose page cache every commit throws away — to
/// save the writer a few microseconds. A refusal (bad If-Match, an
/// invalid change) is therefore of the state the write would change.
fn update_request<E: Send + 'static>(
    id: IdentityId,
    origin: Origin,
    if_match: Option<u64>,
    change: impl Fn(&Identity) -> Result<Identity, E> + Send + 'static,
) -> Request {
    let change = Box::new(move |current: &Identity| change(current).map_err(|e| Box::new(e) as Rejection));
    Request::Update { id, origin, if_match, change, guess: None }
}
