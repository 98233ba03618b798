//! Regression tests for the defects an attacker's and a careless client's
//! read of the server found: each sends exactly the bad input.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{ADMIN, PATCH, Server, USER};

async fn create(s: &Server, user_name: &str) -> reqwest::Response {
    s.post("/scim/v2/Users", json!({"schemas": [USER], "userName": user_name})).await
}

async fn scim_error(r: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], "application/scim+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error");
    body
}

#[tokio::test]
async fn look_alike_user_names_are_the_same_identity() {
    let s = Server::start().await;
    let carol = s.create_user("Carol").await;
    s.create_user("josé").await;
    s.create_user("fiona").await;
    for look_alike in ["ＣＡＲＯＬ", "𝐂𝐚𝐫𝐨𝐥", "CAROL", "jose\u{301}", "ﬁona", "ＦＩＯＮＡ"]
    {
        let body = scim_error(create(&s, look_alike).await, StatusCode::CONFLICT).await;
        assert_eq!(body["scimType"], "uniqueness", "{look_alike}");
    }
    // Names that render like others because of invisible characters are refused outright.
    for invisible in ["Caro\u{200B}l", "Car\u{AD}ol", "\u{202E}loraC", "Carol\u{FE0F}", "\u{FEFF}Carol"] {
        let body = scim_error(create(&s, invisible).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(body["scimType"], "invalidValue", "{invisible:?}");
        assert!(body["detail"].as_str().unwrap().contains("userName"), "{body}");
    }
    // A rename onto a look-alike of another user is a conflict too.
    let other = s.create_user("dave").await;
    let r = s
        .patch(
            &format!("/scim/v2/Users/{other}"),
            json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "userName", "value": "ｃａｒｏｌ"}]}),
        )
        .await;
    assert_eq!(scim_error(r, StatusCode::CONFLICT).await["scimType"], "uniqueness");
    // A session asked for by a look-alike binds to the one identity there is.
    let session = s.open_session("ＣＡＲＯＬ").await;
    assert_eq!(session["subject"], carol);
    // The value is kept as sent for display; the listing finds it under the key.
    let found: Value =
        s.get("/scim/v2/Users?filter=userName%20eq%20%22%EF%BC%A3arol%22").await.json().await.unwrap();
    assert_eq!(found["totalResults"], 1);
    assert_eq!(found["Resources"][0]["userName"], "Carol");
    assert_eq!(s.user_count().await, 4);
}

