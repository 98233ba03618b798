//! Revocation: one session or credential, or everything of a subject.

use lockstep_domain::{AuditEntry, AuditKind, IdentityId, RevocationReason};
use lockstep_store::{Filter, IdentityField, IdentityQuery};

use super::{Authority, Batch, Done, Key, Mode, Op, Plan, Prepared, Target, Whose};

/// The session a revocation names, as far as revoking it needs.
struct Found {
    whose: Whose,
    issued_to: Option<lockstep_domain::ClientId>,
    revoked: bool,
}
use crate::{EngineError, EngineResult, Principal};

/// Who a global token revocation names (RFC 9493 subject identifiers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectId {
    /// `opaque`: the identity's SCIM id.
    Opaque(String),
    /// `email`: every identity with this address.
    Email(String),
    /// `iss_sub`: the identity whose `externalId` is `sub` (the issuer is
    /// recorded, not matched: Lockstep does not know which IdP assigned
    /// which `externalId`).
    IssSub {
        /// The issuer.
        iss: String,
        /// The subject at that issuer.
        sub: String,
    },
}

/// The most identities one global revocation may name (an email shared by
/// more is refused as too broad rather than cut short).
const MAX_SUBJECTS: usize = 100;

impl Authority<'_> {
    /// `POST /oauth2/global-token-revocation`: revokes every session and
    /// credential of each identity the subject identifier names. Returns
    /// the number of identities and of sessions revoked. An identifier that
    /// names no one is not an error (the draft answers 204 either way).
    pub fn global_revocation(
        &self,
        subject: &SubjectId,
        principal: &Principal,
    ) -> EngineResult<(usize, usize)> {
        let (how, identities) = self.engine.identities_named(subject)?;
        let mut revoked = 0;
        for identity in &identities {
            let why = format!("global token revocation by {how}");
            let op = Op::RevokeAll { identity: *identity, principal: principal.clone(), why };
            match self.submit(op)? {
                Done::RevokedAll(n) => revoked += n,
                other => return Err(super::unexpected(&other)),
            }
        }
        Ok((identities.len(), revoked))
    }
}

impl crate::Engine {
    /// The identities an RFC 9493 subject identifier names (at most 100;
    /// more is an error rather than a silent cut), and how it named them.
    pub fn identities_named(&self, subject: &SubjectId) -> EngineResult<(String, Vec<IdentityId>)> {
        let directory = &self.stores.directory;
        let mut identities: Vec<IdentityId> = Vec::new();
        let query = |field, value: &str| IdentityQuery {
            filter: Filter::eq(field, value),
            offset: 0,
            limit: MAX_SUBJECTS + 1,
        };
        let (how, page) = match subject {
            SubjectId::Opaque(id) => {
                if let Ok(id) = id.parse::<IdentityId>()
                    && directory.identity(id)?.is_some()
                {
                    identities.push(id);
                }
                ("opaque".to_owned(), None)
            }
            SubjectId::Email(email) => {
                ("email".to_owned(), Some(directory.list_identities(&query(IdentityField::Email, email))?))
            }
            SubjectId::IssSub { iss, sub } => (
                format!("iss_sub (iss {iss})"),
                Some(directory.list_identities(&query(IdentityField::ExternalId, sub))?),
            ),
        };
        if let Some(page) = page {
            if page.items.len() > MAX_SUBJECTS {
                return Err(EngineError::Invalid {
                    field: "sub_id",
                    message: format!("names more than {MAX_SUBJECTS} identities; revoke them one by one"),
                });
            }
            identities.extend(page.items.iter().map(|i| i.id));
        }
        Ok((how, identities))
    }
}

