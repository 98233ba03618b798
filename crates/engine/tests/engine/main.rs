//! The bridge end to end on the real SQLite stores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use lockstep_domain::{
    AuditKind, DirectoryChange, Identity, IdentityStatus, Origin, RevocationReason, Scope, SessionState,
    SourceId, Tiers, Timestamp,
};
use lockstep_engine::{
    Clock, Engine, EngineConfig, EngineError, EngineResult, IssuedTokens, OpenRequest, OsEntropy, Principal,
    Stores,
};
use lockstep_store::{DirectoryStore, IdentityWrite, verify_chain};
use lockstep_store_sqlite::{Durability, SqliteDirectory, SqliteSessions};

#[derive(Debug)]
pub(crate) struct ManualClock(pub(crate) AtomicI64);

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.fetch_add(1, Ordering::SeqCst))
    }
}

fn stores(dir: &Path) -> Stores {
    let sessions = Arc::new(SqliteSessions::open(&dir.join("sessions.db"), Durability::Normal).unwrap());
    Stores {
        directory: Arc::new(SqliteDirectory::open(&dir.join("directory.db"), Durability::Normal).unwrap()),
        sessions: sessions.clone(),
        credentials: sessions,
    }
}

fn open(dir: &Path) -> Engine {
    let clock = Arc::new(ManualClock(AtomicI64::new(1_700_000_000_000_000)));
    Engine::open(stores(dir), EngineConfig::default(), clock, Arc::new(OsEntropy)).unwrap()
}

mod authority;
mod sources;
mod tiers;

/// The authority's calls in the shape these tests were written in.
pub(crate) trait Sessions {
    fn open_session(&self, subject: &str, ttl: Option<Duration>, p: &Principal)
    -> EngineResult<IssuedTokens>;
    fn revoke_session(&self, id: lockstep_domain::SessionId, p: &Principal) -> EngineResult<bool>;
    fn revoke_token(&self, token: &str, p: &Principal) -> EngineResult<()>;
}

impl Sessions for Engine {
    fn open_session(
        &self,
        subject: &str,
        ttl: Option<Duration>,
        p: &Principal,
    ) -> EngineResult<IssuedTokens> {
        let request = OpenRequest { subject: subject.to_owned(), ttl, refresh: false, format: None };
        self.authority().open_session(request, p).wait()
    }
    fn revoke_session(&self, id: lockstep_domain::SessionId, p: &Principal) -> EngineResult<bool> {
        self.authority().revoke_session(id, p).wait()
    }
    fn revoke_token(&self, token: &str, p: &Principal) -> EngineResult<()> {
        self.authority().revoke_token(token, p).wait().map(|_| ())
    }
}

fn origin() -> Origin {
    Origin { source: SourceId::new("scim"), client: None, source_ref: Some("hr-42".into()) }
}

fn draft(engine: &Engine, user_name: &str) -> Identity {
    Identity {
        external_id: Some("hr-42".into()),
        ..Identity::draft(engine.new_identity_id().unwrap(), user_name, lockstep_domain::SourceId::scim())
    }
}

fn set_status(engine: &Engine, identity: &Identity, status: IdentityStatus) -> lockstep_engine::Applied {
    engine
        .update_identity(identity.id, origin(), None, move |cur| {
            let mut next = cur.clone();
            next.status = status;
            Ok::<_, ()>(next)
        })
        .unwrap()
}

#[test]
fn deactivation_revokes_before_the_write_returns_and_is_audited_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let alice = engine.create_identity(draft(&engine, "alice"), origin()).unwrap().identity;
    engine.create_identity(draft(&engine, "bob"), origin()).unwrap();
    let a1 = engine.open_session("alice", None, &Principal::admin()).unwrap();
    let a2 = engine
        .open_session(&alice.id.to_string(), Some(Duration::from_secs(60)), &Principal::admin())
        .unwrap();
    let b1 = engine.open_session("BOB", None, &Principal::admin()).unwrap();
    assert!(engine.introspect(&a1.access_token).is_some());

    let applied = set_status(&engine, &alice, IdentityStatus::Disabled);
    assert_eq!(applied.revoked, 2);
    assert!(engine.introspect(&a1.access_token).is_none());
    assert!(engine.introspect(&a2.access_token).is_none());
    assert_eq!(engine.introspect(&b1.access_token).unwrap().claims.unwrap().user_name.as_ref(), "bob");

    let audit = engine.audit_page(0, 100).unwrap();
    let deactivated = audit.iter().find(|r| r.entry.kind == AuditKind::IdentityDeactivated).unwrap();
    let cause = deactivated.entry.directory_event.unwrap();
    assert_eq!(cause, applied.events[0].id);
    assert!(deactivated.entry.detail.contains("source_ref=hr-42"));
    let revoked: Vec<_> = audit.iter().filter(|r| r.entry.kind == AuditKind::SessionRevoked).collect();
    assert_eq!(revoked.len(), 2);
    for r in revoked {
        assert_eq!(r.entry.directory_event, Some(cause));
        assert!(r.seq > deactivated.seq);
    }
    assert_eq!(verify_chain(audit), Ok(engine.audit_page(0, 100).unwrap().len() as u64));
    assert_eq!(engine.consumed().unwrap(), applied.events.last().map(|e| e.id));
}

