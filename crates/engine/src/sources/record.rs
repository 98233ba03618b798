//! What a directory source hands the engine: records in the directory's
//! own terms, keyed by the source's stable identifier for each object.
//!
//! A source connector (LDAP, an HR file) maps its entries into these with
//! a pure function and never writes the directory itself: the engine
//! plans the change against what the source owns, holds it if it removes
//! too much, and applies it through the bridge.

use std::collections::BTreeSet;

use lockstep_domain::IdentityKind;

/// One user (or non-human identity) as the source has it now. Every field
/// is absolute: applying the same record twice changes nothing the second
/// time, which is what makes a replay after a crash safe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    /// The source's stable key for the object (LDAP `entryUUID`, AD
    /// `objectGUID`, the HR `externalId`): stored as the identity's
    /// `externalId`, never the DN or the login name, which can change.
    pub key: String,
    /// The login name (`uid`, `sAMAccountName`, the HR `userName`).
    pub user_name: String,
    /// Display name (`cn`, `displayName`).
    pub display_name: Option<String>,
    /// E-mail addresses, primary first.
    pub emails: Vec<String>,
    /// Whether the source says the identity is entitled (not disabled).
    pub active: bool,
    /// Human, or a non-human kind.
    pub kind: IdentityKind,
    /// The key (of this same source) of the identity's owner, for
    /// non-human identities.
    pub owner_key: Option<String>,
    /// The remaining attributes, rendered by the connector as the directory
    /// profile document (the SCIM representation: `name`, …). Rendered
    /// deterministically, so an unchanged entry compares equal.
    pub profile: String,
}

/// One group as the source has it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRecord {
    /// The source's stable key for the group.
    pub key: String,
    /// Display name (`cn`).
    pub display_name: String,
    /// Keys of the member users (of this source). Members the source does
    /// not own (outside its base, other sources) are left out by the
    /// connector.
    pub member_keys: BTreeSet<String>,
}

/// A user or a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceRecord {
    /// A user.
    User(UserRecord),
    /// A group.
    Group(GroupRecord),
}

impl SourceRecord {
    /// The record's key.
    pub fn key(&self) -> &str {
        match self {
            SourceRecord::User(u) => &u.key,
            SourceRecord::Group(g) => &g.key,
        }
    }
}

/// Which of the source's objects go away besides those the update names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removals {
    /// Exactly these keys (users or groups) were removed at the source.
    Keys(Vec<String>),
    /// The update is the whole truth: every object the source owns that is
    /// neither upserted here nor named in `present` was removed (a poll
    /// reconcile, an import, a syncrepl refresh with a present phase). An
    /// empty truth is refused, never applied: an empty LDAP result or an
    /// empty file cannot wipe a directory.
    AllExcept {
        /// Keys that are still there, unchanged (syncrepl's present
        /// entries, which arrive without attributes).
        present: BTreeSet<String>,
    },
}

/// One change from a source, applied atomically with the cursor that
/// follows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceUpdate {
    /// Objects as the source has them now.
    pub upserts: Vec<SourceRecord>,
    /// What was removed.
    pub removals: Removals,
    /// The source's position after this update (a syncrepl cookie, an AD
    /// `uSNChanged` high-water mark), committed in the directory
    /// transaction of the update's last write; `None` leaves it as it was.
    pub cursor: Option<Vec<u8>>,
    /// Whether, once applied, the directory holds everything the source
    /// had at the moment the update was read (a completed poll or refresh,
    /// or a change in a live syncrepl session): staleness restarts from
    /// then.
    pub complete: bool,
}

impl SourceUpdate {
    /// A delta: these upserts and removals, nothing else touched.
    pub fn delta(upserts: Vec<SourceRecord>, removed: Vec<String>) -> Self {
        Self { upserts, removals: Removals::Keys(removed), cursor: None, complete: false }
    }

    /// The whole truth: everything the source owns that is not among
    /// `records` is removed.
    pub fn snapshot(records: Vec<SourceRecord>) -> Self {
        Self {
            upserts: records,
            removals: Removals::AllExcept { present: BTreeSet::new() },
            cursor: None,
            complete: true,
        }
    }

    /// With the cursor to commit alongside.
    #[must_use]
    pub fn with_cursor(mut self, cursor: Option<Vec<u8>>) -> Self {
        self.cursor = cursor;
        self
    }

    /// Marked as (not) leaving the directory complete.
    #[must_use]
    pub fn complete(mut self, complete: bool) -> Self {
        self.complete = complete;
        self
    }
}
