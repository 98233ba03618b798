//! The conformance suite every backend runs.
//!
//! Each check takes freshly opened, empty stores. `model_check_*` drive a
//! backend and the in-memory model with the same random operation sequence
//! and require identical observable results. A backend's test binary calls
//! [`crate::conformance_suite!`] with a function that opens empty stores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use lockstep_domain::{
    ApiClient, AuditEntry, AuditKind, ClientId, CredentialKind, DirectoryChange, DirectoryEventId, Group,
    GroupId, Identity, IdentityId, IdentityKind, IdentityStatus, Origin, RevocationReason, Scope, Session,
    SessionId, SessionState, SourceId, Subject, Timestamp, TokenHash,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use uuid::Uuid;

use crate::{
    CredentialStore, DirectoryStore, Filter, GroupField, GroupFilter, GroupQuery, GroupWrite, IdentityField,
    IdentityFilter, IdentityQuery, IdentityWrite, MemoryDirectory, MemorySessions, SessionBatch,
    SessionStore, SessionUpdate, StoreError, TextOp, verify_chain,
};

pub fn identity_id(n: u128) -> IdentityId {
    IdentityId::from_uuid(Uuid::from_u128(n + 1))
}

pub fn session_id(n: u128) -> SessionId {
    SessionId::from_uuid(Uuid::from_u128(n + 1))
}

pub fn origin() -> Origin {
    Origin { source: SourceId::new("scim"), client: None, source_ref: Some("ext-1".into()) }
}

pub fn identity(n: u128, user_name: &str) -> Identity {
    Identity {
        id: identity_id(n),
        user_name: user_name.into(),
        external_id: Some(format!("ext-{n}")),
        display_name: Some(format!("User {n}")),
        kind: IdentityKind::Human,
        owner: None,
        status: IdentityStatus::Active,
        emails: Vec::new(),
        profile: "{\"name\":{\"givenName\":\"Ann\"}}".into(),
        version: 0,
        created: Timestamp(1_000),
        modified: Timestamp(1_000),
    }
}

pub fn create<D: DirectoryStore + ?Sized>(d: &D, n: u128, user_name: &str) -> Identity {
    d.commit_identity(IdentityWrite {
        identity: identity(n, user_name),
        expected_version: None,
        changes: vec![DirectoryChange::IdentityCreated],
        origin: origin(),
        at: Timestamp(1_000),
    })
    .unwrap()
    .identity
}

pub fn session(n: u128, who: IdentityId, expires: i64) -> Session {
    Session {
        id: session_id(n),
        identity: who,
        kind: CredentialKind::AccessToken,
        token_hash: TokenHash([n as u8; 32]),
        client: Some(ClientId::from_uuid(Uuid::from_u128(77))),
        user_name: "alice".into(),
        claims_version: 1,
        issued_at: Timestamp(10),
        expires_at: Timestamp(expires),
        state: SessionState::Active,
    }
}

pub fn audit(kind: AuditKind, session: Option<SessionId>) -> AuditEntry {
    AuditEntry {
        at: Timestamp(42),
        kind,
        identity: Some(identity_id(0)),
        user_name: Some("alice".into()),
        session,
        directory_event: None,
        actor: "test".into(),
        detail: "because".into(),
    }
}

// ---- directory checks -------------------------------------------------------

pub fn identity_round_trip<D: DirectoryStore>(d: &D) {
    let created = create(d, 0, "Alice");
    assert_eq!(created.version, 1);
    assert_eq!(d.identity(created.id).unwrap(), Some(created.clone()));
    assert_eq!(d.live_identity_by_user_name("aLiCe").unwrap(), Some(created.clone()));
    let mut changed = created.clone();
    changed.display_name = None;
    changed.profile = "{}".into();
    changed.status = IdentityStatus::Disabled;
    changed.modified = Timestamp(2_000);
    let committed = d
        .commit_identity(IdentityWrite {
            identity: changed.clone(),
            expected_version: Some(1),
            changes: vec![DirectoryChange::IdentityDeactivated {
                from: IdentityStatus::Active,
                to: IdentityStatus::Disabled,
            }],
            origin: origin(),
            at: Timestamp(2_000),
        })
        .unwrap();
    assert_eq!(committed.identity.version, 2);
    changed.version = 2;
    assert_eq!(d.identity(created.id).unwrap(), Some(changed));
}

