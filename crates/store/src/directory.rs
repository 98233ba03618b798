//! The directory role and its contract.
//!
//! # What every `DirectoryStore` promises
//!
//! Written down once, before a second writer (LDAP, files) or a second
//! backend (PostgreSQL) arrives; the conformance suite (`conformance.rs`)
//! checks each promise against the in-memory model.
//!
//! * **One ordered log.** Every committed change appends directory events
//!   with strictly increasing positions, without gaps, in commit order. A
//!   reader that has seen position *n* has seen every event before it
//!   ([`DirectoryStore::events_after`] never skips). The bridge consumes the
//!   log in order and records its position in the session store, so the log
//!   is the durable outbox between the two stores.
//! * **Atomic writes.** A write's state change and all its events (its own,
//!   and those fanned out to other subjects) commit together or not at all;
//!   on any error nothing of the write is visible. In a group commit
//!   ([`DirectoryStore::commit_identities`]) each write succeeds or fails on
//!   its own, exactly as it would alone in that order; an outer error means
//!   none was written.
//! * **Optimistic concurrency.** A write names the version it read
//!   (`expected_version`; `None` to create) and fails with
//!   `VersionMismatch` if the row moved on. The store assigns the next
//!   version.
//! * **Uniqueness under the identifier key.** Live `userName`s are unique
//!   under [`lockstep_domain::text::fold`]; a clash is `Conflict`.
//! * **Durability.** A write returns only once it will survive a crash of
//!   the process (and, at full durability, of the machine).
//! * **Single writer.** Callers serialise writes (the engine's writer lock);
//!   a backend need not order concurrent writers beyond the above, but must
//!   let reads run beside a write and see only committed state.
//! * **Batches.** Between [`DirectoryStore::begin_batch`] and the next
//!   commit (or [`DirectoryStore::end_batch`]) the writer's `_to_write`
//!   reads and that commit are one transaction: what the reads saw is what
//!   the commit writes over. The caller keeps the batch to itself (it is
//!   the single writer) and ends every batch it begins.
//! * **Source state with its update.** A non-SCIM source's [`SourceState`]
//!   (its cursor, the moment it was last complete, what its circuit
//!   breaker holds) is written in the same transaction as the writes it
//!   follows ([`DirectoryStore::commit_source`], or a [`GroupWrite`]'s
//!   `state`): after a crash the cursor is never ahead of what was applied
//!   (nor behind it: the source does not re-send what was committed).
//! * **Ownership.** Every identity and group records the source that
//!   created it, and the store never changes it; a source's objects are
//!   listed by [`DirectoryRead::source_identities`] and
//!   [`DirectoryRead::source_groups`] from an index (a reconcile reads them
//!   whole).
//! * **Fan-out causes.** An event written with `caused_by` records the
//!   position of the event of the same write it cites, so what a change
//!   reached can be walked from the log alone.

use lockstep_domain::{
    DirectoryChange, DirectoryEvent, DirectoryEventId, Group, GroupId, Identity, IdentityId, Origin,
    SourceId, Subject, Tiers, Timestamp,
};

use crate::error::StoreResult;
use crate::filter::{GroupPage, GroupQuery, IdentityPage, IdentityQuery};

/// An event to append, about any subject, optionally citing an earlier
/// event of the same write as its cause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// What it is about.
    pub subject: Subject,
    /// What changed.
    pub change: DirectoryChange,
    /// Index (into the write's events, in order) of the event that caused
    /// this one. Must be smaller than this event's own index.
    pub caused_by: Option<usize>,
}

/// One atomic directory write: the new state of an identity, the events
/// that describe the change, and the events it causes for other subjects.
#[derive(Clone, Debug)]
pub struct IdentityWrite {
    /// The identity after the change. `version` is assigned by the store.
    pub identity: Identity,
    /// The identity's policy tiers after the change (recorded on its events).
    pub tiers: Tiers,
    /// `None` to create (fails if the id exists); `Some(v)` to update a row
    /// currently at version `v`.
    pub expected_version: Option<u64>,
    /// The identity's own changes, in order. Must not be empty.
    pub changes: Vec<DirectoryChange>,
    /// Events of other subjects this write causes (an owner's deactivation
    /// is an `owner_lost` of each identity it owned), appended after the
    /// identity's own. `caused_by` indexes the combined list.
    pub fanout: Vec<NewEvent>,
    /// Who caused them.
    pub origin: Origin,
    /// Commit time.
    pub at: Timestamp,
}

