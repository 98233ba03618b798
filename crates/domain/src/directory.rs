//! Entitlement truth: identities and the ordered events that change them.

use std::fmt;
use std::str::FromStr;

use crate::{ClientId, DirectoryEventId, GroupId, IdentityId, SourceId, Timestamp};

/// A string did not name a known variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// What kind of name was expected, e.g. `identity kind`.
    pub what: &'static str,
    /// The rejected input.
    pub got: String,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?}", self.what, self.got)
    }
}

impl std::error::Error for UnknownName {}

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// Every variant's name, in declaration order (what a protocol
            /// advertises as the canonical values).
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The stable lower-case name used on the wire and in storage.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownName { what: $what, got: other.to_owned() }),
                }
            }
        }
    };
}

named_enum!(
    /// What an identity is. Non-human kinds never sign in interactively, so
    /// nothing but a directory event will ever cut their credentials.
    IdentityKind, "identity kind" {
        /// A person.
        Human => "human",
        /// A service account owned by a person.
        ServiceAccount => "service_account",
        /// A workload (pod, VM, function) identity.
        Workload => "workload",
        /// An API client.
        ApiClient => "api_client",
        /// An AI agent acting on its own or for its owners.
        Agent => "agent",
        /// An application AI agents run in (SCIM `AgenticApplication`).
        AgenticApplication => "agentic_application",
    }
);

impl IdentityKind {
    /// Whether this kind is non-human (never signs in interactively).
    pub const fn is_non_human(self) -> bool {
        !matches!(self, IdentityKind::Human)
    }
}

named_enum!(
    /// The directory's hint of how an identity should be treated by policy
    /// (SCIM: the Lockstep extension's `riskTier`).
    RiskTier, "risk tier" {
        /// Ordinary access.
        Standard => "standard",
        /// Privileged access: shorter lifetimes, stricter impacts.
        Privileged => "privileged",
        /// Treated as a non-human identity.
        NonHuman => "non_human",
    }
);

/// The policy tiers an identity is in, derived from the directory (never
/// stored on a session). An identity can be in both `privileged` and
/// `non_human` (a service account in an administrators' group); in neither
/// it is `standard`. Where two tiers set the same setting, the stricter
/// one wins.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, PartialOrd, Ord)]
pub struct Tiers {
    /// In the privileged tier.
    pub privileged: bool,
    /// In the non-human tier.
    pub non_human: bool,
}

impl Tiers {
    /// The standard tier (neither of the others).
    pub const STANDARD: Tiers = Tiers { privileged: false, non_human: false };

    /// Whether this is the standard tier.
    pub const fn is_standard(self) -> bool {
        !self.privileged && !self.non_human
    }

    /// Whether `self` holds a tier `before` did not.
    pub const fn gained_from(self, before: Tiers) -> bool {
        (self.privileged && !before.privileged) || (self.non_human && !before.non_human)
    }

    /// The tier names: `standard`, `privileged`, `non_human`, or
    /// `privileged non_human` (space-separated, like an OAuth scope).
    pub const fn as_str(self) -> &'static str {
        match (self.privileged, self.non_human) {
            (false, false) => "standard",
            (true, false) => "privileged",
            (false, true) => "non_human",
            (true, true) => "privileged non_human",
        }
    }
}

impl fmt::Display for Tiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tiers {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut tiers = Tiers::STANDARD;
        for word in s.split([' ', ',', '+']).filter(|w| !w.is_empty()) {
            match word {
                "standard" => {}
                "privileged" => tiers.privileged = true,
                "non_human" => tiers.non_human = true,
                _ => return Err(UnknownName { what: "tier", got: s.to_owned() }),
            }
        }
        Ok(tiers)
    }
}

named_enum!(
    /// Lifecycle status. Only `Active` is entitled to hold live sessions.
    IdentityStatus, "identity status" {
        /// Entitled.
        Active => "active",
        /// Temporarily not entitled (e.g. leave of absence).
        Suspended => "suspended",
        /// Not entitled (SCIM `active: false`).
        Disabled => "disabled",
        /// Removed from the directory; kept as a tombstone so that audit
        /// records and late requests can still be explained.
        Deprovisioned => "deprovisioned",
    }
);

impl IdentityStatus {
    /// Whether an identity in this status may hold live sessions.
    pub const fn is_entitled(self) -> bool {
        matches!(self, IdentityStatus::Active)
    }
}

