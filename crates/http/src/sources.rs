//! Directory sources on the admin API: status, imports of a file source,
//! approval of what a circuit breaker holds.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use lockstep_domain::{IdentityKind, Scope};
use lockstep_engine::sources::{
    DryRun, SourceApplied, SourceError, SourceRecord, SourceStatus, SourceUpdate, UserRecord,
};
use lockstep_proto::format_rfc3339;
use lockstep_proto::sources::{
    AppliedView, HeldView, ImportRequest, ImportResponse, ImportRow, PlannedRemovalView, RejectedView,
    SourceView, SourcesResponse,
};

use crate::api::json_body;
use crate::error::{ApiError, Flavor};
use crate::{AppState, Caller, blocking};

const FLAVOR: Flavor = Flavor::Admin;

/// The largest import body: a 100,000-row file is about 15 MB of JSON.
pub const IMPORT_BODY_LIMIT: usize = 256 * 1024 * 1024;

fn source_err(e: SourceError) -> ApiError {
    match e {
        SourceError::Unknown(_) => {
            ApiError::new(FLAVOR, StatusCode::NOT_FOUND, Some("unknown_source"), e.to_string())
        }
        SourceError::Refused(_) => {
            ApiError::new(FLAVOR, StatusCode::CONFLICT, Some("refused"), e.to_string())
        }
        SourceError::NothingHeld(_) => {
            ApiError::new(FLAVOR, StatusCode::CONFLICT, Some("nothing_held"), e.to_string())
        }
        SourceError::Engine(e) => ApiError::from_engine(FLAVOR, e),
    }
}

fn applied_view(a: &SourceApplied) -> AppliedView {
    AppliedView {
        created: a.created,
        updated: a.updated,
        deactivated: a.deactivated,
        deleted: a.deleted,
        unchanged: a.unchanged,
        held: a.held,
        rejected: a.rejected.len(),
        revoked: a.revoked,
    }
}

fn view(s: SourceStatus) -> SourceView {
    SourceView {
        name: s.settings.name.to_string(),
        kind: s.settings.kind.clone(),
        mode: s.settings.mode.clone(),
        state: s.connection.name().to_owned(),
        last_sync: s.last_sync.map(format_rfc3339),
        complete_at: s.complete_at.map(format_rfc3339),
        staleness_seconds: s.staleness,
        max_staleness_seconds: s.settings.max_staleness.map(|d| d.as_secs_f64()),
        stale: s.stale,
        last_error: s.last_error,
        identities: s.identities,
        groups: s.groups,
        totals: applied_view(&s.totals),
        threshold: s.threshold,
        held: s.held.into_iter().map(|(key, change)| HeldView { key, change }).collect(),
        held_since: s.held_since.map(format_rfc3339),
    }
}

/// `GET /v1/sources` (scope `audit`): every source's mode, state, last
/// sync, staleness, counts and held changes.
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<SourcesResponse>, ApiError> {
    caller.require(Scope::Audit)?;
    let engine = state.engine.clone();
    let status = blocking(FLAVOR, move || engine.sources().status().map_err(source_err)).await?;
    Ok(Json(SourcesResponse { sources: status.into_iter().map(view).collect() }))
}

/// `POST /v1/sources/{name}/approve` (scope `scim`): applies exactly what
/// the source's circuit breaker holds.
pub(crate) async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<AppliedView>, ApiError> {
    caller.require(Scope::Scim)?;
    let engine = state.engine.clone();
    let actor = caller.principal.actor();
    let applied =
        blocking(FLAVOR, move || engine.sources().approve(&name, actor).map_err(source_err)).await?;
    Ok(Json(applied_view(&applied)))
}