/// A write's events in order: an identity's own `changes` (about `subject`,
/// the identity as written), then its `fanout`.
pub fn write_events(
    changes: Vec<DirectoryChange>,
    fanout: Vec<NewEvent>,
    subject: &Subject,
) -> Vec<NewEvent> {
    let mut events: Vec<NewEvent> = changes
        .into_iter()
        .map(|change| NewEvent { subject: subject.clone(), change, caused_by: None })
        .collect();
    events.extend(fanout);
    events
}

/// The position each event's `caused_by` names when the first of `events`
/// gets position `first`; an index that is not of an earlier event is an
/// error (a backend checks this before it writes anything).
pub fn cause_positions(events: &[NewEvent], first: u64) -> StoreResult<Vec<Option<DirectoryEventId>>> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| match e.caused_by {
            None => Ok(None),
            Some(c) if c < i => Ok(Some(DirectoryEventId(first + c as u64))),
            Some(c) => Err(crate::StoreError::Backend(format!(
                "event {i} cites event {c}, not an earlier one, as its cause"
            ))),
        })
        .collect()
}

/// A non-SCIM source's state: written with the update it follows, read
/// back when its connector (re)starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceState {
    /// Which source.
    pub source: SourceId,
    /// Its position (a syncrepl cookie, an AD `uSNChanged` mark); opaque.
    pub cursor: Option<Vec<u8>>,
    /// The last moment the directory held everything the source had.
    pub complete_at: Option<Timestamp>,
    /// What its circuit breaker holds, encoded by the engine; opaque here.
    pub held: Option<String>,
    /// When this state was written.
    pub updated: Timestamp,
}

/// The result of a directory write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The identity as stored (with its new version).
    pub identity: Identity,
    /// The events appended, in order (fan-out included).
    pub events: Vec<DirectoryEvent>,
}

/// One atomic group write: the group's new state (or its deletion) and the
/// events describing it — group events and one membership event per member
/// that joined or left.
#[derive(Clone, Debug)]
pub struct GroupWrite {
    /// Which group.
    pub id: GroupId,
    /// The group after the change (`version` assigned by the store), or
    /// `None` to delete it.
    pub group: Option<Group>,
    /// `None` to create (fails if it exists); `Some(v)` if stored at `v`.
    pub expected_version: Option<u64>,
    /// Events to append, in order. Must not be empty.
    pub events: Vec<NewEvent>,
    /// Who caused them.
    pub origin: Origin,
    /// Commit time.
    pub at: Timestamp,
    /// A source's state to write in the same transaction.
    pub state: Option<SourceState>,
}

/// The result of a group write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedGroup {
    /// The group as stored (`None` after a deletion).
    pub group: Option<Group>,
    /// The events appended, in order.
    pub events: Vec<DirectoryEvent>,
}

/// An identity and the groups (id, displayName) it belongs to.
pub type UserWithGroups = (Identity, Vec<(GroupId, String)>);

/// What introspection's claims are derived from: the few fields of an
/// identity they need, and its groups (id, displayName) ordered as
/// [`DirectoryRead::groups_of`] orders them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimInputs {
    /// The identity.
    pub id: IdentityId,
    /// Its `userName`.
    pub user_name: String,
    /// Human or which non-human kind.
    pub kind: lockstep_domain::IdentityKind,
    /// Its risk tier, if set.
    pub risk_tier: Option<lockstep_domain::RiskTier>,
    /// The groups it belongs to.
    pub groups: Vec<(GroupId, String)>,
}

/// The directory role: entitlement truth and its ordered change log. See
/// the module documentation for the contract every implementation keeps.
pub trait DirectoryStore: DirectoryRead {
    /// [`DirectoryRead::identity`] for the writer preparing its next
    /// commit: what the last commit left, read where the writes go (on
    /// SQLite the writer's own connection, whose page cache every commit of
    /// another connection would otherwise throw away). Only for the thread
    /// that commits, between its commits; the default reads like any reader.
    fn identity_to_write(&self, id: IdentityId) -> StoreResult<Option<Identity>> {
        self.identity(id)
    }