pub fn user_names_are_unique_case_insensitively<D: DirectoryStore>(d: &D) {
    create(d, 0, "bob");
    let err = d
        .commit_identity(IdentityWrite {
            identity: identity(1, "BOB"),
            expected_version: None,
            changes: vec![DirectoryChange::IdentityCreated],
            origin: origin(),
            at: Timestamp(1),
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { field: "userName", .. }), "{err:?}");
    assert_eq!(d.identity(identity_id(1)).unwrap(), None, "no partial write");
    assert!(d.events_after(None, 10).unwrap().len() == 1, "no event for the failed write");
}

pub fn tombstones_free_the_user_name<D: DirectoryStore>(d: &D) {
    let mut bob = create(d, 0, "bob");
    bob.status = IdentityStatus::Deprovisioned;
    d.commit_identity(IdentityWrite {
        identity: bob,
        expected_version: Some(1),
        changes: vec![DirectoryChange::IdentityDeleted],
        origin: origin(),
        at: Timestamp(5),
    })
    .unwrap();
    assert_eq!(d.live_identity_by_user_name("bob").unwrap(), None);
    assert!(d.deleted_user_name_exists("BOB").unwrap());
    assert!(d.identity(identity_id(0)).unwrap().is_some(), "tombstone kept");
    create(d, 1, "bob");
    assert_eq!(d.live_identity_by_user_name("bob").unwrap().unwrap().id, identity_id(1));
    let all =
        d.list_identities(&IdentityQuery { filter: IdentityFilter::All, offset: 0, limit: 10 }).unwrap();
    assert_eq!(all.total, 1, "listings exclude tombstones");
}

pub fn stale_versions_are_refused_without_partial_write<D: DirectoryStore>(d: &D) {
    let alice = create(d, 0, "alice");
    let mut renamed = alice.clone();
    renamed.user_name = "alice2".into();
    let err = d
        .commit_identity(IdentityWrite {
            identity: renamed.clone(),
            expected_version: Some(7),
            changes: vec![DirectoryChange::IdentityUpdated { changed: vec!["userName".into()] }],
            origin: origin(),
            at: Timestamp(3),
        })
        .unwrap_err();
    assert_eq!(err, StoreError::VersionMismatch { expected: Some(7), found: Some(1) });
    let err = d
        .commit_identity(IdentityWrite {
            identity: renamed,
            expected_version: None,
            changes: vec![DirectoryChange::IdentityCreated],
            origin: origin(),
            at: Timestamp(3),
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::VersionMismatch { .. }));
    assert_eq!(d.identity(alice.id).unwrap(), Some(alice));
    assert_eq!(d.events_after(None, 10).unwrap().len(), 1);
}

pub fn events_are_ordered_and_carry_their_origin<D: DirectoryStore>(d: &D) {
    let a = create(d, 0, "a");
    create(d, 1, "b");
    let mut a2 = a.clone();
    a2.user_name = "a2".into();
    a2.status = IdentityStatus::Suspended;
    let committed = d
        .commit_identity(IdentityWrite {
            identity: a2,
            expected_version: Some(1),
            changes: vec![
                DirectoryChange::IdentityUpdated { changed: vec!["userName".into()] },
                DirectoryChange::IdentityDeactivated {
                    from: IdentityStatus::Active,
                    to: IdentityStatus::Suspended,
                },
            ],
            origin: Origin {
                source: SourceId::new("ldap:corp"),
                client: Some(ClientId::from_uuid(Uuid::from_u128(5))),
                source_ref: Some("entryUUID-1".into()),
            },
            at: Timestamp(9),
        })
        .unwrap();
    assert_eq!(committed.events.len(), 2);
    let all = d.events_after(None, 100).unwrap();
    let ids: Vec<u64> = all.iter().map(|e| e.id.0).collect();
    assert_eq!(ids, vec![1, 2, 3, 4]);
    assert_eq!(all[2..], committed.events[..]);
    assert_eq!(all[3].origin.source.as_str(), "ldap:corp");
    assert_eq!(all[3].origin.source_ref.as_deref(), Some("entryUUID-1"));
    assert_eq!(all[3].subject.name(), "a2");
    assert_eq!(d.events_after(Some(DirectoryEventId(2)), 1).unwrap(), all[2..3].to_vec());
}

