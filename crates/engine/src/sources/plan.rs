//! Planning a source update against what the source owns: a pure function
//! of the owned objects, the update and a supply of fresh ids, so the plan
//! a dry run prints is the plan an import applies.

use std::collections::{BTreeSet, HashMap};

use lockstep_domain::{Group, GroupId, Identity, IdentityId, IdentityStatus, SourceId, Timestamp};

use super::record::{Removals, SourceRecord, SourceUpdate, UserRecord};

/// What a source does with an identity that disappeared from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Deactivate it (an HR file: a row that disappeared is a leaver whose
    /// record stays).
    Deactivate,
    /// Delete it (LDAP: the entry is gone).
    Delete,
}

impl Removal {
    /// The stable name (`deactivate`, `delete`).
    pub fn as_str(self) -> &'static str {
        match self {
            Removal::Deactivate => "deactivate",
            Removal::Delete => "delete",
        }
    }
}

/// The directory writes one update needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// New identities (fresh ids, owned by the source).
    pub creates: Vec<Identity>,
    /// Identities that change: (as stored, as they will be). Includes
    /// deactivations by a record that became inactive.
    pub updates: Vec<(Identity, Identity)>,
    /// Identities removed at the source: (as stored, as they will be —
    /// disabled or deprovisioned).
    pub removals: Vec<(Identity, Identity)>,
    /// New groups.
    pub group_creates: Vec<Group>,
    /// Groups that change: (as stored, as they will be).
    pub group_updates: Vec<(Group, Group)>,
    /// Groups removed at the source.
    pub group_deletes: Vec<Group>,
    /// Records that match what is stored.
    pub unchanged: usize,
    /// Records that cannot be applied, by key, with why.
    pub rejected: Vec<(String, String)>,
}

impl Plan {
    /// Identities the plan takes access from: removals, and updates that
    /// deactivate (what the circuit breaker counts).
    pub fn losses(&self) -> impl Iterator<Item = &Identity> {
        self.removals.iter().map(|(before, _)| before).chain(
            self.updates
                .iter()
                .filter(|(before, after)| {
                    before.status == IdentityStatus::Active && after.status != IdentityStatus::Active
                })
                .map(|(before, _)| before),
        )
    }

    /// Whether the plan writes nothing.
    pub fn is_empty(&self) -> bool {
        self.creates.is_empty()
            && self.updates.is_empty()
            && self.removals.is_empty()
            && self.group_creates.is_empty()
            && self.group_updates.is_empty()
            && self.group_deletes.is_empty()
    }
}

/// Longest identifier and single-line value a source may set (SCIM's own
/// limits are tighter by default; a source is trusted more, not blindly).
const MAX_IDENTIFIER: usize = 1024;
const MAX_TEXT: usize = 4096;

/// Why a user record cannot be applied, if it cannot: the same identifier
/// rules as SCIM (no control or invisible characters, no empty name).
fn invalid(user: &UserRecord) -> Option<String> {
    use lockstep_domain::text::{check_identifier, check_single_line};
    if user.key.is_empty() {
        return Some("the key is empty".into());
    }
    if user.user_name.trim().is_empty() {
        return Some("userName: must not be empty".into());
    }
    if let Err(e) = check_identifier(&user.user_name, MAX_IDENTIFIER) {
        return Some(format!("userName: {e}"));
    }
    if let Some(Err(e)) = user.display_name.as_deref().map(|d| check_single_line(d, MAX_TEXT)) {
        return Some(format!("displayName: {e}"));
    }
    user.emails.iter().find_map(|m| check_single_line(m, MAX_TEXT).err().map(|e| format!("email: {e}")))
}

/// Everything [`plan`] reads.
#[derive(Debug)]
pub struct Owned<'a> {
    /// The source.
    pub source: &'a SourceId,
    /// Its live identities.
    pub identities: &'a [Identity],
    /// Its groups.
    pub groups: &'a [Group],
    /// What it does with an identity that disappeared.
    pub removal: Removal,
    /// The time the writes are stamped with.
    pub now: Timestamp,
}

