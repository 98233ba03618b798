//! Directory sources end to end: the real `lockstep` binary with an LDAP
//! source over a real slapd (syncrepl and poll), an Active Directory source
//! over a real Samba AD DC, and an HR file imported with `lockstep import`.
//! Every check goes through the public surface: SCIM, the admin API,
//! introspection, the audit trail and the CLI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lockstep_source_ldap::testing::{PEOPLE, Slapd};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

mod common;

use common::BIN;
const ADMIN: &str = "sources-test-admin-token-0123456789";
const GROUPS: &str = "ou=groups,dc=example,dc=com";

/// A running server (killed and reaped when dropped).
struct Server {
    _process: common::Process,
    base: String,
    http: Client,
}

fn start(dir: &Path, config: &str) -> Server {
    let path = dir.join("lockstep.toml");
    std::fs::write(&path, config).unwrap();
    let (process, base) = common::listening(
        common::serve(&dir.join("data"), ADMIN)
            .args(["--durability", "normal", "--config"])
            .arg(&path)
            .env("LDAP_BIND_PW", "adminpw")
            .env("AD_BIND_PW", lockstep_source_ldap::testing::AD_PW),
    );
    Server { _process: process, base, http: Client::new() }
}

impl Server {
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self.http.get(format!("{}{path}", self.base)).bearer_auth(ADMIN).send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

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

