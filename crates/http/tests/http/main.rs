//! End to end over a real loopback socket: SCIM, sessions, introspection,
//! revocation, audit, metrics, and every error path named in the contract.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use std::sync::atomic::{AtomicI64, Ordering};

use lockstep_domain::Timestamp;
use lockstep_engine::{Clock, Engine, EngineConfig, OsEntropy, Stores, SystemClock};
use lockstep_http::{AppState, HttpConfig};
use lockstep_store_sqlite::{Durability, SqliteDirectory, SqliteSessions};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

const ADMIN: &str = "test-admin-token-0123456789";

struct Server {
    base: String,
    http: Client,
    engine: Arc<Engine>,
    clock: Arc<TestClock>,
    keys: Arc<lockstep_jose::SharedKeys>,
    _dir: tempfile::TempDir,
}

/// The system clock, plus an offset a test can move forward.
#[derive(Debug, Default)]
struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp(SystemClock.now().0 + self.0.load(Ordering::SeqCst))
    }
}

impl TestClock {
    fn advance(&self, by: std::time::Duration) {
        self.0.fetch_add(i64::try_from(by.as_micros()).unwrap(), Ordering::SeqCst);
    }
}

impl Server {
    async fn start() -> Self {
        Self::start_with(HttpConfig::default()).await
    }

    async fn start_with(config: HttpConfig) -> Self {
        Self::start_full(config, EngineConfig::default()).await
    }

    async fn start_with_policy(policy: lockstep_policy::Policy) -> Self {
        Self::start_full(HttpConfig::default(), EngineConfig { policy, ..EngineConfig::default() }).await
    }

    async fn start_full(config: HttpConfig, engine_config: EngineConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sessions = Arc::new(SqliteSessions::open(&dir.path().join("s.db"), Durability::Normal).unwrap());
        let stores = Stores {
            directory: Arc::new(SqliteDirectory::open(&dir.path().join("d.db"), Durability::Normal).unwrap()),
            sessions: sessions.clone(),
            credentials: sessions,
        };
        let clock = Arc::new(TestClock::default());
        let keys =
            Arc::new(lockstep_jose::SharedKeys::in_memory(lockstep_jose::Keyring::generate(0).unwrap()));
        let engine = Engine::open(stores, engine_config, clock.clone(), Arc::new(OsEntropy)).unwrap();
        let engine = Arc::new(engine.with_signer(Arc::new(lockstep_http::KeySigner(keys.clone()))));
        engine.ensure_admin_token(Some(ADMIN)).unwrap();
        let state = AppState { engine: engine.clone(), config: Arc::new(config), keys: Some(keys.clone()) };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(lockstep_http::run(listener, state, std::future::pending()));
        Self { base, http: Client::new(), engine, clock, keys, _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post(&self, path: &str, body: Value) -> Response {
        self.http.post(self.url(path)).bearer_auth(ADMIN).json(&body).send().await.unwrap()
    }

    async fn patch(&self, path: &str, body: Value) -> Response {
        self.http.patch(self.url(path)).bearer_auth(ADMIN).json(&body).send().await.unwrap()
    }

    async fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).bearer_auth(ADMIN).send().await.unwrap()
    }

    async fn create_user(&self, user_name: &str) -> String {
        let r = self
            .post("/scim/v2/Users", json!({"schemas": [USER], "userName": user_name, "active": true}))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
    }

    async fn open_session(&self, subject: &str) -> Value {
        let r = self.post("/v1/sessions", json!({"subject": subject, "ttl": "15m"})).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        r.json().await.unwrap()
    }

    async fn introspect(&self, token: &str) -> Value {
        let r = self
            .http
            .post(self.url("/oauth2/introspect"))
            .bearer_auth(ADMIN)
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    async fn audit(&self) -> Vec<Value> {
        let page: Value = self.get("/v1/audit?limit=1000").await.json().await.unwrap();
        page["records"].as_array().unwrap().clone()
    }

    async fn user_count(&self) -> u64 {
        let list: Value = self.get("/scim/v2/Users").await.json().await.unwrap();
        list["totalResults"].as_u64().unwrap()
    }
}

mod agents;
mod authority;
mod authz;
mod clients;
mod hardening;
mod ssf;
mod tiers;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn deactivate(variant: u8) -> Value {
    match variant {
        0 => json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": false}]}),
        1 => json!({"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": false}}]}),
        _ => {
            json!({"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]})
        }
    }
}

