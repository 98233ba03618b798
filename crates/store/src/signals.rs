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
//! * **At least once, same `jti`.** A queued signal stays pending until
//!   [`SignalStore::delivered`] marks it (a push acknowledged, a poll
//!   acknowledged); a failed attempt only moves its next attempt later. The
//!   `jti` is fixed when queued, so a retry is recognisably the same SET.
//! * **Order per stream.** [`SignalStore::pending`] returns a stream's
//!   pending signals oldest first, up to the first one not yet due: a
//!   signal waiting for its retry holds back the ones queued after it.
//! * **Streams are few and read whole**: the engine keeps them in memory
//!   and writes through.

pub use lockstep_domain::SignalRecord;
use lockstep_domain::{Outgoing, Stream, StreamId, Timestamp};

use crate::StoreResult;

/// A signal waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    /// Its position in the outbox (increasing).
    pub seq: u64,
    /// The signal and its stream.
    pub outgoing: Outgoing,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// Streams and the outbox. See the module documentation for the contract.
pub trait SignalStore: Send + Sync + std::fmt::Debug {
    /// Every stream.
    fn streams(&self) -> StoreResult<Vec<Stream>>;

    /// Creates or replaces a stream.
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
