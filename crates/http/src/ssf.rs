//! Shared Signals (SSF 1.0) transmitter endpoints: discovery, stream
//! management (scope `ssf`; a client sees only its own streams), status,
//! subjects, verification, and RFC 8936 polling. SETs themselves are made
//! by `lockstep-ssf`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lockstep_domain::{ClientId, Delivery, Scope, SignalKind, Stream, StreamId, StreamStatus};
use lockstep_engine::authority::SubjectId;
use serde_json::{Value, json};

use crate::error::{ApiError, Flavor};
use crate::{AppState, Caller, blocking};

const FLAVOR: Flavor = Flavor::Admin;

/// The longest a poll without `returnImmediately` waits for events.
const LONG_POLL: Duration = Duration::from_secs(30);
/// The most SETs one poll returns.
const MAX_EVENTS: usize = 1000;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(FLAVOR, message)
}

fn engine_err(e: lockstep_engine::EngineError) -> ApiError {
    ApiError::from_engine(FLAVOR, e)
}

fn issuer(state: &AppState) -> String {
    state.engine.tokens().issuer.trim_end_matches('/').to_owned()
}

fn object(
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    match crate::api::json_body(body)? {
        Value::Object(m) => Ok(m),
        _ => Err(bad("the body must be a JSON object")),
    }
}

fn stream_id(value: Option<&Value>) -> Result<StreamId, ApiError> {
    let text = value.and_then(Value::as_str).ok_or_else(|| bad("stream_id: is required"))?;
    text.parse::<StreamId>().map_err(|_| {
        ApiError::new(FLAVOR, StatusCode::NOT_FOUND, Some("not_found"), format!("stream {text:?} not found"))
    })
}

fn client(caller: &Caller) -> Option<ClientId> {
    caller.principal.client_id()
}

/// `GET /.well-known/ssf-configuration`.
pub(crate) async fn configuration(State(state): State<AppState>) -> Json<Value> {
    let issuer = issuer(&state);
    Json(lockstep_ssf::metadata(&issuer, &issuer))
}

fn requested(value: Option<&Value>) -> Result<Vec<SignalKind>, ApiError> {
    let Some(value) = value else {
        // Nothing asked for: everything supported.
        return Ok(lockstep_ssf::SUPPORTED.to_vec());
    };
    let list = value.as_array().ok_or_else(|| bad("events_requested: must be a list of event type URIs"))?;
    let mut kinds = Vec::new();
    for v in list {
        let uri = v.as_str().ok_or_else(|| bad("events_requested: must be a list of event type URIs"))?;
        // Unsupported types are not delivered (SSF 1.0 §8.1.1:
        // events_delivered is the intersection), not an error.
        if let Some(kind) = SignalKind::from_uri(uri)
            && !kinds.contains(&kind)
        {
            kinds.push(kind);
        }
    }
    if !kinds.contains(&SignalKind::Verification) {
        kinds.push(SignalKind::Verification);
    }
    Ok(kinds)
}

fn delivery(value: Option<&Value>) -> Result<Delivery, ApiError> {
    let Some(d) = value else { return Ok(Delivery::Poll) };
    let method = d.get("method").and_then(Value::as_str).unwrap_or(lockstep_ssf::POLL);
    match method {
        lockstep_ssf::PUSH => {
            let endpoint = d.get("endpoint_url").and_then(Value::as_str).ok_or_else(|| {
                bad("delivery.endpoint_url: is required for push delivery (urn:ietf:rfc:8935)")
            })?;
            if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
                return Err(bad(format!("delivery.endpoint_url: {endpoint:?} is not an http(s) URL")));
            }
            let authorization = match d.get("authorization_header") {
                None | Some(Value::Null) => None,
                Some(Value::String(a)) if !a.contains(['\r', '\n']) => Some(a.clone()),
                Some(_) => return Err(bad("delivery.authorization_header: must be one line of text")),
            };
            Ok(Delivery::Push { endpoint: endpoint.to_owned(), authorization })
        }
        lockstep_ssf::POLL => Ok(Delivery::Poll),
        other => Err(bad(format!(
            "delivery.method: {other:?} is not one of {} (push) or {} (poll)",
            lockstep_ssf::PUSH,
            lockstep_ssf::POLL
        ))),
    }
}

