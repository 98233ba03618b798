//! Measured staleness, failing closed: a source staler than its bound has
//! its privileged identities' sessions suspended until it is fresh again.
//!
//! A source that cannot push is only as current as its last complete read.
//! Lockstep does not pretend otherwise: it measures how old that read is,
//! and past the source's `max_staleness` the identities whose access is
//! most dangerous to leave stale (the privileged tier) lose it until the
//! source is known complete again. Standard-tier sessions are untouched: a
//! stale HR feed must not log out the whole company.

use lockstep_domain::{Actor, AuditEntry, AuditKind, IdentityId, SessionState, SuspendCondition, Timestamp};
use lockstep_store::{SessionBatch, SessionUpdate};

use super::apply::Sources;
use super::{ConnectionState, Entry, Runtime, SourceError};
use crate::EngineError;
use crate::metrics::SourceLabel;

/// Seconds since the source was last known complete (0 while live).
pub(super) fn staleness(rt: &Runtime, now: Timestamp) -> Option<f64> {
    if rt.connection == ConnectionState::Live {
        return Some(0.0);
    }
    let since = rt.complete_at.or(rt.started)?;
    Some(now.micros().saturating_sub(since.micros()).max(0) as f64 / 1e6)
}

/// What one staleness check did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StalenessChecked {
    /// Sessions suspended because their source is too stale.
    pub suspended: usize,
    /// Sessions resumed because their source is fresh again.
    pub resumed: usize,
}

impl crate::Engine {
    /// [`Sources::enforce_staleness`], for the server's timer.
    pub fn check_sources(&self) -> crate::EngineResult<StalenessChecked> {
        self.sources().enforce_staleness().map_err(|e| match e {
            SourceError::Engine(e) => e,
            other => EngineError::Store(lockstep_store::StoreError::Backend(other.to_string())),
        })
    }
}

