//! Directory sources on the admin API: `GET /v1/sources`,
//! `POST /v1/sources/{name}/import`, `POST /v1/sources/{name}/approve`.

use serde::{Deserialize, Serialize};

/// One row of an HR file, as `lockstep import` sends it (CSV columns or
/// JSON Lines keys of the same names).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ImportRow {
    /// The HR system's stable key for the person (required).
    #[serde(rename = "externalId")]
    pub external_id: String,
    /// Login name (required).
    #[serde(rename = "userName")]
    pub user_name: String,
    /// Work e-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Display name.
    #[serde(rename = "displayName", default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Whether the person is entitled (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// Identity kind (`human` by default; `service_account`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `externalId` of the owner, for a non-human identity.
    #[serde(rename = "ownerExternalId", default, skip_serializing_if = "Option::is_none")]
    pub owner_external_id: Option<String>,
}

/// `POST /v1/sources/{name}/import`: the whole truth of a file source.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// Every row of the file: rows that disappeared since the last import
    /// are deactivated.
    pub rows: Vec<ImportRow>,
    /// Only plan: change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// One planned (or applied) deactivation.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct PlannedRemovalView {
    /// `userName`.
    pub user_name: String,
    /// The source's key (`externalId`).
    pub external_id: String,
    /// `deactivate` or `delete`.
    pub action: String,
    /// Live sessions it cuts.
    pub sessions: usize,
}

/// A record the source could not apply.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct RejectedView {
    /// The source's key.
    pub external_id: String,
    /// Why.
    pub reason: String,
}

/// The answer to an import: the plan, and (unless a dry run) what
/// applying it did.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ImportResponse {
    /// Whether this was only a plan.
    pub dry_run: bool,
    /// `userName`s to create.
    pub creates: Vec<String>,
    /// `userName`s to change.
    pub updates: Vec<String>,
    /// Deactivations, each with the sessions it cuts.
    pub deactivations: Vec<PlannedRemovalView>,
    /// Rows that match what is stored.
    pub unchanged: usize,
    /// Rows that cannot be applied.
    pub rejected: Vec<RejectedView>,
    /// The circuit breaker's threshold for the source now.
    pub threshold: usize,
    /// Whether the breaker holds (or would hold) the import whole.
    pub held: bool,
    /// What was applied (absent for a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<AppliedView>,
}

/// What applying a source update did.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Default)]
pub struct AppliedView {
    /// Identities and groups created.
    pub created: usize,
    /// Identities and groups changed.
    pub updated: usize,
    /// Identities deactivated.
    pub deactivated: usize,
    /// Identities and groups deleted.
    pub deleted: usize,
    /// Records that matched what is stored.
    pub unchanged: usize,
    /// Removals held by the circuit breaker.
    pub held: usize,
    /// Records refused.
    pub rejected: usize,
    /// Sessions revoked.
    pub revoked: usize,
}

/// A held change, as listed.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct HeldView {
    /// The source's key (`*` for a complete update held whole).
    pub key: String,
    /// What it would do.
    pub change: String,
}

/// One source in `GET /v1/sources`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SourceView {
    /// Its name.
    pub name: String,
    /// `ldap` or `file`.
    pub kind: String,
    /// `syncrepl`, `poll`, `usn_poll` or `import`.
    pub mode: String,
    /// `connecting`, `live`, `polling` or `down`.
    pub state: String,
    /// RFC 3339: the last update applied.
    pub last_sync: Option<String>,
    /// RFC 3339: the last moment the directory held everything the source
    /// had.
    pub complete_at: Option<String>,
    /// Seconds since then (0 while a syncrepl session is live).
    pub staleness_seconds: Option<f64>,
    /// The configured bound, in seconds.
    pub max_staleness_seconds: Option<f64>,
    /// Whether it is staler than its bound (its privileged identities'
    /// sessions are suspended).
    pub stale: bool,
    /// The last error reported.
    pub last_error: Option<String>,
    /// Live identities it owns.
    pub identities: usize,
    /// Groups it owns.
    pub groups: usize,
    /// Totals since the server started.
    pub totals: AppliedView,
    /// The circuit breaker's threshold now.
    pub threshold: usize,
    /// Held changes, waiting for `lockstep sources approve`.
    pub held: Vec<HeldView>,
    /// RFC 3339: when the oldest held change was held.
    pub held_since: Option<String>,
}

/// `GET /v1/sources`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SourcesResponse {
    /// Every configured source, in configuration order.
    pub sources: Vec<SourceView>,
}
