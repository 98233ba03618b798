//! Directory sources that are not SCIM: LDAP and Active Directory, HR
//! files. Each source owns the identities and groups it created; the
//! engine plans every update against what the source owns, holds a change
//! that removes too much (the circuit breaker), applies the rest through
//! the bridge with the source's cursor in the same directory transaction
//! as the update's last write, and measures how stale each source is.
//!
//! Connectors (`lockstep-source-ldap`, the import endpoint) see only the
//! [`SourceSink`] trait: they map entries to records with pure functions
//! and hand them over; they never write the directory themselves.

mod apply;
mod held;
mod plan;
mod record;
mod stale;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lockstep_domain::{SourceId, Timestamp};

pub use apply::{DryRun, PlannedRemoval, SourceHandle, SourceStatus, Sources};
pub use held::Held;
pub use plan::{Plan, Removal};
pub use record::{GroupRecord, Removals, SourceRecord, SourceUpdate, UserRecord};
pub use stale::StalenessChecked;

/// How many removals a source may make before its circuit breaker holds
/// the rest: ordinary offboarding stays fast, an accident (a wrong base DN,
/// a truncated file) cannot wipe the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Breaker {
    /// A share of the source's identities, in percent (default 10).
    pub percent: u32,
    /// But at least this many (default 20).
    pub min: usize,
    /// And at most this many (default 500).
    pub max: usize,
    /// A fixed number instead of the share.
    pub fixed: Option<usize>,
    /// Deletions arriving one by one (syncrepl) are counted over this
    /// sliding window (default 5 minutes).
    pub window: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Self { percent: 10, min: 20, max: 500, fixed: None, window: Duration::from_secs(300) }
    }
}

impl Breaker {
    /// The most removals allowed for a source owning `owned` identities.
    pub fn threshold(&self, owned: usize) -> usize {
        self.fixed.unwrap_or_else(|| {
            let share = owned.saturating_mul(self.percent as usize) / 100;
            share.clamp(self.min, self.max.max(self.min))
        })
    }
}

/// One configured source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceSettings {
    /// Its name (recorded on every directory event it causes).
    pub name: SourceId,
    /// `ldap` or `file`.
    pub kind: String,
    /// How it is read (`syncrepl`, `poll`, `usn_poll`, `import`).
    pub mode: String,
    /// What an identity that disappeared becomes.
    pub removal: Removal,
    /// Beyond this staleness, its privileged identities' sessions are
    /// suspended until it is fresh again.
    pub max_staleness: Option<Duration>,
    /// The circuit breaker.
    pub breaker: Breaker,
}

/// Per-source state in memory.
#[derive(Debug)]
struct Runtime {
    connection: ConnectionState,
    /// The last moment the directory held everything the source had.
    complete_at: Option<Timestamp>,
    last_sync: Option<Timestamp>,
    last_error: Option<String>,
    /// Removals applied within the breaker's window: (when, how many).
    window: VecDeque<(Timestamp, usize)>,
    held: Held,
    /// Whether privileged sessions are suspended for staleness (`None`:
    /// unknown since start, so the first fresh check resumes leftovers).
    stale: Option<bool>,
    totals: SourceApplied,
    loaded: bool,
    /// When this process first looked at the source (staleness of a source
    /// never complete counts from here).
    started: Option<Timestamp>,
}

/// A configured source: settings, state, and a lock that serialises its
/// updates (two updates of one source never interleave).
#[derive(Debug)]
struct Entry {
    settings: SourceSettings,
    runtime: Mutex<Runtime>,
    applying: Mutex<()>,
}

impl Entry {
    fn runtime(&self) -> MutexGuard<'_, Runtime> {
        self.runtime.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every configured source.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    entries: HashMap<SourceId, Arc<Entry>>,
    order: Vec<SourceId>,
}