    /// [`DirectoryRead::owned_by`] for the writer, as
    /// [`DirectoryStore::identity_to_write`].
    fn owned_by_to_write(&self, owner: IdentityId) -> StoreResult<Vec<Identity>> {
        self.owned_by(owner)
    }

    /// [`DirectoryRead::events_after`] for the writer, as
    /// [`DirectoryStore::identity_to_write`]: the engine checks before each
    /// batch that its bridge has consumed the whole log.
    fn events_after_to_write(
        &self,
        after: Option<DirectoryEventId>,
        limit: usize,
    ) -> StoreResult<Vec<DirectoryEvent>> {
        self.events_after(after, limit)
    }

    /// [`DirectoryRead::groups_of`] for the writer, as
    /// [`DirectoryStore::identity_to_write`].
    fn groups_of_to_write(&self, identity: IdentityId) -> StoreResult<Vec<(GroupId, String)>> {
        self.groups_of(identity)
    }

    /// Begins a batch on the writer: from here to the next commit (of
    /// identities, a source or a group), the `_to_write` reads and that
    /// commit are one write transaction, so a batch pays for one
    /// transaction's locks instead of one per read (on SQLite every read
    /// outside a transaction took and released the WAL's shared-memory
    /// locks, a tenth of the writer's time under PATCH). The caller must be
    /// the only writer until that commit or [`DirectoryStore::end_batch`]
    /// (the engine holds its commit lock), and must end a batch that
    /// commits nothing with `end_batch`: an open batch holds the write lock.
    /// The default does nothing (each read and commit stands alone).
    fn begin_batch(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Ends a batch that committed nothing (nothing was written in it); does
    /// nothing when no batch is open, as after its commit.
    fn end_batch(&self) {}

    /// Applies a write and appends its events, atomically. On any error
    /// nothing is written.
    fn commit_identity(&self, write: IdentityWrite) -> StoreResult<Committed>;

    /// Group commit: applies several writes (to distinct identities) in one
    /// durable commit. Each write is refused or applied on its own, exactly
    /// as [`DirectoryStore::commit_identity`] would in that order (a version
    /// mismatch or a conflict fails that write alone); the outer error means
    /// none was written — also what a backend failure part-way through one
    /// write gives, since the batch is then rolled back whole. The default
    /// commits one by one.
    fn commit_identities(&self, writes: Vec<IdentityWrite>) -> StoreResult<Vec<StoreResult<Committed>>> {
        self.commit_source(writes, None)
    }

    /// [`DirectoryStore::commit_identities`] with a source's state written
    /// in the same transaction (also when `writes` is empty: a cursor that
    /// moved with nothing to apply). The outer error means neither the
    /// writes nor the state were written.
    fn commit_source(
        &self,
        writes: Vec<IdentityWrite>,
        state: Option<SourceState>,
    ) -> StoreResult<Vec<StoreResult<Committed>>>;

    /// Applies a group write and appends its events, atomically. Every
    /// member must be a live identity (`NotFound` otherwise); on any error
    /// nothing is written.
    fn commit_group(&self, write: GroupWrite) -> StoreResult<CommittedGroup>;
}

/// The directory's reads: what protocol layers get (a capability without
/// the writes, so "only the engine writes the directory" is a type).
pub trait DirectoryRead: Send + Sync + std::fmt::Debug {
    /// An identity by id, tombstones included.
    fn identity(&self, id: IdentityId) -> StoreResult<Option<Identity>>;

    /// The live (not deprovisioned) identity with this `userName`,
    /// compared under the identifier key.
    fn live_identity_by_user_name(&self, user_name: &str) -> StoreResult<Option<Identity>>;

    /// Whether a tombstone with this `userName` exists (to tell "deleted"
    /// from "unknown" in error messages).
    fn deleted_user_name_exists(&self, user_name: &str) -> StoreResult<bool>;

    /// A page of live identities.
    fn list_identities(&self, query: &IdentityQuery) -> StoreResult<IdentityPage>;

    /// Live identities that list `owner` among their owners, in creation
    /// order (answered from an index: an owner's deactivation fans out to
    /// them inside its write).
    fn owned_by(&self, owner: IdentityId) -> StoreResult<Vec<Identity>>;

