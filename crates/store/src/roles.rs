//! The role traits.

use lockstep_domain::{
    ApiClient, AuditEntry, AuditRecord, DirectoryChange, DirectoryEvent, DirectoryEventId, Group, GroupId,
    Identity, IdentityId, IdentityKind, Origin, Session, SessionId, SessionState, Subject, Timestamp,
    TokenHash,
};

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A uniqueness constraint was hit.
    #[error("{field} {value:?} is already in use")]
    Conflict {
        /// Which attribute (`userName`, `id`).
        field: &'static str,
        /// The clashing value.
        value: String,
    },
    /// Optimistic concurrency failed: the row changed since it was read.
    #[error("version mismatch: expected {expected:?}, found {found:?}")]
    VersionMismatch {
        /// What the writer expected (`None`: that it does not exist).
        expected: Option<u64>,
        /// What is stored (`None`: nothing).
        found: Option<u64>,
    },
    /// A row the write refers to does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// Stored data could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The backend failed (I/O, driver).
    #[error("storage backend failed: {0}")]
    Backend(String),
}

/// Result alias for store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// One atomic directory write: the new state of an identity and the events
/// that describe the change.
#[derive(Clone, Debug)]
pub struct IdentityWrite {
    /// The identity after the change. `version` is assigned by the store.
    pub identity: Identity,
    /// `None` to create (fails if the id exists); `Some(v)` to update a row
    /// currently at version `v`.
    pub expected_version: Option<u64>,
    /// The changes to record, in order. Must not be empty.
    pub changes: Vec<DirectoryChange>,
    /// Who caused them.
    pub origin: Origin,
    /// Commit time.
    pub at: Timestamp,
}

/// The result of a directory write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The identity as stored (with its new version).
    pub identity: Identity,
    /// The events appended, in order.
    pub events: Vec<DirectoryEvent>,
}

/// Which identities a listing selects. Every variant is answered from an
/// index, never by scanning the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityFilter {
    /// Every live identity.
    All,
    /// `userName` equal, case-insensitively.
    UserNameEq(String),
    /// `externalId` equal, case-sensitively.
    ExternalIdEq(String),
    /// `id` equal.
    IdEq(IdentityId),
    /// Identity kind equal (non-human identities are first-class).
    KindEq(IdentityKind),
}

/// A page request over live identities, ordered by creation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityQuery {
    /// Selection.
    pub filter: IdentityFilter,
    /// Zero-based offset.
    pub offset: usize,
    /// Maximum number of items.
    pub limit: usize,
}

/// A page of identities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityPage {
    /// How many identities match in total.
    pub total: usize,
    /// The page.
    pub items: Vec<Identity>,
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
    pub events: Vec<(Subject, DirectoryChange)>,
    /// Who caused them.
    pub origin: Origin,
    /// Commit time.
    pub at: Timestamp,
}

/// The result of a group write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedGroup {
    /// The group as stored (`None` after a deletion).
    pub group: Option<Group>,
    /// The events appended, in order.
    pub events: Vec<DirectoryEvent>,
}

/// Which groups a listing selects, each answered from an index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupFilter {
    /// Every group.
    All,
    /// `displayName` equal, case-insensitively.
    DisplayNameEq(String),
    /// `externalId` equal.
    ExternalIdEq(String),
    /// `id` equal.
    IdEq(GroupId),
}

/// A page request over groups, ordered by creation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupQuery {
    /// Selection.
    pub filter: GroupFilter,
    /// Zero-based offset.
    pub offset: usize,
    /// Maximum number of items.
    pub limit: usize,
}

/// A page of groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupPage {
    /// How many groups match in total.
    pub total: usize,
    /// The page.
    pub items: Vec<Group>,
}

/// The directory role: entitlement truth and its ordered change log.
pub trait DirectoryStore: Send + Sync + std::fmt::Debug {
    /// Applies a write and appends its events, atomically. On any error
    /// nothing is written.
    fn commit_identity(&self, write: IdentityWrite) -> StoreResult<Committed>;

    /// Group commit: applies several writes (to distinct identities) in one
    /// durable commit. Each write succeeds or fails on its own, exactly as
    /// [`DirectoryStore::commit_identity`] would in that order; the outer
    /// error means none was written. The default commits one by one.
    fn commit_identities(&self, writes: Vec<IdentityWrite>) -> StoreResult<Vec<StoreResult<Committed>>> {
        Ok(writes.into_iter().map(|w| self.commit_identity(w)).collect())
    }

