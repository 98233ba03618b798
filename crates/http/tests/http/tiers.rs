//! Policy tiers end to end: graduated impacts, claims that follow the
//! directory, suspension, a fresh decision, and what a change reached.

use std::time::Duration;

use lockstep_policy::{Policy, PolicyConfig, TierConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{NHI, PATCH, Server, USER};

const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// The two lines of the issue: `[policy.tiers.privileged] groups = ["prod-admins"]`.
fn admins_policy() -> Policy {
    policy(vec![(
        "privileged",
        TierConfig { groups: Some(vec!["prod-admins".into()]), ..TierConfig::default() },
    )])
}

fn policy(tiers: Vec<(&str, TierConfig)>) -> Policy {
    Policy::from_config(&PolicyConfig { tiers: tiers.into_iter().map(|(n, t)| (n.to_owned(), t)).collect() })
        .unwrap()
}

async fn group(s: &Server, name: &str, members: &[&str]) -> String {
    let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
    let r =
        s.post("/scim/v2/Groups", json!({"schemas": [GROUP], "displayName": name, "members": members})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

async fn remove_member(s: &Server, group: &str, member: &str) {
    let body = json!({"schemas": [PATCH], "Operations": [
        {"op": "remove", "path": format!("members[value eq \"{member}\"]")}]});
    let r = s.patch(&format!("/scim/v2/Groups/{group}"), body).await;
    assert!(r.status().is_success(), "{:?}", r.text().await);
}

fn now_secs() -> i64 {
    i64::try_from(std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap().as_secs()).unwrap()
}

#[tokio::test]
async fn removal_from_a_tier_group_revokes_and_other_groups_only_change_claims() {
    let s = Server::start_with_policy(admins_policy()).await;
    let ada = s.create_user("ada").await;
    let bob = s.create_user("bob").await;
    let admins = group(&s, "prod-admins", &[&ada]).await;
    let eng = group(&s, "eng", &[&ada, &bob]).await;
    let ada_token = s.open_session("ada").await;
    // Privileged: the 15m ask is within the 1h cap; a 12h ask is capped to 1h.
    let long = s.post("/v1/sessions", json!({"subject": "ada", "ttl": "12h"})).await;
    let long: Value = long.json().await.unwrap();
    let ada_token = ada_token["access_token"].as_str().unwrap().to_owned();
    let long_token = long["access_token"].as_str().unwrap().to_owned();
    let capped = s.introspect(&long_token).await;
    assert!(capped["exp"].as_i64().unwrap() <= now_secs() + 3600 + 5, "{capped}");
    let a = s.introspect(&ada_token).await;
    assert_eq!(a["tier"], "privileged");
    assert_eq!(a["groups"], json!(["eng", "prod-admins"]));
    assert_eq!(a["identity_kind"], "human");
    let bob_token = s.open_session("bob").await["access_token"].as_str().unwrap().to_owned();
    assert_eq!(s.introspect(&bob_token).await["tier"], "standard");

    // The PATCH returns only after ada's tokens introspect inactive.
    remove_member(&s, &admins, &ada).await;
    assert_eq!(s.introspect(&ada_token).await, json!({"active": false}));
    assert_eq!(s.introspect(&long_token).await, json!({"active": false}));
    // An ordinary group: the token stays, its claims no longer list the group.
    remove_member(&s, &eng, &bob).await;
    let b = s.introspect(&bob_token).await;
    assert_eq!(b["active"], true);
    assert_eq!(b["groups"], json!([]));
    let audit = s.audit().await;
    let revoked = audit
        .iter()
        .find(|r| r["kind"] == "session.revoked" && r["identity"] == ada.as_str())
        .expect("a revocation of ada");
    assert_eq!(revoked["actor"], "policy/privileged.on_tier_group_removed");
    assert!(revoked["detail"].as_str().unwrap().contains("reason=group_removed"));
    assert!(audit.iter().any(|r| r["kind"] == "session.marked_for_recheck" && r["identity"] == bob.as_str()));
    assert!(audit.iter().any(|r| r["kind"] == "directory.tier_changed" && r["identity"] == ada.as_str()));
}

#[tokio::test]
async fn privileged_attribute_changes_shorten_and_risk_tier_changes_the_tier() {
    let s = Server::start().await;
    let id = s.create_user("root").await;
    let token = s.open_session("root").await["access_token"].as_str().unwrap().to_owned();
    let before = s.introspect(&token).await["exp"].as_i64().unwrap();
    assert!(before > now_secs() + 800, "15 minutes by default");
    // riskTier raised: the tier changes through the bridge and the session is shortened to 5 minutes.
    let raise = json!({"schemas": [PATCH], "Operations": [
        {"op": "add", "path": NHI, "value": {"riskTier": "privileged"}}]});
    assert_eq!(s.patch(&format!("/scim/v2/Users/{id}"), raise).await.status(), StatusCode::OK);
    let after = s.introspect(&token).await;
    assert_eq!(after["tier"], "privileged");
    assert!(after["exp"].as_i64().unwrap() <= now_secs() + 300 + 2, "{after}");
    // A privileged identity's attribute change: at most 5 minutes again (from now).
    let title =
        json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "CTO"}]});
    assert_eq!(s.patch(&format!("/scim/v2/Users/{id}"), title).await.status(), StatusCode::OK);
    assert!(s.introspect(&token).await["exp"].as_i64().unwrap() <= now_secs() + 300 + 2);
    // A standard user's attribute change leaves the session alone.
    let std_id = s.create_user("plain").await;
    let plain = s.open_session("plain").await["access_token"].as_str().unwrap().to_owned();
    let exp = s.introspect(&plain).await["exp"].clone();
    let title = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "x"}]});
    s.patch(&format!("/scim/v2/Users/{std_id}"), title).await;
    assert_eq!(s.introspect(&plain).await["exp"], exp);
}

