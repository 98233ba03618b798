//! Group commit, for any kind of request.
//!
//! A durable commit costs an fsync; one at a time, that caps writes at the
//! disk's fsync rate whatever the concurrency. So requests queue, and a
//! batch takes everything queued and runs it as one (one transaction, one
//! fsync) and answers each request.
//!
//! Who runs the batches: a *worker* thread serving the queue
//! ([`Group::serve`], what a server does), or, with none, the submitting
//! threads themselves — the thread that finds no batch being formed becomes
//! the *leader*: it runs batches until its own request is answered and
//! passes leadership to the oldest request still queued. Waiters sleep on
//! their own slot (or, from async code, register a waker): they never
//! contend for a lock just to learn that their outcome is ready (an earlier
//! design did, and requests spent five times the batch time in that convoy).
//!
//! A batch may give a request back (`Item::defer`) — it touches what an
//! earlier request of the batch touched — and it then runs in the next
//! batch, ahead of newer requests, so requests on one thing keep their order.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// One request and, once run, its outcome.
#[derive(Debug)]
struct Slot<R, O> {
    request: Option<R>,
    outcome: Option<O>,
    /// Set when this request's thread must lead the next batch.
    lead: bool,
    /// The task awaiting the outcome, for async waiters.
    waker: Option<Waker>,
}

/// A slot and the condition its thread sleeps on.
#[derive(Debug)]
struct Cell<R, O> {
    slot: Mutex<Slot<R, O>>,
    changed: Condvar,
}

impl<R, O> Cell<R, O> {
    fn new(request: R) -> Arc<Self> {
        Arc::new(Cell {
            slot: Mutex::new(Slot { request: Some(request), outcome: None, lead: false, waker: None }),
            changed: Condvar::new(),
        })
    }