    /// The live identities a source owns (never `scim`'s: SCIM needs no
    /// reconcile), in creation order.
    fn source_identities(&self, source: &SourceId) -> StoreResult<Vec<Identity>>;

    /// The groups a source owns, in creation order.
    fn source_groups(&self, source: &SourceId) -> StoreResult<Vec<Group>>;

    /// The live identities a source owns with these keys (`externalId`s),
    /// from the index: a one-entry delta is planned against what it names,
    /// not against everything the source owns.
    fn source_identities_by_key(&self, source: &SourceId, keys: &[String]) -> StoreResult<Vec<Identity>> {
        Ok(self
            .source_identities(source)?
            .into_iter()
            .filter(|i| i.external_id.as_ref().is_some_and(|k| keys.contains(k)))
            .collect())
    }

    /// The groups a source owns with these keys.
    fn source_groups_by_key(&self, source: &SourceId, keys: &[String]) -> StoreResult<Vec<Group>> {
        Ok(self
            .source_groups(source)?
            .into_iter()
            .filter(|g| g.external_id.as_ref().is_some_and(|k| keys.contains(k)))
            .collect())
    }

    /// How many groups a source owns.
    fn count_source_groups(&self, source: &SourceId) -> StoreResult<usize> {
        Ok(self.source_groups(source)?.len())
    }

    /// How many live identities a source owns (the circuit breaker's base).
    fn count_source_identities(&self, source: &SourceId) -> StoreResult<usize> {
        Ok(self.source_identities(source)?.len())
    }

    /// A source's state as last written, if ever.
    fn source_state(&self, source: &SourceId) -> StoreResult<Option<SourceState>>;

    /// Events with a position greater than `after`, oldest first.
    fn events_after(&self, after: Option<DirectoryEventId>, limit: usize)
    -> StoreResult<Vec<DirectoryEvent>>;

    /// The event at a position.
    fn event(&self, id: DirectoryEventId) -> StoreResult<Option<DirectoryEvent>>;

    /// The events that cite `cause` (fan-out of one write), oldest first.
    fn events_caused_by(&self, cause: DirectoryEventId) -> StoreResult<Vec<DirectoryEvent>>;

    /// A group by id. Members that have since been deleted are left out.
    fn group(&self, id: GroupId) -> StoreResult<Option<Group>>;

    /// A page of groups.
    fn list_groups(&self, query: &GroupQuery) -> StoreResult<GroupPage>;

    /// The groups an identity belongs to: (id, displayName), by name.
    fn groups_of(&self, identity: IdentityId) -> StoreResult<Vec<(GroupId, String)>>;

    /// Identities (tombstones included) with the groups each belongs to,
    /// for the given ids, in the given order; unknown ids are left out. The
    /// default reads them one by one; a backend reads them together.
    fn identities_with_groups(&self, ids: &[IdentityId]) -> StoreResult<Vec<UserWithGroups>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(identity) = self.identity(*id)? {
                let groups = self.groups_of(*id)?;
                out.push((identity, groups));
            }
        }
        Ok(out)
    }

    /// [`ClaimInputs`] of the given ids, in the given order (unknown ids left
    /// out): what start-up reads for every identity holding a live session
    /// (a million of them at ten million sessions), so a backend reads only
    /// those columns. The default derives them from
    /// [`DirectoryRead::identities_with_groups`]; the conformance suite holds
    /// a backend's own reading to it.
    fn claim_inputs(&self, ids: &[IdentityId]) -> StoreResult<Vec<ClaimInputs>> {
        Ok(self
            .identities_with_groups(ids)?
            .into_iter()
            .map(|(i, groups)| ClaimInputs {
                id: i.id,
                user_name: i.user_name,
                kind: i.kind,
                risk_tier: i.risk_tier,
                groups,
            })
            .collect())
    }

    /// A page of live identities, each with the groups it belongs to, read
    /// together (a SCIM User is rendered with its groups). The default reads
    /// them one by one.
    fn list_identities_with_groups(
        &self,
        query: &IdentityQuery,
    ) -> StoreResult<(usize, Vec<UserWithGroups>)> {
        let page = self.list_identities(query)?;
        let mut out = Vec::with_capacity(page.items.len());
        for identity in page.items {
            let groups = self.groups_of(identity.id)?;
            out.push((identity, groups));
        }
        Ok((page.total, out))
    }
}
