//! Shared Signals end to end: SETs pending at a kill -9 arrive after the
//! restart. The real `lockstep` binary pushes (RFC 8935) to a receiver in
//! this test that first answers 503; users are deactivated over SCIM (each
//! acknowledged), so their session-revoked and account-disabled SETs sit in
//! the outbox, some retried already. The server is killed with SIGKILL, the
//! receiver switched to 202, the server restarted on the same data
//! directory: every SET arrives, each `jti` accepted exactly once, and the
//! `jti`s the receiver refused before the kill are among them (a retry
//! carries the same `jti`, across a restart too).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

mod common;
const ADMIN: &str = "ssf-test-admin-token-0123456789";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
const ACCOUNT_DISABLED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
const AUD: &str = "https://rp.example.com";
const RECEIVER_AUTH: &str = "Bearer ssf-test-receiver-secret";
/// Users deactivated while the receiver is down (two SETs each).
const USERS: usize = 5;

/// A running server (killed and reaped when dropped).
struct Server {
    process: common::Process,
    base: String,
    http: Client,
}

fn start(data: &Path) -> Server {
    let (process, base) = common::listening(&mut common::serve(data, ADMIN));
    Server { process, base, http: Client::new() }
}

impl Server {
    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// SIGKILL, no chance to flush or finish anything.
    fn kill9(mut self) {
        self.process.0.kill().unwrap();
        self.process.0.wait().unwrap();
    }
}

/// One request the receiver got: the status it answered, its headers of
/// interest and the SET.
#[derive(Debug, Clone)]
struct Attempt {
    answered: u16,
    content_type: String,
    authorization: Option<String>,
    set: String,
}

/// A push receiver answering `status` (503 until switched).
#[derive(Clone)]
struct Receiver {
    status: Arc<AtomicU16>,
    attempts: Arc<Mutex<Vec<Attempt>>>,
}

impl Receiver {
    async fn start() -> (Self, String) {
        let me = Receiver { status: Arc::new(AtomicU16::new(503)), attempts: Arc::default() };
        let state = me.clone();
        let app = axum::Router::new().route(
            "/events",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move {
                    let header =
                        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                    // The status and the record under one lock, so an attempt
                    // is recorded with the answer it got.
                    let mut attempts = state.attempts.lock().unwrap();
                    let answered = state.status.load(Ordering::SeqCst);
                    attempts.push(Attempt {
                        answered,
                        content_type: header("content-type").unwrap_or_default(),
                        authorization: header("authorization"),
                        set: String::from_utf8_lossy(&body).into_owned(),
                    });
                    AxumStatus::from_u16(answered).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (me, url)
    }

    fn answer(&self, status: u16) {
        let _guard = self.attempts.lock().unwrap();
        self.status.store(status, Ordering::SeqCst);
    }

    fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock().unwrap().clone()
    }

    fn accepted(&self) -> usize {
        self.attempts().iter().filter(|a| a.answered == 202).count()
    }
}

async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_pending_at_a_kill_9_arrive_after_the_restart() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (receiver, endpoint) = Receiver::start().await;

