//! The reference model passes its own conformance suite.

use lockstep_store::{MemoryDirectory, MemorySessions};

lockstep_store::conformance_suite!(
    directory: MemoryDirectory::new(),
    sessions: MemorySessions::new(),
    cases: 64
);
