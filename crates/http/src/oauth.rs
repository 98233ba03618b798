//! RFC 7662 introspection and RFC 7009 revocation.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lockstep_domain::{CredentialKind, Scope};
use lockstep_engine::Introspected;
use lockstep_proto::oauth::{IntrospectionResponse, TokenRequest};

use crate::error::ApiError;
use crate::{AppState, Caller};

/// The token of a form body (what is fuzzed is what is served:
/// [`TokenRequest::token_from_form`]).
fn token(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    caller: &Caller,
) -> Result<String, ApiError> {
    let form = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded")
    });
    if !form {
        return Err(ApiError::bad_request(
            caller.flavor,
            "the body must be application/x-www-form-urlencoded (RFC 7662 §2.1, RFC 7009 §2.1)",
        ));
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                caller.flavor,
                StatusCode::PAYLOAD_TOO_LARGE,
                Some("invalid_request"),
                e.body_text(),
            )
        } else {
            ApiError::bad_request(caller.flavor, e.body_text())
        }
    })?;
    TokenRequest::token_from_form(&body).map_err(|e| ApiError::bad_request(caller.flavor, e))
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `POST /oauth2/introspect` — answered from memory on this thread.
pub(crate) async fn introspect(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Introspect)?;
    let token = token(&headers, body, &caller)?;
    let body = match state.engine.introspect(&token) {
        None => IntrospectionResponse::inactive(),
        Some(Introspected { session: s, claims }) => IntrospectionResponse {
            active: true,
            sub: Some(s.identity.to_string()),
            username: claims.as_ref().map(|c| c.user_name.to_string()),
            exp: Some(s.expires_at.unix_seconds()),
            iat: Some(s.issued_at.unix_seconds()),
            token_type: Some("Bearer".into()),
            client_id: Some(match s.kind {
                CredentialKind::Session => s.issued_to.map_or_else(|| "admin".to_owned(), |c| c.to_string()),
                // A credential's tokens are its own: it is the OAuth client.
                _ => s.id.to_string(),
            }),
            sid: Some(s.id.to_string()),
            groups: claims.as_ref().map(|c| c.groups.iter().map(|(_, name)| name.to_string()).collect()),
            tier: claims.as_ref().map(|c| c.tiers.as_str().to_owned()),
            identity_kind: claims.as_ref().map(|c| c.kind.as_str().to_owned()),
        },
    };
    Ok(no_store(Json(body).into_response()))
}

/// `POST /oauth2/revoke` — 200 for known and unknown tokens alike.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require_any(&[Scope::Introspect, Scope::Sessions])?;
    let token = token(&headers, body, &caller)?;
    let flavor = caller.flavor;
    let engine = state.engine.clone();
    engine
        .authority()
        .revoke_token(&token, &caller.principal)
        .await
        .map_err(|e| ApiError::from_engine(flavor, e))?;
    Ok(no_store(().into_response()))
}
