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
}

/// Response of `POST /v1/sessions` (201). The only time the token is shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedSession {
    /// Session id.
    pub session_id: String,
    /// The bearer token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// RFC 3339 expiry.
    pub expires_at: String,
    /// The identity's SCIM id.
    pub subject: String,
    /// The identity's `userName`.
    pub username: String,
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
    /// Credential kind.
    pub kind: String,
    /// `active`, `needs_recheck` or `revoked`.
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
    /// `directory`, `session` or `admin`.
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
        Self {
            session_id: s.id.to_string(),
            subject: s.identity.to_string(),
            username: s.user_name.clone(),
            kind: s.kind.as_str().to_owned(),
            state: match s.state {
                SessionState::Active => "active",
                SessionState::NeedsRecheck => "needs_recheck",
                SessionState::Revoked { .. } => "revoked",
            }
            .to_owned(),
            issued_at: format_rfc3339(s.issued_at),
            expires_at: format_rfc3339(s.expires_at),
            client_id: s.client.map_or_else(|| "admin".to_owned(), |c| c.to_string()),
            revoked_at,
            revocation_reason,
            revoked_by_event,
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
            actor: r.entry.actor.clone(),
            detail: r.entry.detail.clone(),
            prev_hash: r.prev_hash.to_hex(),
            hash: r.hash.to_hex(),
        }
    }
}
