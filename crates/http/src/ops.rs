//! Metrics and health.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use lockstep_domain::Scope;
use lockstep_proto::admin::Health;

use crate::error::ApiError;
use crate::{AppState, Caller};

/// `GET /metrics`: Prometheus text. Needs the admin token or `audit` scope
/// (nothing is reachable without a credential).
pub(crate) async fn metrics(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Scope::Audit)?;
    let body = state.engine.metrics().encode().map_err(|e| ApiError::internal(caller.flavor, &e))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body))
}

/// `GET /healthz`: liveness, unauthenticated, reveals no data.
pub(crate) async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        consumed_directory_event: state.engine.consumed().ok().flatten().map(|e| e.0),
        cached_sessions: state.engine.cached_sessions(),
        bearer_tokens_loaded: state.engine.bearer_tokens_loaded(),
    })
}
