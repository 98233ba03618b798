//! SCIM throughput at several directory sizes, beside the python-scim
//! reference server (`scim2-server`, in-memory) measured the same way.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;

use crate::load::{LoadSpec, Stats, run_load};
use crate::server::{ADMIN, Running};
use crate::{machine, seed};

const PATCH_INACTIVE: &str = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}"#;
const PATCH_ACTIVE: &str = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":true}]}"#;

struct Target<'a> {
    addr: &'a str,
    bearer: &'a str,
    /// (id, userName) of the seeded users.
    users: &'a [(String, String)],
    seconds: u64,
    tag: &'a str,
    /// Path of the SCIM base (`/scim/v2` for lockstep, empty for the reference).
    prefix: &'a str,
}

fn spec(
    t: &Target<'_>,
    method: hyper::Method,
    paths: Vec<String>,
    bodies: Vec<String>,
    connections: usize,
) -> LoadSpec {
    LoadSpec {
        addr: t.addr.to_owned(),
        body_per_pass: method == hyper::Method::PATCH,
        method,
        paths,
        content_type: "application/scim+json".into(),
        bearer: t.bearer.to_owned(),
        bodies,
        connections,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(t.seconds),
    }
}

/// Deterministic spread over the seeded users.
fn spread(n: usize, len: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |i| (i.wrapping_mul(7_919) + 13) % len.max(1))
}

/// Results of one target: lookups, then creates and PATCHes at 16 and at
/// 64 concurrent connections (group commit shares a durable commit among
/// the requests that wait for it, so concurrency changes write rates).
type Results = [Stats; 5];

/// Runs every workload on every target, one target after the other within
/// each workload, so that each ratio compares runs minutes apart at most
/// (this machine's speed drifts by a third over a few minutes).
async fn workloads(targets: &[&Target<'_>]) -> anyhow::Result<Vec<Results>> {
    let mut out: Vec<Vec<Stats>> = vec![Vec::new(); targets.len()];
    for step in 0..5 {
        for (t, results) in targets.iter().zip(out.iter_mut()) {
            results.push(workload(t, step).await?);
        }
    }
    out.into_iter()
        .map(|r| <Results>::try_from(r).map_err(|_| anyhow::anyhow!("five workloads per target")))
        .collect()
}

/// Workload `step` of [`Results`] on one target.
async fn workload(t: &Target<'_>, step: usize) -> anyhow::Result<Stats> {
    let creates = |round: usize| -> Vec<String> {
        (0..200_000)
            .map(|i| {
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                       "userName": format!("new-{}-{round}-{i}@example.com", t.tag), "active": true,
                       "name": {"givenName": "New", "familyName": format!("User{i}")}})
                .to_string()
            })
            .collect()
    };
    let users = vec![format!("{}/Users", t.prefix)];
    // Each PATCH run has its own half of the users, and alternates
    // active=false / active=true per pass over them, so every PATCH is a
    // real change (a PATCH that changes nothing commits nothing).
    let half = t.users.len() / 2;
    let patches = |users: &[(String, String)]| -> Vec<String> {
        spread(users.len(), users.len()).map(|i| format!("{}/Users/{}", t.prefix, users[i].0)).collect()
    };
    let flips = vec![PATCH_INACTIVE.to_owned(), PATCH_ACTIVE.to_owned()];
    let spec = match step {
        0 => {
            let lookups: Vec<String> = spread(20_000, t.users.len())
                .map(|i| format!("{}/Users?filter=userName%20eq%20%22{}%22", t.prefix, t.users[i].1))
                .collect();
            spec(t, hyper::Method::GET, lookups, vec![], 64)
        }
        1 => spec(t, hyper::Method::POST, users, creates(16), 16),
        2 => spec(t, hyper::Method::PATCH, patches(&t.users[..half]), flips, 16),
        3 => spec(t, hyper::Method::POST, users, creates(64), 64),
        _ => spec(t, hyper::Method::PATCH, patches(&t.users[half..]), flips, 64),
    };
    run_load(spec).await
}

fn report(label: &str, [lookup, create, patch, create64, patch64]: &Results) {
    println!("{label}");
    println!("  filter=userName eq lookups (64 conns): {lookup}");
    println!("  POST /Users creates (16 conns):        {create}");
    println!("  PATCH active false/true (16 conns):    {patch}");
    println!("  POST /Users creates (64 conns):        {create64}");
    println!("  PATCH active false/true (64 conns):    {patch64}");
}

