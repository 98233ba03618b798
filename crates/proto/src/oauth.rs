//! OAuth 2.0 token introspection (RFC 7662) and revocation (RFC 7009).

use serde::{Deserialize, Serialize};

/// Form body of `POST /oauth2/introspect` and `POST /oauth2/revoke`.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenRequest {
    /// The token.
    pub token: Option<String>,
    /// A hint; accepted and ignored (we look every token up the same way).
    pub token_type_hint: Option<String>,
}

impl TokenRequest {
    /// The token of an `application/x-www-form-urlencoded` body (RFC 7662
    /// §2.1, RFC 7009 §2.1); a body that does not decode, or has no token,
    /// is refused with a sentence saying why.
    pub fn token_from_form(body: &[u8]) -> Result<String, String> {
        let req: TokenRequest =
            serde_urlencoded::from_bytes(body).map_err(|e| format!("the form body does not decode: {e}"))?;
        match req.token {
            Some(t) if !t.is_empty() => Ok(t),
            _ => Err("the token parameter is required".into()),
        }
    }
}

/// RFC 7662 §2.2 response. Inactive tokens carry nothing but `active`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IntrospectionResponse {
    /// Whether the token is currently active.
    pub active: bool,
    /// Subject: the identity's SCIM id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The login name issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Expiry, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issue time, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Always `Bearer` for active tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// The client the token was issued to (`admin` when the admin opened it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Session id (`sid`, as in OpenID Connect), so a resource server can
    /// correlate with pushed session-revoked events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The identity's current groups (display names), as of the last
    /// directory change applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// The identity's policy tier(s): `standard`, `privileged`, `non_human`,
    /// or `privileged non_human`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// `human`, `service_account`, `workload`, `api_client` or `agent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_kind: Option<String>,
}

impl IntrospectionResponse {
    /// The answer for any token that is not active.
    pub fn inactive() -> Self {
        Self {
            active: false,
            sub: None,
            username: None,
            exp: None,
            iat: None,
            token_type: None,
            client_id: None,
            sid: None,
            groups: None,
            tier: None,
            identity_kind: None,
        }
    }
}

/// RFC 6749 §5.2 error body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, …
    pub error: String,
    /// Human-readable detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// The form body of `POST /oauth2/token` (RFC 6749 §4.4, §6).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct TokenGrant {
    /// `refresh_token` or `client_credentials`.
    pub grant_type: Option<String>,
    /// The refresh token (`grant_type=refresh_token`).
    pub refresh_token: Option<String>,
    /// `client_secret_post` client authentication: the client id.
    pub client_id: Option<String>,
    /// `client_secret_post` client authentication: the secret.
    pub client_secret: Option<String>,
    /// Scopes asked for. Lockstep's tokens carry no OAuth scopes, so only
    /// an absent or empty `scope` is accepted (RFC 6749 §3.3 lets the
    /// server refuse a scope it does not grant).
    pub scope: Option<String>,
}

/// A refused token request: the RFC 6749 §5.2 error code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantError {
    /// `invalid_request`, `unsupported_grant_type`, `invalid_scope`, …
    pub error: &'static str,
    /// What is wrong, naming the parameter.
    pub description: String,
}

/// What a token request asks for, once parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Exchange a refresh token.
    RefreshToken {
        /// The refresh token.
        refresh_token: String,
    },
    /// A client authenticating as itself; the credentials come from the
    /// form (`client_secret_post`) or, if absent there, from HTTP Basic.
    ClientCredentials {
        /// `client_id` from the form, if sent there.
        client_id: Option<String>,
        /// `client_secret` from the form, if sent there.
        client_secret: Option<String>,
    },
}

impl TokenGrant {
    /// Parses and checks an `application/x-www-form-urlencoded` token
    /// request body.
    pub fn from_form(body: &[u8]) -> Result<Grant, GrantError> {
        let invalid = |description: String| GrantError { error: "invalid_request", description };
        // RFC 6749 §3.2: parameters must not be included more than once.
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| invalid(format!("the form body does not decode: {e}")))?;
        let mut seen = std::collections::HashSet::new();
        for (k, _) in &pairs {
            if !seen.insert(k.as_str()) {
                return Err(invalid(format!("the {k} parameter is repeated")));
            }
        }
        let grant: TokenGrant = serde_urlencoded::from_bytes(body)
            .map_err(|e| invalid(format!("the form body does not decode: {e}")))?;
        if grant.scope.as_deref().is_some_and(|s| !s.trim().is_empty()) {
            return Err(GrantError {
                error: "invalid_scope",
                description: "Lockstep tokens carry no OAuth scopes; omit the scope parameter".into(),
            });
        }
        match grant.grant_type.as_deref() {
            None | Some("") => Err(invalid("the grant_type parameter is required".into())),
            Some("refresh_token") => match grant.refresh_token {
                Some(t) if !t.is_empty() => Ok(Grant::RefreshToken { refresh_token: t }),
                _ => Err(invalid("the refresh_token parameter is required".into())),
            },
            Some("client_credentials") => Ok(Grant::ClientCredentials {
                client_id: grant.client_id,
                client_secret: grant.client_secret,
            }),
            Some(other) => Err(GrantError {
                error: "unsupported_grant_type",
                description: format!(
                    "{other:?} is not supported here (use refresh_token or client_credentials; sessions are opened with POST /v1/sessions)"
                ),
            }),
        }
    }
}

/// RFC 6749 §5.1 successful token response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The new refresh token (refresh grants).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// An RFC 9493 subject identifier, as the Global Token Revocation draft
/// carries it in `sub_id`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "format", rename_all = "snake_case", deny_unknown_fields)]
pub enum SubjectIdentifier {
    /// `{"format": "opaque", "id": "…"}`: the identity's SCIM id.
    Opaque {
        /// The id.
        id: String,
    },
    /// `{"format": "email", "email": "…"}`.
    Email {
        /// The address.
        email: String,
    },
    /// `{"format": "iss_sub", "iss": "…", "sub": "…"}`: `sub` is matched
    /// against `externalId`.
    IssSub {
        /// Issuer.
        iss: String,
        /// Subject at that issuer.
        sub: String,
    },
}

/// `POST /oauth2/global-token-revocation` (draft-parecki-oauth-global-token-revocation).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GlobalRevocationRequest {
    /// Who to log out everywhere.
    pub sub_id: SubjectIdentifier,
}

/// RFC 8414 authorization server metadata.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthorizationServerMetadata {
    /// The issuer identifier.
    pub issuer: String,
    /// `POST /oauth2/token`.
    pub token_endpoint: String,
    /// `POST /oauth2/introspect`.
    pub introspection_endpoint: String,
    /// `POST /oauth2/revoke`.
    pub revocation_endpoint: String,
    /// `GET /.well-known/jwks.json`.
    pub jwks_uri: String,
    /// `POST /oauth2/global-token-revocation`.
    pub global_token_revocation_endpoint: String,
    /// `refresh_token`, `client_credentials`.
    pub grant_types_supported: Vec<String>,
    /// Client authentication at the token endpoint.
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Client authentication at the introspection endpoint.
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    /// Client authentication at the revocation endpoint.
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    /// No authorization endpoint: sessions are opened by the admin API.
    pub response_types_supported: Vec<String>,
    /// Algorithms of JWT access tokens.
    pub access_token_signing_alg_values_supported: Vec<String>,
    /// Subject identifier formats the global revocation endpoint accepts.
    pub global_token_revocation_subject_formats_supported: Vec<String>,
}
