//! Group commit for directory writes.
//!
//! Every directory write costs two durable commits (directory, then bridge).
//! One at a time, that caps writes at the disk's fsync rate whatever the
//! concurrency. So writes go through a [`Group`] queue: the leader (or, in
//! a server, the directory worker) takes the commit lock and commits every
//! request of its batch with one directory transaction (a refused request —
//! a conflict, a stale version — fails alone; see the store contract); the
//! batch's bridge
//! step is then one bridge transaction under the writer lock. In a server
//! the bridge step runs on a thread of its own while the worker prepares and
//! commits the next batch (the directory commit of batch N+1 beside the
//! bridge step of batch N); bridge steps run in commit order.
//!
//! Each identity is written at most once per batch; a second request for the
//! same identity waits for the next batch, so every request reads committed
//! state and no in-batch overlay is needed. Nothing is acknowledged before
//! both commits, exactly as without batching.

use std::any::Any;
use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use lockstep_domain::{
    DirectoryChange, DirectoryEvent, DirectoryEventId, GroupId, Identity, IdentityId, IdentityStatus, Origin,
    Timestamp, diff_identity,
};
use lockstep_store::{Committed, IdentityWrite, StoreError, StoreResult};

use crate::bridge::{Applied, UpdateError};
use crate::group::{Group, Item, Waiting};
use crate::{Engine, EngineError, EngineResult, WriterState};

/// The directory writes waiting for the next group commit.
pub(crate) type Queue = Group<Request, Outcome>;

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
    pub(crate) fn target(&self) -> IdentityId {
        match self {
            Request::Create { identity, .. } => identity.id,
            Request::Update { id, .. } => *id,
        }
    }
}

pub(crate) type Outcome = Result<Applied, UpdateError<Rejection>>;

fn failed_batch() -> Outcome {
    let failed = StoreError::Backend("the batch committing this write failed".into());
    Err(EngineError::Store(failed).into())
}

/// A directory write to `.await`: with a worker serving the queue
/// ([`Engine::serve_directory`]) it is queued and the task is woken with
/// the answer, once the write and its session impact are committed;
/// without one it runs on the polling thread, as a blocking call would.
#[must_use = "a call does nothing until it is awaited"]
pub struct DirectoryCall<'e, T> {
    engine: &'e Engine,
    state: CallState,
    map: fn(Outcome) -> T,
}

enum CallState {
    Unsent(Option<Box<Request>>),
    Waiting(Waiting<Request, Outcome>),
}

impl<T> fmt::Debug for DirectoryCall<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            CallState::Unsent(_) => "unsent",
            CallState::Waiting(_) => "waiting",
        };
        f.debug_struct("DirectoryCall").field("state", &state).finish_non_exhaustive()
    }
}

impl<'e, T> DirectoryCall<'e, T> {
    pub(crate) fn new(engine: &'e Engine, request: Request, map: fn(Outcome) -> T) -> Self {
        Self { engine, state: CallState::Unsent(Some(Box::new(request))), map }
    }
}

fn created(outcome: Outcome) -> EngineResult<Applied> {
    outcome.map_err(|e| match e {
        UpdateError::Engine(e) => e,
        UpdateError::Rejected(_) => {
            EngineError::Store(StoreError::Backend("a create cannot be rejected".into()))
        }
    })
}

/// An outcome with the closure's refusal restored to its type.
pub(crate) fn rejected_as<E: 'static>(outcome: Outcome) -> Result<Applied, UpdateError<E>> {
    match outcome {
        Ok(applied) => Ok(applied),
        Err(UpdateError::Engine(e)) => Err(UpdateError::Engine(e)),
        Err(UpdateError::Rejected(rejection)) => match rejection.downcast::<E>() {
            Ok(e) => Err(UpdateError::Rejected(*e)),
            Err(_) => Err(UpdateError::Engine(EngineError::Store(StoreError::Backend(
                "a rejection of an unexpected type".into(),
            )))),
        },
    }
}

impl<T: Unpin> Future for DirectoryCall<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                CallState::Unsent(request) => {
                    let Some(request) = request.take() else {
                        return Poll::Ready((this.map)(failed_batch()));
                    };
                    match this.engine.queue.enqueue(*request) {
                        Ok(waiting) => this.state = CallState::Waiting(waiting),
                        Err(request) => return Poll::Ready((this.map)(this.engine.submit(request))),
                    }
                }
                CallState::Waiting(waiting) => return Pin::new(waiting).poll(cx).map(this.map),
            }
        }
    }
}