#[tokio::test]
async fn look_alike_groups_and_client_names() {
    let s = Server::start().await;
    let r = s
        .post(
            "/scim/v2/Groups",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "prod\u{202E}admins"}),
        )
        .await;
    let body = scim_error(r, StatusCode::BAD_REQUEST).await;
    assert!(body["detail"].as_str().unwrap().contains("displayName"), "{body}");
    let r = s.post("/v1/clients", json!({"name": "okta-prod", "scopes": ["scim"]})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s.post("/v1/clients", json!({"name": "ＯＫＴＡ-prod", "scopes": ["scim"]})).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = s.post("/v1/clients", json!({"name": "okta\u{200B}-prod", "scopes": ["scim"]})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert!(body["error_description"].as_str().unwrap().starts_with("name:"), "{body}");
}

#[tokio::test]
async fn control_characters_are_refused_in_identifiers_and_single_line_strings() {
    let s = Server::start().await;
    for bad in ["a\u{0}b", "a\nb", "a\rb", "a\u{1B}[31mb", "a\u{7F}b", "a\u{85}b"] {
        let body = scim_error(create(&s, bad).await, StatusCode::BAD_REQUEST).await;
        assert!(body["detail"].as_str().unwrap().contains("userName"), "{body}");
        let r =
            s.post("/scim/v2/Users", json!({"schemas": [USER], "userName": "ok", "externalId": bad})).await;
        let body = scim_error(r, StatusCode::BAD_REQUEST).await;
        assert!(body["detail"].as_str().unwrap().contains("externalId"), "{body}");
        let r = s.post("/scim/v2/Users", json!({"schemas": [USER], "userName": "ok", "title": bad})).await;
        let body = scim_error(r, StatusCode::BAD_REQUEST).await;
        assert!(body["detail"].as_str().unwrap().contains("title"), "{body}");
        let r = s.post("/v1/clients", json!({"name": bad, "scopes": ["scim"]})).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad:?}");
    }
    // A postal address may span lines.
    let r = s
        .post(
            "/scim/v2/Users",
            json!({"schemas": [USER], "userName": "multi", "addresses": [{"formatted": "1 Main St\nSpringfield"}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(s.user_count().await, 1, "nothing else was written");
}

#[tokio::test]
async fn string_and_value_count_limits_name_the_attribute() {
    let s = Server::start().await;
    let huge = "x".repeat(300_000);
    let r =
        s.post("/scim/v2/Users", json!({"schemas": [USER], "userName": "big", "displayName": huge})).await;
    let body = scim_error(r, StatusCode::BAD_REQUEST).await;
    assert!(body["detail"].as_str().unwrap().contains("displayName"), "{body}");
    let r = s
        .post("/scim/v2/Users", json!({"schemas": [USER], "userName": "big", "externalId": "e".repeat(257)}))
        .await;
    let body = scim_error(r, StatusCode::BAD_REQUEST).await;
    assert!(body["detail"].as_str().unwrap().contains("externalId"), "{body}");
    let emails: Vec<Value> = (0..101).map(|n| json!({"value": format!("a{n}@example.com")})).collect();
    let r = s.post("/scim/v2/Users", json!({"schemas": [USER], "userName": "big", "emails": emails})).await;
    let body = scim_error(r, StatusCode::BAD_REQUEST).await;
    assert!(body["detail"].as_str().unwrap().contains("emails"), "{body}");
    let r = s
        .post(
            "/scim/v2/Groups",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "g".repeat(257)}),
        )
        .await;
    scim_error(r, StatusCode::BAD_REQUEST).await;
    assert_eq!(s.user_count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_revocations_of_one_session_are_recorded_once() {
    let s = Server::start().await;
    s.create_user("race").await;
    for via_token in [false, true] {
        let session = s.open_session("race").await;
        let (sid, token) = (
            session["session_id"].as_str().unwrap().to_owned(),
            session["access_token"].as_str().unwrap().to_owned(),
        );
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let http = s.http.clone();
                let (sid, token) = (sid.clone(), token.clone());
                let (revoke, sessions) = (s.url("/oauth2/revoke"), s.url(&format!("/v1/sessions/{sid}")));
                tokio::spawn(async move {
                    let r = if via_token {
                        http.post(revoke).bearer_auth(ADMIN).form(&[("token", token)]).send().await
                    } else {
                        http.delete(sessions).bearer_auth(ADMIN).send().await
                    };
                    r.unwrap().status()
                })
            })
            .collect();
        for call in calls {
            assert!(call.await.unwrap().is_success());
        }
        let revoked = s
            .audit()
            .await
            .into_iter()
            .filter(|r| r["kind"] == "session.revoked" && r["session"] == sid.as_str())
            .count();
        assert_eq!(revoked, 1, "via_token={via_token}");
    }
    let metrics = s.get("/metrics").await.text().await.unwrap();
    let count = |reason: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("lockstep_session_revocations_total{{reason=\"{reason}\"}}")))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    };
    assert_eq!(count("admin_revoked").as_deref(), Some("1"));
    assert_eq!(count("client_revoked").as_deref(), Some("1"));
}