#[tokio::test]
async fn an_owner_leaving_suspends_its_service_account_until_a_new_owner_or_the_grace_ends() {
    // A grace shorter than a session's life, so that its end can be seen
    // (by default it is 24h, longer than any session may live).
    let s = Server::start_with_policy(policy(vec![(
        "non_human",
        TierConfig { owner_grace: Some("2h".into()), ..TierConfig::default() },
    )]))
    .await;
    let owner = s.create_user("owner").await;
    let heir = s.create_user("heir").await;
    let bot_doc = |name: &str| {
        json!({"schemas": [USER, NHI], "userName": name,
               NHI: {"identityKind": "service_account", "owner": {"value": owner}}})
    };
    let r = s.post("/scim/v2/Users", bot_doc("bot")).await;
    let bot = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let r = s.post("/scim/v2/Users", bot_doc("bot2")).await;
    let bot2 = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let open = |name: &'static str| {
        let s = &s;
        async move {
            let r = s.post("/v1/sessions", json!({"subject": name, "ttl": "12h"})).await;
            r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
        }
    };
    let token = open("bot").await;
    let token2 = open("bot2").await;
    assert_eq!(s.introspect(&token).await["identity_kind"], "service_account");

    // The owner is deactivated: both service accounts are suspended (inactive).
    let r = s.patch(&format!("/scim/v2/Users/{owner}"), super::deactivate(0)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(s.introspect(&token).await, json!({"active": false}));
    assert_eq!(s.introspect(&token2).await, json!({"active": false}));
    let sessions: Value = s.get(&format!("/v1/sessions?subject={bot}")).await.json().await.unwrap();
    assert_eq!(sessions["sessions"][0]["state"], "suspended");
    assert_eq!(sessions["sessions"][0]["suspended_for"], "owner_lost");
    // No new sessions while it has no active owner.
    let r = s.post("/v1/sessions", json!({"subject": "bot"})).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "no_active_owner");

    // The reach report of the owner's deactivation lists both suspended sessions.
    let audit = s.audit().await;
    let position = audit
        .iter()
        .find(|r| r["kind"] == "directory.identity_deactivated" && r["identity"] == owner.as_str())
        .unwrap()["directory_event"]
        .as_u64()
        .unwrap();
    let reach: Value = s.get(&format!("/v1/directory-events/{position}/reach")).await.json().await.unwrap();
    assert_eq!(reach["event"]["change"], "identity_deactivated");
    assert_eq!(reach["caused"].as_array().unwrap().len(), 2, "{reach}");
    let suspended: Vec<&Value> =
        reach["sessions"].as_array().unwrap().iter().filter(|t| t["action"] == "session.suspended").collect();
    assert_eq!(suspended.len(), 2, "{reach}");
    assert!(suspended.iter().any(|t| t["now"]["subject"] == bot.as_str()));
    assert_eq!(suspended[0]["actor"], "policy/non_human.on_owner_lost");
    assert!(
        reach["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["detail"].as_str().unwrap().contains("suspend"))
    );

    // A new active owner within the grace: active again.
    let new_owner = json!({"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": format!("{NHI}:owner"), "value": {"value": heir}}]});
    assert_eq!(s.patch(&format!("/scim/v2/Users/{bot}"), new_owner).await.status(), StatusCode::OK);
    assert_eq!(s.introspect(&token).await["active"], true);
    assert!(s.audit().await.iter().any(|r| r["kind"] == "session.resumed"));

    // bot2 gets no new owner: when the grace ends it is revoked (the timer applies it).
    s.clock.advance(Duration::from_secs(3 * 3600));
    s.engine.apply_due_suspensions().unwrap();
    assert_eq!(s.introspect(&token2).await, json!({"active": false}));
    let sessions: Value = s.get(&format!("/v1/sessions?subject={bot2}")).await.json().await.unwrap();
    assert_eq!(sessions["sessions"][0]["state"], "revoked");
    assert_eq!(sessions["sessions"][0]["revocation_reason"], "owner_lost");
    // Reactivating the old owner does not bring a revoked session back.
    let reactivate =
        json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": true}]});
    s.patch(&format!("/scim/v2/Users/{owner}"), reactivate).await;
    assert_eq!(s.introspect(&token2).await, json!({"active": false}));
}