pub fn group_commit_isolates_failures<D: DirectoryStore>(d: &D) {
    let existing = create(d, 9, "taken");
    let write = |n: u128, name: &str| IdentityWrite {
        identity: identity(n, name),
        expected_version: None,
        changes: vec![DirectoryChange::IdentityCreated],
        origin: origin(),
        at: Timestamp(7),
    };
    let mut stale = existing.clone();
    stale.display_name = Some("changed".into());
    let results = d
        .commit_identities(vec![
            write(0, "a"),
            write(1, "TAKEN"),
            IdentityWrite {
                identity: stale,
                expected_version: Some(5),
                changes: vec![DirectoryChange::IdentityUpdated { changed: vec!["displayName".into()] }],
                origin: origin(),
                at: Timestamp(7),
            },
            write(2, "c"),
        ])
        .unwrap();
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(StoreError::Conflict { field: "userName", .. })), "{:?}", results[1]);
    assert!(matches!(results[2], Err(StoreError::VersionMismatch { .. })), "{:?}", results[2]);
    let c = results[3].as_ref().unwrap();
    assert_eq!(c.events[0].id, DirectoryEventId(3), "positions stay contiguous");
    assert_eq!(d.identity(identity_id(1)).unwrap(), None, "the failed write left nothing");
    assert_eq!(d.identity(existing.id).unwrap(), Some(existing), "nor did the stale one");
    let ids: Vec<u64> = d.events_after(None, 10).unwrap().iter().map(|e| e.id.0).collect();
    assert_eq!(ids, vec![1, 2, 3]);
}

