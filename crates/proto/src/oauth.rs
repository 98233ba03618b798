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
