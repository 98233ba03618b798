//! Issuing tokens: opening a session, refresh rotation with reuse
//! detection, and `client_credentials`.

use lockstep_domain::{
    Actor, AuditKind, CredentialKind, IdentityStatus, RevocationReason, Session, SessionState, Tiers,
    Timestamp, Token, TokenFormat, TokenHash, TokenKind,
};
use lockstep_store::TokenUpdate;

use super::{AccessClaims, Batch, Done, IssuedTokens, Key, Mode, OpenRequest, Plan, Prepared, SubjectRead};
use crate::{EngineError, EngineResult, Principal, secrets};

/// Prefix of refresh tokens.
pub(crate) const REFRESH_TOKEN_PREFIX: &str = "lst_rt_";

fn invalid_grant(message: impl Into<String>) -> EngineError {
    EngineError::InvalidGrant(message.into())
}

impl Batch<'_> {
    pub(super) fn open(
        &mut self,
        request: &OpenRequest,
        principal: &Principal,
        read: &SubjectRead,
    ) -> EngineResult<Prepared> {
        let engine = self.engine;
        let now = self.now;
        let limits = engine.config.limits;
        let asked = request.ttl.unwrap_or(limits.default_ttl);
        // What was read before the batch holds if no bridge step started
        // since; else the directory may have changed: read it again.
        let (identity, groups) = if read.generation == engine.directory_generation() {
            (read.identity.clone(), read.groups.clone())
        } else {
            let identity = engine.resolve_subject(&request.subject)?;
            let groups = engine.stores.directory.groups_of(identity.id)?;
            (identity, groups)
        };
        let policy = &engine.config.policy;
        let tiers = engine.tiers_with(&identity, &groups);
        let max_sessions = policy.effective(tiers).max_sessions;
        // With a session limit, opening decides on the identity's whole set
        // of sessions; without one it only adds beside the others.
        let mode = if max_sessions.is_some() { Mode::Exclusive } else { Mode::Shared };
        if !self.footprint.claim(&[(Key::Identity(identity.id), mode)]) {
            return Ok(Prepared::Defer);
        }
        if identity.kind.is_non_human() && engine.active_owner(&identity.owners, None)?.is_none() {
            return Err(EngineError::NoActiveOwner(request.subject.clone()));
        }
        // Privileged access fails closed while the identity's source is
        // staler than its bound: no new session until it is fresh.
        if tiers.privileged && engine.sources().fails_closed(&identity.source) {
            return Err(EngineError::SourceStale {
                subject: request.subject.clone(),
                stale_source: identity.source.to_string(),
            });
        }
        let format = request.format.unwrap_or(engine.config.tokens.access_token_format);
        let mut ttl = asked.min(limits.max_ttl);
        if let Some((cap, _)) = policy.session_cap(tiers) {
            ttl = ttl.min(cap);
        }
        let session = self.new_session(&identity, CredentialKind::Session, format, principal, ttl)?;
        // Without a refresh token an opaque access token is the session;
        // with one, or as a JWT, it is short and renewed by refreshing.
        let short = request.refresh || format == TokenFormat::Jwt;
        let access_until = if short {
            now.plus(engine.config.tokens.access_token_ttl).min(session.expires_at)
        } else {
            session.expires_at
        };
        let group_names: Vec<String> = groups.iter().map(|(_, n)| n.clone()).collect();
        let (access_token, access) = self.mint_access(&session, access_until, &group_names, tiers)?;
        let access_until = access.expires_at;
        let mut plan = Plan::default();
        let mut refresh_token = None;
        plan.writes.tokens.push(access);
        if request.refresh {
            let (secret, token) =
                self.mint(REFRESH_TOKEN_PREFIX, session.id, TokenKind::Refresh, session.expires_at)?;
            plan.writes.tokens.push(token);
            refresh_token = Some(secret);
        }
        let mut detail = if ttl < asked {
            format!("ttl={}s (asked {}s; capped for tier {tiers})", ttl.as_secs(), asked.as_secs())
        } else {
            format!("ttl={}s; tier={tiers}", ttl.as_secs())
        };
        detail.push_str(&format!("; format={format}; refresh={}", request.refresh));
        plan.record(now, AuditKind::SessionCreated, &session, principal.actor(), detail);
        // Beyond the tier's limit, the oldest live sessions go.
        if let Some((max, tier)) = max_sessions {
            let live: Vec<Session> = engine
                .stores
                .sessions
                .live_sessions_of(&[identity.id], now)?
                .into_iter()
                .filter(|s| s.kind == CredentialKind::Session)
                .collect();
            let excess = (live.len() + 1).saturating_sub(usize::try_from(max).unwrap_or(usize::MAX));
            for old in live.into_iter().take(excess) {
                let reason = RevocationReason::SessionLimit;
                let actor = Actor::policy(format!("{tier}.max_sessions"));
                let detail = format!("reason={reason}; more than {max} live session(s); the oldest goes");
                plan.revoke(now, &old, reason, actor, detail);
            }
        }
        plan.writes.inserts.push(session.clone());
        plan.remember.push(session.clone());
        plan.tokens.push(access);
        plan.claims = Some((identity, tiers, groups));
        plan.opened = 1;
        let issued = IssuedTokens { session, access_token, access_expires_at: access_until, refresh_token };
        Ok(Prepared::Commit(Box::new(plan), Ok(Done::Tokens(Box::new(issued)))))
    }

    pub(super) fn refresh(&mut self, hash: &TokenHash, principal: &Principal) -> EngineResult<Prepared> {
        let engine = self.engine;
        let now = self.now;
        let Some((mut session, token)) = engine.stores.sessions.session_by_token(hash)? else {
            return Err(invalid_grant("the refresh token is not known"));
        };
        if token.kind != TokenKind::Refresh {
            return Err(invalid_grant("the token presented is not a refresh token"));
        }
        let keys =
            [(Key::Identity(session.identity), Mode::Shared), (Key::Session(session.id), Mode::Exclusive)];
        if !self.footprint.claim(&keys) {
            return Ok(Prepared::Defer);
        }
        if let Some(caller) = principal.client_id()
            && session.issued_to != Some(caller)
        {
            return Err(invalid_grant("the refresh token was issued to another client"));
        }
        if let SessionState::Revoked { reason, .. } = session.state {
            return Err(invalid_grant(format!("the session was revoked ({reason})")));
        }
        if token.retired_at.is_some() {
            return Ok(self.reuse_detected(&session, principal));
        }
        if !session.is_live(now) || !token.works(now) {
            return Err(invalid_grant("the refresh token has expired"));
        }
        if let SessionState::Suspended { condition, .. } = session.state {
            return Err(invalid_grant(format!("the session is suspended ({condition})")));
        }
        let identity = engine.stores.directory.identity(session.identity)?;
        let identity = match identity {
            Some(i) if i.status == IdentityStatus::Active => i,
            Some(i) => return Err(invalid_grant(format!("the subject is {}", i.status))),
            None => return Err(invalid_grant("the subject no longer exists")),
        };
        let (tiers, groups) = self.claims_of(&identity)?;
        let policy = &engine.config.policy;
        let last_use = engine
            .cache
            .session(&session.id)
            .map_or(session.last_seen, |c| c.last_seen.max(session.last_seen));
        if let Some(idle) = policy.idle_timeout(tiers)
            && now.since(last_use) > idle
        {
            return Err(invalid_grant(format!(
                "the session was idle longer than its tier allows ({})",
                humantime::format_duration(idle)
            )));
        }
        if let Some((cap, rule)) = policy.session_cap(tiers)
            && session.issued_at.plus(cap) <= now
        {
            return Err(invalid_grant(format!("the session is older than its tier allows ({rule})")));
        }
        let access_until = now.plus(engine.config.tokens.access_token_ttl).min(session.expires_at);
        let (access_token, access) = self.mint_access(&session, access_until, &groups, tiers)?;
        let access_until = access.expires_at;
        let (refresh_token, refresh) =
            self.mint(REFRESH_TOKEN_PREFIX, session.id, TokenKind::Refresh, session.expires_at)?;
        let mut plan = Plan::default();
        plan.writes.token_updates.push(TokenUpdate {
            hash: token.hash,
            retired_at: Some(now),
            expires_at: None,
        });
        plan.writes.tokens.extend([access, refresh]);
        plan.writes.last_seen.push((session.id, now));
        let detail = format!(
            "access token until {}; the refresh token presented is retired",
            access_until.unix_seconds()
        );
        plan.record(now, AuditKind::SessionRefreshed, &session, principal.actor(), detail);
        session.last_seen = now;
        plan.remember.push(session.clone());
        plan.tokens.push(access);
        let issued = IssuedTokens {
            session,
            access_token,
            access_expires_at: access_until,
            refresh_token: Some(refresh_token),
        };
        Ok(Prepared::Commit(Box::new(plan), Ok(Done::Tokens(Box::new(issued)))))
    }

    /// A retired refresh token came back: whoever holds the session's
    /// tokens may be an attacker, so all of them die now (RFC 9700 §4.14).
    fn reuse_detected(&self, session: &Session, principal: &Principal) -> Prepared {
        let now = self.now;
        let reason = RevocationReason::RefreshReuse;
        let mut plan = Plan::default();
        let detail = "a retired refresh token was presented again; every token of the session is revoked";
        plan.record(now, AuditKind::SessionRefreshReuseDetected, session, principal.actor(), detail.into());
        plan.revoke(now, session, reason, principal.actor(), format!("reason={reason}"));
        let refusal =
            invalid_grant("refresh token reuse detected: the session and every token of it are revoked");
        Prepared::Commit(Box::new(plan), Err(refusal))
    }

    pub(super) fn client_credentials(
        &mut self,
        client: lockstep_domain::SessionId,
        hash: &TokenHash,
    ) -> EngineResult<Prepared> {
        let engine = self.engine;
        let now = self.now;
        let unknown = || EngineError::InvalidClient("unknown client_id or wrong client_secret".into());
        let Some(token) = engine.stores.sessions.token(hash)? else { return Err(unknown()) };
        if token.kind != TokenKind::ClientSecret || token.session != client {
            return Err(unknown());
        }
        let Some(mut session) = engine.stores.sessions.session(client)? else { return Err(unknown()) };
        let keys =
            [(Key::Identity(session.identity), Mode::Shared), (Key::Session(session.id), Mode::Shared)];
        if !self.footprint.claim(&keys) {
            return Ok(Prepared::Defer);
        }
        if let SessionState::Revoked { reason, .. } = session.state {
            return Err(EngineError::InvalidClient(format!("the client credential was revoked ({reason})")));
        }
        if !session.is_live(now) || !token.works(now) {
            return Err(EngineError::InvalidClient("the client secret has expired".into()));
        }
        if let SessionState::Suspended { condition, .. } = session.state {
            return Err(invalid_grant(format!("the client credential is suspended ({condition})")));
        }
        let identity = match engine.stores.directory.identity(session.identity)? {
            Some(i) if i.status == IdentityStatus::Active => i,
            Some(i) => return Err(invalid_grant(format!("the credential's identity is {}", i.status))),
            None => return Err(invalid_grant("the credential's identity no longer exists")),
        };
        let (tiers, groups) = self.claims_of(&identity)?;
        let access_until = now.plus(engine.config.tokens.access_token_ttl).min(session.expires_at);
        let (access_token, access) = self.mint_access(&session, access_until, &groups, tiers)?;
        let access_until = access.expires_at;
        let mut plan = Plan::default();
        plan.writes.tokens.push(access);
        plan.writes.last_seen.push((session.id, now));
        session.last_seen = now;
        plan.remember.push(session.clone());
        plan.tokens.push(access);
        let issued =
            IssuedTokens { session, access_token, access_expires_at: access_until, refresh_token: None };
        Ok(Prepared::Commit(Box::new(plan), Ok(Done::Tokens(Box::new(issued)))))
    }

    /// An identity's tiers and group names: from memory when its claims are
    /// held (the bridge keeps them current), else from the directory.
    fn claims_of(&self, identity: &lockstep_domain::Identity) -> EngineResult<(Tiers, Vec<String>)> {
        let engine = self.engine;
        if let Some(claims) = engine.claims.get(&identity.id) {
            return Ok((claims.tiers, claims.groups.iter().map(|(_, n)| n.to_string()).collect()));
        }
        let groups = engine.stores.directory.groups_of(identity.id)?;
        let tiers = engine.tiers_with(identity, &groups);
        Ok((tiers, groups.into_iter().map(|(_, n)| n).collect()))
    }

    /// An access token of `session` valid until `until`: opaque, or a JWT
    /// signed with the current key and carrying the identity's groups and
    /// tier as of now. Either way only its hash is stored.
    fn mint_access(
        &self,
        session: &Session,
        until: Timestamp,
        groups: &[String],
        tiers: Tiers,
    ) -> EngineResult<(String, Token)> {
        match session.format {
            TokenFormat::Opaque => {
                self.mint(secrets::ACCESS_TOKEN_PREFIX, session.id, TokenKind::Access, until)
            }
            TokenFormat::Jwt => {
                let engine = self.engine;
                let signer = engine.signer.as_ref().ok_or_else(|| {
                    EngineError::Signing(super::SignError(
                        "no signing key is configured for JWT access tokens".into(),
                    ))
                })?;
                let settings = &engine.config.tokens;
                let jti = secrets::uuid_v7(self.now, engine.entropy.as_ref())?;
                let client_id = match session.kind {
                    CredentialKind::Session => {
                        session.issued_to.map_or_else(|| "admin".to_owned(), |c| c.to_string())
                    }
                    _ => session.id.to_string(),
                };
                let claims = AccessClaims {
                    iss: settings.issuer.clone(),
                    sub: session.identity.to_string(),
                    aud: settings.audience.clone(),
                    client_id,
                    sid: session.id.to_string(),
                    jti: jti.to_string(),
                    iat: self.now.unix_seconds(),
                    exp: until.unix_seconds(),
                    username: session.user_name.clone(),
                    groups: groups.to_vec(),
                    tier: tiers.to_string(),
                    status_idx: engine.status_index().of(session.id),
                };
                let jwt = signer.sign_access_token(&claims)?;
                // The token expires when its `exp` says, to the second.
                let until = Timestamp::from_unix_seconds(claims.exp);
                let token = Token {
                    hash: secrets::hash(&jwt),
                    session: session.id,
                    kind: TokenKind::Access,
                    issued_at: self.now,
                    expires_at: until,
                    retired_at: None,
                };
                Ok((jwt, token))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use lockstep_domain::IdentityStatus;

    use super::super::{Authority, Op, OpenRequest, SubjectRead};
    use crate::testing::{engine, origin, person};
    use crate::{EngineError, Principal};

    fn open_request(subject: &str) -> OpenRequest {
        OpenRequest { subject: subject.into(), ttl: None, refresh: false, format: None }
    }

    /// An open reads its subject before its batch. A deactivation committed
    /// after that read, whose bridge step has run, must still refuse it:
    /// the batch sees that a bridge step started and reads again.
    #[test]
    fn an_open_read_before_a_deactivation_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        let alice = person(&engine, "alice");
        let id = alice.id;
        engine.create_identity(alice, origin()).unwrap();
        let stale = SubjectRead::take(&engine, "alice").unwrap();
        assert_eq!(stale.identity.status, IdentityStatus::Active);
        engine
            .update_identity(id, origin(), None, |current| {
                let mut next = current.clone();
                next.status = IdentityStatus::Suspended;
                Ok::<_, std::convert::Infallible>(next)
            })
            .unwrap();
        assert_ne!(stale.generation, engine.directory_generation(), "the bridge step was counted");
        let op =
            Op::Open { request: open_request("alice"), principal: Principal::admin(), read: Box::new(stale) };
        let refused = Authority::new(&engine).submit(op).unwrap_err();
        assert!(matches!(refused, EngineError::SubjectNotEntitled { .. }), "{refused:?}");
        assert_eq!(engine.stores.sessions.live_sessions_of(&[id], engine.clock.now()).unwrap(), Vec::new());
    }

    /// A read still current (no bridge step since) is used as it is, not
    /// taken again: the session carries what the read said, marked here so
    /// that a second read would show.
    #[test]
    fn an_open_read_still_current_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        let bob = person(&engine, "bob");
        engine.create_identity(bob, origin()).unwrap();
        let mut read = SubjectRead::take(&engine, "bob").unwrap();
        assert_eq!(read.generation, engine.directory_generation());
        read.identity.user_name = "bob-as-read".into();
        let op =
            Op::Open { request: open_request("bob"), principal: Principal::admin(), read: Box::new(read) };
        let Ok(super::super::Done::Tokens(issued)) = Authority::new(&engine).submit(op) else {
            panic!("the open failed")
        };
        assert_eq!(issued.session.user_name, "bob-as-read");
    }
}