pub fn groups_and_membership<D: DirectoryStore>(d: &D) {
    let a = create(d, 0, "a");
    let b = create(d, 1, "b");
    let gid = GroupId::from_uuid(Uuid::from_u128(100));
    let subject = Subject::Group { id: gid, display_name: "Eng".into() };
    let group = Group {
        id: gid,
        display_name: "Eng".into(),
        external_id: Some("g1".into()),
        members: vec![b.id, a.id, a.id],
        version: 0,
        created: Timestamp(5),
        modified: Timestamp(5),
    };
    let added = |who: &Identity| {
        (Subject::of_identity(who), DirectoryChange::AddedToGroup { group: gid, group_name: "Eng".into() })
    };
    let committed = d
        .commit_group(GroupWrite {
            id: gid,
            group: Some(group),
            expected_version: None,
            events: vec![(subject.clone(), DirectoryChange::GroupCreated), added(&a), added(&b)],
            origin: origin(),
            at: Timestamp(5),
        })
        .unwrap();
    let stored = committed.group.unwrap();
    assert_eq!(stored.version, 1);
    let mut expected_members = vec![a.id, b.id];
    expected_members.sort();
    assert_eq!(stored.members, expected_members, "sorted, without duplicates");
    assert_eq!(d.group(gid).unwrap(), Some(stored.clone()));
    assert_eq!(d.groups_of(a.id).unwrap(), vec![(gid, "Eng".to_owned())]);
    let q = |filter| d.list_groups(&GroupQuery { filter, offset: 0, limit: 10 }).unwrap().total;
    assert_eq!(q(GroupFilter::eq(GroupField::DisplayName, "eng")), 1);
    assert_eq!(q(GroupFilter::eq(GroupField::ExternalId, "G1")), 0);
    assert_eq!(q(GroupFilter::eq(GroupField::Id, gid.to_string())), 1);
    assert_eq!(q(GroupFilter::All), 1);
    let events = d.events_after(Some(DirectoryEventId(2)), 10).unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].subject, subject);
    assert_eq!(events[1].subject.identity(), Some(a.id));
    assert_eq!(events[1].change, DirectoryChange::AddedToGroup { group: gid, group_name: "Eng".into() });

    // An unknown member refuses the whole write.
    let mut bad = stored.clone();
    bad.members.push(identity_id(50));
    let err = d
        .commit_group(GroupWrite {
            id: gid,
            group: Some(bad),
            expected_version: Some(1),
            events: vec![(subject.clone(), DirectoryChange::GroupUpdated { changed: vec![] })],
            origin: origin(),
            at: Timestamp(6),
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(d.group(gid).unwrap(), Some(stored.clone()));
    assert_eq!(d.events_after(None, 100).unwrap().len(), 5);

    // A deleted identity no longer shows as a member.
    let mut gone = b.clone();
    gone.status = IdentityStatus::Deprovisioned;
    d.commit_identity(IdentityWrite {
        identity: gone,
        expected_version: Some(1),
        changes: vec![DirectoryChange::IdentityDeleted],
        origin: origin(),
        at: Timestamp(7),
    })
    .unwrap();
    assert_eq!(d.group(gid).unwrap().unwrap().members, vec![a.id]);

    // Deleting the group.
    let deleted = d
        .commit_group(GroupWrite {
            id: gid,
            group: None,
            expected_version: Some(1),
            events: vec![
                (
                    Subject::of_identity(&a),
                    DirectoryChange::RemovedFromGroup { group: gid, group_name: "Eng".into() },
                ),
                (subject, DirectoryChange::GroupDeleted),
            ],
            origin: origin(),
            at: Timestamp(8),
        })
        .unwrap();
    assert_eq!(deleted.group, None);
    assert_eq!(d.group(gid).unwrap(), None);
    assert!(d.groups_of(a.id).unwrap().is_empty());
    assert_eq!(q(GroupFilter::All), 0);
}

pub fn filters_and_paging<D: DirectoryStore>(d: &D) {
    for n in 0..5 {
        create(d, n, &format!("user{n}"));
    }
    let q = |filter, offset, limit| d.list_identities(&IdentityQuery { filter, offset, limit }).unwrap();
    let page = q(IdentityFilter::All, 1, 2);
    assert_eq!(page.total, 5);
    let names: Vec<_> = page.items.iter().map(|i| i.user_name.as_str()).collect();
    assert_eq!(names, ["user1", "user2"]);
    assert_eq!(q(IdentityFilter::eq(IdentityField::UserName, "USER3"), 0, 10).items[0].id, identity_id(3));
    assert_eq!(q(IdentityFilter::eq(IdentityField::ExternalId, "ext-4"), 0, 10).items[0].id, identity_id(4));
    assert_eq!(q(IdentityFilter::eq(IdentityField::ExternalId, "EXT-4"), 0, 10).total, 0);
    assert_eq!(q(IdentityFilter::eq(IdentityField::Id, identity_id(2).to_string()), 0, 10).total, 1);
    assert_eq!(q(IdentityFilter::All, 0, 0).items.len(), 0);
}

// ---- session checks ---------------------------------------------------------

pub fn sessions_round_trip<S: SessionStore>(s: &S) {
    let a = session(1, identity_id(0), 1_000);
    let b = session(2, identity_id(0), 50);
    let c = session(3, identity_id(1), 1_000);
    for x in [&a, &b, &c] {
        s.insert_session(x, audit(AuditKind::SessionCreated, Some(x.id))).unwrap();
    }
    assert_eq!(s.session(a.id).unwrap(), Some(a.clone()));
    assert_eq!(s.session_by_token(&a.token_hash).unwrap(), Some(a.clone()));
    assert_eq!(s.session_by_token(&TokenHash([99; 32])).unwrap(), None);
    assert_eq!(s.sessions_of(identity_id(0)).unwrap(), vec![a.clone(), b.clone()]);
    let mut live = Vec::new();
    s.for_each_live(Timestamp(100), &mut |x| live.push(x.id)).unwrap();
    assert_eq!(live, vec![a.id, c.id]);
    let dup = s.insert_session(&a, audit(AuditKind::SessionCreated, Some(a.id))).unwrap_err();
    assert!(matches!(dup, StoreError::Conflict { .. }));
}

pub fn batches_are_atomic_with_the_cursor<S: SessionStore>(s: &S) {
    let a = session(1, identity_id(0), 1_000);
    s.insert_session(&a, audit(AuditKind::SessionCreated, Some(a.id))).unwrap();
    assert_eq!(s.consumed().unwrap(), None);
    let revoked = SessionState::Revoked {
        at: Timestamp(20),
        reason: RevocationReason::IdentityDeactivated,
        cause: Some(DirectoryEventId(3)),
    };
    let batch = SessionBatch {
        replayable: false,
        consumed: Some(DirectoryEventId(3)),
        updates: vec![SessionUpdate { session: a.id, state: revoked, expires_at: None }],
        audit: vec![
            audit(AuditKind::IdentityDeactivated, None),
            audit(AuditKind::SessionRevoked, Some(a.id)),
        ],
    };
    let sealed = s.apply(batch.clone()).unwrap();
    assert_eq!(sealed.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(s.consumed().unwrap(), Some(DirectoryEventId(3)));
    assert_eq!(s.session(a.id).unwrap().unwrap().state, revoked);
    // Replaying the same batch (a crash before the caller saw the commit) is a no-op.
    assert!(s.apply(batch).unwrap().is_empty());
    assert_eq!(s.audit_after(0, 100).unwrap().len(), 3);
    // A batch naming a missing session writes nothing, cursor included.
    let bad = SessionBatch {
        replayable: false,
        consumed: Some(DirectoryEventId(4)),
        updates: vec![SessionUpdate { session: session_id(99), state: revoked, expires_at: None }],
        audit: vec![audit(AuditKind::SessionRevoked, None)],
    };
    assert!(matches!(s.apply(bad), Err(StoreError::NotFound(_))));
    assert_eq!(s.consumed().unwrap(), Some(DirectoryEventId(3)));
    assert_eq!(s.audit_after(0, 100).unwrap().len(), 3);
}

pub fn revoked_is_terminal<S: SessionStore>(s: &S) {
    let a = session(1, identity_id(0), 1_000);
    s.insert_session(&a, audit(AuditKind::SessionCreated, Some(a.id))).unwrap();
    let revoked =
        SessionState::Revoked { at: Timestamp(5), reason: RevocationReason::AdminRevoked, cause: None };
    s.apply(SessionBatch {
        replayable: false,
        consumed: None,
        updates: vec![SessionUpdate { session: a.id, state: revoked, expires_at: None }],
        audit: vec![],
    })
    .unwrap();
    s.apply(SessionBatch {
        replayable: false,
        consumed: None,
        updates: vec![SessionUpdate {
            session: a.id,
            state: SessionState::Active,
            expires_at: Some(Timestamp(9_999)),
        }],
        audit: vec![],
    })
    .unwrap();
    let stored = s.session(a.id).unwrap().unwrap();
    assert_eq!(stored.state, revoked);
    assert_eq!(stored.expires_at, Timestamp(1_000));
}

pub fn audit_chain_verifies_and_pages<S: SessionStore + CredentialStore>(s: &S) {
    for n in 0..7 {
        let x = session(n, identity_id(0), 1_000);
        s.insert_session(&x, audit(AuditKind::SessionCreated, Some(x.id))).unwrap();
    }
    s.insert_client(
        &ApiClient {
            id: ClientId::from_uuid(Uuid::from_u128(3)),
            name: "okta".into(),
            secret_hash: TokenHash([3; 32]),
            scopes: vec![Scope::Scim, Scope::Audit],
            created: Timestamp(1),
        },
        audit(AuditKind::ClientCreated, None),
    )
    .unwrap();
    let all = s.audit_after(0, 100).unwrap();
    assert_eq!(all.len(), 8);
    assert_eq!(verify_chain(all.clone()), Ok(8));
    assert_eq!(s.audit_after(3, 2).unwrap(), all[3..5].to_vec());
    let mut tampered = all;
    tampered[4].entry.detail = "edited".into();
    assert_eq!(verify_chain(tampered).unwrap_err().seq, 5);
}

pub fn credentials_round_trip<S: CredentialStore>(s: &S) {
    assert_eq!(s.admin_token_hash().unwrap(), None);
    s.set_admin_token_hash(TokenHash([1; 32])).unwrap();
    s.set_admin_token_hash(TokenHash([2; 32])).unwrap();
    assert_eq!(s.admin_token_hash().unwrap(), Some(TokenHash([2; 32])));
    let client = ApiClient {
        id: ClientId::from_uuid(Uuid::from_u128(3)),
        name: "okta".into(),
        secret_hash: TokenHash([3; 32]),
        scopes: vec![Scope::Scim, Scope::Introspect],
        created: Timestamp(1),
    };
    s.insert_client(&client, audit(AuditKind::ClientCreated, None)).unwrap();
    assert_eq!(s.clients().unwrap(), vec![client.clone()]);
    assert!(s.insert_client(&client, audit(AuditKind::ClientCreated, None)).is_err());
    assert_eq!(s.clients().unwrap().len(), 1);
    // Names are identifiers: unique under the identifier key, so a
    // look-alike (`ＯＫＴＡ`) cannot sit beside `okta` in a client list.
    let look_alike = ApiClient {
        id: ClientId::from_uuid(Uuid::from_u128(4)),
        name: "ＯＫＴＡ".into(),
        secret_hash: TokenHash([4; 32]),
        ..client.clone()
    };
    assert!(matches!(
        s.insert_client(&look_alike, audit(AuditKind::ClientCreated, None)),
        Err(StoreError::Conflict { field: "name", .. })
    ));
    assert_eq!(s.clients().unwrap().len(), 1);
}

// ---- model checks -----------------------------------------------------------

#[derive(Clone, Debug)]
enum DirOp {
    Create { n: u8, name: u8 },
    Update { n: u8, name: u8, status: u8, stale: bool },
    ByName { name: u8 },
    List { offset: u8, limit: u8 },
    Events { after: u8 },
}

fn dir_op() -> impl Strategy<Value = DirOp> {
    prop_oneof![
        (0u8..6, 0u8..4).prop_map(|(n, name)| DirOp::Create { n, name }),
        (0u8..6, 0u8..4, 0u8..4, any::<bool>())
            .prop_map(|(n, name, status, stale)| { DirOp::Update { n, name, status, stale } }),
        (0u8..4).prop_map(|name| DirOp::ByName { name }),
        (0u8..4, 0u8..4).prop_map(|(offset, limit)| DirOp::List { offset, limit }),
        (0u8..8).prop_map(|after| DirOp::Events { after }),
    ]
}

fn run_dir_op<D: DirectoryStore + ?Sized>(d: &D, op: &DirOp) -> String {
    let name = |k: u8| ["ann", "Ann", "bob", "cy"][k as usize].to_owned();
    match op {
        DirOp::Create { n, name: k } => format!(
            "{:?}",
            d.commit_identity(IdentityWrite {
                identity: identity(u128::from(*n), &name(*k)),
                expected_version: None,
                changes: vec![DirectoryChange::IdentityCreated],
                origin: origin(),
                at: Timestamp(1_000),
            })
        ),
        DirOp::Update { n, name: k, status, stale } => {
            let current = d.identity(identity_id(u128::from(*n))).unwrap();
            let Some(mut next) = current.clone() else {
                return "absent".into();
            };
            next.user_name = name(*k);
            next.status = IdentityStatus::ALL[*status as usize];
            let expected = if *stale { Some(next.version + 3) } else { Some(next.version) };
            let changes = lockstep_domain::diff_identity(current.as_ref(), &next);
            if changes.is_empty() {
                return "no change".into();
            }
            format!(
                "{:?}",
                d.commit_identity(IdentityWrite {
                    identity: next,
                    expected_version: expected,
                    changes,
                    origin: origin(),
                    at: Timestamp(2_000),
                })
            )
        }
        DirOp::ByName { name: k } => format!(
            "{:?} {:?}",
            d.live_identity_by_user_name(&name(*k)),
            d.deleted_user_name_exists(&name(*k))
        ),
        DirOp::List { offset, limit } => format!(
            "{:?}",
            d.list_identities(&IdentityQuery {
                filter: IdentityFilter::All,
                offset: usize::from(*offset),
                limit: usize::from(*limit),
            })
        ),
        DirOp::Events { after } => {
            format!("{:?}", d.events_after((*after > 0).then_some(DirectoryEventId(u64::from(*after))), 3))
        }
    }
}

/// Random operation sequences give the same results on `open()` as on the
/// in-memory model.
pub fn model_check_directory<D: DirectoryStore>(open: impl Fn() -> D, cases: u32) {
    let mut runner = TestRunner::new(Config { cases, ..Config::default() });
    runner
        .run(&prop::collection::vec(dir_op(), 1..25), |ops| {
            let model = MemoryDirectory::new();
            let real = open();
            for op in &ops {
                prop_assert_eq!(run_dir_op(&model, op), run_dir_op(&real, op), "op {:?}", op);
            }
            Ok(())
        })
        .unwrap();
}

/// Search keys of one generated identity.
#[derive(Clone, Debug)]
struct Keys {
    user_name: String,
    display_name: Option<String>,
    external_id: Option<String>,
    emails: Vec<String>,
    status: u8,
    kind: u8,
}

/// Short strings over an alphabet with case pairs, a non-ASCII letter and
/// e-mail punctuation, so that filters hit, miss and fold often.
fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!['a', 'A', 'b', 'é', 'É', '@', '.', '"']), 0..max)
        .prop_map(|cs| cs.into_iter().collect())
}

