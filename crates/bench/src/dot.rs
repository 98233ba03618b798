//! django-oauth-toolkit (Django, SQLite, gunicorn) as the peer for RFC 7009
//! revocation: seeded with live tokens by `scripts/bench/dot_server.py`,
//! served by gunicorn with one worker per core, revoked under the same load
//! as lockstep.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::load::{LoadSpec, Stats, run_load};

struct Gunicorn(Child);

impl Drop for Gunicorn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Revocations per second of django-oauth-toolkit, each of a distinct live
/// token, at 64 keep-alive connections.
pub async fn revocations(python: &Path, seconds: u64, connections: usize) -> anyhow::Result<Stats> {
    let scripts = std::env::current_dir()?.join("scripts/bench");
    let dir = tempfile::tempdir()?;
    let n = 40_000;
    let status = Command::new(python)
        .arg(scripts.join("dot_server.py"))
        .arg(dir.path())
        .args(["seed", &n.to_string()])
        .status()
        .context("running dot_server.py seed")?;
    if !status.success() {
        bail!("seeding django-oauth-toolkit failed");
    }
    let tokens = std::fs::read_to_string(dir.path().join("tokens.txt"))?;
    let client = std::fs::read_to_string(dir.path().join("client.txt"))?;
    let mut lines = client.lines();
    let (id, secret) = (lines.next().context("client id")?, lines.next().context("client secret")?);
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let child = Command::new(python)
        .args(["-m", "gunicorn", "-w", &workers.to_string(), "-k", "gthread", "--threads", "8"])
        .args(["-b", &format!("127.0.0.1:{port}"), "--chdir"])
        .arg(&scripts)
        .arg("dot_server:application")
        .env("DOT_DATA", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting gunicorn")?;
    let _server = Gunicorn(child);
    let addr = format!("127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !up {
        bail!("gunicorn did not start");
    }
    let bodies: Vec<String> =
        tokens.lines().map(|t| format!("token={t}&client_id={id}&client_secret={secret}")).collect();
    let available = bodies.len();
    let stats = run_load(LoadSpec {
        addr: format!("http://{addr}"),
        method: hyper::Method::POST,
        paths: vec!["/o/revoke_token/".into()],
        content_type: "application/x-www-form-urlencoded".into(),
        bearer: String::new(),
        bodies,
        body_per_pass: false,
        connections,
        warmup: Duration::from_secs(2),
        duration: Duration::from_secs(seconds),
    })
    .await?;
    if (stats.rps * (seconds + 2) as f64) as usize >= available {
        bail!("django-oauth-toolkit ran out of seeded tokens");
    }
    if stats.errors > 0 {
        bail!("{} django-oauth-toolkit revocations failed", stats.errors);
    }
    Ok(stats)
}
