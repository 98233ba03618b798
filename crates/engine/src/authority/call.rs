//! How a request reaches the authority and its answer comes back: a
//! [`Call`] that a thread waits on or a task awaits, the worker that runs
//! batches when a server serves the queue, and the syncer that answers each
//! batch once its commit is on disk.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};

use lockstep_store::DurableTicket;

use super::{Authority, Done, Op, Outcome};
use crate::group::{Item, Waiting};
use crate::{Engine, EngineError, EngineResult};

/// A request to the authority: `.wait()` for it from a thread, or `.await`
/// it from async code (with a worker serving the queue, no thread blocks).
/// Either way the answer comes once the request's writes are durable.
#[derive(Debug)]
#[must_use = "a call does nothing until it is waited for or awaited"]
pub struct Call<'e, T> {
    engine: &'e Engine,
    state: State,
    map: fn(Done) -> EngineResult<T>,
}

#[derive(Debug)]
enum State {
    /// Answered before it was queued (a request refused on its face).
    Ready(Option<Outcome>),
    /// Not queued yet.
    Unsent(Option<Op>),
    /// Queued for the worker.
    Waiting(Waiting<Op, Outcome>),
}

fn spent() -> Outcome {
    Err(EngineError::Store(lockstep_store::StoreError::Backend("the call was already answered".into())))
}

impl<'e, T> Call<'e, T> {
    pub(super) fn new(engine: &'e Engine, op: Op, map: fn(Done) -> EngineResult<T>) -> Self {
        Self { engine, state: State::Unsent(Some(op)), map }
    }

    pub(super) fn refused(engine: &'e Engine, error: EngineError, map: fn(Done) -> EngineResult<T>) -> Self {
        Self { engine, state: State::Ready(Some(Err(error))), map }
    }

    /// Runs the request, blocking this thread until it is answered.
    pub fn wait(self) -> EngineResult<T> {
        let outcome = match self.state {
            State::Ready(outcome) => outcome.unwrap_or_else(spent),
            State::Unsent(Some(op)) => Authority::new(self.engine).submit(op),
            State::Unsent(None) => spent(),
            State::Waiting(waiting) => waiting.block(),
        };
        outcome.and_then(self.map)
    }
}

impl<T> Future for Call<'_, T> {
    type Output = EngineResult<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Ready(outcome) => {
                    return Poll::Ready(outcome.take().unwrap_or_else(spent).and_then(this.map));
                }
                State::Unsent(op) => {
                    let Some(op) = op.take() else { return Poll::Ready(spent().and_then(this.map)) };
                    match this.engine.issuance.enqueue(op) {
                        Ok(waiting) => this.state = State::Waiting(waiting),
                        // No worker serves the queue (a bare engine): run it
                        // here, as a thread would.
                        Err(op) => {
                            let outcome = Authority::new(this.engine).submit(op);
                            return Poll::Ready(outcome.and_then(this.map));
                        }
                    }
                }
                State::Waiting(waiting) => {
                    return Pin::new(waiting).poll(cx).map(|outcome| outcome.and_then(this.map));
                }
            }
        }
    }
}

/// Batches committed by the worker, waiting to be on disk.
#[derive(Debug, Default)]
pub(crate) struct Syncer {
    queue: Mutex<SyncQueue>,
    ready: Condvar,
}

type Answers = Vec<(Item<Op, Outcome>, Outcome)>;

#[derive(Debug, Default)]
struct SyncQueue {
    batches: Vec<(DurableTicket, Answers)>,
    stopping: bool,
}

impl Syncer {
    fn queue(&self) -> MutexGuard<'_, SyncQueue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers `answers` once commit `ticket` is durable.
    pub(super) fn push(&self, ticket: DurableTicket, answers: Answers) {
        self.queue().batches.push((ticket, answers));
        self.ready.notify_one();
    }
}

impl Engine {
    /// Waits for the disk on behalf of committed batches, one fsync for
    /// all that are waiting, until stopped with nothing left.
    fn run_syncer(&self) {
        loop {
            let batches = {
                let mut queue = self.syncer.queue();
                while queue.batches.is_empty() && !queue.stopping {
                    queue = self.syncer.ready.wait(queue).unwrap_or_else(|p| p.into_inner());
                }
                if queue.batches.is_empty() {
                    queue.stopping = false;
                    return;
                }
                std::mem::take(&mut queue.batches)
            };
            let ticket = batches.iter().map(|(t, _)| *t).max().unwrap_or_default();
            let started = self.clock.now();
            let durable = self.stores.sessions.wait_durable(ticket);
            self.metrics.authority_durable.observe(self.clock.now().since(started).as_secs_f64());
            for (_, answers) in batches {
                for (item, outcome) in answers {
                    match &durable {
                        Ok(()) => item.finish(outcome),
                        Err(e) => item.finish(Err(EngineError::Store(e.clone()))),
                    }
                }
            }
        }
    }
}

impl Authority<'_> {
    /// Serves the authority's queue from this thread (and a syncer thread)
    /// until [`Authority::stop`]: requests are then queued, not run by the
    /// threads that make them, so an async caller blocks no thread, and
    /// each batch's fsync overlaps the next batch's commit. What is queued
    /// when it stops is still answered.
    pub fn serve(&self) {
        let engine = self.engine;
        std::thread::scope(|scope| {
            let syncer = std::thread::Builder::new()
                .name("lockstep-sync".into())
                .spawn_scoped(scope, || engine.run_syncer());
            if let Err(e) = &syncer {
                tracing::error!(error = %e, "cannot start the syncer thread; requests run on their own threads");
                return;
            }
            engine.issuance.serve(
                |batch| engine.run_authority_batch(batch),
                || {
                    Err(EngineError::Store(lockstep_store::StoreError::Backend(
                        "an issuance batch failed".into(),
                    )))
                },
            );
            engine.syncer.queue().stopping = true;
            engine.syncer.ready.notify_all();
        });
    }

    /// Stops [`Authority::serve`] once what is queued has been answered.
    pub fn stop(&self) {
        self.engine.issuance.stop();
    }
}
