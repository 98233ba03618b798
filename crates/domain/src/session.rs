//! Session validity: the session authority's half of the world.

use std::fmt;

use crate::directory::UnknownName;
use crate::{ClientId, DirectoryEventId, IdentityId, SessionId, Timestamp};

/// SHA-256 of a bearer secret. The secret itself is never stored.
///
/// Secrets carry at least 256 bits of randomness, so a plain hash is
/// preimage-safe and lets us look a presented token up by hash in O(1).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only a prefix: enough to correlate, never the full value in logs.
        write!(f, "TokenHash({:02x}{:02x}{:02x}{:02x}…)", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

macro_rules! simple_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every variant.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// Stable name for the wire and storage.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownName { what: $what, got: other.to_owned() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

simple_enum!(
    /// What sort of credential a session is. Later kinds (refresh tokens, API
    /// keys, workload tokens) get their own TTL limits per identity kind.
    CredentialKind, "credential kind" {
        /// An opaque bearer access token.
        AccessToken => "access_token",
    }
);

simple_enum!(
    /// Why a session stopped being valid.
    RevocationReason, "revocation reason" {
        /// The identity was disabled or suspended in the directory.
        IdentityDeactivated => "identity_deactivated",
        /// The identity was removed from the directory.
        IdentityDeleted => "identity_deleted",
        /// An administrator revoked it through the API.
        AdminRevoked => "admin_revoked",
        /// The holder or its client revoked it (RFC 7009).
        ClientRevoked => "client_revoked",
        /// The identity left a group that conferred its tier.
        GroupRemoved => "group_removed",
        /// The identity's group membership changed (a policy that revokes on it).
        GroupChanged => "group_changed",
        /// The identity's attributes changed (a policy that revokes on it).
        AttributesChanged => "attributes_changed",
        /// The identity gained or lost a policy tier (a policy that revokes on it).
        TierChanged => "tier_changed",
        /// A non-human identity's owners changed (a policy that revokes on it).
        OwnerChanged => "owner_changed",
        /// A non-human identity lost its last active owner and no new one
        /// came within the grace period.
        OwnerLost => "owner_lost",
        /// More live sessions than the tier allows: the oldest went.
        SessionLimit => "session_limit",
    }
);

simple_enum!(
    /// Why a session is suspended: a condition that, once it clears, makes
    /// the session active again (unless it was revoked or expired meanwhile).
    SuspendCondition, "suspension condition" {
        /// A non-human identity has no active owner.
        OwnerLost => "owner_lost",
        /// The directory source the identity comes from is staler than its
        /// bound (privileged access fails closed).
        SourceStale => "source_stale",
    }
);

/// Validity state of one session.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SessionState {
    /// Valid until it expires.
    Active,
    /// Valid; its claims were re-derived from the directory after a change
    /// (the policy's `recheck`). Introspection answers from the claims as
    /// of the last bridge step.
    NeedsRecheck,
    /// Inactive until a condition clears; then active again, unless revoked
    /// or expired meanwhile. Not terminal.
    Suspended {
        /// When it was suspended.
        at: Timestamp,
        /// What must clear.
        condition: SuspendCondition,
        /// The directory event that caused it, if one did.
        cause: Option<DirectoryEventId>,
        /// When the suspension turns into a revocation if the condition has
        /// not cleared (a grace period), if ever.
        until: Option<Timestamp>,
    },
    /// Permanently invalid. There is no way back from here.
    Revoked {
        /// When it was revoked.
        at: Timestamp,
        /// Why.
        reason: RevocationReason,
        /// The directory event that caused it, if one did.
        cause: Option<DirectoryEventId>,
    },
}

impl SessionState {
    /// Whether this state is terminal.
    pub const fn is_revoked(&self) -> bool {
        matches!(self, SessionState::Revoked { .. })
    }

    /// Whether the session is suspended.
    pub const fn is_suspended(&self) -> bool {
        matches!(self, SessionState::Suspended { .. })
    }

    /// The stable name of the state.
    pub const fn name(&self) -> &'static str {
        match self {
            SessionState::Active => "active",
            SessionState::NeedsRecheck => "needs_recheck",
            SessionState::Suspended { .. } => "suspended",
            SessionState::Revoked { .. } => "revoked",
        }
    }
}

/// One session or credential.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Session {
    /// Identifier (safe to show; not a secret).
    pub id: SessionId,
    /// The identity it belongs to.
    pub identity: IdentityId,
    /// What kind of credential it is.
    pub kind: CredentialKind,
    /// Hash of the bearer secret.
    pub token_hash: TokenHash,
    /// The API client that opened it, if any.
    pub client: Option<ClientId>,
    /// Snapshot of the login name issued as a claim. The session authority
    /// keeps what it *issued*, never the identity's current entitlements.
    pub user_name: String,
    /// Identity version the claims were taken from.
    pub claims_version: u64,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// Absolute expiry.
    pub expires_at: Timestamp,
    /// Last use (introspection or refresh), as last persisted: the idle
    /// timeout counts from here. Persisted in batches, so after a crash it
    /// may be earlier than the real last use, which errs towards closed.
    pub last_seen: Timestamp,
    /// Current validity state.
    pub state: SessionState,
}

impl Session {
    /// Whether the session may still be used at `now`, before any policy
    /// re-check: not revoked and not expired.
    pub fn is_live(&self, now: Timestamp) -> bool {
        !self.state.is_revoked() && now < self.expires_at
    }

    /// Whether introspection may answer active at `now`: live and not
    /// suspended.
    pub fn is_usable(&self, now: Timestamp) -> bool {
        self.is_live(now) && !self.state.is_suspended()
    }
}