/// Plans `update`. `new_identity` and `new_group` supply fresh ids.
pub fn plan(
    owned: &Owned<'_>,
    update: &SourceUpdate,
    new_identity: &mut dyn FnMut() -> Option<IdentityId>,
    new_group: &mut dyn FnMut() -> Option<GroupId>,
) -> Plan {
    let mut out = Plan::default();
    let by_key: HashMap<&str, &Identity> =
        owned.identities.iter().filter_map(|i| i.external_id.as_deref().map(|k| (k, i))).collect();
    let groups_by_key: HashMap<&str, &Group> =
        owned.groups.iter().filter_map(|g| g.external_id.as_deref().map(|k| (k, g))).collect();
    // Ids of every user key the update leaves in place, new ones included,
    // so owners and group members can name users created by this update.
    let mut ids: HashMap<String, IdentityId> = by_key.iter().map(|(k, i)| ((*k).to_owned(), i.id)).collect();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let users: Vec<&UserRecord> = update
        .upserts
        .iter()
        .filter_map(|r| match r {
            SourceRecord::User(u) => Some(u),
            SourceRecord::Group(_) => None,
        })
        .collect();
    for user in &users {
        if !seen.insert(user.key.as_str()) {
            out.rejected.push((user.key.clone(), "the key appears twice in one update".into()));
            continue;
        }
        if let Some(why) = invalid(user) {
            out.rejected.push((user.key.clone(), why));
            continue;
        }
        if !by_key.contains_key(user.key.as_str()) {
            match new_identity() {
                Some(id) => {
                    ids.insert(user.key.clone(), id);
                }
                None => out.rejected.push((user.key.clone(), "no identifier could be minted".into())),
            }
        }
    }
    let owners_of = |user: &UserRecord| -> Result<Vec<IdentityId>, String> {
        match &user.owner_key {
            None => Ok(Vec::new()),
            Some(key) => ids
                .get(key)
                .map(|id| vec![*id])
                .ok_or_else(|| format!("owner {key:?} is not an identity of this source")),
        }
    };
    let shape = |user: &UserRecord, base: Identity, owners: Vec<IdentityId>| Identity {
        user_name: user.user_name.clone(),
        external_id: Some(user.key.clone()),
        source: owned.source.clone(),
        display_name: user.display_name.clone(),
        kind: user.kind,
        owners,
        status: if user.active { IdentityStatus::Active } else { IdentityStatus::Disabled },
        emails: user.emails.clone(),
        profile: user.profile.clone(),
        ..base
    };
    for user in &users {
        if out.rejected.iter().any(|(k, _)| *k == user.key) {
            continue;
        }
        let owners = match owners_of(user) {
            Ok(owners) => owners,
            Err(why) => {
                out.rejected.push((user.key.clone(), why));
                continue;
            }
        };
        match by_key.get(user.key.as_str()) {
            Some(current) => {
                let next = shape(user, (*current).clone(), owners);
                if next == **current {
                    out.unchanged += 1;
                } else {
                    out.updates.push(((*current).clone(), next));
                }
            }
            None => {
                let Some(id) = ids.get(&user.key).copied() else { continue };
                let base = Identity {
                    created: owned.now,
                    modified: owned.now,
                    ..Identity::draft(id, String::new(), owned.source.clone())
                };
                out.creates.push(shape(user, base, owners));
            }
        }
    }
    // A new identity whose owner could not be resolved was rejected above:
    // forget its id so no group names it.
    for (key, _) in &out.rejected {
        if !by_key.contains_key(key.as_str()) {
            ids.remove(key);
        }
    }
    let removed_users: BTreeSet<&str> = match &update.removals {
        Removals::Keys(keys) => keys.iter().map(String::as_str).filter(|k| by_key.contains_key(k)).collect(),
        Removals::AllExcept { present } => {
            by_key.keys().copied().filter(|k| !seen.contains(k) && !present.contains(*k)).collect()
        }
    };
    for key in &removed_users {
        let Some(current) = by_key.get(key) else { continue };
        ids.remove(*key);
        let status = match owned.removal {
            Removal::Delete => IdentityStatus::Deprovisioned,
            Removal::Deactivate => IdentityStatus::Disabled,
        };
        if current.status == status {
            out.unchanged += 1;
            continue;
        }
        out.removals.push(((*current).clone(), Identity { status, ..(*current).clone() }));
    }
    // Groups.
    let mut seen_groups: BTreeSet<&str> = BTreeSet::new();
    for record in &update.upserts {
        let SourceRecord::Group(group) = record else { continue };
        if !seen_groups.insert(group.key.as_str()) {
            out.rejected.push((group.key.clone(), "the key appears twice in one update".into()));
            continue;
        }
        let mut members: Vec<IdentityId> =
            group.member_keys.iter().filter_map(|k| ids.get(k).copied()).collect();
        members.sort();
        members.dedup();
        match groups_by_key.get(group.key.as_str()) {
            Some(current) => {
                let next = Group { display_name: group.display_name.clone(), members, ..(*current).clone() };
                let mut stored = (*current).clone();
                stored.members.sort();
                if next == stored {
                    out.unchanged += 1;
                } else {
                    out.group_updates.push(((*current).clone(), next));
                }
            }
            None => match new_group() {
                Some(id) => out.group_creates.push(Group {
                    id,
                    display_name: group.display_name.clone(),
                    external_id: Some(group.key.clone()),
                    source: owned.source.clone(),
                    members,
                    version: 0,
                    created: owned.now,
                    modified: owned.now,
                }),
                None => out.rejected.push((group.key.clone(), "no identifier could be minted".into())),
            },
        }
    }
    let removed_groups: Vec<&Group> = match &update.removals {
        Removals::Keys(keys) => keys.iter().filter_map(|k| groups_by_key.get(k.as_str()).copied()).collect(),
        Removals::AllExcept { present } => owned
            .groups
            .iter()
            .filter(|g| {
                g.external_id.as_deref().is_some_and(|k| !seen_groups.contains(k) && !present.contains(k))
            })
            .collect(),
    };
    out.group_deletes.extend(removed_groups.into_iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use lockstep_domain::IdentityKind;
    use uuid::Uuid;

    use super::*;
    use crate::sources::record::GroupRecord;

    fn source() -> SourceId {
        SourceId::new("hr")
    }

    fn record(key: &str, name: &str, active: bool) -> SourceRecord {
        SourceRecord::User(UserRecord {
            key: key.into(),
            user_name: name.into(),
            display_name: None,
            emails: vec![format!("{name}@example.com")],
            active,
            kind: IdentityKind::Human,
            owner_key: None,
            profile: "{}".into(),
        })
    }

    fn stored(n: u128, key: &str, name: &str) -> Identity {
        Identity {
            external_id: Some(key.into()),
            emails: vec![format!("{name}@example.com")],
            version: 1,
            created: Timestamp(1),
            modified: Timestamp(1),
            ..Identity::draft(IdentityId::from_uuid(Uuid::from_u128(n)), name, source())
        }
    }

    fn run(identities: &[Identity], groups: &[Group], update: &SourceUpdate, removal: Removal) -> Plan {
        let src = source();
        let owned = Owned { source: &src, identities, groups, removal, now: Timestamp(10) };
        let mut n = 1000u128;
        let mut g = 5000u128;
        plan(
            &owned,
            update,
            &mut || {
                n += 1;
                Some(IdentityId::from_uuid(Uuid::from_u128(n)))
            },
            &mut || {
                g += 1;
                Some(GroupId::from_uuid(Uuid::from_u128(g)))
            },
        )
    }

    #[test]
    fn a_snapshot_creates_updates_and_removes_by_absence() {
        let have = [stored(1, "e1", "alice"), stored(2, "e2", "bob"), stored(3, "e3", "carol")];
        let update = SourceUpdate::snapshot(vec![
            record("e1", "alice", true),  // unchanged
            record("e2", "robert", true), // renamed (same key)
            record("e4", "dave", true),   // new
            record("e3", "carol", false), // deactivated by the record
        ]);
        let p = run(&have, &[], &update, Removal::Deactivate);
        assert_eq!(p.unchanged, 1);
        assert_eq!(p.creates.iter().map(|i| i.user_name.as_str()).collect::<Vec<_>>(), ["dave"]);
        assert_eq!(p.creates[0].source, source());
        assert_eq!(p.creates[0].external_id.as_deref(), Some("e4"));
        let updated: Vec<_> = p.updates.iter().map(|(_, a)| (a.user_name.as_str(), a.status)).collect();
        assert_eq!(updated, [("robert", IdentityStatus::Active), ("carol", IdentityStatus::Disabled)]);
        assert!(p.removals.is_empty());
        assert_eq!(p.losses().count(), 1);
        // Absence removes.
        let p = run(&have, &[], &SourceUpdate::snapshot(vec![record("e1", "alice", true)]), Removal::Delete);
        let removed: Vec<_> = p.removals.iter().map(|(_, a)| (a.user_name.as_str(), a.status)).collect();
        assert_eq!(
            removed,
            [("bob", IdentityStatus::Deprovisioned), ("carol", IdentityStatus::Deprovisioned)]
        );
    }

    #[test]
    fn present_keys_stay_and_deltas_touch_only_what_they_name() {
        let have = [stored(1, "e1", "alice"), stored(2, "e2", "bob")];
        let mut update = SourceUpdate::snapshot(Vec::new());
        update.removals = Removals::AllExcept { present: ["e1".to_owned()].into() };
        let p = run(&have, &[], &update, Removal::Delete);
        assert_eq!(p.removals.len(), 1);
        assert_eq!(p.removals[0].0.user_name, "bob");
        let p = run(
            &have,
            &[],
            &SourceUpdate::delta(Vec::new(), vec!["e2".into(), "unknown".into()]),
            Removal::Delete,
        );
        assert_eq!(p.removals.len(), 1);
        assert!(p.creates.is_empty() && p.updates.is_empty());
    }

    #[test]
    fn groups_name_members_by_key_including_new_users() {
        let have = [stored(1, "e1", "alice")];
        let group = |members: &[&str]| {
            SourceRecord::Group(GroupRecord {
                key: "g1".into(),
                display_name: "admins".into(),
                member_keys: members.iter().map(|m| (*m).to_owned()).collect(),
            })
        };
        let update =
            SourceUpdate::delta(vec![record("e9", "zed", true), group(&["e1", "e9", "nobody"])], Vec::new());
        let p = run(&have, &[], &update, Removal::Delete);
        assert_eq!(p.group_creates.len(), 1);
        let zed = p.creates[0].id;
        let mut expect = vec![have[0].id, zed];
        expect.sort();
        assert_eq!(p.group_creates[0].members, expect);
        // Stored group: a member removed by key is dropped from it.
        let stored_group = Group { version: 1, ..p.group_creates[0].clone() };
        let p = run(
            &have,
            std::slice::from_ref(&stored_group),
            &SourceUpdate::delta(vec![group(&["e1"])], Vec::new()),
            Removal::Delete,
        );
        assert_eq!(p.group_updates.len(), 1);
        assert_eq!(p.group_updates[0].1.members, vec![have[0].id]);
        let p =
            run(&have, &[stored_group], &SourceUpdate::delta(Vec::new(), vec!["g1".into()]), Removal::Delete);
        assert_eq!(p.group_deletes.len(), 1);
    }

    #[test]
    fn owners_resolve_within_the_source_or_the_record_is_refused() {
        let have = [stored(1, "e1", "alice")];
        let mut svc = record("s1", "svc", true);
        let mut orphan = record("s2", "orphan", true);
        if let SourceRecord::User(u) = &mut svc {
            u.kind = IdentityKind::ServiceAccount;
            u.owner_key = Some("e1".into());
        }
        if let SourceRecord::User(u) = &mut orphan {
            u.owner_key = Some("missing".into());
        }
        let p = run(&have, &[], &SourceUpdate::delta(vec![svc, orphan], Vec::new()), Removal::Delete);
        assert_eq!(p.creates.len(), 1);
        assert_eq!(p.creates[0].owners, vec![have[0].id]);
        assert_eq!(p.rejected.len(), 1);
        assert!(p.rejected[0].1.contains("missing"), "{:?}", p.rejected);
    }
}
