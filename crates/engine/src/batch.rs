//! Group commit for directory writes.
//!
//! Every directory write costs two durable commits (directory, then bridge).
//! One at a time, that caps writes at the disk's fsync rate whatever the
//! concurrency. So a writer enqueues its request; if no batch is being
//! formed, it becomes the *leader*: it takes the writer lock, drains the
//! whole queue and commits every request in it with one directory
//! transaction (a savepoint per request, so one conflict fails only its own
//! request) and one bridge transaction, hands each waiter its result, and
//! passes leadership to the oldest request still queued. Waiters sleep on
//! their own slot: they never contend for the writer lock just to learn
//! that their result is ready (an earlier design did, and requests spent
//! five times the batch time in that convoy).
//!
//! Each identity is written at most once per batch; a second request for the
//! same identity waits for the next batch, so every request reads committed
//! state and no in-batch overlay is needed. Nothing is acknowledged before
//! both commits, exactly as without batching.

use std::any::Any;
use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use lockstep_domain::{
    DirectoryEvent, Identity, IdentityId, IdentityKind, IdentityStatus, Origin, Timestamp, diff_identity,
};
use lockstep_store::{IdentityWrite, StoreError};

use crate::bridge::{Applied, UpdateError};
use crate::{Engine, EngineError, WriterState};

/// A closure's refusal, type-erased so requests of any caller can share a
/// queue; [`Engine::update_identity`] restores the type.
pub(crate) type Rejection = Box<dyn Any + Send>;

type Change = Box<dyn FnOnce(&Identity) -> Result<Identity, Rejection> + Send>;

/// A directory write waiting to be committed.
pub(crate) enum Request {
    Create {
        identity: Identity,
        origin: Origin,
    },
    Update {
        id: IdentityId,
        origin: Origin,
        if_match: Option<u64>,
        change: Change,
        /// The change already applied to the identity at this version.
        guess: Option<(u64, Identity)>,
    },
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Create { identity, .. } => write!(f, "Create({})", identity.id),
            Request::Update { id, .. } => write!(f, "Update({id})"),
        }
    }
}

impl Request {
    fn target(&self) -> IdentityId {
        match self {
            Request::Create { identity, .. } => identity.id,
            Request::Update { id, .. } => *id,
        }
    }
}

pub(crate) type Outcome = Result<Applied, UpdateError<Rejection>>;

/// One request and, once committed, its outcome.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    request: Option<Request>,
    result: Option<Outcome>,
    /// Set when this request's thread must lead the next batch.
    lead: bool,
}

/// A slot and the condition its thread sleeps on.
#[derive(Debug, Default)]
pub(crate) struct Cell {
    slot: Mutex<Slot>,
    changed: Condvar,
}

pub(crate) type Pending = Arc<Cell>;

/// The queue of requests and whether a leader is at work on it.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    pending: Vec<Pending>,
    leader: bool,
}

fn slot(p: &Pending) -> MutexGuard<'_, Slot> {
    p.slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn finish(p: &Pending, outcome: Outcome) {
    slot(p).result = Some(outcome);
    p.changed.notify_one();
}

/// Leadership of the queue, handed over when dropped — also if the batch
/// panics, when every request of the batch still waiting is failed rather
/// than left asleep and the queue is not left without a leader.
struct Leading<'a> {
    engine: &'a Engine,
    /// The batch being committed.
    batch: Vec<Pending>,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        for p in &self.batch {
            // Only after a panic is anything here without a result (a
            // result already collected leaves None too; no one reads it).
            let mut s = slot(p);
            if s.result.is_none() {
                s.request = None;
                let failed = StoreError::Backend("the batch committing this write failed".into());
                s.result = Some(Err(EngineError::Store(failed).into()));
                p.changed.notify_one();
            }
        }
        self.engine.hand_over();
    }
}

enum Prepared {
    Write(IdentityWrite),
    Unchanged(Identity),
}

