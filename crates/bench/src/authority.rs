//! The token and credential authority under load: durable revocations,
//! sessions opened, refresh and `client_credentials` grants, JWT issuance,
//! each beside the same request one at a time (what a server without group
//! commit does: one fsync per request) and, for revocation, beside
//! django-oauth-toolkit when it is given.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use serde_json::json;

use crate::load::{LoadSpec, Stats, run_load};
use crate::server::{ADMIN, Running};
use crate::{machine, seed};

/// Distinct tokens needed for `seconds` at `rate` per second, with margin.
fn enough(rate: usize, seconds: u64) -> usize {
    rate * (seconds as usize + 2) * 3 / 2
}

fn spec(
    addr: &str,
    path: &str,
    bearer: &str,
    bodies: Vec<String>,
    connections: usize,
    seconds: u64,
) -> LoadSpec {
    LoadSpec {
        addr: addr.to_owned(),
        method: hyper::Method::POST,
        paths: vec![path.to_owned()],
        content_type: if path.starts_with("/oauth2/") {
            "application/x-www-form-urlencoded".into()
        } else {
            "application/json".into()
        },
        bearer: bearer.to_owned(),
        bodies,
        body_per_pass: false,
        connections,
        warmup: Duration::from_secs(2),
        duration: Duration::from_secs(seconds),
    }
}

/// Runs a load that uses each body at most once, and fails if it ran out.
async fn once_each(spec: LoadSpec) -> anyhow::Result<Stats> {
    let available = spec.bodies.len();
    let seconds = (spec.warmup + spec.duration).as_secs_f64();
    let stats = run_load(spec).await?;
    // Everything sent (warm-up included) at the measured rate.
    let sent = (stats.rps * seconds) as usize;
    if sent >= available {
        bail!("ran out of distinct bodies ({available}) at {:.0}/s; seed more", stats.rps);
    }
    if stats.errors > 0 {
        bail!("{} requests failed", stats.errors);
    }
    Ok(stats)
}

