//! Connection set-up shared by both stores.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use lockstep_store::{StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags};

/// How hard a commit waits for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: a commit survives power loss once acknowledged.
    /// The default, because an acknowledged revocation must never be lost.
    #[default]
    Full,
    /// `synchronous=NORMAL`: survives a process crash (`kill -9`), may lose
    /// the last commits on power loss.
    Normal,
    /// `synchronous=OFF`: for throw-away benchmark data only.
    Off,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
            Durability::Off => "OFF",
        }
    }
}

pub(crate) fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> StoreResult<MutexGuard<'_, T>> {
    m.lock().map_err(|_| StoreError::Backend("connection lock poisoned".into()))
}

/// A writer and a few readers on one database file.
#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
}

const READERS: usize = 4;

impl Pool {
    pub(crate) fn open(path: &Path, durability: Durability, schema: &str) -> StoreResult<Self> {
        let writer = Connection::open(path).map_err(backend)?;
        writer
            .execute_batch(&format!(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous={}; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;",
                durability.pragma()
            ))
            .map_err(backend)?;
        writer.execute_batch(schema).map_err(backend)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(backend)?;
            reader.execute_batch("PRAGMA busy_timeout=5000;").map_err(backend)?;
            readers.push(Mutex::new(reader));
        }
        Ok(Self { writer: Mutex::new(writer), readers })
    }

    /// Runs `f` on a free reader, or waits for the first one.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> StoreResult<T> {
        for reader in &self.readers {
            if let Ok(conn) = reader.try_lock() {
                return f(&conn).map_err(backend);
            }
        }
        match self.readers.first() {
            Some(reader) => f(&*lock(reader)?).map_err(backend),
            None => f(&*lock(&self.writer)?).map_err(backend),
        }
    }
}