    let server = start(&data);
    // The data directory's signing keys (the keys the server publishes,
    // private halves included, read here only to check signatures).
    let keys = std::fs::read_to_string(data.join("signing-keys.json")).unwrap();
    let keys = lockstep_jose::Keyring::from_json(&keys).unwrap();
    let jti = |set: &str| -> String {
        let (header, claims) = keys.verify(set).unwrap_or_else(|e| panic!("{e}: {set}"));
        assert_eq!(header.typ, "secevent+jwt");
        claims["jti"].as_str().unwrap().to_owned()
    };
    let (status, stream) = server
        .send(
            reqwest::Method::POST,
            "/ssf/streams",
            json!({
                "delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": endpoint, "authorization_header": RECEIVER_AUTH},
                "events_requested": [SESSION_REVOKED, ACCOUNT_DISABLED],
                "aud": AUD,
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{stream}");

    // Users with a session each, deactivated while the receiver answers 503;
    // every deactivation acknowledged before the kill.
    let mut users = BTreeMap::new(); // SCIM id -> session id
    for n in 0..USERS {
        let name = format!("ssf-kill-{n}@example.com");
        let (status, user) = server
            .send(
                reqwest::Method::POST,
                "/scim/v2/Users",
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{user}");
        let id = user["id"].as_str().unwrap().to_owned();
        let (status, session) =
            server.send(reqwest::Method::POST, "/v1/sessions", json!({"subject": name, "ttl": "1h"})).await;
        assert_eq!(status, StatusCode::CREATED, "{session}");
        let (status, body) = server
            .send(
                reqwest::Method::PATCH,
                &format!("/scim/v2/Users/{id}"),
                json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": false}]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        users.insert(id, session["session_id"].as_str().unwrap().to_owned());
    }
    // The transmitter has tried (and been refused) before the kill, a
    // retry of the same jti included.
    eventually("a retry refused with 503 before the kill", Duration::from_secs(60), || {
        let refused: Vec<String> = receiver.attempts().iter().map(|a| jti(&a.set)).collect();
        refused.len() > refused.iter().collect::<BTreeSet<_>>().len()
    })
    .await;
    server.kill9();
    // Whatever the dead server had on the wire is answered 503 too.
    tokio::time::sleep(Duration::from_millis(100)).await;
    receiver.answer(202);
    let refused = receiver.attempts();
    assert!(refused.iter().all(|a| a.answered == 503), "nothing accepted before the kill");

    let server = start(&data);
    let expected = 2 * USERS;
    // Long enough for the stored backoff (up to 16 s after a few refusals).
    eventually(&format!("{expected} SETs accepted after the restart"), Duration::from_secs(60), || {
        receiver.accepted() >= expected
    })
    .await;
    // Anything sent twice would arrive now (the transmitter retries within a
    // second when it is woken; a duplicate would come with the next round).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Every SET verifies against the data directory's signing keys.
    let attempts = receiver.attempts();
    let decode = |a: &Attempt| {
        let (header, claims) = keys.verify(&a.set).unwrap_or_else(|e| panic!("{e}: {}", a.set));
        assert_eq!(header.typ, "secevent+jwt");
        claims
    };
    let refused_jtis: BTreeSet<String> = refused.iter().map(|a| jti(&a.set)).collect();
    let accepted: Vec<Value> = attempts[refused.len()..]
        .iter()
        .inspect(|a| {
            assert_eq!(a.answered, 202);
            assert_eq!(a.content_type, "application/secevent+jwt");
            assert_eq!(a.authorization.as_deref(), Some(RECEIVER_AUTH));
        })
        .map(decode)
        .collect();
    let mut jtis = BTreeMap::<String, usize>::new();
    for c in &accepted {
        *jtis.entry(c["jti"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    let twice: Vec<_> = jtis.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "jti accepted more than once after the restart: {twice:?}");
    assert_eq!(accepted.len(), expected, "{accepted:#?}");
    assert!(
        refused_jtis.iter().all(|j| jtis.contains_key(j)),
        "every jti refused before the kill is delivered after it, unchanged: refused {refused_jtis:?}, \
         accepted {:?}",
        jtis.keys()
    );

    // Per user: session-revoked (user and session) and account-disabled
    // (the user), one txn; the claims RFC 8417 and SSF 1.0 ask for.
    let mut per_user = BTreeMap::<String, Vec<&Value>>::new();
    for c in &accepted {
        assert_eq!(c["aud"], AUD, "{c}");
        assert_eq!(c["iss"], server.base.as_str(), "{c}");
        assert!(c.get("sub").is_none() && c.get("exp").is_none(), "{c}");
        assert_eq!(c["events"].as_object().unwrap().len(), 1, "{c}");
        let user = match c["sub_id"]["format"].as_str().unwrap() {
            "complex" => c["sub_id"]["user"]["id"].as_str(),
            _ => c["sub_id"]["id"].as_str(),
        };
        per_user.entry(user.unwrap().to_owned()).or_default().push(c);
    }
    assert_eq!(per_user.keys().collect::<Vec<_>>(), users.keys().collect::<Vec<_>>());
    for (user, sets) in &per_user {
        let revoked = sets.iter().find(|c| c["events"].get(SESSION_REVOKED).is_some());
        let disabled = sets.iter().find(|c| c["events"].get(ACCOUNT_DISABLED).is_some());
        let (Some(revoked), Some(disabled)) = (revoked, disabled) else {
            panic!("{user}: expected session-revoked and account-disabled, got {sets:#?}");
        };
        assert_eq!(sets.len(), 2, "{user}: {sets:#?}");
        assert_eq!(
            revoked["sub_id"],
            json!({"format": "complex", "user": {"format": "opaque", "id": user}, "session": {"format": "opaque", "id": users[user]}})
        );
        assert_eq!(disabled["sub_id"], json!({"format": "opaque", "id": user}));
        assert_eq!(revoked["txn"], disabled["txn"], "{user}: one txn for one directory event");
        assert!(revoked["txn"].as_str().is_some_and(|t| !t.is_empty()));
    }
    eprintln!(
        "ssf kill -9: {} SETs queued, {} refused attempts ({} distinct jti) before the kill, {} accepted after \
         the restart, each once; {:.1?}",
        expected,
        refused.len(),
        refused_jtis.len(),
        accepted.len(),
        started.elapsed()
    );
    drop(server);
}
