//! The session and credential authority on the real SQLite stores: refresh
//! rotation and reuse, credentials, revoke-all, retention, and requests
//! racing through one group commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use lockstep_domain::{
    AuditKind, CredentialKind, Identity, IdentityId, IdentityKind, IdentityStatus, RevocationReason,
    SessionState, TokenFormat,
};
use lockstep_engine::authority::SubjectId;
use lockstep_engine::{
    AccessClaims, CredentialRequest, Engine, EngineConfig, EngineError, OpenRequest, OsEntropy, Principal,
    SignError, Signer, TokenSettings,
};
use lockstep_policy::{Policy, PolicyConfig, TierConfig};

use super::{ManualClock, draft, origin, stores};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Signs with a fixed tag instead of a key: what the engine decides to put
/// in a JWT is what these tests look at (the HTTP tests verify real
/// signatures with an independent library).
#[derive(Debug)]
struct Unsigned;

impl Signer for Unsigned {
    fn sign_access_token(&self, c: &AccessClaims) -> Result<String, SignError> {
        Ok(format!("jwt.{}.{}.{}.{}", c.sub, c.sid, c.jti, c.exp))
    }
}

struct Fixture {
    engine: Arc<Engine>,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

fn fixture(policy: Policy) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock(AtomicI64::new(1_700_000_000_000_000)));
    let config = EngineConfig { policy, tokens: TokenSettings::default(), ..EngineConfig::default() };
    let engine = Engine::open(stores(dir.path()), config, clock.clone(), Arc::new(OsEntropy)).unwrap();
    Fixture { engine: Arc::new(engine.with_signer(Arc::new(Unsigned))), clock, _dir: dir }
}

impl Fixture {
    fn advance(&self, by: Duration) {
        self.clock.0.fetch_add(i64::try_from(by.as_micros()).unwrap(), Ordering::SeqCst);
    }

    fn person(&self, name: &str) -> Identity {
        self.engine.create_identity(draft(&self.engine, name), origin()).unwrap().identity
    }

    fn service(&self, name: &str, owner: IdentityId) -> Identity {
        let mut sa = draft(&self.engine, name);
        sa.kind = IdentityKind::ServiceAccount;
        sa.owners = vec![owner];
        self.engine.create_identity(sa, origin()).unwrap().identity
    }

    fn open(
        &self,
        subject: &str,
        refresh: bool,
        format: Option<TokenFormat>,
    ) -> lockstep_engine::IssuedTokens {
        let request = OpenRequest { subject: subject.into(), ttl: Some(HOUR), refresh, format };
        self.engine.authority().open_session(request, &Principal::admin()).wait().unwrap()
    }

    fn credential(
        &self,
        id: IdentityId,
        kind: CredentialKind,
        ttl: Option<Duration>,
    ) -> lockstep_engine::IssuedCredential {
        self.engine
            .authority()
            .create_credential(id, CredentialRequest { kind, ttl }, &Principal::admin())
            .wait()
            .unwrap()
    }

    fn set_status(&self, id: IdentityId, status: IdentityStatus) {
        self.engine
            .update_identity(id, origin(), None, move |cur| {
                let mut next = cur.clone();
                next.status = status;
                Ok::<_, ()>(next)
            })
            .unwrap();
    }

    fn kinds(&self) -> Vec<AuditKind> {
        self.engine.audit_page(0, 10_000).unwrap().into_iter().map(|r| r.entry.kind).collect()
    }

    fn active(&self, token: &str) -> bool {
        self.engine.introspect(token).is_some()
    }
}

fn grant_refused(e: EngineError) -> String {
    match e {
        EngineError::InvalidGrant(m) => m,
        other => panic!("expected invalid_grant, got {other:?}"),
    }
}