#[tokio::test]
async fn a_fresh_decision_denies_what_the_token_alone_would_allow() {
    let s = Server::start_with_policy(admins_policy()).await;
    let ada = s.create_user("ada").await;
    let ops = group(&s, "ops", &[&ada]).await;
    let token = s.open_session("ada").await["access_token"].as_str().unwrap().to_owned();
    let check = |groups: Value| {
        let s = &s;
        let token = token.clone();
        async move {
            let r = s.post("/v1/check", json!({"token": token, "groups": groups})).await;
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.unwrap()
        }
    };
    let allowed = check(json!(["OPS"])).await;
    assert_eq!(allowed["allow"], true, "{allowed}");
    assert_eq!(allowed["sub"], ada.as_str());
    remove_member(&s, &ops, &ada).await;
    // The token is still active (ops confers no tier)…
    assert_eq!(s.introspect(&token).await["active"], true);
    // …but the fresh decision denies, and says why.
    let denied = check(json!(["ops"])).await;
    assert_eq!(denied["allow"], false);
    assert!(denied["reasons"].to_string().contains("not a member of ops"), "{denied}");
    let r = s.post("/v1/check", json!({"token": "garbage", "groups": []})).await;
    assert_eq!(r.json::<Value>().await.unwrap()["allow"], false);
    // Only an introspect credential may ask.
    let r = s.post("/v1/clients", json!({"name": "scim-only", "scopes": ["scim"]})).await;
    let secret = r.json::<Value>().await.unwrap()["client_secret"].as_str().unwrap().to_owned();
    let r = s
        .http
        .post(s.url("/v1/check"))
        .bearer_auth(secret)
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn max_sessions_revokes_the_oldest_and_idle_sessions_go_inactive() {
    let s = Server::start_with_policy(policy(vec![(
        "standard",
        TierConfig { max_sessions: Some(2), idle_timeout: Some("10m".into()), ..TierConfig::default() },
    )]))
    .await;
    s.create_user("many").await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let r = s.post("/v1/sessions", json!({"subject": "many", "ttl": "1h"})).await;
        tokens.push(r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(s.introspect(&tokens[0]).await["active"], false, "the oldest went");
    assert_eq!(s.introspect(&tokens[1]).await["active"], true);
    assert_eq!(s.introspect(&tokens[2]).await["active"], true);
    let revoked = s.audit().await.into_iter().find(|r| r["kind"] == "session.revoked").unwrap();
    assert_eq!(revoked["actor"], "policy/standard.max_sessions");
    // Unused for longer than the idle timeout: inactive; used within it: active.
    s.clock.advance(Duration::from_secs(8 * 60));
    assert_eq!(s.introspect(&tokens[2]).await["active"], true);
    s.clock.advance(Duration::from_secs(8 * 60));
    assert_eq!(s.introspect(&tokens[1]).await["active"], false, "16 minutes idle");
    assert_eq!(s.introspect(&tokens[2]).await["active"], true, "8 minutes since its last use");
}

/// Deleting a privileged group whose members hold a thousand sessions is
/// answered once the cut is in force, before the session store has
/// recorded it (`EarlyAck`): right after the 204 every token introspects
/// inactive, and the audit trail, read at once, already holds each
/// revocation exactly once.
#[tokio::test]
async fn a_mass_cut_is_answered_in_force_and_its_record_is_never_seen_missing() {
    let s = Server::start_with_policy(admins_policy()).await;
    let per_member = 10;
    let members = lockstep_engine::EARLY_ACK_SESSIONS.div_ceil(per_member);
    let mut ids = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..members {
        let name = format!("admin{i}");
        ids.push(s.create_user(&name).await);
        for _ in 0..per_member {
            let opened = s.open_session(&name).await;
            tokens.push(opened["access_token"].as_str().unwrap().to_owned());
        }
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let admins = group(&s, "prod-admins", &refs).await;
    assert_eq!(s.introspect(&tokens[0]).await["tier"], json!("privileged"));
    let r = s
        .http
        .delete(s.url(&format!("/scim/v2/Groups/{admins}")))
        .bearer_auth(super::ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let mut revoked = 0;
    let mut after = 0;
    loop {
        let page: Value = s.get(&format!("/v1/audit?after={after}&limit=1000")).await.json().await.unwrap();
        revoked += page["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"] == json!("session.revoked"))
            .count();
        match page["next_after"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(revoked, tokens.len(), "every acknowledged revocation recorded, once");
    for token in &tokens {
        assert_eq!(s.introspect(token).await["active"], json!(false));
    }
}
