//! The authorization matrix, checked: every route the router serves has a
//! row in `lockstep_http::ACCESS`, and every row holds for no credential, a
//! malformed one, a wrong one, the admin token and a client of each scope.

use lockstep_domain::Scope;
use lockstep_http::{ACCESS, Access};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{ADMIN, Server};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// A concrete path for a route pattern.
fn concrete(route: &str) -> String {
    route
        .replace("{id}", "01a21faf-853b-7d77-8f3c-2f05024fa262")
        .replace("{credential_id}", "01a21faf-853b-7d77-8f3c-2f05024fa263")
        .replace("{position}", "1")
}

async fn call(s: &Server, method: &str, route: &str, auth: Option<&str>) -> StatusCode {
    let mut req = s.http.request(Method::from_bytes(method.as_bytes()).unwrap(), s.url(&concrete(route)));
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    if method != "GET" && method != "DELETE" {
        req = req.header("content-type", "application/json").body("{}");
    }
    req.send().await.unwrap().status()
}

fn denied(status: StatusCode) -> bool {
    status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN
}

#[tokio::test]
async fn every_route_has_a_row_and_every_row_holds_for_every_credential() {
    let s = Server::start().await;
    // One client per scope.
    let mut clients = Vec::new();
    for scope in Scope::ALL {
        let r = s
            .post(
                "/v1/clients",
                json!({"name": format!("only-{}", scope.as_str()), "scopes": [scope.as_str()]}),
            )
            .await;
        let c: Value = r.json().await.unwrap();
        clients.push((*scope, format!("Bearer {}", c["client_secret"].as_str().unwrap())));
    }
    let admin = format!("Bearer {ADMIN}");

    // Every (method, route) the router serves — it answers something other
    // than 405 — must have a row.
    for (route, _) in lockstep_http::routes() {
        for method in METHODS {
            let status = call(&s, method, route, Some(&admin)).await;
            let row = ACCESS.iter().find(|(m, r, _)| *m == method && *r == route);
            if status == StatusCode::METHOD_NOT_ALLOWED {
                assert!(row.is_none(), "{method} {route} has a row but is not served");
            } else {
                assert!(row.is_some(), "{method} {route} is served ({status}) but has no row in ACCESS");
            }
        }
    }

    let mut checked = 0;
    for (method, route, access) in ACCESS {
        let anonymous =
            [None, Some("Bearer"), Some("Basic !!!not-base64"), Some("Bearer wrong-token"), Some("Digest x")];
        for auth in anonymous {
            let status = call(&s, method, route, auth).await;
            match access {
                Access::Anyone => assert!(!denied(status), "{method} {route} {auth:?}: {status}"),
                Access::PushToken => {
                    assert!(
                        denied(status) || status == StatusCode::NOT_FOUND,
                        "{method} {route} {auth:?}: {status}"
                    )
                }
                _ => assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {route} {auth:?}"),
            }
            checked += 1;
        }
        let status = call(&s, method, route, Some(&admin)).await;
        if *access == Access::PushToken {
            // Only the transmitter's push token; with no such source
            // configured, the route names nothing.
            assert!(denied(status) || status == StatusCode::NOT_FOUND, "{method} {route} admin: {status}");
            continue;
        }
        assert!(!denied(status), "{method} {route} admin: {status}");
        for (scope, auth) in &clients {
            let status = call(&s, method, route, Some(auth)).await;
            let allowed = match access {
                Access::Anyone => true,
                Access::Admin => false,
                Access::Scopes(scopes) => scopes.contains(scope),
                Access::TokenEndpoint => *scope == Scope::Sessions,
                Access::PushToken => false,
            };
            if allowed {
                assert!(!denied(status), "{method} {route} as {}: {status}", scope.as_str());
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{method} {route} as {}", scope.as_str());
            }
            checked += 1;
        }
    }
    assert!(checked > 200, "{checked}");
}
