//! The Shared Signals receiver: an upstream transmitter (an IdP) pushing
//! SETs to `POST /ssf/receive/{source}` (RFC 8935). This module checks
//! them — the push token, the signature against the transmitter's JWK Set
//! (fetched, cached, and fetched again on an unknown `kid`, at most every
//! ten seconds), `iss`, `aud`, the shape — and says what each asks for;
//! the engine applies it.

use std::sync::Mutex;

use lockstep_domain::Timestamp;
use lockstep_engine::authority::SubjectId;
use serde_json::Value;

/// RISC `credential-compromise`.
pub const CREDENTIAL_COMPROMISE: &str =
    "https://schemas.openid.net/secevent/risc/event-type/credential-compromise";

/// How often the JWK Set may be fetched again for an unknown `kid`.
const REFETCH_MICROS: i64 = 10_000_000;

/// One upstream transmitter, as configured (`[[source]] kind = "ssf"`).
#[derive(Clone)]
pub struct InboundConfig {
    /// The source's name (`/ssf/receive/{name}`).
    pub source: String,
    /// The transmitter's `iss`.
    pub issuer: String,
    /// Where its JWK Set is.
    pub jwks_uri: String,
    /// Our `aud`, as it must address us.
    pub audience: String,
    /// The bearer token it must push with (from the environment); `None`
    /// when it is only polled (every push is then refused).
    pub push_token: Option<String>,
    /// Where and how to poll it, for a transmitter that offers only RFC
    /// 8936 (see [`crate::poll`]).
    pub poll: Option<crate::poll::PollSettings>,
}

impl std::fmt::Debug for InboundConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundConfig")
            .field("source", &self.source)
            .field("issuer", &self.issuer)
            .field("jwks_uri", &self.jwks_uri)
            .field("audience", &self.audience)
            .field("push_token", &self.push_token.as_ref().map(|_| "<redacted>"))
            .field("poll", &self.poll)
            .finish()
    }
}

/// What an accepted SET asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Asked {
    /// RISC `account-disabled`: deactivate.
    Disable,
    /// RISC `account-enabled`: reactivate (old sessions stay dead).
    Enable,
    /// RISC `account-purged`: delete.
    Purge,
    /// CAEP `session-revoked`: revoke the identity's sessions.
    RevokeSessions,
    /// RISC `credential-compromise`: revoke every credential.
    RevokeCredentials,
    /// An event type we do not act on (accepted, no effect).
    Nothing(String),
}

/// A verified SET.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// Its `jti` (a replay is acknowledged and applied once).
    pub jti: String,
    /// What it asks for.
    pub asked: Asked,
    /// Whom.
    pub subject: SubjectId,
    /// The event type URI.
    pub event: String,
}

/// Why a push is refused: RFC 8935 §2.3 error codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// No or a wrong push token (401).
    Unauthorized,
    /// 400 `{"err", "description"}`.
    Bad {
        /// `invalid_key`, `invalid_issuer`, `invalid_audience`,
        /// `invalid_request`.
        err: &'static str,
        /// What was wrong.
        description: String,
    },
}

fn bad(err: &'static str, description: impl Into<String>) -> Refused {
    Refused::Bad { err, description: description.into() }
}

/// One upstream transmitter: its configuration and its cached keys.
#[derive(Debug)]
pub struct Inbound {
    /// The configuration.
    pub config: InboundConfig,
    http: reqwest::Client,
    jwks: Mutex<Option<(Value, Timestamp)>>,
}

/// Compares without an early exit (the push token is a secret).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn subject(v: &Value) -> Option<SubjectId> {
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    match v.get("format").and_then(Value::as_str)? {
        "email" => text("email").map(SubjectId::Email),
        "iss_sub" => Some(SubjectId::IssSub { iss: text("iss")?, sub: text("sub")? }),
        "opaque" => text("id").map(SubjectId::Opaque),
        "complex" => v.get("user").and_then(subject),
        _ => None,
    }
}