pub async fn run(
    bin: &Path,
    seconds: u64,
    connections: usize,
    dot: Option<&Path>,
    max_rate: usize,
) -> anyhow::Result<()> {
    println!("\n## Token and credential authority ({})", machine());
    let dir = tempfile::tempdir()?;
    // Sized for up to `max_rate` revocations/s and a third of it in refreshes/s.
    // One connection runs at most a few thousand requests per second.
    let one_conn = enough(3_000, seconds);
    let (n_tokens, n_refresh) =
        (enough(max_rate, seconds) + one_conn, enough(max_rate / 3, seconds) + one_conn);
    #[allow(clippy::disallowed_methods)]
    let t = std::time::Instant::now();
    let data = seed::authority_data(dir.path(), 10_000, n_tokens, n_refresh, 64)?;
    println!(
        "seeded {} live sessions to revoke, {} refreshable sessions, 10,000 users without sessions and 64 client \
         secrets of a service account in {:.1}s",
        data.tokens.len(),
        data.refresh.len(),
        t.elapsed().as_secs_f64()
    );
    let server = Running::lockstep(bin, dir.path()).await?;
    println!(
        "method: `lockstep serve` (durability=full: every acknowledged write is fsynced), {connections} keep-alive \
         HTTP/1.1 connections (hyper client in this process) or 1 for the one-at-a-time baseline, {seconds}s \
         measured after 2s warm-up; every revocation and refresh uses a distinct live token (each token once); \
         a response means the write is durable"
    );
    let (tokens, refresh) = (data.tokens, data.refresh);
    let (one_tokens, many_tokens) = tokens.split_at(one_conn);
    let (one_refresh, many_refresh) = refresh.split_at(one_conn);
    let form = |key: &str, values: &[String]| values.iter().map(|v| format!("{key}={v}")).collect::<Vec<_>>();

    // Revocations (RFC 7009).
    let one =
        once_each(spec(&server.addr, "/oauth2/revoke", ADMIN, form("token", one_tokens), 1, seconds)).await?;
    println!("RFC 7009 revocations, 1 connection (one fsync each):   {one}");
    let many = once_each(spec(
        &server.addr,
        "/oauth2/revoke",
        ADMIN,
        form("token", many_tokens),
        connections,
        seconds,
    ))
    .await?;
    println!("RFC 7009 revocations, {connections} connections (group commit): {many}");
    println!("  {}", batches(&server.metrics().await?));
    // Proof: a sample of what was revoked (the first half of what was sent)
    // is inactive.
    for token in many_tokens[..many.count / 2].iter().step_by(97).take(50) {
        if server.introspect(token).await?["active"] != json!(false) {
            bail!("a revoked token is still active");
        }
    }
    if let Some(python) = dot {
        let peer = crate::dot::revocations(python, seconds, connections).await?;
        println!("django-oauth-toolkit revocations (peer, same load):   {peer}");
        println!("lockstep / django-oauth-toolkit: {:.0}x", many.rps / peer.rps.max(1.0));
    }

    // Sessions opened.
    let opens = |format: &str| {
        data.users
            .iter()
            .map(|u| json!({"subject": u, "ttl": "1h", "format": format}).to_string())
            .collect::<Vec<_>>()
    };
    let one = run_load(spec(&server.addr, "/v1/sessions", ADMIN, opens("opaque"), 1, seconds)).await?;
    println!("sessions opened (opaque), 1 connection:               {one}");
    let many =
        run_load(spec(&server.addr, "/v1/sessions", ADMIN, opens("opaque"), connections, seconds)).await?;
    println!("sessions opened (opaque), {connections} connections:            {many}");
    let jwt = run_load(spec(&server.addr, "/v1/sessions", ADMIN, opens("jwt"), connections, seconds)).await?;
    println!("sessions opened (JWT, ES256), {connections} connections:        {jwt}");
    println!("JWT / opaque: {:.1} %", 100.0 * jwt.rps / many.rps);
    if one.errors + many.errors + jwt.errors > 0 {
        bail!("opening failed");
    }

    // Grants.
    let refresh_form = |values: &[String]| {
        values.iter().map(|v| format!("grant_type=refresh_token&refresh_token={v}")).collect::<Vec<_>>()
    };
    let one =
        once_each(spec(&server.addr, "/oauth2/token", ADMIN, refresh_form(one_refresh), 1, seconds)).await?;
    println!("refresh_token grants, 1 connection:                   {one}");
    let many = once_each(spec(
        &server.addr,
        "/oauth2/token",
        ADMIN,
        refresh_form(many_refresh),
        connections,
        seconds,
    ))
    .await?;
    println!("refresh_token grants, {connections} connections:                {many}");
    let grants: Vec<String> = data
        .clients
        .iter()
        .map(|(id, secret)| format!("grant_type=client_credentials&client_id={id}&client_secret={secret}"))
        .collect();
    let one = run_load(spec(&server.addr, "/oauth2/token", "", grants.clone(), 1, seconds)).await?;
    println!("client_credentials grants, 1 connection:              {one}");
    let many = run_load(spec(&server.addr, "/oauth2/token", "", grants, connections, seconds)).await?;
    println!("client_credentials grants, {connections} connections:           {many}");
    if one.errors + many.errors > 0 {
        bail!("client_credentials grants failed");
    }
    Ok(())
}

/// Mean requests per authority batch, time under the sessions lock and
/// time waiting for the disk, from the server's histograms (cumulative).
fn batches(metrics: &str) -> String {
    let mean = |name: &str| {
        let value = |suffix: &str| {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}_{suffix} ")))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        value("sum") / value("count").max(1.0)
    };
    format!(
        "authority batches so far: {:.1} requests each on average, {:.2} ms under the sessions lock, {:.2} ms waiting for the disk",
        mean("lockstep_authority_batch_requests"),
        mean("lockstep_authority_locked_seconds") * 1e3,
        mean("lockstep_authority_durable_wait_seconds") * 1e3
    )
}
