//! Shared Signals: which downstream streams hear of each session impact.
//!
//! Signals are produced where the impact is decided — the bridge step for
//! directory events, the authority for revocations and credentials — and
//! addressed to every stream that wants them, as outbox entries of the
//! same session batch (one per signal, listing its streams). Delivery (signing SETs, pushing, answering polls) is the
//! `ssf` crate's, beside the bridge: a slow receiver never slows a
//! revocation down.

use std::sync::Arc;

use lockstep_domain::{
    Actor, ClientId, IdentityId, Outgoing, Signal, SignalKind, Stream, StreamId, StreamStatus, Timestamp,
};
use lockstep_store::{Queued, SignalRecord, SignalStore};

use crate::{Engine, EngineError, EngineResult, secrets};

/// Called after a commit that queued signals (the delivery worker's
/// doorbell).
#[derive(Clone)]
pub struct Doorbell(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Doorbell")
    }
}

/// CAEP's `initiating_entity` for an actor.
pub(crate) fn initiator(actor: &Actor) -> &'static str {
    match actor {
        Actor::Admin | Actor::Client(_) => "admin",
        Actor::Source { .. } => "admin",
        Actor::Policy { .. } => "policy",
        Actor::System => "system",
    }
}

/// The engine's Shared Signals: streams and their outboxes.
#[derive(Debug, Clone, Copy)]
pub struct Signals<'a> {
    engine: &'a Engine,
}

impl Engine {
    /// Streams, subjects, verification and the outbox (SSF 1.0).
    pub fn signals(&self) -> Signals<'_> {
        Signals { engine: self }
    }

    fn signal_store(&self) -> EngineResult<&dyn SignalStore> {
        self.stores.sessions.signals().ok_or_else(|| {
            EngineError::Store(lockstep_store::StoreError::Backend(
                "this session store keeps no Shared Signals streams".into(),
            ))
        })
    }

    /// Whether any stream could take a signal now (one that is not
    /// disabled): when none can, the bridge builds none.
    pub(crate) fn signalling(&self) -> bool {
        let streams = self.streams.read().unwrap_or_else(|p| p.into_inner());
        streams.iter().any(|s| s.status != StreamStatus::Disabled)
    }

    /// Addresses signals to every stream that wants them (a fresh `jti`
    /// each; signals without a `txn` share one fresh `txn`).
    pub(crate) fn address(&self, mut signals: Vec<Signal>) -> EngineResult<Vec<Outgoing>> {
        if signals.is_empty() {
            return Ok(Vec::new());
        }
        let streams = self.streams.read().unwrap_or_else(|p| p.into_inner());
        if streams.iter().all(|s| s.status == StreamStatus::Disabled) {
            return Ok(Vec::new());
        }
        if signals.iter().any(|s| s.txn.is_empty()) {
            let txn = secrets::uuid_v7(self.clock.now(), self.entropy.as_ref())?.to_string();
            for s in signals.iter_mut().filter(|s| s.txn.is_empty()) {
                s.txn.clone_from(&txn);
            }
        }
        // One random UUID per batch and a counter: unique `jti`s without a
        // trip to the OS random source per signal (a deactivation with 100
        // sessions queues 101 of them). Each signal is queued once, with
        // the streams that want it.
        let base = secrets::uuid_v7(self.clock.now(), self.entropy.as_ref())?.simple().to_string();
        let mut out = Vec::new();
        for signal in signals {
            let to: Vec<StreamId> = streams.iter().filter(|s| s.wants(&signal)).map(|s| s.id).collect();
            if !to.is_empty() {
                out.push(Outgoing { jti_base: format!("{base}.{}", out.len()), streams: to, signal });
            }
        }
        Ok(out)
    }

    /// Rings the delivery worker's doorbell, if one is installed.
    pub(crate) fn ring(&self) {
        let bell = self.doorbell.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(bell) = bell {
            (bell.0)();
        }
    }
}