#[tokio::test]
async fn deactivation_cuts_the_session_before_the_patch_returns_for_every_client_shape() {
    let s = Server::start().await;
    for variant in 0..3u8 {
        let name = format!("user{variant}@example.com");
        let id = s.create_user(&name).await;
        let session = s.open_session(&name).await;
        let token = session["access_token"].as_str().unwrap();
        let active = s.introspect(token).await;
        assert_eq!(active["active"], true);
        assert_eq!(active["sub"], id.as_str());
        assert_eq!(active["username"], name.as_str());
        assert_eq!(active["token_type"], "Bearer");
        assert_eq!(active["client_id"], "admin");
        assert!(active["exp"].as_i64().unwrap() > active["iat"].as_i64().unwrap());

        let r = s.patch(&format!("/scim/v2/Users/{id}"), deactivate(variant)).await;
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["active"], false);
        assert_eq!(s.introspect(token).await, json!({"active": false}));

        let audit = s.audit().await;
        let dir = audit
            .iter()
            .find(|r| r["kind"] == "directory.identity_deactivated" && r["identity"] == id.as_str())
            .unwrap();
        let cut = audit
            .iter()
            .find(|r| r["kind"] == "session.revoked" && r["session"] == session["session_id"])
            .unwrap();
        assert_eq!(cut["directory_event"], dir["directory_event"]);
        assert_eq!(dir["family"], "directory");
        assert_eq!(cut["family"], "session");
        assert!(cut["seq"].as_u64() > dir["seq"].as_u64());
    }
}

