//! Directory checks.

use lockstep_domain::{
    ClientId, DirectoryChange, DirectoryEventId, Group, GroupId, Identity, IdentityStatus, Origin, SourceId,
    Subject, Tiers, Timestamp,
};
use uuid::Uuid;

use super::{create, ev, identity, identity_id, origin};
use crate::{
    DirectoryStore, GroupField, GroupFilter, GroupQuery, GroupWrite, IdentityField, IdentityFilter,
    IdentityQuery, IdentityWrite, NewEvent, StoreError,
};

// ---- directory checks -------------------------------------------------------

/// A source's objects are listed by source, never change source, and its
/// state commits with its writes (or alone) and reads back.
pub fn sources_own_their_objects_and_state<D: DirectoryStore>(d: &D) {
    let ldap = SourceId::new("corp-ldap");
    create(d, 0, "scim-user");
    let mut mine = identity(1, "ldap-user");
    mine.source = ldap.clone();
    mine.external_id = Some("uuid-1".into());
    let state = |cursor: &[u8], at: i64| crate::SourceState {
        source: ldap.clone(),
        cursor: Some(cursor.to_vec()),
        complete_at: Some(Timestamp(at)),
        held: Some("held".into()),
        updated: Timestamp(at),
    };
    let write = |identity: Identity, expected_version| IdentityWrite {
        identity,
        tiers: Tiers::STANDARD,
        fanout: Vec::new(),
        expected_version,
        changes: vec![DirectoryChange::IdentityCreated],
        origin: Origin { source: ldap.clone(), client: None, source_ref: Some("uuid-1".into()) },
        at: Timestamp(10),
    };
    assert_eq!(d.source_state(&ldap).unwrap(), None);
    let results = d.commit_source(vec![write(mine.clone(), None)], Some(state(b"c1", 10))).unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(d.source_state(&ldap).unwrap(), Some(state(b"c1", 10)));
    let owned = d.source_identities(&ldap).unwrap();
    assert_eq!(owned.iter().map(|i| i.user_name.as_str()).collect::<Vec<_>>(), ["ldap-user"]);
    assert_eq!(owned[0].source, ldap);
    assert!(d.source_identities(&SourceId::new("other")).unwrap().is_empty());
    let by_key = d.source_identities_by_key(&ldap, &["uuid-1".into(), "nope".into()]).unwrap();
    assert_eq!(by_key.iter().map(|i| i.id).collect::<Vec<_>>(), [mine.id]);
    assert!(d.source_identities_by_key(&SourceId::scim(), &["ext-1".into()]).unwrap().is_empty());
    assert_eq!(d.count_source_identities(&ldap).unwrap(), 1);
    // The cursor alone (nothing to apply).
    d.commit_source(Vec::new(), Some(state(b"c2", 20))).unwrap();
    assert_eq!(d.source_state(&ldap).unwrap().unwrap().cursor.as_deref(), Some(&b"c2"[..]));
    // A write cannot move an identity to another source.
    let mut moved = owned[0].clone();
    moved.source = SourceId::scim();
    let results = d.commit_source(vec![write(moved, Some(1))], None).unwrap();
    assert!(results[0].is_err(), "the source of an identity changed");
    assert_eq!(d.identity(mine.id).unwrap().unwrap().source, ldap);
    // A group write carries the state too.
    let gid = GroupId::from_uuid(Uuid::from_u128(77));
    d.commit_group(GroupWrite {
        id: gid,
        group: Some(Group {
            id: gid,
            display_name: "ldap-group".into(),
            external_id: Some("uuid-g".into()),
            source: ldap.clone(),
            members: vec![mine.id],
            version: 0,
            created: Timestamp(30),
            modified: Timestamp(30),
        }),
        expected_version: None,
        events: vec![NewEvent {
            subject: Subject::Group { id: gid, display_name: "ldap-group".into() },
            change: DirectoryChange::GroupCreated,
            caused_by: None,
        }],
        origin: origin(),
        at: Timestamp(30),
        state: Some(state(b"c3", 30)),
    })
    .unwrap();
    assert_eq!(d.source_state(&ldap).unwrap(), Some(state(b"c3", 30)));
    let groups = d.source_groups(&ldap).unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!((groups[0].source.clone(), groups[0].members.clone()), (ldap.clone(), vec![mine.id]));
    assert_eq!(d.count_source_groups(&ldap).unwrap(), 1);
    let by_key = d.source_groups_by_key(&ldap, &["uuid-g".into()]).unwrap();
    assert_eq!(by_key.len(), 1);
    assert!(d.source_groups_by_key(&ldap, &["other".into()]).unwrap().is_empty());
}

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
            tiers: Tiers::STANDARD,
            fanout: Vec::new(),
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
    assert_eq!(d.identity(created.id).unwrap(), Some(changed.clone()));
    // The writer's own reads see the same committed state.
    assert_eq!(d.identity_to_write(created.id).unwrap(), Some(changed));
    assert_eq!(d.identity_to_write(identity_id(77)).unwrap(), None);
}

