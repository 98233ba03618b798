//! The Token Status List (`draft-ietf-oauth-status-list`): a revocation
//! list for resource servers that validate JWT access tokens locally and
//! cannot receive pushes.
//!
//! Each session that gets a JWT gets an index, once (its refreshed tokens
//! carry the same one); the list's two bits there say whether the session
//! still lives (0 valid, 1 invalid: revoked or expired, 2 suspended). The
//! list is computed from the introspection cache on request, so it shows a
//! revocation as soon as introspection does: the cache drops a revoked
//! session before its revocation commits.

use lockstep_domain::{SessionId, Timestamp};
use std::collections::HashMap;

use crate::{Engine, EngineResult};

/// Bits per index (valid, invalid, suspended).
pub const BITS: u8 = 2;

/// Indexes given out, and those not yet stored.
#[derive(Debug, Default)]
pub(crate) struct StatusIndex {
    by_idx: Vec<Option<SessionId>>,
    by_session: HashMap<SessionId, u32>,
    unsaved: Vec<(u32, SessionId)>,
}

impl StatusIndex {
    pub(crate) fn load(indexes: Vec<(u32, SessionId)>) -> Self {
        let mut me = StatusIndex::default();
        for (idx, session) in indexes {
            let i = idx as usize;
            if me.by_idx.len() <= i {
                me.by_idx.resize(i + 1, None);
            }
            me.by_idx[i] = Some(session);
            me.by_session.insert(session, idx);
        }
        me
    }

    /// The session's index, giving it the next one if it has none.
    pub(crate) fn of(&mut self, session: SessionId) -> u32 {
        if let Some(idx) = self.by_session.get(&session) {
            return *idx;
        }
        let idx = u32::try_from(self.by_idx.len()).unwrap_or(u32::MAX);
        self.by_idx.push(Some(session));
        self.by_session.insert(session, idx);
        self.unsaved.push((idx, session));
        idx
    }

    pub(crate) fn take_unsaved(&mut self) -> Vec<(u32, SessionId)> {
        std::mem::take(&mut self.unsaved)
    }
}

impl Engine {
    pub(crate) fn status_index(&self) -> std::sync::MutexGuard<'_, StatusIndex> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The status list now: two bits per index, least significant first
    /// (the draft's byte order), not yet compressed.
    pub fn status_list(&self, now: Timestamp) -> EngineResult<Vec<u8>> {
        let sessions: Vec<Option<SessionId>> = self.status_index().by_idx.clone();
        let per_byte = 8 / usize::from(BITS);
        let mut bytes = vec![0u8; sessions.len().div_ceil(per_byte)];
        for (i, session) in sessions.iter().enumerate() {
            let value: u8 = match session.and_then(|s| self.cache.standing(&s)) {
                Some((expires_at, _)) if expires_at <= now => 1,
                Some((_, true)) => 2,
                Some(_) => 0,
                None => 1,
            };
            bytes[i / per_byte] |= value << ((i % per_byte) * usize::from(BITS));
        }
        Ok(bytes)
    }
}