#[test]
fn reactivation_restores_entitlement_but_never_a_revoked_session() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let alice = engine.create_identity(draft(&engine, "alice"), origin()).unwrap().identity;
    let old = engine.open_session("alice", None, &Principal::admin()).unwrap();
    set_status(&engine, &alice, IdentityStatus::Suspended);
    assert!(matches!(
        engine.open_session("alice", None, &Principal::admin()),
        Err(EngineError::SubjectNotEntitled { status: IdentityStatus::Suspended, .. })
    ));
    set_status(&engine, &alice, IdentityStatus::Active);
    assert!(engine.introspect(&old.access_token).is_none());
    let stored = engine.list_sessions("alice").unwrap();
    assert!(matches!(
        stored[0].state,
        SessionState::Revoked { reason: RevocationReason::IdentityDeactivated, .. }
    ));
    let fresh = engine.open_session("alice", None, &Principal::admin()).unwrap();
    assert!(engine.introspect(&fresh.access_token).is_some());
    drop(engine);
    let reopened = open(dir.path());
    assert!(reopened.introspect(&old.access_token).is_none());
    assert!(reopened.introspect(&fresh.access_token).is_some());
}

#[test]
fn subjects_that_may_not_hold_sessions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let gone = engine.create_identity(draft(&engine, "gone"), origin()).unwrap().identity;
    engine.delete_identity(gone.id, origin(), None).unwrap();
    let admin = Principal::admin();
    assert!(matches!(engine.open_session("nobody", None, &admin), Err(EngineError::UnknownSubject(_))));
    assert!(matches!(engine.open_session("gone", None, &admin), Err(EngineError::SubjectDeleted(_))));
    assert!(matches!(
        engine.open_session(&gone.id.to_string(), None, &admin),
        Err(EngineError::SubjectDeleted(_))
    ));
    engine.create_identity(draft(&engine, "ttl"), origin()).unwrap();
    assert!(matches!(
        engine.open_session("ttl", Some(Duration::ZERO), &admin),
        Err(EngineError::Invalid { field: "ttl", .. })
    ));
    assert_eq!(engine.list_sessions("ttl").unwrap().len(), 0, "refusals write nothing");
    // Longer than the tier allows: capped (12h for the standard tier), not refused.
    let long = engine.open_session("ttl", Some(Duration::from_secs(365 * 86_400)), &admin).unwrap();
    assert_eq!(long.session.expires_at.since(long.session.issued_at), Duration::from_secs(12 * 3600));
}

#[test]
fn a_crash_between_the_directory_commit_and_the_bridge_is_healed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, token) = {
        let engine = open(dir.path());
        let alice = engine.create_identity(draft(&engine, "alice"), origin()).unwrap().identity;
        let s = engine.open_session("alice", None, &Principal::admin()).unwrap();
        (alice, s.access_token)
    };
    // The directory commits a deactivation, then the process "dies" before
    // the bridge step: write straight to the directory store.
    {
        let directory = SqliteDirectory::open(&dir.path().join("directory.db"), Durability::Normal).unwrap();
        let mut disabled = alice.clone();
        disabled.status = IdentityStatus::Disabled;
        directory
            .commit_identity(IdentityWrite {
                identity: disabled,
                tiers: Tiers::STANDARD,
                fanout: Vec::new(),
                expected_version: Some(alice.version),
                changes: vec![DirectoryChange::IdentityDeactivated {
                    from: IdentityStatus::Active,
                    to: IdentityStatus::Disabled,
                }],
                origin: origin(),
                at: Timestamp(1_700_000_000_000_000),
            })
            .unwrap();
    }
    let engine = open(dir.path());
    assert!(engine.introspect(&token).is_none(), "replayed before serving");
    let audit = engine.audit_page(0, 100).unwrap();
    assert!(audit.iter().any(|r| r.entry.kind == AuditKind::SessionRevoked));
    assert!(verify_chain(audit).is_ok());
    // Opening again replays nothing twice.
    let before = engine.audit_page(0, 100).unwrap().len();
    drop(engine);
    let engine = open(dir.path());
    assert_eq!(engine.audit_page(0, 100).unwrap().len(), before);
}

#[test]
fn explicit_revocation_and_rfc7009_by_token() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine.create_identity(draft(&engine, "carol"), origin()).unwrap();
    let a = engine.open_session("carol", None, &Principal::admin()).unwrap();
    let b = engine.open_session("carol", None, &Principal::admin()).unwrap();
    assert!(engine.revoke_session(a.session.id, &Principal::admin()).unwrap());
    assert!(!engine.revoke_session(a.session.id, &Principal::admin()).unwrap());
    engine.revoke_token(&b.access_token, &Principal::admin()).unwrap();
    engine.revoke_token("lst_at_not-a-real-token", &Principal::admin()).unwrap();
    assert!(engine.introspect(&a.access_token).is_none());
    assert!(engine.introspect(&b.access_token).is_none());
    drop(engine);
    let engine = open(dir.path());
    assert!(engine.introspect(&a.access_token).is_none());
    assert!(engine.introspect(&b.access_token).is_none());
}

