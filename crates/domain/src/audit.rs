//! The two event families as audit entries.
//!
//! `directory.*` entries record what changed in the directory; `session.*`
//! entries record what happened to a session and cite the directory event
//! that caused it, so an auditor can walk from an HR termination to every
//! token it cut.

use std::fmt;

use crate::directory::UnknownName;
use crate::{ChangeKind, DirectoryEventId, IdentityId, SessionId, Timestamp};

/// Which family an audit entry belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AuditFamily {
    /// A change in entitlement truth.
    Directory,
    /// A change in session validity.
    Session,
    /// A change to Lockstep's own credentials.
    Admin,
}

macro_rules! audit_kinds {
    ($($(#[$vdoc:meta])* $variant:ident => $text:literal, $family:ident;)+) => {
        /// Every kind of audit entry.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        pub enum AuditKind {
            $($(#[$vdoc])* $variant),+
        }

        impl AuditKind {
            /// Every kind.
            pub const ALL: &'static [AuditKind] = &[$(AuditKind::$variant),+];

            /// Stable dotted name, e.g. `session.revoked`.
            pub const fn as_str(self) -> &'static str {
                match self { $(AuditKind::$variant => $text),+ }
            }

            /// The family the kind belongs to.
            pub const fn family(self) -> AuditFamily {
                match self { $(AuditKind::$variant => AuditFamily::$family),+ }
            }
        }

        impl std::str::FromStr for AuditKind {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(AuditKind::$variant),)+
                    other => Err(UnknownName { what: "audit kind", got: other.to_owned() }),
                }
            }
        }
    };
}

audit_kinds! {
    /// An identity was created.
    IdentityCreated => "directory.identity_created", Directory;
    /// An identity's attributes changed.
    IdentityUpdated => "directory.identity_updated", Directory;
    /// An identity lost entitlement.
    IdentityDeactivated => "directory.identity_deactivated", Directory;
    /// An identity regained entitlement.
    IdentityReactivated => "directory.identity_reactivated", Directory;
    /// An identity was deleted.
    IdentityDeleted => "directory.identity_deleted", Directory;
    /// A non-human identity's owner changed.
    OwnerChanged => "directory.owner_changed", Directory;
    /// An identity joined a group.
    AddedToGroup => "directory.added_to_group", Directory;
    /// An identity left a group.
    RemovedFromGroup => "directory.removed_from_group", Directory;
    /// A group was created.
    GroupCreated => "directory.group_created", Directory;
    /// A group's attributes changed.
    GroupUpdated => "directory.group_updated", Directory;
    /// A group was deleted.
    GroupDeleted => "directory.group_deleted", Directory;
    /// A session was opened.
    SessionCreated => "session.created", Session;
    /// A session was revoked.
    SessionRevoked => "session.revoked", Session;
    /// A session must be re-checked against the directory before next use.
    SessionMarkedForRecheck => "session.marked_for_recheck", Session;
    /// A session's expiry was brought forward.
    SessionExpiryShortened => "session.expiry_shortened", Session;
    /// An API client was created.
    ClientCreated => "admin.client_created", Admin;
}

impl AuditKind {
    /// The `directory.*` kind recording a change of this kind.
    pub const fn for_change(kind: ChangeKind) -> AuditKind {
        match kind {
            ChangeKind::IdentityCreated => AuditKind::IdentityCreated,
            ChangeKind::IdentityUpdated => AuditKind::IdentityUpdated,
            ChangeKind::IdentityDeactivated => AuditKind::IdentityDeactivated,
            ChangeKind::IdentityReactivated => AuditKind::IdentityReactivated,
            ChangeKind::IdentityDeleted => AuditKind::IdentityDeleted,
            ChangeKind::OwnerChanged => AuditKind::OwnerChanged,
            ChangeKind::AddedToGroup => AuditKind::AddedToGroup,
            ChangeKind::RemovedFromGroup => AuditKind::RemovedFromGroup,
            ChangeKind::GroupCreated => AuditKind::GroupCreated,
            ChangeKind::GroupUpdated => AuditKind::GroupUpdated,
            ChangeKind::GroupDeleted => AuditKind::GroupDeleted,
        }
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit entry before it is sealed into the chain.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AuditEntry {
    /// When it happened.
    pub at: Timestamp,
    /// What happened.
    pub kind: AuditKind,
    /// The identity concerned, if any.
    pub identity: Option<IdentityId>,
    /// Its login name at the time, for readability.
    pub user_name: Option<String>,
    /// The session concerned, if any.
    pub session: Option<SessionId>,
    /// For `directory.*`: the event itself. For `session.*`: the directory
    /// event that caused it (`None` for a revocation by hand).
    pub directory_event: Option<DirectoryEventId>,
    /// Who did it: `source/client` for directory changes, `admin`,
    /// `client:<id>`, or `policy` for bridge decisions.
    pub actor: String,
    /// Human-readable detail (changed attributes, reason). Never a secret.
    pub detail: String,
}

/// SHA-256 link of the audit chain.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// The hash before the first record.
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({})", self.to_hex())
    }
}

/// A sealed audit record: entry, position and chain links.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AuditRecord {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// The entry.
    pub entry: AuditEntry,
    /// Hash of the previous record (`GENESIS` for the first).
    pub prev_hash: ChainHash,
    /// Hash over `prev_hash`, `seq` and the entry.
    pub hash: ChainHash,
}
