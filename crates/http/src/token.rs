//! The token endpoint (RFC 6749), global token revocation
//! (draft-parecki-oauth-global-token-revocation), and discovery: RFC 8414
//! metadata and the JWK Set.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lockstep_domain::Scope;
use lockstep_engine::authority::SubjectId;
use std::sync::Arc;

use lockstep_engine::{AccessClaims, IssuedTokens, Principal, SignError, Signer};
use lockstep_proto::oauth::{
    AuthorizationServerMetadata, GlobalRevocationRequest, Grant, SubjectIdentifier, TokenGrant, TokenResponse,
};

use crate::error::{ApiError, Flavor};
use crate::{AppState, Caller, Presented, blocking, parse_authorization};

const FLAVOR: Flavor = Flavor::OAuth;

fn no_store(mut r: Response) -> Response {
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

fn invalid_client(message: &str) -> ApiError {
    ApiError::new(FLAVOR, StatusCode::UNAUTHORIZED, Some("invalid_client"), message)
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"))
}

/// `POST /oauth2/token`: `grant_type=refresh_token` (client authentication
/// as on the other OAuth endpoints; scope `sessions`) and
/// `grant_type=client_credentials` (a non-human identity's client secret,
/// by HTTP Basic or `client_secret_post`).
pub(crate) async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let presented = headers.get(AUTHORIZATION).and_then(|h| h.to_str().ok()).and_then(parse_authorization);
    // A Lockstep principal (the admin, an API client) may refresh; a
    // credential of a non-human identity authenticates itself below.
    let principal: Option<Principal> = match &presented {
        Some(Presented::Bearer(t)) => state.engine.authenticate_bearer(t),
        Some(Presented::Basic { id, secret }) => state.engine.authenticate_basic(id, secret),
        None => None,
    };
    if let Some(p) = &principal
        && !p.allows(Scope::Sessions)
    {
        return Err(ApiError::forbidden(FLAVOR, Scope::Sessions.as_str()));
    }
    let parsed = match body {
        Ok(bytes) if is_form(&headers) => TokenGrant::from_form(&bytes)
            .map_err(|e| ApiError::new(FLAVOR, StatusCode::BAD_REQUEST, Some(e.error), e.description)),
        Ok(_) => Err(ApiError::bad_request(
            FLAVOR,
            "the body must be application/x-www-form-urlencoded (RFC 6749 §3.2)",
        )),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(ApiError::new(FLAVOR, StatusCode::PAYLOAD_TOO_LARGE, Some("invalid_request"), e.body_text()))
        }
        Err(e) => Err(ApiError::bad_request(FLAVOR, e.body_text())),
    };
    let grant = match (parsed, &principal) {
        (Ok(grant), _) => grant,
        // Nobody authenticated: that is the first thing wrong.
        (Err(_), None) => return Err(invalid_client("client authentication failed")),
        (Err(e), Some(_)) => return Err(e),
    };
    let engine = state.engine.clone();
    let now = engine.clock().now();
    let issued: IssuedTokens = match grant {
        Grant::RefreshToken { refresh_token } => {
            let Some(principal) = principal else {
                return Err(invalid_client(
                    "a refresh needs client authentication (the admin token or an API client with the sessions scope)",
                ));
            };
            engine
                .authority()
                .refresh(&refresh_token, &principal)
                .await
                .map_err(|e| ApiError::from_engine(FLAVOR, e))?
        }
        Grant::ClientCredentials { client_id, client_secret } => {
            if principal.is_some() {
                return Err(ApiError::new(
                    FLAVOR,
                    StatusCode::BAD_REQUEST,
                    Some("unauthorized_client"),
                    "client_credentials is for the client secrets of non-human identities \
                     (POST /v1/identities/{id}/credentials), not for Lockstep API clients",
                ));
            }
            let basic = match presented {
                Some(Presented::Basic { id, secret }) => Some((id, secret)),
                _ => None,
            };
            let (id, secret) = match (client_id, client_secret, basic) {
                (Some(_), Some(_), Some(_)) => {
                    return Err(ApiError::bad_request(
                        FLAVOR,
                        "use one client authentication method: HTTP Basic or client_id and client_secret in the form (RFC 6749 §2.3)",
                    ));
                }
                (Some(id), Some(secret), None) => (id, secret),
                (None, None, Some(pair)) => pair,
                _ => return Err(invalid_client("client authentication failed")),
            };
            engine
                .authority()
                .client_credentials(&id, &secret)
                .await
                .map_err(|e| ApiError::from_engine(FLAVOR, e))?
        }
    };
    let expires_in = issued.access_expires_at.unix_seconds() - now.unix_seconds();
    let body = TokenResponse {
        access_token: issued.access_token,
        token_type: "Bearer".into(),
        expires_in: expires_in.max(0),
        refresh_token: issued.refresh_token,
    };
    Ok(no_store(Json(body).into_response()))
}

