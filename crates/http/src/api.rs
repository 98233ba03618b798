//! The admin API: sessions, clients, audit.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lockstep_domain::DirectoryEventId;
use lockstep_domain::{Scope, SessionId, TokenFormat};
use lockstep_engine::OpenRequest;
use lockstep_proto::admin::{
    AuditPage, AuditQuery, AuditRecordView, CheckRequest, CheckResponse, ClientView, CreateClientRequest,
    CreateSessionRequest, CreatedClient, CreatedSession, ReachView, SessionList, SessionView, SubjectQuery,
};
use lockstep_proto::format_rfc3339;

use crate::error::{ApiError, Flavor};
use crate::{AppState, Caller, blocking};

const FLAVOR: Flavor = Flavor::Admin;

pub(crate) fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match body {
        Ok(Json(v)) => Ok(v),
        Err(JsonRejection::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(ApiError::new(FLAVOR, StatusCode::PAYLOAD_TOO_LARGE, Some("invalid_request"), e.body_text()))
        }
        Err(e) => Err(ApiError::bad_request(FLAVOR, e.body_text())),
    }
}

pub(crate) fn engine_err(e: lockstep_engine::EngineError) -> ApiError {
    ApiError::from_engine(FLAVOR, e)
}

/// Parses a duration field like `15m`, `1h30m` or `30d`.
pub(crate) fn parse_duration(field: &str, value: Option<&str>) -> Result<Option<Duration>, ApiError> {
    value
        .map(|t| {
            humantime::parse_duration(t.trim()).map_err(|e| {
                ApiError::bad_request(FLAVOR, format!("{field}: {e} (use a duration like \"15m\" or \"1h\")"))
            })
        })
        .transpose()
}

