//! Credentials of non-human identities: API keys and OAuth client secrets.
//!
//! A credential is a session of kind `api_key` or `client_secret`: it has
//! the identity, state and expiry of a session, so the bridge and the
//! policy reach it exactly as they reach sessions (suspended when the last
//! owner leaves, revoked on deactivation). Every credential expires.

use std::time::Duration;

use lockstep_domain::{
    AuditKind, CredentialKind, IdentityId, IdentityStatus, Session, SessionId, SessionState, Timestamp,
    TokenKind,
};
use lockstep_store::TokenUpdate;

use super::{Authority, Batch, CredentialRequest, Done, IssuedCredential, Key, Mode, Plan, Prepared, Whose};
use crate::{EngineError, EngineResult, Principal, secrets};

/// Prefix of API keys.
pub(crate) const API_KEY_PREFIX: &str = "lst_ak_";

/// A credential as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialInfo {
    /// The credential (a session of a credential kind).
    pub credential: Session,
    /// The last use (an introspection of the API key, a grant with the
    /// client secret), if it was ever used.
    pub last_used_at: Option<Timestamp>,
}

/// A duration as the configuration writes it: `90d`, `36h`, `15m`, `45s`
/// (humantime's own rendering counts in months of 30.44 days: "2months
/// 29days 2h 52m 48s" for 90 days).
fn show(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s == 0 || d.subsec_nanos() != 0 => humantime::format_duration(d).to_string(),
        _ if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3_600) => format!("{}h", s / 3_600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

impl Authority<'_> {
    /// The credentials of an identity, oldest first, with their last use.
    pub fn credentials(&self, identity: IdentityId) -> EngineResult<Vec<CredentialInfo>> {
        let engine = self.engine;
        if engine.stores.directory.identity(identity)?.is_none() {
            return Err(EngineError::NotFound(format!("identity {identity}")));
        }
        let sessions = engine.stores.sessions.sessions_of(identity)?;
        Ok(sessions
            .into_iter()
            .filter(|s| s.kind.is_credential())
            .map(|credential| {
                // Memory holds uses not persisted yet.
                let seen = engine
                    .cache
                    .session(&credential.id)
                    .map_or(credential.last_seen, |c| c.last_seen.max(credential.last_seen));
                let last_used_at = (seen > credential.issued_at).then_some(seen);
                CredentialInfo { credential, last_used_at }
            })
            .collect())
    }
}