/// `POST /oauth2/global-token-revocation`: every session and credential of
/// the identities the subject identifier names is revoked; 204 whether or
/// not it named anyone (the caller learns nothing about who exists).
pub(crate) async fn global_revocation(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<GlobalRevocationRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Sessions)?;
    let request = match body {
        Ok(Json(r)) => r,
        Err(JsonRejection::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(ApiError::new(
                FLAVOR,
                StatusCode::PAYLOAD_TOO_LARGE,
                Some("invalid_request"),
                e.body_text(),
            ));
        }
        Err(e) => {
            return Err(ApiError::bad_request(
                FLAVOR,
                format!(
                    "{} (expected {{\"sub_id\": {{\"format\": \"opaque\" | \"email\" | \"iss_sub\", …}}}})",
                    e.body_text()
                ),
            ));
        }
    };
    let subject = match request.sub_id {
        SubjectIdentifier::Opaque { id } => SubjectId::Opaque(id),
        SubjectIdentifier::Email { email } => SubjectId::Email(email),
        SubjectIdentifier::IssSub { iss, sub } => SubjectId::IssSub { iss, sub },
    };
    let engine = state.engine.clone();
    blocking(FLAVOR, move || {
        engine
            .authority()
            .global_revocation(&subject, &caller.principal)
            .map_err(|e| ApiError::from_engine(FLAVOR, e))
    })
    .await?;
    Ok(no_store(StatusCode::NO_CONTENT.into_response()))
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
pub(crate) async fn metadata(State(state): State<AppState>) -> Json<AuthorizationServerMetadata> {
    let issuer = state.engine.tokens().issuer.trim_end_matches('/').to_owned();
    let at = |path: &str| format!("{issuer}{path}");
    let basic = vec!["client_secret_basic".to_owned(), "client_secret_post".to_owned()];
    let bearer = vec!["client_secret_basic".to_owned(), "bearer".to_owned()];
    Json(AuthorizationServerMetadata {
        token_endpoint: at("/oauth2/token"),
        introspection_endpoint: at("/oauth2/introspect"),
        revocation_endpoint: at("/oauth2/revoke"),
        jwks_uri: at("/.well-known/jwks.json"),
        global_token_revocation_endpoint: at("/oauth2/global-token-revocation"),
        issuer,
        grant_types_supported: vec!["refresh_token".into(), "client_credentials".into()],
        token_endpoint_auth_methods_supported: basic,
        introspection_endpoint_auth_methods_supported: bearer.clone(),
        revocation_endpoint_auth_methods_supported: bearer,
        response_types_supported: Vec::new(),
        access_token_signing_alg_values_supported: vec!["ES256".into()],
        global_token_revocation_subject_formats_supported: vec![
            "opaque".into(),
            "email".into(),
            "iss_sub".into(),
        ],
    })
}

/// `GET /.well-known/jwks.json`: the public keys JWT access tokens are
/// signed with (the signing key first, retired keys until their tokens
/// have expired).
pub(crate) async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    let set = match &state.keys {
        Some(keys) => keys.current().jwks().map_err(|e| ApiError::internal(Flavor::Admin, &e))?,
        None => lockstep_jose::JwkSet { keys: Vec::new() },
    };
    let mut response = Json(set).into_response();
    // Resource servers may cache it briefly; a new kid makes them refetch.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    Ok(response)
}

/// Signs RFC 9068 access tokens (`typ: at+jwt`) with the current key of
/// the keyring: the engine decides what a token says, this encodes it.
#[derive(Debug)]
pub struct KeySigner(pub Arc<lockstep_jose::SharedKeys>);

impl Signer for KeySigner {
    fn sign_access_token(&self, c: &AccessClaims) -> Result<String, SignError> {
        let claims = serde_json::json!({
            "iss": c.iss,
            "sub": c.sub,
            "aud": c.aud,
            "client_id": c.client_id,
            "sid": c.sid,
            "jti": c.jti,
            "iat": c.iat,
            "exp": c.exp,
            "username": c.username,
            "groups": c.groups,
            "tier": c.tier,
            "status": {"status_list": {"idx": c.status_idx, "uri": format!("{}/statuslists/1", c.iss.trim_end_matches('/'))}},
        });
        self.0.current().sign("at+jwt", &claims).map_err(|e| SignError(e.to_string()))
    }
}

/// How long a resource server may cache the status list (the draft's `ttl`).
const STATUS_LIST_TTL: i64 = 30;

/// `GET /statuslists/1`: the Token Status List Token
/// (`draft-ietf-oauth-status-list`, `typ: statuslist+jwt`): two bits per
/// index (0 valid, 1 invalid, 2 suspended), ZLIB-compressed, signed with
/// the published keys. Computed on request from memory, so a revocation
/// shows as soon as it is committed.
pub(crate) async fn status_list(State(state): State<AppState>) -> Result<Response, ApiError> {
    use std::io::Write as _;
    let flavor = Flavor::OAuth;
    let keys =
        state.keys.clone().ok_or_else(|| ApiError::internal(flavor, &"no signing keys are configured"))?;
    let now = state.engine.clock().now();
    let list = state.engine.status_list(now).map_err(|e| ApiError::from_engine(flavor, e))?;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&list).map_err(|e| ApiError::internal(flavor, &e))?;
    let compressed = z.finish().map_err(|e| ApiError::internal(flavor, &e))?;
    use base64::Engine as _;
    let lst = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(compressed);
    let uri = format!("{}/statuslists/1", state.engine.tokens().issuer.trim_end_matches('/'));
    let iat = now.unix_seconds();
    let claims = serde_json::json!({
        "sub": uri,
        "iss": state.engine.tokens().issuer,
        "iat": iat,
        "exp": iat + 10 * STATUS_LIST_TTL,
        "ttl": STATUS_LIST_TTL,
        "status_list": {"bits": lockstep_engine::status::BITS, "lst": lst},
    });
    let jwt = keys.current().sign("statuslist+jwt", &claims).map_err(|e| ApiError::internal(flavor, &e))?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/statuslist+jwt")], jwt).into_response())
}