/// Runs the SCIM benchmark.
pub async fn run(bin: &Path, sizes: &[usize], seconds: u64, reference: Option<&Path>) -> anyhow::Result<()> {
    println!("\n## SCIM throughput ({})", machine());
    println!(
        "method: each workload {seconds}s after 1s warm-up, keep-alive HTTP/1.1 from this process, run on lockstep and then \
         at once on the reference (both seeded first), workload by workload; lookups rotate over \
         20,000 seeded userNames; creates use fresh userNames; PATCHes set active=false on every user of their half of the seeded users, \
         then active=true on every one, and so on (each one a real change; every user with 0 sessions); lockstep \
         with durability=full, directory seeded through the engine"
    );
    // The reference runs beside the smallest size, workload by workload.
    let compared = reference.map(|_| sizes.iter().copied().min().unwrap_or(10_000));
    for &n in sizes {
        let dir = tempfile::tempdir()?;
        #[allow(clippy::disallowed_methods)]
        let t = std::time::Instant::now();
        let users = seed::identities(dir.path(), n)?;
        println!("seeded {n} identities in {:.1}s", t.elapsed().as_secs_f64());
        let server = Running::lockstep(bin, dir.path()).await?;
        let ours = Target {
            addr: &server.addr,
            bearer: ADMIN,
            users: &users,
            seconds,
            tag: &format!("l{n}"),
            prefix: "/scim/v2",
        };
        let (Some(reference), true) = (reference, compared == Some(n)) else {
            let stats = workloads(&[&ours]).await?;
            let stats = stats.first().context("one target")?;
            report(&format!("lockstep, {n} identities:"), stats);
            if stats.iter().any(|s| s.errors > 0) {
                bail!("lockstep answered errors during the run");
            }
            continue;
        };
        let (child, addr) = start_reference(reference).await?;
        let _guard = Kill(child);
        let ref_users = seed_over_http(&addr, n).await?;
        let theirs = Target {
            addr: &addr,
            bearer: "bench-reference-token",
            users: &ref_users,
            seconds,
            tag: "ref",
            prefix: "",
        };
        let stats = workloads(&[&ours, &theirs]).await?;
        let [l, r] = stats.as_slice() else { bail!("two targets") };
        report(&format!("lockstep, {n} identities:"), l);
        report(&format!("python-scim scim2-server 0.8.3 (in-memory, reference), {n} identities:"), r);
        if l.iter().any(|s| s.errors > 0) {
            bail!("lockstep answered errors during the run");
        }
        println!(
            "ratio lockstep / reference at {n}: lookups {:.1}x, creates {:.1}x, PATCH {:.1}x (16 conns); \
             creates {:.1}x, PATCH {:.1}x (64 conns)",
            l[0].rps / r[0].rps,
            l[1].rps / r[1].rps,
            l[2].rps / r[2].rps,
            l[3].rps / r[3].rps,
            l[4].rps / r[4].rps
        );
    }
    Ok(())
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_reference(bin: &Path) -> anyhow::Result<(Child, String)> {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let child = Command::new(bin)
        .args([
            "--hostname",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--bearer-token",
            "bench-reference-token",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let addr = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http
            .get(format!("{addr}/ServiceProviderConfig"))
            .bearer_auth("bench-reference-token")
            .send()
            .await
            .is_ok()
        {
            return Ok((child, addr));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("reference server did not start")
}

/// The reference server has no storage to seed directly: POST users.
async fn seed_over_http(addr: &str, n: usize) -> anyhow::Result<Vec<(String, String)>> {
    let http = reqwest::Client::new();
    let mut users = Vec::with_capacity(n);
    let chunks: Vec<Vec<usize>> =
        (0..n).collect::<Vec<_>>().chunks(n.div_ceil(16).max(1)).map(<[usize]>::to_vec).collect();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let (http, addr) = (http.clone(), addr.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in chunk {
                let name = format!("user{i}");
                let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, "active": true});
                let r: serde_json::Value = http
                    .post(format!("{addr}/Users"))
                    .bearer_auth("bench-reference-token")
                    .header("content-type", "application/scim+json")
                    .body(body.to_string())
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                out.push((r["id"].as_str().context("no id")?.to_owned(), name));
            }
            anyhow::Ok(out)
        }));
    }
    for t in tasks {
        users.extend(t.await??);
    }
    Ok(users)
}
