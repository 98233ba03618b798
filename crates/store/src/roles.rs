//! The role traits.

use lockstep_domain::{
    ApiClient, AuditEntry, AuditRecord, DirectoryChange, DirectoryEvent, DirectoryEventId, Group, GroupId,
    Identity, IdentityId, IdentityStatus, Origin, Session, SessionId, SessionState, Subject, Timestamp,
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

/// A text comparison, as SCIM filters spell them (`ne` is `Not(Eq)`, `pr`
/// is [`Filter::Present`]). Ordering compares code points, the order in
/// which both Rust strings and SQLite's `BINARY` collation sort.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TextOp {
    /// Equal.
    Eq,
    /// Starts with.
    StartsWith,
    /// Ends with.
    EndsWith,
    /// Contains.
    Contains,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
}

impl TextOp {
    /// Whether `actual` compares to `expected` (both already case-folded
    /// where the field ignores case).
    pub fn holds(self, actual: &str, expected: &str) -> bool {
        match self {
            TextOp::Eq => actual == expected,
            TextOp::StartsWith => actual.starts_with(expected),
            TextOp::EndsWith => actual.ends_with(expected),
            TextOp::Contains => actual.contains(expected),
            TextOp::Gt => actual > expected,
            TextOp::Ge => actual >= expected,
            TextOp::Lt => actual < expected,
            TextOp::Le => actual <= expected,
        }
    }
}

/// A selection over searchable fields `F`: a boolean tree of text
/// comparisons. Two-valued: a comparison on an absent value is false, so
/// `Not` of it is true.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter<F> {
    /// Everything.
    All,
    /// Some value of `field` compares to `value` (case-folded by the
    /// backend when the field ignores case).
    Text {
        /// Which field.
        field: F,
        /// How.
        op: TextOp,
        /// The operand.
        value: String,
    },
    /// `field` has a non-empty value.
    Present(F),
    /// Every part holds.
    And(Vec<Filter<F>>),
    /// Some part holds.
    Or(Vec<Filter<F>>),
    /// The part does not hold.
    Not(Box<Filter<F>>),
}

impl<F> Filter<F> {
    /// `field eq value`.
    pub fn eq(field: F, value: impl Into<String>) -> Self {
        Filter::Text { field, op: TextOp::Eq, value: value.into() }
    }

    /// Evaluates the filter given a field's values (the reference
    /// semantics every backend must reproduce).
    pub fn holds<'a, V>(&self, values: &V) -> bool
    where
        F: Copy + SearchField,
        V: Fn(F) -> Vec<std::borrow::Cow<'a, str>>,
    {
        match self {
            Filter::All => true,
            Filter::Text { field, op, value } => {
                let expected = field.fold(value);
                values(*field).iter().any(|v| op.holds(&field.fold(v), &expected))
            }
            Filter::Present(field) => values(*field).iter().any(|v| !v.is_empty()),
            Filter::And(parts) => parts.iter().all(|p| p.holds(values)),
            Filter::Or(parts) => parts.iter().any(|p| p.holds(values)),
            Filter::Not(part) => !part.holds(values),
        }
    }
}

/// A field filters can select on.
pub trait SearchField: Copy {
    /// Whether comparisons ignore case (SCIM `caseExact: false`).
    fn ignores_case(self) -> bool;

    /// Whether a resource can hold several values (then "not equal" is not
    /// "not (equal)": some *other* value may differ).
    fn multi_valued(self) -> bool {
        false
    }

    /// Whether the field is a boolean spelled `"true"` / `"false"`.
    fn boolean(self) -> bool {
        false
    }

    /// `text` as compared: under the identifier key ([`lockstep_domain::text::fold`]:
    /// width, compatibility forms and case) when the field ignores case.
    fn fold(self, text: &str) -> String {
        if self.ignores_case() { lockstep_domain::text::fold(text) } else { text.to_owned() }
    }
}