#[test]
fn refresh_rotates_and_a_reused_refresh_token_revokes_the_whole_session() {
    let f = fixture(Policy::default());
    f.person("ada");
    let first = f.open("ada", true, None);
    let rt1 = first.refresh_token.clone().unwrap();
    assert!(rt1.starts_with("lst_rt_"));
    // With a refresh token the access token is short; the session is not.
    assert_eq!(first.access_expires_at, first.session.issued_at.plus(Duration::from_secs(300)));
    assert_eq!(first.session.expires_at, first.session.issued_at.plus(HOUR));

    let second = f.engine.authority().refresh(&rt1, &Principal::admin()).wait().unwrap();
    let rt2 = second.refresh_token.clone().unwrap();
    assert_ne!(rt1, rt2);
    assert_eq!(second.session.id, first.session.id);
    assert!(f.active(&first.access_token) && f.active(&second.access_token), "access tokens live out");

    // The retired refresh token comes back: reuse.
    let refused = grant_refused(f.engine.authority().refresh(&rt1, &Principal::admin()).wait().unwrap_err());
    assert!(refused.contains("reuse"), "{refused}");
    assert!(!f.active(&first.access_token) && !f.active(&second.access_token), "every token of it dies");
    let refused = grant_refused(f.engine.authority().refresh(&rt2, &Principal::admin()).wait().unwrap_err());
    assert!(refused.contains("revoked (refresh_reuse)"), "{refused}");
    let kinds = f.kinds();
    let reuse = kinds.iter().position(|k| *k == AuditKind::SessionRefreshReuseDetected).unwrap();
    assert_eq!(kinds[reuse + 1], AuditKind::SessionRevoked, "reuse detected, then revoked: {kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == AuditKind::SessionRefreshed).count(), 1);
    let s = &f.engine.list_sessions("ada").unwrap()[0];
    assert!(matches!(s.state, SessionState::Revoked { reason: RevocationReason::RefreshReuse, .. }));
}

#[test]
fn a_refresh_is_refused_once_the_subject_is_out_or_the_tier_says_so() {
    let policy = Policy::from_config(&PolicyConfig {
        tiers: vec![(
            "standard".into(),
            TierConfig { idle_timeout: Some("10m".into()), ..TierConfig::default() },
        )],
    })
    .unwrap();
    let f = fixture(policy);
    let ada = f.person("ada");
    let bob = f.person("bob");
    // Idle: nothing used it for longer than the tier allows.
    let idle = f.open("ada", true, None);
    f.advance(Duration::from_secs(11 * 60));
    let refused = grant_refused(
        f.engine
            .authority()
            .refresh(idle.refresh_token.as_deref().unwrap(), &Principal::admin())
            .wait()
            .unwrap_err(),
    );
    assert!(refused.contains("idle"), "{refused}");
    // Used within the idle timeout: fine, and the refresh counts as a use.
    let busy = f.open("ada", true, None);
    f.advance(Duration::from_secs(9 * 60));
    let next = f
        .engine
        .authority()
        .refresh(busy.refresh_token.as_deref().unwrap(), &Principal::admin())
        .wait()
        .unwrap();
    f.advance(Duration::from_secs(9 * 60));
    f.engine.authority().refresh(next.refresh_token.as_deref().unwrap(), &Principal::admin()).wait().unwrap();
    // Deactivated: the bridge revoked the session; the grant names that.
    let gone = f.open("bob", true, None);
    f.set_status(bob.id, IdentityStatus::Disabled);
    let refused = grant_refused(
        f.engine
            .authority()
            .refresh(gone.refresh_token.as_deref().unwrap(), &Principal::admin())
            .wait()
            .unwrap_err(),
    );
    assert!(refused.contains("identity_deactivated"), "{refused}");
    // A refresh token is bound to the client it was issued to.
    let client =
        f.engine.create_client("app", &[lockstep_domain::Scope::Sessions], &Principal::admin()).unwrap();
    let other =
        Principal { kind: lockstep_engine::PrincipalKind::Client(client.client.id), ..Principal::admin() };
    let mine = f.open("ada", true, None);
    let refused = grant_refused(
        f.engine.authority().refresh(mine.refresh_token.as_deref().unwrap(), &other).wait().unwrap_err(),
    );
    assert!(refused.contains("another client"), "{refused}");
    // An access token is not a refresh token, and unknown tokens are unknown.
    assert!(
        grant_refused(
            f.engine.authority().refresh(&mine.access_token, &Principal::admin()).wait().unwrap_err()
        )
        .contains("not a refresh token")
    );
    assert!(f.engine.authority().refresh("lst_rt_nope", &Principal::admin()).wait().is_err());
    let _ = ada;
}

#[test]
fn jwt_sessions_carry_claims_and_introspect_the_truth_now() {
    let f = fixture(Policy::default());
    f.person("ada");
    let jwt = f.open("ada", false, Some(TokenFormat::Jwt));
    assert!(jwt.access_token.starts_with("jwt."));
    assert_eq!(jwt.session.format, TokenFormat::Jwt);
    // Five minutes, to the second (the JWT's `exp`), never the session's hour.
    let exp = jwt.access_expires_at.unix_seconds();
    assert_eq!(exp, jwt.session.issued_at.plus(Duration::from_secs(300)).unix_seconds());
    assert!(jwt.access_token.ends_with(&format!(".{exp}")));
    assert!(f.active(&jwt.access_token));
    f.engine.authority().revoke_session(jwt.session.id, &Principal::admin()).wait().unwrap();
    assert!(!f.active(&jwt.access_token), "introspection of a JWT tells the truth now");
}

#[test]
fn credentials_expire_by_tier_and_only_non_human_identities_with_an_owner_get_them() {
    let f = fixture(Policy::default());
    let owner = f.person("owner");
    let sa = f.service("svc", owner.id);
    // Humans get none.
    let err = f
        .engine
        .authority()
        .create_credential(
            owner.id,
            CredentialRequest { kind: CredentialKind::ApiKey, ttl: None },
            &Principal::admin(),
        )
        .wait()
        .unwrap_err();
    assert!(matches!(err, EngineError::HumanIdentity(_)), "{err:?}");
    // No ttl: the tier default (30 days).
    let key = f.credential(sa.id, CredentialKind::ApiKey, None);
    assert!(key.secret.starts_with("lst_ak_"));
    assert_eq!(key.credential.expires_at, key.credential.issued_at.plus(30 * DAY));
    // Beyond the tier maximum (90 days): refused, naming the rule.
    let err = f
        .engine
        .authority()
        .create_credential(
            sa.id,
            CredentialRequest { kind: CredentialKind::ClientSecret, ttl: Some(91 * DAY) },
            &Principal::admin(),
        )
        .wait()
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::Invalid { field: "ttl", message } if message.contains("non_human.credential_max_ttl")),
        "{err:?}"
    );
    // An API key introspects like an access token, with no idle timeout.
    let introspected = f.engine.introspect(&key.secret).unwrap();
    assert_eq!(introspected.session.kind, CredentialKind::ApiKey);
    f.advance(20 * DAY);
    assert!(f.active(&key.secret));
    // A client secret is exchanged for short access tokens whose subject is
    // the service account.
    let cs = f.credential(sa.id, CredentialKind::ClientSecret, Some(7 * DAY));
    let client_id = cs.credential.id.to_string();
    let granted = f.engine.authority().client_credentials(&client_id, &cs.secret).wait().unwrap();
    let seen = f.engine.introspect(&granted.access_token).unwrap();
    assert_eq!(seen.session.identity, sa.id);
    assert_eq!(seen.session.id, cs.credential.id);
    assert!(granted.refresh_token.is_none());
    assert!(matches!(
        f.engine.authority().client_credentials(&client_id, "lst_cs_wrong").wait(),
        Err(EngineError::InvalidClient(_))
    ));
    // A client secret is not a bearer token.
    assert!(!f.active(&cs.secret));
    // Listed without secrets, with the last use.
    let listed = f.engine.authority().credentials(sa.id).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|c| c.last_used_at.is_some()), "both were used");

    // The owner leaves: the credentials are suspended (the non_human
    // default), grants are refused, the API key introspects inactive.
    f.set_status(owner.id, IdentityStatus::Disabled);
    assert!(!f.active(&key.secret));
    assert!(matches!(
        f.engine.authority().client_credentials(&client_id, &cs.secret).wait(),
        Err(EngineError::InvalidGrant(m)) if m.contains("suspended")
    ));
    // No new credential without an active owner.
    let err = f
        .engine
        .authority()
        .create_credential(
            sa.id,
            CredentialRequest { kind: CredentialKind::ApiKey, ttl: None },
            &Principal::admin(),
        )
        .wait()
        .unwrap_err();
    assert!(matches!(err, EngineError::NoActiveOwner(_)), "{err:?}");
    // Deactivating the service account revokes them.
    f.set_status(sa.id, IdentityStatus::Disabled);
    assert!(matches!(
        f.engine.authority().client_credentials(&client_id, &cs.secret).wait(),
        Err(EngineError::InvalidClient(m)) if m.contains("revoked")
    ));
}

