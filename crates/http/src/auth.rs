//! Authentication: `Authorization: Bearer …` or HTTP Basic.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lockstep_domain::Scope;
use lockstep_engine::Principal;

use crate::AppState;
use crate::error::{ApiError, Flavor};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// The error shape of the endpoint being called.
    pub flavor: Flavor,
}

impl Caller {
    /// Requires a scope (the admin holds all).
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.principal.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(self.flavor, scope.as_str()))
        }
    }

    /// Requires any one of the scopes.
    pub fn require_any(&self, scopes: &[Scope]) -> Result<(), ApiError> {
        match scopes.iter().find(|s| self.principal.allows(**s)) {
            Some(_) => Ok(()),
            None => Err(ApiError::forbidden(self.flavor, scopes.first().map_or("", |s| s.as_str()))),
        }
    }

    /// Requires the admin token.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.principal.kind == lockstep_engine::PrincipalKind::Admin {
            Ok(())
        } else {
            Err(ApiError::new(
                self.flavor,
                axum::http::StatusCode::FORBIDDEN,
                Some("forbidden"),
                "only the admin token may do this",
            ))
        }
    }
}

/// A credential as presented in an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented<'a> {
    /// `Bearer <token>`: the admin token or a client secret.
    Bearer(&'a str),
    /// `Basic base64(id:secret)`.
    Basic {
        /// The client id.
        id: String,
        /// The secret.
        secret: String,
    },
}

/// Parses an `Authorization` header value: scheme names ignore case (RFC
/// 9110 §11.1); anything else, or a malformed value, is no credential.
pub fn parse_authorization(header: &str) -> Option<Presented<'_>> {
    let (scheme, credentials) = header.split_once(' ')?;
    let credentials = credentials.trim();
    if credentials.is_empty() {
        return None;
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(Presented::Bearer(credentials))
    } else if scheme.eq_ignore_ascii_case("basic") {
        let raw = STANDARD.decode(credentials).ok()?;
        let pair = String::from_utf8(raw).ok()?;
        let (id, secret) = pair.split_once(':')?;
        Some(Presented::Basic { id: id.to_owned(), secret: secret.to_owned() })
    } else {
        None
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let flavor = Flavor::for_path(parts.uri.path());
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized(flavor))?;
        let principal = match parse_authorization(header) {
            Some(Presented::Bearer(token)) => state.engine.authenticate_bearer(token),
            Some(Presented::Basic { id, secret }) => state.engine.authenticate_basic(&id, &secret),
            None => None,
        };
        principal.map(|principal| Caller { principal, flavor }).ok_or_else(|| ApiError::unauthorized(flavor))
    }
}