#[tokio::test]
async fn reactivation_does_not_resurrect_sessions() {
    let s = Server::start().await;
    let id = s.create_user("re@example.com").await;
    let old = s.open_session(&id).await;
    s.patch(&format!("/scim/v2/Users/{id}"), deactivate(0)).await;
    let r = s
        .patch(
            &format!("/scim/v2/Users/{id}"),
            json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": true}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(s.introspect(old["access_token"].as_str().unwrap()).await["active"], false);
    let fresh = s.open_session("re@example.com").await;
    assert_eq!(s.introspect(fresh["access_token"].as_str().unwrap()).await["active"], true);
    let list: Value = s.get("/v1/sessions?subject=re@example.com").await.json().await.unwrap();
    let states: Vec<&str> =
        list["sessions"].as_array().unwrap().iter().map(|x| x["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["revoked", "active"]);
    assert!(!list.to_string().contains(old["access_token"].as_str().unwrap()), "no secrets in listings");
    assert_eq!(list["sessions"][0]["revocation_reason"], "identity_deactivated");
}

#[tokio::test]
async fn sessions_are_refused_for_unknown_disabled_and_deleted_subjects() {
    let s = Server::start().await;
    let r = s.post("/v1/sessions", json!({"subject": "ghost"})).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unknown_subject");

    let id = s.create_user("off@example.com").await;
    s.patch(&format!("/scim/v2/Users/{id}"), deactivate(1)).await;
    let r = s.post("/v1/sessions", json!({"subject": "off@example.com"})).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "subject_not_entitled");
    assert!(body["error_description"].as_str().unwrap().contains("disabled"));

    let id = s.create_user("gone@example.com").await;
    let session = s.open_session("gone@example.com").await;
    let r = s.http.delete(s.url(&format!("/scim/v2/Users/{id}"))).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(s.introspect(session["access_token"].as_str().unwrap()).await["active"], false);
    assert_eq!(s.get(&format!("/scim/v2/Users/{id}")).await.status(), StatusCode::NOT_FOUND);
    let r = s.post("/v1/sessions", json!({"subject": "gone@example.com"})).await;
    assert_eq!(r.status(), StatusCode::GONE);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "subject_deleted");

    for (body, field) in [
        (json!({"subject": "off@example.com", "ttl": "soon"}), "ttl"),
        (json!({"subject": "off@example.com", "ttl": "0s"}), "ttl"),
        (json!({"subject": ""}), "subject"),
        (json!({"subject": "x", "extra": 1}), "extra"),
    ] {
        let r = s.post("/v1/sessions", body).await;
        assert!(r.status() == StatusCode::BAD_REQUEST || r.status() == StatusCode::CONFLICT);
        let text = r.text().await.unwrap();
        assert!(text.contains(field), "{text}");
    }
}

#[tokio::test]
async fn every_endpoint_needs_a_credential_and_errors_use_the_endpoint_protocol() {
    let s = Server::start().await;
    let cases = [
        ("GET", "/scim/v2/Users"),
        ("POST", "/scim/v2/Users"),
        ("POST", "/v1/sessions"),
        ("GET", "/v1/audit"),
        ("POST", "/v1/clients"),
        ("POST", "/oauth2/introspect"),
        ("POST", "/oauth2/revoke"),
        ("GET", "/metrics"),
    ];
    for (method, path) in cases {
        for auth in [None, Some("Bearer wrong"), Some("Basic Zm9vOmJhcg=="), Some("Digest x")] {
            let mut req = s.http.request(method.parse().unwrap(), s.url(path));
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path} {auth:?}");
            assert!(r.headers().contains_key("www-authenticate"));
            let body: Value = r.json().await.unwrap();
            if path.starts_with("/scim") {
                assert_eq!(body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error");
                assert_eq!(body["status"], "401");
            } else if path.starts_with("/oauth2") {
                assert_eq!(body["error"], "invalid_client");
            } else {
                assert_eq!(body["error"], "unauthorized");
            }
        }
    }
    assert_eq!(s.http.get(s.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn scoped_clients_reach_only_their_scopes() {
    let s = Server::start().await;
    let r = s.post("/v1/clients", json!({"name": "gateway", "scopes": ["introspect"]})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let gw: Value = r.json().await.unwrap();
    let (id, secret) = (gw["client_id"].as_str().unwrap(), gw["client_secret"].as_str().unwrap());
    let r = s.post("/v1/clients", json!({"name": "okta", "scopes": ["scim", "sessions"]})).await;
    let okta: Value = r.json().await.unwrap();
    let okta_secret = okta["client_secret"].as_str().unwrap();

    // Okta provisions and opens a session with its bearer secret.
    let r = s
        .http
        .post(s.url("/scim/v2/Users"))
        .bearer_auth(okta_secret)
        .json(&json!({"schemas": [USER], "userName": "scoped"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .http
        .post(s.url("/v1/sessions"))
        .bearer_auth(okta_secret)
        .json(&json!({"subject": "scoped"}))
        .send();
    let session: Value = r.await.unwrap().json().await.unwrap();
    let token = session["access_token"].as_str().unwrap();

    // The gateway introspects with HTTP Basic and sees who issued the token.
    let r = s
        .http
        .post(s.url("/oauth2/introspect"))
        .basic_auth(id, Some(secret))
        .form(&[("token", token)])
        .send();
    let body: Value = r.await.unwrap().json().await.unwrap();
    assert_eq!(body["active"], true);
    assert_eq!(body["client_id"], okta["client_id"]);

    // …but may not provision, read the audit trail or create clients.
    for (method, path) in [("GET", "/scim/v2/Users"), ("GET", "/v1/audit"), ("POST", "/v1/clients")] {
        let r = s.http.request(method.parse().unwrap(), s.url(path)).basic_auth(id, Some(secret)).send();
        assert_eq!(r.await.unwrap().status(), StatusCode::FORBIDDEN, "{path}");
    }
    // Okta may not introspect, nor create clients (admin only).
    let r =
        s.http.post(s.url("/oauth2/introspect")).bearer_auth(okta_secret).form(&[("token", token)]).send();
    let r = r.await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "insufficient_scope");
    let r = s.post("/v1/clients", json!({"name": "x", "scopes": ["root"]})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("scopes"));
    // The audit names the provisioning client as the source of the change.
    let audit = s.audit().await;
    let created = audit.iter().find(|r| r["kind"] == "directory.identity_created").unwrap();
    assert_eq!(created["actor"], format!("scim/client:{}", okta["client_id"].as_str().unwrap()));
    let listed: Value = s.get("/v1/clients").await.json().await.unwrap();
    assert!(!listed.to_string().contains(secret));
}

#[tokio::test]
async fn malformed_scim_gets_scim_errors_and_writes_nothing() {
    let s = Server::start_with(HttpConfig { body_limit: 4096, ..HttpConfig::default() }).await;
    let id = s.create_user("keep@example.com").await;
    let users = s.user_count().await;
    let audit = s.audit().await.len();
    let scim_error = |status: u16, scim_type: Option<&'static str>| {
        move |body: Value| {
            assert_eq!(body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error", "{body}");
            assert_eq!(body["status"], status.to_string(), "{body}");
            if let Some(t) = scim_type {
                assert_eq!(body["scimType"], t, "{body}");
            }
        }
    };
    let raw = |method: &str, path: &str, body: &str| {
        s.http
            .request(method.parse().unwrap(), s.url(path))
            .bearer_auth(ADMIN)
            .header("Content-Type", "application/scim+json")
            .body(body.to_owned())
            .send()
    };
    let user_path = format!("/scim/v2/Users/{id}");
    let cases: Vec<(&str, &str, String, u16, Option<&str>)> = vec![
        ("POST", "/scim/v2/Users", "{not json".into(), 400, Some("invalidSyntax")),
        ("POST", "/scim/v2/Users", json!({"userName": "x", "shoeSize": 9}).to_string(), 400, Some("invalidSyntax")),
        ("POST", "/scim/v2/Users", json!({"displayName": "no name"}).to_string(), 400, Some("invalidValue")),
        ("POST", "/scim/v2/Users", json!({"userName": "KEEP@example.com"}).to_string(), 409, Some("uniqueness")),
        ("POST", "/scim/v2/Users", format!("{{\"userName\": \"{}\"}}", "x".repeat(5000)), 413, None),
        ("PUT", &user_path, json!({"userName": "keep@example.com", "active": "perhaps"}).to_string(), 400, Some("invalidValue")),
        ("PATCH", &user_path, json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": "ok"}, {"op": "replace", "path": "id", "value": "x"}]}).to_string(), 400, Some("mutability")),
        ("PATCH", &user_path, json!({"schemas": [PATCH], "Operations": [{"op": "remove"}]}).to_string(), 400, Some("noTarget")),
        ("PATCH", &user_path, json!({"Operations": "nope"}).to_string(), 400, Some("invalidSyntax")),
        ("PATCH", &user_path, json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "nickName]", "value": "x"}]}).to_string(), 400, Some("invalidPath")),
        ("GET", "/scim/v2/Users?filter=userName%20eq", String::new(), 400, Some("invalidFilter")),
        ("GET", "/scim/v2/Users/not-a-uuid", String::new(), 404, None),
        ("DELETE", "/scim/v2/Users/01a21faf-853b-7d77-8f3c-2f05024fa262", String::new(), 404, None),
    ];
    for (method, path, body, status, scim_type) in cases {
        let r = raw(method, path, &body).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {path} {body:.80}");
        assert_eq!(r.headers()["content-type"], "application/scim+json");
        scim_error(status, scim_type)(r.json().await.unwrap());
    }
    assert_eq!(s.user_count().await, users, "no partial write");
    assert_eq!(s.audit().await.len(), audit, "no directory event for refused writes");
    let user: Value = s.get(&user_path).await.json().await.unwrap();
    assert!(user.get("displayName").is_none(), "the PATCH that failed half-way changed nothing");
    assert_eq!(user["meta"]["version"], "W/\"1\"");
}

#[tokio::test]
async fn scim_crud_filter_etag_and_location() {
    let s = Server::start().await;
    let r = s
        .post(
            "/scim/v2/Users",
            json!({"schemas": [USER], "userName": "Bjensen", "externalId": "hr-7", "password": "t0p-secret",
                   "name": {"givenName": "Barbara"}, "emails": [{"value": "b@example.com", "type": "work"}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["meta"]["location"], location.as_str());
    assert_eq!(created["meta"]["version"], etag.as_str());
    assert!(!created.to_string().contains("t0p-secret"), "password never returned");
    let id = created["id"].as_str().unwrap();

    let list: Value =
        s.get("/scim/v2/Users?filter=userName%20eq%20%22bjensen%22").await.json().await.unwrap();
    assert_eq!(list["totalResults"], 1);
    assert_eq!(list["Resources"][0]["id"], id);
    let list: Value = s.get("/scim/v2/Users?filter=externalId%20eq%20%22hr-7%22").await.json().await.unwrap();
    assert_eq!(list["totalResults"], 1);
    let list: Value = s.get("/scim/v2/Users?count=0").await.json().await.unwrap();
    assert_eq!((list["totalResults"].as_u64(), list["itemsPerPage"].as_u64()), (Some(1), Some(0)));

    // Okta-style PUT of the whole profile.
    let r = s
        .http
        .put(s.url(&format!("/scim/v2/Users/{id}")))
        .bearer_auth(ADMIN)
        .header("If-Match", &etag)
        .json(&json!({"schemas": [USER], "userName": "bjensen", "externalId": "hr-7", "displayName": "Babs", "active": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let put: Value = r.json().await.unwrap();
    assert_eq!(put["displayName"], "Babs");
    assert!(put.get("emails").is_none(), "PUT replaces");
    // The old ETag is now stale.
    let r = s
        .http
        .patch(s.url(&format!("/scim/v2/Users/{id}")))
        .bearer_auth(ADMIN)
        .header("If-Match", &etag)
        .json(&deactivate(0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let got: Value = s.get(&format!("/scim/v2/Users/{id}")).await.json().await.unwrap();
    assert_eq!(got["active"], true);
    let audit = s.audit().await;
    let updated = audit.iter().find(|r| r["kind"] == "directory.identity_updated").unwrap();
    assert!(updated["detail"].as_str().unwrap().contains("userName"), "{updated}");
}

#[tokio::test]
async fn explicit_revocation_by_id_and_by_token() {
    let s = Server::start().await;
    s.create_user("rev@example.com").await;
    let a = s.open_session("rev@example.com").await;
    let b = s.open_session("rev@example.com").await;
    let r = s
        .http
        .delete(s.url(&format!("/v1/sessions/{}", a["session_id"].as_str().unwrap())))
        .bearer_auth(ADMIN);
    assert_eq!(r.send().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(s.introspect(a["access_token"].as_str().unwrap()).await["active"], false);
    for token in [b["access_token"].as_str().unwrap(), "garbage", "lst_at_unknown"] {
        let r = s.http.post(s.url("/oauth2/revoke")).bearer_auth(ADMIN).form(&[("token", token)]).send();
        assert_eq!(r.await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(s.introspect(b["access_token"].as_str().unwrap()).await["active"], false);
    assert_eq!(s.introspect("garbage").await, json!({"active": false}));
    let r = s.http.post(s.url("/oauth2/introspect")).bearer_auth(ADMIN).form(&[("nottoken", "x")]).send();
    let r = r.await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let r = s.http.delete(s.url("/v1/sessions/01a21faf-853b-7d77-8f3c-2f05024fa262")).bearer_auth(ADMIN);
    assert_eq!(r.send().await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn audit_pages_and_metrics_report_propagation() {
    let s = Server::start().await;
    for n in 0..3 {
        let id = s.create_user(&format!("m{n}")).await;
        s.open_session(&format!("m{n}")).await;
        s.patch(&format!("/scim/v2/Users/{id}"), deactivate(0)).await;
    }
    let page: Value = s.get("/v1/audit?limit=4").await.json().await.unwrap();
    assert_eq!(page["records"].as_array().unwrap().len(), 4);
    assert_eq!(page["records"][0]["seq"], 1);
    let next = page["next_after"].as_u64().unwrap();
    let page2: Value = s.get(&format!("/v1/audit?after={next}&limit=100")).await.json().await.unwrap();
    assert_eq!(page2["records"][0]["seq"], next + 1);
    assert_eq!(page2["records"][0]["prev_hash"], page["records"][3]["hash"]);
    assert!(page2.get("next_after").is_none());
    assert_eq!(s.get("/v1/audit?limit=0").await.status(), StatusCode::BAD_REQUEST);

    let metrics = s.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("lockstep_revocation_propagation_seconds_count 3"), "{metrics}");
    assert!(
        metrics.contains("lockstep_session_revocations_total{reason=\"identity_deactivated\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lockstep_directory_events_total{kind=\"identity_deactivated\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("lockstep_sessions_opened_total 3"));
    assert_eq!(s.get("/nope").await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn discovery_describes_what_is_served_and_is_read_only() {
    let s = Server::start().await;
    let spc: Value = s.get("/scim/v2/ServiceProviderConfig").await.json().await.unwrap();
    assert_eq!(spc["patch"]["supported"], true);
    assert_eq!(spc["bulk"]["supported"], false);
    assert_eq!(spc["etag"]["supported"], true);
    let types: Value = s.get("/scim/v2/ResourceTypes").await.json().await.unwrap();
    let names: Vec<&str> =
        types["Resources"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(names, ["User", "Group", "Agent", "AgenticApplication"], "advertise only what is served");
    assert_eq!(spc["agentExtension"]["supported"], true);
    let user_type: Value = s.get("/scim/v2/ResourceTypes/User").await.json().await.unwrap();
    assert_eq!(user_type["endpoint"], "/Users");
    let schemas: Value = s.get("/scim/v2/Schemas").await.json().await.unwrap();
    assert_eq!(schemas["totalResults"], 6);
    let user: Value = s.get(&format!("/scim/v2/Schemas/{USER}")).await.json().await.unwrap();
    let password = user["attributes"].as_array().unwrap().iter().find(|a| a["name"] == "password").unwrap();
    assert_eq!(
        (password["mutability"].as_str(), password["returned"].as_str()),
        (Some("writeOnly"), Some("never"))
    );
    assert_eq!(s.get("/scim/v2/Schemas/urn:nope").await.status(), StatusCode::NOT_FOUND);
    for path in ["/scim/v2/ServiceProviderConfig", "/scim/v2/ResourceTypes", "/scim/v2/Schemas"] {
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let r =
                s.http.request(method.parse().unwrap(), s.url(path)).bearer_auth(ADMIN).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["status"], "405");
        }
    }
}

#[tokio::test]
async fn search_and_attribute_projection() {
    let s = Server::start().await;
    let r = s
        .post(
            "/scim/v2/Users",
            json!({"schemas": [USER], "userName": "proj", "displayName": "P", "name": {"givenName": "G", "familyName": "F"},
                   "emails": [{"value": "p@example.com", "type": "work"}]}),
        )
        .await;
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let only: Value = s
        .get(&format!("/scim/v2/Users/{id}?attributes=name.givenName,emails.value"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(only["id"], id.as_str());
    assert_eq!(only["name"], json!({"givenName": "G"}));
    assert_eq!(only["emails"], json!([{"value": "p@example.com"}]));
    assert!(only.get("displayName").is_none() && only.get("userName").is_none());
    let without: Value = s
        .get(&format!("/scim/v2/Users/{id}?excludedAttributes=emails,name.familyName"))
        .await
        .json()
        .await
        .unwrap();
    assert!(without.get("emails").is_none());
    assert_eq!(without["name"], json!({"givenName": "G"}));
    assert_eq!(without["displayName"], "P");

    let search = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                        "filter": "userName eq \"PROJ\"", "attributes": ["userName"]});
    let r = s.post("/scim/v2/Users/.search", search).await;
    assert_eq!(r.status(), StatusCode::OK);
    let found: Value = r.json().await.unwrap();
    assert_eq!(found["totalResults"], 1);
    assert_eq!(found["Resources"][0], json!({"id": id, "schemas": [USER], "userName": "proj"}));
    let r = s.post("/scim/v2/Users/.search", json!({"schemas": [], "filter": "userName eq \"x\""})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = s
        .post("/scim/v2/.search", json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]}))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "the root search spans every resource type (clients.rs)");
    assert_eq!(s.get("/scim/v2/Users?sortBy=userName").await.status(), StatusCode::BAD_REQUEST);
}

/// The filter grammar end to end on SQLite: every indexed attribute and
/// operator, logic and grouping, value-filtered e-mails, residual checks
/// on unindexed attributes, paging of filtered results, and re-indexing
/// after PATCH and PUT.
#[tokio::test]
async fn filters_select_through_the_indexes_and_follow_writes() {
    let s = Server::start().await;
    let mut ids = std::collections::HashMap::new();
    for (name, display, email, title, active) in [
        ("bjensen", "Barbara Jensen", "bjensen@example.com", "Tour Guide", true),
        ("jsmith", "John Smith", "JOHN@Example.org", "Engineer", true),
        ("adoe", "Ann Doe", "ann@example.com", "Engineer", false),
        ("svc-backup", "Backup Job", "ops@example.org", "Robot", true),
    ] {
        let r = s
            .post(
                "/scim/v2/Users",
                json!({"schemas": [USER], "userName": name, "displayName": display, "title": title,
                       "active": active, "externalId": format!("hr-{name}"),
                       "emails": [{"value": email, "type": "work"}, {"value": format!("{name}@home.test"), "type": "home"}]}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        ids.insert(name, r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    let names = |list: &Value| -> Vec<String> {
        list["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["userName"].as_str().unwrap().to_owned())
            .collect()
    };
    for (filter, expected) in [
        ("userName sw \"j\"", vec!["jsmith"]),
        ("userName ew \"SEN\"", vec!["bjensen"]),
        ("displayName co \"doe\"", vec!["adoe"]),
        ("emails.value eq \"john@example.ORG\"", vec!["jsmith"]),
        ("emails.value ew \"@example.org\"", vec!["jsmith", "svc-backup"]),
        ("emails[type eq \"work\" and value co \"example.com\"]", vec!["bjensen", "adoe"]),
        ("emails[type eq \"home\" and value co \"example.com\"]", vec![]),
        ("active eq false", vec!["adoe"]),
        ("active eq true and not (userName sw \"svc\")", vec!["bjensen", "jsmith"]),
        ("externalId eq \"hr-adoe\" or displayName eq \"backup job\"", vec!["adoe", "svc-backup"]),
        ("userName gt \"c\" and userName lt \"s\"", vec!["jsmith"]),
        ("title eq \"Engineer\" and active eq true", vec!["jsmith"]),
        ("title pr and (userName eq \"adoe\" or userName eq \"bjensen\")", vec!["bjensen", "adoe"]),
        ("userName ne \"bjensen\"", vec!["jsmith", "adoe", "svc-backup"]),
        ("externalId co \"HR\"", vec![]),
    ] {
        assert_eq!(names(&filtered(&s, filter).await), expected, "{filter}");
    }
    let page = filtered(&s, "emails.value co \"example\"").await;
    assert_eq!((page["totalResults"].as_u64(), names(&page).len()), (Some(4), 4));
    let url = format!("/scim/v2/Users?count=1&startIndex=2&filter={}", urlencode("title eq \"Engineer\""));
    let page: Value = s.get(&url).await.json().await.unwrap();
    assert_eq!((page["totalResults"].as_u64(), page["startIndex"].as_u64()), (Some(2), Some(2)));
    assert_eq!(names(&page), vec!["adoe"]);

    // A PATCH of the e-mails and a PUT of the name move the index entries.
    let id = &ids["jsmith"];
    let r = s
        .patch(
            &format!("/scim/v2/Users/{id}"),
            json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "john@newco.test"}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(names(&filtered(&s, "emails.value eq \"john@example.org\"").await), Vec::<String>::new());
    assert_eq!(names(&filtered(&s, "emails.value co \"newco\"").await), vec!["jsmith"]);
    let r = s
        .http
        .put(s.url(&format!("/scim/v2/Users/{id}")))
        .bearer_auth(ADMIN)
        .json(&json!({"schemas": [USER], "userName": "john.smith", "displayName": "Johnny"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(names(&filtered(&s, "userName sw \"jsm\"").await), Vec::<String>::new());
    assert_eq!(names(&filtered(&s, "displayName co \"johnn\" and emails pr").await), Vec::<String>::new());
    assert_eq!(names(&filtered(&s, "displayName co \"johnn\"").await), vec!["john.smith"]);

    let r = s.get(&format!("/scim/v2/Users?filter={}", urlencode("userName xx \"a\""))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["scimType"], "invalidFilter");
    let groups: Value = s
        .get(&format!("/scim/v2/Groups?filter={}", urlencode("displayName co \"x\"")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(groups["totalResults"], 0);
}

async fn filtered(s: &Server, filter: &str) -> Value {
    let r = s.get(&format!("/scim/v2/Users?filter={}", urlencode(filter))).await;
    assert_eq!(r.status(), StatusCode::OK, "{filter}");
    r.json().await.unwrap()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

#[tokio::test]
async fn groups_membership_changes_are_events_of_each_member() {
    let s = Server::start().await;
    let a = s.create_user("ga").await;
    let b = s.create_user("gb").await;
    let c = s.create_user("gc").await;
    let token = s.open_session("ga").await["access_token"].as_str().unwrap().to_owned();
    let member = |id: &str| json!({"value": id, "type": "User"});

    let r = s
        .post(
            "/scim/v2/Groups",
            json!({"schemas": [GROUP], "displayName": "Engineering", "externalId": "g-1",
                                         "members": [member(&a), member(&b)]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let group: Value = r.json().await.unwrap();
    let gid = group["id"].as_str().unwrap().to_owned();
    assert_eq!(group["meta"]["location"], location.as_str());
    assert_eq!(group["members"].as_array().unwrap().len(), 2);
    let user_a: Value = s.get(&format!("/scim/v2/Users/{a}")).await.json().await.unwrap();
    assert_eq!(user_a["groups"][0]["value"], gid.as_str());
    assert_eq!(user_a["groups"][0]["display"], "Engineering");

    let list: Value =
        s.get("/scim/v2/Groups?filter=displayName%20eq%20%22engineering%22").await.json().await.unwrap();
    assert_eq!(list["totalResults"], 1);

    // Okta/Entra style member changes.
    let patch = |ops: Value| json!({"schemas": [PATCH], "Operations": ops});
    let r = s
        .patch(
            &format!("/scim/v2/Groups/{gid}"),
            patch(json!([{"op": "remove", "path": format!("members[value eq \"{b}\"]")}])),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .patch(
            &format!("/scim/v2/Groups/{gid}"),
            patch(json!([{"op": "add", "path": "members", "value": [member(&c)]}])),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .patch(
            &format!("/scim/v2/Groups/{gid}"),
            patch(json!([{"op": "Remove", "path": "members", "value": [{"value": c}]}])),
        )
        .await;
    let after: Value = r.json().await.unwrap();
    let members: Vec<&str> =
        after["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap()).collect();
    assert_eq!(members, [a.as_str()]);

    let audit = s.audit().await;
    let kinds =
        |kind: &str, who: &str| audit.iter().filter(|r| r["kind"] == kind && r["identity"] == who).count();
    assert_eq!(kinds("directory.added_to_group", &a), 1);
    assert_eq!(kinds("directory.added_to_group", &b), 1);
    assert_eq!(kinds("directory.removed_from_group", &b), 1);
    assert_eq!(kinds("directory.added_to_group", &c), 1);
    assert_eq!(kinds("directory.removed_from_group", &c), 1);
    assert_eq!(kinds("directory.removed_from_group", &a), 0);
    assert!(audit.iter().any(|r| r["kind"] == "directory.group_created"));

    // Bad members are refused with nothing written.
    for bad in [
        json!({"value": "not-a-uuid"}),
        json!({"value": "01a21faf-853b-7d77-8f3c-2f05024fa262"}),
        json!({"value": a, "type": "Group"}),
    ] {
        let r = s
            .patch(
                &format!("/scim/v2/Groups/{gid}"),
                patch(json!([{"op": "add", "path": "members", "value": [bad]}])),
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.json::<Value>().await.unwrap()["scimType"], "invalidValue");
    }
    assert_eq!(s.audit().await.len(), audit.len(), "refused writes leave no event");

    let r = s.http.delete(s.url(&format!("/scim/v2/Groups/{gid}"))).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(s.get(&format!("/scim/v2/Groups/{gid}")).await.status(), StatusCode::NOT_FOUND);
    let audit = s.audit().await;
    assert_eq!(
        audit
            .iter()
            .filter(|r| r["kind"] == "directory.removed_from_group" && r["identity"] == a.as_str())
            .count(),
        1
    );
    assert!(audit.iter().any(|r| r["kind"] == "directory.group_deleted"));
    // The default policy leaves sessions alone on membership changes.
    assert_eq!(s.introspect(&token).await["active"], true);
    let user_a: Value = s.get(&format!("/scim/v2/Users/{a}")).await.json().await.unwrap();
    assert!(user_a.get("groups").is_none());
}

const NHI: &str = "urn:ietf:params:scim:schemas:extension:lockstep:2.0:User";

#[tokio::test]
async fn non_human_identities_have_owners_and_go_through_the_same_bridge() {
    let s = Server::start().await;
    let owner = s.create_user("owner@example.com").await;
    let nhi = |name: &str, ext: Value| json!({"schemas": [USER, NHI], "userName": name, NHI: ext});
    let r = s
        .post("/scim/v2/Users", nhi("ci-bot", json!({"identityKind": "service_account", "owner": {"value": owner}, "riskTier": "non_human"})))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let bot: Value = r.json().await.unwrap();
    let bot_id = bot["id"].as_str().unwrap().to_owned();
    assert_eq!(bot[NHI]["identityKind"], "service_account");
    assert_eq!(bot[NHI]["owner"]["value"], owner.as_str());
    assert_eq!(bot[NHI]["riskTier"], "non_human");
    assert!(bot["schemas"].as_array().unwrap().iter().any(|u| u == NHI));

    // Refused: no owner, an owner that is not a human, an unknown kind.
    for (ext, needle) in [
        (json!({"identityKind": "workload"}), "owner"),
        (json!({"identityKind": "workload", "owner": {"value": bot_id}}), "not a live human"),
        (json!({"identityKind": "robot", "owner": {"value": owner}}), "identityKind"),
    ] {
        let r = s.post("/scim/v2/Users", nhi("bad-bot", ext)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["scimType"], "invalidValue");
        assert!(body["detail"].as_str().unwrap().contains(needle), "{body}");
    }

    // Filterable from an index.
    let filter = format!("/scim/v2/Users?filter={NHI}:identityKind%20eq%20%22service_account%22");
    let list: Value = s.get(&filter).await.json().await.unwrap();
    assert_eq!(list["totalResults"], 1);
    assert_eq!(list["Resources"][0]["id"], bot_id.as_str());

    // An identity provider's full-profile PUT without the extension keeps kind and owner.
    let r = s
        .http
        .put(s.url(&format!("/scim/v2/Users/{bot_id}")))
        .bearer_auth(ADMIN)
        .json(&json!({"schemas": [USER], "userName": "ci-bot", "displayName": "CI bot"}))
        .send()
        .await
        .unwrap();
    let put: Value = r.json().await.unwrap();
    assert_eq!(put[NHI]["identityKind"], "service_account");
    assert_eq!(put[NHI]["owner"]["value"], owner.as_str());

    // A new owner is its own directory event.
    let other = s.create_user("other@example.com").await;
    let r = s
        .patch(
            &format!("/scim/v2/Users/{bot_id}"),
            json!({"schemas": [PATCH], "Operations": [
            {"op": "replace", "path": format!("{NHI}:owner"), "value": {"value": other}}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let audit = s.audit().await;
    let changed = audit.iter().find(|r| r["kind"] == "directory.owner_changed").unwrap();
    assert!(changed["detail"].as_str().unwrap().contains(&other));

    // Its credentials are cut by the same bridge, even after its owner is gone.
    let token = s.open_session(&bot_id).await["access_token"].as_str().unwrap().to_owned();
    let r = s.http.delete(s.url(&format!("/scim/v2/Users/{other}"))).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        s.introspect(&token).await["active"],
        false,
        "its last owner left: suspended for the grace period"
    );
    let r = s.patch(&format!("/scim/v2/Users/{bot_id}"), deactivate(1)).await;
    assert_eq!(r.status(), StatusCode::OK, "an orphaned identity can still be deactivated");
    assert_eq!(s.introspect(&token).await, json!({"active": false}));

    // Removing the extension explicitly makes it a plain human record again.
    let r = s
        .patch(
            &format!("/scim/v2/Users/{owner}"),
            json!({"schemas": [PATCH], "Operations": [
            {"op": "add", "path": NHI, "value": {"riskTier": "privileged"}}]}),
        )
        .await;
    let human: Value = r.json().await.unwrap();
    assert_eq!(human[NHI], json!({"identityKind": "human", "riskTier": "privileged"}));
    let r = s
        .patch(
            &format!("/scim/v2/Users/{owner}"),
            json!({"schemas": [PATCH], "Operations": [{"op": "remove", "path": NHI}]}),
        )
        .await;
    let plain: Value = r.json().await.unwrap();
    assert!(plain.get(NHI).is_none(), "{plain}");
}