#[test]
fn a_rotated_secret_works_for_its_grace_then_stops() {
    let f = fixture(Policy::default());
    let owner = f.person("owner");
    let sa = f.service("svc", owner.id);
    let key = f.credential(sa.id, CredentialKind::ApiKey, None);
    let rotated = f
        .engine
        .authority()
        .rotate_credential(sa.id, key.credential.id, HOUR, &Principal::admin())
        .wait()
        .unwrap();
    assert_eq!(rotated.credential.id, key.credential.id);
    assert!(f.active(&key.secret) && f.active(&rotated.secret));
    f.advance(HOUR + Duration::from_secs(1));
    assert!(!f.active(&key.secret), "the old key stops when the grace ends");
    assert!(f.active(&rotated.secret));
    // Client secrets rotate alike; without a grace the old one stops now.
    let cs = f.credential(sa.id, CredentialKind::ClientSecret, None);
    let id = cs.credential.id.to_string();
    let new = f
        .engine
        .authority()
        .rotate_credential(sa.id, cs.credential.id, Duration::ZERO, &Principal::admin())
        .wait()
        .unwrap();
    assert!(matches!(
        f.engine.authority().client_credentials(&id, &cs.secret).wait(),
        Err(EngineError::InvalidClient(_))
    ));
    f.engine.authority().client_credentials(&id, &new.secret).wait().unwrap();
    // Too long a grace is refused.
    assert!(matches!(
        f.engine.authority().rotate_credential(sa.id, cs.credential.id, 8 * DAY, &Principal::admin()).wait(),
        Err(EngineError::Invalid { field: "grace", .. })
    ));
    assert_eq!(f.kinds().iter().filter(|k| **k == AuditKind::CredentialRotated).count(), 2);
}

