//! Security signals Lockstep tells downstream applications about (the
//! OpenID Shared Signals Framework: CAEP and RISC events), the streams that
//! subscribe to them, and the outbox rows that carry them to each stream.
//!
//! A signal is produced in the same session-store transaction as the
//! impact it reports, so a committed revocation always has its signal
//! queued (the outbox), and delivery runs beside the bridge, never in it.

use std::fmt;
use std::str::FromStr;

use crate::{ClientId, IdentityId, SessionId, StreamId, Tiers, Timestamp, UnknownName};

/// What happened, as a Shared Signals event type.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum SignalKind {
    /// CAEP `session-revoked`: one session (and its tokens) is no longer valid.
    SessionRevoked,
    /// CAEP `token-claims-change`: the claims of a live session changed
    /// (groups, tier).
    TokenClaimsChange,
    /// CAEP `credential-change`: a non-human credential was created,
    /// rotated or revoked.
    CredentialChange,
    /// RISC `account-disabled`.
    AccountDisabled,
    /// RISC `account-enabled`.
    AccountEnabled,
    /// RISC `account-purged`.
    AccountPurged,
    /// SSF `verification`: the receiver asked to check the stream.
    Verification,
}

impl SignalKind {
    /// Every kind.
    pub const ALL: &'static [SignalKind] = &[
        SignalKind::SessionRevoked,
        SignalKind::TokenClaimsChange,
        SignalKind::CredentialChange,
        SignalKind::AccountDisabled,
        SignalKind::AccountEnabled,
        SignalKind::AccountPurged,
        SignalKind::Verification,
    ];

    /// The event type URI (CAEP, RISC, SSF).
    pub const fn uri(self) -> &'static str {
        match self {
            SignalKind::SessionRevoked => {
                "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
            }
            SignalKind::TokenClaimsChange => {
                "https://schemas.openid.net/secevent/caep/event-type/token-claims-change"
            }
            SignalKind::CredentialChange => {
                "https://schemas.openid.net/secevent/caep/event-type/credential-change"
            }
            SignalKind::AccountDisabled => {
                "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
            }
            SignalKind::AccountEnabled => {
                "https://schemas.openid.net/secevent/risc/event-type/account-enabled"
            }
            SignalKind::AccountPurged => "https://schemas.openid.net/secevent/risc/event-type/account-purged",
            SignalKind::Verification => "https://schemas.openid.net/secevent/ssf/event-type/verification",
        }
    }

    /// The kind of an event type URI.
    pub fn from_uri(uri: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.uri() == uri)
    }

    /// A short stable name (`session_revoked`), for storage and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            SignalKind::SessionRevoked => "session_revoked",
            SignalKind::TokenClaimsChange => "token_claims_change",
            SignalKind::CredentialChange => "credential_change",
            SignalKind::AccountDisabled => "account_disabled",
            SignalKind::AccountEnabled => "account_enabled",
            SignalKind::AccountPurged => "account_purged",
            SignalKind::Verification => "verification",
        }
    }
}

impl fmt::Display for SignalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SignalKind {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownName { what: "signal kind", got: s.to_owned() })
    }
}

/// One security signal, before it is addressed to a stream. Every field a
/// SET needs is here, typed: the SSF encoder never parses audit text.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Signal {
    /// What happened.
    pub kind: SignalKind,
    /// When it happened.
    pub at: Timestamp,
    /// The identity it is about (none for a verification event).
    pub identity: Option<IdentityId>,
    /// Its `userName` (an e-mail-shaped one doubles as the `email` subject).
    pub user_name: Option<String>,
    /// The session (for `session-revoked`, `token-claims-change`) or the
    /// credential (for `credential-change`) it is about.
    pub session: Option<SessionId>,
    /// `credential-change`: `create`, `revoke` or `update`.
    pub change: Option<String>,
    /// `credential-change`: the credential's kind (`client_secret`,
    /// `api_key`).
    pub credential_type: Option<String>,
    /// `token-claims-change`: the identity's groups and tiers now.
    pub claims: Option<(Vec<String>, Tiers)>,
    /// Who initiated it: `admin`, `policy`, `system` (CAEP
    /// `initiating_entity`).
    pub initiator: String,
    /// A reason for an administrator to read (CAEP `reason_admin`).
    pub reason: String,
    /// What links every signal of one directory event or one call (the
    /// SET `txn` claim).
    pub txn: String,
    /// `verification`: the receiver's `state`, echoed.
    pub state: Option<String>,
}

