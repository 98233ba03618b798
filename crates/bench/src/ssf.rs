//! Shared Signals benchmarks: how fast a directory change reaches a push
//! receiver as a SET, how many SETs per second go out to one and to ten
//! streams, and whether ten enabled streams slow the bridge down.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::load;
use crate::server::{ADMIN, Running};

const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
const ACCOUNT_DISABLED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// What the receiver saw: per (stream audience, user id) the arrival of
/// each SET, and a total count.
#[derive(Default)]
struct Seen {
    arrivals: HashMap<String, Vec<Instant>>,
    total: usize,
}

#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Seen>>,
}

fn claims(jws: &str) -> Option<Value> {
    let part = jws.split('.').nth(1)?;
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

impl Receiver {
    async fn start() -> anyhow::Result<(Self, String)> {
        let me = Receiver::default();
        let state = me.clone();
        let app = axum::Router::new().route(
            "/events",
            axum::routing::post(move |body: Bytes| {
                let state = state.clone();
                async move {
                    let at = Instant::now();
                    if let Some(c) = claims(&String::from_utf8_lossy(&body)) {
                        let user =
                            c["sub_id"]["user"]["id"].as_str().or(c["sub_id"]["id"].as_str()).unwrap_or("");
                        let key = format!("{}|{user}", c["aud"].as_str().unwrap_or(""));
                        let mut seen = state.seen.lock().unwrap_or_else(|p| p.into_inner());
                        seen.arrivals.entry(key).or_default().push(at);
                        seen.total += 1;
                    }
                    axum::http::StatusCode::ACCEPTED
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/events", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((me, url))
    }

    fn first(&self, aud: &str, user: &str) -> Option<Instant> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.arrivals.get(&format!("{aud}|{user}")).and_then(|v| v.first().copied())
    }

    fn total(&self) -> usize {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("{path}: {status}: {text}");
        }
        Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text)? })
    }

    async fn user(&self, name: &str) -> anyhow::Result<String> {
        let u = self
            .call(reqwest::Method::POST, "/scim/v2/Users", json!({"schemas": [USER], "userName": name}))
            .await?;
        Ok(u["id"].as_str().context("no id")?.to_owned())
    }

    async fn sessions(&self, name: &str, n: usize) -> anyhow::Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        let per = n.div_ceil(16);
        for w in 0..16 {
            let api = Api { base: self.base.clone(), http: self.http.clone() };
            let name = name.to_owned();
            let count = per.min(n.saturating_sub(w * per));
            tasks.spawn(async move {
                for _ in 0..count {
                    api.call(reqwest::Method::POST, "/v1/sessions", json!({"subject": name, "ttl": "1h"}))
                        .await?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        Ok(())
    }

    async fn deactivate(&self, id: &str) -> anyhow::Result<Duration> {
        let t = Instant::now();
        self.call(
            reqwest::Method::PATCH,
            &format!("/scim/v2/Users/{id}"),
            json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": false}]}),
        )
        .await?;
        Ok(t.elapsed())
    }

    async fn stream(&self, url: &str, aud: &str) -> anyhow::Result<String> {
        let s = self
            .call(
                reqwest::Method::POST,
                "/ssf/streams",
                json!({"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": url},
                       "events_requested": [SESSION_REVOKED, ACCOUNT_DISABLED], "aud": aud}),
            )
            .await?;
        Ok(s["stream_id"].as_str().context("no stream_id")?.to_owned())
    }

    async fn status(&self, stream: &str, status: &str) -> anyhow::Result<()> {
        self.call(reqwest::Method::POST, "/ssf/status", json!({"stream_id": stream, "status": status}))
            .await
            .map(|_| ())
    }
}

async fn wait(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<Instant> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if done() {
            return Ok(Instant::now());
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    bail!("timed out waiting for {what}")
}

/// `lockstep-bench ssf`.
pub async fn run(bin: &Path, users: usize, fanout: usize, delivery_nice: Option<i32>) -> anyhow::Result<()> {
    println!("\n## Shared Signals: SCIM deactivation to a SET at a push receiver ({})", crate::machine());
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("lockstep.toml");
    let nice = delivery_nice.map(|n| format!("[ssf]\ndelivery_nice = {n}\n")).unwrap_or_default();
    std::fs::write(&config, nice)?;
    println!(
        "(server delivery_nice: {})",
        delivery_nice.map_or_else(|| "default".to_owned(), |n| n.to_string())
    );
    let server = Running::lockstep_with(bin, dir.path(), Some(&config)).await?;
    let api = Api { base: server.addr.clone(), http: reqwest::Client::new() };
    let (receiver, url) = Receiver::start().await?;
    println!(
        "method: `lockstep serve` (release, durability=full), one push stream to a receiver on 127.0.0.1 (axum, \
         answers 202); {users} users with one session each, deactivated one at a time with SCIM PATCH \
         active=false; latency from the PATCH response (acknowledged) to the receiver holding the \
         session-revoked SET for that user, read with Instant on both sides of one process"
    );
    api.stream(&url, "aud-latency").await?;
    let mut ids = Vec::new();
    for i in 0..users {
        let name = format!("lat{i}");
        let id = api.user(&name).await?;
        api.sessions(&name, 1).await?;
        ids.push(id);
    }
    let mut acks = Vec::new();
    let mut after_ack = Vec::new();
    for id in &ids {
        let start = Instant::now();
        let ack = api.deactivate(id).await?;
        let acked = start + ack;
        let arrived =
            wait("the SET", Duration::from_secs(10), || receiver.first("aud-latency", id).is_some()).await?;
        let arrived = receiver.first("aud-latency", id).unwrap_or(arrived);
        acks.push(ack);
        after_ack.push(arrived.saturating_duration_since(acked));
    }
    println!("PATCH round trip (baseline: the deprovision itself):  {}", load::summary(&mut acks));
    println!("acknowledged -> SET received:                        {}", load::summary(&mut after_ack));

    println!("\n## Shared Signals: SETs per second to one and to ten push streams ({})", crate::machine());
    println!(
        "method: one user with {fanout} live sessions deactivated; each stream gets {} SETs \
         ({fanout} session-revoked + 1 account-disabled); time from the PATCH to the last SET received. \
         Baseline: the same number of sequential loopback POSTs of a SET-sized body to the same receiver \
         from this process (what one HTTP round trip costs here)",
        fanout + 1
    );
    for streams in [1usize, 10] {
        let mut ids = Vec::new();
        for s in 0..streams {
            ids.push(api.stream(&url, &format!("aud-tp-{streams}-{s}")).await?);
        }
        let name = format!("fan{streams}");
        let id = api.user(&name).await?;
        api.sessions(&name, fanout).await?;
        let before = receiver.total();
        let t = Instant::now();
        api.deactivate(&id).await?;
        let want = before + streams * (fanout + 1);
        wait("every SET", Duration::from_secs(600), || receiver.total() >= want).await?;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{streams:>2} stream(s): {} SETs in {secs:.2} s = {:.0} SETs/s",
            streams * (fanout + 1),
            (streams * (fanout + 1)) as f64 / secs
        );
        for s in ids {
            api.status(&s, "disabled").await?;
        }
    }
    let body = "x".repeat(700);
    let http = reqwest::Client::new();
    let t = Instant::now();
    let n = fanout + 1;
    for _ in 0..n {
        http.post(&url).header("Content-Type", "application/secevent+jwt").body(body.clone()).send().await?;
    }
    let secs = t.elapsed().as_secs_f64();
    println!("baseline: {n} sequential loopback POSTs in {secs:.2} s = {:.0} POSTs/s", n as f64 / secs);

    println!("\n## Shared Signals: the bridge with ten enabled streams ({})", crate::machine());
    println!(
        "method: users with 100 live sessions each, deactivated one at a time (PATCH round trip), first with \
         every stream disabled, then with ten enabled push streams receiving every SET; same server, same run"
    );
    let mut streams = Vec::new();
    for s in 0..10 {
        let id = api.stream(&url, &format!("aud-bridge-{s}")).await?;
        api.status(&id, "disabled").await?;
        streams.push(id);
    }
    // `drained`: each PATCH starts once the previous one's SETs are all
    // received, so it measures the bridge and its outbox rows alone;
    // otherwise the next PATCH runs while 1,010 SETs are being signed and
    // pushed on the same two cores.
    let measure = |label: &'static str, drained: bool, expect_per_user: usize| {
        let api = &api;
        let receiver = &receiver;
        async move {
            let mut samples = Vec::new();
            for i in 0..30 {
                let name = format!("{label}{i}");
                let id = api.user(&name).await?;
                api.sessions(&name, 100).await?;
                let before = receiver.total();
                samples.push(api.deactivate(&id).await?);
                if drained {
                    wait("the SETs", Duration::from_secs(60), || {
                        receiver.total() >= before + expect_per_user
                    })
                    .await?;
                }
            }
            anyhow::Ok(samples)
        }
    };
    let mut off = measure("off", false, 0).await?;
    // Paused streams get every signal queued and nothing delivered: the
    // bridge's own cost of the outbox, without delivery on the same cores.
    for s in &streams {
        api.status(s, "paused").await?;
    }
    let mut paused = measure("paused", false, 0).await?;
    for s in &streams {
        api.status(s, "disabled").await?;
        api.status(s, "enabled").await?;
    }
    let mut drained = measure("drained", true, 10 * 101).await?;
    let mut on = measure("on", false, 0).await?;
    println!("PATCH round trip, 100 sessions, no stream enabled:               {}", load::summary(&mut off));
    println!("PATCH round trip, 100 sessions, ten paused streams (queued):   {}", load::summary(&mut paused));
    println!(
        "PATCH round trip, 100 sessions, ten streams (delivery drained):  {}",
        load::summary(&mut drained)
    );
    println!("PATCH round trip, 100 sessions, ten streams (delivery running):  {}", load::summary(&mut on));

    println!("\n## Shared Signals: introspection with ten enabled streams ({})", crate::machine());
    println!(
        "method: 64 keep-alive connections POST /oauth2/introspect over 1,000 live tokens for 5 s after 1 s of \
         warm-up, while a background client deactivates a user with 10 live sessions every 50 ms; four runs in \
         turn: every stream disabled, the ten streams enabled (each deactivation then queues 11 signals, 110 \
         SETs for the ten receivers), disabled again, enabled again — the ratio compares the two pairs, so a \
         drift of the machine over the runs does not read as the streams' cost"
    );
    let mut tokens = Vec::new();
    api.user("intro").await?;
    for _ in 0..1000 {
        let t =
            api.call(reqwest::Method::POST, "/v1/sessions", json!({"subject": "intro", "ttl": "1h"})).await?;
        tokens.push(t["access_token"].as_str().context("no token")?.to_owned());
    }
    let mut churn = Vec::new();
    for i in 0..480 {
        let name = format!("churn{i}");
        churn.push(api.user(&name).await?);
        api.sessions(&name, 10).await?;
    }
    let spec = load::LoadSpec {
        addr: server.addr.clone(),
        method: hyper::Method::POST,
        paths: vec!["/oauth2/introspect".into()],
        content_type: "application/x-www-form-urlencoded".into(),
        bearer: ADMIN.into(),
        bodies: tokens.iter().map(|t| format!("token={t}")).collect(),
        body_per_pass: false,
        connections: 64,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(5),
    };
    // The same churn in every run (each deactivation revokes ten
    // sessions through the bridge), so the only difference is the ten
    // streams receiving what it causes.
    let churner = |ids: Vec<String>| {
        let base = server.addr.clone();
        tokio::spawn(async move {
            let api = Api { base, http: reqwest::Client::new() };
            for id in ids {
                api.deactivate(&id).await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            anyhow::Ok(())
        })
    };
    let (mut quiet, mut busy, mut delivered) = (Vec::new(), Vec::new(), 0);
    for (round, ids) in churn.chunks(120).enumerate() {
        let enabled = round % 2 == 1;
        for s in &streams {
            api.status(s, if enabled { "enabled" } else { "disabled" }).await?;
        }
        let before = receiver.total();
        let churning = churner(ids.to_vec());
        let stats = load::run_load(spec.clone()).await?;
        churning.abort();
        if enabled {
            println!("introspection, ten streams receiving SETs:        {stats}");
            delivered += receiver.total() - before;
            busy.push(stats.rps);
        } else {
            println!("introspection, same churn, no stream enabled:     {stats}");
            quiet.push(stats.rps);
        }
    }
    println!(
        "SETs received during the runs with streams: {delivered}; ratio {:.1} % (sum of the enabled runs over the sum of the disabled ones)",
        100.0 * busy.iter().sum::<f64>() / quiet.iter().sum::<f64>()
    );
    drop(server);
    Ok(())
}