impl Signals<'_> {
    /// Installs the delivery worker's doorbell.
    pub fn set_doorbell(&self, bell: Doorbell) {
        *self.engine.doorbell.write().unwrap_or_else(|p| p.into_inner()) = Some(bell);
    }

    /// Every stream.
    pub fn streams(&self) -> Vec<Stream> {
        self.engine.streams.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A stream, if `client` may see it (the admin, `None`, sees all).
    pub fn stream(&self, id: StreamId, client: Option<ClientId>) -> EngineResult<Stream> {
        self.streams()
            .into_iter()
            .find(|s| s.id == id && (client.is_none() || s.client == client))
            .ok_or_else(|| EngineError::NotFound(format!("stream {id}")))
    }

    /// The streams `client` may see.
    pub fn streams_of(&self, client: Option<ClientId>) -> Vec<Stream> {
        self.streams().into_iter().filter(|s| client.is_none() || s.client == client).collect()
    }

    /// A fresh stream id.
    pub fn new_stream_id(&self) -> EngineResult<StreamId> {
        Ok(StreamId::from_uuid(secrets::uuid_v7(self.engine.clock.now(), self.engine.entropy.as_ref())?))
    }

    /// Creates or replaces a stream (written through, durable on return).
    /// Disabling it drops what it had pending.
    pub fn put_stream(&self, stream: Stream) -> EngineResult<Stream> {
        let store = self.engine.signal_store()?;
        // Under the sessions lock, so no batch addresses signals to the old
        // version of the stream after the new one is stored.
        let _sessions = self.engine.lock_sessions();
        store.put_stream(&stream)?;
        if stream.status == StreamStatus::Disabled {
            store.drop_pending(stream.id)?;
        }
        let mut streams = self.engine.streams.write().unwrap_or_else(|p| p.into_inner());
        match streams.iter_mut().find(|s| s.id == stream.id) {
            Some(s) => *s = stream.clone(),
            None => streams.push(stream.clone()),
        }
        drop(streams);
        self.engine.ring();
        Ok(stream)
    }

    /// Deletes a stream and its pending signals.
    pub fn delete_stream(&self, id: StreamId, client: Option<ClientId>) -> EngineResult<()> {
        self.stream(id, client)?;
        let store = self.engine.signal_store()?;
        let _sessions = self.engine.lock_sessions();
        store.delete_stream(id)?;
        self.engine.streams.write().unwrap_or_else(|p| p.into_inner()).retain(|s| s.id != id);
        Ok(())
    }

    /// Queues a verification event for a stream (its subject is the stream
    /// itself; `state` is echoed).
    pub fn verify(
        &self,
        id: StreamId,
        client: Option<ClientId>,
        state: Option<String>,
    ) -> EngineResult<String> {
        let stream = self.stream(id, client)?;
        if stream.status == StreamStatus::Disabled {
            return Err(EngineError::Invalid {
                field: "stream_id",
                message: format!("stream {id} is disabled; enable it to verify it"),
            });
        }
        let now = self.engine.clock.now();
        let base = secrets::uuid_v7(now, self.engine.entropy.as_ref())?.to_string();
        let signal = Signal {
            kind: SignalKind::Verification,
            at: now,
            identity: None,
            user_name: None,
            session: None,
            change: None,
            credential_type: None,
            claims: None,
            initiator: "admin".into(),
            reason: "verification requested by the receiver".into(),
            txn: base.clone(),
            state,
        };
        let outgoing = Outgoing { jti_base: base, streams: vec![id], signal };
        let jti = outgoing.jti(0);
        self.engine.signal_store()?.queue(vec![outgoing])?;
        self.engine.ring();
        Ok(jti)
    }

    /// A stream's due signals, oldest first.
    pub fn pending(&self, id: StreamId, limit: usize) -> EngineResult<Vec<Queued>> {
        Ok(self.engine.signal_store()?.pending(id, self.engine.clock.now(), limit)?)
    }

    /// How many signals a stream has pending.
    pub fn pending_count(&self, id: StreamId) -> EngineResult<usize> {
        Ok(self.engine.signal_store()?.pending_count(id)?)
    }

    /// Marks signals delivered (a push acknowledged, a poll acknowledged).
    pub fn delivered(&self, id: StreamId, jtis: &[String]) -> EngineResult<usize> {
        Ok(self.engine.signal_store()?.delivered(id, jtis, self.engine.clock.now())?)
    }

    /// Records a failed attempt; the signal is due again at `next`.
    pub fn retry_later(&self, id: StreamId, jti: &str, next: Timestamp, error: &str) -> EngineResult<()> {
        Ok(self.engine.signal_store()?.retry_later(id, jti, next, error)?)
    }

    /// What a directory event (`dir-N`) or a call reached downstream.
    pub fn signals_of(&self, txn: &str) -> EngineResult<Vec<SignalRecord>> {
        Ok(self.engine.signal_store()?.signals_of(txn)?)
    }

    /// Adds a subject: once a stream has subjects, only they get events.
    pub fn add_subject(
        &self,
        id: StreamId,
        client: Option<ClientId>,
        identity: IdentityId,
    ) -> EngineResult<()> {
        let mut stream = self.stream(id, client)?;
        stream.excluded.retain(|i| *i != identity);
        if !stream.subjects.contains(&identity) {
            stream.subjects.push(identity);
        }
        self.put_stream(stream).map(|_| ())
    }

    /// Removes a subject: it gets no events on this stream.
    pub fn remove_subject(
        &self,
        id: StreamId,
        client: Option<ClientId>,
        identity: IdentityId,
    ) -> EngineResult<()> {
        let mut stream = self.stream(id, client)?;
        stream.subjects.retain(|i| *i != identity);
        if !stream.excluded.contains(&identity) {
            stream.excluded.push(identity);
        }
        self.put_stream(stream).map(|_| ())
    }
}

