//! Lockstep's own admin API (`/v1/...`).

use serde::{Deserialize, Serialize};

/// Error body of the admin API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `unknown_subject`.
    pub error: String,
    /// Human-readable detail naming the bad field or value.
    pub error_description: String,
}

/// `POST /v1/sessions`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionRequest {
    /// SCIM id or `userName` of the identity.
    pub subject: String,
    /// Lifetime like `15m`, `1h30m`; the server default if absent.
    pub ttl: Option<String>,
    /// Also issue a rotating refresh token (`lst_rt_…`).
    #[serde(default)]
    pub refresh: bool,
    /// `opaque` or `jwt` (RFC 9068); the `[tokens] access_token_format`
    /// default if absent.
    pub format: Option<String>,
}

/// Response of `POST /v1/sessions` (201). The only time the tokens are shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedSession {
    /// Session id.
    pub session_id: String,
    /// The bearer token (opaque, or a JWT).
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// `opaque` or `jwt`.
    pub format: String,
    /// RFC 3339 expiry of the access token.
    pub access_token_expires_at: String,
    /// The refresh token, if asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// RFC 3339 expiry of the session (and of its refresh token).
    pub expires_at: String,
    /// The identity's SCIM id.
    pub subject: String,
    /// The identity's `userName`.
    pub username: String,
}

/// `GET /v1/sessions?subject=…`.
#[derive(Debug, Clone, Deserialize)]
pub struct SubjectQuery {
    /// SCIM id or `userName`.
    pub subject: Option<String>,
}

/// `GET /v1/audit?after=&limit=`.
#[derive(Debug, Clone, Deserialize)]
pub struct AuditQuery {
    /// Return records after this sequence number.
    pub after: Option<u64>,
    /// Page size.
    pub limit: Option<usize>,
}

/// `POST /v1/check`: a fresh decision before a privileged action.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// The token presented to the resource server.
    pub token: String,
    /// Groups (display name or id) the identity must be a member of now.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// Response of `POST /v1/check`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct CheckResponse {
    /// Whether the action may proceed.
    pub allow: bool,
    /// Every condition checked, as sentences.
    pub reasons: Vec<String>,
    /// The identity's SCIM id, if the token is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// RFC 3339 time of the decision.
    pub checked_at: String,
}

/// A directory event as the reach report shows it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DirectoryEventView {
    /// Position in the directory log.
    pub position: u64,
    /// RFC 3339 commit time.
    pub at: String,
    /// e.g. `identity_deactivated`.
    pub change: String,
    /// `identity` or `group`.
    pub subject_type: String,
    /// The subject's SCIM id.
    pub subject: String,
    /// Its name at the time.
    pub subject_name: String,
    /// The subject's tiers after the event (identities).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// The source that wrote it.
    pub source: String,
    /// The event of the same write that caused this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caused_by: Option<u64>,
}

/// `GET /v1/directory-events/{position}/reach`: what one directory change
/// reached.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ReachView {
    /// Security Event Tokens queued for Shared Signals streams, and their
    /// delivery.
    #[serde(default)]
    pub signals: Vec<SignalDeliveryView>,
    /// The event.
    pub event: DirectoryEventView,
    /// Events it caused (fan-out), in log order.
    pub caused: Vec<DirectoryEventView>,
    /// The decisions: one per event, with its rule and reason.
    pub decisions: Vec<DecisionView>,
    /// Each session the change touched, what was done, and its state now.
    pub sessions: Vec<TouchedSession>,
    /// Sessions of the subjects still live now, with their expiry.
    pub still_live: Vec<SessionView>,
    /// When the last of them expires (RFC 3339), if any lives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_until: Option<String>,
    /// Whether the fan-out was cut at the reporting limit.
    pub truncated: bool,
    /// RFC 3339 time of the report.
    pub reported_at: String,
}

/// A Security Event Token queued for a Shared Signals stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignalDeliveryView {
    /// The stream.
    pub stream_id: String,
    /// The SET's `jti`.
    pub jti: String,
    /// Its event type URI.
    pub event: String,
    /// RFC 3339: when the receiver acknowledged it (`null`: pending).
    pub delivered_at: Option<String>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The last failure, if any.
    pub error: Option<String>,
}

