//! Read-only questions an operator or a resource server asks: what did a
//! directory change reach, and may this token do something dangerous now.

use std::collections::{BTreeSet, HashSet};

use lockstep_domain::{
    AuditRecord, DirectoryEvent, DirectoryEventId, IdentityId, IdentityStatus, Session, SessionId, Timestamp,
    TokenKind,
};

use lockstep_store::{DirectoryRead, SessionStore};

use crate::{Engine, EngineError, EngineResult, secrets};

/// Fan-out events followed at most (a group of a million members is
/// reported up to this many of its members' events).
const MAX_CAUSED: usize = 200_000;

/// Events whose Shared Signals deliveries a report lists.
const MAX_SIGNAL_EVENTS: usize = 1000;

/// What one directory change reached.
#[derive(Debug, Clone)]
pub struct Reach {
    /// The event asked about.
    pub event: DirectoryEvent,
    /// The events it caused, directly or through others (a group deletion's
    /// membership removals, an owner's `owner_lost` fan-out, the tier
    /// changes those caused), in log order.
    pub caused: Vec<DirectoryEvent>,
    /// The audit records of the event and everything it caused: the
    /// decisions (on the `directory.*` records) and each session touched
    /// (`session.revoked`, `session.expiry_shortened`, `session.suspended`,
    /// `session.marked_for_recheck`, `session.resumed`), in order.
    pub records: Vec<AuditRecord>,
    /// Every session touched, as it stands now.
    pub touched: Vec<Session>,
    /// Sessions of the subjects that still live now (not revoked, not
    /// expired), with their expiry: what the change did not cut.
    pub still_live: Vec<Session>,
    /// Whether the fan-out was cut at the reporting limit.
    pub truncated: bool,
    /// When this report was made.
    pub at: Timestamp,
    /// The Security Event Tokens the event and what it caused queued for
    /// each Shared Signals stream, and whether (and when) each was
    /// delivered.
    pub signals: Vec<lockstep_store::SignalRecord>,
}

/// A fresh decision for a privileged action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Whether the action may proceed.
    pub allow: bool,
    /// Why: every condition checked, in order, as a sentence.
    pub reasons: Vec<String>,
    /// The identity the token belongs to, if it is a known, live token.
    pub sub: Option<IdentityId>,
    /// When the decision was made (against the directory as it stood then).
    pub checked_at: Timestamp,
}

impl Engine {
    /// What the directory event at `position` reached.
    pub fn reach(&self, position: DirectoryEventId) -> EngineResult<Reach> {
        self.await_acknowledged_writes();
        reach(self.stores.directory.as_ref(), self.stores.sessions.as_ref(), position, self.clock.now())
    }

    /// A fresh decision against the directory as it stands now, not any
    /// cache: allow only if the token is active, its identity is active,
    /// is a member of every group named (display name under the identifier
    /// key, or id), and the session is not suspended. The call a resource
    /// server makes before a dangerous operation.
    pub fn check(&self, presented: &str, groups: &[String]) -> EngineResult<Check> {
        let checked_at = self.clock.now();
        let deny = |reasons: Vec<String>, sub| Ok(Check { allow: false, reasons, sub, checked_at });
        let hash = secrets::hash(presented);
        self.await_acknowledged_writes();
        let Some((session, token)) = self.stores.sessions.session_by_token(&hash)? else {
            return deny(vec!["the token is not active".into()], None);
        };
        let sub = Some(session.identity);
        if !matches!(token.kind, TokenKind::Access | TokenKind::ApiKey) {
            return deny(vec!["the token is not a bearer token (access token or API key)".into()], sub);
        }
        if !session.is_live(checked_at) || !token.works(checked_at) {
            return deny(vec!["the token is not active (revoked or expired)".into()], sub);
        }
        if session.state.is_suspended() {
            return deny(vec!["the session is suspended".into()], sub);
        }
        // Memory is never behind the store towards "active" (revocations
        // leave memory first); an idle session is inactive here too.
        if self.introspect_quietly(presented).is_none() {
            return deny(vec!["the token is not active (idle or expired)".into()], sub);
        }
        let mut reasons = vec!["the token is active".to_owned()];
        let identity = self.stores.directory.identity(session.identity)?;
        match identity {
            Some(i) if i.status == IdentityStatus::Active => {
                reasons.push(format!("identity {} is active", i.user_name));
            }
            Some(i) => return deny(vec![format!("identity {} is {}", i.user_name, i.status)], sub),
            None => return deny(vec!["the identity no longer exists".into()], sub),
        }
        let member_of = self.stores.directory.groups_of(session.identity)?;
        let mut allow = true;
        for wanted in groups {
            let key = lockstep_domain::text::fold(wanted.trim());
            let found = member_of.iter().find(|(id, name)| {
                lockstep_domain::text::fold(name) == key || id.to_string() == wanted.trim()
            });
            match found {
                Some((_, name)) => reasons.push(format!("member of {name}")),
                None => {
                    allow = false;
                    reasons.push(format!("not a member of {wanted}"));
                }
            }
        }
        Ok(Check { allow, reasons, sub, checked_at })
    }

