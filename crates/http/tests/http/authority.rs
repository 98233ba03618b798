//! The token and credential authority over HTTP: the token endpoint's
//! grants and errors (RFC 6749), credentials of non-human identities,
//! revoke-all, global token revocation, discovery.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{ADMIN, NHI, Server, USER};

/// The token endpoint with a form body and optional authentication.
async fn token(
    s: &Server,
    form: &[(&str, &str)],
    auth: Option<(&str, &str)>,
    bearer: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = s.http.post(s.url("/oauth2/token")).form(form);
    if let Some((id, secret)) = auth {
        req = req.basic_auth(id, Some(secret));
    }
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    assert_eq!(r.headers()["cache-control"], "no-store", "token responses are never cached");
    (status, r.json().await.unwrap())
}

async fn service_account(s: &Server, name: &str, owner: &str) -> String {
    let doc = json!({"schemas": [USER, NHI], "userName": name,
                     NHI: {"identityKind": "service_account", "owner": {"value": owner}}});
    let r = s.post("/scim/v2/Users", doc).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn refresh_tokens_rotate_over_the_token_endpoint_and_reuse_revokes_the_family() {
    let s = Server::start().await;
    s.create_user("ada").await;
    let r = s.post("/v1/sessions", json!({"subject": "ada", "ttl": "1h", "refresh": true})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let opened: Value = r.json().await.unwrap();
    let rt1 = opened["refresh_token"].as_str().unwrap().to_owned();
    assert!(rt1.starts_with("lst_rt_"));
    assert_eq!(opened["format"], "opaque");
    assert_ne!(opened["access_token_expires_at"], opened["expires_at"], "short access, long session");

    let (status, body) =
        token(&s, &[("grant_type", "refresh_token"), ("refresh_token", &rt1)], None, Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let expires_in = body["expires_in"].as_i64().unwrap();
    assert!((295..=300).contains(&expires_in), "{expires_in}");
    let rt2 = body["refresh_token"].as_str().unwrap().to_owned();
    let at2 = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(s.introspect(&at2).await["active"], true);

    // Reuse of the retired token: invalid_grant, and every token of the session dies.
    let (status, body) =
        token(&s, &[("grant_type", "refresh_token"), ("refresh_token", &rt1)], None, Some(ADMIN)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert!(body["error_description"].as_str().unwrap().contains("reuse"), "{body}");
    assert_eq!(s.introspect(&at2).await, json!({"active": false}));
    assert_eq!(s.introspect(opened["access_token"].as_str().unwrap()).await, json!({"active": false}));
    let (status, body) =
        token(&s, &[("grant_type", "refresh_token"), ("refresh_token", &rt2)], None, Some(ADMIN)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    let kinds: Vec<Value> = s.audit().await.iter().map(|r| r["kind"].clone()).collect();
    let reuse = kinds.iter().position(|k| k == "session.refresh_reuse_detected").unwrap();
    assert_eq!(kinds[reuse + 1], "session.revoked");
}

#[tokio::test]
async fn the_token_endpoint_answers_every_bad_request_in_rfc_6749_terms() {
    let s = Server::start().await;
    // Nobody authenticated, whatever the body: invalid_client, with a challenge.
    let r =
        s.http.post(s.url("/oauth2/token")).form(&[("grant_type", "refresh_token")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("Basic"));
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "invalid_request"),
        (&[("grant_type", "password"), ("username", "a")], "unsupported_grant_type"),
        (&[("grant_type", "authorization_code"), ("code", "x")], "unsupported_grant_type"),
        (&[("grant_type", "refresh_token")], "invalid_request"),
        (&[("grant_type", "refresh_token"), ("refresh_token", "x"), ("scope", "admin")], "invalid_scope"),
        (
            &[("grant_type", "refresh_token"), ("refresh_token", "x"), ("refresh_token", "y")],
            "invalid_request",
        ),
        (&[("grant_type", "refresh_token"), ("refresh_token", "lst_rt_unknown")], "invalid_grant"),
        (&[("grant_type", "client_credentials")], "unauthorized_client"),
    ];
    for (form, error) in cases {
        let (status, body) = token(&s, form, None, Some(ADMIN)).await;
        assert_eq!(body["error"], *error, "{form:?}: {body}");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form:?}");
        assert!(body["error_description"].as_str().is_some_and(|d| !d.is_empty()));
    }
    // A JSON body is refused: the token endpoint takes a form (RFC 6749 §3.2).
    let r = s
        .http
        .post(s.url("/oauth2/token"))
        .bearer_auth(ADMIN)
        .json(&json!({"grant_type": "refresh_token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
}

#[tokio::test]
async fn client_credentials_work_until_the_identity_or_its_owner_goes() {
    let s = Server::start().await;
    let owner = s.create_user("owner").await;
    let bot = service_account(&s, "bot", &owner).await;
    let r = s
        .post(&format!("/v1/identities/{bot}/credentials"), json!({"kind": "client_secret", "ttl": "7d"}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let cred: Value = r.json().await.unwrap();
    let (id, secret) =
        (cred["client_id"].as_str().unwrap().to_owned(), cred["secret"].as_str().unwrap().to_owned());
    assert_eq!(cred["credential_id"], cred["client_id"]);
    assert!(secret.starts_with("lst_cs_"));

    // HTTP Basic and client_secret_post both work; both at once is refused.
    let (status, body) = token(&s, &[("grant_type", "client_credentials")], Some((&id, &secret)), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let at = body["access_token"].as_str().unwrap().to_owned();
    assert!(body.get("refresh_token").is_none());
    let seen = s.introspect(&at).await;
    assert_eq!(seen["sub"], bot.as_str());
    assert_eq!(seen["client_id"], id.as_str());
    assert_eq!(seen["identity_kind"], "service_account");
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", id.as_str()),
        ("client_secret", secret.as_str()),
    ];
    let (status, _) = token(&s, &form, None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = token(&s, &form, Some((&id, &secret)), None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    let (status, body) =
        token(&s, &[("grant_type", "client_credentials")], Some((&id, "lst_cs_wrong")), None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));

    // The owner is offboarded: the credential is suspended, grants refused,
    // the token it got is inactive.
    let r = s.patch(&format!("/scim/v2/Users/{owner}"), super::deactivate(0)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(s.introspect(&at).await, json!({"active": false}));
    let (status, body) = token(&s, &[("grant_type", "client_credentials")], Some((&id, &secret)), None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    let listed: Value = s.get(&format!("/v1/identities/{bot}/credentials")).await.json().await.unwrap();
    assert_eq!(listed["credentials"][0]["state"], "suspended");
    assert_eq!(listed["credentials"][0]["suspended_for"], "owner_lost");

    // A second service account is deactivated: its credential is revoked.
    let bot2 = service_account(&s, "bot2", &s.create_user("owner2").await).await;
    let r = s.post(&format!("/v1/identities/{bot2}/credentials"), json!({"kind": "client_secret"})).await;
    let cred2: Value = r.json().await.unwrap();
    let (id2, secret2) = (cred2["client_id"].as_str().unwrap(), cred2["secret"].as_str().unwrap());
    let (status, _) = token(&s, &[("grant_type", "client_credentials")], Some((id2, secret2)), None).await;
    assert_eq!(status, StatusCode::OK);
    s.patch(&format!("/scim/v2/Users/{bot2}"), super::deactivate(0)).await;
    let (status, body) = token(&s, &[("grant_type", "client_credentials")], Some((id2, secret2)), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client")),
        "{body}"
    );
}

#[tokio::test]
async fn credentials_follow_tier_lifetimes_list_without_secrets_and_rotate() {
    let s = Server::start().await;
    let owner = s.create_user("owner").await;
    let bot = service_account(&s, "bot", &owner).await;
    let path = format!("/v1/identities/{bot}/credentials");
    // No ttl: the tier default, 30 days.
    let r = s.post(&path, json!({"kind": "api_key"})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let key: Value = r.json().await.unwrap();
    assert!(key.get("client_id").is_none(), "an API key is no OAuth client");
    let expires = time::OffsetDateTime::parse(
        key["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let days = (expires.unix_timestamp() - s.engine.clock().now().unix_seconds()) / 3600;
    assert!((30 * 24 - 1..=30 * 24).contains(&days), "{days}h");
    // Beyond the maximum, a bad kind, a bad duration, a human: refused, naming the field.
    for (body, status, needle) in [
        (json!({"kind": "api_key", "ttl": "91d"}), StatusCode::BAD_REQUEST, "credential_max_ttl"),
        (json!({"kind": "password"}), StatusCode::BAD_REQUEST, "kind"),
        (json!({"kind": "api_key", "ttl": "soon"}), StatusCode::BAD_REQUEST, "ttl"),
        (json!({"kind": "api_key", "extra": 1}), StatusCode::BAD_REQUEST, "extra"),
    ] {
        let r = s.post(&path, body.clone()).await;
        assert_eq!(r.status(), status, "{body}");
        let e: Value = r.json().await.unwrap();
        assert!(e["error_description"].as_str().unwrap().contains(needle), "{e}");
    }
    let r = s.post(&format!("/v1/identities/{owner}/credentials"), json!({"kind": "api_key"})).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "not_non_human");
    let r = s.post("/v1/identities/not-an-id/credentials", json!({"kind": "api_key"})).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // The API key is a bearer token for introspection.
    let secret = key["secret"].as_str().unwrap();
    assert_eq!(s.introspect(secret).await["active"], true);
    // Listed without secrets, with its last use.
    let listed: Value = s.get(&path).await.json().await.unwrap();
    assert_eq!(listed["credentials"].as_array().unwrap().len(), 1);
    let text = listed.to_string();
    assert!(!text.contains(secret) && !text.contains("secret\""), "{text}");
    assert!(listed["credentials"][0]["last_used_at"].is_string());

    // Rotation with a grace: both work; without: the old one stops now.
    let cid = key["credential_id"].as_str().unwrap();
    let r = s.post(&format!("{path}/{cid}/rotate"), json!({"grace": "1h"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let rotated: Value = r.json().await.unwrap();
    assert!(rotated["previous_secret_expires_at"].is_string());
    let new = rotated["secret"].as_str().unwrap();
    assert_eq!(s.introspect(secret).await["active"], true);
    assert_eq!(s.introspect(new).await["active"], true);
    let r = s.http.post(s.url(&format!("{path}/{cid}/rotate"))).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "no body: no grace");
    let newest: Value = r.json().await.unwrap();
    assert_eq!(s.introspect(new).await["active"], false);
    assert_eq!(s.introspect(newest["secret"].as_str().unwrap()).await["active"], true);
    // The grace of the first rotation ends.
    s.clock.advance(std::time::Duration::from_secs(3601));
    assert_eq!(s.introspect(secret).await["active"], false);

    // Revoked by DELETE: 204, twice.
    for _ in 0..2 {
        let r = s.http.delete(s.url(&format!("{path}/{cid}"))).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(s.introspect(newest["secret"].as_str().unwrap()).await["active"], false);
    let r = s
        .http
        .delete(s.url(&format!("/v1/identities/{owner}/credentials/{cid}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "a credential of another identity");
}

#[tokio::test]
async fn revoke_all_and_global_revocation_leave_nothing_active() {
    let s = Server::start().await;
    let id = s.create_user("ada@example.com").await;
    let r = s
        .patch(
            &format!("/scim/v2/Users/{id}"),
            json!({"schemas": [super::PATCH], "Operations": [{"op": "add", "path": "emails", "value": [{"value": "ada@work.example"}]}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let open =
        || async { s.open_session("ada@example.com").await["access_token"].as_str().unwrap().to_owned() };
    let tokens = vec![open().await, open().await];
    let r = s.post(&format!("/v1/identities/{id}/revoke-all"), json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["revoked"], 2);
    for t in &tokens {
        assert_eq!(s.introspect(t).await["active"], false);
    }
    let audit = s.audit().await;
    let decision = audit.iter().find(|r| r["kind"] == "session.subject_revoked").unwrap();
    assert!(decision["detail"].as_str().unwrap().contains("revoke 2 session(s)"), "{decision}");

    // Global token revocation by email: 204, and nothing of her is active.
    let more = vec![open().await, open().await];
    let r = s
        .http
        .post(s.url("/oauth2/global-token-revocation"))
        .bearer_auth(ADMIN)
        .json(&json!({"sub_id": {"format": "email", "email": "ada@work.example"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for t in &more {
        assert_eq!(s.introspect(t).await["active"], false);
    }
    // By id, and for nobody: 204 too.
    for sub_id in
        [json!({"format": "opaque", "id": id}), json!({"format": "email", "email": "nobody@example.com"})]
    {
        let r = s
            .http
            .post(s.url("/oauth2/global-token-revocation"))
            .bearer_auth(ADMIN)
            .json(&json!({"sub_id": sub_id}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    // Malformed or unsupported: 400 in OAuth terms.
    for body in
        [json!({"sub_id": {"format": "phone_number", "phone_number": "+1"}}), json!({"sub": "x"}), json!({})]
    {
        let r = s
            .http
            .post(s.url("/oauth2/global-token-revocation"))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    }
}

#[tokio::test]
async fn discovery_lists_the_endpoints_and_the_signing_keys() {
    let s = Server::start().await;
    let r = s.http.get(s.url("/.well-known/oauth-authorization-server")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let meta: Value = r.json().await.unwrap();
    let issuer = meta["issuer"].as_str().unwrap().to_owned();
    for (key, path) in [
        ("token_endpoint", "/oauth2/token"),
        ("introspection_endpoint", "/oauth2/introspect"),
        ("revocation_endpoint", "/oauth2/revoke"),
        ("jwks_uri", "/.well-known/jwks.json"),
        ("global_token_revocation_endpoint", "/oauth2/global-token-revocation"),
    ] {
        assert_eq!(meta[key], format!("{issuer}{path}"));
    }
    assert_eq!(meta["grant_types_supported"], json!(["refresh_token", "client_credentials"]));
    let jwks: Value = s.http.get(s.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str()),
        (Some("EC"), Some("P-256"), Some("ES256"))
    );
    assert!(key.get("d").is_none(), "never the private part");

    // A JWT session: its header names the published key, and introspection
    // tells the truth once it is revoked.
    s.create_user("ada").await;
    let r = s.post("/v1/sessions", json!({"subject": "ada", "format": "jwt"})).await;
    let opened: Value = r.json().await.unwrap();
    assert_eq!(opened["format"], "jwt");
    let jwt = opened["access_token"].as_str().unwrap();
    let header: Value = {
        use base64::Engine as _;
        let h = jwt.split('.').next().unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
    };
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], key["kid"]);
    assert_eq!(s.introspect(jwt).await["active"], true);
    let sid = opened["session_id"].as_str().unwrap();
    s.http.delete(s.url(&format!("/v1/sessions/{sid}"))).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(s.introspect(jwt).await, json!({"active": false}));
    let r = s.post("/v1/sessions", json!({"subject": "ada", "format": "paseto"})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}
