//! What time and start-up trigger: replay, warming memory, a changed
//! policy, grace periods that end, idle clocks, memory hygiene.

use std::collections::HashSet;

use lockstep_domain::{Actor, AuditEntry, AuditKind, IdentityId, SessionState, Tiers, Timestamp};
use lockstep_policy::{SessionAction, grace_ended};
use lockstep_store::{SessionBatch, SessionUpdate, StoreError, StoreResult};
use sha2::{Digest, Sha256};

use crate::cache::Claims;
use crate::metrics::ReasonLabel;
use crate::{Engine, EngineError, EngineResult};

/// What [`Engine::open`] did before serving.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opened {
    /// Directory events replayed into the session store.
    pub replayed: usize,
    /// Live sessions loaded into memory.
    pub sessions: usize,
    /// The policy changed since the last start (audited `policy.changed`).
    pub policy_changed: bool,
    /// Sessions shortened to respect a new lifetime cap.
    pub shortened: usize,
    /// Suspended sessions whose grace period ended while the process was
    /// down, revoked now.
    pub grace_ended: usize,
}

/// Events read from the directory when loading claims.
const CLAIMS_CHUNK: usize = 1024;

impl Engine {
    /// Start-up, in order: replay, load, policy change, due grace periods.
    pub(crate) fn start_up(&self) -> EngineResult<Opened> {
        let mut opened = Opened::default();
        {
            let mut writer = self.lock_writer()?;
            let replayed = self.catch_up(&mut writer).map_err(EngineError::from)?;
            opened.replayed = replayed.events;
            if replayed.events > 0 {
                tracing::info!(
                    events = replayed.events,
                    revoked = replayed.revoked,
                    "replayed directory events not yet applied to sessions"
                );
            }
        }
        let now = self.clock.now();
        let seconds = |since: Timestamp| (self.clock.now().micros() - since.micros()) as f64 / 1e6;
        // The sessions, then their holders' claims, are loaded before
        // serving; the bearer secrets load after, while the server serves
        // (see `load_tokens_behind`). Only the holders' ids are kept beside
        // the cache: a copy of every session would double start-up memory
        // at ten million sessions.
        self.cache.tokens().begin_loading();
        let mut holders = Vec::new();
        let mut result = Ok(());
        let count = self.cache.load_sessions(|add| {
            let mut count = 0;
            result = self.stores.sessions.for_each_live_entry(now, &mut |s| {
                add(&s);
                holders.push(s.identity);
                count += 1;
            });
            count
        });
        result?;
        tracing::debug!(seconds = seconds(now), "sessions loaded");
        holders.sort_unstable();
        holders.dedup();
        opened.sessions = count;
        self.metrics.live_sessions.set(i64::try_from(count).unwrap_or(i64::MAX));
        let loaded = self.clock.now();
        let identities = holders.len();
        self.load_claims(holders)?;
        tracing::info!(
            sessions = count,
            identities,
            sessions_seconds = seconds(now),
            claims_seconds = seconds(loaded),
            "introspection cache loaded"
        );
        self.load_tokens_behind(now, count);
        let (changed, shortened) = self.record_policy()?;
        opened.policy_changed = changed;
        opened.shortened = shortened;
        opened.grace_ended = self.apply_due_suspensions()?;
        Ok(opened)
    }

