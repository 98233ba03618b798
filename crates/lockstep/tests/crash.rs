//! Nothing lost: the real `lockstep` binary under load, killed with SIGKILL
//! at random moments, restarted on the same data directory.
//!
//! After every restart, every revocation that had been acknowledged (a 2xx
//! answer to a SCIM deactivation or deletion, a `DELETE /v1/sessions/{id}`,
//! or an RFC 7009 revocation) must still introspect inactive, every session
//! whose creation was acknowledged and never revoked must still be active,
//! and `lockstep audit verify` must pass. Cycles: `LOCKSTEP_CRASH_CYCLES`
//! (default 30); the random seed is printed so a failure can be replayed
//! with `LOCKSTEP_CRASH_SEED`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_lockstep");
const ADMIN: &str = "crash-test-admin-token-0123456789";

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A running server; killed (SIGKILL) and reaped when dropped, so a failing
/// assertion never leaves a server behind.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path) -> (Server, String) {
    let child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("LOCKSTEP_ADMIN_TOKEN", ADMIN)
        .env("LOCKSTEP_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let stdout = server.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "server did not start");
        let line = lines.next().expect("server exited before listening").unwrap();
        if let Some(addr) = line.strip_prefix("lockstep: listening on ") {
            // Keep draining stdout so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return (server, addr.trim().to_owned());
        }
    }
}

#[derive(Default)]
struct Ledger {
    /// Tokens whose revocation was acknowledged.
    revoked: HashSet<String>,
    /// Tokens whose creation was acknowledged and which were never asked to
    /// be revoked.
    active: HashSet<String>,
    acknowledged_revocations: usize,
}

async fn worker(base: String, http: Client, ledger: Arc<Mutex<Ledger>>, seed: u64, worker: u64) {
    let mut rng = Rng(seed ^ (worker + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut n = 0u64;
    loop {
        n += 1;
        let name = format!("w{worker}-s{seed}-{n}-{}", rng.next());
        let Ok(r) = http
            .post(format!("{base}/scim/v2/Users"))
            .bearer_auth(ADMIN)
            .json(&json!({"userName": name, "active": true}))
            .send()
            .await
        else {
            return;
        };
        if r.status() != StatusCode::CREATED {
            return;
        }
        let Ok(user) = r.json::<Value>().await else { return };
        let id = user["id"].as_str().unwrap().to_owned();
        let mut tokens = Vec::new();
        for _ in 0..2 {
            let Ok(r) = http
                .post(format!("{base}/v1/sessions"))
                .bearer_auth(ADMIN)
                .json(&json!({"subject": id, "ttl": "1h"}))
                .send()
                .await
            else {
                return;
            };
            if r.status() != StatusCode::CREATED {
                return;
            }
            let Ok(s) = r.json::<Value>().await else { return };
            let token = s["access_token"].as_str().unwrap().to_owned();
            let sid = s["session_id"].as_str().unwrap().to_owned();
            ledger.lock().unwrap().active.insert(token.clone());
            tokens.push((token, sid));
        }
        // Whatever happens next, these tokens are no longer promised active.
        let asked = |ledger: &Arc<Mutex<Ledger>>, t: &str| {
            ledger.lock().unwrap().active.remove(t);
        };
        let ack = |ledger: &Arc<Mutex<Ledger>>, ts: &[&str]| {
            let mut l = ledger.lock().unwrap();
            for t in ts {
                l.revoked.insert((*t).to_owned());
            }
            l.acknowledged_revocations += 1;
        };
        match rng.below(4) {
            0 | 1 => {
                for (t, _) in &tokens {
                    asked(&ledger, t);
                }
                let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                                  "Operations": [{"op": "replace", "path": "active", "value": false}]});
                let r = http
                    .patch(format!("{base}/scim/v2/Users/{id}"))
                    .bearer_auth(ADMIN)
                    .json(&body)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == StatusCode::OK => ack(&ledger, &[&tokens[0].0, &tokens[1].0]),
                    _ => return,
                }
            }
            2 => {
                for (t, _) in &tokens {
                    asked(&ledger, t);
                }
                let r = http.delete(format!("{base}/scim/v2/Users/{id}")).bearer_auth(ADMIN).send().await;
                match r {
                    Ok(r) if r.status() == StatusCode::NO_CONTENT => {
                        ack(&ledger, &[&tokens[0].0, &tokens[1].0])
                    }
                    _ => return,
                }
            }
            _ => {
                let (t0, s0) = &tokens[0];
                asked(&ledger, t0);
                let r = http.delete(format!("{base}/v1/sessions/{s0}")).bearer_auth(ADMIN).send().await;
                match r {
                    Ok(r) if r.status() == StatusCode::NO_CONTENT => ack(&ledger, &[t0]),
                    _ => return,
                }
                let t1 = &tokens[1].0;
                asked(&ledger, t1);
                let r = http
                    .post(format!("{base}/oauth2/revoke"))
                    .bearer_auth(ADMIN)
                    .form(&[("token", t1.as_str())])
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == StatusCode::OK => ack(&ledger, &[t1]),
                    _ => return,
                }
            }
        }
    }
}

