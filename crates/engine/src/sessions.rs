//! Introspecting and listing sessions; API clients. (Issuing and revoking
//! is the authority's, in `authority/`.)

use std::time::Duration;

use std::sync::Arc;

use lockstep_domain::{
    ApiClient, AuditEntry, AuditKind, AuditRecord, GroupId, Identity, IdentityId, IdentityStatus, Scope,
    Session, Tiers,
};

use crate::cache::{CachedSession, Claims};
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

    /// Starts following an identity's claims (it now holds a session).
    pub(crate) fn hold_claims(&self, identity: &Identity, tiers: Tiers, groups: &[(GroupId, String)]) {
        if !self.claims.contains(&identity.id) {
            let groups = groups.iter().map(|(g, n)| (*g, n.as_str().into())).collect();
            let user_name = identity.user_name.as_str().into();
            self.claims.set(identity.id, Claims { user_name, kind: identity.kind, tiers, groups });
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
            Some(id) => {
                self.await_acknowledged_writes();
                Ok(self.stores.sessions.sessions_of(id)?)
            }
            None => Err(EngineError::UnknownSubject(subject.to_owned())),
        }
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
        let session = self.cache.use_token(
            &hash,
            now,
            || self.stored_bearer(&hash),
            |s| {
                if now >= s.expires_at || s.suspended {
                    return false;
                }
                claims = self.claims.get(&s.identity);
                // Credentials have a mandatory expiry and no idle timeout.
                if s.kind.is_credential() {
                    return true;
                }
                let idle = claims.as_ref().and_then(|c| self.config.policy.idle_timeout(c.tiers));
                idle.is_none_or(|idle| now.since(s.last_seen) <= idle)
            },
        )?;
        Some(Introspected { session, claims })
    }

    /// A bearer secret read from the store, while the start-up load has
    /// not put every one in memory yet. Only what the load would have put
    /// there: access tokens and API keys. A failed read answers `None`
    /// (inactive: closed, not open).
    pub(crate) fn stored_bearer(
        &self,
        hash: &lockstep_domain::TokenHash,
    ) -> Option<crate::cache::TokenEntry> {
        use lockstep_domain::TokenKind;
        let token = match self.stores.sessions.token(hash) {
            Ok(token) => token?,
            Err(e) => {
                tracing::warn!(error = %e, "a bearer secret could not be read from the store");
                return None;
            }
        };
        matches!(token.kind, TokenKind::Access | TokenKind::ApiKey)
            .then(|| crate::cache::TokenEntry::of(&token))
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
        let secret = secrets::mint(secrets::CLIENT_SECRET_PREFIX, self.clock.now(), self.entropy.as_ref())?;
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
        self.await_acknowledged_writes();
        Ok(self.stores.sessions.audit_after(after, limit)?)
    }
}
