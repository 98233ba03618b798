//! Server processes under test.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

pub const ADMIN: &str = "bench-admin-token-0123456789abcdef";

/// A server child process, killed on drop.
#[derive(Debug)]
pub struct Running {
    child: Child,
    pub addr: String,
    http: reqwest::Client,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_listen(child: &mut Child) -> anyhow::Result<String> {
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines.next().context("server exited before listening")??;
        if let Some(addr) = line.strip_prefix("lockstep: listening on ") {
            std::thread::spawn(move || for _ in lines {});
            return Ok(addr.trim().to_owned());
        }
    }
}

impl Running {
    /// `lockstep serve` on `dir` with default (full) durability.
    pub async fn lockstep(bin: &Path, dir: &Path) -> anyhow::Result<Self> {
        Self::lockstep_with(bin, dir, None).await
    }

    /// `lockstep serve` on `dir` with a configuration file.
    pub async fn lockstep_with(bin: &Path, dir: &Path, config: Option<&Path>) -> anyhow::Result<Self> {
        if !bin.exists() {
            bail!("{} not found: build it with cargo build --release -p lockstep", bin.display());
        }
        let mut command = Command::new(bin);
        command.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(dir);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .env("LOCKSTEP_ADMIN_TOKEN", ADMIN)
            .env("LOCKSTEP_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()?;
        let addr =
            tokio::task::spawn_blocking(move || wait_for_listen(&mut child).map(|a| (a, child))).await??;
        Ok(Self { addr: addr.0, child: addr.1, http: reqwest::Client::new() })
    }

    /// The bare baseline server.
    pub async fn bare() -> anyhow::Result<Self> {
        let mut child =
            Command::new(std::env::current_exe()?).arg("bare-server").stdout(Stdio::piped()).spawn()?;
        let addr =
            tokio::task::spawn_blocking(move || wait_for_listen(&mut child).map(|a| (a, child))).await??;
        Ok(Self { addr: addr.0, child: addr.1, http: reqwest::Client::new() })
    }

    pub async fn introspect(&self, token: &str) -> anyhow::Result<Value> {
        self.client_view().introspect(token).await
    }

    /// PATCH active=false; returns the round trip.
    pub async fn deactivate(&self, id: &str) -> anyhow::Result<Duration> {
        self.client_view().deactivate(id).await
    }

    /// Deactivates every id with `concurrency` clients; returns seconds.
    pub async fn deactivate_all(&self, ids: &[String], concurrency: usize) -> anyhow::Result<(f64, ())> {
        let ids = Arc::new(ids.to_vec());
        let next = Arc::new(AtomicUsize::new(0));
        let t = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (ids, next) = (ids.clone(), next.clone());
            let me = Self::client_view(self);
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(id) = ids.get(i) else { return anyhow::Ok(()) };
                    me.deactivate(id).await?;
                }
            }));
        }
        for task in tasks {
            task.await??;
        }
        Ok((t.elapsed().as_secs_f64(), ()))
    }

    /// Counts how many tokens introspect active.
    pub async fn count_active(&self, tokens: &[String], concurrency: usize) -> anyhow::Result<usize> {
        let tokens = Arc::new(tokens.to_vec());
        let next = Arc::new(AtomicUsize::new(0));
        let active = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (tokens, next, active) = (tokens.clone(), next.clone(), active.clone());
            let me = Self::client_view(self);
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(token) = tokens.get(i) else { return anyhow::Ok(()) };
                    if me.introspect(token).await?["active"] == json!(true) {
                        active.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for task in tasks {
            task.await??;
        }
        Ok(active.load(Ordering::Relaxed))
    }

    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self.http.get(format!("{}/metrics", self.addr)).bearer_auth(ADMIN).send().await?.text().await?)
    }

    pub async fn health(&self) -> anyhow::Result<Value> {
        Ok(self.http.get(format!("{}/healthz", self.addr)).send().await?.json().await?)
    }

    /// Resident set size of the server process, in bytes.
    pub fn rss(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .context("no VmRSS")?;
        Ok(kb * 1024)
    }

    fn client_view(&self) -> ClientView {
        ClientView { addr: self.addr.clone(), http: self.http.clone() }
    }
}

/// A handle to the server usable from spawned tasks.
#[derive(Debug, Clone)]
struct ClientView {
    addr: String,
    http: reqwest::Client,
}

impl ClientView {
    /// PATCH active=false; returns the round trip.
    async fn deactivate(&self, id: &str) -> anyhow::Result<Duration> {
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                          "Operations": [{"op": "replace", "path": "active", "value": false}]});
        let t = Instant::now();
        self.http
            .patch(format!("{}/scim/v2/Users/{id}", self.addr))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await?
            .error_for_status()?;
        Ok(t.elapsed())
    }

    async fn introspect(&self, token: &str) -> anyhow::Result<Value> {
        Ok(self
            .http
            .post(format!("{}/oauth2/introspect", self.addr))
            .bearer_auth(ADMIN)
            .form(&[("token", token)])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

/// The baseline: the same route, a fixed JSON body the size of an active
/// introspection answer, no auth, no lookup.
pub async fn bare_server() -> anyhow::Result<()> {
    use std::io::Write;
    let body: &'static str = r#"{"active":true,"client_id":"admin","exp":1795831884,"groups":["engineering","on-call"],"iat":1795828284,"identity_kind":"human","sid":"01a21fb4-fd05-7584-a7ac-346282bf5ea3","sub":"01a21fb4-fd02-709d-82ac-f0da29a1e394","tier":"standard","token_type":"Bearer","username":"ada@example.com"}"#;
    let app = axum::Router::new().route(
        "/oauth2/introspect",
        axum::routing::post(move || async move { ([("content-type", "application/json")], body) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "lockstep: listening on http://{}", listener.local_addr()?)?;
        out.flush()?;
    }
    axum::serve(listener, app).await?;
    Ok(())
}

impl Running {
    /// A GET with the admin token; the answer's JSON.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}{path}", self.addr))
            .bearer_auth(ADMIN)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// DELETE a SCIM resource; returns the round trip.
    pub async fn delete(&self, path: &str) -> anyhow::Result<Duration> {
        let t = Instant::now();
        self.http
            .delete(format!("{}{path}", self.addr))
            .bearer_auth(ADMIN)
            .send()
            .await?
            .error_for_status()?;
        Ok(t.elapsed())
    }
}