/// The identity fields a listing can select on. Each is backed by an index
/// in every backend (B-tree for equality, order and prefix; trigrams for
/// substring and suffix), because these are what provisioning clients
/// query and a directory scan per lookup would not survive a large tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdentityField {
    /// The identity id (exact).
    Id,
    /// `userName` (ignores case).
    UserName,
    /// `externalId` (exact).
    ExternalId,
    /// `displayName` (ignores case).
    DisplayName,
    /// Any of the identity's e-mail addresses (ignores case).
    Email,
    /// `"true"` when the identity is active, else `"false"`.
    Active,
    /// The identity kind's name (ignores case).
    Kind,
}

impl SearchField for IdentityField {
    fn ignores_case(self) -> bool {
        !matches!(self, IdentityField::Id | IdentityField::ExternalId)
    }

    fn multi_valued(self) -> bool {
        self == IdentityField::Email
    }

    fn boolean(self) -> bool {
        self == IdentityField::Active
    }
}

impl IdentityField {
    /// The values of this field on `identity`.
    pub fn values(self, identity: &Identity) -> Vec<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        match self {
            IdentityField::Id => vec![Cow::Owned(identity.id.to_string())],
            IdentityField::UserName => vec![Cow::Borrowed(identity.user_name.as_str())],
            IdentityField::ExternalId => {
                identity.external_id.as_deref().map(Cow::Borrowed).into_iter().collect()
            }
            IdentityField::DisplayName => {
                identity.display_name.as_deref().map(Cow::Borrowed).into_iter().collect()
            }
            // An empty address is no address (SCIM drops them on input).
            IdentityField::Email => {
                identity.emails.iter().filter(|e| !e.is_empty()).map(|e| Cow::Borrowed(e.as_str())).collect()
            }
            IdentityField::Active => {
                vec![Cow::Borrowed(if identity.status == IdentityStatus::Active { "true" } else { "false" })]
            }
            IdentityField::Kind => vec![Cow::Borrowed(identity.kind.as_str())],
        }
    }
}

/// Which identities a listing selects (always live ones).
pub type IdentityFilter = Filter<IdentityField>;

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

/// The group fields a listing can select on, each indexed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupField {
    /// The group id (exact).
    Id,
    /// `displayName` (ignores case).
    DisplayName,
    /// `externalId` (exact).
    ExternalId,
}

impl SearchField for GroupField {
    fn ignores_case(self) -> bool {
        matches!(self, GroupField::DisplayName)
    }
}

impl GroupField {
    /// The values of this field on `group`.
    pub fn values(self, group: &Group) -> Vec<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        match self {
            GroupField::Id => vec![Cow::Owned(group.id.to_string())],
            GroupField::DisplayName => vec![Cow::Borrowed(group.display_name.as_str())],
            GroupField::ExternalId => group.external_id.as_deref().map(Cow::Borrowed).into_iter().collect(),
        }
    }
}

/// Which groups a listing selects.
pub type GroupFilter = Filter<GroupField>;

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
    /// The commit need not reach stable storage before `apply` returns:
    /// everything in it (audit records, the cursor) is re-derived by
    /// replaying the directory log if it is lost, and the next synchronous
    /// commit makes it durable. Only for bridge batches without session
    /// changes; a revocation is always synchronous.
    pub replayable: bool,
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
    /// Stores a new client with its audit entry. Client names are unique
    /// under the identifier key ([`lockstep_domain::text::fold`]):
    /// `Conflict { field: "name" }` otherwise.
    fn insert_client(&self, client: &ApiClient, audit: AuditEntry) -> StoreResult<()>;

    /// Every client.
    fn clients(&self) -> StoreResult<Vec<ApiClient>>;

    /// The stored admin token hash, if one was generated.
    fn admin_token_hash(&self) -> StoreResult<Option<TokenHash>>;

    /// Replaces the stored admin token hash.
    fn set_admin_token_hash(&self, hash: TokenHash) -> StoreResult<()>;
}
