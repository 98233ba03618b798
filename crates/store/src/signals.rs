//! The Shared Signals role: streams and the outbox of signals addressed to
//! them.
//!
//! # What every `SignalStore` promises
//!
//! * **The outbox commits with the impact.** Signals are queued by the
//!   [`crate::SessionBatch`] that commits the session change they report
//!   (`SessionBatch::outbox`), in the same transaction: a committed
//!   revocation always has its signals queued, and a batch that fails
//!   queues nothing. Verification events, which report nothing, are queued
//!   on their own ([`SignalStore::queue`]).
//! * **Once per signal, not per stream.** An [`Outgoing`] is stored once
//!   with the list of streams it goes to; nothing per stream is written
//!   when it is queued. Per-stream delivery state (attempts, retry time,
//!   when it was delivered) is written by delivery, outside the bridge's
//!   transaction, so the number of streams does not slow the bridge.
//! * **At least once, same `jti`.** A queued signal stays pending for each
//!   of its streams until [`SignalStore::delivered`] marks it for that
//!   stream (a push acknowledged, a poll acknowledged); a failed attempt
//!   only moves its next attempt later. The `jti` (`Outgoing::jti`) is
//!   fixed when queued, so a retry is recognisably the same SET; a `jti`
//!   the store never gave out, or one given to another stream, is ignored.
//!   Acknowledgements and retries need not be durable when the call
//!   returns: one lost in a crash only sends its SET again.
//! * **Order per stream.** [`SignalStore::pending`] returns a stream's
//!   pending signals oldest first, up to the first one not yet due: a
//!   signal waiting for its retry holds back the ones queued after it.
//! * **Dropped is settled.** [`SignalStore::drop_pending`] settles every
//!   signal queued so far for the stream without delivering it; dropped
//!   signals no longer appear in [`SignalStore::signals_of`], nor do the
//!   undelivered ones of a deleted stream. A new stream is settled up to
//!   the moment it is stored: it never receives older signals.
//! * **Streams are few and read whole**: the engine keeps them in memory
//!   and writes through.

pub use lockstep_domain::SignalRecord;
use lockstep_domain::{Addressed, Outgoing, Stream, StreamId, Timestamp};

use crate::StoreResult;

/// A signal waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    /// Its position in the outbox (increasing).
    pub seq: u64,
    /// The signal, its stream and its `jti` on that stream.
    pub outgoing: Addressed,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// Streams and the outbox. See the module documentation for the contract.
pub trait SignalStore: Send + Sync + std::fmt::Debug {
    /// Every stream.
    fn streams(&self) -> StoreResult<Vec<Stream>>;

    /// Creates or replaces a stream (a new one starts settled: it gets
    /// only signals queued after this call).
    fn put_stream(&self, stream: &Stream) -> StoreResult<()>;

    /// Deletes a stream and its pending signals; whether it existed.
    fn delete_stream(&self, id: StreamId) -> StoreResult<bool>;

    /// Queues signals outside a session batch (verification events).
    fn queue(&self, outgoing: Vec<Outgoing>) -> StoreResult<()>;

    /// A stream's pending signals oldest first, up to (not including) the
    /// first one not due at `now`.
    fn pending(&self, stream: StreamId, now: Timestamp, limit: usize) -> StoreResult<Vec<Queued>>;

    /// How many signals of a stream are pending (due or not).
    fn pending_count(&self, stream: StreamId) -> StoreResult<usize>;

    /// Marks signals of a stream delivered; how many were pending.
    fn delivered(&self, stream: StreamId, jtis: &[String], at: Timestamp) -> StoreResult<usize>;

    /// Records a failed attempt: tried again at `next`.
    fn retry_later(&self, stream: StreamId, jti: &str, next: Timestamp, error: &str) -> StoreResult<()>;

    /// Drops a stream's pending signals (the stream was disabled); how many.
    fn drop_pending(&self, stream: StreamId) -> StoreResult<usize>;

    /// Every signal queued with this `txn`, in order (what one directory
    /// event or call reached downstream).
    fn signals_of(&self, txn: &str) -> StoreResult<Vec<SignalRecord>>;

    /// Records a SET received from an upstream transmitter (after its
    /// effect committed); `false` if this `jti` of this source was
    /// recorded before (a replay: acknowledged, not applied again).
    fn remember_received(&self, source: &str, jti: &str, at: Timestamp) -> StoreResult<bool>;

    /// Whether a SET of this source and `jti` was applied already.
    fn received(&self, source: &str, jti: &str) -> StoreResult<bool>;
}