/// A row as a source record, or a 400 naming the row and the field.
fn record(n: usize, row: ImportRow) -> Result<SourceRecord, ApiError> {
    let bad = |field: &str, why: String| ApiError::bad_request(FLAVOR, format!("rows[{n}].{field}: {why}"));
    if row.external_id.trim().is_empty() {
        return Err(bad("externalId", "is required".into()));
    }
    if row.user_name.trim().is_empty() {
        return Err(bad("userName", "is required".into()));
    }
    lockstep_domain::text::check_identifier(&row.external_id, 1024)
        .map_err(|e| bad("externalId", e.to_string()))?;
    lockstep_domain::text::check_identifier(&row.user_name, 1024)
        .map_err(|e| bad("userName", e.to_string()))?;
    if let Some(Err(e)) =
        row.display_name.as_deref().map(|d| lockstep_domain::text::check_single_line(d, 4096))
    {
        return Err(bad("displayName", e.to_string()));
    }
    if let Some(email) = &row.email {
        lockstep_domain::text::check_single_line(email, 4096).map_err(|e| bad("email", e.to_string()))?;
        if !email.is_empty() && !email.contains('@') {
            return Err(bad("email", format!("{email:?} is not an e-mail address")));
        }
    }
    let kind = match row.kind.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
        None => IdentityKind::Human,
        Some(k) => k
            .parse::<IdentityKind>()
            .map_err(|_| bad("kind", format!("{k:?} is not one of {}", IdentityKind::NAMES.join(", "))))?,
    };
    Ok(SourceRecord::User(UserRecord {
        key: row.external_id,
        user_name: row.user_name,
        display_name: row.display_name.filter(|d| !d.is_empty()),
        emails: row.email.into_iter().filter(|e| !e.is_empty()).collect(),
        active: row.active.unwrap_or(true),
        kind,
        owner_key: row.owner_external_id.filter(|o| !o.is_empty()),
        profile: "{}".into(),
    }))
}

fn plan_view(dry: &DryRun) -> ImportResponse {
    ImportResponse {
        dry_run: true,
        creates: dry.plan.creates.iter().map(|i| i.user_name.clone()).collect(),
        updates: dry
            .plan
            .updates
            .iter()
            .filter(|(b, a)| !b.status.is_entitled() || a.status.is_entitled())
            .map(|(_, a)| a.user_name.clone())
            .collect(),
        deactivations: dry
            .removals
            .iter()
            .map(|r| PlannedRemovalView {
                user_name: r.user_name.clone(),
                external_id: r.key.clone(),
                action: r.action.to_owned(),
                sessions: r.sessions,
            })
            .collect(),
        unchanged: dry.plan.unchanged,
        rejected: dry
            .plan
            .rejected
            .iter()
            .map(|(k, why)| RejectedView { external_id: k.clone(), reason: why.clone() })
            .collect(),
        threshold: dry.threshold,
        held: dry.would_hold,
        applied: None,
    }
}

/// `POST /v1/sources/{name}/import` (scope `scim`): the whole truth of a
/// file source. Always answers with the plan; applies it unless
/// `dry_run`. Rows that disappeared since the last import are deactivated.
pub(crate) async fn import(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<ImportRequest>, JsonRejection>,
) -> Result<Json<ImportResponse>, ApiError> {
    caller.require(Scope::Scim)?;
    let request = json_body(body)?;
    let engine = state.engine.clone();
    let kind = engine
        .sources()
        .settings()
        .into_iter()
        .find(|s| s.name.as_str() == name)
        .map(|s| s.kind)
        .ok_or_else(|| source_err(SourceError::Unknown(name.clone())))?;
    if kind != "file" {
        return Err(ApiError::new(
            FLAVOR,
            StatusCode::CONFLICT,
            Some("not_a_file_source"),
            format!("source {name:?} is of kind {kind:?}; only a source of kind \"file\" takes imports"),
        ));
    }
    if request.rows.is_empty() {
        return Err(ApiError::bad_request(
            FLAVOR,
            "rows: the file has no rows; an empty file never wipes the directory (nothing changed)",
        ));
    }
    let records =
        request.rows.into_iter().enumerate().map(|(n, row)| record(n, row)).collect::<Result<Vec<_>, _>>()?;
    let dry_run = request.dry_run;
    let response = blocking(FLAVOR, move || {
        let update = SourceUpdate::snapshot(records);
        if dry_run {
            let dry = engine.sources().dry_run(&name, &update).map_err(source_err)?;
            return Ok(plan_view(&dry));
        }
        // Planned once: the plan shown is the plan applied.
        let (mut response, applied) =
            engine.sources().import(&name, update, plan_view).map_err(source_err)?;
        response.dry_run = false;
        response.held = applied.held > 0;
        response.rejected = applied
            .rejected
            .iter()
            .map(|(k, why)| RejectedView { external_id: k.clone(), reason: why.clone() })
            .collect();
        response.applied = Some(applied_view(&applied));
        Ok(response)
    })
    .await?;
    Ok(Json(response))
}
