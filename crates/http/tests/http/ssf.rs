//! Shared Signals transmitter over a real socket: streams, a local push
//! receiver on 127.0.0.1:0, polling, status semantics, retries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{ADMIN, PATCH, Server};

const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
const ACCOUNT_DISABLED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";

/// One push as received: content type, `Authorization`, the SET.
type Push = (String, Option<String>, String);

/// A push receiver: records what it gets; answers `status` (202 normally).
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Push>>>,
    status: Arc<Mutex<u16>>,
}

impl Receiver {
    async fn start() -> (Self, String) {
        let me = Receiver { status: Arc::new(Mutex::new(202)), ..Receiver::default() };
        let state = me.clone();
        let app = axum::Router::new().route(
            "/events",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move {
                    let status = *state.status.lock().unwrap();
                    if status == 202 {
                        let ct = headers
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let auth =
                            headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
                        state.got.lock().unwrap().push((
                            ct,
                            auth,
                            String::from_utf8_lossy(&body).into_owned(),
                        ));
                    }
                    AxumStatus::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (me, url)
    }

    fn sets(&self) -> Vec<Value> {
        self.got.lock().unwrap().iter().map(|(_, _, set)| claims(set)).collect()
    }
}

/// The claims of a compact JWS (the signature is checked separately).
fn claims(jws: &str) -> Value {
    use base64::Engine as _;
    let part = jws.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn header(jws: &str) -> Value {
    use base64::Engine as _;
    let part = jws.split('.').next().unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..DELIVERY_POLLS {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// How many 20 ms polls a delivery may take (at least 30 s: a loaded CI
/// machine; waits end as soon as it arrives).
const DELIVERY_POLLS: usize = 1_500;

impl Server {
    async fn stream(&self, body: Value) -> Value {
        let r = self.post("/ssf/streams", body).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        r.json().await.unwrap()
    }

    async fn deactivate(&self, id: &str) {
        let r = self
            .patch(
                &format!("/scim/v2/Users/{id}"),
                json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": false}]}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn a_deactivation_reaches_a_push_receiver_as_signed_sets() {
    let server = Server::start().await;
    let meta: Value = server
        .http
        .get(server.url("/.well-known/ssf-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["delivery_methods_supported"], json!(["urn:ietf:rfc:8935", "urn:ietf:rfc:8936"]));
    assert!(meta["jwks_uri"].as_str().unwrap().ends_with("/.well-known/jwks.json"));
    let (receiver, url) = Receiver::start().await;
    let stream = server
        .stream(json!({
            "delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": url, "authorization_header": "Bearer rx-secret"},
            "events_requested": [SESSION_REVOKED, ACCOUNT_DISABLED],
            "aud": "https://rp.example.com",
        }))
        .await;
    assert!(stream.get("delivery").unwrap().get("authorization_header").is_none(), "never shown back");
    let id = server.create_user("ada").await;
    let session = server.open_session("ada").await;
    server.deactivate(&id).await;
    eventually("two SETs pushed", || receiver.sets().len() >= 2).await;
    let got = receiver.got.lock().unwrap().clone();
    let keys = server.keys.current();
    let mut kinds = Vec::new();
    for (ct, auth, set) in &got {
        assert_eq!(ct, "application/secevent+jwt");
        assert_eq!(auth.as_deref(), Some("Bearer rx-secret"));
        assert_eq!(header(set)["typ"], "secevent+jwt");
        keys.verify(set).unwrap();
        let c = claims(set);
        assert_eq!(c["aud"], "https://rp.example.com");
        assert!(c.get("sub").is_none() && c.get("exp").is_none());
        assert_eq!(c["events"].as_object().unwrap().len(), 1);
        kinds.push(c["events"].as_object().unwrap().keys().next().unwrap().clone());
        assert!(c["txn"].as_str().unwrap().starts_with("dir-"), "{c}");
    }
    kinds.sort();
    let mut expected = vec![SESSION_REVOKED.to_owned(), ACCOUNT_DISABLED.to_owned()];
    expected.sort();
    assert_eq!(kinds, expected);
    let revoked = receiver.sets().into_iter().find(|c| c["events"].get(SESSION_REVOKED).is_some()).unwrap();
    assert_eq!(revoked["sub_id"]["session"]["id"], session["session_id"]);
    assert_eq!(revoked["sub_id"]["user"]["id"], json!(id));
    let txns: std::collections::BTreeSet<String> =
        receiver.sets().iter().map(|c| c["txn"].as_str().unwrap().to_owned()).collect();
    assert_eq!(txns.len(), 1, "one txn links every SET of one directory event");
    // The reach report lists, per stream, which SETs were delivered and when.
    // A delivery is recorded once the receiver's 202 is back at the
    // transmitter, a moment after the receiver has the SET: ask until then.
    let position = txns.iter().next().unwrap().trim_start_matches("dir-").to_owned();
    let mut reach = Value::Null;
    for _ in 0..DELIVERY_POLLS {
        reach = server.get(&format!("/v1/directory-events/{position}/reach")).await.json().await.unwrap();
        let recorded = reach["signals"]
            .as_array()
            .is_some_and(|s| s.len() == 2 && s.iter().all(|s| s["delivered_at"].is_string()));
        if recorded {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let signals = reach["signals"].as_array().unwrap();
    assert_eq!(signals.len(), 2, "{reach}");
    for s in signals {
        assert_eq!(s["stream_id"], stream["stream_id"]);
        assert!(s["delivered_at"].is_string(), "{s}");
    }
}

#[tokio::test]
async fn a_single_revocation_sends_only_session_revoked_and_verification_echoes_state() {
    let server = Server::start().await;
    let (receiver, url) = Receiver::start().await;
    let stream =
        server.stream(json!({"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": url}})).await;
    server.create_user("bo").await;
    let session = server.open_session("bo").await;
    let r = server
        .http
        .delete(server.url(&format!("/v1/sessions/{}", session["session_id"].as_str().unwrap())))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    eventually("session-revoked", || !receiver.sets().is_empty()).await;
    let r = server.post("/ssf/verify", json!({"stream_id": stream["stream_id"], "state": "xyz"})).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    eventually("verification", || receiver.sets().len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sets = receiver.sets();
    assert_eq!(sets.len(), 2, "no account event for a single revocation: {sets:?}");
    assert!(sets[0]["events"].get(SESSION_REVOKED).is_some());
    assert_eq!(sets[1]["events"][VERIFICATION]["state"], "xyz");
    assert_eq!(sets[1]["sub_id"], json!({"format": "opaque", "id": stream["stream_id"]}));
}

#[tokio::test]
async fn paused_streams_hold_disabled_streams_drop_and_a_failing_receiver_gets_them_later() {
    let server = Server::start().await;
    let (receiver, url) = Receiver::start().await;
    let stream =
        server.stream(json!({"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": url}})).await;
    let sid = stream["stream_id"].clone();
    let status = |s: &str| json!({"stream_id": sid, "status": s});
    assert_eq!(server.post("/ssf/status", status("paused")).await.status(), StatusCode::OK);
    let a = server.create_user("pa").await;
    server.open_session("pa").await;
    server.deactivate(&a).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.sets().is_empty(), "paused: held");
    assert_eq!(server.post("/ssf/status", status("enabled")).await.status(), StatusCode::OK);
    eventually("held SETs delivered on re-enable", || receiver.sets().len() >= 2).await;
    // Disabled: dropped, also after re-enabling.
    assert_eq!(server.post("/ssf/status", status("disabled")).await.status(), StatusCode::OK);
    let b = server.create_user("pb").await;
    server.deactivate(&b).await;
    assert_eq!(server.post("/ssf/status", status("enabled")).await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.sets().len(), 2, "disabled: dropped");
    // 503: retried with the same jti, delivered once it answers 202.
    *receiver.status.lock().unwrap() = 503;
    let c = server.create_user("pc").await;
    server.deactivate(&c).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.sets().len(), 2);
    // ... and reactivated while the receiver still fails: once it answers,
    // the SETs arrive in the order they were queued (disabled, then
    // enabled), never the newer one first.
    let r = server
        .patch(
            &format!("/scim/v2/Users/{c}"),
            json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": true}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    *receiver.status.lock().unwrap() = 202;
    eventually("retried after 503", || receiver.sets().len() >= 4).await;
    let order: Vec<String> = receiver
        .sets()
        .iter()
        .skip(2)
        .map(|c| {
            c["events"].as_object().unwrap().keys().next().unwrap().rsplit('/').next().unwrap().to_owned()
        })
        .collect();
    assert_eq!(order, ["account-disabled", "account-enabled"], "in queue order");
    // A client sees only its own streams.
    let other = server.post("/v1/clients", json!({"name": "rp-2", "scopes": ["ssf"]})).await;
    let other: Value = other.json().await.unwrap();
    let secret = other["client_secret"].as_str().unwrap();
    let r = server
        .http
        .get(server.url(&format!("/ssf/streams?stream_id={}", sid.as_str().unwrap())))
        .bearer_auth(secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = server.http.get(server.url("/ssf/streams")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_poll_flow_returns_sets_and_takes_acks() {
    let server = Server::start().await;
    let stream = server
        .stream(json!({"delivery": {"method": "urn:ietf:rfc:8936"}, "events_requested": [ACCOUNT_DISABLED]}))
        .await;
    let endpoint = stream["delivery"]["endpoint_url"].as_str().unwrap().to_owned();
    assert!(endpoint.ends_with(&format!("/ssf/poll/{}", stream["stream_id"].as_str().unwrap())));
    let path = endpoint.split_once("/ssf/").map(|(_, p)| format!("/ssf/{p}")).unwrap();
    for n in 0..3 {
        let id = server.create_user(&format!("q{n}")).await;
        server.deactivate(&id).await;
    }
    let r: Value =
        server.post(&path, json!({"maxEvents": 2, "returnImmediately": true})).await.json().await.unwrap();
    let sets = r["sets"].as_object().unwrap().clone();
    assert_eq!((sets.len(), r["moreAvailable"].clone()), (2, json!(true)));
    let acks: Vec<&String> = sets.keys().collect();
    let r: Value = server
        .post(&path, json!({"ack": acks, "maxEvents": 10, "returnImmediately": true}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!((r["sets"].as_object().unwrap().len(), r["moreAvailable"].clone()), (1, json!(false)));
    let last = r["sets"].as_object().unwrap().keys().next().unwrap().clone();
    let r: Value = server.post(&path, json!({"setErrs": {last: {"err": "invalid_request", "description": "x"}}, "returnImmediately": true})).await.json().await.unwrap();
    assert!(r["sets"].as_object().unwrap().is_empty());
}

/// An upstream IdP: its own keys, published on 127.0.0.1:0.
struct Idp {
    ring: lockstep_jose::Keyring,
    jwks_uri: String,
}

impl Idp {
    async fn start() -> Self {
        let ring = lockstep_jose::Keyring::generate(0).unwrap();
        let jwks = serde_json::to_value(ring.jwks().unwrap()).unwrap();
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let jwks_uri = format!("http://{}/jwks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Idp { ring, jwks_uri }
    }

    fn set(&self, jti: &str, event: &str, sub_id: Value) -> String {
        self.ring
            .sign(
                "secevent+jwt",
                &json!({"iss": "https://idp.example.com", "aud": "https://lockstep.example.com", "jti": jti,
                        "iat": 1_700_000_000, "sub_id": sub_id, "events": {event: {}}}),
            )
            .unwrap()
    }
}

const PUSH_TOKEN: &str = "upstream-push-token-42";

async fn receiving_server(idp: &Idp) -> Server {
    let inbound = lockstep_ssf::Inbound::new(lockstep_ssf::InboundConfig {
        source: "upstream".into(),
        issuer: "https://idp.example.com".into(),
        jwks_uri: idp.jwks_uri.clone(),
        audience: "https://lockstep.example.com".into(),
        push_token: Some(PUSH_TOKEN.into()),
        poll: None,
    })
    .unwrap();
    let source = lockstep_engine::sources::SourceSettings {
        name: lockstep_domain::SourceId::new("upstream"),
        kind: "ssf".into(),
        mode: "push".into(),
        removal: lockstep_engine::sources::Removal::Deactivate,
        max_staleness: None,
        breaker: lockstep_engine::sources::Breaker::default(),
    };
    Server::start_full(
        lockstep_http::HttpConfig {
            receivers: vec![Arc::new(inbound)],
            ..lockstep_http::HttpConfig::default()
        },
        lockstep_engine::EngineConfig { sources: vec![source], ..lockstep_engine::EngineConfig::default() },
    )
    .await
}

impl Server {
    async fn push(&self, set: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut r = self
            .http
            .post(self.url("/ssf/receive/upstream"))
            .header("Content-Type", "application/secevent+jwt")
            .body(set.to_owned());
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn active(&self, name: &str) -> bool {
        let list: Value = self
            .get(&format!("/scim/v2/Users?filter=userName%20eq%20%22{name}%22"))
            .await
            .json()
            .await
            .unwrap();
        list["Resources"][0]["active"] == json!(true)
    }
}

const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";
const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";

#[tokio::test]
async fn an_upstream_idps_signals_have_their_effect_and_forged_ones_none() {
    let idp = Idp::start().await;
    let server = receiving_server(&idp).await;
    let ada = server.create_user("ada@example.com").await;
    let token = server.open_session("ada@example.com").await["access_token"].as_str().unwrap().to_owned();
    let email = json!({"format": "email", "email": "ada@example.com"});
    let disabled = format!("{RISC}account-disabled");
    // Refused, with no effect: no push token, a forged key, a wrong issuer
    // or audience, a malformed SET.
    let good = idp.set("j1", &disabled, email.clone());
    assert_eq!(server.push(&good, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(server.push(&good, Some("wrong")).await.0, StatusCode::UNAUTHORIZED);
    let forger = lockstep_jose::Keyring::generate(0).unwrap();
    let forged = forger
        .sign("secevent+jwt", &json!({"iss": "https://idp.example.com", "aud": "https://lockstep.example.com", "jti": "f", "iat": 1, "sub_id": email, "events": {disabled.clone(): {}}}))
        .unwrap();
    let (status, body) = server.push(&forged, Some(PUSH_TOKEN)).await;
    assert_eq!((status, body["err"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_key")), "{body}");
    let wrong_iss = idp.ring.sign("secevent+jwt", &json!({"iss": "https://evil.example.com", "aud": "https://lockstep.example.com", "jti": "i", "sub_id": email, "events": {disabled.clone(): {}}})).unwrap();
    assert_eq!(server.push(&wrong_iss, Some(PUSH_TOKEN)).await.1["err"], "invalid_issuer");
    let wrong_aud = idp.ring.sign("secevent+jwt", &json!({"iss": "https://idp.example.com", "aud": "https://other.example.com", "jti": "a", "sub_id": email, "events": {disabled.clone(): {}}})).unwrap();
    assert_eq!(server.push(&wrong_aud, Some(PUSH_TOKEN)).await.1["err"], "invalid_audience");
    assert_eq!(server.push("not.a.set", Some(PUSH_TOKEN)).await.1["err"], "invalid_request");
    let two = idp.ring.sign("secevent+jwt", &json!({"iss": "https://idp.example.com", "aud": "https://lockstep.example.com", "jti": "t", "sub_id": email, "events": {disabled.clone(): {}, format!("{RISC}account-purged"): {}}})).unwrap();
    assert_eq!(server.push(&two, Some(PUSH_TOKEN)).await.1["err"], "invalid_request");
    assert!(
        server.active("ada@example.com").await && server.introspect(&token).await["active"] == json!(true),
        "no effect"
    );
    // account-disabled: deactivated, its session cut, before the 202.
    assert_eq!(server.push(&good, Some(PUSH_TOKEN)).await.0, StatusCode::ACCEPTED);
    assert!(!server.active("ada@example.com").await);
    assert_eq!(server.introspect(&token).await["active"], json!(false));
    // account-enabled: reactivated; the old session stays dead.
    assert_eq!(
        server
            .push(&idp.set("j2", &format!("{RISC}account-enabled"), email.clone()), Some(PUSH_TOKEN))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    assert!(server.active("ada@example.com").await);
    assert_eq!(server.introspect(&token).await["active"], json!(false));
    // A replayed jti is acknowledged and applied once.
    assert_eq!(server.push(&good, Some(PUSH_TOKEN)).await.0, StatusCode::ACCEPTED);
    assert!(server.active("ada@example.com").await, "the replay had no effect");
    // session-revoked by iss_sub (externalId): sessions cut, account stays.
    let r = server
        .patch(
            &format!("/scim/v2/Users/{ada}"),
            json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "externalId", "value": "idp-ada"}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let fresh = server.open_session("ada@example.com").await["access_token"].as_str().unwrap().to_owned();
    let iss_sub = json!({"format": "iss_sub", "iss": "https://idp.example.com", "sub": "idp-ada"});
    assert_eq!(
        server
            .push(&idp.set("j3", &format!("{CAEP}session-revoked"), iss_sub.clone()), Some(PUSH_TOKEN))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    assert_eq!(server.introspect(&fresh).await["active"], json!(false));
    assert!(server.active("ada@example.com").await);
    // account-purged: deleted.
    assert_eq!(
        server.push(&idp.set("j4", &format!("{RISC}account-purged"), iss_sub), Some(PUSH_TOKEN)).await.0,
        StatusCode::ACCEPTED
    );
    let list: Value =
        server.get("/scim/v2/Users?filter=userName%20eq%20%22ada@example.com%22").await.json().await.unwrap();
    assert_eq!(list["totalResults"], json!(0));
    // What the receiver applied goes out like any other impact.
    let audit = server.audit().await;
    assert!(
        audit.iter().any(|r| r["kind"] == "directory.identity_deactivated"
            && r["actor"].as_str().unwrap().starts_with("upstream")),
        "{audit:?}"
    );
}

/// The status of `idx` in a status list token's `lst`.
fn status_at(list_token: &str, idx: u64) -> u8 {
    use base64::Engine as _;
    use std::io::Read as _;
    let c = claims(list_token);
    assert_eq!(c["status_list"]["bits"], json!(2));
    let lst = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c["status_list"]["lst"].as_str().unwrap())
        .unwrap();
    let mut bytes = Vec::new();
    flate2::read::ZlibDecoder::new(&lst[..]).read_to_end(&mut bytes).unwrap();
    let i = idx as usize;
    (bytes[i / 4] >> ((i % 4) * 2)) & 0b11
}

#[tokio::test]
async fn the_status_list_shows_a_revoked_jwt_as_soon_as_it_is_revoked() {
    let server = Server::start().await;
    server.create_user("jo").await;
    let mut opened = Vec::new();
    for _ in 0..2 {
        let r = server.post("/v1/sessions", json!({"subject": "jo", "format": "jwt"})).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        opened.push(r.json::<Value>().await.unwrap());
    }
    let (a, b) = (opened[0].clone(), opened[1].clone());
    let status = |s: &Value| claims(s["access_token"].as_str().unwrap())["status"]["status_list"].clone();
    let (sa, sb) = (status(&a), status(&b));
    assert_ne!(sa["idx"], sb["idx"]);
    let uri = sa["uri"].as_str().unwrap().to_owned();
    assert!(uri.ends_with("/statuslists/1"), "{uri}");
    let fetch = || async {
        let r = server.http.get(server.url("/statuslists/1")).send().await.unwrap();
        assert_eq!(r.headers()["content-type"], "application/statuslist+jwt");
        r.text().await.unwrap()
    };
    let token = fetch().await;
    assert_eq!(header(&token)["typ"], "statuslist+jwt");
    server.keys.current().verify(&token).unwrap();
    assert_eq!(claims(&token)["sub"], json!(uri));
    assert_eq!(
        (status_at(&token, sa["idx"].as_u64().unwrap()), status_at(&token, sb["idx"].as_u64().unwrap())),
        (0, 0)
    );
    let r = server
        .http
        .delete(server.url(&format!("/v1/sessions/{}", a["session_id"].as_str().unwrap())))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let token = fetch().await;
    assert_eq!(status_at(&token, sa["idx"].as_u64().unwrap()), 1, "revoked: invalid right away");
    assert_eq!(status_at(&token, sb["idx"].as_u64().unwrap()), 0, "the other stays valid");
}

/// What a polled transmitter was told, and what it still offers.
#[derive(Default)]
struct PollLog {
    offered: Vec<(String, String)>,
    acked: Vec<String>,
    set_errs: serde_json::Map<String, Value>,
    polls: usize,
}

const POLL_TOKEN: &str = "upstream-poll-token-7";

/// An upstream transmitter that offers only RFC 8936: a poll endpoint that
/// keeps offering each SET until it is acknowledged or refused.
async fn poll_endpoint(log: Arc<Mutex<PollLog>>) -> String {
    let app = axum::Router::new().route(
        "/poll",
        axum::routing::post(move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Value>| {
            let log = log.clone();
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
                if auth != Some(&format!("Bearer {POLL_TOKEN}")) {
                    return (AxumStatus::UNAUTHORIZED, axum::Json(json!({"err": "authentication_failed"})));
                }
                let mut log = log.lock().unwrap();
                log.polls += 1;
                // What this poll acknowledges or refuses is offered no more.
                let mut done = Vec::new();
                for jti in body["ack"].as_array().unwrap() {
                    log.acked.push(jti.as_str().unwrap().to_owned());
                    done.push(jti.as_str().unwrap().to_owned());
                }
                for (jti, err) in body["setErrs"].as_object().unwrap() {
                    log.set_errs.insert(jti.clone(), err.clone());
                    done.push(jti.clone());
                }
                log.offered.retain(|(jti, _)| !done.contains(jti));
                let sets: serde_json::Map<String, Value> =
                    log.offered.iter().map(|(j, s)| (j.clone(), json!(s))).collect();
                (AxumStatus::OK, axum::Json(json!({"sets": sets, "moreAvailable": false})))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/poll", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A transmitter that is polled instead of pushing: its SETs have their
/// effect, each is acknowledged once applied (and applied once, though
/// offered until acknowledged), a forged one comes back in `setErrs` with
/// no effect, and a push to the polled-only source is refused.
#[tokio::test]
async fn a_polled_transmitters_sets_are_applied_acknowledged_and_forged_ones_refused() {
    let idp = Idp::start().await;
    let log = Arc::new(Mutex::new(PollLog::default()));
    let url = poll_endpoint(log.clone()).await;
    let inbound = lockstep_ssf::Inbound::new(lockstep_ssf::InboundConfig {
        source: "upstream".into(),
        issuer: "https://idp.example.com".into(),
        jwks_uri: idp.jwks_uri.clone(),
        audience: "https://lockstep.example.com".into(),
        push_token: None,
        poll: Some(lockstep_ssf::poll::PollSettings {
            url,
            token: POLL_TOKEN.into(),
            interval: Duration::from_millis(50),
        }),
    })
    .unwrap();
    let source = lockstep_engine::sources::SourceSettings {
        name: lockstep_domain::SourceId::new("upstream"),
        kind: "ssf".into(),
        mode: "poll".into(),
        removal: lockstep_engine::sources::Removal::Deactivate,
        max_staleness: None,
        breaker: lockstep_engine::sources::Breaker::default(),
    };
    let disabled = format!("{RISC}account-disabled");
    let email = |e: &str| json!({"format": "email", "email": e});
    let good = idp.set("p1", &disabled, email("ada@example.com"));
    let forger = lockstep_jose::Keyring::generate(0).unwrap();
    let forged = forger
        .sign("secevent+jwt", &json!({"iss": "https://idp.example.com", "aud": "https://lockstep.example.com", "jti": "p2", "iat": 1, "sub_id": email("bob@example.com"), "events": {disabled.clone(): {}}}))
        .unwrap();
    let server = Server::start_full(
        lockstep_http::HttpConfig {
            receivers: vec![Arc::new(inbound)],
            ..lockstep_http::HttpConfig::default()
        },
        lockstep_engine::EngineConfig { sources: vec![source], ..lockstep_engine::EngineConfig::default() },
    )
    .await;
    server.create_user("ada@example.com").await;
    server.create_user("bob@example.com").await;
    let ada = server.open_session("ada@example.com").await["access_token"].as_str().unwrap().to_owned();
    let bob = server.open_session("bob@example.com").await["access_token"].as_str().unwrap().to_owned();
    {
        let mut log = log.lock().unwrap();
        log.offered.push(("p1".into(), good.clone()));
        log.offered.push(("p2".into(), forged));
    }
    eventually("the polled SETs acknowledged or refused", || {
        let log = log.lock().unwrap();
        log.acked.contains(&"p1".to_owned()) && log.set_errs.contains_key("p2")
    })
    .await;
    assert!(!server.active("ada@example.com").await);
    assert_eq!(server.introspect(&ada).await["active"], json!(false));
    assert_eq!(log.lock().unwrap().set_errs["p2"]["err"], json!("invalid_key"));
    assert!(server.active("bob@example.com").await, "the forged SET had no effect");
    assert_eq!(server.introspect(&bob).await["active"], json!(true));
    assert_eq!(log.lock().unwrap().acked, ["p1"], "acknowledged once");
    // Offered again (a transmitter that lost the acknowledgement): applied
    // once — re-enabled ada is not disabled again.
    let enabled = idp.set("p3", &format!("{RISC}account-enabled"), email("ada@example.com"));
    log.lock().unwrap().offered.push(("p3".into(), enabled));
    eventually("p3 acknowledged", || log.lock().unwrap().acked.contains(&"p3".to_owned())).await;
    assert!(server.active("ada@example.com").await);
    log.lock().unwrap().offered.push(("p1".into(), good.clone()));
    let polls = log.lock().unwrap().polls;
    eventually("the replay acknowledged", || {
        let log = log.lock().unwrap();
        log.acked.iter().filter(|j| *j == "p1").count() == 2 && log.polls > polls
    })
    .await;
    assert!(server.active("ada@example.com").await, "a replayed jti is applied once");
    // Nothing is pushed to a polled-only source.
    assert_eq!(server.push(&good, Some(PUSH_TOKEN)).await.0, StatusCode::UNAUTHORIZED);
}