    /// The SCIM user with this userName, if any.
    async fn user(&self, name: &str) -> Option<Value> {
        let filter = format!("userName eq \"{name}\"").replace(' ', "%20").replace('"', "%22");
        let r = self
            .http
            .get(format!("{}/scim/v2/Users?filter={filter}", self.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        v["Resources"].as_array().and_then(|a| a.first().cloned())
    }

    /// Opens a session; the access token.
    async fn session(&self, subject: &str) -> String {
        let (status, body) = self
            .send(reqwest::Method::POST, "/v1/sessions", json!({ "subject": subject, "ttl": "30m" }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// The introspection answer for a token.
    async fn introspect(&self, token: &str) -> Value {
        let r = self
            .http
            .post(format!("{}/oauth2/introspect", self.base))
            .bearer_auth(ADMIN)
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    async fn active(&self, token: &str) -> bool {
        self.introspect(token).await["active"] == json!(true)
    }

    async fn source(&self, name: &str) -> Value {
        let (status, body) = self.get("/v1/sources").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["sources"].as_array().unwrap().iter().find(|s| s["name"] == json!(name)).cloned().unwrap()
    }

    async fn audit(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let (_, page) = self.get(&format!("/v1/audit?after={after}&limit=1000")).await;
            let records = page["records"].as_array().cloned().unwrap_or_default();
            out.extend(records);
            match page["next_after"].as_u64() {
                Some(n) => after = n,
                None => return out,
            }
        }
    }
}

/// Polls `check` every 20 ms until it holds.
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

const WAIT: Duration = Duration::from_secs(20);

fn ldap_config(slapd: &Slapd, mode: &str, extra: &str) -> String {
    format!(
        "[policy.tiers.privileged]\ngroups = [\"prod-admins\"]\n\n\
         [[source]]\nname = \"corp-ldap\"\nkind = \"ldap\"\nurl = \"{}\"\n\
         bind_dn = \"cn=admin,dc=example,dc=com\"\nbind_password_env = \"LDAP_BIND_PW\"\n\
         base_dn = \"ou=people,dc=example,dc=com\"\ngroup_base_dn = \"ou=groups,dc=example,dc=com\"\n\
         mode = \"{mode}\"\npoll_interval = \"1s\"\nmax_staleness = \"2m\"\n\
         disabled_filter = \"(employeeType=disabled)\"\n{extra}",
        slapd.url
    )
}

fn add_user(slapd: &Slapd, uid: &str) {
    slapd.add_user(uid, "");
}

fn add_group(slapd: &Slapd, cn: &str, members: &[&str]) {
    // groupOfNames needs a member even when every user has left it: the
    // admin entry (not a user, so never synced as one) stays in each group.
    let mut members: String = members.iter().map(|m| format!("member: uid={m},{PEOPLE}\n")).collect();
    members.push_str("member: cn=admin,dc=example,dc=com\n");
    slapd.ldapadd(&format!("dn: cn={cn},{GROUPS}\nobjectClass: groupOfNames\ncn: {cn}\n{members}"));
}

/// The directory lifecycle both modes must carry to sessions.
async fn lifecycle(mode: &str) {
    let Some(slapd) = Slapd::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &ldap_config(&slapd, mode, ""));
    // The seeded alice arrives as a SCIM identity owned by the source.
    eventually("alice synced", WAIT, || async { server.user("alice").await.is_some() }).await;
    // A user added in LDAP appears.
    add_user(&slapd, "bob");
    add_user(&slapd, "carol");
    eventually("bob synced", WAIT, || async { server.user("bob").await.is_some() }).await;
    eventually("carol synced", WAIT, || async { server.user("carol").await.is_some() }).await;
    let alice = server.user("alice").await.unwrap();
    assert_eq!(alice["emails"][0]["value"], json!("alice@example.com"), "{alice}");
    // SCIM cannot write what the LDAP source owns.
    let id = alice["id"].as_str().unwrap();
    let (status, body) = server
        .send(
            reqwest::Method::PATCH,
            &format!("/scim/v2/Users/{id}"),
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "replace", "path": "active", "value": false}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("corp-ldap"), "{body}");
    // Membership of a tier-conferring group makes bob privileged; removal
    // from it revokes his session through the policy.
    add_group(&slapd, "prod-admins", &["bob"]);
    let bob = server.session("bob").await;
    eventually("bob privileged", WAIT, || async {
        let claims = server.introspect(&bob).await;
        claims["tier"].as_str().is_some_and(|t| t.contains("privileged"))
    })
    .await;
    slapd.ldapmodify(&format!(
        "dn: cn=prod-admins,{GROUPS}\nchangetype: modify\ndelete: member\nmember: uid=bob,{PEOPLE}\n"
    ));
    eventually("bob's session revoked by the group removal", WAIT, || async { !server.active(&bob).await })
        .await;
    // A user whose entry starts matching disabled_filter loses its sessions.
    let alice_token = server.session("alice").await;
    slapd.ldapmodify(&format!(
        "dn: uid=alice,{PEOPLE}\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n"
    ));
    eventually("alice's session cut by disabled_filter", WAIT, || async {
        !server.active(&alice_token).await
    })
    .await;
    // A deleted user loses its sessions and its identity.
    let carol = server.session("carol").await;
    slapd.ldapdelete(&format!("uid=carol,{PEOPLE}"));
    eventually("carol's session cut by the deletion", WAIT, || async { !server.active(&carol).await }).await;
    eventually("carol gone", WAIT, || async { server.user("carol").await.is_none() }).await;
    let status = server.source("corp-ldap").await;
    assert_eq!(status["mode"], json!(mode));
    assert!(status["identities"].as_u64().unwrap() >= 2, "{status}");
    // The bridge writes the audit record after the cut is in force.
    eventually("the deletion audited with the source as its actor", WAIT, || async {
        server.audit().await.iter().any(|r| {
            r["kind"] == json!("directory.identity_deleted") && r["actor"] == json!("corp-ldap/sync")
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_syncrepl_reaches_sessions() {
    lifecycle("syncrepl").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_poll_reaches_sessions() {
    lifecycle("poll").await;
}

/// The syncrepl cookie is committed with the writes it produced: a server
/// killed with SIGKILL in the middle of a burst resumes from it and applies
/// every change exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_syncrepl_cookie_survives_kill_9_with_no_event_applied_twice() {
    let Some(slapd) = Slapd::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = ldap_config(&slapd, "syncrepl", "");
    let server = start(dir.path(), &config);
    eventually("alice synced", WAIT, || async { server.user("alice").await.is_some() }).await;
    for n in 0..20 {
        add_user(&slapd, &format!("burst{n}"));
        if n == 10 {
            eventually("the burst started to arrive", WAIT, || async {
                server.user("burst3").await.is_some()
            })
            .await;
        }
    }
    drop(server); // SIGKILL, mid-burst or just after
    for n in 20..25 {
        add_user(&slapd, &format!("burst{n}")); // while the server is down
    }
    slapd.ldapdelete(&format!("uid=burst0,{PEOPLE}"));
    let server = start(dir.path(), &config);
    eventually("every change applied after the restart", WAIT, || async {
        server.user("burst24").await.is_some() && server.user("burst0").await.is_none()
    })
    .await;
    // The audit records are the bridge's, written after the directory
    // commit a SCIM read already sees: wait for all of them, then give a
    // replay a chance to show up twice, and count.
    let created = |audit: &[Value], name: &str| {
        audit
            .iter()
            .filter(|r| r["kind"] == json!("directory.identity_created") && r["username"] == json!(name))
            .count()
    };
    eventually("every creation and the deletion audited", WAIT, || async {
        let audit = server.audit().await;
        (0..25).all(|n| created(&audit, &format!("burst{n}")) > 0)
            && audit.iter().any(|r| r["kind"] == json!("directory.identity_deleted"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let audit = server.audit().await;
    for n in 0..25 {
        let name = format!("burst{n}");
        let created = created(&audit, &name);
        assert_eq!(created, 1, "{name} created {created} times");
    }
    let deleted = audit
        .iter()
        .filter(|r| r["kind"] == json!("directory.identity_deleted") && r["username"] == json!("burst0"))
        .count();
    assert_eq!(deleted, 1);
    let out = Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// slapd stopped beyond max_staleness suspends a privileged user's session
/// while a standard user's stays active; slapd back resumes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_ldap_source_fails_privileged_access_closed() {
    let Some(mut slapd) = Slapd::start() else { return };
    add_user(&slapd, "root");
    add_group(&slapd, "prod-admins", &["root"]);
    let dir = tempfile::tempdir().unwrap();
    let config =
        ldap_config(&slapd, "syncrepl", "").replace("max_staleness = \"2m\"", "max_staleness = \"3s\"");
    let server = start(dir.path(), &config);
    eventually("root synced", WAIT, || async { server.user("root").await.is_some() }).await;
    // A source not yet complete counts its staleness from its start: on a
    // slow first refresh it may be stale for a moment, and then refuses a
    // privileged session (as it should).
    eventually("the source live and fresh", WAIT, || async {
        let s = server.source("corp-ldap").await;
        s["state"] == json!("live") && s["stale"] == json!(false)
    })
    .await;
    let root = server.session("root").await;
    let alice = server.session("alice").await;
    eventually("root privileged", WAIT, || async {
        server.introspect(&root).await["tier"].as_str().is_some_and(|t| t.contains("privileged"))
    })
    .await;
    assert_eq!(server.source("corp-ldap").await["state"], json!("live"));
    slapd.kill();
    eventually("root suspended once the source is staler than 3 s", WAIT, || async {
        !server.active(&root).await
    })
    .await;
    assert!(server.active(&alice).await, "a standard user's session is untouched");
    let status = server.source("corp-ldap").await;
    assert_eq!(status["stale"], json!(true), "{status}");
    assert!(status["staleness_seconds"].as_f64().unwrap() > 3.0, "{status}");
    let (code, body) = server.send(reqwest::Method::POST, "/v1/sessions", json!({"subject": "root"})).await;
    assert_eq!(code, StatusCode::CONFLICT, "no new privileged session while stale: {body}");
    let metrics =
        server.http.get(format!("{}/metrics", server.base)).bearer_auth(ADMIN).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("lockstep_source_staleness_seconds{source=\"corp-ldap\"}"), "{metrics}");
    slapd.launch();
    eventually("root resumed once slapd is back", Duration::from_secs(90), || async {
        server.active(&root).await
    })
    .await;
    assert_eq!(server.source("corp-ldap").await["stale"], json!(false));
}

/// Deleting 25 of 30 LDAP users in a few seconds: deletions past the
/// threshold (20) are held until approved; a single deletion is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mass_ldap_deletion_is_held_until_approved() {
    let Some(slapd) = Slapd::start() else { return };
    let ldif: String = (0..29)
        .map(|n| {
            format!(
                "dn: uid=m{n},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: m{n}\ncn: m{n}\nsn: m\nmail: m{n}@example.com\n\n"
            )
        })
        .collect();
    slapd.ldapadd(&ldif); // with alice: 30 users
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &ldap_config(&slapd, "syncrepl", ""));
    eventually("30 users synced", WAIT, || async {
        server.source("corp-ldap").await["identities"] == json!(30)
    })
    .await;
    let last = server.session("m24").await;
    for n in 0..25 {
        slapd.ldapdelete(&format!("uid=m{n},{PEOPLE}"));
    }
    eventually("25 deletions seen, 5 of them held", WAIT, || async {
        let s = server.source("corp-ldap").await;
        s["identities"] == json!(10) && s["held"].as_array().is_some_and(|h| h.len() == 5)
    })
    .await;
    assert!(server.active(&last).await, "a held deletion cuts nothing");
    assert!(server.audit().await.iter().any(|r| r["kind"] == json!("directory.sync_held")));
    let out = Command::new(BIN)
        .args(["sources", "approve", "corp-ldap", "--url", &server.base, "--token", ADMIN])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("5 deleted"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!server.active(&last).await, "approved: the held deletion applied");
    assert_eq!(server.source("corp-ldap").await["identities"], json!(5));
    // A single deletion afterwards is never held.
    slapd.ldapdelete(&format!("uid=m25,{PEOPLE}"));
    eventually("a single deletion applies", WAIT, || async { server.user("m25").await.is_none() }).await;
    assert!(server.source("corp-ldap").await["held"].as_array().unwrap().is_empty());
}

fn import(server: &Server, file: &Path, dry_run: bool) -> (i32, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["import", "--source", "hr"])
        .arg(file)
        .args(["--url", &server.base])
        .env("LOCKSTEP_TOKEN", ADMIN);
    if dry_run {
        cmd.arg("--dry-run");
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains(ADMIN), "the token is never printed");
    (out.status.code().unwrap_or(-1), format!("{}{stderr}", String::from_utf8_lossy(&out.stdout)))
}

/// A CSV import with --dry-run changes nothing; the real import applies the
/// same plan; rows that disappear are deactivated, cutting their sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_import_dry_run_changes_nothing_and_the_import_applies_the_same_plan() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "[[source]]\nname = \"hr\"\nkind = \"file\"\nmax_staleness = \"25h\"\n");
    let csv = dir.path().join("hr.csv");
    std::fs::write(
        &csv,
        "externalId,userName,email,displayName,active\n\
         E1,ann,ann@example.com,Ann,true\nE2,ben,ben@example.com,Ben,true\nE3,cat,,Cat,false\n",
    )
    .unwrap();
    let (code, plan) = import(&server, &csv, true);
    assert_eq!(code, 0, "{plan}");
    assert!(plan.contains("dry run") && plan.contains("create            3"), "{plan}");
    assert!(server.user("ann").await.is_none(), "a dry run changes nothing");
    let (code, applied) = import(&server, &csv, false);
    assert_eq!(code, 0, "{applied}");
    assert!(applied.contains("create            3"), "the same plan: {applied}");
    assert!(applied.contains("3 created"), "{applied}");
    let ann = server.user("ann").await.unwrap();
    assert_eq!(ann["externalId"], json!("E1"));
    assert_eq!(server.user("cat").await.unwrap()["active"], json!(false));
    // Ben leaves HR: his row disappears.
    let token = server.session("ben").await;
    std::fs::write(
        &csv,
        "externalId,userName,email,displayName,active\nE1,ann,ann@example.com,Ann,true\nE3,cat,,Cat,false\n",
    )
    .unwrap();
    let (_, plan) = import(&server, &csv, true);
    assert!(plan.contains("- ben (E2): 1 session(s)"), "{plan}");
    assert!(server.active(&token).await, "a dry run cuts nothing");
    let (code, applied) = import(&server, &csv, false);
    assert_eq!(code, 0, "{applied}");
    assert!(!server.active(&token).await, "ben's session is cut");
    assert_eq!(server.user("ben").await.unwrap()["active"], json!(false));
    // A bad file names the line and the field; nothing is sent.
    std::fs::write(&csv, "externalId,userName\nE9,\n").unwrap();
    let (code, out) = import(&server, &csv, false);
    assert_ne!(code, 0);
    assert!(out.contains("line 2") && out.contains("userName"), "{out}");
    let status = server.source("hr").await;
    assert_eq!(status["kind"], json!("file"));
    assert!(status["staleness_seconds"].as_f64().unwrap() < 60.0, "{status}");
}

/// Against a real Active Directory (Samba): a user disabled through
/// userAccountControl, a deleted user and a group removal reach sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_directory_changes_reach_sessions() {
    use lockstep_source_ldap::testing::{AD_ADMIN, AD_USERS, Samba};
    let Some(samba) = Samba::start() else { return };
    let pw = "Str0ng-Passw0rd!";
    for u in ["dora", "eli", "fay"] {
        samba.tool(&["user", "create", u, pw]);
    }
    samba.tool(&["group", "add", "prod-admins"]);
    samba.tool(&["group", "addmembers", "prod-admins", "eli"]);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[policy.tiers.privileged]\ngroups = [\"prod-admins\"]\n\n\
         [[source]]\nname = \"corp-ad\"\nkind = \"ldap\"\npreset = \"active_directory\"\nurl = \"ldap://127.0.0.1:389\"\n\
         bind_dn = \"{AD_ADMIN}\"\nbind_password_env = \"AD_BIND_PW\"\nbase_dn = \"{AD_USERS}\"\ngroup_base_dn = \"{AD_USERS}\"\n\
         poll_interval = \"1s\"\nmax_staleness = \"10m\"\n"
    );
    let server = start(dir.path(), &config);
    for u in ["dora", "eli", "fay"] {
        eventually(&format!("{u} synced"), Duration::from_secs(60), || async {
            server.user(u).await.is_some()
        })
        .await;
    }
    let guid = samba.guid("user", "dora");
    assert_eq!(server.user("dora").await.unwrap()["externalId"], json!(guid), "keyed on objectGUID");
    let dora = server.session("dora").await;
    let eli = server.session("eli").await;
    let fay = server.session("fay").await;
    eventually("eli privileged", WAIT, || async {
        server.introspect(&eli).await["tier"].as_str().is_some_and(|t| t.contains("privileged"))
    })
    .await;
    samba.tool(&["user", "disable", "dora"]);
    eventually("dora's session cut by userAccountControl", WAIT, || async { !server.active(&dora).await })
        .await;
    samba.tool(&["group", "removemembers", "prod-admins", "eli"]);
    eventually("eli's session cut by the group removal", WAIT, || async { !server.active(&eli).await }).await;
    samba.tool(&["user", "delete", "fay"]);
    eventually("fay's session cut by the deletion", WAIT, || async { !server.active(&fay).await }).await;
    eventually("fay gone", WAIT, || async { server.user("fay").await.is_none() }).await;
}