fn render(state: &AppState, stream: &Stream) -> Value {
    let issuer = issuer(state);
    lockstep_ssf::stream_config(&issuer, &format!("{issuer}/ssf/poll"), stream)
}

/// `POST /ssf/streams`: creates a stream (201).
pub(crate) async fn create_stream(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Ssf)?;
    let body = object(body)?;
    let delivery = delivery(body.get("delivery"))?;
    let requested = requested(body.get("events_requested"))?;
    let description = body.get("description").and_then(Value::as_str).map(str::to_owned);
    let owner = client(&caller);
    let audience = match body.get("aud") {
        Some(Value::String(a)) if !a.is_empty() => a.clone(),
        Some(_) => return Err(bad("aud: must be a non-empty string")),
        None => owner.map_or_else(|| issuer(&state), |c| c.to_string()),
    };
    let engine = state.engine.clone();
    let stream = blocking(FLAVOR, move || {
        let signals = engine.signals();
        let stream = Stream {
            id: signals.new_stream_id().map_err(engine_err)?,
            client: owner,
            audience,
            delivery,
            requested,
            status: StreamStatus::Enabled,
            reason: None,
            description,
            subjects: Vec::new(),
            excluded: Vec::new(),
            created: engine.clock().now(),
        };
        signals.put_stream(stream).map_err(engine_err)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(render(&state, &stream))).into_response())
}

/// `GET /ssf/streams[?stream_id=]`: one stream, or every stream the caller
/// may see.
pub(crate) async fn get_streams(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Ssf)?;
    let signals = state.engine.signals();
    match q.get("stream_id") {
        Some(id) => {
            let id = stream_id(Some(&json!(id)))?;
            let stream = signals.stream(id, client(&caller)).map_err(engine_err)?;
            Ok(Json(render(&state, &stream)))
        }
        None => Ok(Json(Value::Array(
            signals.streams_of(client(&caller)).iter().map(|s| render(&state, s)).collect(),
        ))),
    }
}

/// `PATCH /ssf/streams` (and `PUT`): changes what the receiver may change.
pub(crate) async fn update_stream(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Ssf)?;
    let body = object(body)?;
    let id = stream_id(body.get("stream_id"))?;
    let mut stream = state.engine.signals().stream(id, client(&caller)).map_err(engine_err)?;
    if body.contains_key("events_requested") {
        stream.requested = requested(body.get("events_requested"))?;
    }
    if body.contains_key("delivery") {
        stream.delivery = delivery(body.get("delivery"))?;
    }
    if let Some(d) = body.get("description") {
        stream.description = d.as_str().map(str::to_owned);
    }
    let engine = state.engine.clone();
    let stream = blocking(FLAVOR, move || engine.signals().put_stream(stream).map_err(engine_err)).await?;
    Ok(Json(render(&state, &stream)))
}

/// `DELETE /ssf/streams?stream_id=` (204).
pub(crate) async fn delete_stream(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::Ssf)?;
    let id = stream_id(q.get("stream_id").map(|s| json!(s)).as_ref())?;
    let engine = state.engine.clone();
    let owner = client(&caller);
    blocking(FLAVOR, move || engine.signals().delete_stream(id, owner).map_err(engine_err)).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn status_view(stream: &Stream) -> Value {
    let mut v = json!({"stream_id": stream.id.to_string(), "status": stream.status.as_str()});
    if let (Some(r), Value::Object(m)) = (&stream.reason, &mut v) {
        m.insert("reason".into(), json!(r));
    }
    v
}

/// `GET /ssf/status?stream_id=`.
pub(crate) async fn get_status(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Ssf)?;
    let id = stream_id(q.get("stream_id").map(|s| json!(s)).as_ref())?;
    let stream = state.engine.signals().stream(id, client(&caller)).map_err(engine_err)?;
    Ok(Json(status_view(&stream)))
}

