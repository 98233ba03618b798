//! Opening, listing, revoking and introspecting sessions; API clients.

use std::time::Duration;

use std::sync::Arc;

use lockstep_domain::{
    Actor, ApiClient, AuditEntry, AuditKind, AuditRecord, CredentialKind, GroupId, Identity, IdentityId,
    IdentityStatus, RevocationReason, Scope, Session, SessionId, SessionState, Tiers,
};
use lockstep_store::{SessionBatch, SessionUpdate};

use crate::cache::{CachedSession, Claims};
use crate::metrics::ReasonLabel;
use crate::{Engine, EngineError, EngineResult, Principal, secrets};

/// Session lifetime limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Lifetime when the request names none.
    pub default_ttl: Duration,
    /// The longest lifetime a request may ask for.
    pub max_ttl: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self { default_ttl: crate::DEFAULT_SESSION_TTL, max_ttl: Duration::from_secs(12 * 3600) }
    }
}

/// A newly opened session with its secret, which is returned exactly once.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    /// The stored session.
    pub session: Session,
    /// The bearer token. Not stored anywhere; shown to the caller once.
    pub access_token: String,
}

/// A newly created API client with its secret, returned exactly once.
#[derive(Debug, Clone)]
pub struct CreatedClient {
    /// The stored client.
    pub client: ApiClient,
    /// The client secret.
    pub secret: String,
}

/// An active token, as introspection answers it: the session and its
/// identity's claims as of the last bridge step.
#[derive(Debug, Clone)]
pub struct Introspected {
    /// The session.
    pub session: CachedSession,
    /// Groups, tiers and kind of its identity.
    pub claims: Option<Arc<Claims>>,
}

impl Engine {
    /// Finds the identity a subject names: a SCIM id, else a `userName`.
    /// Refuses deleted and non-entitled identities with distinct errors.
    pub fn resolve_subject(&self, subject: &str) -> EngineResult<Identity> {
        let by_id = match subject.parse::<IdentityId>() {
            Ok(id) => self.stores.directory.identity(id)?,
            Err(_) => None,
        };
        let identity = match by_id {
            Some(identity) => identity,
            None => match self.stores.directory.live_identity_by_user_name(subject)? {
                Some(identity) => identity,
                None if self.stores.directory.deleted_user_name_exists(subject)? => {
                    return Err(EngineError::SubjectDeleted(subject.to_owned()));
                }
                None => return Err(EngineError::UnknownSubject(subject.to_owned())),
            },
        };
        match identity.status {
            IdentityStatus::Active => Ok(identity),
            IdentityStatus::Deprovisioned => Err(EngineError::SubjectDeleted(subject.to_owned())),
            status => Err(EngineError::SubjectNotEntitled { subject: subject.to_owned(), status }),
        }
    }

