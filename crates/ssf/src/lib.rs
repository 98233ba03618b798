//! The OpenID Shared Signals Framework (SSF 1.0) transmitter: Security
//! Event Tokens (RFC 8417) for every session impact, subjects as RFC 9493
//! subject identifiers, stream configurations as SSF renders them, and the
//! push delivery worker (RFC 8935). Polling (RFC 8936) is answered by the
//! HTTP layer from the same outbox.
//!
//! The engine decides *what* to tell whom (signals addressed to streams,
//! queued in the outbox with the impact); this crate decides *how*: the
//! SET's shape and signature, retries and backoff. SETs are signed when
//! they are sent, with the key published at `jwks_uri` then; a retry
//! carries the same `jti`.

mod deliver;
pub mod poll;
mod receive;

use lockstep_domain::{Addressed, Delivery, Signal, SignalKind, Stream};
use serde_json::{Map, Value, json};

pub use deliver::{Transmitter, backoff};
pub use receive::{
    ApplyError, Asked, CREDENTIAL_COMPROMISE, Inbound, InboundConfig, Received, Refused, apply,
};

/// RFC 8935 push delivery.
pub const PUSH: &str = "urn:ietf:rfc:8935";
/// RFC 8936 poll delivery.
pub const POLL: &str = "urn:ietf:rfc:8936";
/// The SET media type (RFC 8417 §2.3).
pub const SET_TYPE: &str = "secevent+jwt";

/// The event types a stream may ask for (verification is always sent).
pub const SUPPORTED: &[SignalKind] = &[
    SignalKind::SessionRevoked,
    SignalKind::TokenClaimsChange,
    SignalKind::CredentialChange,
    SignalKind::AccountDisabled,
    SignalKind::AccountEnabled,
    SignalKind::AccountPurged,
    SignalKind::Verification,
];

/// Why a SET could not be made.
#[derive(Debug, thiserror::Error)]
#[error("signing a SET: {0}")]
pub struct SetError(pub String);

fn opaque(id: impl ToString) -> Value {
    json!({"format": "opaque", "id": id.to_string()})
}

/// The RFC 9493 subject of a signal on a stream: the stream itself for a
/// verification; the user and the session (`complex`) for session events;
/// the user (`opaque`, its SCIM id) for account and credential events.
pub fn subject(stream: &Stream, signal: &Signal) -> Value {
    match (signal.kind, signal.identity, signal.session) {
        (SignalKind::Verification, _, _) => opaque(stream.id),
        (SignalKind::SessionRevoked | SignalKind::TokenClaimsChange, Some(user), Some(session)) => {
            json!({"format": "complex", "user": opaque(user), "session": opaque(session)})
        }
        (SignalKind::CredentialChange, Some(user), _) => json!({"format": "complex", "user": opaque(user)}),
        (_, Some(user), _) => opaque(user),
        (_, None, _) => opaque(stream.id),
    }
}

/// The event member of a SET: the event type URI and its fields.
pub fn event(signal: &Signal) -> Value {
    let mut body = Map::new();
    let caep = matches!(
        signal.kind,
        SignalKind::SessionRevoked | SignalKind::TokenClaimsChange | SignalKind::CredentialChange
    );
    if caep {
        body.insert("event_timestamp".into(), json!(signal.at.unix_seconds()));
        body.insert("initiating_entity".into(), json!(signal.initiator));
        body.insert("reason_admin".into(), json!({"en": signal.reason}));
    }
    match signal.kind {
        SignalKind::TokenClaimsChange => {
            if let Some((groups, tiers)) = &signal.claims {
                body.insert("claims".into(), json!({"groups": groups, "tier": tiers.as_str()}));
            }
        }
        SignalKind::CredentialChange => {
            body.insert(
                "credential_type".into(),
                json!(signal.credential_type.as_deref().unwrap_or("client_secret")),
            );
            body.insert("change_type".into(), json!(signal.change.as_deref().unwrap_or("update")));
            if let Some(id) = signal.session {
                body.insert("credential_id".into(), json!(id.to_string()));
            }
        }
        SignalKind::Verification => {
            if let Some(state) = &signal.state {
                body.insert("state".into(), json!(state));
            }
        }
        _ => {}
    }
    let mut events = Map::new();
    events.insert(signal.kind.uri().to_owned(), Value::Object(body));
    Value::Object(events)
}

/// The claims of the SET for one outbox row: exactly one event, `iss`,
/// the stream's `aud`, the row's `jti`, `iat`, `txn`, `sub_id`; no `sub`
/// and no `exp` (RFC 8417 §2.2, SSF 1.0 §4).
pub fn claims(issuer: &str, stream: &Stream, out: &Addressed) -> Value {
    json!({
        "iss": issuer,
        "aud": stream.audience,
        "jti": out.jti,
        "iat": out.signal.at.unix_seconds(),
        "txn": out.signal.txn,
        "sub_id": subject(stream, &out.signal),
        "events": event(&out.signal),
    })
}