pub fn user_names_are_unique_case_insensitively<D: DirectoryStore>(d: &D) {
    create(d, 0, "bob");
    let err = d
        .commit_identity(IdentityWrite {
            identity: identity(1, "BOB"),
            tiers: Tiers::STANDARD,
            fanout: Vec::new(),
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
        tiers: Tiers::STANDARD,
        fanout: Vec::new(),
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
    // Bringing the tombstone back under its old name, now taken, is a
    // conflict that writes nothing (the name is unchanged on the row; the
    // check must not hang on a rename).
    let mut revived = d.identity(identity_id(0)).unwrap().unwrap();
    revived.status = IdentityStatus::Active;
    let err = d
        .commit_identity(IdentityWrite {
            identity: revived,
            tiers: Tiers::STANDARD,
            fanout: Vec::new(),
            expected_version: Some(2),
            changes: vec![DirectoryChange::IdentityUpdated { changed: vec!["active".into()] }],
            origin: origin(),
            at: Timestamp(6),
        })
        .unwrap_err();
    assert_eq!(err, StoreError::Conflict { field: "userName", value: "bob".into() });
    let kept = d.identity(identity_id(0)).unwrap().unwrap();
    assert_eq!((kept.status, kept.version), (IdentityStatus::Deprovisioned, 2));
    assert_eq!(d.live_identity_by_user_name("bob").unwrap().unwrap().id, identity_id(1));
}

pub fn stale_versions_are_refused_without_partial_write<D: DirectoryStore>(d: &D) {
    let alice = create(d, 0, "alice");
    let mut renamed = alice.clone();
    renamed.user_name = "alice2".into();
    let err = d
        .commit_identity(IdentityWrite {
            identity: renamed.clone(),
            tiers: Tiers::STANDARD,
            fanout: Vec::new(),
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
            tiers: Tiers::STANDARD,
            fanout: Vec::new(),
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

/// A batch (`begin_batch`) reads through the `_to_write` reads what the
/// last commit left and ends with its next commit; one that commits nothing
/// ends with `end_batch` and leaves nothing behind; a refused commit in a
/// batch writes nothing and ends it. Writes after each work as usual.
pub fn batches_read_then_commit_or_end<D: DirectoryStore>(d: &D) {
    let write = |identity: Identity, expected_version: Option<u64>| IdentityWrite {
        identity,
        tiers: Tiers::STANDARD,
        fanout: Vec::new(),
        expected_version,
        changes: vec![if expected_version.is_some() {
            DirectoryChange::IdentityUpdated { changed: vec!["userName".into()] }
        } else {
            DirectoryChange::IdentityCreated
        }],
        origin: origin(),
        at: Timestamp(5),
    };
    let alice = create(d, 0, "alice");
    d.begin_batch().unwrap();
    assert_eq!(d.identity_to_write(alice.id).unwrap(), Some(alice.clone()));
    let results = d.commit_identities(vec![write(identity(1, "bob"), None)]).unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    d.end_batch();
    assert!(d.live_identity_by_user_name("bob").unwrap().is_some(), "the batch committed");

    d.begin_batch().unwrap();
    assert!(d.identity_to_write(identity_id(1)).unwrap().is_some());
    d.end_batch();
    create(d, 2, "carol");
    assert_eq!(d.events_after(None, 10).unwrap().len(), 3);

    d.begin_batch().unwrap();
    let mut renamed = alice.clone();
    renamed.user_name = "alice2".into();
    let stale = d.commit_identity(write(renamed, Some(9))).unwrap_err();
    assert!(matches!(stale, StoreError::VersionMismatch { .. }), "{stale:?}");
    d.end_batch();
    assert_eq!(d.identity(alice.id).unwrap(), Some(alice));
    create(d, 3, "dave");
    assert_eq!(d.events_after(None, 10).unwrap().len(), 4);
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
            tiers: Tiers::STANDARD,
            fanout: Vec::new(),
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
        tiers: Tiers::STANDARD,
        fanout: Vec::new(),
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
                tiers: Tiers::STANDARD,
                fanout: Vec::new(),
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
        source: lockstep_domain::SourceId::scim(),
        members: vec![b.id, a.id, a.id],
        version: 0,
        created: Timestamp(5),
        modified: Timestamp(5),
    };
    let added = |who: &Identity| {
        ev(
            Subject::of_identity(who, Tiers::STANDARD),
            DirectoryChange::AddedToGroup { group: gid, group_name: "Eng".into() },
        )
    };
    let committed = d
        .commit_group(GroupWrite {
            id: gid,
            group: Some(group),
            expected_version: None,
            events: vec![ev(subject.clone(), DirectoryChange::GroupCreated), added(&a), added(&b)],
            origin: origin(),
            at: Timestamp(5),
            state: None,
        })
        .unwrap();
    let stored = committed.group.unwrap();
    assert_eq!(stored.version, 1);
    let mut expected_members = vec![a.id, b.id];
    expected_members.sort();
    assert_eq!(stored.members, expected_members, "sorted, without duplicates");
    assert_eq!(d.group(gid).unwrap(), Some(stored.clone()));
    assert_eq!(d.groups_of(a.id).unwrap(), vec![(gid, "Eng".to_owned())]);
    assert_eq!(d.groups_of_to_write(a.id).unwrap(), vec![(gid, "Eng".to_owned())]);
    let q = |filter| d.list_groups(&GroupQuery { filter, offset: 0, limit: 10 }).unwrap().total;
    assert_eq!(q(GroupFilter::eq(GroupField::DisplayName, "eng")), 1);
    assert_eq!(q(GroupFilter::eq(GroupField::ExternalId, "G1")), 0);
    assert_eq!(q(GroupFilter::eq(GroupField::Id, gid.to_string())), 1);
    assert_eq!(q(GroupFilter::All), 1);
    let events = d.events_after(Some(DirectoryEventId(2)), 10).unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(d.events_after_to_write(Some(DirectoryEventId(2)), 10).unwrap(), events);
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
            events: vec![ev(subject.clone(), DirectoryChange::GroupUpdated { changed: vec![] })],
            origin: origin(),
            at: Timestamp(6),
            state: None,
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
        tiers: Tiers::STANDARD,
        fanout: Vec::new(),
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
                ev(
                    Subject::of_identity(&a, Tiers::STANDARD),
                    DirectoryChange::RemovedFromGroup { group: gid, group_name: "Eng".into() },
                ),
                ev(subject, DirectoryChange::GroupDeleted),
            ],
            origin: origin(),
            at: Timestamp(8),
            state: None,
        })
        .unwrap();
    assert_eq!(deleted.group, None);
    assert_eq!(d.group(gid).unwrap(), None);
    assert!(d.groups_of(a.id).unwrap().is_empty());
    assert!(d.groups_of_to_write(a.id).unwrap().is_empty());
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

/// Owners, the risk tier and the subject's tiers round-trip; an owner's
/// write can fan out to the identities it owns, each event citing its
/// cause, atomically with the write.
pub fn owners_tiers_and_fanout_causes<D: DirectoryStore>(d: &D) {
    use lockstep_domain::{IdentityKind, RiskTier};
    let owner = create(d, 0, "owner");
    let mut sa = identity(1, "robot");
    sa.kind = IdentityKind::ServiceAccount;
    sa.owners = vec![owner.id];
    sa.risk_tier = Some(RiskTier::Privileged);
    let both = Tiers { privileged: true, non_human: true };
    let sa = d
        .commit_identity(IdentityWrite {
            identity: sa,
            tiers: both,
            expected_version: None,
            changes: vec![DirectoryChange::IdentityCreated],
            fanout: Vec::new(),
            origin: origin(),
            at: Timestamp(2),
        })
        .unwrap();
    assert_eq!(sa.events[0].subject.tiers(), both);
    let sa = sa.identity;
    assert_eq!(d.identity(sa.id).unwrap(), Some(sa.clone()));
    assert_eq!(d.owned_by(owner.id).unwrap(), vec![sa.clone()]);
    assert_eq!(d.owned_by_to_write(owner.id).unwrap(), vec![sa.clone()]);
    assert!(d.owned_by(sa.id).unwrap().is_empty());
    let mut gone = owner.clone();
    gone.status = IdentityStatus::Disabled;
    let write = |fanout: Vec<NewEvent>| IdentityWrite {
        identity: gone.clone(),
        tiers: Tiers::STANDARD,
        expected_version: Some(1),
        changes: vec![DirectoryChange::IdentityDeactivated {
            from: IdentityStatus::Active,
            to: IdentityStatus::Disabled,
        }],
        fanout,
        origin: origin(),
        at: Timestamp(3),
    };
    let lost = |caused_by| NewEvent {
        subject: Subject::of_identity(&sa, both),
        change: DirectoryChange::OwnerLost { owner: Some(owner.id) },
        caused_by,
    };
    // A fan-out event cannot cite itself or a later event: nothing is written.
    let err = d.commit_identity(write(vec![lost(Some(1))])).unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert_eq!(d.identity(owner.id).unwrap(), Some(owner.clone()));
    assert_eq!(d.events_after(None, 100).unwrap().len(), 2);
    let committed = d.commit_identity(write(vec![lost(Some(0))])).unwrap();
    let [deactivated, owner_lost] = &committed.events[..] else { panic!("{:?}", committed.events) };
    assert_eq!(owner_lost.cause, Some(deactivated.id));
    assert_eq!(owner_lost.subject.identity(), Some(sa.id));
    assert_eq!(deactivated.cause, None);
    assert_eq!(d.event(owner_lost.id).unwrap().as_ref(), Some(owner_lost));
    assert_eq!(d.event(DirectoryEventId(99)).unwrap(), None);
    assert_eq!(d.events_caused_by(deactivated.id).unwrap(), vec![owner_lost.clone()]);
    assert_eq!(d.events_after(Some(deactivated.id), 10).unwrap(), vec![owner_lost.clone()]);
    // A deleted identity is no longer listed as owned.
    let mut deleted = sa.clone();
    deleted.status = IdentityStatus::Deprovisioned;
    d.commit_identity(IdentityWrite {
        identity: deleted,
        tiers: both,
        expected_version: Some(1),
        changes: vec![DirectoryChange::IdentityDeleted],
        fanout: Vec::new(),
        origin: Origin {
            source: SourceId::new("scim"),
            client: Some(ClientId::from_uuid(Uuid::from_u128(4))),
            source_ref: None,
        },
        at: Timestamp(4),
    })
    .unwrap();
    assert!(d.owned_by(owner.id).unwrap().is_empty());
    assert!(d.owned_by_to_write(owner.id).unwrap().is_empty());
}

/// Several identities with their groups, read together, in the order asked.
pub fn identities_with_groups_in_order<D: DirectoryStore>(d: &D) {
    let a = create(d, 0, "a");
    let mut b = super::identity(1, "b");
    b.kind = lockstep_domain::IdentityKind::ServiceAccount;
    b.risk_tier = Some(lockstep_domain::RiskTier::Privileged);
    let b = super::commit_new(d, b);
    let gid = GroupId::from_uuid(Uuid::from_u128(100));
    d.commit_group(GroupWrite {
        id: gid,
        group: Some(Group {
            id: gid,
            display_name: "Ops".into(),
            external_id: None,
            source: lockstep_domain::SourceId::scim(),
            members: vec![b.id],
            version: 0,
            created: Timestamp(5),
            modified: Timestamp(5),
        }),
        expected_version: None,
        events: vec![super::ev(
            Subject::Group { id: gid, display_name: "Ops".into() },
            DirectoryChange::GroupCreated,
        )],
        origin: origin(),
        at: Timestamp(5),
        state: None,
    })
    .unwrap();
    let read = d.identities_with_groups(&[b.id, identity_id(9), a.id]).unwrap();
    assert_eq!(read, vec![(b.clone(), vec![(gid, "Ops".to_owned())]), (a.clone(), vec![])]);
    // The lean read start-up uses agrees with the whole one.
    let lean = d.claim_inputs(&[b.id, identity_id(9), a.id]).unwrap();
    let whole: Vec<crate::ClaimInputs> = read
        .into_iter()
        .map(|(i, groups)| crate::ClaimInputs {
            id: i.id,
            user_name: i.user_name,
            kind: i.kind,
            risk_tier: i.risk_tier,
            groups,
        })
        .collect();
    assert_eq!(lean, whole);
}