#[tokio::test]
async fn every_rejection_answers_in_the_protocol_of_its_path() {
    let s = Server::start().await;
    for path in ["/scim/v2/Users/%FF%FE", "/scim/v2/Groups/%FF", "/scim/v2/Schemas/%FF", "/scim/v2/Users/%C0"]
    {
        let r = s.get(path).await;
        assert!(r.status().is_client_error(), "{path}");
        scim_error(r, StatusCode::BAD_REQUEST).await;
    }
    let r = s.http.delete(s.url("/v1/sessions/%FF")).bearer_auth(ADMIN).send().await.unwrap();
    assert!(r.status().is_client_error());
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].is_string() && body["error_description"].is_string(), "{body}");
    // Unknown routes, wrong methods, bodies that are not what the endpoint takes.
    let r = s.get("/scim/v2/Nothing").await;
    scim_error(r, StatusCode::NOT_FOUND).await;
    let r = s.http.patch(s.url("/v1/audit")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "method_not_allowed");
    let r = s.http.get(s.url("/oauth2/introspect")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "method_not_allowed");
    let r = s.http.delete(s.url("/scim/v2/Users")).bearer_auth(ADMIN).send().await.unwrap();
    scim_error(r, StatusCode::METHOD_NOT_ALLOWED).await;
    let r = s
        .http
        .post(s.url("/oauth2/introspect"))
        .bearer_auth(ADMIN)
        .json(&json!({"token": "x"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let r = s.http.get(s.url("/scim/v2/Users?count=%FF")).bearer_auth(ADMIN).send().await.unwrap();
    scim_error(r, StatusCode::BAD_REQUEST).await;
    let r = s
        .http
        .post(s.url("/v1/sessions"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body(vec![b'{'; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
}

#[tokio::test]
async fn filters_outside_the_grammar_are_invalid_filters() {
    let s = Server::start().await;
    s.create_user("a").await;
    for filter in ["u$er eq \"a\"", "emails[value[type eq \"x\"]]", "name.givenName[value eq \"x\"]"] {
        let encoded: String = filter.bytes().map(|b| format!("%{b:02X}")).collect();
        let r = s.get(&format!("/scim/v2/Users?filter={encoded}")).await;
        assert_eq!(scim_error(r, StatusCode::BAD_REQUEST).await["scimType"], "invalidFilter", "{filter}");
        let r = s
            .post(
                "/scim/v2/Users/.search",
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": filter}),
            )
            .await;
        assert_eq!(scim_error(r, StatusCode::BAD_REQUEST).await["scimType"], "invalidFilter", "{filter}");
    }
}

#[tokio::test]
async fn rfc7009_revocation_is_bound_to_the_client_the_token_was_issued_to() {
    let s = Server::start().await;
    let client = |name: &str, scopes: Value| {
        let s = &s;
        let name = name.to_owned();
        async move {
            let r = s.post("/v1/clients", json!({"name": name, "scopes": scopes})).await;
            assert_eq!(r.status(), StatusCode::CREATED);
            let c: Value = r.json().await.unwrap();
            c["client_secret"].as_str().unwrap().to_owned()
        }
    };
    let gateway = client("gateway", json!(["introspect"])).await;
    let app = client("app", json!(["sessions"])).await;
    s.create_user("victim").await;
    let by_admin = s.open_session("victim").await["access_token"].as_str().unwrap().to_owned();
    let r = s.http.post(s.url("/v1/sessions")).bearer_auth(&app).json(&json!({"subject": "victim"})).send();
    let by_app: Value = r.await.unwrap().json().await.unwrap();
    let by_app = by_app["access_token"].as_str().unwrap().to_owned();
    let revoke = |secret: &str, token: &str| {
        s.http.post(s.url("/oauth2/revoke")).bearer_auth(secret).form(&[("token", token)]).send()
    };
    // The resource server's introspection credential cannot log anyone out.
    for token in [&by_admin, &by_app] {
        let r = revoke(&gateway, token).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "unauthorized_client");
        assert_eq!(s.introspect(token).await["active"], true);
    }
    // Nor can another client revoke the admin's token; the issuing client can revoke its own.
    assert_eq!(revoke(&app, &by_admin).await.unwrap().status(), StatusCode::BAD_REQUEST);
    assert_eq!(s.introspect(&by_admin).await["active"], true);
    assert_eq!(revoke(&app, &by_app).await.unwrap().status(), StatusCode::OK);
    assert_eq!(s.introspect(&by_app).await["active"], false);
    // The admin may revoke any token; unknown tokens stay a 200 for everyone.
    assert_eq!(revoke(ADMIN, &by_admin).await.unwrap().status(), StatusCode::OK);
    assert_eq!(s.introspect(&by_admin).await["active"], false);
    assert_eq!(revoke(&gateway, "lst_at_unknown").await.unwrap().status(), StatusCode::OK);
}