impl Registry {
    pub(crate) fn new(settings: &[SourceSettings]) -> Self {
        let mut registry = Registry::default();
        for s in settings {
            registry.order.push(s.name.clone());
            registry.entries.insert(
                s.name.clone(),
                Arc::new(Entry {
                    settings: s.clone(),
                    runtime: Mutex::new(Runtime {
                        connection: ConnectionState::Connecting,
                        complete_at: None,
                        last_sync: None,
                        last_error: None,
                        window: VecDeque::new(),
                        held: Held::default(),
                        stale: None,
                        totals: SourceApplied::default(),
                        loaded: false,
                        started: None,
                    }),
                    applying: Mutex::new(()),
                }),
            );
        }
        registry
    }

    fn get(&self, name: &str) -> Result<Arc<Entry>, SourceError> {
        self.entries.get(&SourceId::new(name)).cloned().ok_or_else(|| SourceError::Unknown(name.to_owned()))
    }

    /// Whether `source` is configured with this kind.
    pub(crate) fn is_kind(&self, source: &SourceId, kind: &str) -> bool {
        self.entries.get(source).is_some_and(|e| e.settings.kind == kind)
    }

    fn all(&self) -> impl Iterator<Item = Arc<Entry>> + '_ {
        self.order.iter().filter_map(|n| self.entries.get(n).cloned())
    }
}

/// What a source's connection is doing now, as the connector reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connecting, binding, or reading the initial content.
    Connecting,
    /// A syncrepl session in its persist phase: every change reaches the
    /// directory as it happens, so the source counts as fresh.
    Live,
    /// Between two polls (each completed poll restarts staleness).
    Polling,
    /// Waiting to reconnect after an error.
    Down {
        /// What went wrong (no secrets: connectors never put a password or
        /// a cookie in it).
        error: String,
    },
}

impl ConnectionState {
    /// The stable name shown in `GET /v1/sources`.
    pub fn name(&self) -> &'static str {
        match self {
            ConnectionState::Connecting => "connecting",
            ConnectionState::Live => "live",
            ConnectionState::Polling => "polling",
            ConnectionState::Down { .. } => "down",
        }
    }
}

/// What applying one update did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceApplied {
    /// Identities and groups created.
    pub created: usize,
    /// Identities and groups changed.
    pub updated: usize,
    /// Identities deactivated (a removal, or a record that became inactive).
    pub deactivated: usize,
    /// Identities and groups deleted.
    pub deleted: usize,
    /// Records that matched what is stored.
    pub unchanged: usize,
    /// Removals held by the circuit breaker (the whole update, for a
    /// complete one), waiting for approval.
    pub held: usize,
    /// Records refused (a userName another source or SCIM holds, an owner
    /// the source does not know), each with why; the rest still applies.
    pub rejected: Vec<(String, String)>,
    /// Sessions revoked by the update's bridge steps.
    pub revoked: usize,
}

/// A source's connector could not hand an update over.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// No source by that name is configured.
    #[error("no source named {0:?} is configured")]
    Unknown(String),
    /// The update is not acceptable as a whole (an empty truth).
    #[error("{0}")]
    Refused(String),
    /// Nothing is held for the source.
    #[error("source {0:?} holds no changes")]
    NothingHeld(String),
    /// The engine failed; the update was not applied (nothing of it, or
    /// only writes a replay of the same update repeats without effect).
    #[error(transparent)]
    Engine(#[from] crate::EngineError),
}

/// What a connector needs from the engine, as a trait so a connector's own
/// tests can drive it with a recording sink.
pub trait SourceSink: Send + Sync + std::fmt::Debug {
    /// The cursor committed with the last applied update (`None`: start
    /// from scratch).
    fn cursor(&self) -> Result<Option<Vec<u8>>, SourceError>;

    /// Plans and applies an update; blocks until its session impact is
    /// committed (call it off the async reactor).
    fn apply(&self, update: SourceUpdate) -> Result<SourceApplied, SourceError>;

    /// Reports the connection's state (drives staleness: a live syncrepl
    /// session is fresh; a down one ages from its last complete moment).
    fn connection(&self, state: ConnectionState);

    /// The time now, from the engine's clock (a connector asks the
    /// directory what has expired by it, e.g. Active Directory's
    /// `accountExpires`).
    fn now(&self) -> lockstep_domain::Timestamp;
}
