//! Group writes: the group's own events, and one membership event per
//! member that joined or left, applied through the bridge like any other
//! directory change (so a policy can act on a member losing a group).
//!
//! Group writes do not go through the group commit: they are rare next to
//! user writes, and one group write may name thousands of members.

use std::collections::HashMap;

use lockstep_domain::{
    DirectoryChange, DirectoryEvent, Group, GroupDiff, GroupId, IdentityId, IdentityStatus, Origin, Subject,
    diff_group,
};
use lockstep_store::{GroupWrite, NewEvent, SourceState, StoreError, UserWithGroups};

use crate::bridge::UpdateError;
use crate::{Engine, EngineError, EngineResult, WriterState, secrets};

/// The outcome of a group write, returned once its session impact is
/// committed.
#[derive(Debug, Clone)]
pub struct AppliedGroup {
    /// The group as stored (`None` after a deletion).
    pub group: Option<Group>,
    /// The directory events the write produced (empty: nothing changed).
    pub events: Vec<DirectoryEvent>,
    /// How many sessions the write revoked.
    pub revoked: usize,
}

/// Refuses a write to a group another source owns.
fn owned_by(group: &Group, origin: &Origin) -> EngineResult<()> {
    if group.source == origin.source {
        return Ok(());
    }
    Err(EngineError::OwnedBySource {
        what: format!("group {}", group.id),
        owner: group.source.to_string(),
        writer: origin.source.to_string(),
    })
}

impl Engine {
    /// A fresh group id.
    pub fn new_group_id(&self) -> EngineResult<GroupId> {
        Ok(GroupId::from_uuid(secrets::uuid_v7(self.clock.now(), self.entropy.as_ref())?))
    }

    /// A group, or `NotFound`.
    pub fn group(&self, id: GroupId) -> EngineResult<Group> {
        self.stores.directory.group(id)?.ok_or_else(|| EngineError::NotFound(format!("group {id}")))
    }

    /// Creates a group; every member must be a live identity.
    pub fn create_group(&self, mut draft: Group, origin: Origin) -> EngineResult<AppliedGroup> {
        let mut writer = self.lock_writer()?;
        let now = self.clock.now();
        draft.created = now;
        draft.modified = now;
        draft.version = 0;
        let id = draft.id;
        draft.source = origin.source.clone();
        self.write_group(&mut writer, id, None, Some(draft), origin, None)
    }

    /// Reads, changes and writes a group under the writer lock.
    pub fn update_group<E>(
        &self,
        id: GroupId,
        origin: Origin,
        if_match: Option<u64>,
        change: impl FnOnce(&Group) -> Result<Group, E>,
    ) -> Result<AppliedGroup, UpdateError<E>> {
        let mut writer = self.lock_writer()?;
        let current = self.group(id)?;
        owned_by(&current, &origin)?;
        crate::check_if_match(if_match, current.version)?;
        let mut next = change(&current).map_err(UpdateError::Rejected)?;
        next.id = current.id;
        next.source = current.source.clone();
        next.created = current.created;
        next.version = current.version;
        next.modified = self.clock.now();
        Ok(self.write_group(&mut writer, id, Some(current), Some(next), origin, None)?)
    }

    /// Deletes a group: every member gets a membership event first.
    pub fn delete_group(
        &self,
        id: GroupId,
        origin: Origin,
        if_match: Option<u64>,
    ) -> EngineResult<AppliedGroup> {
        self.delete_group_acknowledged(id, origin, if_match, None)
    }

    /// Deletes a group like [`Engine::delete_group`]; `ack`, if given, is
    /// called as soon as the members' session impact is in force and its
    /// cause durable, before the session store records it (see
    /// [`crate::EarlyAck`]), when the impact is large enough.
    pub fn delete_group_acknowledged(
        &self,
        id: GroupId,
        origin: Origin,
        if_match: Option<u64>,
        ack: Option<crate::EarlyAck>,
    ) -> EngineResult<AppliedGroup> {
        let mut writer = self.lock_writer()?;
        let current = self.group(id)?;
        owned_by(&current, &origin)?;
        crate::check_if_match(if_match, current.version)?;
        writer.early_ack = ack;
        self.write_group(&mut writer, id, Some(current), None, origin, None)
    }

