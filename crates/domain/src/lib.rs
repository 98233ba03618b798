//! Pure types shared by every Lockstep component.
//!
//! This crate names the things Lockstep reasons about — identities, directory
//! events, sessions, audit entries — and nothing else. It performs no I/O,
//! reads no clock, draws no randomness and knows no wire format: those are
//! parameters supplied by the crates around it, so every rule written against
//! these types can be tested as a pure function.

mod audit;
mod client;
mod directory;
mod ids;
mod session;
mod signal;
pub mod text;
mod time;

pub use audit::{Actor, AuditEntry, AuditFamily, AuditKind, AuditRecord, ChainHash};
pub use client::{ApiClient, Scope};
pub use directory::{
    ChangeKind, DirectoryChange, DirectoryEvent, Group, GroupDiff, Identity, IdentityKind, IdentityStatus,
    Origin, RiskTier, Subject, Tiers, UnknownName, diff_group, diff_identity,
};
pub use ids::{ClientId, DirectoryEventId, GroupId, IdentityId, SessionId, SourceId, StreamId};
pub use session::{
    CredentialKind, RevocationReason, Session, SessionState, SuspendCondition, Token, TokenFormat, TokenHash,
    TokenKind,
};
pub use signal::{
    Addressed, Delivery, Outgoing, Signal, SignalKind, SignalRecord, Stream, StreamStatus, split_jti,
};
pub use time::Timestamp;