/// `POST /v1/sessions`.
pub(crate) async fn create_session(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateSessionRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Sessions)?;
    let req = json_body(body)?;
    if req.subject.trim().is_empty() {
        return Err(ApiError::bad_request(FLAVOR, "subject: must not be empty"));
    }
    let ttl = parse_duration("ttl", req.ttl.as_deref())?;
    let format = match req.format.as_deref() {
        None => None,
        Some(f) => Some(f.parse::<TokenFormat>().map_err(|_| {
            ApiError::bad_request(FLAVOR, format!("format: {f:?} is not a token format (use opaque or jwt)"))
        })?),
    };
    let request = OpenRequest { subject: req.subject.trim().to_owned(), ttl, refresh: req.refresh, format };
    let engine = state.engine.clone();
    let issued = engine.authority().open_session(request, &caller.principal).await.map_err(engine_err)?;
    let body = CreatedSession {
        session_id: issued.session.id.to_string(),
        access_token: issued.access_token,
        token_type: "Bearer".into(),
        format: issued.session.format.as_str().to_owned(),
        access_token_expires_at: format_rfc3339(issued.access_expires_at),
        refresh_token: issued.refresh_token,
        expires_at: format_rfc3339(issued.session.expires_at),
        subject: issued.session.identity.to_string(),
        username: issued.session.user_name,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /v1/sessions?subject=…`.
pub(crate) async fn list_sessions(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<SubjectQuery>, QueryRejection>,
) -> Result<Json<SessionList>, ApiError> {
    caller.require(Scope::Sessions)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(FLAVOR, e.body_text()))?;
    let subject = q
        .subject
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request(FLAVOR, "subject: query parameter is required"))?;
    let engine = state.engine.clone();
    let sessions = blocking(FLAVOR, move || engine.list_sessions(subject.trim()).map_err(engine_err)).await?;
    Ok(Json(SessionList { sessions: sessions.iter().map(SessionView::from_session).collect() }))
}

/// `DELETE /v1/sessions/{id}`: 204, also when already revoked.
pub(crate) async fn revoke_session(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::Sessions)?;
    let id: SessionId = id.parse().map_err(|_| {
        ApiError::new(FLAVOR, StatusCode::NOT_FOUND, Some("not_found"), format!("session {id} not found"))
    })?;
    let engine = state.engine.clone();
    engine.authority().revoke_session(id, &caller.principal).await.map_err(engine_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/clients` (admin only).
pub(crate) async fn create_client(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateClientRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let req = json_body(body)?;
    let scopes = req
        .scopes
        .iter()
        .map(|s| {
            s.parse::<Scope>().map_err(|_| {
                ApiError::bad_request(
                    FLAVOR,
                    format!("scopes: unknown scope {s:?} (use scim, sessions, introspect, audit)"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let engine = state.engine.clone();
    let created = blocking(FLAVOR, move || {
        engine.create_client(&req.name, &scopes, &caller.principal).map_err(engine_err)
    })
    .await?;
    let body = CreatedClient {
        client_id: created.client.id.to_string(),
        client_secret: created.secret,
        name: created.client.name,
        scopes: created.client.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /v1/clients` (admin only), without secrets.
pub(crate) async fn list_clients(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ClientView>>, ApiError> {
    caller.require_admin()?;
    Ok(Json(
        state
            .engine
            .clients()
            .into_iter()
            .map(|c| ClientView {
                client_id: c.id.to_string(),
                name: c.name,
                scopes: c.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
                created: format_rfc3339(c.created),
            })
            .collect(),
    ))
}

/// Largest audit page.
const MAX_AUDIT_PAGE: usize = 1000;

/// `GET /v1/audit?after=&limit=`: oldest first.
pub(crate) async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require(Scope::Audit)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(FLAVOR, e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_AUDIT_PAGE {
        return Err(ApiError::bad_request(FLAVOR, format!("limit: must be 1 to {MAX_AUDIT_PAGE}")));
    }
    let after = q.after.unwrap_or(0);
    let engine = state.engine.clone();
    let records = blocking(FLAVOR, move || engine.audit_page(after, limit).map_err(engine_err)).await?;
    let next_after = (records.len() == limit).then(|| records.last().map(|r| r.seq)).flatten();
    Ok(Json(AuditPage { records: records.iter().map(AuditRecordView::from_record).collect(), next_after }))
}

/// `POST /v1/check`: a fresh decision against the directory now, for a
/// resource server about to do something dangerous.
pub(crate) async fn check(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<CheckRequest>, JsonRejection>,
) -> Result<Json<CheckResponse>, ApiError> {
    caller.require(Scope::Introspect)?;
    let req = json_body(body)?;
    if req.token.is_empty() {
        return Err(ApiError::bad_request(FLAVOR, "token: must not be empty"));
    }
    let engine = state.engine.clone();
    let check = blocking(FLAVOR, move || engine.check(&req.token, &req.groups).map_err(engine_err)).await?;
    Ok(Json(CheckResponse {
        allow: check.allow,
        reasons: check.reasons,
        sub: check.sub.map(|s| s.to_string()),
        checked_at: format_rfc3339(check.checked_at),
    }))
}

/// `GET /v1/directory-events/{position}/reach`: what one directory change
/// reached — the decision, every session it touched, what still lives.
pub(crate) async fn reach(
    State(state): State<AppState>,
    caller: Caller,
    Path(position): Path<String>,
) -> Result<Json<ReachView>, ApiError> {
    caller.require(Scope::Audit)?;
    let position = position.trim_start_matches("dir-").parse::<u64>().map_err(|_| {
        ApiError::bad_request(FLAVOR, format!("position: {position:?} is not a directory event position"))
    })?;
    let engine = state.engine.clone();
    let r = blocking(FLAVOR, move || engine.reach(DirectoryEventId(position)).map_err(engine_err)).await?;
    Ok(Json(
        ReachView::build(&r.event, &r.caused, &r.records, &r.touched, &r.still_live, r.truncated, r.at)
            .with_signals(&r.signals),
    ))
}
