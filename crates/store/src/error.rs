//! What can go wrong in a store.

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A uniqueness constraint was hit.
    #[error("{field} {value:?} is already in use")]
    Conflict {
        /// Which attribute (`userName`, `id`).
        field: &'static str,
        /// The clashing value.
        value: String,
    },
    /// Optimistic concurrency failed: the row changed since it was read.
    #[error("version mismatch: expected {expected:?}, found {found:?}")]
    VersionMismatch {
        /// What the writer expected (`None`: that it does not exist).
        expected: Option<u64>,
        /// What is stored (`None`: nothing).
        found: Option<u64>,
    },
    /// A row the write refers to does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// Stored data could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The backend failed (I/O, driver).
    #[error("storage backend failed: {0}")]
    Backend(String),
}

/// Result alias for store calls.
pub type StoreResult<T> = Result<T, StoreError>;