    /// Loads the bearer secrets (access tokens and API keys) on a thread of
    /// their own, so that the server serves once sessions and claims are
    /// held: at ten million sessions the secrets are a third of start-up.
    /// Until the load is done, introspection looks a secret missing from
    /// the map up in the store ([`Engine::stored_bearer`]); the session it
    /// names must still be held in memory, so nothing revoked comes back.
    fn load_tokens_behind(&self, now: Timestamp, sessions: usize) {
        let tokens = self.cache.tokens();
        let store = self.stores.sessions.clone();
        let clock = self.clock.clone();
        let spawned = std::thread::Builder::new().name("load-tokens".into()).spawn(move || {
            let mut result = Ok(());
            // About one bearer secret per live session (an access token or
            // an API key; refresh tokens and client secrets are not bearer).
            let count =
                tokens.load(sessions, |add| result = store.for_each_live_token(now, &mut |t| add(&t)));
            let seconds = (clock.now().micros() - now.micros()) as f64 / 1e6;
            match result {
                Ok(()) => {
                    tokens.finish_loading();
                    tracing::info!(tokens = count, seconds, "bearer tokens loaded");
                }
                // Still correct, only slower: every secret missing from
                // the map goes on being looked up in the store.
                Err(e) => tracing::error!(
                    error = %e,
                    tokens = count,
                    "loading bearer tokens failed: secrets not in memory are read from the store until a restart"
                ),
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "no thread to load bearer tokens: every secret is read from the store");
        }
    }

    /// Loads the claims of every identity holding a live session.
    /// Two threads, each taking every other chunk: the reads are
    /// independent and the directory has readers to spare.
    fn load_claims(&self, holders: Vec<IdentityId>) -> StoreResult<()> {
        let load = |first: usize| -> StoreResult<()> {
            for chunk in holders.chunks(CLAIMS_CHUNK).skip(first).step_by(2) {
                for inputs in self.stores.directory.claim_inputs(chunk)? {
                    let tiers = self.tiers_for(inputs.kind, inputs.risk_tier, &inputs.groups);
                    let groups = inputs.groups.into_iter().map(|(g, n)| (g, n.into_boxed_str())).collect();
                    let user_name = inputs.user_name.into_boxed_str();
                    self.claims.set(inputs.id, Claims { user_name, kind: inputs.kind, tiers, groups });
                }
            }
            Ok(())
        };
        std::thread::scope(|scope| {
            let other = scope.spawn(|| load(1));
            let mine = load(0);
            let other = other
                .join()
                .unwrap_or_else(|_| Err(StoreError::Backend("the claims loader panicked".into())));
            mine.and(other)
        })
    }

    /// The hash of the policy in force: SHA-256 of its canonical form.
    pub fn policy_hash(&self) -> String {
        Sha256::digest(self.config.policy.canonical().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Records a policy that differs from the last one recorded
    /// (`policy.changed`) and brings forward every live session that
    /// exceeds a lifetime cap of the new policy. Never extends.
    fn record_policy(&self) -> EngineResult<(bool, usize)> {
        let hash = self.policy_hash();
        let previous = self.stores.sessions.policy()?;
        if previous.as_deref() == Some(hash.as_str()) {
            return Ok((false, 0));
        }
        let _sessions = self.lock_sessions();
        let now = self.clock.now();
        let mut detail =
            format!("policy_sha256={hash}; previous={}", previous.as_deref().unwrap_or("none (first start)"));
        if let Some(file) = &self.config.policy_source {
            detail.push_str(&format!("; {file}"));
        }
        let mut batch = SessionBatch {
            policy: Some(hash),
            audit: vec![AuditEntry {
                at: now,
                kind: AuditKind::PolicyChanged,
                identity: None,
                user_name: None,
                session: None,
                directory_event: None,
                actor: Actor::System,
                detail,
            }],
            ..SessionBatch::default()
        };
        let mut shortened = Vec::new();
        let mut live = Vec::new();
        self.stores.sessions.for_each_live(now, &mut |s| {
            let tiers = self.claims.get(&s.identity).map_or(Tiers::STANDARD, |c| c.tiers);
            if let Some(expires_at) = self.config.policy.capped_expiry(&s, tiers, now) {
                live.push((s, tiers, expires_at));
            }
        })?;
        for (s, tiers, expires_at) in &live {
            let (s, tiers, expires_at) = (s, *tiers, *expires_at);
            let rule =
                self.config.policy.lifetime_cap(s.kind, tiers).map_or_else(String::new, |(_, rule)| rule);
            batch.updates.push(SessionUpdate { session: s.id, state: s.state, expires_at: Some(expires_at) });
            batch.audit.push(AuditEntry {
                at: now,
                kind: AuditKind::SessionExpiryShortened,
                identity: Some(s.identity),
                user_name: Some(s.user_name.clone()),
                session: Some(s.id),
                directory_event: None,
                actor: Actor::policy(rule),
                detail: format!(
                    "expires_at={}; the new policy caps this tier's lifetime",
                    expires_at.unix_seconds()
                ),
            });
            shortened.push((s.id, expires_at));
        }
        self.stores.sessions.apply(batch)?;
        for (id, expires_at) in &shortened {
            self.cache.update(id, |c| c.expires_at = *expires_at);
        }
        tracing::info!(shortened = shortened.len(), "policy changed since the last start");
        Ok((true, shortened.len()))
    }

    /// Revokes every suspended session whose grace period has ended: its
    /// condition did not clear in time. Runs at start-up (before serving)
    /// and on a timer. Returns how many were revoked.
    pub fn apply_due_suspensions(&self) -> EngineResult<usize> {
        let now = self.clock.now();
        if self.stores.sessions.suspensions_due(now)?.is_empty() {
            return Ok(0);
        }
        let _sessions = self.lock_sessions();
        // Read again under the lock: the bridge may have resumed or revoked
        // some meanwhile.
        let due = self.stores.sessions.suspensions_due(now)?;
        let mut batch = SessionBatch::default();
        let mut revoked = Vec::new();
        let mut signals = Vec::new();
        for s in &due {
            let Some(SessionAction::Revoke { reason, .. }) = grace_ended(s, now) else { continue };
            let SessionState::Suspended { cause, condition, .. } = s.state else { continue };
            let tiers = self.claims.get(&s.identity).map_or(Tiers::STANDARD, |c| c.tiers);
            let (_, tier) = self.config.policy.effective(tiers).owner_grace;
            let state = SessionState::Revoked { at: now, reason, cause };
            batch.updates.push(SessionUpdate { session: s.id, state, expires_at: None });
            batch.audit.push(AuditEntry {
                at: now,
                kind: AuditKind::SessionRevoked,
                identity: Some(s.identity),
                user_name: Some(s.user_name.clone()),
                session: Some(s.id),
                directory_event: cause,
                actor: Actor::policy(format!("{tier}.owner_grace")),
                detail: format!(
                    "reason={reason}; the grace period ended without the {condition} condition clearing"
                ),
            });
            revoked.push((s.id, reason));
            signals.push(lockstep_domain::Signal {
                kind: lockstep_domain::SignalKind::SessionRevoked,
                at: now,
                identity: Some(s.identity),
                user_name: Some(s.user_name.clone()),
                session: Some(s.id),
                change: None,
                credential_type: None,
                claims: None,
                initiator: "policy".into(),
                reason: format!(
                    "{tier}.owner_grace: the grace period ended without the {condition} condition clearing"
                ),
                txn: cause.map(|c| format!("dir-{}", c.0)).unwrap_or_default(),
                state: None,
            });
        }
        for (id, _) in &revoked {
            self.forget(id);
        }
        batch.outbox = self.address(signals)?;
        let queued = !batch.outbox.is_empty();
        self.stores.sessions.apply(batch)?;
        if queued {
            self.ring();
        }
        for (_, reason) in &revoked {
            self.metrics.revocations.get_or_create(&ReasonLabel { reason: reason.as_str().to_owned() }).inc();
        }
        if !revoked.is_empty() {
            tracing::info!(revoked = revoked.len(), "grace periods ended");
        }
        Ok(revoked.len())
    }

    /// Persists the last use of sessions used since the last call, in one
    /// batch off the hot path. A crash loses at most one interval of last
    /// uses, which only makes idle sessions look idle earlier.
    pub fn persist_last_seen(&self) -> EngineResult<usize> {
        let _sessions = self.lock_sessions();
        let dirty = self.cache.take_dirty();
        let n = dirty.len();
        if n > 0 {
            self.stores.sessions.apply(SessionBatch {
                last_seen: dirty,
                replayable: true,
                ..SessionBatch::default()
            })?;
        }
        Ok(n)
    }

    /// Drops expired and idle sessions from memory, and the claims of
    /// identities left without a cached session; returns how many sessions.
    pub fn sweep_expired(&self) -> usize {
        let now = self.clock.now();
        let policy = &self.config.policy;
        let idle_of = |id: IdentityId| {
            let tiers = self.claims.get(&id)?.tiers;
            policy.idle_timeout(tiers).map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        };
        let n = self.cache.sweep(now, idle_of);
        self.metrics.live_sessions.dec_by(i64::try_from(n).unwrap_or(0));
        let holders: HashSet<IdentityId> = self.cache.identities();
        self.claims.retain(|id| holders.contains(id));
        n
    }

    /// Purges sessions and credentials that expired, or were revoked, more
    /// than the retention ago, in batches of `chunk` (one short write
    /// transaction each, so the hot path never waits long), and records one
    /// `session.purged` audit record per run that purged anything. Returns
    /// how many were purged. A purged token is unknown, and an unknown
    /// token is inactive: nothing purged can introspect active again.
    pub fn purge_expired(&self, chunk: usize) -> EngineResult<usize> {
        let now = self.clock.now();
        let retention = self.config.tokens.retention;
        let before =
            Timestamp(now.micros().saturating_sub(i64::try_from(retention.as_micros()).unwrap_or(i64::MAX)));
        let mut total = 0;
        loop {
            let n = {
                let _sessions = self.lock_sessions();
                self.stores.sessions.purge(before, chunk.max(1))?
            };
            total += n;
            if n < chunk.max(1) {
                break;
            }
        }
        if total > 0 {
            let _sessions = self.lock_sessions();
            self.stores.sessions.apply(SessionBatch {
                audit: vec![AuditEntry {
                    at: now,
                    kind: AuditKind::SessionsPurged,
                    identity: None,
                    user_name: None,
                    session: None,
                    directory_event: None,
                    actor: Actor::System,
                    detail: format!(
                        "purged {total} session(s) and credential(s) expired or revoked before {} (retention {})",
                        before.unix_seconds(),
                        humantime::format_duration(retention)
                    ),
                }],
                replayable: true,
                ..SessionBatch::default()
            })?;
            tracing::info!(purged = total, "retention: purged expired and revoked sessions");
        }
        Ok(total)
    }

    /// How many identities' claims are held in memory.
    pub fn held_claims(&self) -> usize {
        self.claims.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use lockstep_domain::Token;

    use crate::testing::{engine as open, origin, person};
    use crate::{Engine, OpenRequest, Principal, secrets};

    fn open_session(engine: &Engine, refresh: bool) -> crate::IssuedTokens {
        let request = OpenRequest { subject: "dana".into(), ttl: None, refresh, format: None };
        engine.authority().open_session(request, &Principal::admin()).wait().unwrap()
    }

    /// The server serves before the bearer secrets are in memory. Until
    /// they are, a secret missing from the map is read from the SQLite
    /// store, and the session it names must still be held: a revoked one
    /// (before the restart or during the load) never comes back, a refresh
    /// token is no bearer secret, and the load's older snapshot undoes
    /// nothing that happened while it ran.
    #[test]
    fn secrets_not_loaded_yet_are_answered_from_the_store_as_memory_would() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open(dir.path());
        engine.create_identity(person(&engine, "dana"), origin()).unwrap();
        let (kept, cut_before, cut_during) =
            (open_session(&engine, false), open_session(&engine, false), open_session(&engine, true));
        engine.authority().revoke_session(cut_before.session.id, &Principal::admin()).wait().unwrap();
        drop(engine);

        let engine = open(dir.path());
        // The restarted engine, as it is before its loader has run: no
        // secret in memory, sessions and claims held.
        let tokens = engine.cache.tokens();
        while !engine.bearer_tokens_loaded() {
            std::thread::yield_now();
        }
        let snapshot: Vec<Token> = {
            let mut all = Vec::new();
            engine.stores.sessions.for_each_live_token(engine.clock.now(), &mut |t| all.push(t)).unwrap();
            all
        };
        tokens.forget_all();
        tokens.begin_loading();
        assert!(!engine.bearer_tokens_loaded());

        let active = |t: &str| engine.introspect(t).is_some();
        assert!(active(&kept.access_token), "read from the store");
        assert_eq!(engine.introspect(&kept.access_token).unwrap().claims.unwrap().user_name.as_ref(), "dana");
        assert!(!active(&cut_before.access_token), "revoked before the restart");
        assert!(active(&cut_during.access_token));
        assert!(
            !active(cut_during.refresh_token.as_deref().unwrap()),
            "a refresh token is not a bearer secret"
        );
        assert!(!active("lst_at_unknown"));
        // Revoked while the secrets load: by its token, found in the store.
        engine.authority().revoke_token(&cut_during.access_token, &Principal::admin()).wait().unwrap();
        assert!(!active(&cut_during.access_token));
        // The load finishes with its snapshot from before that revocation.
        assert_eq!(tokens.load(snapshot.len(), |add| snapshot.iter().for_each(add)), snapshot.len());
        tokens.finish_loading();
        assert!(engine.bearer_tokens_loaded());
        assert!(active(&kept.access_token), "from memory now");
        assert!(!active(&cut_during.access_token), "the older snapshot brings nothing back");
        assert!(!active(&cut_before.access_token));
        assert!(engine.cache.get(&secrets::hash(&kept.access_token), || None).is_some());
    }
}
