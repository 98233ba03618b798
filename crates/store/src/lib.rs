//! Storage roles, and the reference model every backend is checked against.
//!
//! The directory and the session authority are separate roles with separate
//! traits and separate row types; no trait here spans both. A backend
//! implements each role over its own storage (by default two SQLite files),
//! so that directory sync and session storage can fail, scale and be
//! replaced independently. The engine is the only code that holds both.
//!
//! Traits are synchronous: the embedded backend is SQLite, whose calls block,
//! and the engine runs them off the async reactor. A network backend can
//! implement them with a blocking client on the same threads.

mod chain;
pub mod codec;
mod directory;
mod error;
mod filter;
mod memory;
mod sessions;
mod signals;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use chain::{ChainBreak, seal, verify_chain};
pub use directory::{
    ClaimInputs, Committed, CommittedGroup, DirectoryRead, DirectoryStore, GroupWrite, IdentityWrite,
    NewEvent, SourceState, UserWithGroups, cause_positions, write_events,
};
pub use error::{StoreError, StoreResult};
pub use filter::{
    Filter, GroupField, GroupFilter, GroupPage, GroupQuery, IdentityField, IdentityFilter, IdentityPage,
    IdentityQuery, SearchField, TextOp,
};
pub use memory::{MemoryDirectory, MemorySessions};
pub use sessions::{
    CredentialStore, DurableTicket, LiveSession, SessionBatch, SessionStore, SessionUpdate, TokenUpdate,
};
pub use signals::{Queued, SignalRecord, SignalStore};