/// Tells the bridge thread that the directory worker committed a batch.
#[derive(Debug, Default)]
pub(crate) struct BridgeQueue {
    state: std::sync::Mutex<BridgeState>,
    ready: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct BridgeState {
    /// The bridge thread is running.
    running: bool,
    /// A batch was committed since the bridge thread last looked.
    due: bool,
    stopping: bool,
}

impl BridgeQueue {
    fn state(&self) -> std::sync::MutexGuard<'_, BridgeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bridge thread started.
    fn start(&self) {
        let mut state = self.state();
        state.running = true;
        state.stopping = false;
    }

    /// Wakes the bridge thread; false if none runs.
    fn notify(&self) -> bool {
        let mut state = self.state();
        if !state.running {
            return false;
        }
        state.due = true;
        drop(state);
        self.ready.notify_one();
        true
    }

    /// Waits for a committed batch; false once stopped with none left.
    fn next(&self) -> bool {
        let mut state = self.state();
        loop {
            if std::mem::take(&mut state.due) {
                return true;
            }
            if state.stopping {
                state.running = false;
                return false;
            }
            state = self.ready.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn stop(&self) {
        self.state().stopping = true;
        self.ready.notify_all();
    }
}

/// A batch committed (durably) to the directory whose bridge step has not
/// run yet: the directory worker commits the next batch while another
/// thread runs this one's bridge step, in commit order.
pub(crate) struct Unsettled {
    /// The last directory event before this batch's (where the bridge must
    /// be for the batch's events to come next).
    after: Option<DirectoryEventId>,
    owners: Vec<Item<Request, Outcome>>,
    /// Each owner's identity's groups, as its write left them.
    groups: Vec<Vec<(GroupId, String)>>,
    results: Vec<StoreResult<Committed>>,
    committed_at: Timestamp,
}

impl Unsettled {
    /// The last event of this batch, or of the log before it.
    fn last_event(&self) -> Option<DirectoryEventId> {
        self.results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .flat_map(|c| c.events.last())
            .map(|e| e.id)
            .max()
            .or(self.after)
    }
}

impl fmt::Debug for Unsettled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unsettled")
            .field("after", &self.after)
            .field("requests", &self.owners.len())
            .finish_non_exhaustive()
    }
}

/// Ends the directory's batch when dropped ([`DirectoryStore::end_batch`]:
/// nothing if the batch committed).
struct OpenBatch<'a>(&'a dyn lockstep_store::DirectoryStore);

impl Drop for OpenBatch<'_> {
    fn drop(&mut self) {
        self.0.end_batch();
    }
}

pub(crate) enum Prepared {
    /// The write, every identity it read or affects (its footprint), and
    /// the identity's groups (what the write's answer reports: read here,
    /// on the writer's connection under the commit lock, where membership
    /// cannot change before the commit, instead of by the caller through
    /// a reader after it).
    Write {
        write: IdentityWrite,
        footprint: Vec<IdentityId>,
        groups: Vec<(GroupId, String)>,
    },
    Unchanged {
        identity: Identity,
        groups: Vec<(GroupId, String)>,
    },
}

impl Engine {
    /// Commits a request (with whatever else is waiting) and returns its
    /// outcome once its session impact is committed.
    pub(crate) fn submit(&self, request: Request) -> Outcome {
        self.queue.submit(request, |batch| self.run_queued(batch), failed_batch)
    }

    /// Serves the directory's write queue from this thread until
    /// [`Engine::stop_directory`]: writes are then committed here, in
    /// batches, and a caller that awaits a [`DirectoryCall`] blocks no
    /// thread (without a worker, the calling threads take turns leading
    /// batches). A second thread runs each batch's bridge step, so the next
    /// batch is prepared and committed meanwhile. What is queued when it
    /// stops is still committed and answered.
    pub fn serve_directory(&self) {
        std::thread::scope(|scope| {
            let bridge = std::thread::Builder::new()
                .name("lockstep-bridge".into())
                .spawn_scoped(scope, || self.run_bridge_thread());
            if let Err(e) = &bridge {
                tracing::error!(error = %e, "cannot start the bridge thread; the directory worker bridges its batches");
            } else {
                self.bridge_queue.start();
            }
            self.queue.serve(|batch| self.run_queued(batch), failed_batch);
            self.bridge_queue.stop();
        });
    }

    /// Stops [`Engine::serve_directory`] once the queue is empty.
    pub fn stop_directory(&self) {
        self.queue.stop();
    }

