//! The two event families as audit entries.
//!
//! `directory.*` entries record what changed in the directory; `session.*`
//! entries record what happened to a session and cite the directory event
//! that caused it, so an auditor can walk from an HR termination to every
//! token it cut.

use std::fmt;

use crate::directory::UnknownName;
use crate::{ChangeKind, ClientId, DirectoryEventId, IdentityId, SessionId, SourceId, Timestamp};

/// Which family an audit entry belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AuditFamily {
    /// A change in entitlement truth.
    Directory,
    /// A change in session validity.
    Session,
    /// A change to Lockstep's own credentials.
    Admin,
    /// A change of the policy in force.
    Policy,
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
    /// A non-human identity lost its last active owner.
    OwnerLost => "directory.owner_lost", Directory;
    /// A non-human identity has an active owner again.
    OwnerRestored => "directory.owner_restored", Directory;
    /// An identity's policy tiers changed.
    TierChanged => "directory.tier_changed", Directory;
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
    /// A session was suspended until a condition clears.
    SessionSuspended => "session.suspended", Session;
    /// A suspended session became active again.
    SessionResumed => "session.resumed", Session;
    /// A refresh token was exchanged for new tokens (the old one retired).
    SessionRefreshed => "session.refreshed", Session;
    /// A retired refresh token was presented again: the session is revoked.
    SessionRefreshReuseDetected => "session.refresh_reuse_detected", Session;
    /// A non-human identity's credential was created.
    CredentialCreated => "session.credential_created", Session;
    /// A credential's secret was rotated (the old one works for a grace).
    CredentialRotated => "session.credential_rotated", Session;
    /// Expired and revoked sessions past retention were purged from the store.
    SessionsPurged => "session.purged", Session;
    /// Every session and credential of an identity was revoked at once
    /// (revoke-all, global token revocation): one decision.
    SubjectRevoked => "session.subject_revoked", Session;
    /// A session's refresh tokens were ended by policy (`revoke_refresh`).
    SessionRefreshRevoked => "session.refresh_revoked", Session;
    /// The policy in force changed (at start or on reload).
    PolicyChanged => "policy.changed", Policy;
    /// An API client was created.
    ClientCreated => "admin.client_created", Admin;
    /// A source's change removed more than its circuit breaker allows and
    /// is held until approved.
    SyncHeld => "directory.sync_held", Directory;
    /// A held source change was approved and applied.
    SyncApproved => "directory.sync_approved", Directory;
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
            ChangeKind::OwnerLost => AuditKind::OwnerLost,
            ChangeKind::OwnerRestored => AuditKind::OwnerRestored,
            ChangeKind::TierChanged => AuditKind::TierChanged,
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

/// Who caused an audit record. Rendered as one canonical string
/// (`admin`, `client:<id>`, `scim/admin`, `scim/client:<id>`,
/// `policy/<rule>`, `lockstep`) that parses back, so a reader of the trail
/// (or a SET encoder) never has to guess at a formatted string.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Actor {
    /// The admin token (or a local administrative command).
    Admin,
    /// An API client of Lockstep.
    Client(ClientId),
    /// A directory source, and the client that wrote through it (`None`:
    /// the admin, or the source's own connector).
    Source {
        /// The source.
        source: SourceId,
        /// The writing client.
        client: Option<ClientId>,
    },
    /// The policy, applying the named rule (e.g. `privileged.on_attributes_changed`).
    Policy {
        /// The rule.
        rule: String,
    },
    /// Lockstep itself: start-up, timers.
    System,
}

impl Actor {
    /// The policy applying `rule`.
    pub fn policy(rule: impl Into<String>) -> Self {
        Actor::Policy { rule: rule.into() }
    }

    /// The rule, for policy decisions.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Actor::Policy { rule } => Some(rule),
            _ => None,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Admin => f.write_str("admin"),
            Actor::Client(id) => write!(f, "client:{id}"),
            // A configured source (LDAP, a file) writes on its own; over
            // SCIM with no client it is the admin token.
            Actor::Source { source, client: None } if source.as_str() != "scim" => write!(f, "{source}/sync"),
            Actor::Source { source, client: None } => write!(f, "{source}/admin"),
            Actor::Source { source, client: Some(id) } => write!(f, "{source}/client:{id}"),
            Actor::Policy { rule } => write!(f, "policy/{rule}"),
            Actor::System => f.write_str("lockstep"),
        }
    }
}

impl std::str::FromStr for Actor {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || UnknownName { what: "actor", got: s.to_owned() };
        let client = |id: &str| id.parse::<ClientId>().map_err(|_| bad());
        Ok(match s {
            "admin" => Actor::Admin,
            "lockstep" => Actor::System,
            _ => {
                if let Some(id) = s.strip_prefix("client:") {
                    Actor::Client(client(id)?)
                } else if let Some(rule) = s.strip_prefix("policy/") {
                    Actor::Policy { rule: rule.to_owned() }
                } else {
                    let (source, who) = s.split_once('/').ok_or_else(bad)?;
                    let client = match who {
                        "admin" | "sync" => None,
                        other => Some(client(other.strip_prefix("client:").ok_or_else(bad)?)?),
                    };
                    Actor::Source { source: SourceId::new(source), client }
                }
            }
        })
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
    /// Who did it.
    pub actor: Actor,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_round_trip() {
        let id = ClientId::from_uuid(uuid::Uuid::from_u128(7));
        for actor in [
            Actor::Admin,
            Actor::System,
            Actor::Client(id),
            Actor::Source { source: SourceId::new("scim"), client: None },
            Actor::Source { source: SourceId::new("corp-ldap"), client: Some(id) },
            Actor::policy("privileged.on_attributes_changed"),
        ] {
            assert_eq!(actor.to_string().parse::<Actor>(), Ok(actor.clone()), "{actor}");
        }
        assert!("nobody".parse::<Actor>().is_err());
    }
}
