//! Group writes: the group's own events, and one membership event per
//! member that joined or left, applied through the bridge like any other
//! directory change (so a policy can act on a member losing a group).
//!
//! Group writes do not go through the group commit: they are rare next to
//! user writes, and one group write may name thousands of members.

use lockstep_domain::{
    DirectoryChange, DirectoryEvent, Group, GroupId, IdentityId, IdentityStatus, Origin, Subject, diff_group,
};
use lockstep_store::{GroupWrite, StoreError};

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
        self.write_group(&mut writer, id, None, Some(draft), origin)
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
        crate::check_if_match(if_match, current.version)?;
        let mut next = change(&current).map_err(UpdateError::Rejected)?;
        next.id = current.id;
        next.created = current.created;
        next.version = current.version;
        next.modified = self.clock.now();
        Ok(self.write_group(&mut writer, id, Some(current), Some(next), origin)?)
    }

    /// Deletes a group: every member gets a membership event first.
    pub fn delete_group(
        &self,
        id: GroupId,
        origin: Origin,
        if_match: Option<u64>,
    ) -> EngineResult<AppliedGroup> {
        let mut writer = self.lock_writer()?;
        let current = self.group(id)?;
        crate::check_if_match(if_match, current.version)?;
        self.write_group(&mut writer, id, Some(current), None, origin)
    }

    fn member_subject(&self, id: IdentityId, joining: bool) -> EngineResult<Subject> {
        match self.stores.directory.identity(id)? {
            Some(identity) if !joining || identity.status != IdentityStatus::Deprovisioned => {
                Ok(Subject::of_identity(&identity))
            }
            _ => Err(EngineError::Invalid { field: "members", message: format!("{id} is not a User") }),
        }
    }

    fn write_group(
        &self,
        writer: &mut WriterState,
        id: GroupId,
        before: Option<Group>,
        mut after: Option<Group>,
        mut origin: Origin,
    ) -> EngineResult<AppliedGroup> {
        self.catch_up(writer).map_err(EngineError::BridgePending)?;
        if let Some(group) = after.as_mut() {
            group.members.sort();
            group.members.dedup();
        }
        let diff = diff_group(before.as_ref(), after.as_ref());
        if diff.is_empty() {
            return Ok(AppliedGroup { group: after, events: Vec::new() });
        }
        let (name, external_id) = match after.as_ref().or(before.as_ref()) {
            Some(g) => (g.display_name.clone(), g.external_id.clone()),
            None => return Ok(AppliedGroup { group: None, events: Vec::new() }),
        };
        if origin.source_ref.is_none() {
            origin.source_ref = external_id;
        }
        let group_subject = Subject::Group { id, display_name: name.clone() };
        let mut events = Vec::new();
        let deleting = after.is_none();
        if !deleting {
            events.extend(diff.group.iter().cloned().map(|c| (group_subject.clone(), c)));
        }
        for member in &diff.removed {
            let change = DirectoryChange::RemovedFromGroup { group: id, group_name: name.clone() };
            events.push((self.member_subject(*member, false)?, change));
        }
        for member in &diff.added {
            let change = DirectoryChange::AddedToGroup { group: id, group_name: name.clone() };
            events.push((self.member_subject(*member, true)?, change));
        }
        if deleting {
            events.extend(diff.group.iter().cloned().map(|c| (group_subject.clone(), c)));
        }
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
            })
            .map_err(|e| match e {
                StoreError::NotFound(what) => {
                    EngineError::Invalid { field: "members", message: format!("{what} is not a live User") }
                }
                other => EngineError::from(other),
            })?;
        let committed_at = self.clock.now();
        self.apply_events(writer, &committed.events, Some(committed_at))
            .map_err(EngineError::BridgePending)?;
        Ok(AppliedGroup { group: committed.group, events: committed.events })
    }
}