#[test]
fn revoke_all_and_global_revocation_leave_nothing_of_the_subject_active() {
    let f = fixture(Policy::default());
    let owner = f.person("owner");
    let mut ada = draft(&f.engine, "ada");
    ada.emails = vec!["ada@example.com".into()];
    ada.external_id = Some("idp-ada".into());
    let ada = f.engine.create_identity(ada, origin()).unwrap().identity;
    let sa = f.service("svc", owner.id);
    let tokens: Vec<String> = (0..3).map(|_| f.open("ada", true, None).access_token).collect();
    let key = f.credential(sa.id, CredentialKind::ApiKey, None);
    let sa_session = f.open("svc", false, None);
    let n = f.engine.authority().revoke_all(sa.id, &Principal::admin(), "incident 42").wait().unwrap();
    assert_eq!(n, 2);
    assert!(!f.active(&key.secret) && !f.active(&sa_session.access_token));
    assert_eq!(f.kinds().iter().filter(|k| **k == AuditKind::SubjectRevoked).count(), 1);
    // Again: nothing left to revoke, still one decision recorded per call.
    assert_eq!(f.engine.authority().revoke_all(sa.id, &Principal::admin(), "again").wait().unwrap(), 0);

    // Global revocation by email, then by iss_sub: the first finds all three.
    let by_email = SubjectId::Email("ada@example.com".into());
    assert_eq!(f.engine.authority().global_revocation(&by_email, &Principal::admin()).unwrap(), (1, 3));
    assert!(tokens.iter().all(|t| !f.active(t)));
    let again = f.open("ada", false, None);
    let by_sub = SubjectId::IssSub { iss: "https://idp.example.com".into(), sub: "idp-ada".into() };
    assert_eq!(f.engine.authority().global_revocation(&by_sub, &Principal::admin()).unwrap(), (1, 1));
    assert!(!f.active(&again.access_token));
    // Unknown subjects are not an error.
    let nobody = SubjectId::Opaque(ada.id.to_string().replace('0', "1"));
    assert_eq!(f.engine.authority().global_revocation(&nobody, &Principal::admin()).unwrap().1, 0);
}

