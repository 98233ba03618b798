//! Credentials of non-human identities, and revoking everything of one
//! identity: `/v1/identities/{id}/…`.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lockstep_domain::{CredentialKind, IdentityId, Scope, SessionId};
use lockstep_engine::{CredentialRequest, IssuedCredential};
use lockstep_proto::admin::{
    CreateCredentialRequest, CreatedCredential, CredentialList, CredentialView, RevokedAll,
    RotateCredentialRequest,
};
use lockstep_proto::format_rfc3339;

use crate::api::{engine_err, json_body, parse_duration};
use crate::error::{ApiError, Flavor};
use crate::{AppState, Caller, blocking};

const FLAVOR: Flavor = Flavor::Admin;

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::new(FLAVOR, StatusCode::NOT_FOUND, Some("not_found"), format!("{what} {id} not found"))
}

fn identity_id(id: &str) -> Result<IdentityId, ApiError> {
    id.parse().map_err(|_| not_found("identity", id))
}

fn credential_id(id: &str) -> Result<SessionId, ApiError> {
    id.parse().map_err(|_| not_found("credential", id))
}

fn created(issued: IssuedCredential) -> CreatedCredential {
    let c = &issued.credential;
    CreatedCredential {
        credential_id: c.id.to_string(),
        client_id: (c.kind == CredentialKind::ClientSecret).then(|| c.id.to_string()),
        kind: c.kind.as_str().to_owned(),
        secret: issued.secret,
        expires_at: format_rfc3339(c.expires_at),
        previous_secret_expires_at: issued.previous_until.map(format_rfc3339),
    }
}

/// `POST /v1/identities/{id}/credentials`: 201 with the secret, shown once.
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<CreateCredentialRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Sessions)?;
    let identity = identity_id(&id)?;
    let req = json_body(body)?;
    let kind = match req.kind.as_str() {
        "api_key" => CredentialKind::ApiKey,
        "client_secret" => CredentialKind::ClientSecret,
        other => {
            return Err(ApiError::bad_request(
                FLAVOR,
                format!("kind: {other:?} is not a credential kind (use api_key or client_secret)"),
            ));
        }
    };
    let ttl = parse_duration("ttl", req.ttl.as_deref())?;
    let engine = state.engine.clone();
    let request = CredentialRequest { kind, ttl };
    let issued = engine
        .authority()
        .create_credential(identity, request, &caller.principal)
        .await
        .map_err(engine_err)?;
    Ok((StatusCode::CREATED, Json(created(issued))).into_response())
}

/// `GET /v1/identities/{id}/credentials`: without secrets, with last use.
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CredentialList>, ApiError> {
    caller.require(Scope::Sessions)?;
    let identity = identity_id(&id)?;
    let engine = state.engine.clone();
    let list = blocking(FLAVOR, move || engine.authority().credentials(identity).map_err(engine_err)).await?;
    Ok(Json(CredentialList {
        credentials: list
            .iter()
            .map(|c| CredentialView::from_credential(&c.credential, c.last_used_at))
            .collect(),
    }))
}

/// `DELETE /v1/identities/{id}/credentials/{credential_id}`: 204, also when
/// already revoked.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, credential)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::Sessions)?;
    let identity = identity_id(&id)?;
    let credential = credential_id(&credential)?;
    let engine = state.engine.clone();
    engine
        .authority()
        .revoke_credential(identity, credential, &caller.principal)
        .await
        .map_err(engine_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/identities/{id}/credentials/{credential_id}/rotate`: a new
/// secret; the old one works for the grace (default none).
pub(crate) async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, credential)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<CreatedCredential>, ApiError> {
    caller.require(Scope::Sessions)?;
    let identity = identity_id(&id)?;
    let credential = credential_id(&credential)?;
    // The body is optional: no body rotates without a grace.
    let req: RotateCredentialRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RotateCredentialRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(FLAVOR, format!("the body is not a rotation request: {e}")))?
    };
    let grace = parse_duration("grace", req.grace.as_deref())?.unwrap_or(Duration::ZERO);
    let engine = state.engine.clone();
    let issued = engine
        .authority()
        .rotate_credential(identity, credential, grace, &caller.principal)
        .await
        .map_err(engine_err)?;
    Ok(Json(created(issued)))
}

/// `POST /v1/identities/{id}/revoke-all`: every live session and credential
/// of the identity, as one audited decision.
pub(crate) async fn revoke_all(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RevokedAll>, ApiError> {
    caller.require(Scope::Sessions)?;
    let identity = identity_id(&id)?;
    let engine = state.engine.clone();
    let revoked =
        engine.authority().revoke_all(identity, &caller.principal, "revoke-all").await.map_err(engine_err)?;
    Ok(Json(RevokedAll { subject: identity.to_string(), revoked }))
}