/// `POST /ssf/status` `{stream_id, status, reason}`: `paused` holds events
/// for delivery on re-enable; `disabled` drops them.
pub(crate) async fn set_status(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Ssf)?;
    let body = object(body)?;
    let id = stream_id(body.get("stream_id"))?;
    let status = body
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("status: is required (enabled, paused or disabled)"))?;
    let status = status
        .parse::<StreamStatus>()
        .map_err(|_| bad(format!("status: {status:?} is not one of enabled, paused, disabled")))?;
    let mut stream = state.engine.signals().stream(id, client(&caller)).map_err(engine_err)?;
    stream.status = status;
    stream.reason = body.get("reason").and_then(Value::as_str).map(str::to_owned);
    let engine = state.engine.clone();
    let stream = blocking(FLAVOR, move || engine.signals().put_stream(stream).map_err(engine_err)).await?;
    Ok(Json(status_view(&stream)))
}

fn subject_id(value: Option<&Value>) -> Result<SubjectId, ApiError> {
    let v = value.ok_or_else(|| bad("subject: is required (an RFC 9493 subject identifier)"))?;
    let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    match v.get("format").and_then(Value::as_str) {
        Some("opaque") => field("id").map(SubjectId::Opaque).ok_or_else(|| bad("subject.id: is required")),
        Some("email") => {
            field("email").map(SubjectId::Email).ok_or_else(|| bad("subject.email: is required"))
        }
        Some("iss_sub") => match (field("iss"), field("sub")) {
            (Some(iss), Some(sub)) => Ok(SubjectId::IssSub { iss, sub }),
            _ => Err(bad("subject: iss_sub needs iss and sub")),
        },
        other => Err(bad(format!("subject.format: {other:?} is not one of opaque, email, iss_sub"))),
    }
}

async fn change_subject(
    state: AppState,
    caller: Caller,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
    add: bool,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::Ssf)?;
    let body = object(body)?;
    let id = stream_id(body.get("stream_id"))?;
    let subject = subject_id(body.get("subject"))?;
    let engine = state.engine.clone();
    let owner = client(&caller);
    blocking(FLAVOR, move || {
        let (_, identities) = engine.identities_named(&subject).map_err(engine_err)?;
        if identities.is_empty() {
            return Err(ApiError::new(
                FLAVOR,
                StatusCode::NOT_FOUND,
                Some("not_found"),
                "subject: names no identity",
            ));
        }
        for identity in identities {
            let signals = engine.signals();
            if add {
                signals.add_subject(id, owner, identity).map_err(engine_err)?;
            } else {
                signals.remove_subject(id, owner, identity).map_err(engine_err)?;
            }
        }
        Ok(())
    })
    .await?;
    Ok(if add { StatusCode::OK } else { StatusCode::NO_CONTENT })
}

/// `POST /ssf/subjects:add`.
pub(crate) async fn add_subject(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    change_subject(state, caller, body, true).await
}

/// `POST /ssf/subjects:remove`.
pub(crate) async fn remove_subject(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    change_subject(state, caller, body, false).await
}