    /// Whether memory answers a token active, without counting it as a use.
    fn introspect_quietly(&self, token: &str) -> Option<()> {
        let hash = secrets::hash(token);
        let session = self.cache.get(&hash, || self.stored_bearer(&hash))?;
        let now = self.clock.now();
        let claims = self.claims.get(&session.identity);
        let idle = claims
            .filter(|_| !session.kind.is_credential())
            .and_then(|c| self.config.policy.idle_timeout(c.tiers));
        (now < session.expires_at
            && !session.suspended
            && idle.is_none_or(|i| now.since(session.last_seen) <= i))
        .then_some(())
    }
}

/// What the directory event at `position` reached, read from the stores
/// alone (so `lockstep reach --data-dir` can answer while a server runs).
pub fn reach(
    directory: &dyn DirectoryRead,
    sessions: &dyn SessionStore,
    position: DirectoryEventId,
    now: Timestamp,
) -> EngineResult<Reach> {
    let event = directory
        .event(position)?
        .ok_or_else(|| EngineError::NotFound(format!("directory event {}", position.0)))?;
    let mut caused = Vec::new();
    let mut frontier = vec![event.id];
    let mut truncated = false;
    while let Some(next) = frontier.pop() {
        for e in directory.events_caused_by(next)? {
            if caused.len() >= MAX_CAUSED {
                truncated = true;
                break;
            }
            frontier.push(e.id);
            caused.push(e);
        }
    }
    caused.sort_by_key(|e| e.id);
    let ids: Vec<DirectoryEventId> = std::iter::once(event.id).chain(caused.iter().map(|e| e.id)).collect();
    let records = sessions.audit_of_events(&ids)?;
    let touched_ids: BTreeSet<SessionId> = records.iter().filter_map(|r| r.entry.session).collect();
    let mut touched = Vec::with_capacity(touched_ids.len());
    for id in &touched_ids {
        touched.extend(sessions.session(*id)?);
    }
    let subjects: HashSet<IdentityId> =
        std::iter::once(&event).chain(&caused).filter_map(|e| e.subject.identity()).collect();
    let mut still_live = Vec::new();
    for identity in subjects {
        still_live.extend(sessions.sessions_of(identity)?.into_iter().filter(|s| s.is_live(now)));
    }
    still_live.sort_by_key(|s| (s.expires_at, s.id));
    let mut signals = Vec::new();
    if let Some(store) = sessions.signals() {
        // The first caused events only: a million-member fan-out is
        // reported by its sessions, not by a million outbox reads.
        for e in std::iter::once(&event).chain(caused.iter().take(MAX_SIGNAL_EVENTS)) {
            signals.extend(store.signals_of(&format!("dir-{}", e.id.0))?);
        }
    }
    Ok(Reach { event, caused, records, touched, still_live, truncated, at: now, signals })
}