/// One identity as the directory knows it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Identity {
    /// Stable identifier (the SCIM `id`).
    pub id: IdentityId,
    /// Unique login name, compared case-insensitively.
    pub user_name: String,
    /// The provisioning source's own identifier for this identity (for an
    /// identity a non-SCIM source owns: that source's stable key, e.g. the
    /// LDAP `entryUUID`).
    pub external_id: Option<String>,
    /// The source that created the identity and alone may change it: `scim`,
    /// or a configured source's name. Two sources never fight over one
    /// record.
    pub source: SourceId,
    /// Human-readable name.
    pub display_name: Option<String>,
    /// Human or one of the non-human kinds.
    pub kind: IdentityKind,
    /// The humans accountable for a non-human identity, sorted, without
    /// duplicates. When the last active one leaves, the policy's owner-lost
    /// impact applies to the identity's sessions and credentials.
    pub owners: Vec<IdentityId>,
    /// The risk tier hint (`riskTier`), if the directory set one.
    pub risk_tier: Option<RiskTier>,
    /// Lifecycle status.
    pub status: IdentityStatus,
    /// E-mail addresses, lifted out of the profile by the protocol that
    /// wrote them because they are what identity providers search by (the
    /// profile keeps their type and primary flag).
    pub emails: Vec<String>,
    /// The remaining attributes as an opaque document owned by the protocol
    /// that wrote them (SCIM JSON today). The directory stores and returns it
    /// but never interprets it: entitlement decisions use the typed fields.
    pub profile: String,
    /// Incremented on every committed change; the SCIM ETag.
    pub version: u64,
    /// When the identity was created.
    pub created: Timestamp,
    /// When the identity last changed.
    pub modified: Timestamp,
}

impl Identity {
    /// A new active human named `user_name`, owned by `source`, with nothing
    /// else set (no e-mails, an empty profile document, version 0, times
    /// 0: the directory's writer stamps those). Callers set what differs
    /// with struct update syntax.
    pub fn draft(id: IdentityId, user_name: impl Into<String>, source: SourceId) -> Self {
        Self {
            id,
            user_name: user_name.into(),
            external_id: None,
            source,
            display_name: None,
            kind: IdentityKind::Human,
            owners: Vec::new(),
            risk_tier: None,
            status: IdentityStatus::Active,
            emails: Vec::new(),
            profile: "{}".into(),
            version: 0,
            created: Timestamp(0),
            modified: Timestamp(0),
        }
    }
}

/// Who caused a directory change.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Origin {
    /// The source (e.g. `scim`).
    pub source: SourceId,
    /// The authenticated client that sent it, if any (`None` for the admin).
    pub client: Option<ClientId>,
    /// The source's own identifier for the object (SCIM `externalId`, LDAP
    /// `entryUUID`), so an auditor can trace the change back upstream.
    pub source_ref: Option<String>,
}

/// What happened to an identity. Past tense: these are facts.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum DirectoryChange {
    /// A new identity appeared.
    IdentityCreated,
    /// Attributes changed without changing entitlement status.
    IdentityUpdated {
        /// Names of the changed attributes (`userName`, `displayName`, …).
        changed: Vec<String>,
    },
    /// The identity lost entitlement (disabled or suspended).
    IdentityDeactivated {
        /// Status before the change.
        from: IdentityStatus,
        /// Status after the change.
        to: IdentityStatus,
    },
    /// The identity regained entitlement. Never revives a revoked session.
    IdentityReactivated {
        /// Status before the change.
        from: IdentityStatus,
    },
    /// The identity was removed from the directory.
    IdentityDeleted,
    /// The accountable owners of a non-human identity changed.
    OwnerChanged {
        /// The previous owners.
        from: Vec<IdentityId>,
        /// The new owners.
        to: Vec<IdentityId>,
    },
    /// The identity's last active owner became inactive (deactivated or
    /// deleted), or its owners were changed to none active. Recorded as an
    /// event of the owned identity (one per owned identity, like membership
    /// changes), caused by the owner's event.
    OwnerLost {
        /// The owner whose change left the identity without an active one.
        owner: Option<IdentityId>,
    },
    /// An identity without an active owner has one again (an owner was
    /// reactivated, or an active owner was set).
    OwnerRestored {
        /// The owner that is active again, or was set.
        owner: IdentityId,
    },
    /// The policy tiers derived for the identity changed (its `riskTier`,
    /// kind or membership of a group that confers a tier changed).
    TierChanged {
        /// Tiers before.
        from: Tiers,
        /// Tiers after.
        to: Tiers,
    },
    /// The identity became a member of a group.
    AddedToGroup {
        /// The group.
        group: GroupId,
        /// Its display name at the time.
        group_name: String,
    },
    /// The identity stopped being a member of a group (removed from it, or
    /// the group was deleted).
    RemovedFromGroup {
        /// The group.
        group: GroupId,
        /// Its display name at the time.
        group_name: String,
    },
    /// A group appeared.
    GroupCreated,
    /// A group's own attributes changed (membership changes are reported
    /// per member).
    GroupUpdated {
        /// Names of the changed attributes.
        changed: Vec<String>,
    },
    /// A group was deleted.
    GroupDeleted,
}

