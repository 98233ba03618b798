//! What the crate's own tests share: an engine on real SQLite stores in a
//! directory, and a human identity to create in it.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use lockstep_domain::{Identity, Origin, SourceId};
use lockstep_store_sqlite::{Durability, SqliteDirectory, SqliteSessions};

use crate::{Engine, EngineConfig, OsEntropy, Stores, SystemClock};

/// An engine on the SQLite stores in `dir` (opened again on the same files
/// after a drop: a restart).
pub(crate) fn engine(dir: &std::path::Path) -> Engine {
    let sessions = Arc::new(SqliteSessions::open(&dir.join("s.db"), Durability::Off).unwrap());
    let stores = Stores {
        directory: Arc::new(SqliteDirectory::open(&dir.join("d.db"), Durability::Off).unwrap()),
        sessions: sessions.clone(),
        credentials: sessions,
    };
    Engine::open(stores, EngineConfig::default(), Arc::new(SystemClock), Arc::new(OsEntropy)).unwrap()
}

/// A SCIM write's origin.
pub(crate) fn origin() -> Origin {
    Origin { source: SourceId::new("scim"), client: None, source_ref: None }
}

/// An active human named `name`, not created yet.
pub(crate) fn person(engine: &Engine, name: &str) -> Identity {
    Identity::draft(engine.new_identity_id().unwrap(), name, SourceId::scim())
}