impl Sources<'_> {
    /// Updates every source's staleness gauge, suspends the live sessions
    /// of privileged identities of each source staler than its bound, and
    /// resumes them once it is fresh. Run on a timer (every second).
    pub fn enforce_staleness(&self) -> Result<StalenessChecked, SourceError> {
        let mut checked = StalenessChecked::default();
        for entry in self.engine().sources.all() {
            self.load(&entry)?;
            let now = self.engine().clock.now();
            let (seconds, was) = {
                let rt = entry.runtime();
                (staleness(&rt, now), rt.stale)
            };
            if let Some(seconds) = seconds {
                self.engine()
                    .metrics
                    .source_staleness
                    .get_or_create(&SourceLabel { source: entry.settings.name.to_string() })
                    .set(seconds);
            }
            let Some(bound) = entry.settings.max_staleness else { continue };
            let stale = seconds.is_some_and(|s| s > bound.as_secs_f64());
            if stale {
                // Marked stale before the suspensions commit: whoever sees a
                // session suspended for staleness also sees the source stale
                // (and new privileged sessions refused); failing part-way
                // leaves it failing closed, and the next check retries.
                entry.runtime().stale = Some(true);
                checked.suspended += self.suspend(&entry, seconds.unwrap_or(0.0), bound.as_secs_f64())?;
                if was != Some(true) {
                    tracing::warn!(
                        source = %entry.settings.name,
                        staleness = seconds.unwrap_or(0.0),
                        bound = bound.as_secs_f64(),
                        "directory source is staler than its bound: privileged sessions suspended"
                    );
                }
            } else if was != Some(false) {
                // Marked fresh before the resumptions commit, for the same
                // reason; a failed resumption puts the mark back, so the
                // next check tries again.
                entry.runtime().stale = Some(false);
                match self.resume(&entry) {
                    Ok(n) => checked.resumed += n,
                    Err(e) => {
                        entry.runtime().stale = was;
                        return Err(e);
                    }
                }
            }
        }
        Ok(checked)
    }

    /// Whether a source is staler than its bound now (new sessions for its
    /// privileged identities are refused).
    pub fn fails_closed(&self, source: &lockstep_domain::SourceId) -> bool {
        self.engine().sources.entries.get(source).is_some_and(|e| e.runtime().stale == Some(true))
    }

    fn suspend(&self, entry: &Entry, seconds: f64, bound: f64) -> Result<usize, SourceError> {
        let engine = self.engine();
        let owned =
            engine.stores.directory.source_identities(&entry.settings.name).map_err(EngineError::from)?;
        let privileged: Vec<IdentityId> = owned
            .iter()
            .filter(|i| engine.claims.get(&i.id).is_some_and(|c| c.tiers.privileged))
            .map(|i| i.id)
            .collect();
        if privileged.is_empty() {
            return Ok(0);
        }
        let _sessions = engine.lock_sessions();
        let now = engine.clock.now();
        let mut batch = SessionBatch::default();
        let mut ids = Vec::new();
        for s in engine.stores.sessions.live_sessions_of(&privileged, now).map_err(EngineError::from)? {
            if !matches!(s.state, SessionState::Active | SessionState::NeedsRecheck) {
                continue;
            }
            let state = SessionState::Suspended {
                at: now,
                condition: SuspendCondition::SourceStale,
                cause: None,
                until: None,
            };
            batch.updates.push(SessionUpdate { session: s.id, state, expires_at: None });
            batch.audit.push(AuditEntry {
                at: now,
                kind: AuditKind::SessionSuspended,
                identity: Some(s.identity),
                user_name: Some(s.user_name.clone()),
                session: Some(s.id),
                directory_event: None,
                actor: Actor::policy("privileged.max_staleness"),
                detail: format!(
                    "condition=source_stale; revoke_at=never; source {} is {seconds:.0} s stale (bound {bound:.0} s): privileged access fails closed until it is fresh",
                    entry.settings.name
                ),
            });
            ids.push(s.id);
        }
        if ids.is_empty() {
            return Ok(0);
        }
        // Fail closed before the commit.
        for id in &ids {
            engine.cache.update(id, |c| c.suspended = true);
        }
        let ticket = engine.stores.sessions.commit(batch).map_err(EngineError::from)?;
        engine.stores.sessions.wait_durable(ticket.1).map_err(EngineError::from)?;
        Ok(ids.len())
    }

    fn resume(&self, entry: &Entry) -> Result<usize, SourceError> {
        let engine = self.engine();
        let owned =
            engine.stores.directory.source_identities(&entry.settings.name).map_err(EngineError::from)?;
        let holders: Vec<IdentityId> =
            owned.iter().filter(|i| engine.claims.contains(&i.id)).map(|i| i.id).collect();
        if holders.is_empty() {
            return Ok(0);
        }
        let _sessions = engine.lock_sessions();
        let now = engine.clock.now();
        let mut batch = SessionBatch::default();
        let mut ids = Vec::new();
        for s in engine.stores.sessions.live_sessions_of(&holders, now).map_err(EngineError::from)? {
            if !matches!(s.state, SessionState::Suspended { condition: SuspendCondition::SourceStale, .. }) {
                continue;
            }
            batch.updates.push(SessionUpdate {
                session: s.id,
                state: SessionState::Active,
                expires_at: None,
            });
            batch.audit.push(AuditEntry {
                at: now,
                kind: AuditKind::SessionResumed,
                identity: Some(s.identity),
                user_name: Some(s.user_name.clone()),
                session: Some(s.id),
                directory_event: None,
                actor: Actor::policy("privileged.max_staleness"),
                detail: format!("the condition cleared: source {} is fresh again", entry.settings.name),
            });
            ids.push(s.id);
        }
        if ids.is_empty() {
            return Ok(0);
        }
        let ticket = engine.stores.sessions.commit(batch).map_err(EngineError::from)?;
        engine.stores.sessions.wait_durable(ticket.1).map_err(EngineError::from)?;
        for id in &ids {
            engine.cache.update(id, |c| c.suspended = false);
        }
        Ok(ids.len())
    }
}