    /// Opens a session for an entitled subject.
    ///
    /// The lifetime is the one asked for (or the default), capped by the
    /// server-wide maximum and the subject's tier (the session shows its
    /// real expiry); beyond the tier's `max_sessions` the oldest live
    /// sessions are revoked in the same transaction. A non-human identity
    /// without an active owner gets none.
    ///
    /// Runs under the writer lock, so it cannot interleave with a
    /// deactivation: either the session exists before the deactivation is
    /// bridged (and is revoked by it) or the deactivation is seen here.
    pub fn open_session(
        &self,
        subject: &str,
        ttl: Option<Duration>,
        principal: &Principal,
    ) -> EngineResult<IssuedSession> {
        let limits = self.config.limits;
        let asked = ttl.unwrap_or(limits.default_ttl);
        if asked.is_zero() {
            return Err(EngineError::Invalid { field: "ttl", message: "must be more than 0s".into() });
        }
        let mut writer = self.lock_writer()?;
        self.catch_up(&mut writer).map_err(EngineError::BridgePending)?;
        let identity = self.resolve_subject(subject)?;
        if identity.kind.is_non_human() && self.active_owner(&identity.owners, None)?.is_none() {
            return Err(EngineError::NoActiveOwner(subject.to_owned()));
        }
        let groups = self.stores.directory.groups_of(identity.id)?;
        let tiers = self.tiers_with(&identity, &groups);
        let policy = &self.config.policy;
        let mut ttl = asked.min(limits.max_ttl);
        if let Some((cap, _)) = policy.session_cap(tiers) {
            ttl = ttl.min(cap);
        }
        let access_token = secrets::mint(secrets::ACCESS_TOKEN_PREFIX, self.entropy.as_ref())?;
        let now = self.clock.now();
        let session = Session {
            id: self.new_session_id()?,
            identity: identity.id,
            kind: CredentialKind::AccessToken,
            token_hash: secrets::hash(&access_token),
            client: principal.client_id(),
            user_name: identity.user_name.clone(),
            claims_version: identity.version,
            issued_at: now,
            expires_at: now.plus(ttl),
            last_seen: now,
            state: SessionState::Active,
        };
        let mut batch = SessionBatch {
            inserts: vec![session.clone()],
            audit: vec![AuditEntry {
                at: now,
                kind: AuditKind::SessionCreated,
                identity: Some(identity.id),
                user_name: Some(identity.user_name.clone()),
                session: Some(session.id),
                directory_event: None,
                actor: principal.actor(),
                detail: if ttl < asked {
                    format!("ttl={}s (asked {}s; capped for tier {tiers})", ttl.as_secs(), asked.as_secs())
                } else {
                    format!("ttl={}s; tier={tiers}", ttl.as_secs())
                },
            }],
            ..SessionBatch::default()
        };
        // Beyond the tier's limit, the oldest live sessions go.
        let mut dropped = Vec::new();
        if let Some((max, tier)) = policy.effective(tiers).max_sessions {
            let live: Vec<Session> = self
                .stores
                .sessions
                .sessions_of(identity.id)?
                .into_iter()
                .filter(|s| s.is_live(now))
                .collect();
            let excess = (live.len() + 1).saturating_sub(usize::try_from(max).unwrap_or(usize::MAX));
            for old in live.into_iter().take(excess) {
                let reason = RevocationReason::SessionLimit;
                batch.updates.push(SessionUpdate {
                    session: old.id,
                    state: SessionState::Revoked { at: now, reason, cause: None },
                    expires_at: None,
                });
                batch.audit.push(AuditEntry {
                    at: now,
                    kind: AuditKind::SessionRevoked,
                    identity: Some(identity.id),
                    user_name: Some(identity.user_name.clone()),
                    session: Some(old.id),
                    directory_event: None,
                    actor: Actor::policy(format!("{tier}.max_sessions")),
                    detail: format!("reason={reason}; more than {max} live session(s); the oldest goes"),
                });
                dropped.push(old.token_hash);
            }
        }
        for hash in &dropped {
            self.forget(hash);
        }
        self.stores.sessions.apply(batch)?;
        self.hold_claims(&identity, tiers, &groups);
        drop(writer);
        self.cache.insert(&session);
        self.metrics.sessions_opened.inc();
        self.metrics.live_sessions.inc();
        for _ in &dropped {
            self.metrics.revocations.get_or_create(&ReasonLabel { reason: "session_limit".into() }).inc();
        }
        Ok(IssuedSession { session, access_token })
    }

    /// Starts following an identity's claims (it now holds a session).
    pub(crate) fn hold_claims(&self, identity: &Identity, tiers: Tiers, groups: &[(GroupId, String)]) {
        if !self.claims.contains(&identity.id) {
            let groups = groups.iter().map(|(g, n)| (*g, n.as_str().into())).collect();
            self.claims.set(identity.id, Claims { kind: identity.kind, tiers, groups });
        }
    }

    /// Every session of the identity a subject names (deleted and disabled
    /// identities included, so an operator can see what was cut).
    pub fn list_sessions(&self, subject: &str) -> EngineResult<Vec<Session>> {
        let id = match subject.parse::<IdentityId>() {
            Ok(id) => Some(id),
            Err(_) => self.stores.directory.live_identity_by_user_name(subject)?.map(|i| i.id),
        };
        match id {
            Some(id) => Ok(self.stores.sessions.sessions_of(id)?),
            None => Err(EngineError::UnknownSubject(subject.to_owned())),
        }
    }

    /// Revokes one session by id. Returns `false` if it was already revoked.
    pub fn revoke_session(&self, id: SessionId, principal: &Principal) -> EngineResult<bool> {
        let reason = RevocationReason::AdminRevoked;
        let session = self
            .stores
            .sessions
            .session(id)?
            .ok_or_else(|| EngineError::NotFound(format!("session {id}")))?;
        self.revoke(session, reason, principal)
    }

    /// RFC 7009 revocation by token value. Unknown tokens are not an error.
    ///
    /// RFC 7009 §2.1 binds revocation to the client the token was issued
    /// to: a client may revoke only tokens it obtained, so a resource
    /// server's introspection credential cannot log users out. The admin
    /// may revoke any token.
    pub fn revoke_token(&self, token: &str, principal: &Principal) -> EngineResult<()> {
        let hash = secrets::hash(token);
        if let Some(session) = self.stores.sessions.session_by_token(&hash)? {
            if let Some(caller) = principal.client_id()
                && session.client != Some(caller)
            {
                return Err(EngineError::NotIssuedToCaller);
            }
            self.revoke(session, RevocationReason::ClientRevoked, principal)?;
        }
        Ok(())
    }