    fn slot(&self) -> MutexGuard<'_, Slot<R, O>> {
        self.slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Answers the request and wakes whoever waits for it.
    fn answer(&self, mut slot: MutexGuard<'_, Slot<R, O>>, outcome: O) {
        slot.outcome = Some(outcome);
        let waker = slot.waker.take();
        drop(slot);
        self.changed.notify_one();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A request of the batch being run.
#[derive(Debug)]
pub(crate) struct Item<R, O> {
    cell: Arc<Cell<R, O>>,
}

impl<R, O> Clone for Item<R, O> {
    fn clone(&self) -> Self {
        Self { cell: self.cell.clone() }
    }
}

impl<R, O> Item<R, O> {
    /// The request, to run it (`None` if it has already been answered).
    pub(crate) fn take(&self) -> Option<R> {
        self.cell.slot().request.take()
    }

    /// Answers the request.
    pub(crate) fn finish(&self, outcome: O) {
        self.cell.answer(self.cell.slot(), outcome);
    }

    /// Gives the request back: it runs in the next batch.
    pub(crate) fn defer(&self, request: R) {
        self.cell.slot().request = Some(request);
    }

    fn unanswered(&self) -> bool {
        let slot = self.cell.slot();
        slot.outcome.is_none() && slot.request.is_some()
    }
}

#[cfg(test)]
impl<R, O> Item<R, O> {
    /// An item outside any queue, to run a batch function by hand.
    pub(crate) fn detached(request: R) -> Self {
        Self { cell: Cell::new(request) }
    }

    /// The outcome, once answered.
    pub(crate) fn outcome(&self) -> Option<O> {
        self.cell.slot().outcome.take()
    }

    /// Whether the batch gave the request back.
    pub(crate) fn deferred(&self) -> bool {
        self.unanswered()
    }
}

/// A request queued for a worker: a future of its outcome.
#[derive(Debug)]
pub(crate) struct Waiting<R, O> {
    cell: Arc<Cell<R, O>>,
}

impl<R, O> Waiting<R, O> {
    /// Blocks this thread until the outcome is there.
    pub(crate) fn block(self) -> O {
        let mut slot = self.cell.slot();
        loop {
            if let Some(outcome) = slot.outcome.take() {
                return outcome;
            }
            slot = self.cell.changed.wait(slot).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

impl<R, O> Future for Waiting<R, O> {
    type Output = O;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O> {
        let mut slot = self.cell.slot();
        match slot.outcome.take() {
            Some(outcome) => Poll::Ready(outcome),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[derive(Debug)]
struct Queue<R, O> {
    pending: Vec<Arc<Cell<R, O>>>,
    /// A submitting thread is running batches.
    leader: bool,
    /// A worker serves the queue ([`Group::serve`]).
    worker: bool,
    /// The worker was asked to stop (it drains the queue first).
    stopping: bool,
}

/// A group-commit queue of requests `R` with outcomes `O`.
#[derive(Debug)]
pub(crate) struct Group<R, O> {
    queue: Mutex<Queue<R, O>>,
    /// Wakes the worker when requests arrive (or it is asked to stop).
    work: Condvar,
}

impl<R, O> Default for Group<R, O> {
    fn default() -> Self {
        Self {
            queue: Mutex::new(Queue { pending: Vec::new(), leader: false, worker: false, stopping: false }),
            work: Condvar::new(),
        }
    }
}

/// Answers every request of a batch still waiting with `failed()` when
/// dropped — that is, if the batch panicked — so that nobody sleeps
/// forever; a leader's leadership is handed over too (unless the batch did).
struct Leading<'a, R, O, F: Fn() -> O> {
    group: &'a Group<R, O>,
    batch: Vec<Arc<Cell<R, O>>>,
    failed: F,
    handed_over: bool,
}

impl<R, O, F: Fn() -> O> Drop for Leading<'_, R, O, F> {
    fn drop(&mut self) {
        for cell in &self.batch {
            let slot = cell.slot();
            if slot.outcome.is_none() && slot.request.is_some() {
                let mut slot = slot;
                slot.request = None;
                cell.answer(slot, (self.failed)());
            }
        }
        if !self.handed_over {
            self.group.hand_over();
        }
    }
}

/// The batch being run: its requests and, for a leader's batch whose slow
/// part (waiting for the disk) needs no exclusivity, an early hand-over.
pub(crate) struct Batch<'a, R, O> {
    items: Vec<Item<R, O>>,
    group: &'a Group<R, O>,
    /// Run by a worker (no leadership to hand over; the answers may come
    /// from another thread after the batch returns).
    worker: bool,
    handed_over: std::cell::Cell<bool>,
}

impl<R, O> Batch<'_, R, O> {
    /// The requests, oldest first.
    pub(crate) fn items(&self) -> &[Item<R, O>] {
        &self.items
    }

    /// Whether a worker runs this batch.
    pub(crate) fn by_worker(&self) -> bool {
        self.worker
    }

    /// Lets the next batch start now, while this one finishes: deferred
    /// requests go back to the front of the queue and leadership passes on.
    /// For a leader's batch that has committed and only waits for its
    /// commit to reach the disk (the next batch's commit then overlaps that
    /// wait). A worker's batch ignores it.
    pub(crate) fn hand_over(&self) {
        if !self.worker && !self.handed_over.replace(true) {
            self.group
                .requeue(self.items.iter().filter(|i| i.unanswered()).map(|i| i.cell.clone()).collect());
            self.group.hand_over();
        }
    }
}

impl<R, O> Group<R, O> {
    fn queue(&self) -> MutexGuard<'_, Queue<R, O>> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts deferred requests back, ahead of newer ones, so requests on one
    /// thing keep their order.
    fn requeue(&self, deferred: Vec<Arc<Cell<R, O>>>) {
        if !deferred.is_empty() {
            let mut queue = self.queue();
            let newer = std::mem::take(&mut queue.pending);
            queue.pending.extend(deferred);
            queue.pending.extend(newer);
        }
    }

    /// Queues `request` for the worker and returns a future of its outcome;
    /// gives the request back when no worker serves the queue.
    pub(crate) fn enqueue(&self, request: R) -> Result<Waiting<R, O>, R> {
        let mut queue = self.queue();
        if !queue.worker || queue.stopping {
            return Err(request);
        }
        let cell = Cell::new(request);
        queue.pending.push(cell.clone());
        drop(queue);
        self.work.notify_one();
        Ok(Waiting { cell })
    }

    /// Runs `request` in a batch with whatever else is waiting and returns
    /// its outcome, blocking this thread. With a worker serving the queue
    /// the thread only waits; otherwise the thread that finds no leader at
    /// work leads: it calls `run` with each batch (its own request among
    /// them) until its own request is answered or `run` hands leadership
    /// over. `run` must answer or defer every item it takes; `failed`
    /// answers requests a panicking batch left unanswered.
    pub(crate) fn submit(&self, request: R, run: impl Fn(&Batch<'_, R, O>), failed: impl Fn() -> O) -> O {
        let mine = Cell::new(request);
        let mut lead_now = {
            let mut queue = self.queue();
            queue.pending.push(mine.clone());
            if queue.worker && !queue.stopping {
                drop(queue);
                self.work.notify_one();
                false
            } else {
                !std::mem::replace(&mut queue.leader, true)
            }
        };
        loop {
            if !lead_now {
                let mut slot = mine.slot();
                while slot.outcome.is_none() && !slot.lead {
                    slot = mine.changed.wait(slot).unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                if let Some(outcome) = slot.outcome.take() {
                    return outcome;
                }
                slot.lead = false;
            }
            // Leading: this thread's request is queued (a deferred request
            // stays queued), so batches run until it has its outcome or the
            // leadership is handed over early.
            let mut leading = Leading { group: self, batch: Vec::new(), failed: &failed, handed_over: false };
            loop {
                leading.batch = std::mem::take(&mut self.queue().pending);
                let batch = Batch {
                    items: leading.batch.iter().map(|cell| Item { cell: cell.clone() }).collect(),
                    group: self,
                    worker: false,
                    handed_over: std::cell::Cell::new(false),
                };
                run(&batch);
                if batch.handed_over.get() {
                    leading.handed_over = true;
                } else {
                    self.requeue(
                        batch.items.into_iter().filter(Item::unanswered).map(|item| item.cell).collect(),
                    );
                }
                leading.batch.clear();
                let done = mine.slot().outcome.take();
                if let Some(outcome) = done {
                    return outcome; // `leading` hands over on drop, unless done already
                }
                if leading.handed_over {
                    break; // this request was deferred: wait for it as a follower
                }
            }
            lead_now = false;
        }
    }

    /// Passes leadership to the oldest queued request, or ends it (with a
    /// worker serving the queue, the worker takes what is queued).
    fn hand_over(&self) {
        let mut queue = self.queue();
        if queue.worker && !queue.stopping {
            queue.leader = false;
            drop(queue);
            self.work.notify_one();
            return;
        }
        match queue.pending.first() {
            Some(next) => {
                next.slot().lead = true;
                next.changed.notify_one();
            }
            None => queue.leader = false,
        }
    }

    /// Serves the queue from this thread until [`Group::stop`]: each batch
    /// is everything queued since the last. What is queued when it is asked
    /// to stop is still run. `failed` answers requests of a batch that
    /// panicked, and everything queued after such a panic.
    pub(crate) fn serve(&self, run: impl Fn(&Batch<'_, R, O>), failed: impl Fn() -> O) {
        {
            let mut queue = self.queue();
            queue.worker = true;
            queue.stopping = false;
        }
        let _serving = Serving { group: self, failed: &failed };
        loop {
            let cells = {
                let mut queue = self.queue();
                while queue.pending.is_empty() && !queue.stopping {
                    queue = self.work.wait(queue).unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                if queue.pending.is_empty() {
                    queue.worker = false;
                    break;
                }
                std::mem::take(&mut queue.pending)
            };
            let mut leading = Leading { group: self, batch: cells, failed: &failed, handed_over: true };
            let batch = Batch {
                items: leading.batch.iter().map(|cell| Item { cell: cell.clone() }).collect(),
                group: self,
                worker: true,
                handed_over: std::cell::Cell::new(false),
            };
            run(&batch);
            // Nothing of the batch is left to fail: the rest is deferred or
            // answered (maybe later, by another thread).
            leading.batch.clear();
            self.requeue(batch.items.into_iter().filter(Item::unanswered).map(|item| item.cell).collect());
        }
    }

    /// Asks the worker to stop once the queue is empty.
    pub(crate) fn stop(&self) {
        self.queue().stopping = true;
        self.work.notify_all();
    }
}

/// A worker's service: if it ends by a panic, the queue is handed back to
/// submitting threads and whatever it held is answered with `failed()`.
struct Serving<'a, R, O, F: Fn() -> O> {
    group: &'a Group<R, O>,
    failed: F,
}

impl<R, O, F: Fn() -> O> Drop for Serving<'_, R, O, F> {
    fn drop(&mut self) {
        let pending = {
            let mut queue = self.group.queue();
            if !queue.worker {
                return;
            }
            queue.worker = false;
            queue.leader = false;
            std::mem::take(&mut queue.pending)
        };
        for cell in pending {
            let mut slot = cell.slot();
            if slot.outcome.is_none() {
                slot.request = None;
                cell.answer(slot, (self.failed)());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many threads, each request answered exactly once with its own answer,
    /// and deferred requests answered in a later batch.
    #[test]
    fn every_request_gets_its_own_outcome() {
        let group: Arc<Group<u32, u32>> = Arc::new(Group::default());
        let threads: Vec<_> = (0..32u32)
            .map(|n| {
                let group = group.clone();
                std::thread::spawn(move || {
                    let deferred_once = std::sync::atomic::AtomicBool::new(false);
                    group.submit(
                        n,
                        |batch| {
                            for item in batch.items() {
                                let Some(r) = item.take() else { continue };
                                // Odd requests are deferred once per batch that sees them first.
                                if r % 2 == 1
                                    && !deferred_once.swap(true, std::sync::atomic::Ordering::SeqCst)
                                {
                                    item.defer(r);
                                } else {
                                    item.finish(r * 10);
                                }
                            }
                        },
                        || u32::MAX,
                    )
                })
            })
            .collect();
        for (n, t) in threads.into_iter().enumerate() {
            assert_eq!(t.join().unwrap(), n as u32 * 10);
        }
    }
}