    /// Creates an identity, as [`Engine::create_identity`]; `.await` it
    /// from async code (queued for the directory worker when one serves).
    pub fn create_identity_call(
        &self,
        draft: Identity,
        origin: Origin,
    ) -> DirectoryCall<'_, EngineResult<Applied>> {
        DirectoryCall::new(self, Request::Create { identity: draft, origin }, created)
    }

    fn run_queued(&self, batch: &crate::group::Batch<'_, Request, Outcome>) {
        let committing = self.committing.lock().unwrap_or_else(|p| p.into_inner());
        let committed = self.run_batch(batch.items());
        drop(committing);
        if !committed {
            return;
        }
        // Committed: a worker hands the bridge step to the bridge thread
        // and goes on with the next batch; a leader runs it itself.
        if batch.by_worker() && self.bridge_queue.notify() {
            return;
        }
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.settle(&mut writer);
    }

    /// The bridge thread: runs the bridge steps of the worker's committed
    /// batches, in commit order, until stopped with nothing left.
    fn run_bridge_thread(&self) {
        while self.bridge_queue.next() {
            let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            self.settle(&mut writer);
        }
    }

    /// Prepares and commits a batch to the directory and queues it in the
    /// writer state for its bridge step ([`Engine::settle`]); whether it
    /// committed anything (if not, every request is answered already).
    /// Called with the commit lock held; takes the writer lock only to
    /// catch up before and to queue the batch after.
    fn run_batch(&self, batch: &[Item<Request, Outcome>]) -> bool {
        // The batch's reads on the writer and its commit are one store
        // transaction (`DirectoryStore::begin_batch`); every way out of
        // here that commits nothing ends it.
        if let Err(e) = self.stores.directory.begin_batch() {
            for item in batch {
                if item.take().is_some() {
                    item.finish(Err(EngineError::from(e.clone()).into()));
                }
            }
            return false;
        }
        let _open = OpenBatch(&*self.stores.directory);
        {
            let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            // With committed batches still waiting for their bridge steps,
            // those come first, from `settle`; catching up here would bridge
            // them twice.
            if writer.unsettled.is_empty()
                && let Err(e) = self.catch_up(&mut writer)
            {
                for item in batch {
                    if item.take().is_some() {
                        item.finish(Err(EngineError::BridgePending(e.clone()).into()));
                    }
                }
                return false;
            }
        }
        let now = self.clock.now();
        let mut writes = Vec::new();
        let mut owners: Vec<&Item<Request, Outcome>> = Vec::new();
        let mut groups = Vec::new();
        // Every identity a write of this batch read or affects: a request
        // touching one of them waits for the next batch, so that each
        // request is prepared against committed state (an owner's
        // deactivation and a write to what it owns never share a batch).
        let mut touched = HashSet::new();
        for item in batch {
            let Some(request) = item.take() else { continue };
            if touched.contains(&request.target()) {
                item.defer(request);
                continue;
            }
            match self.prepare(&request, now) {
                Ok(Prepared::Write { write, footprint, groups: member_of }) => {
                    if footprint.iter().any(|id| touched.contains(id)) {
                        item.defer(request);
                        continue;
                    }
                    touched.extend(footprint);
                    writes.push(write);
                    owners.push(item);
                    groups.push(member_of);
                }
                Ok(Prepared::Unchanged { identity, groups }) => {
                    touched.insert(identity.id);
                    item.finish(Ok(Applied { identity, groups, events: Vec::new(), revoked: 0 }));
                }
                Err(e) => item.finish(Err(e)),
            }
        }
        if writes.is_empty() {
            return false;
        }
        let results = match self.stores.directory.commit_identities(writes) {
            Ok(results) => results,
            Err(e) => {
                for item in &owners {
                    item.finish(Err(EngineError::from(e.clone()).into()));
                }
                return false;
            }
        };
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let after = writer.unsettled.back().map_or(writer.consumed, Unsettled::last_event);
        writer.unsettled.push_back(Unsettled {
            after,
            owners: owners.into_iter().cloned().collect(),
            groups,
            results,
            committed_at: self.clock.now(),
        });
        true
    }

    /// Runs the bridge step of every committed batch still waiting for it,
    /// in commit order, and answers their requests. Whichever thread holds
    /// the writer lock first does it (the bridge thread, or anyone taking
    /// the lock through `lock_writer`).
    pub(crate) fn settle(&self, writer: &mut WriterState) {
        while let Some(batch) = writer.unsettled.pop_front() {
            // An earlier bridge step failed: bridge what it left first.
            let behind = match batch.after {
                Some(after) if writer.consumed < Some(after) => self.catch_up_to(writer, after).map(|_| ()),
                _ => Ok(()),
            };
            let consumed = writer.consumed;
            let events: Vec<DirectoryEvent> = batch
                .results
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .flat_map(|c| c.events.iter().filter(|e| Some(e.id) > consumed).cloned())
                .collect();
            let revoked =
                behind.and_then(|()| self.apply_events(writer, &events, Some(batch.committed_at), None));
            for ((item, result), groups) in batch.owners.iter().zip(batch.results).zip(batch.groups) {
                let outcome = match (result, &revoked) {
                    (Err(e), _) => Err(EngineError::from(e).into()),
                    (Ok(_), Err(e)) => Err(EngineError::BridgePending(e.clone()).into()),
                    (Ok(c), Ok(counts)) => Ok(Applied {
                        revoked: c.events.iter().map(|e| counts.get(&e.id).copied().unwrap_or(0)).sum(),
                        identity: c.identity,
                        groups,
                        events: c.events,
                    }),
                };
                item.finish(outcome);
            }
        }
    }

    pub(crate) fn prepare(
        &self,
        request: &Request,
        now: Timestamp,
    ) -> Result<Prepared, UpdateError<Rejection>> {
        let mut footprint = vec![request.target()];
        let mut groups = Vec::new();
        let (mut next, expected_version, changes, fanout, tiers, mut origin) = match request {
            Request::Create { identity, origin } => {
                let mut identity = identity.clone();
                // What a source creates, it owns.
                identity.source = origin.source.clone();
                self.check_ownership(&identity)?;
                footprint.extend(identity.owners.iter().copied());
                identity.created = now;
                identity.version = 0;
                // A new identity is in no group yet.
                let tiers = self.tiers_with(&identity, &[]);
                (identity, None, vec![DirectoryChange::IdentityCreated], Vec::new(), tiers, origin.clone())
            }
            Request::Update { id, origin, if_match, change, guess } => {
                let current = self.live_identity_to_write(*id)?;
                if current.source != origin.source && !self.is_signal_source(&origin.source) {
                    return Err(UpdateError::Engine(EngineError::OwnedBySource {
                        what: format!("identity {}", current.id),
                        owner: current.source.to_string(),
                        writer: origin.source.to_string(),
                    }));
                }
                crate::check_if_match(*if_match, current.version)?;
                let mut next = match guess {
                    Some((version, next)) if *version == current.version => next.clone(),
                    _ => change(&current).map_err(UpdateError::Rejected)?,
                };
                next.id = current.id;
                next.created = current.created;
                next.version = current.version;
                groups = self.stores.directory.groups_of_to_write(current.id).map_err(EngineError::from)?;
                let mut changes = diff_identity(Some(&current), &next);
                if changes.is_empty() {
                    return Ok(Prepared::Unchanged { identity: current, groups });
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
        Ok(Prepared::Write { write, footprint, groups })
    }
}

#[cfg(test)]
mod tests {
    use lockstep_domain::{DirectoryChange, IdentityKind};

    use super::*;
    use crate::testing::{engine, origin, person};

    type Pending = Item<Request, Outcome>;

    fn disable(id: IdentityId) -> Pending {
        let change: Change = Box::new(|cur: &Identity| {
            let mut next = cur.clone();
            next.status = IdentityStatus::Disabled;
            Ok(next)
        });
        Item::detached(Request::Update { id, origin: origin(), if_match: None, change, guess: None })
    }

    fn run(engine: &Engine, batch: &[Pending]) {
        let committing = engine.committing.lock().unwrap();
        engine.run_batch(batch);
        drop(committing);
        engine.settle(&mut engine.writer.lock().unwrap());
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
        let batch = [disable(o1.id), disable(o2.id), disable(other.id)];
        run(&engine, &batch);
        let [p1, p2, p3] = batch;
        assert!(!p1.deferred() && !p3.deferred(), "unrelated writes share the batch");
        assert!(p2.deferred(), "the second owner waits");
        let first = p1.outcome();
        assert!(first.is_some() && p3.outcome().is_some());
        run(&engine, std::slice::from_ref(&p2));
        let lost: Vec<_> = [first, p2.outcome()]
            .into_iter()
            .flatten()
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
        let new_owner = o4.id;
        let change: Change = Box::new(move |cur: &Identity| {
            let mut next = cur.clone();
            next.owners = vec![new_owner];
            Ok(next)
        });
        let adopt = Item::detached(Request::Update {
            id: sa2.id,
            origin: origin(),
            if_match: None,
            change,
            guess: None,
        });
        let batch = [leave, adopt];
        run(&engine, &batch);
        let [_leave, adopt] = batch;
        assert!(adopt.deferred(), "the adoption waits for the next batch");
        run(&engine, std::slice::from_ref(&adopt));
        let adopted = adopt.outcome().unwrap().map_err(|_| "failed").unwrap();
        assert!(
            adopted.events.iter().any(|e| matches!(e.change, DirectoryChange::OwnerLost { .. })),
            "its only owner is inactive: {:?}",
            adopted.events
        );
    }
}