async fn active(http: &Client, base: &str, token: &str) -> bool {
    let r = http
        .post(format!("{base}/oauth2/introspect"))
        .bearer_auth(ADMIN)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()["active"].as_bool().unwrap()
}

fn audit_verify(dir: &Path) -> String {
    let out = Command::new(BIN).args(["audit", "verify", "--data-dir"]).arg(dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "audit verify failed: {text} {}", String::from_utf8_lossy(&out.stderr));
    text
}

/// The "N pending replay" figure of an `audit verify` report.
fn pending(report: &str) -> usize {
    report
        .trim()
        .split(", ")
        .find_map(|part| part.strip_suffix(" pending replay at next start"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_revocations_survive_kill_9() {
    let cycles: usize =
        std::env::var("LOCKSTEP_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let seed: u64 = std::env::var("LOCKSTEP_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    eprintln!("crash test: {cycles} cycles, seed {seed}");
    let mut rng = Rng(seed);
    let mut killed_between_commits = 0usize;
    let dir = tempfile::tempdir().unwrap();
    let http = Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    for cycle in 0..cycles {
        let (server, addr) = start(dir.path());
        let base = addr.clone();
        // Everything acknowledged before earlier kills holds after restart.
        let (revoked, still_active) = {
            let l = ledger.lock().unwrap();
            (l.revoked.iter().cloned().collect::<Vec<_>>(), l.active.iter().cloned().collect::<Vec<_>>())
        };
        for token in &revoked {
            assert!(
                !active(&http, &base, token).await,
                "cycle {cycle}: acknowledged revocation lost (seed {seed})"
            );
        }
        for token in &still_active {
            assert!(
                active(&http, &base, token).await,
                "cycle {cycle}: acknowledged session lost (seed {seed})"
            );
        }
        let workers: Vec<_> = (0..4)
            .map(|w| tokio::spawn(worker(base.clone(), http.clone(), ledger.clone(), rng.next(), w)))
            .collect();
        tokio::time::sleep(Duration::from_millis(50 + rng.below(450))).await;
        drop(server); // SIGKILL, at a random moment of the load
        for w in workers {
            let _ = w.await;
        }
        let report = audit_verify(dir.path());
        if pending(&report) > 0 {
            killed_between_commits += 1;
        }
    }
    let (server, addr) = start(dir.path());
    let base = addr.clone();
    let (revoked, acknowledged) = {
        let l = ledger.lock().unwrap();
        (l.revoked.iter().cloned().collect::<Vec<String>>(), l.acknowledged_revocations)
    };
    for token in &revoked {
        assert!(!active(&http, &base, token).await, "final: acknowledged revocation lost (seed {seed})");
    }
    drop(server);
    let report = audit_verify(dir.path());
    assert!(
        acknowledged > cycles,
        "too little load to mean anything: {acknowledged} acknowledged revocations"
    );
    eprintln!(
        "crash test: {cycles} kill -9 cycles ({killed_between_commits} landed between a directory commit and its bridge step and were replayed), {acknowledged} acknowledged revocations ({} tokens) all inactive after restart; {}",
        revoked.len(),
        report.trim()
    );
}

/// A server whose log lines (stderr) are kept, started with `config`.
fn start_logged(dir: &Path, config: &Path) -> (Server, String, Arc<Mutex<Vec<String>>>) {
    let child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .arg("--config")
        .arg(config)
        .env("LOCKSTEP_ADMIN_TOKEN", ADMIN)
        .env("LOCKSTEP_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let log = Arc::new(Mutex::new(Vec::new()));
    let stderr = server.0.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let stdout = server.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines.next().expect("server exited before listening").unwrap();
        if let Some(addr) = line.strip_prefix("lockstep: listening on ") {
            std::thread::spawn(move || for _ in lines {});
            return (server, addr.trim().to_owned(), log);
        }
    }
}

async fn scim(http: &Client, base: &str, method: reqwest::Method, path: &str, body: Value) -> Value {
    let r =
        http.request(method, format!("{base}{path}")).bearer_auth(ADMIN).json(&body).send().await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

const NHI: &str = "urn:ietf:params:scim:schemas:extension:lockstep:2.0:User";

fn deactivate() -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
           "Operations": [{"op": "replace", "path": "active", "value": false}]})
}

/// Suspensions survive `kill -9`; a grace period that ends while the
/// process is down is applied at start, before the listener binds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspensions_and_grace_deadlines_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lockstep.toml");
    std::fs::write(&config, "[policy.tiers.non_human]\nowner_grace = \"3s\"\n").unwrap();
    let data = dir.path().join("data");
    let http = Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let (server, base, _) = start_logged(&data, &config);
    let post = reqwest::Method::POST;
    let patch = reqwest::Method::PATCH;
    let user = |name: &str| json!({"userName": name});
    let o1 = scim(&http, &base, post.clone(), "/scim/v2/Users", user("o1")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let o2 = scim(&http, &base, post.clone(), "/scim/v2/Users", user("o2")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sa = |name: &str, owner: &str| json!({"userName": name, NHI: {"identityKind": "service_account", "owner": {"value": owner}}});
    scim(&http, &base, post.clone(), "/scim/v2/Users", sa("sa1", &o1)).await;
    scim(&http, &base, post.clone(), "/scim/v2/Users", sa("sa2", &o2)).await;
    let mut tokens = Vec::new();
    for name in ["sa1", "sa2"] {
        let s = scim(&http, &base, post.clone(), "/v1/sessions", json!({"subject": name, "ttl": "1h"})).await;
        tokens.push(s["access_token"].as_str().unwrap().to_owned());
    }
    // o1 leaves: sa1 is suspended; kill -9 right after the acknowledgement.
    scim(&http, &base, patch.clone(), &format!("/scim/v2/Users/{o1}"), deactivate()).await;
    drop(server);

    // The suspension survived; a new active owner within the grace lifts it.
    let (server, base, _) = start_logged(&data, &config);
    assert!(!active(&http, &base, &tokens[0]).await, "suspension lost across kill -9");
    assert!(active(&http, &base, &tokens[1]).await);
    let sa1 = scim(
        &http,
        &base,
        reqwest::Method::GET,
        "/scim/v2/Users?filter=userName%20eq%20%22sa1%22",
        Value::Null,
    )
    .await;
    let sa1 = sa1["Resources"][0]["id"].as_str().unwrap().to_owned();
    let new_owner = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "replace", "path": format!("{NHI}:owner"), "value": {"value": o2}}]});
    scim(&http, &base, patch.clone(), &format!("/scim/v2/Users/{sa1}"), new_owner).await;
    assert!(active(&http, &base, &tokens[0]).await, "resumed");
    // o2 leaves: both are suspended; the process is killed and stays down past the grace.
    scim(&http, &base, patch, &format!("/scim/v2/Users/{o2}"), deactivate()).await;
    assert!(!active(&http, &base, &tokens[0]).await && !active(&http, &base, &tokens[1]).await);
    drop(server);
    tokio::time::sleep(Duration::from_secs(4)).await;

    let (server, base, log) = start_logged(&data, &config);
    // stderr is read on its own thread: give it a moment to catch up.
    let deadline = Instant::now() + Duration::from_secs(10);
    let opened = loop {
        let line = log.lock().unwrap().iter().find(|l| l.contains("engine open")).cloned();
        match line {
            Some(line) => break line,
            None if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            None => break String::new(),
        }
    };
    assert!(opened.contains("grace_ended=2"), "revoked at start, before serving: {opened}");
    for token in &tokens {
        assert!(!active(&http, &base, token).await);
    }
    let audit = scim(&http, &base, reqwest::Method::GET, "/v1/audit?limit=1000", Value::Null).await;
    let records = audit["records"].as_array().unwrap();
    let grace_revocations: Vec<&Value> = records
        .iter()
        .filter(|r| {
            r["kind"] == "session.revoked" && r["detail"].as_str().unwrap().contains("reason=owner_lost")
        })
        .collect();
    assert_eq!(grace_revocations.len(), 2, "each recorded exactly once");
    // What o2's deactivation reached, asked of the server and read from the data directory.
    let position = records
        .iter()
        .find(|r| r["kind"] == "directory.identity_deactivated" && r["identity"] == o2.as_str())
        .unwrap()["directory_event"]
        .to_string();
    let online = Command::new(BIN)
        .args(["reach", &position, "--json", "--url", &base, "--token", ADMIN])
        .output()
        .unwrap();
    assert!(online.status.success(), "{}", String::from_utf8_lossy(&online.stderr));
    let report: Value = serde_json::from_slice(&online.stdout).unwrap();
    let actions: Vec<&str> =
        report["sessions"].as_array().unwrap().iter().map(|t| t["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["session.suspended", "session.suspended", "session.revoked", "session.revoked"],
        "{report}"
    );
    assert!(report["live_until"].is_null(), "nothing of them still lives");
    let offline = Command::new(BIN).args(["reach", &position, "--data-dir"]).arg(&data).output().unwrap();
    let text = String::from_utf8_lossy(&offline.stdout);
    assert!(offline.status.success() && text.contains("sessions touched: 4"), "{text}");
    assert!(text.contains("nothing of the subjects still lives"), "{text}");
    drop(server);
    let report = audit_verify(&data);
    eprintln!(
        "crash test (suspensions): suspension survived kill -9, resumed, grace ended while down and was applied at start; {}",
        report.trim()
    );
}