impl Inbound {
    /// A receiver for one configured transmitter.
    pub fn new(config: InboundConfig) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the JWKS client: {e}"))?;
        Ok(Self { config, http, jwks: Mutex::new(None) })
    }

    /// Checks the push token (`Authorization: Bearer …`).
    pub fn authorize(&self, authorization: Option<&str>) -> Result<(), Refused> {
        let token = authorization.and_then(|a| a.strip_prefix("Bearer ")).ok_or(Refused::Unauthorized)?;
        match &self.config.push_token {
            Some(expected) if same(token.trim(), expected) => Ok(()),
            _ => Err(Refused::Unauthorized),
        }
    }

    async fn fetch(&self, now: Timestamp) -> Result<Value, Refused> {
        let r = self
            .http
            .get(&self.config.jwks_uri)
            .send()
            .await
            .map_err(|e| bad("invalid_key", format!("cannot fetch the transmitter's JWK Set: {e}")))?;
        let jwks: Value = r
            .json()
            .await
            .map_err(|e| bad("invalid_key", format!("the transmitter's JWK Set is not JSON: {e}")))?;
        *self.jwks.lock().unwrap_or_else(|p| p.into_inner()) = Some((jwks.clone(), now));
        Ok(jwks)
    }

    /// Verifies a pushed SET and says what it asks for.
    pub async fn verify(&self, body: &str, now: Timestamp) -> Result<Received, Refused> {
        let cached = self.jwks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let jwks = match cached {
            Some((jwks, _)) => jwks,
            None => self.fetch(now).await?,
        };
        let verified = match lockstep_jose::verify_with_jwks(&jwks, body) {
            Err(lockstep_jose::ForeignError::UnknownKey(kid)) => {
                // A rotated key: fetch again, but not on every forged kid.
                let last = self.jwks.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|(_, at)| *at);
                if last.is_some_and(|at| now.micros() - at.micros() < REFETCH_MICROS) {
                    return Err(bad("invalid_key", format!("no key {kid:?} in the transmitter's JWK Set")));
                }
                let jwks = self.fetch(now).await?;
                lockstep_jose::verify_with_jwks(&jwks, body)
            }
            other => other,
        };
        let (header, claims) = verified.map_err(|e| match e {
            lockstep_jose::ForeignError::Malformed(m) => bad("invalid_request", m),
            other => bad("invalid_key", other.to_string()),
        })?;
        if let Some(typ) = header.get("typ").and_then(Value::as_str)
            && !typ.eq_ignore_ascii_case("secevent+jwt")
        {
            return Err(bad("invalid_request", format!("typ {typ:?} is not secevent+jwt")));
        }
        if claims.get("iss").and_then(Value::as_str) != Some(self.config.issuer.as_str()) {
            return Err(bad("invalid_issuer", format!("iss is not {:?}", self.config.issuer)));
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == self.config.audience,
            Some(Value::Array(list)) => {
                list.iter().any(|a| a.as_str() == Some(self.config.audience.as_str()))
            }
            _ => false,
        };
        if !aud_ok {
            return Err(bad("invalid_audience", format!("aud does not name {:?}", self.config.audience)));
        }
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .filter(|j| !j.is_empty())
            .ok_or_else(|| bad("invalid_request", "jti is missing"))?
            .to_owned();
        let events = claims
            .get("events")
            .and_then(Value::as_object)
            .filter(|e| e.len() == 1)
            .ok_or_else(|| bad("invalid_request", "events must hold exactly one event"))?;
        let Some((uri, event)) = events.iter().next() else {
            return Err(bad("invalid_request", "events must hold exactly one event"));
        };
        let subject =
            claims.get("sub_id").or_else(|| event.get("subject")).and_then(subject).ok_or_else(|| {
                bad(
                    "invalid_request",
                    "sub_id is missing or not an email, iss_sub, opaque or complex subject",
                )
            })?;
        use lockstep_domain::SignalKind as K;
        let asked = match K::from_uri(uri) {
            Some(K::AccountDisabled) => Asked::Disable,
            Some(K::AccountEnabled) => Asked::Enable,
            Some(K::AccountPurged) => Asked::Purge,
            Some(K::SessionRevoked) => Asked::RevokeSessions,
            _ if uri == CREDENTIAL_COMPROMISE => Asked::RevokeCredentials,
            _ => Asked::Nothing(uri.clone()),
        };
        Ok(Received { jti, asked, subject, event: uri.clone() })
    }
}

impl Asked {
    /// What the engine is asked to do; `None` for an event Lockstep does
    /// not act on.
    pub fn upstream(&self) -> Option<lockstep_engine::signals::Upstream> {
        use lockstep_engine::signals::Upstream;
        Some(match self {
            Asked::Disable => Upstream::Disable,
            Asked::Enable => Upstream::Enable,
            Asked::Purge => Upstream::Purge,
            Asked::RevokeSessions => Upstream::RevokeSessions,
            Asked::RevokeCredentials => Upstream::RevokeCredentials,
            Asked::Nothing(_) => return None,
        })
    }
}

/// Applies a verified SET from `source`, pushed or polled, on a blocking
/// thread: committed (or found to be a replay) when this returns `Ok`.
pub async fn apply(
    engine: std::sync::Arc<lockstep_engine::Engine>,
    source: String,
    received: Received,
) -> Result<(), ApplyError> {
    let Some(asked) = received.asked.upstream() else {
        tracing::info!(source = %source, event = %received.event, "accepted a SET of a type Lockstep does not act on");
        return Ok(());
    };
    tokio::task::spawn_blocking(move || {
        engine.apply_upstream(&source, &received.jti, &received.subject, &asked, &received.event)
    })
    .await
    .map_err(|e| ApplyError::Interrupted(e.to_string()))?
    .map(|_| ())
    .map_err(ApplyError::Engine)
}

/// Why a verified SET was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The engine refused or failed.
    #[error(transparent)]
    Engine(lockstep_engine::EngineError),
    /// The blocking task did not finish.
    #[error("the write was interrupted: {0}")]
    Interrupted(String),
}