/// Where a stream's events go.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Delivery {
    /// RFC 8935: POSTed to the receiver's endpoint.
    Push {
        /// The receiver's URL.
        endpoint: String,
        /// The `Authorization` header value to send, if the receiver asked
        /// for one (a credential of the receiver's: kept, never shown).
        authorization: Option<String>,
    },
    /// RFC 8936: the receiver polls.
    Poll,
}

/// A stream's status (SSF 1.0 §8.1.2).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum StreamStatus {
    /// Events are delivered.
    Enabled,
    /// Events are held and delivered on re-enable.
    Paused,
    /// Events are dropped.
    Disabled,
}

impl StreamStatus {
    /// The SSF name.
    pub const fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Enabled => "enabled",
            StreamStatus::Paused => "paused",
            StreamStatus::Disabled => "disabled",
        }
    }
}

impl FromStr for StreamStatus {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "enabled" => Ok(StreamStatus::Enabled),
            "paused" => Ok(StreamStatus::Paused),
            "disabled" => Ok(StreamStatus::Disabled),
            other => Err(UnknownName { what: "stream status", got: other.to_owned() }),
        }
    }
}

/// One receiver's subscription.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Stream {
    /// Its id.
    pub id: StreamId,
    /// The API client that created it (only it sees the stream).
    pub client: Option<ClientId>,
    /// The SET `aud`.
    pub audience: String,
    /// Push or poll.
    pub delivery: Delivery,
    /// Event kinds the receiver asked for.
    pub requested: Vec<SignalKind>,
    /// Status.
    pub status: StreamStatus,
    /// Why it has that status, if the receiver said.
    pub reason: Option<String>,
    /// A description, as the receiver gave it.
    pub description: Option<String>,
    /// Identities added as subjects (if any are, only they get events).
    pub subjects: Vec<IdentityId>,
    /// Identities removed as subjects (never get events).
    pub excluded: Vec<IdentityId>,
    /// When it was created.
    pub created: Timestamp,
}

impl Stream {
    /// Whether a signal goes to this stream (a verification is addressed
    /// to its stream directly, never fanned out).
    pub fn wants(&self, signal: &Signal) -> bool {
        if self.status == StreamStatus::Disabled || signal.kind == SignalKind::Verification {
            return false;
        }
        if !self.requested.contains(&signal.kind) {
            return false;
        }
        match signal.identity {
            Some(id) if self.excluded.contains(&id) => false,
            Some(id) => self.subjects.is_empty() || self.subjects.contains(&id),
            None => false,
        }
    }
}

/// A signal and every stream it goes to, as the outbox holds it: once,
/// however many streams want it. A deactivation with 100 sessions and ten
/// streams is 101 outbox entries in the bridge's transaction, not 1,010;
/// per-stream delivery state is written later, by delivery, beside the
/// bridge.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Outgoing {
    /// Unique per signal; the SET for `streams[k]` has the `jti`
    /// `"{jti_base}.{k}"` (see [`Outgoing::jti`]), fixed when queued so
    /// every retry carries it. Must not be empty.
    pub jti_base: String,
    /// The streams it is addressed to (at least one).
    pub streams: Vec<StreamId>,
    /// The signal.
    pub signal: Signal,
}

impl Outgoing {
    /// The `jti` of the SET for the `k`-th stream.
    pub fn jti(&self, k: usize) -> String {
        format!("{}.{k}", self.jti_base)
    }

    /// The SET for each stream, in order.
    pub fn addressed(&self) -> impl Iterator<Item = Addressed> + '_ {
        self.streams.iter().enumerate().map(|(k, stream)| Addressed {
            stream: *stream,
            jti: self.jti(k),
            signal: self.signal.clone(),
        })
    }
}

/// Splits a SET `jti` into the signal's `jti_base` and the position of its
/// stream (`None`: not a `jti` Lockstep gave out).
pub fn split_jti(jti: &str) -> Option<(&str, usize)> {
    let (base, k) = jti.rsplit_once('.')?;
    if base.is_empty() || k.is_empty() || !k.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((base, k.parse().ok()?))
}

/// One SET to send: a signal addressed to one stream.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Addressed {
    /// The stream.
    pub stream: StreamId,
    /// The SET's `jti`.
    pub jti: String,
    /// The signal.
    pub signal: Signal,
}

/// A signal as the reach report shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignalRecord {
    /// The stream.
    pub stream: StreamId,
    /// The SET's `jti`.
    pub jti: String,
    /// Its event type.
    pub kind: SignalKind,
    /// When the receiver acknowledged it (`None`: pending).
    pub delivered_at: Option<Timestamp>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The last error, if an attempt failed.
    pub error: Option<String>,
}