impl Batch<'_> {
    pub(super) fn create_credential(
        &mut self,
        id: IdentityId,
        request: CredentialRequest,
        principal: &Principal,
    ) -> EngineResult<Prepared> {
        let engine = self.engine;
        let now = self.now;
        if !self.footprint.claim(&[(Key::Identity(id), Mode::Shared)]) {
            return Ok(Prepared::Defer);
        }
        let identity = match engine.stores.directory.identity(id)? {
            Some(i) if i.status == IdentityStatus::Deprovisioned => {
                return Err(EngineError::SubjectDeleted(id.to_string()));
            }
            Some(i) => i,
            None => return Err(EngineError::NotFound(format!("identity {id}"))),
        };
        if identity.status != IdentityStatus::Active {
            return Err(EngineError::SubjectNotEntitled { subject: id.to_string(), status: identity.status });
        }
        let groups = engine.stores.directory.groups_of(id)?;
        let tiers = engine.tiers_with(&identity, &groups);
        if !tiers.non_human {
            return Err(EngineError::HumanIdentity(identity.user_name));
        }
        if engine.active_owner(&identity.owners, None)?.is_none() {
            return Err(EngineError::NoActiveOwner(identity.user_name));
        }
        let lifetimes = engine.config.policy.credential_lifetimes(tiers);
        let ttl = request.ttl.unwrap_or(lifetimes.default.0);
        if let Some((max, rule)) = &lifetimes.max
            && ttl > *max
        {
            return Err(EngineError::Invalid {
                field: "ttl",
                message: format!("{} is longer than the {rule} of this identity ({})", show(ttl), show(*max)),
            });
        }
        let format = engine.config.tokens.access_token_format;
        let session = self.new_session(&identity, request.kind, format, principal, ttl)?;
        let (prefix, kind) = match request.kind {
            CredentialKind::ApiKey => (API_KEY_PREFIX, TokenKind::ApiKey),
            _ => (secrets::CLIENT_SECRET_PREFIX, TokenKind::ClientSecret),
        };
        let (secret, token) = self.mint(prefix, session.id, kind, session.expires_at)?;
        let mut plan = Plan::default();
        plan.writes.inserts.push(session.clone());
        plan.writes.tokens.push(token);
        let default_note =
            if request.ttl.is_none() { format!(" ({})", lifetimes.default.1) } else { String::new() };
        let detail = format!("kind={}; ttl={}{default_note}; tier={tiers}", request.kind, show(ttl));
        plan.signals.push(Whose::from(&session).signal(now, "create", &principal.actor(), &detail));
        plan.record(now, AuditKind::CredentialCreated, &session, principal.actor(), detail);
        plan.remember.push(session.clone());
        if kind == TokenKind::ApiKey {
            plan.tokens.push(token);
        }
        plan.claims = Some((identity, tiers, groups));
        plan.opened = 1;
        let issued = IssuedCredential { credential: session, secret, previous_until: None };
        Ok(Prepared::Commit(Box::new(plan), Ok(Done::Credential(Box::new(issued)))))
    }

    pub(super) fn rotate(
        &mut self,
        identity: IdentityId,
        id: SessionId,
        grace: Duration,
        principal: &Principal,
    ) -> EngineResult<Prepared> {
        let engine = self.engine;
        let now = self.now;
        let session = engine
            .stores
            .sessions
            .session(id)?
            .filter(|s| s.identity == identity && s.kind.is_credential())
            .ok_or_else(|| EngineError::NotFound(format!("credential {id}")))?;
        let keys = [(Key::Identity(identity), Mode::Shared), (Key::Session(id), Mode::Exclusive)];
        if !self.footprint.claim(&keys) {
            return Ok(Prepared::Defer);
        }
        if let SessionState::Revoked { reason, .. } = session.state {
            return Err(EngineError::Invalid {
                field: "credential_id",
                message: format!("the credential was revoked ({reason}); create a new one"),
            });
        }
        if !session.is_live(now) {
            return Err(EngineError::Invalid {
                field: "credential_id",
                message: "the credential has expired; create a new one".into(),
            });
        }
        let kind = match session.kind {
            CredentialKind::ApiKey => TokenKind::ApiKey,
            _ => TokenKind::ClientSecret,
        };
        let until = now.plus(grace).min(session.expires_at);
        let mut plan = Plan::default();
        for old in engine.stores.sessions.tokens_of(id)? {
            if old.kind == kind && old.retired_at.is_none() {
                let expires_at = (until < old.expires_at).then_some(until);
                plan.writes.token_updates.push(TokenUpdate {
                    hash: old.hash,
                    retired_at: Some(now),
                    expires_at,
                });
                plan.expire.push((old.hash, until));
            }
        }
        let prefix = if kind == TokenKind::ApiKey { API_KEY_PREFIX } else { secrets::CLIENT_SECRET_PREFIX };
        let (secret, token) = self.mint(prefix, id, kind, session.expires_at)?;
        plan.writes.tokens.push(token);
        let detail =
            format!("grace={}; the previous secret works until {}", show(grace), until.unix_seconds());
        plan.signals.push(Whose::from(&session).signal(now, "update", &principal.actor(), &detail));
        plan.record(now, AuditKind::CredentialRotated, &session, principal.actor(), detail);
        if kind == TokenKind::ApiKey {
            plan.tokens.push(token);
        }
        let issued = IssuedCredential { credential: session, secret, previous_until: Some(until) };
        Ok(Prepared::Commit(Box::new(plan), Ok(Done::Credential(Box::new(issued)))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_configured() {
        let cases =
            [(90 * 86_400, "90d"), (400 * 86_400, "400d"), (36 * 3_600, "36h"), (90, "90s"), (900, "15m")];
        for (secs, text) in cases {
            assert_eq!(show(Duration::from_secs(secs)), text);
        }
    }
}