#[test]
fn retention_purges_what_expired_or_was_revoked_long_ago_and_keeps_the_rest() {
    let f = fixture(Policy::default());
    f.person("ada");
    let old = f.open("ada", false, None);
    let revoked = f.open("ada", false, None);
    f.engine.authority().revoke_session(revoked.session.id, &Principal::admin()).wait().unwrap();
    f.advance(2 * HOUR);
    let live = f.open("ada", false, None);
    assert_eq!(f.engine.purge_expired(1).unwrap(), 0, "within the retention");
    // Seven days later the first two are past retention; `live` expired
    // within the last seven days and stays.
    f.advance(7 * DAY);
    let live2 = f.open("ada", false, None);
    // Chunks of one: the loop goes on until a chunk comes back short.
    assert_eq!(f.engine.purge_expired(1).unwrap(), 2);
    let left: Vec<_> = f.engine.list_sessions("ada").unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(left, vec![live.session.id, live2.session.id]);
    for t in [&old.access_token, &revoked.access_token, &live.access_token] {
        assert!(!f.active(t));
    }
    assert!(f.active(&live2.access_token));
    assert_eq!(f.kinds().iter().filter(|k| **k == AuditKind::SessionsPurged).count(), 1);
    let chain = f.engine.audit_page(0, 10_000).unwrap();
    assert!(chain.iter().any(|r| r.entry.session == Some(old.session.id)), "the audit keeps their history");
}

/// Many threads through one group commit: every open succeeds once; of
/// racing refreshes with one token exactly one wins and the others are
/// reuse; concurrent opens never exceed `max_sessions`.
#[test]
fn racing_requests_share_batches_without_breaking_any_rule() {
    let policy = Policy::from_config(&PolicyConfig {
        tiers: vec![("standard".into(), TierConfig { max_sessions: Some(2), ..TierConfig::default() })],
    })
    .unwrap();
    let f = fixture(policy);
    for n in 0..4 {
        f.person(&format!("u{n}"));
    }
    let threads: Vec<_> = (0..32)
        .map(|n| {
            let engine = f.engine.clone();
            std::thread::spawn(move || {
                let request = OpenRequest {
                    subject: format!("u{}", n % 4),
                    ttl: Some(HOUR),
                    refresh: true,
                    format: None,
                };
                engine.authority().open_session(request, &Principal::admin()).wait().unwrap()
            })
        })
        .collect();
    let issued: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for n in 0..4 {
        let live = f
            .engine
            .list_sessions(&format!("u{n}"))
            .unwrap()
            .into_iter()
            .filter(|s| !s.state.is_revoked())
            .count();
        assert_eq!(live, 2, "u{n}");
    }
    let live_tokens = issued.iter().filter(|i| f.active(&i.access_token)).count();
    assert_eq!(live_tokens, 8);

    let survivor = issued.iter().find(|i| f.active(&i.access_token)).unwrap();
    let rt = survivor.refresh_token.clone().unwrap();
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let (engine, rt) = (f.engine.clone(), rt.clone());
            std::thread::spawn(move || engine.authority().refresh(&rt, &Principal::admin()).wait())
        })
        .collect();
    let results: Vec<_> = racers.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "exactly one refresh wins");
    assert!(
        results.iter().filter_map(|r| r.as_ref().err()).all(|e| matches!(e, EngineError::InvalidGrant(_)))
    );
    assert_eq!(
        f.kinds().iter().filter(|k| **k == AuditKind::SessionRefreshReuseDetected).count(),
        1,
        "the first loser detects reuse; later ones find the session revoked"
    );
}