    /// An identity by id, tombstones included.
    fn identity(&self, id: IdentityId) -> StoreResult<Option<Identity>>;

    /// The live (not deprovisioned) identity with this `userName`,
    /// compared case-insensitively.
    fn live_identity_by_user_name(&self, user_name: &str) -> StoreResult<Option<Identity>>;

    /// Whether a tombstone with this `userName` exists (to tell "deleted"
    /// from "unknown" in error messages).
    fn deleted_user_name_exists(&self, user_name: &str) -> StoreResult<bool>;

    /// A page of live identities.
    fn list_identities(&self, query: &IdentityQuery) -> StoreResult<IdentityPage>;

    /// Events with a position greater than `after`, oldest first.
    fn events_after(&self, after: Option<DirectoryEventId>, limit: usize)
    -> StoreResult<Vec<DirectoryEvent>>;

    /// Applies a group write and appends its events, atomically. Every
    /// member must be a live identity (`NotFound` otherwise); on any error
    /// nothing is written.
    fn commit_group(&self, write: GroupWrite) -> StoreResult<CommittedGroup>;

    /// A group by id. Members that have since been deleted are left out.
    fn group(&self, id: GroupId) -> StoreResult<Option<Group>>;

    /// A page of groups.
    fn list_groups(&self, query: &GroupQuery) -> StoreResult<GroupPage>;

    /// The groups an identity belongs to: (id, displayName), by name.
    fn groups_of(&self, identity: IdentityId) -> StoreResult<Vec<(GroupId, String)>>;

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

/// An identity and the groups (id, displayName) it belongs to.
pub type UserWithGroups = (Identity, Vec<(GroupId, String)>);

/// A change to one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionUpdate {
    /// Which session.
    pub session: SessionId,
    /// Its new state.
    pub state: SessionState,
    /// A new absolute expiry, if it changes.
    pub expires_at: Option<Timestamp>,
}

/// One atomic session-store write: session changes, the audit records that
/// explain them and, for bridge batches, the directory position consumed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionBatch {
    /// Bridge cursor after this batch. A batch whose position is not beyond
    /// the stored cursor was already applied and is skipped whole, which
    /// makes replay after a crash idempotent.
    pub consumed: Option<DirectoryEventId>,
    /// Session changes. An update to a revoked session is ignored: revoked
    /// is terminal.
    pub updates: Vec<SessionUpdate>,
    /// Audit entries, sealed into the chain in order.
    pub audit: Vec<AuditEntry>,
}

/// The session-authority role: session validity, the bridge cursor and the
/// audit chain, which must commit together.
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    /// Stores a new session and its `session.created` audit entry.
    fn insert_session(&self, session: &Session, audit: AuditEntry) -> StoreResult<AuditRecord>;

    /// A session by id.
    fn session(&self, id: SessionId) -> StoreResult<Option<Session>>;

    /// A session by the hash of its secret.
    fn session_by_token(&self, hash: &TokenHash) -> StoreResult<Option<Session>>;

    /// Every session of an identity, in issue order.
    fn sessions_of(&self, identity: IdentityId) -> StoreResult<Vec<Session>>;

    /// Calls `f` with every session live at `now` (to warm caches at start).
    fn for_each_live(&self, now: Timestamp, f: &mut dyn FnMut(Session)) -> StoreResult<()>;

    /// Applies a batch atomically; returns the sealed audit records (empty
    /// if the batch had already been applied).
    fn apply(&self, batch: SessionBatch) -> StoreResult<Vec<AuditRecord>>;

    /// The highest directory position the bridge has consumed.
    fn consumed(&self) -> StoreResult<Option<DirectoryEventId>>;

    /// Audit records with `seq > after`, oldest first.
    fn audit_after(&self, after: u64, limit: usize) -> StoreResult<Vec<AuditRecord>>;
}

/// Lockstep's own credentials: API clients and the admin token.
pub trait CredentialStore: Send + Sync + std::fmt::Debug {
    /// Stores a new client with its audit entry.
    fn insert_client(&self, client: &ApiClient, audit: AuditEntry) -> StoreResult<()>;

    /// Every client.
    fn clients(&self) -> StoreResult<Vec<ApiClient>>;

    /// The stored admin token hash, if one was generated.
    fn admin_token_hash(&self) -> StoreResult<Option<TokenHash>>;

    /// Replaces the stored admin token hash.
    fn set_admin_token_hash(&self, hash: TokenHash) -> StoreResult<()>;
}
