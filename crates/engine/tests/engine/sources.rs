//! Directory sources on the real SQLite stores: ownership, plans applied
//! through the bridge, the cursor with the writes, the circuit breaker,
//! staleness failing closed.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use lockstep_domain::{AuditKind, IdentityKind, Origin, SourceId};
use lockstep_engine::sources::{
    Breaker, ConnectionState, GroupRecord, Removal, SourceError, SourceRecord, SourceSettings, SourceUpdate,
    UserRecord,
};
use lockstep_engine::{Engine, EngineConfig, EngineError, OsEntropy, Principal};
use lockstep_policy::{Policy, PolicyConfig, TierConfig};

use super::Sessions as _;
use super::{ManualClock, stores};

fn settings(name: &str, removal: Removal) -> SourceSettings {
    SourceSettings {
        name: SourceId::new(name),
        kind: "ldap".into(),
        mode: "syncrepl".into(),
        removal,
        max_staleness: Some(Duration::from_secs(120)),
        breaker: Breaker::default(),
    }
}

fn engine(dir: &std::path::Path, clock: Arc<ManualClock>) -> Engine {
    let policy = Policy::from_config(&PolicyConfig {
        tiers: vec![(
            "privileged".into(),
            TierConfig { groups: Some(vec!["prod-admins".into()]), ..TierConfig::default() },
        )],
    })
    .unwrap();
    let config = EngineConfig {
        policy,
        sources: vec![settings("corp-ldap", Removal::Delete), settings("hr", Removal::Deactivate)],
        ..EngineConfig::default()
    };
    Engine::open(stores(dir), config, clock, Arc::new(OsEntropy)).unwrap()
}

fn user(key: &str, name: &str, active: bool) -> SourceRecord {
    SourceRecord::User(UserRecord {
        key: key.into(),
        user_name: name.into(),
        display_name: Some(name.to_uppercase()),
        emails: vec![format!("{name}@example.com")],
        active,
        kind: IdentityKind::Human,
        owner_key: None,
        profile: "{}".into(),
    })
}

fn group(key: &str, name: &str, members: &[&str]) -> SourceRecord {
    SourceRecord::Group(GroupRecord {
        key: key.into(),
        display_name: name.into(),
        member_keys: members.iter().map(|m| (*m).to_owned()).collect(),
    })
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock(AtomicI64::new(1_700_000_000_000_000)))
}

#[test]
fn a_source_owns_what_it_created_and_its_cursor_commits_with_the_writes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), clock());
    let sources = engine.sources();
    let applied = sources
        .apply(
            "corp-ldap",
            SourceUpdate::snapshot(vec![
                user("u1", "alice", true),
                user("u2", "bob", true),
                group("g1", "engineering", &["u1", "u2"]),
            ])
            .with_cursor(Some(b"cookie-1".to_vec())),
        )
        .unwrap();
    assert_eq!((applied.created, applied.rejected.len()), (3, 0), "{applied:?}");
    assert_eq!(sources.cursor("corp-ldap").unwrap().as_deref(), Some(&b"cookie-1"[..]));
    let alice = engine.resolve_subject("alice").unwrap();
    assert_eq!(alice.source, SourceId::new("corp-ldap"));
    assert_eq!(alice.external_id.as_deref(), Some("u1"));
    // The same truth again changes nothing and records no event.
    let before = engine.consumed().unwrap();
    let again = sources
        .apply(
            "corp-ldap",
            SourceUpdate::snapshot(vec![
                user("u1", "alice", true),
                user("u2", "bob", true),
                group("g1", "engineering", &["u1", "u2"]),
            ])
            .with_cursor(Some(b"cookie-2".to_vec())),
        )
        .unwrap();
    assert_eq!((again.created, again.updated, again.unchanged), (0, 0, 3), "{again:?}");
    assert_eq!(engine.consumed().unwrap(), before, "no directory event for an unchanged truth");
    assert_eq!(sources.cursor("corp-ldap").unwrap().as_deref(), Some(&b"cookie-2"[..]));
    // SCIM cannot write what the source owns.
    let scim = Origin { source: SourceId::scim(), client: None, source_ref: None };
    let err = engine
        .update_identity(alice.id, scim.clone(), None, |cur| {
            let mut next = cur.clone();
            next.display_name = Some("hijacked".into());
            Ok::<_, ()>(next)
        })
        .unwrap_err();
    assert!(
        matches!(err, lockstep_engine::UpdateError::Engine(EngineError::OwnedBySource { ref owner, .. }) if owner == "corp-ldap"),
        "{err:?}"
    );
    let g = engine.directory().source_groups(&SourceId::new("corp-ldap")).unwrap().remove(0);
    let err = engine.delete_group(g.id, scim.clone(), None).unwrap_err();
    assert!(matches!(err, EngineError::OwnedBySource { .. }), "{err:?}");
    // Nor can another source: "bob" is taken, so hr's record is refused.
    let hr = sources.apply("hr", SourceUpdate::snapshot(vec![user("e1", "BOB", true)])).unwrap();
    assert_eq!(hr.rejected.len(), 1, "{hr:?}");
    assert!(hr.rejected[0].1.contains("already in use"), "{hr:?}");
    // An unknown source is an error naming it.
    assert!(matches!(
        sources.apply("nope", SourceUpdate::delta(vec![], vec![])),
        Err(SourceError::Unknown(_))
    ));
}