/// Field values from a small pool (plus random ones), so that operands
/// drawn from [`operand`] hit often, including through trigrams.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["abé", "ABÉ@x.org", "b@x.org", "x.org", "a", "É", "ab@x.org", "Ab\"a.b"])
            .prop_map(String::from),
        1 => text(7),
    ]
}

fn operand() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(vec!["x.or", "@x.", "bé", "é@x", "ab", "b@x.org", "ABÉ", "x.org", "b\"a", ""])
            .prop_map(String::from),
        2 => text(5),
        1 => prop::sample::select(vec!["true", "false", "human", "workload", "Service_Account"]).prop_map(String::from),
    ]
}

fn keys() -> impl Strategy<Value = Keys> {
    (
        value(),
        prop::option::of(value()),
        prop::option::of(value()),
        prop::collection::vec(value(), 0..3),
        0u8..4,
        0u8..4,
    )
        .prop_map(|(user_name, display_name, external_id, emails, status, kind)| Keys {
            user_name,
            display_name,
            external_id,
            emails,
            status,
            kind,
        })
}

fn search_filter() -> impl Strategy<Value = IdentityFilter> {
    let field = prop::sample::select(vec![
        IdentityField::Id,
        IdentityField::UserName,
        IdentityField::ExternalId,
        IdentityField::DisplayName,
        IdentityField::Email,
        IdentityField::Active,
        IdentityField::Kind,
    ]);
    let op = prop::sample::select(vec![
        TextOp::Eq,
        TextOp::StartsWith,
        TextOp::EndsWith,
        TextOp::Contains,
        TextOp::Gt,
        TextOp::Ge,
        TextOp::Lt,
        TextOp::Le,
    ]);
    let value = operand();
    let leaf = prop_oneof![
        Just(Filter::All),
        field.clone().prop_map(Filter::Present),
        (field, op, value).prop_map(|(field, op, value)| Filter::Text { field, op, value }),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::And),
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::Or),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
}