    fn revoke(
        &self,
        session: Session,
        reason: RevocationReason,
        principal: &Principal,
    ) -> EngineResult<bool> {
        if session.state.is_revoked() {
            return Ok(false);
        }
        let _writer = self.lock_writer()?;
        // Every session change happens under the writer lock, so the state
        // read here is the state this revocation applies to: of several
        // callers revoking one session at once (or a caller and the
        // bridge), exactly one finds it live and records the revocation.
        let Some(session) = self.stores.sessions.session(session.id)? else {
            return Err(EngineError::NotFound(format!("session {}", session.id)));
        };
        if session.state.is_revoked() {
            return Ok(false);
        }
        let now = self.clock.now();
        self.forget(&session.token_hash);
        let sealed = self.stores.sessions.apply(SessionBatch {
            updates: vec![SessionUpdate {
                session: session.id,
                state: SessionState::Revoked { at: now, reason, cause: None },
                expires_at: None,
            }],
            audit: vec![AuditEntry {
                at: now,
                kind: AuditKind::SessionRevoked,
                identity: Some(session.identity),
                user_name: Some(session.user_name.clone()),
                session: Some(session.id),
                directory_event: None,
                actor: principal.actor(),
                detail: format!("reason={reason}"),
            }],
            ..SessionBatch::default()
        })?;
        self.metrics.revocations.get_or_create(&ReasonLabel { reason: reason.as_str().to_owned() }).inc();
        Ok(!sealed.is_empty())
    }

    /// RFC 7662 introspection. Answers from memory only: the session, its
    /// expiry, suspension and idle timeout, and its identity's claims as of
    /// the last bridge step. A use that answers active records the last use.
    pub fn introspect(&self, token: &str) -> Option<Introspected> {
        let answer = self.introspect_inner(token);
        match answer {
            Some(_) => self.metrics.introspected_active.inc(),
            None => self.metrics.introspected_inactive.inc(),
        };
        answer
    }

    fn introspect_inner(&self, token: &str) -> Option<Introspected> {
        let hash = secrets::hash(token);
        let now = self.clock.now();
        let mut claims = None;
        let session = self.cache.use_session(&hash, now, |s| {
            if now >= s.expires_at || s.suspended {
                return false;
            }
            claims = self.claims.get(&s.identity);
            let idle = claims.as_ref().and_then(|c| self.config.policy.idle_timeout(c.tiers));
            idle.is_none_or(|idle| now.since(s.last_seen) <= idle)
        })?;
        Some(Introspected { session, claims })
    }

    /// Creates an API client. The secret is returned once and stored only
    /// as a hash.
    pub fn create_client(
        &self,
        name: &str,
        scopes: &[Scope],
        principal: &Principal,
    ) -> EngineResult<CreatedClient> {
        let name = name.trim();
        if name.is_empty() {
            return Err(EngineError::Invalid { field: "name", message: "must not be empty".into() });
        }
        lockstep_domain::text::check_identifier(name, 200)
            .map_err(|problem| EngineError::Invalid { field: "name", message: problem.to_string() })?;
        if scopes.is_empty() {
            return Err(EngineError::Invalid {
                field: "scopes",
                message: "at least one scope is required".into(),
            });
        }
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        let secret = secrets::mint(secrets::CLIENT_SECRET_PREFIX, self.entropy.as_ref())?;
        let now = self.clock.now();
        let client = ApiClient {
            id: self.new_client_id()?,
            name: name.to_owned(),
            secret_hash: secrets::hash(&secret),
            scopes,
            created: now,
        };
        let scope_names: Vec<&str> = client.scopes.iter().map(|s| s.as_str()).collect();
        self.stores.credentials.insert_client(
            &client,
            AuditEntry {
                at: now,
                kind: AuditKind::ClientCreated,
                identity: None,
                user_name: None,
                session: None,
                directory_event: None,
                actor: principal.actor(),
                detail: format!("client={} name={} scopes={}", client.id, client.name, scope_names.join(",")),
            },
        )?;
        self.remember_client(client.clone());
        Ok(CreatedClient { client, secret })
    }

    /// A page of the audit trail, oldest first.
    pub fn audit_page(&self, after: u64, limit: usize) -> EngineResult<Vec<AuditRecord>> {
        Ok(self.stores.sessions.audit_after(after, limit)?)
    }
}