/// The policy's decision on one event.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DecisionView {
    /// Position of the event decided on.
    pub position: u64,
    /// The audit record of the event (its detail ends with the decision).
    pub detail: String,
}

/// One session a change touched.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TouchedSession {
    /// What was done: `session.revoked`, `session.expiry_shortened`,
    /// `session.suspended`, `session.marked_for_recheck`, `session.resumed`.
    pub action: String,
    /// The event whose decision did it.
    pub position: u64,
    /// The rule cited.
    pub actor: String,
    /// The decision's detail (reason, new expiry, grace deadline).
    pub detail: String,
    /// The session as it stands now.
    pub now: SessionView,
}

/// A session as listed, without secrets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionView {
    /// Session id.
    pub session_id: String,
    /// The identity's SCIM id.
    pub subject: String,
    /// Issued `userName`.
    pub username: String,
    /// `session`, `api_key` or `client_secret`.
    pub kind: String,
    /// Access token format: `opaque` or `jwt`.
    pub format: String,
    /// `active`, `needs_recheck`, `suspended` or `revoked`.
    pub state: String,
    /// RFC 3339 issue time.
    pub issued_at: String,
    /// RFC 3339 expiry.
    pub expires_at: String,
    /// Client it was issued to (`admin` for the admin).
    pub client_id: String,
    /// RFC 3339 revocation time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// Why it was revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_reason: Option<String>,
    /// The directory event that caused the revocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_by_event: Option<u64>,
    /// Why it is suspended (`owner_lost`, `source_stale`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspended_for: Option<String>,
    /// RFC 3339 time a suspension turns into a revocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspended_until: Option<String>,
    /// The directory event that caused the suspension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspended_by_event: Option<u64>,
}

/// `POST /v1/identities/{id}/credentials`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCredentialRequest {
    /// `client_secret` or `api_key`.
    pub kind: String,
    /// Lifetime like `30d`; the tier's `credential_ttl` if absent.
    pub ttl: Option<String>,
}

/// `POST /v1/identities/{id}/credentials/{credential_id}/rotate`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RotateCredentialRequest {
    /// How long the old secret keeps working, like `1h` (default `0s`:
    /// it stops at once).
    pub grace: Option<String>,
}

/// Response of creating (201) or rotating (200) a credential. The only
/// time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedCredential {
    /// Credential id.
    pub credential_id: String,
    /// The OAuth `client_id` (a client secret's; the credential id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `client_secret` or `api_key`.
    pub kind: String,
    /// The secret.
    pub secret: String,
    /// RFC 3339 expiry.
    pub expires_at: String,
    /// After a rotation: RFC 3339 time the previous secret stops working.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<String>,
}

/// A credential as listed, without its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CredentialView {
    /// Credential id.
    pub credential_id: String,
    /// The OAuth `client_id` of a client secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `client_secret` or `api_key`.
    pub kind: String,
    /// `active`, `needs_recheck`, `suspended` or `revoked`.
    pub state: String,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 expiry.
    pub expires_at: String,
    /// RFC 3339 time of the last use, if ever used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
    /// The Lockstep API client that created it (`admin` for the admin).
    pub created_by: String,
    /// RFC 3339 revocation time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// Why it was revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_reason: Option<String>,
    /// Why it is suspended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspended_for: Option<String>,
}

/// `GET /v1/identities/{id}/credentials`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CredentialList {
    /// Credentials, oldest first.
    pub credentials: Vec<CredentialView>,
}

/// Response of `POST /v1/identities/{id}/revoke-all`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RevokedAll {
    /// The identity's SCIM id.
    pub subject: String,
    /// How many live sessions and credentials were revoked.
    pub revoked: usize,
}

/// `GET /v1/sessions?subject=…`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionList {
    /// Sessions in issue order.
    pub sessions: Vec<SessionView>,
}

/// `POST /v1/clients`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateClientRequest {
    /// Label, e.g. `okta-prod`.
    pub name: String,
    /// Scopes among `scim`, `sessions`, `introspect`, `audit`.
    pub scopes: Vec<String>,
}