fn write_keys<D: DirectoryStore + ?Sized>(d: &D, n: u128, k: &Keys) {
    let current = d.identity(identity_id(n)).unwrap();
    let mut next = current.clone().unwrap_or_else(|| identity(n, ""));
    // Unique among live identities: the generated name plus the number.
    next.user_name = format!("{}{n}", k.user_name);
    next.display_name = k.display_name.clone();
    next.external_id = k.external_id.clone();
    next.emails = k.emails.clone();
    next.status =
        [IdentityStatus::Active, IdentityStatus::Suspended, IdentityStatus::Disabled, IdentityStatus::Active]
            [usize::from(k.status)];
    next.kind = IdentityKind::ALL[usize::from(k.kind)];
    let changes = lockstep_domain::diff_identity(current.as_ref(), &next);
    if changes.is_empty() {
        return;
    }
    d.commit_identity(IdentityWrite {
        expected_version: current.map(|c| c.version),
        identity: next,
        changes,
        origin: origin(),
        at: Timestamp(1_000),
    })
    .unwrap();
}

/// Random filters select the same identities, in the same order and with
/// the same total, on `open()` as on the model (whose [`Filter::holds`] is
/// the reference semantics), after creates and re-keying updates.
pub fn model_check_search<D: DirectoryStore>(open: impl Fn() -> D, cases: u32) {
    let mut runner = TestRunner::new(Config { cases, ..Config::default() });
    let input = (
        prop::collection::vec(keys(), 1..8),
        prop::collection::vec((0u8..8, keys()), 0..4),
        prop::collection::vec(search_filter(), 1..8),
    );
    runner
        .run(&input, |(created, updates, filters)| {
            let model = MemoryDirectory::new();
            let real = open();
            for d in [&model as &dyn DirectoryStore, &real as &dyn DirectoryStore] {
                for (n, k) in created.iter().enumerate() {
                    write_keys(d, n as u128, k);
                }
                for (n, k) in &updates {
                    if usize::from(*n) < created.len() {
                        write_keys(d, u128::from(*n), k);
                    }
                }
            }
            for filter in &filters {
                for (offset, limit) in [(0, 100), (1, 2)] {
                    let q = IdentityQuery { filter: filter.clone(), offset, limit };
                    let ids = |d: &dyn DirectoryStore| {
                        let page = d.list_identities(&q).unwrap();
                        (page.total, page.items.into_iter().map(|i| i.id).collect::<Vec<_>>())
                    };
                    prop_assert_eq!(
                        ids(&model),
                        ids(&real),
                        "filter {:?} window {:?}",
                        filter,
                        (offset, limit)
                    );
                }
            }
            Ok(())
        })
        .unwrap();
}

