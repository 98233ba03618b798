//! AI agents as SCIM resources (`/Agents`): both drafts' payloads, the one
//! handle with two names, filters, PATCH, ETags, search, and what the
//! bridge and the policy do to an agent's sessions.

use super::*;

const AGENT: &str = "urn:ietf:params:scim:schemas:core:2.0:Agent";

async fn put(s: &Server, path: &str, body: Value, if_match: Option<&str>) -> Response {
    let mut r = s.http.put(s.url(path)).bearer_auth(ADMIN).json(&body);
    if let Some(tag) = if_match {
        r = r.header("If-Match", tag);
    }
    r.send().await.unwrap()
}

async fn delete(s: &Server, path: &str) -> Response {
    s.http.delete(s.url(path)).bearer_auth(ADMIN).send().await.unwrap()
}

async fn total(s: &Server, path: &str) -> u64 {
    let r = s.get(path).await;
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.json::<Value>().await.unwrap()["totalResults"].as_u64().unwrap()
}

#[tokio::test]
async fn agents_speak_both_drafts_with_one_handle() {
    let s = Server::start().await;
    // draft-abbey-scim-agent-extension-00: the handle is `name`.
    let r = s
        .post(
            "/scim/v2/Agents",
            json!({"schemas": [AGENT], "name": "travel-bot", "displayName": "Travel Bot",
                   "description": "Books trips within policy", "agentType": "assistant", "active": true}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(r.headers().get("location").unwrap().to_str().unwrap().contains("/scim/v2/Agents/"));
    assert!(r.headers().get("etag").is_some());
    let abbey: Value = r.json().await.unwrap();
    assert_eq!(
        (abbey["name"].as_str(), abbey["agentUserName"].as_str()),
        (Some("travel-bot"), Some("travel-bot"))
    );
    assert_eq!(abbey["schemas"], json!([AGENT]));
    assert_eq!(abbey["meta"]["resourceType"], "Agent");
    assert_eq!((abbey["agentType"].as_str(), abbey["active"].as_bool()), (Some("assistant"), Some(true)));
    assert!(abbey.get("owners").is_none(), "created without owners");
    let id = abbey["id"].as_str().unwrap().to_owned();

    // draft-wzdk-scim-agent-resource-00: the handle is `agentUserName`.
    let owner = s.create_user("ada@example.com").await;
    let r = s
        .post(
            "/scim/v2/Agents",
            json!({"schemas": [AGENT], "agentUserName": "hr-agent", "externalId": "ext-42",
                   "owners": [{"value": owner}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let wzdk: Value = r.json().await.unwrap();
    assert_eq!(wzdk["name"], "hr-agent");
    assert_eq!(wzdk["owners"][0]["value"], owner.as_str());
    assert!(wzdk["owners"][0]["$ref"].as_str().unwrap().ends_with(&format!("/Users/{owner}")));

    // One handle space, compared like userName (case and width).
    for (handle, what) in [("TRAVEL-BOT", "another agent"), ("ｔｒａｖｅｌ-ｂｏｔ", "a look-alike")]
    {
        let r = s.post("/scim/v2/Agents", json!({"schemas": [AGENT], "name": handle})).await;
        assert_eq!(r.status(), StatusCode::CONFLICT, "{what}");
    }
    let r = s.post("/scim/v2/Users", json!({"schemas": [super::USER], "userName": "Travel-Bot"})).await;
    assert_eq!(r.status(), StatusCode::CONFLICT, "a User cannot take an agent's handle");
    // Both names given must agree; neither given is refused.
    let r = s.post("/scim/v2/Agents", json!({"schemas": [AGENT], "name": "a", "agentUserName": "b"})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["scimType"], "invalidValue");
    let r = s.post("/scim/v2/Agents", json!({"schemas": [AGENT], "displayName": "nameless"})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = s.post("/scim/v2/Agents", json!({"schemas": [AGENT], "name": "x", "userName": "x"})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "not a User attribute here");
    let r = s
        .post("/scim/v2/Agents", json!({"schemas": [AGENT], "name": "y", "owners": [{"value": "not-an-id"}]}))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Filters on either name, externalId; Users and Agents stay apart.
    for filter in [
        "name eq \"Travel-Bot\"",
        "agentUserName eq \"travel-bot\"",
        "urn:ietf:params:scim:schemas:core:2.0:Agent:name eq \"travel-bot\"",
    ] {
        let path = format!("/scim/v2/Agents?filter={}", urlencoding(filter));
        assert_eq!(total(&s, &path).await, 1, "{filter}");
    }
    assert_eq!(
        total(&s, &format!("/scim/v2/Agents?filter={}", urlencoding("externalId eq \"ext-42\""))).await,
        1
    );
    assert_eq!(total(&s, "/scim/v2/Agents").await, 2);
    assert_eq!(total(&s, "/scim/v2/Users").await, 1, "agents are not Users");
    assert_eq!(
        total(&s, &format!("/scim/v2/Users?filter={}", urlencoding("userName eq \"travel-bot\""))).await,
        0
    );
    assert_eq!(s.get(&format!("/scim/v2/Users/{id}")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(s.get(&format!("/scim/v2/Agents/{owner}")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(delete(&s, &format!("/scim/v2/Users/{id}")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        s.get(&format!("/scim/v2/Agents/{id}")).await.status(),
        StatusCode::OK,
        "the 404 deleted nothing"
    );
    let r = s
        .patch(
            &format!("/scim/v2/Users/{id}"),
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "replace", "path": "displayName", "value": "x"}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "an agent is not written through /Users");
    let r =
        put(&s, &format!("/scim/v2/Agents/{owner}"), json!({"schemas": [AGENT], "name": "n"}), None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "nor a User through /Agents");
    let r = s
        .post(
            "/scim/v2/Users",
            json!({"schemas": [super::USER, "urn:ietf:params:scim:schemas:extension:lockstep:2.0:User"],
                   "userName": "sneaky", "urn:ietf:params:scim:schemas:extension:lockstep:2.0:User": {"identityKind": "agent"}}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "agents are written at /Agents");

    // Paging and .search, here and at the root.
    let page: Value = s.get("/scim/v2/Agents?startIndex=2&count=1").await.json().await.unwrap();
    assert_eq!((page["totalResults"].as_u64(), page["Resources"].as_array().unwrap().len()), (Some(2), 1));
    let r = s
        .post(
            "/scim/v2/Agents/.search",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                   "filter": "agentUserName sw \"hr\"", "attributes": ["name"]}),
        )
        .await;
    let found: Value = r.json().await.unwrap();
    assert_eq!(found["totalResults"], 1);
    assert_eq!(found["Resources"][0]["name"], "hr-agent");
    assert!(found["Resources"][0].get("displayName").is_none(), "projected");
    let r = s
        .post("/scim/v2/.search", json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]}))
        .await;
    let all: Value = r.json().await.unwrap();
    assert_eq!(all["totalResults"], 3, "one User and two Agents: {all}");
    let types: Vec<&str> = all["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["meta"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["User", "Agent", "Agent"]);

    // PATCH the handle by either name: both follow. ETags guard writes.
    let r = s
        .patch(
            &format!("/scim/v2/Agents/{id}"),
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "replace", "path": "name", "value": "trip-bot"},
                                  {"op": "add", "path": "description", "value": "Books and changes trips"}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let patched: Value = r.json().await.unwrap();
    assert_eq!(
        (patched["name"].as_str(), patched["agentUserName"].as_str()),
        (Some("trip-bot"), Some("trip-bot"))
    );
    assert_eq!(patched["description"], "Books and changes trips");
    let r = put(
        &s,
        &format!("/scim/v2/Agents/{id}"),
        json!({"schemas": [AGENT], "agentUserName": "trip-bot"}),
        Some("W/\"1\""),
    )
    .await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let tag = patched["meta"]["version"].as_str().unwrap().to_owned();
    let r = put(
        &s,
        &format!("/scim/v2/Agents/{id}"),
        json!({"schemas": [AGENT], "agentUserName": "trip-bot", "owners": [{"value": owner}]}),
        Some(&tag),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let replaced: Value = r.json().await.unwrap();
    assert!(replaced.get("description").is_none(), "PUT replaces");
    assert_eq!(replaced["owners"][0]["value"], owner.as_str());

    // Delete, then gone.
    assert_eq!(delete(&s, &format!("/scim/v2/Agents/{id}")).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(s.get(&format!("/scim/v2/Agents/{id}")).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_agent_is_a_non_human_identity_to_the_bridge_and_the_policy() {
    let s = Server::start().await;
    let r = s.post("/scim/v2/Agents", json!({"schemas": [AGENT], "name": "ops-agent"})).await;
    let agent: Value = r.json().await.unwrap();
    let id = agent["id"].as_str().unwrap().to_owned();
    // No active owner: no sessions, no credentials.
    let r = s.post("/v1/sessions", json!({"subject": "ops-agent", "ttl": "15m"})).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.text().await.unwrap().contains("without an active owner"));
    let r =
        s.post(&format!("/v1/identities/{id}/credentials"), json!({"kind": "api_key", "ttl": "1d"})).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // Assigned an owner later, it gets them.
    let owner = s.create_user("grace@example.com").await;
    let r = s
        .patch(
            &format!("/scim/v2/Agents/{id}"),
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "add", "path": "owners", "value": [{"value": owner}]}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    let session = s.open_session("ops-agent").await;
    let token = session["access_token"].as_str().unwrap().to_owned();
    assert_eq!(s.introspect(&token).await["active"], true);
    let r =
        s.post(&format!("/v1/identities/{id}/credentials"), json!({"kind": "api_key", "ttl": "1d"})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let key = r.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();
    assert_eq!(s.introspect(&key).await["active"], true);

    // Deactivating the agent revokes its sessions and credentials;
    // re-activation restores nothing.
    let off = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                     "Operations": [{"op": "replace", "path": "active", "value": false}]});
    assert_eq!(s.patch(&format!("/scim/v2/Agents/{id}"), off).await.status(), StatusCode::OK);
    assert_eq!(s.introspect(&token).await["active"], false);
    assert_eq!(s.introspect(&key).await["active"], false);
    let on = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "active", "value": true}]});
    assert_eq!(s.patch(&format!("/scim/v2/Agents/{id}"), on).await.status(), StatusCode::OK);
    assert_eq!(s.introspect(&token).await["active"], false, "old sessions stay dead");

    // Losing its last active owner: the non-human owner-lost impact
    // (suspend, then revoke when the grace ends) — the session is inactive.
    let session = s.open_session("ops-agent").await;
    let token = session["access_token"].as_str().unwrap().to_owned();
    let off = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                     "Operations": [{"op": "replace", "path": "active", "value": false}]});
    assert_eq!(s.patch(&format!("/scim/v2/Users/{owner}"), off).await.status(), StatusCode::OK);
    assert_eq!(s.introspect(&token).await["active"], false, "suspended while it has no active owner");
    let r = s.post("/v1/sessions", json!({"subject": "ops-agent", "ttl": "15m"})).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // Deleting the agent: gone, its handle free again.
    assert_eq!(delete(&s, &format!("/scim/v2/Agents/{id}")).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(total(&s, "/scim/v2/Agents").await, 0);
}

#[tokio::test]
async fn rapid_create_and_delete_leaves_nothing_behind() {
    let s = Server::start().await;
    for i in 0..40 {
        let r = s.post("/scim/v2/Agents", json!({"schemas": [AGENT], "agentUserName": "flicker"})).await;
        assert_eq!(r.status(), StatusCode::CREATED, "round {i}");
        let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        assert_eq!(delete(&s, &format!("/scim/v2/Agents/{id}")).await.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(total(&s, "/scim/v2/Agents").await, 0);
    assert_eq!(total(&s, &format!("/scim/v2/Agents?filter={}", urlencoding("name eq \"flicker\""))).await, 0);
}

fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const APP: &str = "urn:ietf:params:scim:schemas:core:2.0:AgenticApplication";

#[tokio::test]
async fn agentic_applications_have_full_crud() {
    let s = Server::start().await;
    let owner = s.create_user("lin@example.com").await;
    let r = s
        .post(
            "/scim/v2/AgenticApplications",
            json!({"schemas": [APP], "name": "Concierge", "displayName": "Concierge suite",
                   "description": "Hosts the travel agents", "externalId": "app-7", "owners": [{"value": owner}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let app: Value = r.json().await.unwrap();
    let id = app["id"].as_str().unwrap().to_owned();
    assert_eq!((app["name"].as_str(), app["active"].as_bool()), (Some("Concierge"), Some(true)));
    assert_eq!(app["meta"]["resourceType"], "AgenticApplication");
    assert!(app["meta"]["location"].as_str().unwrap().ends_with(&format!("/AgenticApplications/{id}")));
    assert!(app.get("agentUserName").is_none(), "an application's handle is name only");
    // The handle is unique among every handle, ignoring case.
    let r = s.post("/scim/v2/AgenticApplications", json!({"schemas": [APP], "name": "concierge"})).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = s.post("/scim/v2/AgenticApplications", json!({"schemas": [APP], "displayName": "no name"})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Filter, list, search; not an Agent, not a User.
    let path = format!("/scim/v2/AgenticApplications?filter={}", urlencoding("name eq \"CONCIERGE\""));
    assert_eq!(total(&s, &path).await, 1);
    assert_eq!(
        total(&s, &format!("/scim/v2/AgenticApplications?filter={}", urlencoding("externalId eq \"app-7\"")))
            .await,
        1
    );
    assert_eq!(total(&s, "/scim/v2/Agents").await, 0);
    assert_eq!(total(&s, "/scim/v2/Users").await, 1);
    assert_eq!(s.get(&format!("/scim/v2/Agents/{id}")).await.status(), StatusCode::NOT_FOUND);
    // PATCH, PUT with the ETag, DELETE.
    let r = s
        .patch(
            &format!("/scim/v2/AgenticApplications/{id}"),
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "replace", "value": {"name": "Concierge-2", "active": false}}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let patched: Value = r.json().await.unwrap();
    assert_eq!((patched["name"].as_str(), patched["active"].as_bool()), (Some("Concierge-2"), Some(false)));
    let tag = patched["meta"]["version"].as_str().unwrap().to_owned();
    let r = put(
        &s,
        &format!("/scim/v2/AgenticApplications/{id}"),
        json!({"schemas": [APP], "name": "Concierge-2", "active": true}),
        Some(&tag),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let replaced: Value = r.json().await.unwrap();
    assert!(replaced.get("description").is_none() && replaced.get("owners").is_none(), "PUT replaces");
    let r = put(
        &s,
        &format!("/scim/v2/AgenticApplications/{id}"),
        json!({"schemas": [APP], "name": "x"}),
        Some(&tag),
    )
    .await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        delete(&s, &format!("/scim/v2/AgenticApplications/{id}")).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.get(&format!("/scim/v2/AgenticApplications/{id}")).await.status(), StatusCode::NOT_FOUND);
}