#[test]
fn removals_and_group_changes_reach_sessions_through_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), clock());
    let sources = engine.sources();
    sources
        .apply(
            "corp-ldap",
            SourceUpdate::snapshot(vec![
                user("u1", "alice", true),
                user("u2", "bob", true),
                user("u3", "carol", true),
                group("g1", "prod-admins", &["u1", "u2"]),
            ]),
        )
        .unwrap();
    let admin = Principal::admin();
    let alice = engine.open_session("alice", None, &admin).unwrap();
    let bob = engine.open_session("bob", None, &admin).unwrap();
    let carol = engine.open_session("carol", None, &admin).unwrap();
    assert!(engine.introspect(&alice.access_token).unwrap().claims.unwrap().tiers.privileged);
    // Removal from the tier-conferring group revokes (the default table).
    let step =
        sources.apply("corp-ldap", SourceUpdate::delta(vec![group("g1", "prod-admins", &["u1"])], vec![]));
    assert_eq!(step.unwrap().revoked, 1);
    assert!(engine.introspect(&bob.access_token).is_none());
    // A record that turns inactive deactivates; a deleted entry deletes.
    let step =
        sources.apply("corp-ldap", SourceUpdate::delta(vec![user("u1", "alice", false)], vec!["u3".into()]));
    let step = step.unwrap();
    assert_eq!((step.deactivated, step.deleted, step.revoked), (1, 1, 2), "{step:?}");
    assert!(engine.introspect(&alice.access_token).is_none());
    assert!(engine.introspect(&carol.access_token).is_none());
    assert!(engine.resolve_subject("carol").is_err(), "deleted");
    // Every event names the source.
    let audit = engine.audit_page(0, 1_000).unwrap();
    let deleted = audit.iter().find(|r| r.entry.kind == AuditKind::IdentityDeleted).unwrap();
    assert_eq!(deleted.entry.actor.to_string(), "corp-ldap/sync");
}

#[test]
fn the_breaker_holds_a_mass_removal_whole_until_approved() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), clock());
    let sources = engine.sources();
    let everyone: Vec<SourceRecord> =
        (0..30).map(|n| user(&format!("e{n}"), &format!("u{n}"), true)).collect();
    sources.apply("hr", SourceUpdate::snapshot(everyone.clone())).unwrap();
    let token = engine.open_session("u29", None, &Principal::admin()).unwrap();
    // An empty truth never wipes the directory.
    let err = sources.apply("hr", SourceUpdate::snapshot(Vec::new())).unwrap_err();
    assert!(matches!(err, SourceError::Refused(_)), "{err:?}");
    // 25 of 30 gone: more than the threshold (20): held whole.
    let dry = sources.dry_run("hr", &SourceUpdate::snapshot(everyone[..5].to_vec())).unwrap();
    assert!(dry.would_hold);
    assert_eq!(dry.removals.len(), 25);
    assert_eq!(dry.removals.iter().map(|r| r.sessions).sum::<usize>(), 1);
    let held = sources.apply("hr", SourceUpdate::snapshot(everyone[..5].to_vec())).unwrap();
    assert_eq!((held.held, held.deactivated), (25, 0), "{held:?}");
    assert!(engine.introspect(&token.access_token).is_some(), "nothing applied");
    let status = sources.status().unwrap();
    let hr = status.iter().find(|s| s.settings.name.as_str() == "hr").unwrap();
    assert_eq!(hr.held.len(), 1, "{:?}", hr.held);
    assert!(engine.audit_page(0, 1000).unwrap().iter().any(|r| r.entry.kind == AuditKind::SyncHeld));
    // Held across a restart, then approved: exactly that plan applies.
    drop(engine);
    let engine = self::engine(dir.path(), clock());
    let sources = engine.sources();
    let approved = sources.approve("hr", Principal::admin().actor()).unwrap();
    assert_eq!(approved.deactivated, 25, "{approved:?}");
    assert!(engine.introspect(&token.access_token).is_none());
    assert!(matches!(sources.approve("hr", Principal::admin().actor()), Err(SourceError::NothingHeld(_))));
    // An ordinary leaver is never held.
    let one = sources.apply("hr", SourceUpdate::snapshot(everyone[..4].to_vec())).unwrap();
    assert_eq!((one.deactivated, one.held), (1, 0));
}