/// Response of `POST /v1/clients` (201). The only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedClient {
    /// The HTTP Basic user name.
    pub client_id: String,
    /// The secret (also usable as a bearer token).
    pub client_secret: String,
    /// Label.
    pub name: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
}

/// A client as listed, without its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientView {
    /// Id.
    pub client_id: String,
    /// Label.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// RFC 3339 creation time.
    pub created: String,
}

/// One audit record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditRecordView {
    /// Position, from 1.
    pub seq: u64,
    /// RFC 3339 time.
    pub at: String,
    /// `directory`, `session`, `admin` or `policy`.
    pub family: String,
    /// e.g. `session.revoked`.
    pub kind: String,
    /// Identity SCIM id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Identity `userName` at the time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Session id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// For `directory.*`: this event's position in the directory log. For
    /// `session.*`: the directory event that caused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory_event: Option<u64>,
    /// Who did it.
    pub actor: String,
    /// Detail.
    pub detail: String,
    /// Hex SHA-256 of the previous record.
    pub prev_hash: String,
    /// Hex SHA-256 of this record.
    pub hash: String,
}

/// `GET /v1/audit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditPage {
    /// Records, oldest first.
    pub records: Vec<AuditRecordView>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// Directory position applied to sessions.
    pub consumed_directory_event: Option<u64>,
    /// Sessions in the introspection cache.
    pub cached_sessions: usize,
    /// Whether every bearer secret is in memory (false for a few seconds
    /// after a start with many sessions: those not yet loaded are read
    /// from the store, so answers are right, only slower).
    pub bearer_tokens_loaded: bool,
}

use crate::format_rfc3339;
use lockstep_domain::{AuditRecord, Session, SessionState};

impl SessionView {
    /// The listed form of a session.
    pub fn from_session(s: &Session) -> Self {
        let (revoked_at, revocation_reason, revoked_by_event) = match s.state {
            SessionState::Revoked { at, reason, cause } => {
                (Some(format_rfc3339(at)), Some(reason.as_str().to_owned()), cause.map(|c| c.0))
            }
            _ => (None, None, None),
        };
        let (suspended_for, suspended_until, suspended_by_event) = match s.state {
            SessionState::Suspended { condition, until, cause, .. } => {
                (Some(condition.as_str().to_owned()), until.map(format_rfc3339), cause.map(|c| c.0))
            }
            _ => (None, None, None),
        };
        Self {
            session_id: s.id.to_string(),
            subject: s.identity.to_string(),
            username: s.user_name.clone(),
            kind: s.kind.as_str().to_owned(),
            format: s.format.as_str().to_owned(),
            state: s.state.name().to_owned(),
            issued_at: format_rfc3339(s.issued_at),
            expires_at: format_rfc3339(s.expires_at),
            client_id: s.issued_to.map_or_else(|| "admin".to_owned(), |c| c.to_string()),
            revoked_at,
            revocation_reason,
            revoked_by_event,
            suspended_for,
            suspended_until,
            suspended_by_event,
        }
    }
}

impl CredentialView {
    /// The listed form of a credential and its last use.
    pub fn from_credential(s: &Session, last_used_at: Option<lockstep_domain::Timestamp>) -> Self {
        let (revoked_at, revocation_reason) = match s.state {
            SessionState::Revoked { at, reason, .. } => {
                (Some(format_rfc3339(at)), Some(reason.as_str().to_owned()))
            }
            _ => (None, None),
        };
        let suspended_for = match s.state {
            SessionState::Suspended { condition, .. } => Some(condition.as_str().to_owned()),
            _ => None,
        };
        Self {
            credential_id: s.id.to_string(),
            client_id: (s.kind == lockstep_domain::CredentialKind::ClientSecret).then(|| s.id.to_string()),
            kind: s.kind.as_str().to_owned(),
            state: s.state.name().to_owned(),
            created_at: format_rfc3339(s.issued_at),
            expires_at: format_rfc3339(s.expires_at),
            last_used_at: last_used_at.map(format_rfc3339),
            created_by: s.issued_to.map_or_else(|| "admin".to_owned(), |c| c.to_string()),
            revoked_at,
            revocation_reason,
            suspended_for,
        }
    }
}

