//! The embedded default backend: each role in its own SQLite file.
//!
//! `directory.db` holds identities and the ordered directory event log;
//! `sessions.db` holds sessions, the bridge cursor, the audit chain and
//! Lockstep's own API clients. SQLite commits are atomic per file only, so
//! everything the bridge must commit together (session impact, cursor,
//! audit records) lives in the one file; the directory log is the durable
//! outbox the bridge replays from after a crash.
//!
//! Each store has one writer connection (SQLite allows one writer at a time
//! anyway) and a few reader connections, which WAL lets run beside it.

mod conn;
mod directory;
mod groups;
mod keys;
mod search;
mod sessions;
mod signals;

pub use conn::Durability;
pub use directory::SqliteDirectory;
pub use sessions::SqliteSessions;

/// File name of the directory store inside a data directory.
pub const DIRECTORY_FILE: &str = "directory.db";
/// File name of the session store inside a data directory.
pub const SESSIONS_FILE: &str = "sessions.db";
