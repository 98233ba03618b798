//! Group commit, for any kind of request.
//!
//! A durable commit costs an fsync; one at a time, that caps writes at the
//! disk's fsync rate whatever the concurrency. So a writer enqueues its
//! request; if no batch is being formed, it becomes the *leader*: it takes
//! the whole queue and runs it as one batch (one transaction, one fsync),
//! hands each waiter its outcome, and passes leadership to the oldest request
//! still queued. Waiters sleep on their own slot: they never contend for a
//! lock just to learn that their outcome is ready (an earlier design did, and
//! requests spent five times the batch time in that convoy).
//!
//! A batch may give a request back (`Item::defer`) — it touches what an
//! earlier request of the batch touched — and it then runs in the next
//! batch, ahead of newer requests, so requests on one thing keep their order.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// One request and, once run, its outcome.
#[derive(Debug)]
struct Slot<R, O> {
    request: Option<R>,
    outcome: Option<O>,
    /// Set when this request's thread must lead the next batch.
    lead: bool,
}

/// A slot and the condition its thread sleeps on.
#[derive(Debug)]
struct Cell<R, O> {
    slot: Mutex<Slot<R, O>>,
    changed: Condvar,
}

impl<R, O> Cell<R, O> {
    fn slot(&self) -> MutexGuard<'_, Slot<R, O>> {
        self.slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A request of the batch the leader is running.
#[derive(Debug)]
pub(crate) struct Item<R, O> {
    cell: Arc<Cell<R, O>>,
}

impl<R, O> Item<R, O> {
    /// The request, to run it (`None` if it has already been answered).
    pub(crate) fn take(&self) -> Option<R> {
        self.cell.slot().request.take()
    }

    /// Answers the request.
    pub(crate) fn finish(&self, outcome: O) {
        self.cell.slot().outcome = Some(outcome);
        self.cell.changed.notify_one();
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
        Self {
            cell: Arc::new(Cell {
                slot: Mutex::new(Slot { request: Some(request), outcome: None, lead: false }),
                changed: Condvar::new(),
            }),
        }
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

#[derive(Debug)]
struct Queue<R, O> {
    pending: Vec<Arc<Cell<R, O>>>,
    leader: bool,
}

/// A group-commit queue of requests `R` with outcomes `O`.
#[derive(Debug)]
pub(crate) struct Group<R, O> {
    queue: Mutex<Queue<R, O>>,
}

impl<R, O> Default for Group<R, O> {
    fn default() -> Self {
        Self { queue: Mutex::new(Queue { pending: Vec::new(), leader: false }) }
    }
}

/// Leadership of the queue, handed over when dropped — also if a batch
/// panics, when every request of it still waiting gets `failed()` rather
/// than being left asleep, and the queue is not left without a leader.
struct Leading<'a, R, O, F: Fn() -> O> {
    group: &'a Group<R, O>,
    batch: Vec<Arc<Cell<R, O>>>,
    failed: F,
}

impl<R, O, F: Fn() -> O> Drop for Leading<'_, R, O, F> {
    fn drop(&mut self) {
        for cell in &self.batch {
            let mut slot = cell.slot();
            if slot.outcome.is_none() && slot.request.take().is_some() {
                slot.outcome = Some((self.failed)());
                cell.changed.notify_one();
            }
        }
        self.group.hand_over();
    }
}

impl<R, O> Group<R, O> {
    fn queue(&self) -> MutexGuard<'_, Queue<R, O>> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `request` in a batch with whatever else is waiting and returns
    /// its outcome. The thread that finds no leader at work leads: it calls
    /// `run` with each batch (its own request among them) until its own
    /// request is answered. `run` must answer or defer every item it takes;
    /// `failed` answers requests a panicking batch left unanswered.
    pub(crate) fn submit(&self, request: R, run: impl Fn(&[Item<R, O>]), failed: impl Fn() -> O) -> O {
        let mine = Arc::new(Cell {
            slot: Mutex::new(Slot { request: Some(request), outcome: None, lead: false }),
            changed: Condvar::new(),
        });
        let lead_now = {
            let mut queue = self.queue();
            queue.pending.push(mine.clone());
            !std::mem::replace(&mut queue.leader, true)
        };
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
        // Leading: this thread's request is queued (a deferred request stays
        // queued), so batches run until it has its outcome.
        let mut leading = Leading { group: self, batch: Vec::new(), failed };
        loop {
            leading.batch = std::mem::take(&mut self.queue().pending);
            let items: Vec<Item<R, O>> =
                leading.batch.iter().map(|cell| Item { cell: cell.clone() }).collect();
            run(&items);
            let deferred: Vec<Arc<Cell<R, O>>> =
                items.into_iter().filter(Item::unanswered).map(|item| item.cell).collect();
            if !deferred.is_empty() {
                // Ahead of newer requests, so requests on one thing keep their order.
                let mut queue = self.queue();
                let newer = std::mem::take(&mut queue.pending);
                queue.pending.extend(deferred);
                queue.pending.extend(newer);
            }
            leading.batch.clear();
            let done = mine.slot().outcome.take();
            if let Some(outcome) = done {
                return outcome; // `leading` hands over on drop
            }
        }
    }

    /// Passes leadership to the oldest queued request, or ends it.
    fn hand_over(&self) {
        let mut queue = self.queue();
        match queue.pending.first() {
            Some(next) => {
                next.slot().lead = true;
                next.changed.notify_one();
            }
            None => queue.leader = false,
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
                        |items| {
                            for item in items {
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