named_enum!(
    /// The kind of a [`DirectoryChange`], the key that policy rules match on.
    ChangeKind, "directory change" {
        /// [`DirectoryChange::IdentityCreated`].
        IdentityCreated => "identity_created",
        /// [`DirectoryChange::IdentityUpdated`].
        IdentityUpdated => "identity_updated",
        /// [`DirectoryChange::IdentityDeactivated`].
        IdentityDeactivated => "identity_deactivated",
        /// [`DirectoryChange::IdentityReactivated`].
        IdentityReactivated => "identity_reactivated",
        /// [`DirectoryChange::IdentityDeleted`].
        IdentityDeleted => "identity_deleted",
        /// [`DirectoryChange::OwnerChanged`].
        OwnerChanged => "owner_changed",
        /// [`DirectoryChange::OwnerLost`].
        OwnerLost => "owner_lost",
        /// [`DirectoryChange::OwnerRestored`].
        OwnerRestored => "owner_restored",
        /// [`DirectoryChange::TierChanged`].
        TierChanged => "tier_changed",
        /// [`DirectoryChange::AddedToGroup`].
        AddedToGroup => "added_to_group",
        /// [`DirectoryChange::RemovedFromGroup`].
        RemovedFromGroup => "removed_from_group",
        /// [`DirectoryChange::GroupCreated`].
        GroupCreated => "group_created",
        /// [`DirectoryChange::GroupUpdated`].
        GroupUpdated => "group_updated",
        /// [`DirectoryChange::GroupDeleted`].
        GroupDeleted => "group_deleted",
    }
);

impl DirectoryChange {
    /// The rule key of this change.
    pub fn kind(&self) -> ChangeKind {
        match self {
            DirectoryChange::IdentityCreated => ChangeKind::IdentityCreated,
            DirectoryChange::IdentityUpdated { .. } => ChangeKind::IdentityUpdated,
            DirectoryChange::IdentityDeactivated { .. } => ChangeKind::IdentityDeactivated,
            DirectoryChange::IdentityReactivated { .. } => ChangeKind::IdentityReactivated,
            DirectoryChange::IdentityDeleted => ChangeKind::IdentityDeleted,
            DirectoryChange::OwnerChanged { .. } => ChangeKind::OwnerChanged,
            DirectoryChange::OwnerLost { .. } => ChangeKind::OwnerLost,
            DirectoryChange::OwnerRestored { .. } => ChangeKind::OwnerRestored,
            DirectoryChange::TierChanged { .. } => ChangeKind::TierChanged,
            DirectoryChange::AddedToGroup { .. } => ChangeKind::AddedToGroup,
            DirectoryChange::RemovedFromGroup { .. } => ChangeKind::RemovedFromGroup,
            DirectoryChange::GroupCreated => ChangeKind::GroupCreated,
            DirectoryChange::GroupUpdated { .. } => ChangeKind::GroupUpdated,
            DirectoryChange::GroupDeleted => ChangeKind::GroupDeleted,
        }
    }
}

/// What a directory event is about. Only identity events can touch
/// sessions; membership changes are identity events (one per member), so a
/// group change reaches every affected identity's sessions.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Subject {
    /// An identity, with its login name, kind and tiers after the event,
    /// so that a replay decides exactly as the first run did.
    Identity {
        /// Id.
        id: IdentityId,
        /// `userName` at the time.
        user_name: String,
        /// Kind at the time.
        kind: IdentityKind,
        /// Policy tiers after the event.
        tiers: Tiers,
    },
    /// A group, with its display name at the time.
    Group {
        /// Id.
        id: GroupId,
        /// `displayName` at the time.
        display_name: String,
    },
}

impl Subject {
    /// The identity, for identity events.
    pub fn identity(&self) -> Option<IdentityId> {
        match self {
            Subject::Identity { id, .. } => Some(*id),
            Subject::Group { .. } => None,
        }
    }

    /// The subject's name at the time.
    pub fn name(&self) -> &str {
        match self {
            Subject::Identity { user_name, .. } => user_name,
            Subject::Group { display_name, .. } => display_name,
        }
    }