impl AuditRecordView {
    /// The wire form of an audit record.
    pub fn from_record(r: &AuditRecord) -> Self {
        let family = match r.entry.kind.family() {
            lockstep_domain::AuditFamily::Directory => "directory",
            lockstep_domain::AuditFamily::Session => "session",
            lockstep_domain::AuditFamily::Admin => "admin",
            lockstep_domain::AuditFamily::Policy => "policy",
        };
        Self {
            seq: r.seq,
            at: format_rfc3339(r.entry.at),
            family: family.to_owned(),
            kind: r.entry.kind.as_str().to_owned(),
            identity: r.entry.identity.map(|i| i.to_string()),
            username: r.entry.user_name.clone(),
            session: r.entry.session.map(|s| s.to_string()),
            directory_event: r.entry.directory_event.map(|e| e.0),
            actor: r.entry.actor.to_string(),
            detail: r.entry.detail.clone(),
            prev_hash: r.prev_hash.to_hex(),
            hash: r.hash.to_hex(),
        }
    }
}

impl DirectoryEventView {
    /// The wire form of a directory event.
    pub fn from_event(e: &lockstep_domain::DirectoryEvent) -> Self {
        let (subject_type, tier) = match &e.subject {
            lockstep_domain::Subject::Identity { tiers, .. } => ("identity", Some(tiers.as_str().to_owned())),
            lockstep_domain::Subject::Group { .. } => ("group", None),
        };
        let subject = match &e.subject {
            lockstep_domain::Subject::Identity { id, .. } => id.to_string(),
            lockstep_domain::Subject::Group { id, .. } => id.to_string(),
        };
        Self {
            position: e.id.0,
            at: format_rfc3339(e.at),
            change: e.change.kind().as_str().to_owned(),
            subject_type: subject_type.to_owned(),
            subject,
            subject_name: e.subject.name().to_owned(),
            tier,
            source: e.origin.source.as_str().to_owned(),
            caused_by: e.cause.map(|c| c.0),
        }
    }
}

impl ReachView {
    /// The wire form of a reach report.
    /// With the SETs the event queued, per stream.
    #[must_use]
    pub fn with_signals(mut self, signals: &[lockstep_domain::SignalRecord]) -> Self {
        self.signals = signals
            .iter()
            .map(|s| SignalDeliveryView {
                stream_id: s.stream.to_string(),
                jti: s.jti.clone(),
                event: s.kind.uri().to_owned(),
                delivered_at: s.delivered_at.map(format_rfc3339),
                attempts: s.attempts,
                error: s.error.clone(),
            })
            .collect();
        self
    }

    pub fn build(
        event: &lockstep_domain::DirectoryEvent,
        caused: &[lockstep_domain::DirectoryEvent],
        records: &[AuditRecord],
        touched: &[Session],
        still_live: &[Session],
        truncated: bool,
        at: lockstep_domain::Timestamp,
    ) -> Self {
        use lockstep_domain::AuditFamily;
        let decisions = records
            .iter()
            .filter(|r| r.entry.kind.family() == AuditFamily::Directory)
            .filter_map(|r| {
                Some(DecisionView { position: r.entry.directory_event?.0, detail: r.entry.detail.clone() })
            })
            .collect();
        let sessions = records
            .iter()
            .filter(|r| r.entry.kind.family() == AuditFamily::Session)
            .filter_map(|r| {
                let id = r.entry.session?;
                let now = touched.iter().find(|s| s.id == id)?;
                Some(TouchedSession {
                    action: r.entry.kind.as_str().to_owned(),
                    position: r.entry.directory_event?.0,
                    actor: r.entry.actor.to_string(),
                    detail: r.entry.detail.clone(),
                    now: SessionView::from_session(now),
                })
            })
            .collect();
        Self {
            event: DirectoryEventView::from_event(event),
            caused: caused.iter().map(DirectoryEventView::from_event).collect(),
            decisions,
            sessions,
            still_live: still_live.iter().map(SessionView::from_session).collect(),
            live_until: still_live.iter().map(|s| s.expires_at).max().map(format_rfc3339),
            truncated,
            reported_at: format_rfc3339(at),
            signals: Vec::new(),
        }
    }
}
