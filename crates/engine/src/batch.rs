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
    DirectoryChange, DirectoryEvent, Identity, IdentityId, IdentityStatus, Origin, Timestamp, diff_identity,
};
use lockstep_store::{IdentityWrite, StoreError};

use crate::bridge::{Applied, UpdateError};
use crate::{Engine, EngineError, WriterState};

/// A closure's refusal, type-erased so requests of any caller can share a
/// queue; [`Engine::update_identity`] restores the type.
pub(crate) type Rejection = Box<dyn Any + Send>;

/// `Fn`, not `FnOnce`: a request the batch defers (it touches what an
/// earlier request of the batch touched) is prepared again in the next one.
type Change = Box<dyn Fn(&Identity) -> Result<Identity, Rejection> + Send>;

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
    /// The write, and every identity it read or affects (its footprint).
    Write(IdentityWrite, Vec<IdentityId>),
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
        // Every identity a write of this batch read or affects: a request
        // touching one of them waits for the next batch, so that each
        // request is prepared against committed state (an owner's
        // deactivation and a write to what it owns never share a batch).
        let mut touched = HashSet::new();
        let mut deferred = Vec::new();
        for p in batch {
            let Some(request) = slot(&p).request.take() else { continue };
            if touched.contains(&request.target()) {
                slot(&p).request = Some(request);
                deferred.push(p);
                continue;
            }
            match self.prepare(&request, now) {
                Ok(Prepared::Write(write, footprint)) => {
                    if footprint.iter().any(|id| touched.contains(id)) {
                        slot(&p).request = Some(request);
                        deferred.push(p);
                        continue;
                    }
                    touched.extend(footprint);
                    writes.push(write);
                    owners.push(p);
                }
                Ok(Prepared::Unchanged(identity)) => {
                    touched.insert(identity.id);
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

    fn prepare(&self, request: &Request, now: Timestamp) -> Result<Prepared, UpdateError<Rejection>> {
        let mut footprint = vec![request.target()];
        let (mut next, expected_version, changes, fanout, tiers, mut origin) = match request {
            Request::Create { identity, origin } => {
                let mut identity = identity.clone();
                self.check_ownership(&identity)?;
                footprint.extend(identity.owners.iter().copied());
                identity.created = now;
                identity.version = 0;
                // A new identity is in no group yet.
                let tiers = self.tiers_with(&identity, &[]);
                (identity, None, vec![DirectoryChange::IdentityCreated], Vec::new(), tiers, origin.clone())
            }
            Request::Update { id, origin, if_match, change, guess } => {
                let current = self.live_identity(*id)?;
                crate::check_if_match(*if_match, current.version)?;
                let mut next = match guess {
                    Some((version, next)) if *version == current.version => next.clone(),
                    _ => change(&current).map_err(UpdateError::Rejected)?,
                };
                next.id = current.id;
                next.created = current.created;
                next.version = current.version;
                let mut changes = diff_identity(Some(&current), &next);
                if changes.is_empty() {
                    return Ok(Prepared::Unchanged(current));
                }
                // Only a write that sets kind or owners is checked: an identity
                // whose owner has left must still be deactivatable.
                if (next.kind != current.kind || next.owners != current.owners)
                    && next.status != IdentityStatus::Deprovisioned
                {
                    self.check_ownership(&next)?;
                }
                // The status change (if any) is last; what the write derives
                // goes before it, and what it fans out cites it.
                let status = changes.pop_if(|c| {
                    matches!(
                        c,
                        DirectoryChange::IdentityDeactivated { .. }
                            | DirectoryChange::IdentityReactivated { .. }
                            | DirectoryChange::IdentityDeleted
                    )
                });
                let groups = self.tier_groups(current.id).map_err(EngineError::from)?;
                let (before, after) = (self.tiers_with(&current, &groups), self.tiers_with(&next, &groups));
                if before != after {
                    changes.push(DirectoryChange::TierChanged { from: before, to: after });
                }
                changes
                    .extend(self.owner_change(&current, &next, &mut footprint).map_err(EngineError::from)?);
                let mut fanout = Vec::new();
                if let Some(status) = status {
                    changes.push(status);
                    let was_active = current.status == IdentityStatus::Active;
                    fanout = self
                        .owner_fanout(&next, was_active, changes.len() - 1, &mut footprint)
                        .map_err(EngineError::from)?;
                }
                (next, Some(current.version), changes, fanout, after, origin.clone())
            }
        };
        next.modified = now;
        // The source's own identifier for an identity is its externalId.
        if origin.source_ref.is_none() {
            origin.source_ref.clone_from(&next.external_id);
        }
        let write =
            IdentityWrite { identity: next, tiers, expected_version, changes, fanout, origin, at: now };
        Ok(Prepared::Write(write, footprint))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use lockstep_domain::{DirectoryChange, IdentityKind, SourceId, Timestamp};
    use lockstep_store_sqlite::{Durability, SqliteDirectory, SqliteSessions};

    use super::*;
    use crate::{EngineConfig, OsEntropy, Stores, SystemClock};

    fn engine(dir: &std::path::Path) -> Engine {
        let sessions = Arc::new(SqliteSessions::open(&dir.join("s.db"), Durability::Off).unwrap());
        let stores = Stores {
            directory: Arc::new(SqliteDirectory::open(&dir.join("d.db"), Durability::Off).unwrap()),
            sessions: sessions.clone(),
            credentials: sessions,
        };
        Engine::open(stores, EngineConfig::default(), Arc::new(SystemClock), Arc::new(OsEntropy)).unwrap()
    }

    fn origin() -> Origin {
        Origin { source: SourceId::new("scim"), client: None, source_ref: None }
    }

    fn person(engine: &Engine, name: &str) -> Identity {
        Identity {
            id: engine.new_identity_id().unwrap(),
            user_name: name.into(),
            external_id: None,
            display_name: None,
            kind: IdentityKind::Human,
            owners: Vec::new(),
            risk_tier: None,
            status: IdentityStatus::Active,
            emails: Vec::new(),
            profile: "{}".into(),
            version: 0,
            created: Timestamp(0),
            modified: Timestamp(0),
        }
    }

    fn disable(id: IdentityId) -> Pending {
        let change: Change = Box::new(|cur: &Identity| {
            let mut next = cur.clone();
            next.status = IdentityStatus::Disabled;
            Ok(next)
        });
        let p: Pending = Arc::new(Cell::default());
        slot(&p).request =
            Some(Request::Update { id, origin: origin(), if_match: None, change, guess: None });
        p
    }

    /// Two owners of one service account deactivated in one batch: the
    /// second touches what the first read (the account's owners), so it
    /// waits for the next batch, and the account loses its last active
    /// owner exactly once.
    #[test]
    fn a_write_touching_what_an_earlier_one_read_waits_for_the_next_batch() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        let o1 = engine.create_identity(person(&engine, "o1"), origin()).unwrap().identity;
        let o2 = engine.create_identity(person(&engine, "o2"), origin()).unwrap().identity;
        let mut sa = person(&engine, "sa");
        sa.kind = IdentityKind::ServiceAccount;
        sa.owners = vec![o1.id, o2.id];
        let sa = engine.create_identity(sa, origin()).unwrap().identity;
        let other = engine.create_identity(person(&engine, "x"), origin()).unwrap().identity;
        let (p1, p2, p3) = (disable(o1.id), disable(o2.id), disable(other.id));
        {
            let mut writer = engine.lock_writer().unwrap();
            engine.run_batch(&mut writer, vec![p1.clone(), p2.clone(), p3.clone()]);
        }
        assert!(slot(&p1).result.is_some() && slot(&p3).result.is_some(), "unrelated writes share the batch");
        assert!(slot(&p2).result.is_none(), "the second owner waits");
        assert_eq!(engine.queue().pending.len(), 1);
        let next = std::mem::take(&mut engine.queue().pending);
        {
            let mut writer = engine.lock_writer().unwrap();
            engine.run_batch(&mut writer, next);
        }
        let lost: Vec<_> = [p1, p2]
            .iter()
            .filter_map(|p| slot(p).result.take())
            .flat_map(|r| r.map(|a| a.events).unwrap_or_default())
            .filter(|e| e.subject.identity() == Some(sa.id))
            .collect();
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert!(matches!(lost[0].change, DirectoryChange::OwnerLost { owner: Some(o) } if o == o2.id));

        // An owner leaves in the batch in which another write makes it the
        // owner of a second account: that write read the owner as active,
        // so it waits, and then sees the owner gone.
        let o3 = engine.create_identity(person(&engine, "o3"), origin()).unwrap().identity;
        let mut sa2 = person(&engine, "sa2");
        sa2.kind = IdentityKind::ServiceAccount;
        sa2.owners = vec![o3.id];
        let sa2 = engine.create_identity(sa2, origin()).unwrap().identity;
        let o4 = engine.create_identity(person(&engine, "o4"), origin()).unwrap().identity;
        let leave = disable(o4.id);
        let adopt: Pending = Arc::new(Cell::default());
        let new_owner = o4.id;
        let change: Change = Box::new(move |cur: &Identity| {
            let mut next = cur.clone();
            next.owners = vec![new_owner];
            Ok(next)
        });
        slot(&adopt).request =
            Some(Request::Update { id: sa2.id, origin: origin(), if_match: None, change, guess: None });
        {
            let mut writer = engine.lock_writer().unwrap();
            engine.run_batch(&mut writer, vec![leave.clone(), adopt.clone()]);
        }
        assert!(slot(&adopt).result.is_none(), "the adoption waits for the next batch");
        let next = std::mem::take(&mut engine.queue().pending);
        {
            let mut writer = engine.lock_writer().unwrap();
            engine.run_batch(&mut writer, next);
        }
        let adopted = slot(&adopt).result.take().unwrap().map_err(|_| "failed").unwrap();
        assert!(
            adopted.events.iter().any(|e| matches!(e.change, DirectoryChange::OwnerLost { .. })),
            "its only owner is inactive: {:?}",
            adopted.events
        );
    }
}