    /// The subject of an identity's own events, in `tiers`.
    pub fn of_identity(identity: &Identity, tiers: Tiers) -> Self {
        Subject::Identity {
            id: identity.id,
            user_name: identity.user_name.clone(),
            kind: identity.kind,
            tiers,
        }
    }

    /// The tiers of an identity subject (standard for a group).
    pub fn tiers(&self) -> Tiers {
        match self {
            Subject::Identity { tiers, .. } => *tiers,
            Subject::Group { .. } => Tiers::STANDARD,
        }
    }
}

/// A group of identities.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Group {
    /// Stable identifier (the SCIM `id`).
    pub id: GroupId,
    /// Human-readable name.
    pub display_name: String,
    /// The provisioning source's own identifier for this group.
    pub external_id: Option<String>,
    /// The source that created the group and alone may change it.
    pub source: SourceId,
    /// Member identities, sorted, without duplicates.
    pub members: Vec<IdentityId>,
    /// Incremented on every committed change; the SCIM ETag.
    pub version: u64,
    /// When the group was created.
    pub created: Timestamp,
    /// When the group last changed.
    pub modified: Timestamp,
}

/// The changes that turn one version of a group into another.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct GroupDiff {
    /// Changes of the group itself (created, updated, deleted).
    pub group: Vec<DirectoryChange>,
    /// Identities that joined.
    pub added: Vec<IdentityId>,
    /// Identities that left (all members, when the group is deleted).
    pub removed: Vec<IdentityId>,
}

impl GroupDiff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.group.is_empty() && self.added.is_empty() && self.removed.is_empty()
    }
}

/// Derives the group and membership changes from `before` to `after`
/// (`None`: absent, i.e. created or deleted).
pub fn diff_group(before: Option<&Group>, after: Option<&Group>) -> GroupDiff {
    let empty: &[IdentityId] = &[];
    let old = before.map_or(empty, |g| g.members.as_slice());
    let new = after.map_or(empty, |g| g.members.as_slice());
    let mut diff = GroupDiff {
        group: Vec::new(),
        added: new.iter().filter(|m| !old.contains(m)).copied().collect(),
        removed: old.iter().filter(|m| !new.contains(m)).copied().collect(),
    };
    match (before, after) {
        (None, Some(_)) => diff.group.push(DirectoryChange::GroupCreated),
        (Some(_), None) => diff.group.push(DirectoryChange::GroupDeleted),
        (Some(b), Some(a)) => {
            let mut changed = Vec::new();
            if b.display_name != a.display_name {
                changed.push("displayName".to_owned());
            }
            if b.external_id != a.external_id {
                changed.push("externalId".to_owned());
            }
            if !changed.is_empty() {
                diff.group.push(DirectoryChange::GroupUpdated { changed });
            }
        }
        (None, None) => {}
    }
    diff
}

/// A committed, ordered directory change.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DirectoryEvent {
    /// Position in the directory log.
    pub id: DirectoryEventId,
    /// When the directory committed it.
    pub at: Timestamp,
    /// What it is about.
    pub subject: Subject,
    /// What changed.
    pub change: DirectoryChange,
    /// Who changed it.
    pub origin: Origin,
    /// The event of the same write that caused this one, for events fanned
    /// out to other subjects: a member's `removed_from_group` cites the
    /// `group_deleted`, an owned identity's `owner_lost` cites its owner's
    /// deactivation. What a change reached is the event and everything it
    /// caused.
    pub cause: Option<DirectoryEventId>,
}