/// What each impact queues for a stream that wants everything: a
/// credential the bridge revokes is a credential-change, a session a
/// session-revoked, the deactivation one account-disabled, all with the
/// directory event's txn; a grace period ending queues session-revoked.
#[test]
fn every_impact_queues_its_signal_in_the_outbox() {
    use lockstep_domain::{Delivery, SignalKind, Stream, StreamStatus};
    let f = fixture(Policy::default());
    let signals = f.engine.signals();
    let stream = Stream {
        id: signals.new_stream_id().unwrap(),
        client: None,
        audience: "rp".into(),
        delivery: Delivery::Poll,
        requested: SignalKind::ALL.to_vec(),
        status: StreamStatus::Enabled,
        reason: None,
        description: None,
        subjects: Vec::new(),
        excluded: Vec::new(),
        created: lockstep_domain::Timestamp(0),
    };
    let stream = signals.put_stream(stream).unwrap();
    let owner = f.person("owner");
    let sa = f.service("svc", owner.id);
    let key = f.credential(sa.id, CredentialKind::ApiKey, Some(DAY));
    f.open("owner", false, None);
    let pending = |f: &Fixture| {
        let mut kinds: Vec<(SignalKind, Option<String>, String)> = f
            .engine
            .signals()
            .pending(stream.id, 1000)
            .unwrap()
            .into_iter()
            .map(|q| {
                (q.outgoing.signal.kind, q.outgoing.signal.change.clone(), q.outgoing.signal.txn.clone())
            })
            .collect();
        kinds.sort_by_key(|k| k.0);
        kinds
    };
    let created = pending(&f);
    assert_eq!(
        created.iter().map(|k| (k.0, k.1.as_deref())).collect::<Vec<_>>(),
        [(SignalKind::CredentialChange, Some("create"))]
    );
    let delivered: Vec<String> =
        f.engine.signals().pending(stream.id, 1000).unwrap().into_iter().map(|q| q.outgoing.jti).collect();
    f.engine.signals().delivered(stream.id, &delivered).unwrap();
    // Deactivating the service account revokes its API key: credential-change.
    f.set_status(sa.id, IdentityStatus::Disabled);
    let after = pending(&f);
    let kinds: Vec<_> = after.iter().map(|k| (k.0, k.1.as_deref())).collect();
    assert_eq!(kinds, [(SignalKind::CredentialChange, Some("revoke")), (SignalKind::AccountDisabled, None)]);
    assert!(after.iter().all(|k| k.2 == after[0].2 && k.2.starts_with("dir-")), "one txn: {after:?}");
    let _ = key;
}

/// With a directory worker serving the queue (as in a server), a batch's
/// bridge step runs on the bridge thread while the worker commits the next
/// batch: a deactivation is still answered only once its bridge step has
/// cut the identity's sessions, and events are bridged in commit order
/// (the audit's directory events follow the log), however the writes race.
#[test]
fn a_served_directory_answers_each_write_after_its_bridge_step() {
    let f = fixture(Policy::default());
    let worker = {
        let engine = f.engine.clone();
        std::thread::spawn(move || engine.serve_directory())
    };
    let names: Vec<String> = (0..48).map(|i| format!("user{i}")).collect();
    let ids: Vec<IdentityId> = names.iter().map(|n| f.person(n).id).collect();
    let tokens: Vec<String> = names.iter().map(|n| f.open(n, false, None).access_token).collect();
    let threads: Vec<_> = ids
        .iter()
        .zip(&tokens)
        .map(|(&id, token)| {
            let engine = f.engine.clone();
            let token = token.clone();
            std::thread::spawn(move || {
                let applied = engine
                    .update_identity(id, origin(), None, |cur| {
                        let mut next = cur.clone();
                        next.status = IdentityStatus::Disabled;
                        Ok::<_, ()>(next)
                    })
                    .unwrap();
                assert_eq!(applied.revoked, 1, "the answer counts the session its bridge step revoked");
                assert!(engine.introspect(&token).is_none(), "acknowledged, but the session is still active");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    f.engine.stop_directory();
    worker.join().unwrap();
    let bridged: Vec<u64> = f
        .engine
        .audit_page(0, 10_000)
        .unwrap()
        .into_iter()
        .filter(|r| r.entry.kind.as_str().starts_with("directory."))
        .filter_map(|r| r.entry.directory_event.map(|e| e.0))
        .collect();
    assert!(bridged.windows(2).all(|w| w[0] < w[1]), "bridged out of order: {bridged:?}");
    assert_eq!(bridged.len(), 48 * 2, "every create and deactivation bridged once");
}