#[test]
fn clients_authenticate_by_basic_and_bearer_and_the_admin_token_is_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let admin_token = engine.ensure_admin_token(None).unwrap().unwrap();
    assert_eq!(engine.ensure_admin_token(None).unwrap(), None, "generated once");
    assert_eq!(engine.authenticate_bearer(&admin_token), Some(Principal::admin()));
    let created = engine.create_client("okta", &[Scope::Scim, Scope::Scim], &Principal::admin()).unwrap();
    assert_eq!(created.client.scopes, vec![Scope::Scim]);
    let by_basic = engine.authenticate_basic(&created.client.id.to_string(), &created.secret).unwrap();
    assert!(by_basic.allows(Scope::Scim) && !by_basic.allows(Scope::Audit));
    assert_eq!(engine.authenticate_bearer(&created.secret), Some(by_basic));
    assert!(engine.authenticate_basic(&created.client.id.to_string(), "wrong").is_none());
    assert!(engine.authenticate_bearer("wrong").is_none());
    drop(engine);
    let engine = open(dir.path());
    assert_eq!(engine.authenticate_bearer(&admin_token), Some(Principal::admin()));
    assert!(engine.authenticate_bearer(&created.secret).is_some());
    let raw = std::fs::read(dir.path().join("sessions.db")).unwrap();
    let needle = created.secret.as_bytes();
    assert!(!raw.windows(needle.len()).any(|w| w == needle), "secret stored in clear");
    assert!(engine.create_client(" ", &[Scope::Scim], &Principal::admin()).is_err());
    assert!(engine.create_client("x", &[], &Principal::admin()).is_err());
}

#[test]
fn concurrent_writers_share_commits_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(open(dir.path()));
    let mut users = Vec::new();
    for n in 0..24 {
        let identity = engine.create_identity(draft(&engine, &format!("c{n}")), origin()).unwrap().identity;
        let token = engine.open_session(&format!("c{n}"), None, &Principal::admin()).unwrap().access_token;
        users.push((identity, token));
    }
    let shared = users[0].0.id;
    let mut threads = Vec::new();
    for (identity, _) in users.iter().skip(1) {
        let (engine, id) = (engine.clone(), identity.id);
        threads.push(std::thread::spawn(move || {
            engine.update_identity(id, origin(), None, |cur| {
                let mut next = cur.clone();
                next.status = IdentityStatus::Disabled;
                Ok::<_, ()>(next)
            })
        }));
    }
    // Several writers on one identity: serialised across batches, none lost.
    for k in 0..6 {
        let engine = engine.clone();
        threads.push(std::thread::spawn(move || {
            engine.update_identity(shared, origin(), None, move |cur| {
                let mut next = cur.clone();
                next.display_name = Some(format!("name {k}"));
                Ok::<_, ()>(next)
            })
        }));
    }
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap().unwrap()).collect();
    assert_eq!(results.iter().map(|a| a.revoked).sum::<usize>(), 23);
    for (_, token) in users.iter().skip(1) {
        assert!(engine.introspect(token).is_none());
    }
    assert!(engine.introspect(&users[0].1).is_some(), "renames revoke nothing");
    assert_eq!(engine.live_identity(shared).unwrap().version, 7, "six renames, each applied once");
    let audit = engine.audit_page(0, 1_000).unwrap();
    assert_eq!(audit.iter().filter(|r| r.entry.kind == AuditKind::SessionRevoked).count(), 23);
    assert_eq!(audit.iter().filter(|r| r.entry.kind == AuditKind::IdentityUpdated).count(), 6);
    assert!(verify_chain(audit).is_ok());
    drop(engine);
    let reopened = open(dir.path());
    for (_, token) in users.iter().skip(1) {
        assert!(reopened.introspect(token).is_none());
    }
}

/// Eight callers revoking one session at the same instant, half by id and
/// half by token, record exactly one revocation.
#[test]
fn racing_revocations_are_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(open(dir.path()));
    engine.create_identity(draft(&engine, "race"), origin()).unwrap();
    for round in 0..20 {
        let issued = engine.open_session("race", None, &Principal::admin()).unwrap();
        let start = Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|n| {
                let (engine, start, issued) = (engine.clone(), start.clone(), issued.clone());
                std::thread::spawn(move || {
                    start.wait();
                    if n % 2 == 0 {
                        engine.revoke_session(issued.session.id, &Principal::admin()).unwrap();
                    } else {
                        engine.revoke_token(&issued.access_token, &Principal::admin()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let records = engine
            .audit_page(0, 10_000)
            .unwrap()
            .into_iter()
            .filter(|r| {
                r.entry.kind == AuditKind::SessionRevoked && r.entry.session == Some(issued.session.id)
            })
            .count();
        assert_eq!(records, 1, "round {round}");
    }
    let metrics = engine.metrics().encode().unwrap();
    let revoked: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("lockstep_session_revocations_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(revoked, 20);
}