/// Derives the directory changes that turn `before` into `after`.
///
/// Status transitions are reported separately from attribute changes
/// because policy treats them differently: a rename is harmless, losing
/// entitlement is not. Returns an empty list when nothing observable changed.
pub fn diff_identity(before: Option<&Identity>, after: &Identity) -> Vec<DirectoryChange> {
    let Some(before) = before else {
        return vec![DirectoryChange::IdentityCreated];
    };
    let mut changes = Vec::new();
    let mut changed = Vec::new();
    if before.user_name != after.user_name {
        changed.push("userName".to_owned());
    }
    if before.external_id != after.external_id {
        changed.push("externalId".to_owned());
    }
    if before.display_name != after.display_name {
        changed.push("displayName".to_owned());
    }
    if before.kind != after.kind {
        changed.push("kind".to_owned());
    }
    if before.risk_tier != after.risk_tier {
        changed.push("riskTier".to_owned());
    }
    // Addresses are typed fields of their own: a directory source changes
    // them without touching the SCIM profile.
    if before.emails != after.emails {
        changed.push("emails".to_owned());
    }
    if before.profile != after.profile {
        changed.push("profile".to_owned());
    }
    if !changed.is_empty() {
        changes.push(DirectoryChange::IdentityUpdated { changed });
    }
    if before.owners != after.owners {
        changes.push(DirectoryChange::OwnerChanged { from: before.owners.clone(), to: after.owners.clone() });
    }
    match (before.status, after.status) {
        (from, to) if from == to => {}
        (_, IdentityStatus::Deprovisioned) => changes.push(DirectoryChange::IdentityDeleted),
        (from, IdentityStatus::Active) => {
            changes.push(DirectoryChange::IdentityReactivated { from });
        }
        (from, to) => changes.push(DirectoryChange::IdentityDeactivated { from, to }),
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn an_address_change_alone_is_a_change() {
        let before = alice();
        let mut after = before.clone();
        after.emails = vec!["new@example.com".into()];
        assert_eq!(
            diff_identity(Some(&before), &after),
            [DirectoryChange::IdentityUpdated { changed: vec!["emails".into()] }]
        );
    }

    fn alice() -> Identity {
        Identity {
            version: 1,
            ..Identity::draft(IdentityId::from_uuid(Uuid::from_u128(1)), "alice", SourceId::scim())
        }
    }

    #[test]
    fn creation_is_one_event() {
        assert_eq!(diff_identity(None, &alice()), vec![DirectoryChange::IdentityCreated]);
    }

    #[test]
    fn no_change_no_event() {
        assert!(diff_identity(Some(&alice()), &alice()).is_empty());
    }

    #[test]
    fn rename_and_disable_are_two_events() {
        let mut after = alice();
        after.user_name = "alice2".into();
        after.status = IdentityStatus::Disabled;
        assert_eq!(
            diff_identity(Some(&alice()), &after),
            vec![
                DirectoryChange::IdentityUpdated { changed: vec!["userName".into()] },
                DirectoryChange::IdentityDeactivated {
                    from: IdentityStatus::Active,
                    to: IdentityStatus::Disabled
                },
            ]
        );
    }

    #[test]
    fn status_transitions() {
        let mut disabled = alice();
        disabled.status = IdentityStatus::Disabled;
        assert_eq!(
            diff_identity(Some(&disabled), &alice()),
            vec![DirectoryChange::IdentityReactivated { from: IdentityStatus::Disabled }]
        );
        let mut gone = alice();
        gone.status = IdentityStatus::Deprovisioned;
        assert_eq!(diff_identity(Some(&disabled), &gone), vec![DirectoryChange::IdentityDeleted]);
    }

    #[test]
    fn group_membership_diffs_name_each_member() {
        let id = |n| IdentityId::from_uuid(Uuid::from_u128(n));
        let group = |name: &str, members: Vec<IdentityId>| Group {
            id: GroupId::from_uuid(Uuid::from_u128(9)),
            display_name: name.into(),
            external_id: None,
            source: SourceId::scim(),
            members,
            version: 1,
            created: Timestamp(0),
            modified: Timestamp(0),
        };
        let before = group("eng", vec![id(1), id(2)]);
        let after = group("engineering", vec![id(2), id(3)]);
        let diff = diff_group(Some(&before), Some(&after));
        assert_eq!(diff.added, vec![id(3)]);
        assert_eq!(diff.removed, vec![id(1)]);
        assert_eq!(diff.group, vec![DirectoryChange::GroupUpdated { changed: vec!["displayName".into()] }]);
        let gone = diff_group(Some(&after), None);
        assert_eq!(gone.removed, vec![id(2), id(3)]);
        assert_eq!(gone.group, vec![DirectoryChange::GroupDeleted]);
        assert!(diff_group(Some(&after), Some(&after)).is_empty());
    }

    #[test]
    fn names_round_trip() {
        for k in IdentityKind::ALL {
            assert_eq!(k.as_str().parse::<IdentityKind>(), Ok(*k));
        }
        for s in IdentityStatus::ALL {
            assert_eq!(s.as_str().parse::<IdentityStatus>(), Ok(*s));
        }
        for c in ChangeKind::ALL {
            assert_eq!(c.as_str().parse::<ChangeKind>(), Ok(*c));
        }
        for t in [
            Tiers::STANDARD,
            Tiers { privileged: true, non_human: true },
            Tiers { non_human: true, ..Tiers::STANDARD },
        ] {
            assert_eq!(t.as_str().parse::<Tiers>(), Ok(t));
        }
        assert_eq!(IdentityKind::NAMES.len(), IdentityKind::ALL.len());
        assert!("robot".parse::<IdentityKind>().is_err());
    }
}