#[derive(Clone, Debug)]
enum SesOp {
    Insert { n: u8, who: u8, expires: u8 },
    Revoke { n: u8, consumed: Option<u8> },
    Shorten { n: u8, expires: u8 },
    Query { who: u8, now: u8 },
}

fn ses_op() -> impl Strategy<Value = SesOp> {
    prop_oneof![
        (0u8..8, 0u8..3, 0u8..10).prop_map(|(n, who, expires)| SesOp::Insert { n, who, expires }),
        (0u8..8, prop::option::of(0u8..6)).prop_map(|(n, consumed)| SesOp::Revoke { n, consumed }),
        (0u8..8, 0u8..10).prop_map(|(n, expires)| SesOp::Shorten { n, expires }),
        (0u8..3, 0u8..10).prop_map(|(who, now)| SesOp::Query { who, now }),
    ]
}

fn run_ses_op<S: SessionStore + ?Sized>(s: &S, op: &SesOp) -> String {
    let t = |x: u8| Timestamp(i64::from(x) * 100);
    match op {
        SesOp::Insert { n, who, expires } => {
            let x = session(u128::from(*n), identity_id(u128::from(*who)), t(*expires).0);
            format!("{:?}", s.insert_session(&x, audit(AuditKind::SessionCreated, Some(x.id))))
        }
        SesOp::Revoke { n, consumed } => format!(
            "{:?} {:?}",
            s.apply(SessionBatch {
                replayable: false,
                consumed: consumed.map(|c| DirectoryEventId(u64::from(c))),
                updates: vec![SessionUpdate {
                    session: session_id(u128::from(*n)),
                    state: SessionState::Revoked {
                        at: Timestamp(7),
                        reason: RevocationReason::IdentityDeleted,
                        cause: consumed.map(|c| DirectoryEventId(u64::from(c))),
                    },
                    expires_at: None,
                }],
                audit: vec![audit(AuditKind::SessionRevoked, Some(session_id(u128::from(*n))))],
            }),
            s.consumed()
        ),
        SesOp::Shorten { n, expires } => format!(
            "{:?}",
            s.apply(SessionBatch {
                replayable: false,
                consumed: None,
                updates: vec![SessionUpdate {
                    session: session_id(u128::from(*n)),
                    state: SessionState::NeedsRecheck,
                    expires_at: Some(t(*expires)),
                }],
                audit: vec![],
            })
        ),
        SesOp::Query { who, now } => {
            let mut live = Vec::new();
            s.for_each_live(t(*now), &mut |x| live.push(x)).unwrap();
            format!(
                "{:?} {:?} {:?}",
                s.sessions_of(identity_id(u128::from(*who))),
                live,
                s.audit_after(0, 1_000).map(|a| a.len())
            )
        }
    }
}