/// A signed SET (`typ: secevent+jwt`, ES256, `kid`).
pub fn sign(
    keys: &lockstep_jose::Keyring,
    issuer: &str,
    stream: &Stream,
    out: &Addressed,
) -> Result<String, SetError> {
    keys.sign(SET_TYPE, &claims(issuer, stream, out)).map_err(|e| SetError(e.to_string()))
}

/// A stream's configuration as SSF 1.0 §8.1.1 renders it. The receiver's
/// `authorization_header` is never shown back.
pub fn stream_config(issuer: &str, poll_base: &str, stream: &Stream) -> Value {
    let delivery = match &stream.delivery {
        Delivery::Push { endpoint, .. } => json!({"method": PUSH, "endpoint_url": endpoint}),
        Delivery::Poll => json!({"method": POLL, "endpoint_url": format!("{poll_base}/{}", stream.id)}),
    };
    let uris = |kinds: &[SignalKind]| kinds.iter().map(|k| k.uri()).collect::<Vec<_>>();
    let mut v = json!({
        "stream_id": stream.id.to_string(),
        "iss": issuer,
        "aud": stream.audience,
        "delivery": delivery,
        "events_supported": uris(SUPPORTED),
        "events_requested": uris(&stream.requested),
        "events_delivered": uris(&stream.requested),
    });
    if let (Some(d), Value::Object(m)) = (&stream.description, &mut v) {
        m.insert("description".into(), json!(d));
    }
    v
}

/// `/.well-known/ssf-configuration` (SSF 1.0 §7.1).
pub fn metadata(issuer: &str, base: &str) -> Value {
    json!({
        "spec_version": "1_0",
        "issuer": issuer,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "delivery_methods_supported": [PUSH, POLL],
        "configuration_endpoint": format!("{base}/ssf/streams"),
        "status_endpoint": format!("{base}/ssf/status"),
        "add_subject_endpoint": format!("{base}/ssf/subjects:add"),
        "remove_subject_endpoint": format!("{base}/ssf/subjects:remove"),
        "verification_endpoint": format!("{base}/ssf/verify"),
        "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6749"}],
        "default_subjects": "ALL",
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use lockstep_domain::{IdentityId, SessionId, StreamId, StreamStatus, Tiers, Timestamp};

    use super::*;

    fn stream() -> Stream {
        Stream {
            id: StreamId::from_uuid(Default::default()),
            client: None,
            audience: "https://rp.example.com".into(),
            delivery: Delivery::Poll,
            requested: SUPPORTED.to_vec(),
            status: StreamStatus::Enabled,
            reason: None,
            description: None,
            subjects: Vec::new(),
            excluded: Vec::new(),
            created: Timestamp(0),
        }
    }

    fn signal(kind: SignalKind) -> Signal {
        Signal {
            kind,
            at: Timestamp(1_700_000_000_000_000),
            identity: Some(IdentityId::from_uuid(Default::default())),
            user_name: Some("ada@example.com".into()),
            session: Some(SessionId::from_uuid(Default::default())),
            change: Some("revoke".into()),
            credential_type: Some("api_key".into()),
            claims: Some((vec!["eng".into()], Tiers::STANDARD)),
            initiator: "policy".into(),
            reason: "standard.on_deactivated".into(),
            txn: "dir-9".into(),
            state: Some("abc".into()),
        }
    }

    #[test]
    fn a_set_has_one_event_and_no_sub_or_exp() {
        let s = stream();
        for kind in SUPPORTED {
            let out = Addressed { stream: s.id, jti: "j1".into(), signal: signal(*kind) };
            let c = claims("https://lockstep.example.com", &s, &out);
            assert_eq!(c["events"].as_object().unwrap().len(), 1, "{c}");
            assert!(c["events"][kind.uri()].is_object(), "{c}");
            assert!(c.get("sub").is_none() && c.get("exp").is_none(), "{c}");
            assert_eq!(
                (c["aud"].as_str(), c["txn"].as_str(), c["iat"].as_i64()),
                (Some("https://rp.example.com"), Some("dir-9"), Some(1_700_000_000))
            );
        }
        let out = Addressed { stream: s.id, jti: "j".into(), signal: signal(SignalKind::SessionRevoked) };
        assert_eq!(claims("i", &s, &out)["sub_id"]["format"], "complex");
        let out = Addressed { stream: s.id, jti: "j".into(), signal: signal(SignalKind::Verification) };
        let c = claims("i", &s, &out);
        assert_eq!(c["sub_id"], json!({"format": "opaque", "id": s.id.to_string()}));
        assert_eq!(c["events"][SignalKind::Verification.uri()]["state"], "abc");
    }
}
