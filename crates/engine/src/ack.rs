//! Acknowledging a mass cut once it is in force, before its session-store
//! record lands.
//!
//! A directory change that reaches many sessions (deleting a group that
//! confers the privileged tier, with a hundred thousand live sessions
//! among its members) spends most of its bridge step writing the session
//! store: a row update and a hash-chained audit record per session. None
//! of that is needed for the cut to hold. By the time the write begins,
//! the directory change and its events are durable (fsynced), and the
//! introspection cache has already stopped answering `active` for every
//! session the decision cut; if the process dies before the session-store
//! commit, start-up replays the events past the bridge cursor and decides
//! the same way before anything is served (the same guarantee every
//! bridge commit already relies on for a machine failure, since it does
//! not wait for an fsync of its own). So a caller that asks for it is
//! answered at that moment, and the step goes on to write its record while
//! still holding the writer and sessions locks: every later writer waits
//! for it, and every read of session state or the audit trail the
//! engine serves (`list_sessions`, `audit_page`, `reach`, `check`, a
//! source's dry run, which counts the sessions each removal would cut) first
//! calls `await_acknowledged_writes`, which waits for it too. Nobody can
//! observe the gap through the API except by timing the answer.
//!
//! Small impacts do not take this path (the threshold is the caller's):
//! their session-store write costs about what the acknowledgement would
//! save.

/// A hook the bridge step of one directory write calls once its session
/// impact is in force in memory and its cause is durable, if the impact
/// reaches at least `min_sessions` sessions. Dropped unfired otherwise:
/// the caller then learns the outcome when the write returns.
pub struct EarlyAck {
    min_sessions: usize,
    fire: Box<dyn FnOnce() + Send>,
}

impl std::fmt::Debug for EarlyAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EarlyAck").field("min_sessions", &self.min_sessions).finish_non_exhaustive()
    }
}

impl EarlyAck {
    /// Calls `fire` once an impact of at least `min_sessions` sessions is in
    /// force.
    pub fn at_least(min_sessions: usize, fire: impl FnOnce() + Send + 'static) -> Self {
        EarlyAck { min_sessions, fire: Box::new(fire) }
    }

    /// Fires if `sessions` reaches the threshold; tells whether it did.
    pub(crate) fn offer(self, sessions: usize) -> bool {
        if sessions < self.min_sessions.max(1) {
            return false;
        }
        (self.fire)();
        true
    }
}

/// The session impact from which the HTTP layer acknowledges a group
/// deletion early.
pub const EARLY_ACK_SESSIONS: usize = 1_000;