    /// Writes a group and applies its session impact; `state` (a source's)
    /// commits in the same transaction, also when nothing changed.
    pub(crate) fn write_group(
        &self,
        writer: &mut WriterState,
        id: GroupId,
        before: Option<Group>,
        mut after: Option<Group>,
        mut origin: Origin,
        state: Option<SourceState>,
    ) -> EngineResult<AppliedGroup> {
        let ack = writer.early_ack.take();
        self.catch_up(writer).map_err(EngineError::BridgePending)?;
        if let Some(group) = after.as_mut() {
            group.members.sort();
            group.members.dedup();
        }
        let diff = diff_group(before.as_ref(), after.as_ref());
        if diff.is_empty() {
            if state.is_some() {
                self.stores.directory.commit_source(Vec::new(), state)?;
            }
            return Ok(AppliedGroup { group: after, events: Vec::new(), revoked: 0 });
        }
        let Some((name, external_id)) =
            after.as_ref().or(before.as_ref()).map(|g| (g.display_name.clone(), g.external_id.clone()))
        else {
            return Ok(AppliedGroup { group: None, events: Vec::new(), revoked: 0 });
        };
        if origin.source_ref.is_none() {
            origin.source_ref = external_id;
        }
        let events = self.group_events(id, before.as_ref(), after.as_ref(), &diff, &name)?;
        let now = self.clock.now();
        let committed = self
            .stores
            .directory
            .commit_group(GroupWrite {
                id,
                group: after,
                expected_version: before.as_ref().map(|g| g.version),
                events,
                origin,
                at: now,
                state,
            })
            .map_err(|e| match e {
                StoreError::NotFound(what) => {
                    EngineError::Invalid { field: "members", message: format!("{what} is not a live User") }
                }
                other => EngineError::from(other),
            })?;
        let committed_at = self.clock.now();
        let revoked = self
            .apply_events(writer, &committed.events, Some(committed_at), ack)
            .map_err(EngineError::BridgePending)?
            .values()
            .sum();
        Ok(AppliedGroup { group: committed.group, events: committed.events, revoked })
    }

    /// The events of a group write: the group's own change first, then one
    /// membership event per member that left or joined (citing it), and a
    /// tier change for every member whose tiers the write changes (citing
    /// the membership event, or the group's rename).
    fn group_events(
        &self,
        id: GroupId,
        before: Option<&Group>,
        after: Option<&Group>,
        diff: &GroupDiff,
        name: &str,
    ) -> EngineResult<Vec<NewEvent>> {
        let policy = &self.config.policy;
        let group_subject = Subject::Group { id, display_name: name.to_owned() };
        let mut events: Vec<NewEvent> = diff
            .group
            .iter()
            .cloned()
            .map(|change| NewEvent { subject: group_subject.clone(), change, caused_by: None })
            .collect();
        let group_event = (!events.is_empty()).then_some(0);
        let confers_before = before.is_some_and(|g| policy.confers(id, &g.display_name));
        let confers_after = after.is_some_and(|g| policy.confers(id, &g.display_name));
        // A rename into or out of a tier group changes every member's tiers.
        let stayed: Vec<IdentityId> = if confers_before != confers_after {
            after
                .map(|g| g.members.iter().filter(|m| !diff.added.contains(m)).copied().collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut read: Vec<IdentityId> =
            diff.removed.iter().chain(&diff.added).chain(&stayed).copied().collect();
        read.sort();
        read.dedup();
        let members: HashMap<IdentityId, UserWithGroups> = self
            .stores
            .directory
            .identities_with_groups(&read)?
            .into_iter()
            .map(|(identity, groups)| (identity.id, (identity, groups)))
            .collect();
        let member = |m: &IdentityId, joining: bool| match members.get(m) {
            Some((identity, groups)) if !joining || identity.status != IdentityStatus::Deprovisioned => {
                Ok((identity, groups))
            }
            _ => Err(EngineError::Invalid { field: "members", message: format!("{m} is not a User") }),
        };
        // Tiers with this group's membership as it was and as it will be.
        let tiers =
            |identity: &lockstep_domain::Identity, groups: &[(GroupId, String)], member_after: bool| {
                let mut groups: Vec<(GroupId, String)> =
                    groups.iter().filter(|(g, _)| *g != id).cloned().collect();
                if member_after {
                    groups.push((id, name.to_owned()));
                }
                self.tiers_with(identity, &groups)
            };
        let tiers_before = |identity: &lockstep_domain::Identity, groups: &[(GroupId, String)]| {
            let mut groups: Vec<(GroupId, String)> =
                groups.iter().filter(|(g, _)| *g != id).cloned().collect();
            if let Some(b) = before.filter(|b| b.members.contains(&identity.id)) {
                groups.push((id, b.display_name.clone()));
            }
            self.tiers_with(identity, &groups)
        };
        let lists = [(&diff.removed, false), (&diff.added, true), (&stayed, true)];
        for (list, member_after) in lists {
            for m in list.iter() {
                let (identity, groups) = member(m, member_after && !stayed.contains(m))?;
                let (from, to) = (tiers_before(identity, groups), tiers(identity, groups, member_after));
                let subject = Subject::of_identity(identity, to);
                let mut cause = group_event;
                if !stayed.contains(m) {
                    let change = if member_after {
                        DirectoryChange::AddedToGroup { group: id, group_name: name.to_owned() }
                    } else {
                        DirectoryChange::RemovedFromGroup { group: id, group_name: name.to_owned() }
                    };
                    events.push(NewEvent { subject: subject.clone(), change, caused_by: group_event });
                    cause = Some(events.len() - 1);
                }
                if from != to {
                    let change = DirectoryChange::TierChanged { from, to };
                    events.push(NewEvent { subject, change, caused_by: cause });
                }
            }
        }
        Ok(events)
    }
}