/// Thirty users synced from `corp-ldap`, then deletions of k0..k24 in the
/// batches given: the engine, and how many were deleted and held.
fn delete_in_batches(dir: &std::path::Path, batches: &[std::ops::Range<usize>]) -> (Engine, usize, usize) {
    let engine = engine(dir, clock());
    let sources = engine.sources();
    let everyone: Vec<SourceRecord> =
        (0..30).map(|n| user(&format!("k{n}"), &format!("p{n}"), true)).collect();
    sources.apply("corp-ldap", SourceUpdate::snapshot(everyone)).unwrap();
    let (mut held, mut deleted) = (0, 0);
    for range in batches {
        let keys = range.clone().map(|n| format!("k{n}")).collect();
        let step = sources.apply("corp-ldap", SourceUpdate::delta(vec![], keys)).unwrap();
        held += step.held;
        deleted += step.deleted;
    }
    (engine, deleted, held)
}

#[test]
fn deletions_one_by_one_are_held_past_the_windows_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let one_by_one: Vec<_> = (0..25).map(|n| n..n + 1).collect();
    let (engine, deleted, held) = delete_in_batches(dir.path(), &one_by_one);
    assert_eq!((deleted, held), (20, 5));
    assert!(engine.resolve_subject("p20").is_ok(), "held, still there");
    let approved = engine.sources().approve("corp-ldap", Principal::admin().actor()).unwrap();
    assert_eq!(approved.deleted, 5);
    assert!(engine.resolve_subject("p24").is_err());
}

/// The same 25 deletions, batched as a syncrepl consumer may receive them
/// (here 7, 11, then 7: the last batch straddles the threshold), hold the
/// same five: what fits under the threshold applies, in the order listed.
#[test]
fn a_batch_straddling_the_threshold_applies_what_fits_and_holds_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, deleted, held) = delete_in_batches(dir.path(), &[0..7, 7..18, 18..25]);
    assert_eq!((deleted, held), (20, 5));
    assert!(engine.resolve_subject("p19").is_err(), "the 20th deletion fit");
    assert!(engine.resolve_subject("p20").is_ok(), "the 21st is held");
    let approved = engine.sources().approve("corp-ldap", Principal::admin().actor()).unwrap();
    assert_eq!(approved.deleted, 5);
    assert!(engine.resolve_subject("p24").is_err());
}

#[test]
fn a_stale_source_suspends_privileged_sessions_only_until_it_is_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let engine = engine(dir.path(), clock.clone());
    let sources = engine.sources();
    sources
        .apply(
            "corp-ldap",
            SourceUpdate::snapshot(vec![
                user("a", "admin", true),
                user("s", "staff", true),
                group("g", "prod-admins", &["a"]),
            ]),
        )
        .unwrap();
    sources.connection("corp-ldap", ConnectionState::Live);
    let admin = engine.open_session("admin", None, &Principal::admin()).unwrap();
    let staff = engine.open_session("staff", None, &Principal::admin()).unwrap();
    assert_eq!(sources.enforce_staleness().unwrap().suspended, 0);
    // The connection drops; two minutes pass, and a bit.
    sources.connection("corp-ldap", ConnectionState::Down { error: "connection refused".into() });
    clock.0.fetch_add(121_000_000, Ordering::SeqCst);
    let checked = sources.enforce_staleness().unwrap();
    assert_eq!(checked.suspended, 1);
    assert!(engine.introspect(&admin.access_token).is_none(), "privileged: fails closed");
    assert!(engine.introspect(&staff.access_token).is_some(), "standard: untouched");
    assert!(sources.status().unwrap()[0].stale);
    // Fresh again: resumed.
    sources.connection("corp-ldap", ConnectionState::Live);
    let checked = sources.enforce_staleness().unwrap();
    assert_eq!(checked.resumed, 1);
    assert!(engine.introspect(&admin.access_token).is_some());
    let kinds: HashSet<AuditKind> =
        engine.audit_page(0, 1000).unwrap().iter().map(|r| r.entry.kind).collect();
    assert!(kinds.contains(&AuditKind::SessionSuspended) && kinds.contains(&AuditKind::SessionResumed));
}

/// An import plans once: the plan it shows (with the sessions each removal
/// cuts, counted before the cut) is the plan it applied.
#[test]
fn an_import_shows_the_plan_it_applies() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), clock());
    let sources = engine.sources();
    let rows = |n: usize| (0..n).map(|i| user(&format!("e{i}"), &format!("hr{i}"), true)).collect::<Vec<_>>();
    let (shown, applied) = sources
        .import("hr", SourceUpdate::snapshot(rows(3)), |dry| (dry.plan.creates.len(), dry.would_hold))
        .unwrap();
    assert_eq!((shown, applied.created), ((3, false), 3));
    let token = engine.open_session("hr2", None, &Principal::admin()).unwrap().access_token;
    // hr2 left the file: the plan shows its deactivation and the session it
    // cuts, and the import applied exactly that.
    let (shown, applied) = sources
        .import("hr", SourceUpdate::snapshot(rows(2)), |dry| {
            dry.removals.iter().map(|r| (r.user_name.clone(), r.action, r.sessions)).collect::<Vec<_>>()
        })
        .unwrap();
    assert_eq!(shown, [("hr2".to_owned(), "deactivate", 1)]);
    assert_eq!((applied.deactivated, applied.created, applied.unchanged), (1, 0, 2));
    assert!(engine.introspect(&token).is_none(), "the cut the plan showed was made");
}
