//! The request shapes real provisioning clients send, exactly as they send
//! them (Okta Group Push, Microsoft Entra ID), and the root `/.search`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{GROUP, PATCH, Server, USER};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

impl Server {
    async fn json_of(&self, r: reqwest::Response, expect: StatusCode) -> Value {
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, expect, "{body}");
        body
    }

    async fn put(&self, path: &str, body: Value) -> reqwest::Response {
        self.http.put(self.url(path)).bearer_auth(super::ADMIN).json(&body).send().await.unwrap()
    }
}

fn member_values(group: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = group["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| {
                    (m["value"].as_str().unwrap().to_owned(), m["display"].as_str().unwrap_or("").to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[tokio::test]
async fn okta_group_push_keeps_members_with_display() {
    let s = Server::start().await;
    let ann = s.create_user("ann").await;
    let bob = s.create_user("bob").await;
    let cat = s.create_user("cat").await;
    // POST with members carrying display.
    let created = s
        .post(
            "/scim/v2/Groups?attributes=displayName,members.value,members.display",
            json!({"schemas": [GROUP], "displayName": "okta-eng", "members": [{"value": ann, "display": "ann"}]}),
        )
        .await;
    let group = s.json_of(created, StatusCode::CREATED).await;
    let gid = group["id"].as_str().unwrap().to_owned();
    assert_eq!(member_values(&group), [(ann.clone(), "ann".to_owned())]);
    // Without asking, a client gets back exactly the members it sent.
    let plain = s.json_of(s.get(&format!("/scim/v2/Groups/{gid}")).await, StatusCode::OK).await;
    assert!(plain["members"][0].get("display").is_none(), "{plain}");
    let path = format!("/scim/v2/Groups/{gid}?attributes=displayName,members.value,members.display");
    // replace of members, with display.
    let r = s
        .patch(
            &path,
            json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "members", "value": [
            {"value": ann, "display": "ann"}, {"value": bob, "display": "bob"}]}]}),
        )
        .await;
    let group = s.json_of(r, StatusCode::OK).await;
    assert_eq!(member_values(&group).len(), 2);
    // Remove one by a value filter and add another, in one PATCH.
    let r = s
        .patch(
            &path,
            json!({"schemas": [PATCH], "Operations": [
            {"op": "remove", "path": format!("members[value eq \"{ann}\"]")},
            {"op": "add", "path": "members", "value": [{"value": cat, "display": "cat"}]}]}),
        )
        .await;
    let group = s.json_of(r, StatusCode::OK).await;
    let mut expect = vec![(bob.clone(), "bob".to_owned()), (cat.clone(), "cat".to_owned())];
    expect.sort();
    assert_eq!(member_values(&group), expect);
    // Rename by a path-less replace with id and displayName: members kept.
    let r = s
        .patch(&path, json!({"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"id": gid, "displayName": "okta-eng-2"}}]}))
        .await;
    let group = s.json_of(r, StatusCode::OK).await;
    assert_eq!((group["displayName"].as_str(), member_values(&group)), (Some("okta-eng-2"), expect.clone()));
    // A PUT that omits members keeps them.
    let r = s.put(&path, json!({"schemas": [GROUP], "id": gid, "displayName": "okta-eng-3"})).await;
    let group = s.json_of(r, StatusCode::OK).await;
    assert_eq!(member_values(&group), expect);
    // A PUT with members (and display) sets them.
    let r = s
        .put(&path, json!({"schemas": [GROUP], "displayName": "okta-eng-3", "members": [{"value": ann, "display": "whatever"}]}))
        .await;
    let group = s.json_of(r, StatusCode::OK).await;
    assert_eq!(
        member_values(&group),
        [(ann.clone(), "ann".to_owned())],
        "display is rendered from the member"
    );
    // Filtering by displayName finds it, members and all.
    let r = s.get("/scim/v2/Groups?filter=displayName%20eq%20%22okta-eng-3%22&attributes=members.value,members.display").await;
    let list = s.json_of(r, StatusCode::OK).await;
    assert_eq!(list["totalResults"], json!(1));
    assert_eq!(member_values(&list["Resources"][0]), [(ann, "ann".to_owned())]);
}

#[tokio::test]
async fn entra_sets_and_clears_the_manager_with_a_plain_string() {
    let s = Server::start().await;
    let boss = s.create_user("boss").await;
    let emp = s.create_user("emp").await;
    let path = format!("/scim/v2/Users/{emp}");
    let manager = |u: &Value| u[ENTERPRISE]["manager"]["value"].clone();
    let r = s
        .patch(&path, json!({"schemas": [PATCH], "Operations": [{"op": "Add", "path": format!("{ENTERPRISE}:manager"), "value": boss}]}))
        .await;
    assert_eq!(manager(&s.json_of(r, StatusCode::OK).await), json!(boss));
    let r = s
        .patch(&path, json!({"schemas": [PATCH], "Operations": [{"op": "Replace", "path": format!("{ENTERPRISE}:manager"), "value": ""}]}))
        .await;
    assert_eq!(manager(&s.json_of(r, StatusCode::OK).await), Value::Null, "\"\" clears it");
    let r = s
        .patch(&path, json!({"schemas": [PATCH], "Operations": [{"op": "Replace", "value": {format!("{ENTERPRISE}:manager"): boss}}]}))
        .await;
    assert_eq!(manager(&s.json_of(r, StatusCode::OK).await), json!(boss), "inside a path-less replace");
    let r = s
        .patch(&path, json!({"schemas": [PATCH], "Operations": [{"op": "Replace", "value": {ENTERPRISE: {"manager": ""}}}]}))
        .await;
    assert_eq!(manager(&s.json_of(r, StatusCode::OK).await), Value::Null);
}

#[tokio::test]
async fn entra_filters_a_work_email_through_a_sub_attribute_after_the_value_filter() {
    let s = Server::start().await;
    let r = s
        .post(
            "/scim/v2/Users",
            json!({"schemas": [USER], "userName": "eve", "emails": [
                {"value": "eve@home.example", "type": "home"}, {"value": "eve@work.example", "type": "work"}]}),
        )
        .await;
    s.json_of(r, StatusCode::CREATED).await;
    let q = |f: &str| format!("/scim/v2/Users?filter={}", f.replace(' ', "%20").replace('"', "%22"));
    let hit = s
        .json_of(s.get(&q("emails[type eq \"work\"].value eq \"eve@work.example\"")).await, StatusCode::OK)
        .await;
    assert_eq!(hit["totalResults"], json!(1), "{hit}");
    let miss = s
        .json_of(s.get(&q("emails[type eq \"work\"].value eq \"eve@home.example\"")).await, StatusCode::OK)
        .await;
    assert_eq!(miss["totalResults"], json!(0), "the type and the value must hold of one address");
}

#[tokio::test]
async fn the_root_search_spans_users_and_groups() {
    let s = Server::start().await;
    let ann = s.create_user("ann").await;
    s.create_user("bob").await;
    let r = s
        .post(
            "/scim/v2/Groups",
            json!({"schemas": [GROUP], "displayName": "ops", "members": [{"value": ann}]}),
        )
        .await;
    s.json_of(r, StatusCode::CREATED).await;
    let search = |body: Value| s.post("/scim/v2/.search", body);
    let all = s.json_of(search(json!({"schemas": [SEARCH]})).await, StatusCode::OK).await;
    assert_eq!(all["totalResults"], json!(3));
    let types: Vec<&str> = all["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["meta"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["User", "User", "Group"]);
    let page = s
        .json_of(search(json!({"schemas": [SEARCH], "startIndex": 2, "count": 2})).await, StatusCode::OK)
        .await;
    let names: Vec<&str> = page["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["userName"].as_str().or(r["displayName"].as_str()).unwrap())
        .collect();
    assert_eq!(names, ["bob", "ops"]);
    let users = s
        .json_of(search(json!({"schemas": [SEARCH], "filter": "userName eq \"ann\""})).await, StatusCode::OK)
        .await;
    assert_eq!(users["totalResults"], json!(1));
    let groups = s
        .json_of(
            search(json!({"schemas": [SEARCH], "filter": "displayName eq \"ops\""})).await,
            StatusCode::OK,
        )
        .await;
    assert_eq!(groups["totalResults"], json!(1), "{groups}");
    let bad = search(json!({"schemas": [SEARCH], "filter": "userName eq"})).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}