/// Random operation sequences give the same results on `open()` as on the
/// in-memory model, and the audit chain always verifies.
pub fn model_check_sessions<S: SessionStore>(open: impl Fn() -> S, cases: u32) {
    let mut runner = TestRunner::new(Config { cases, ..Config::default() });
    runner
        .run(&prop::collection::vec(ses_op(), 1..25), |ops| {
            let model = MemorySessions::new();
            let real = open();
            for op in &ops {
                prop_assert_eq!(run_ses_op(&model, op), run_ses_op(&real, op), "op {:?}", op);
            }
            let chain = real.audit_after(0, 10_000).unwrap();
            prop_assert!(verify_chain(chain).is_ok());
            Ok(())
        })
        .unwrap();
}

/// Generates one `#[test]` per conformance check. `$open_dir` and
/// `$open_sessions` are expressions that open fresh, empty stores.
#[macro_export]
macro_rules! conformance_suite {
    (directory: $open_dir:expr, sessions: $open_sessions:expr, cases: $cases:expr) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            use $crate::conformance as c;

            #[test]
            fn identity_round_trip() {
                c::identity_round_trip(&$open_dir);
            }
            #[test]
            fn user_names_are_unique_case_insensitively() {
                c::user_names_are_unique_case_insensitively(&$open_dir);
            }
            #[test]
            fn tombstones_free_the_user_name() {
                c::tombstones_free_the_user_name(&$open_dir);
            }
            #[test]
            fn stale_versions_are_refused_without_partial_write() {
                c::stale_versions_are_refused_without_partial_write(&$open_dir);
            }
            #[test]
            fn events_are_ordered_and_carry_their_origin() {
                c::events_are_ordered_and_carry_their_origin(&$open_dir);
            }
            #[test]
            fn filters_and_paging() {
                c::filters_and_paging(&$open_dir);
            }
            #[test]
            fn groups_and_membership() {
                c::groups_and_membership(&$open_dir);
            }
            #[test]
            fn group_commit_isolates_failures() {
                c::group_commit_isolates_failures(&$open_dir);
            }
            #[test]
            fn sessions_round_trip() {
                c::sessions_round_trip(&$open_sessions);
            }
            #[test]
            fn batches_are_atomic_with_the_cursor() {
                c::batches_are_atomic_with_the_cursor(&$open_sessions);
            }
            #[test]
            fn revoked_is_terminal() {
                c::revoked_is_terminal(&$open_sessions);
            }
            #[test]
            fn audit_chain_verifies_and_pages() {
                c::audit_chain_verifies_and_pages(&$open_sessions);
            }
            #[test]
            fn credentials_round_trip() {
                c::credentials_round_trip(&$open_sessions);
            }
            #[test]
            fn model_check_directory() {
                c::model_check_directory(|| $open_dir, $cases);
            }
            #[test]
            fn model_check_search() {
                // Cheap per case, and the space (filters × data) is large.
                c::model_check_search(|| $open_dir, $cases * 4);
            }
            #[test]
            fn model_check_sessions() {
                c::model_check_sessions(|| $open_sessions, $cases);
            }
        }
    };
}
