//! Polling an upstream transmitter that offers only RFC 8936 (poll-based
//! SET delivery), for a `[[source]] kind = "ssf"` with `poll_url`.
//!
//! Each poll is a `POST` of `{"maxEvents", "returnImmediately": true,
//! "ack", "setErrs"}` with the configured bearer token; the answer's `sets`
//! are checked exactly as a push is ([`Inbound::verify`]) and applied
//! through the same path ([`crate::apply`]). A SET is acknowledged on the
//! next poll only once its effect is committed (or found to be a replay),
//! so a crash or a failed write means the transmitter sends it again; one
//! that is refused (bad signature, wrong issuer or audience, malformed, or
//! a request the engine refuses for good) goes back in `setErrs` with the
//! RFC 8935 error code, so it is not offered again. Polls follow each other
//! at once while the transmitter has more, or while there are
//! acknowledgements to hand back, and otherwise every `interval`; a
//! transmitter that cannot be reached is retried with capped exponential
//! backoff, keeping the unsent acknowledgements.

use std::sync::Arc;
use std::time::Duration;

use lockstep_engine::{Engine, EngineError};
use serde_json::{Map, Value, json};

use crate::receive::{ApplyError, Inbound, Refused};

/// SETs asked for per poll.
const MAX_EVENTS: u64 = 100;

/// The longest wait between attempts while the transmitter fails.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Where and how to poll one transmitter.
#[derive(Clone)]
pub struct PollSettings {
    /// The transmitter's poll endpoint.
    pub url: String,
    /// The bearer token it expects (from the environment).
    pub token: String,
    /// The pause between polls that found nothing more.
    pub interval: Duration,
}

impl std::fmt::Debug for PollSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollSettings")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("interval", &self.interval)
            .finish()
    }
}

/// What one poll's answer left to hand back on the next.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// `jti`s whose effect is committed (or that were replays).
    pub ack: Vec<String>,
    /// `jti` → `{"err", "description"}` for SETs refused for good.
    pub set_errs: Map<String, Value>,
    /// Whether the transmitter said more are waiting.
    pub more: bool,
}

/// Whether an engine refusal is final (the SET would be refused again)
/// or the write merely failed this time (the SET is left unacknowledged,
/// so the transmitter offers it again).
fn refused_for_good(e: &ApplyError) -> bool {
    !matches!(
        e,
        ApplyError::Interrupted(_)
            | ApplyError::Engine(EngineError::Store(_) | EngineError::BridgePending(_))
    )
}

/// Checks and applies the SETs of one poll answer.
pub async fn receive(inbound: &Inbound, engine: &Arc<Engine>, answer: &Value) -> Result<Outcome, String> {
    let sets = answer
        .get("sets")
        .and_then(Value::as_object)
        .ok_or_else(|| "the poll answer has no \"sets\" object".to_owned())?;
    let mut out =
        Outcome { more: answer.get("moreAvailable") == Some(&Value::Bool(true)), ..Outcome::default() };
    let source = &inbound.config.source;
    for (jti, set) in sets {
        let refuse = |err: &str, description: String| json!({"err": err, "description": description});
        let Some(text) = set.as_str() else {
            out.set_errs.insert(jti.clone(), refuse("invalid_request", "the SET is not a string".into()));
            continue;
        };
        let received = match inbound.verify(text, engine.clock().now()).await {
            Ok(r) => r,
            Err(Refused::Bad { err, description }) => {
                tracing::warn!(source = %source, jti = %jti, err, %description, "refused a polled SET");
                out.set_errs.insert(jti.clone(), refuse(err, description));
                continue;
            }
            Err(Refused::Unauthorized) => {
                out.set_errs.insert(jti.clone(), refuse("authentication_failed", "refused".into()));
                continue;
            }
        };
        match crate::receive::apply(engine.clone(), source.clone(), received).await {
            Ok(()) => out.ack.push(jti.clone()),
            Err(e) if refused_for_good(&e) => {
                tracing::warn!(source = %source, jti = %jti, error = %e, "a polled SET was refused");
                out.set_errs.insert(jti.clone(), refuse("invalid_request", e.to_string()));
            }
            Err(e) => {
                tracing::warn!(source = %source, jti = %jti, error = %e, "a polled SET is left for the next poll");
            }
        }
    }
    Ok(out)
}

/// Polls `inbound`'s transmitter until the task is dropped.
pub async fn run(inbound: Arc<Inbound>, engine: Arc<Engine>) {
    let Some(settings) = inbound.config.poll.clone() else { return };
    let http = match reqwest::Client::builder().timeout(Duration::from_secs(30)).build() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(source = %inbound.config.source, error = %e, "cannot build the poll client; not polling");
            return;
        }
    };
    let mut pending = Outcome::default();
    let mut failures = 0u32;
    loop {
        let body = json!({
            "maxEvents": MAX_EVENTS,
            "returnImmediately": true,
            "ack": pending.ack,
            "setErrs": pending.set_errs,
        });
        let answer = async {
            let r = http.post(&settings.url).bearer_auth(&settings.token).json(&body).send().await?;
            r.error_for_status()?.json::<Value>().await
        }
        .await;
        let outcome = match answer {
            Ok(answer) => receive(&inbound, &engine, &answer).await,
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(outcome) => {
                failures = 0;
                let again = outcome.more || !outcome.ack.is_empty() || !outcome.set_errs.is_empty();
                pending = outcome;
                if !again {
                    tokio::time::sleep(settings.interval).await;
                }
            }
            Err(e) => {
                // The acknowledgements not yet handed back stay pending.
                failures = failures.saturating_add(1);
                let wait = crate::backoff(failures).min(MAX_BACKOFF);
                tracing::warn!(source = %inbound.config.source, error = %e, retry_in = ?wait, "polling the transmitter failed");
                tokio::time::sleep(wait).await;
            }
        }
    }
}
