//! Session validity: the session authority's half of the world.

use std::fmt;

use crate::directory::UnknownName;
use crate::{ClientId, DirectoryEventId, IdentityId, SessionId, Timestamp};

/// The stored form of a bearer secret; the secret itself is never stored.
///
/// Secrets carry at least 256 bits of randomness, so a hash is
/// preimage-safe and lets us look a presented token up by hash in O(1).
/// Secrets minted by Lockstep hash to their issue time (8 bytes) and 24
/// bytes of SHA-256, so they sort by age; others to plain SHA-256 (see the
/// engine's `secrets`). Memory maps and shards key on the last bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
    /// What a session is: a grant whose tokens share one fate (revoking it
    /// kills every token of it).
    CredentialKind, "credential kind" {
        /// A session opened for an identity (`POST /v1/sessions`): short
        /// access tokens, and a rotating refresh token if asked for.
        Session => "session",
        /// A non-human identity's API key: one long-lived bearer secret.
        ApiKey => "api_key",
        /// A non-human identity's OAuth client secret: exchanged for short
        /// access tokens (`client_credentials`).
        ClientSecret => "client_secret",
    }
);

impl CredentialKind {
    /// Whether this is a non-human identity's credential (mandatory
    /// expiry, no idle timeout).
    pub const fn is_credential(self) -> bool {
        !matches!(self, CredentialKind::Session)
    }
}

simple_enum!(
    /// What one secret of a session is.
    TokenKind, "token kind" {
        /// A short-lived access token (opaque `lst_at_…` or a JWT).
        Access => "access",
        /// A refresh token (`lst_rt_…`), rotated on every use.
        Refresh => "refresh",
        /// An API key (`lst_ak_…`), presented as a bearer token.
        ApiKey => "api_key",
        /// A client secret (`lst_cs_…`), presented at the token endpoint.
        ClientSecret => "client_secret",
    }
);

simple_enum!(
    /// How access tokens of a session are encoded.
    TokenFormat, "token format" {
        /// An opaque random string; resource servers introspect it.
        Opaque => "opaque",
        /// A signed JWT (RFC 9068) that resource servers can validate locally.
        Jwt => "jwt",
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
        /// A retired refresh token was presented again (RFC 9700 §4.14):
        /// the whole session is presumed stolen.
        RefreshReuse => "refresh_reuse",
        /// Every session and credential of the identity was revoked at once
        /// (revoke-all, or global token revocation).
        SubjectRevoked => "subject_revoked",
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

/// One session or credential: a grant whose secrets ([`Token`]s) share its
/// fate. Revocation, suspension and expiry apply to the session, and so to
/// every token of it at once.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Session {
    /// Identifier (safe to show; not a secret). For a client secret it is
    /// also the OAuth `client_id`.
    pub id: SessionId,
    /// The identity it belongs to.
    pub identity: IdentityId,
    /// What kind of credential it is.
    pub kind: CredentialKind,
    /// How its access tokens are encoded.
    pub format: TokenFormat,
    /// The Lockstep API client that opened it (`None`: the admin). RFC 7009
    /// lets only this client revoke its tokens.
    pub issued_to: Option<ClientId>,
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

/// One secret of a session. Only its hash is ever stored.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Token {
    /// SHA-256 of the secret (for a JWT, of the compact serialisation).
    pub hash: TokenHash,
    /// The session it belongs to.
    pub session: SessionId,
    /// What it is.
    pub kind: TokenKind,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// When it stops working (never later than its session).
    pub expires_at: Timestamp,
    /// When it was retired: a refresh token when it was used (presenting it
    /// again is reuse), a secret when it was rotated (it keeps working until
    /// `expires_at`, the end of the grace period).
    pub retired_at: Option<Timestamp>,
}

impl Token {
    /// Whether the token itself (not its session) still works at `now`.
    pub fn works(&self, now: Timestamp) -> bool {
        now < self.expires_at && (self.kind != TokenKind::Refresh || self.retired_at.is_none())
    }
}