/// `POST /ssf/verify` `{stream_id, state}` (204): a verification event on
/// the stream, echoing `state`.
pub(crate) async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::Ssf)?;
    let body = object(body)?;
    let id = stream_id(body.get("stream_id"))?;
    let echo = body.get("state").and_then(Value::as_str).map(str::to_owned);
    let engine = state.engine.clone();
    let owner = client(&caller);
    blocking(FLAVOR, move || engine.signals().verify(id, owner, echo).map_err(engine_err)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /ssf/poll/{stream_id}` (RFC 8936): acknowledges `ack`, records
/// `setErrs`, and returns up to `maxEvents` pending SETs (waiting up to 30 s
/// for one unless `returnImmediately`).
pub(crate) async fn poll(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Ssf)?;
    let body = object(body)?;
    let id = stream_id(Some(&json!(id)))?;
    let stream = state.engine.signals().stream(id, client(&caller)).map_err(engine_err)?;
    if stream.delivery != Delivery::Poll {
        return Err(bad("this stream is delivered by push (urn:ietf:rfc:8935); it cannot be polled"));
    }
    let max = match body.get("maxEvents") {
        None => 100,
        Some(v) => {
            v.as_u64().map(|n| n as usize).ok_or_else(|| bad("maxEvents: must be a non-negative integer"))?
        }
    }
    .min(MAX_EVENTS);
    let immediately = body.get("returnImmediately").and_then(Value::as_bool).unwrap_or(false);
    let mut ack: Vec<String> = match body.get("ack") {
        None => Vec::new(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Some(_) => return Err(bad("ack: must be a list of jti")),
    };
    if let Some(errs) = body.get("setErrs") {
        let errs = errs.as_object().ok_or_else(|| bad("setErrs: must be an object keyed by jti"))?;
        for (jti, err) in errs {
            tracing::warn!(stream = %id, jti = %jti, error = %err, "the receiver reported a SET error");
            ack.push(jti.clone()); // a SET the receiver rejected is not sent again
        }
    }
    let engine = state.engine.clone();
    if !ack.is_empty() {
        let engine = engine.clone();
        blocking(FLAVOR, move || engine.signals().delivered(id, &ack).map_err(engine_err)).await?;
    }
    let keys =
        state.keys.clone().ok_or_else(|| ApiError::internal(FLAVOR, &"no signing keys are configured"))?;
    let issuer = issuer(&state);
    let waited_since = engine.clock().now();
    loop {
        let due = if max == 0 {
            Vec::new()
        } else {
            let engine = engine.clone();
            blocking(FLAVOR, move || engine.signals().pending(id, max + 1).map_err(engine_err)).await?
        };
        let waited = engine.clock().now().since(waited_since);
        if !due.is_empty() || immediately || max == 0 || waited >= LONG_POLL {
            let more = due.len() > max;
            let ring = keys.current();
            let mut sets = serde_json::Map::new();
            for q in due.into_iter().take(max) {
                let set = lockstep_ssf::sign(&ring, &issuer, &stream, &q.outgoing)
                    .map_err(|e| ApiError::internal(FLAVOR, &e))?;
                sets.insert(q.outgoing.jti.clone(), Value::String(set));
            }
            return Ok(Json(json!({"sets": sets, "moreAvailable": more})));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `POST /ssf/receive/{source}` (RFC 8935): an upstream transmitter's SET.
/// 202 once its effect is committed (a replayed `jti` is acknowledged and
/// not applied again); 400 `{"err", "description"}` for a bad key or
/// signature, a wrong `iss` or `aud`, a malformed SET; 401 without the
/// source's push token.
pub(crate) async fn receive(
    State(state): State<AppState>,
    Path(source): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let set_error = |status: StatusCode, err: &str, description: String| {
        (status, Json(json!({"err": err, "description": description}))).into_response()
    };
    let Some(inbound) = state.config.receivers.iter().find(|r| r.config.source == source).cloned() else {
        return ApiError::new(
            FLAVOR,
            StatusCode::NOT_FOUND,
            Some("not_found"),
            format!("no Shared Signals source {source:?}"),
        )
        .into_response();
    };
    let auth = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if inbound.authorize(auth).is_err() {
        return (
            StatusCode::UNAUTHORIZED,
            [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({"err": "authentication_failed", "description": "the push token of this source is required"})),
        )
            .into_response();
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return set_error(StatusCode::BAD_REQUEST, "invalid_request", "the body is not UTF-8".into());
    };
    let now = state.engine.clock().now();
    let received = match inbound.verify(text, now).await {
        Ok(r) => r,
        Err(lockstep_ssf::Refused::Unauthorized) => {
            return set_error(StatusCode::UNAUTHORIZED, "authentication_failed", "bad push token".into());
        }
        Err(lockstep_ssf::Refused::Bad { err, description }) => {
            tracing::warn!(source = %source, err, %description, "refused a pushed SET");
            return set_error(StatusCode::BAD_REQUEST, err, description);
        }
    };
    match lockstep_ssf::apply(state.engine.clone(), source, received).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(lockstep_ssf::ApplyError::Engine(e)) => ApiError::from_engine(FLAVOR, e).into_response(),
        Err(e) => ApiError::internal(FLAVOR, &e).into_response(),
    }
}