impl Batch<'_> {
    pub(super) fn revoke(
        &mut self,
        target: &Target,
        reason: RevocationReason,
        principal: &Principal,
    ) -> EngineResult<Prepared> {
        let Some(found) = self.find(target)? else {
            return Ok(Prepared::Commit(Box::default(), Ok(Done::Revoked(false))));
        };
        let keys = [
            (Key::Identity(found.whose.identity), Mode::Shared),
            (Key::Session(found.whose.session), Mode::Exclusive),
        ];
        if !self.footprint.claim(&keys) {
            return Ok(Prepared::Defer);
        }
        if let Target::Token(_) = target
            && let Some(caller) = principal.client_id()
            && found.issued_to != Some(caller)
        {
            return Err(EngineError::NotIssuedToCaller);
        }
        // Requests on one session are ordered by the footprint and read
        // committed state, so of several revoking it at once (or one and the
        // bridge, under the same lock) exactly one finds it live and records
        // the revocation.
        if found.revoked {
            return Ok(Prepared::Commit(Box::default(), Ok(Done::Revoked(false))));
        }
        let mut plan = Plan::default();
        self.revoke_into(&mut plan, found.whose, reason, principal, None);
        Ok(Prepared::Commit(Box::new(plan), Ok(Done::Revoked(true))))
    }

    /// The session a revocation names: from memory when it is live there
    /// (a session in the introspection map is not revoked — revocations
    /// leave it before they commit, under the same lock), else from the
    /// store. `None`: an unknown token.
    fn find(&self, target: &Target) -> EngineResult<Option<Found>> {
        let engine = self.engine;
        let cached = match target {
            Target::Session { id, .. } => engine.cache.session(id).map(|h| (*id, h)),
            // A secret not loaded yet is found in the store below.
            Target::Token(hash) => engine.cache.get(hash, || None).map(|c| {
                let held = crate::cache::HeldSession {
                    identity: c.identity,
                    kind: c.kind,
                    issued_to: c.issued_to,
                    last_seen: c.last_seen,
                };
                (c.id, held)
            }),
        };
        let credential_of = |identity, kind: lockstep_domain::CredentialKind| match target {
            Target::Session { owner: Some(owner), .. } => identity == *owner && kind.is_credential(),
            _ => true,
        };
        let not_found = |id: &lockstep_domain::SessionId| {
            let what = if matches!(target, Target::Session { owner: Some(_), .. }) {
                "credential"
            } else {
                "session"
            };
            EngineError::NotFound(format!("{what} {id}"))
        };
        if let Some((id, c)) = cached
            && let Some(claims) = engine.claims.get(&c.identity)
        {
            if !credential_of(c.identity, c.kind) {
                return Err(not_found(&id));
            }
            let whose = Whose {
                session: id,
                identity: c.identity,
                user_name: claims.user_name.to_string(),
                kind: c.kind,
            };
            return Ok(Some(Found { whose, issued_to: c.issued_to, revoked: false }));
        }
        let session = match target {
            Target::Session { id, .. } => {
                let found =
                    engine.stores.sessions.session(*id)?.filter(|s| credential_of(s.identity, s.kind));
                found.ok_or_else(|| not_found(id))?
            }
            Target::Token(hash) => match engine.stores.sessions.session_by_token(hash)? {
                Some((session, _)) => session,
                None => return Ok(None),
            },
        };
        let revoked = session.state.is_revoked();
        Ok(Some(Found { issued_to: session.issued_to, revoked, whose: Whose::from(&session) }))
    }

    pub(super) fn revoke_all(
        &mut self,
        identity: IdentityId,
        principal: &Principal,
        why: &str,
    ) -> EngineResult<Prepared> {
        let engine = self.engine;
        let live = engine.stores.sessions.live_sessions_of(&[identity], self.now)?;
        let mut keys = vec![(Key::Identity(identity), Mode::Exclusive)];
        keys.extend(live.iter().map(|s| (Key::Session(s.id), Mode::Exclusive)));
        if !self.footprint.claim(&keys) {
            return Ok(Prepared::Defer);
        }
        // A deleted identity's tombstone still names it; an unknown id is
        // not found.
        let user_name = match engine.stores.directory.identity(identity)? {
            Some(i) => Some(i.user_name),
            None => return Err(EngineError::NotFound(format!("identity {identity}"))),
        };
        let mut plan = Plan::default();
        let sessions = live.iter().filter(|s| s.kind == lockstep_domain::CredentialKind::Session).count();
        plan.writes.audit.push(AuditEntry {
            at: self.now,
            kind: AuditKind::SubjectRevoked,
            identity: Some(identity),
            user_name,
            session: None,
            directory_event: None,
            actor: principal.actor(),
            detail: format!(
                "{why}: revoke {} session(s) and {} credential(s)",
                sessions,
                live.len() - sessions
            ),
        });
        for session in &live {
            self.revoke_into(&mut plan, session, RevocationReason::SubjectRevoked, principal, Some(why));
        }
        let n = live.len();
        Ok(Prepared::Commit(Box::new(plan), Ok(Done::RevokedAll(n))))
    }

    /// Adds the revocation of one live session to a plan.
    fn revoke_into(
        &self,
        plan: &mut Plan,
        session: impl Into<Whose>,
        reason: RevocationReason,
        principal: &Principal,
        why: Option<&str>,
    ) {
        let mut detail = format!("reason={reason}");
        if let Some(why) = why {
            detail.push_str(&format!("; {why}"));
        }
        plan.revoke(self.now, session, reason, principal.actor(), detail);
    }
}
