//! One error shape for every rejection.
//!
//! Handlers answer with [`ApiError`] in the protocol of their path, but some
//! rejections never reach a handler: a path segment that is not UTF-8, a
//! query string that does not decode, a method a route does not serve, a
//! body over the limit, a missing `Content-Type`. axum answers those in
//! plain text. This layer rewrites any error response that is not already
//! JSON into the error JSON of the protocol at that path (SCIM, OAuth or the
//! admin API), keeping its status and headers, so a client never has to
//! parse a second error format.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, Flavor};

/// Longest plain-text rejection body carried over as the description.
const MAX_TEXT: usize = 4096;

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("application/scim+json"))
}

fn code(flavor: Flavor, status: StatusCode) -> Option<&'static str> {
    match (flavor, status) {
        (Flavor::Scim, StatusCode::BAD_REQUEST) => Some("invalidSyntax"),
        (Flavor::Scim, _) => None,
        (_, StatusCode::NOT_FOUND) => Some("not_found"),
        (_, StatusCode::METHOD_NOT_ALLOWED) => Some("method_not_allowed"),
        (Flavor::OAuth, StatusCode::UNAUTHORIZED) => Some("invalid_client"),
        (_, StatusCode::UNAUTHORIZED) => Some("unauthorized"),
        (_, s) if s.is_server_error() => {
            Some(if flavor == Flavor::OAuth { "server_error" } else { "internal" })
        }
        _ => Some("invalid_request"),
    }
}

/// The middleware: pass everything through, rewrite non-JSON errors.
pub(crate) async fn protocol_errors(request: Request, next: Next) -> Response {
    let flavor = Flavor::for_path(request.uri().path());
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_TEXT).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = match (text.is_empty(), status) {
        (false, _) => text,
        (true, StatusCode::METHOD_NOT_ALLOWED) => {
            let allowed = parts.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or("");
            format!("method not allowed here (allowed: {allowed})")
        }
        (true, s) => s.canonical_reason().unwrap_or("request refused").to_lowercase(),
    };
    let mut rewritten = ApiError::new(flavor, status, code(flavor, status), message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}