/// What an upstream transmitter's SET asks Lockstep to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// Deactivate the identity (a directory event from the source: the
    /// policy cuts its sessions).
    Disable,
    /// Reactivate it (sessions cut before stay dead).
    Enable,
    /// Delete it.
    Purge,
    /// Revoke its sessions (CAEP `session-revoked`): not a directory fact,
    /// so it goes to the authority, not the directory.
    RevokeSessions,
    /// Revoke every credential and session (RISC `credential-compromise`).
    RevokeCredentials,
}

impl Engine {
    /// Applies a verified SET from the configured SSF source `source` to
    /// every identity `subject` names (by `email`: a `userName` or an
    /// address; by `iss_sub`: the `externalId`; by `opaque`: the id). A
    /// `jti` already applied is acknowledged and not applied again; the
    /// effect is committed before this returns. Returns how many identities
    /// it reached.
    pub fn apply_upstream(
        &self,
        source: &str,
        jti: &str,
        subject: &crate::authority::SubjectId,
        asked: &Upstream,
        event: &str,
    ) -> EngineResult<usize> {
        let store = self.signal_store()?;
        if store.received(source, jti)? {
            return Ok(0);
        }
        let (how, mut identities) = self.identities_named(subject)?;
        if let crate::authority::SubjectId::Email(email) = subject
            && let Some(identity) = self.stores.directory.live_identity_by_user_name(email)?
            && !identities.contains(&identity.id)
        {
            identities.push(identity.id);
        }
        let origin = lockstep_domain::Origin {
            source: lockstep_domain::SourceId::new(source),
            client: None,
            source_ref: Some(format!("jti {jti}")),
        };
        let why = format!("{event} from the Shared Signals source {source} (jti {jti}, subject by {how})");
        let principal = crate::Principal::admin();
        for id in &identities {
            let status = match asked {
                Upstream::Disable => Some(lockstep_domain::IdentityStatus::Disabled),
                Upstream::Enable => Some(lockstep_domain::IdentityStatus::Active),
                Upstream::Purge => Some(lockstep_domain::IdentityStatus::Deprovisioned),
                Upstream::RevokeSessions | Upstream::RevokeCredentials => None,
            };
            match status {
                Some(status) => {
                    let applied = self.update_identity(*id, origin.clone(), None, move |current| {
                        let mut next = current.clone();
                        next.status = status;
                        Ok::<_, std::convert::Infallible>(next)
                    });
                    match applied {
                        Ok(_) | Err(crate::UpdateError::Engine(EngineError::NotFound(_))) => {}
                        Err(crate::UpdateError::Engine(e)) => return Err(e),
                        Err(crate::UpdateError::Rejected(never)) => match never {},
                    }
                }
                None => {
                    self.authority().revoke_all(*id, &principal, &why).wait()?;
                }
            }
        }
        store.remember_received(source, jti, self.clock.now())?;
        Ok(identities.len())
    }

    /// Whether `source` is a configured Shared Signals source (its signals
    /// may change the status of identities other sources own: that is what
    /// an IdP's account-disabled is for).
    pub(crate) fn is_signal_source(&self, source: &lockstep_domain::SourceId) -> bool {
        self.sources.is_kind(source, "ssf")
    }
}
