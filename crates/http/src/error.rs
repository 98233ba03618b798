//! The one error type of the HTTP layer.
//!
//! Every handler returns `ApiError`; its body follows the protocol of the
//! endpoint that failed: SCIM error JSON (RFC 7644 §3.12) under `/scim`,
//! OAuth error JSON (RFC 6749 §5.2) under `/oauth2`, and the admin API's
//! `{error, error_description}` elsewhere. Internal details never reach the
//! client; they are logged.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lockstep_engine::EngineError;
use lockstep_proto::admin::ErrorBody;
use lockstep_proto::oauth::OAuthError;
use lockstep_proto::scim::{SCIM_MEDIA_TYPE, ScimError};
use lockstep_scim::{ScimProblem, ScimType};

/// Which protocol's error shape to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// SCIM error JSON.
    Scim,
    /// OAuth error JSON.
    OAuth,
    /// Admin API error JSON.
    Admin,
}

impl Flavor {
    /// The flavor for a request path.
    pub fn for_path(path: &str) -> Self {
        if path.starts_with("/scim/") {
            Flavor::Scim
        } else if path.starts_with("/oauth2/") {
            Flavor::OAuth
        } else {
            Flavor::Admin
        }
    }
}

/// An HTTP error.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Status.
    pub status: StatusCode,
    /// Body shape.
    pub flavor: Flavor,
    /// `scimType`, OAuth `error` or admin `error` code.
    pub code: Option<&'static str>,
    /// Human-readable detail.
    pub message: String,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(
        flavor: Flavor,
        status: StatusCode,
        code: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        Self { status, flavor, code, message: message.into() }
    }

    /// 401: no or bad credentials.
    pub fn unauthorized(flavor: Flavor) -> Self {
        let code = match flavor {
            Flavor::OAuth => Some("invalid_client"),
            Flavor::Admin => Some("unauthorized"),
            Flavor::Scim => None,
        };
        Self::new(flavor, StatusCode::UNAUTHORIZED, code, "missing or invalid credentials")
    }

    /// 403: authenticated but lacking a scope.
    pub fn forbidden(flavor: Flavor, scope: &str) -> Self {
        let code = match flavor {
            Flavor::OAuth => Some("insufficient_scope"),
            Flavor::Admin => Some("forbidden"),
            Flavor::Scim => None,
        };
        Self::new(flavor, StatusCode::FORBIDDEN, code, format!("this credential lacks the {scope:?} scope"))
    }

    /// 400 with a field name, in the flavor's vocabulary.
    pub fn bad_request(flavor: Flavor, message: impl Into<String>) -> Self {
        let code = match flavor {
            Flavor::Scim => Some(ScimType::InvalidSyntax.as_str()),
            Flavor::OAuth | Flavor::Admin => Some("invalid_request"),
        };
        Self::new(flavor, StatusCode::BAD_REQUEST, code, message)
    }

    /// 413.
    pub fn too_large(flavor: Flavor, limit: usize) -> Self {
        let code = match flavor {
            Flavor::Scim => None,
            Flavor::OAuth | Flavor::Admin => Some("invalid_request"),
        };
        Self::new(flavor, StatusCode::PAYLOAD_TOO_LARGE, code, format!("request body exceeds {limit} bytes"))
    }

    /// 500; the cause is logged, not sent.
    pub fn internal(flavor: Flavor, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        let code = match flavor {
            Flavor::Scim => None,
            Flavor::OAuth => Some("server_error"),
            Flavor::Admin => Some("internal"),
        };
        Self::new(flavor, StatusCode::INTERNAL_SERVER_ERROR, code, "internal error; see the server log")
    }

    /// Maps an engine error.
    pub fn from_engine(flavor: Flavor, e: EngineError) -> Self {
        use StatusCode as S;
        let scim = flavor == Flavor::Scim;
        match e {
            EngineError::UnknownSubject(_) => {
                Self::new(flavor, S::NOT_FOUND, Some("unknown_subject"), e.to_string())
            }
            EngineError::SubjectNotEntitled { .. } => {
                Self::new(flavor, S::CONFLICT, Some("subject_not_entitled"), e.to_string())
            }
            EngineError::SubjectDeleted(_) => {
                Self::new(flavor, S::GONE, Some("subject_deleted"), e.to_string())
            }
            EngineError::SourceStale { .. } => {
                Self::new(flavor, S::CONFLICT, Some("source_stale"), e.to_string())
            }
            EngineError::NoActiveOwner(_) => {
                Self::new(flavor, S::CONFLICT, Some("no_active_owner"), e.to_string())
            }
            EngineError::NotFound(_) => {
                Self::new(flavor, S::NOT_FOUND, (!scim).then_some("not_found"), e.to_string())
            }
            EngineError::VersionMismatch { .. } => Self::new(
                flavor,
                S::PRECONDITION_FAILED,
                (!scim).then_some("precondition_failed"),
                e.to_string(),
            ),
            EngineError::Conflict { .. } => Self::new(
                flavor,
                S::CONFLICT,
                Some(if scim { ScimType::Uniqueness.as_str() } else { "conflict" }),
                e.to_string(),
            ),
            // No SCIM scimType fits (RFC 7644 §3.12 names none for this
            // 409); the detail says which source owns the record.
            EngineError::OwnedBySource { .. } => {
                Self::new(flavor, S::CONFLICT, (!scim).then_some("owned_by_source"), e.to_string())
            }
            EngineError::Invalid { .. } => Self::new(
                flavor,
                S::BAD_REQUEST,
                Some(if scim { ScimType::InvalidValue.as_str() } else { "invalid_request" }),
                e.to_string(),
            ),
            EngineError::NotIssuedToCaller => Self::new(
                flavor,
                S::BAD_REQUEST,
                Some(if scim { ScimType::InvalidValue.as_str() } else { "unauthorized_client" }),
                e.to_string(),
            ),
            EngineError::HumanIdentity(_) => {
                Self::new(flavor, S::CONFLICT, Some("not_non_human"), e.to_string())
            }
            EngineError::InvalidGrant(_) => {
                Self::new(flavor, S::BAD_REQUEST, Some("invalid_grant"), e.to_string())
            }
            EngineError::InvalidClient(_) => {
                Self::new(flavor, S::UNAUTHORIZED, Some("invalid_client"), e.to_string())
            }
            EngineError::Entropy(_)
            | EngineError::Store(_)
            | EngineError::BridgePending(_)
            | EngineError::Signing(_) => Self::internal(flavor, &e),
        }
    }
}

impl From<ScimProblem> for ApiError {
    fn from(p: ScimProblem) -> Self {
        Self {
            status: StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST),
            flavor: Flavor::Scim,
            code: p.scim_type.map(ScimType::as_str),
            message: p.detail,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = match self.flavor {
            Flavor::Scim => {
                let body = ScimError::new(self.status.as_u16(), self.code, self.message);
                let mut r = (self.status, axum::Json(body)).into_response();
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_MEDIA_TYPE));
                r
            }
            Flavor::OAuth => {
                let body = OAuthError {
                    error: self.code.unwrap_or("invalid_request").to_owned(),
                    error_description: Some(self.message),
                };
                (self.status, axum::Json(body)).into_response()
            }
            Flavor::Admin => {
                let body = ErrorBody {
                    error: self.code.unwrap_or("error").to_owned(),
                    error_description: self.message,
                };
                (self.status, axum::Json(body)).into_response()
            }
        };
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = match self.flavor {
                Flavor::OAuth => "Basic realm=\"lockstep\", Bearer realm=\"lockstep\"",
                _ => "Bearer realm=\"lockstep\"",
            };
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        if matches!(self.flavor, Flavor::OAuth) {
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        response
    }
}