impl Engine {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Commits a request (with whatever else is waiting) and returns its
    /// outcome once its session impact is committed.
    pub(crate) fn submit(&self, request: Request) -> Outcome {
        let pending: Pending = Arc::new(Cell::default());
        slot(&pending).request = Some(request);
        let lead_now = {
            let mut queue = self.queue();
            queue.pending.push(pending.clone());
            !std::mem::replace(&mut queue.leader, true)
        };
        if !lead_now {
            let mut s = slot(&pending);
            while s.result.is_none() && !s.lead {
                s = pending.changed.wait(s).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if let Some(result) = s.result.take() {
                return result;
            }
            s.lead = false;
        }
        // Leading: this thread's request is queued (a deferred request
        // stays queued), so batches run until it has its result.
        let mut leading = Leading { engine: self, batch: Vec::new() };
        loop {
            leading.batch = std::mem::take(&mut self.queue().pending);
            match self.lock_writer() {
                Ok(mut writer) => self.run_batch(&mut writer, leading.batch.clone()),
                Err(_) => {
                    for p in &leading.batch {
                        if slot(p).request.take().is_some() {
                            let poisoned = StoreError::Backend("writer lock poisoned".into());
                            finish(p, Err(EngineError::Store(poisoned).into()));
                        }
                    }
                }
            }
            leading.batch.clear();
            let done = slot(&pending).result.take();
            if let Some(result) = done {
                return result; // `leading` hands over on drop
            }
        }
    }

    /// Passes leadership to the oldest queued request, or ends it.
    fn hand_over(&self) {
        let mut queue = self.queue();
        match queue.pending.first() {
            Some(next) => {
                slot(next).lead = true;
                next.changed.notify_one();
            }
            None => queue.leader = false,
        }
    }

    fn run_batch(&self, writer: &mut WriterState, batch: Vec<Pending>) {
        if let Err(e) = self.catch_up(writer) {
            for p in &batch {
                if slot(p).request.take().is_some() {
                    finish(p, Err(EngineError::BridgePending(e.clone()).into()));
                }
            }
            return;
        }
        let now = self.clock.now();
        let mut writes = Vec::new();
        let mut owners: Vec<Pending> = Vec::new();
        let mut targets = HashSet::new();
        let mut deferred = Vec::new();
        for p in batch {
            let Some(request) = slot(&p).request.take() else { continue };
            if !targets.insert(request.target()) {
                slot(&p).request = Some(request);
                deferred.push(p);
                continue;
            }
            match self.prepare(request, now) {
                Ok(Prepared::Write(write)) => {
                    writes.push(write);
                    owners.push(p);
                }
                Ok(Prepared::Unchanged(identity)) => {
                    finish(&p, Ok(Applied { identity, events: Vec::new(), revoked: 0 }));
                }
                Err(e) => finish(&p, Err(e)),
            }
        }
        if !deferred.is_empty() {
            // Ahead of newer requests, so writes to one identity keep their order.
            let mut queue = self.queue();
            let newer = std::mem::take(&mut queue.pending);
            queue.pending.extend(deferred);
            queue.pending.extend(newer);
        }
        if writes.is_empty() {
            return;
        }
        let results = match self.stores.directory.commit_identities(writes) {
            Ok(results) => results,
            Err(e) => {
                for p in &owners {
                    finish(p, Err(EngineError::from(e.clone()).into()));
                }
                return;
            }
        };
        let committed_at = self.clock.now();
        let events: Vec<DirectoryEvent> =
            results.iter().filter_map(|r| r.as_ref().ok()).flat_map(|c| c.events.iter().cloned()).collect();
        let revoked = self.apply_events(writer, &events, Some(committed_at));
        for (p, result) in owners.iter().zip(results) {
            let outcome = match (result, &revoked) {
                (Err(e), _) => Err(EngineError::from(e).into()),
                (Ok(_), Err(e)) => Err(EngineError::BridgePending(e.clone()).into()),
                (Ok(c), Ok(counts)) => Ok(Applied {
                    revoked: c.events.iter().map(|e| counts.get(&e.id).copied().unwrap_or(0)).sum(),
                    identity: c.identity,
                    events: c.events,
                }),
            };
            finish(p, outcome);
        }
    }

    /// A non-human identity needs an owner; an owner is a live human other
    /// than the identity itself.
    fn check_ownership(&self, identity: &Identity) -> Result<(), EngineError> {
        let invalid = |message: String| EngineError::Invalid { field: "owner", message };
        match identity.owner {
            None if identity.kind != IdentityKind::Human => {
                Err(invalid(format!("a {} identity needs an owner (a human User)", identity.kind)))
            }
            None => Ok(()),
            Some(owner) if owner == identity.id => Err(invalid("an identity cannot own itself".into())),
            Some(owner) => match self.stores.directory.identity(owner)? {
                Some(o) if o.status != IdentityStatus::Deprovisioned && o.kind == IdentityKind::Human => {
                    Ok(())
                }
                _ => Err(invalid(format!("{owner} is not a live human User"))),
            },
        }
    }

    fn prepare(&self, request: Request, now: Timestamp) -> Result<Prepared, UpdateError<Rejection>> {
        let (mut next, expected_version, changes, mut origin) = match request {
            Request::Create { mut identity, origin } => {
                self.check_ownership(&identity)?;
                identity.created = now;
                identity.version = 0;
                let changes = diff_identity(None, &identity);
                (identity, None, changes, origin)
            }
            Request::Update { id, origin, if_match, change, guess } => {
                let current = self.live_identity(id)?;
                crate::check_if_match(if_match, current.version)?;
                let mut next = match guess {
                    Some((version, next)) if version == current.version => next,
                    _ => change(&current).map_err(UpdateError::Rejected)?,
                };
                next.id = current.id;
                next.created = current.created;
                next.version = current.version;
                let changes = diff_identity(Some(&current), &next);
                if changes.is_empty() {
                    return Ok(Prepared::Unchanged(current));
                }
                // Only a write that sets kind or owner is checked: an identity
                // whose owner has left must still be deactivatable.
                if (next.kind != current.kind || next.owner != current.owner)
                    && next.status != lockstep_domain::IdentityStatus::Deprovisioned
                {
                    self.check_ownership(&next)?;
                }
                (next, Some(current.version), changes, origin)
            }
        };
        next.modified = now;
        // The source's own identifier for an identity is its externalId.
        if origin.source_ref.is_none() {
            origin.source_ref.clone_from(&next.external_id);
        }
        Ok(Prepared::Write(IdentityWrite { identity: next, expected_version, changes, origin, at: now }))
    }
}
