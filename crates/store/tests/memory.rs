//! The reference model passes its own conformance suite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use lockstep_store::{MemoryDirectory, MemorySessions};

lockstep_store::conformance_suite!(
    directory: MemoryDirectory::new(),
    sessions: MemorySessions::new(),
    cases: 64
);
