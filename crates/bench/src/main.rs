//! `lockstep-bench`: the numbers in BENCHMARKS.md, each beside a baseline
//! measured in the same run on the same machine.
//!
//! Servers run as separate processes (the release `lockstep` binary, and
//! this binary's `bare-server`); the load generator runs here. Data sets
//! are seeded in-process through the real engine and stores, then served
//! by a fresh `lockstep serve` with the default (full) durability.
#![allow(clippy::disallowed_methods, clippy::print_stdout)] // a bench reads the clock and prints

mod authority;
mod dot;
mod load;
mod scim;
mod seed;
mod server;
mod sources;
mod ssf;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use crate::load::{LoadSpec, run_load};
use crate::server::{ADMIN, Running};

#[derive(Debug, Parser)]
#[command(name = "lockstep-bench")]
struct Cli {
    /// The `lockstep` binary to measure.
    #[arg(long, default_value = "target/release/lockstep", global = true)]
    lockstep: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Introspection throughput at 64 keep-alive connections vs a bare axum handler.
    Introspect {
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 64)]
        connections: usize,
    },
    /// PATCH active=false for users with 100 live sessions vs users with none.
    Deprovision {
        #[arg(long, default_value_t = 200)]
        users: usize,
    },
    /// 10,000 users x 10 sessions, deactivate all; time until every token is inactive.
    Fanout {
        #[arg(long, default_value_t = 10_000)]
        users: usize,
        #[arg(long, default_value_t = 10)]
        sessions: usize,
    },
    /// Deleting a privileged group of 10,000 members x 10 sessions vs an
    /// ordinary group of 10,000 members without sessions.
    Tiers {
        #[arg(long, default_value_t = 10_000)]
        users: usize,
        #[arg(long, default_value_t = 10)]
        sessions: usize,
    },
    /// Resident bytes per live session and the time from start to serving
    /// at 10M sessions, beside an empty server.
    Memory {
        #[arg(long, default_value_t = 10_000_000)]
        sessions: usize,
        /// Users holding them.
        #[arg(long, default_value_t = 1_000_000)]
        identities: usize,
        /// Use (and keep) this data directory: seeded if empty, reused
        /// as it is otherwise (seeding ten million takes a quarter hour).
        #[arg(long)]
        reuse: Option<PathBuf>,
    },
    /// SCIM create, PATCH active=false and `filter=userName eq` lookups at
    /// several directory sizes, beside the python-scim reference server.
    Scim {
        /// Directory sizes, comma-separated.
        #[arg(long, default_value = "10000,1000000")]
        identities: String,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// The `scim2-server` executable (PyPI scim2-server) for the baseline.
        #[arg(long)]
        reference: Option<PathBuf>,
    },
    /// Durable revocations, sessions opened, refresh and client_credentials
    /// grants and JWT issuance, each beside one-at-a-time requests;
    /// revocations also beside django-oauth-toolkit with `--dot`.
    Authority {
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// A Python with Django, django-oauth-toolkit and gunicorn (the peer).
        #[arg(long)]
        dot: Option<PathBuf>,
        /// The highest revocation rate to seed for (distinct tokens).
        #[arg(long, default_value_t = 30_000)]
        max_rate: usize,
    },
    /// Directory sources: LDAP change -> session inactive (syncrepl beside
    /// SCIM PATCH, and poll), initial sync and poll reconcile of 100,000
    /// LDAP entries beside a raw paged read, and a 100,000-row HR file
    /// import beside SCIM creates. Needs slapd and ldap-utils.
    /// Shared Signals: SCIM deactivation to a SET at a push receiver, SETs
    /// per second to one and ten streams, and the bridge with ten streams.
    Ssf {
        /// Users deactivated one at a time for the latency.
        #[arg(long, default_value_t = 300)]
        users: usize,
        /// Sessions of the user whose deactivation floods the streams.
        #[arg(long, default_value_t = 2_000)]
        fanout: usize,
        /// `[ssf] delivery_nice` of the server (default: the server's own).
        #[arg(long)]
        delivery_nice: Option<i32>,
    },
    Sources {
        /// Entries of the bulk LDAP directory and rows of the HR file.
        #[arg(long, default_value_t = 100_000)]
        entries: usize,
        /// Users of the LDAP directory behind the latency measurements.
        #[arg(long, default_value_t = 1_000)]
        users: usize,
        /// Sequential deactivations in syncrepl mode (and as many over SCIM).
        #[arg(long, default_value_t = 500)]
        samples: usize,
        /// Deactivations in poll mode.
        #[arg(long, default_value_t = 200)]
        poll_samples: usize,
        /// Poll interval of the poll-mode latency measurement, in milliseconds.
        #[arg(long, default_value_t = 2_000)]
        poll_interval_ms: u64,
    },
    /// Everything, in order.
    All {
        /// As for `authority`.
        #[arg(long)]
        dot: Option<PathBuf>,
    },
    /// The baseline: a bare axum handler returning a fixed JSON body.
    #[command(hide = true)]
    BareServer,
    /// Seeds the memory benchmark's data set into a directory and keeps it
    /// (to profile start-up by hand).
    #[command(hide = true)]
    SeedSessions {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 10_000_000)]
        sessions: usize,
        #[arg(long, default_value_t = 1_000_000)]
        identities: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::BareServer => runtime.block_on(server::bare_server()),
        Command::Introspect { seconds, connections } => {
            runtime.block_on(introspect(&cli.lockstep, seconds, connections))
        }
        Command::Deprovision { users } => runtime.block_on(deprovision(&cli.lockstep, users)),
        Command::Fanout { users, sessions } => runtime.block_on(fanout(&cli.lockstep, users, sessions)),
        Command::SeedSessions { dir, sessions, identities } => {
            seed::many_sessions(&dir, identities, sessions)
        }
        Command::Memory { sessions, identities, reuse } => {
            runtime.block_on(memory(&cli.lockstep, sessions, identities, reuse.as_deref()))
        }
        Command::Tiers { users, sessions } => runtime.block_on(tiers(&cli.lockstep, users, sessions)),
        Command::Scim { identities, seconds, reference } => {
            let sizes = identities
                .split(',')
                .map(|n| n.trim().parse::<usize>().context("--identities: comma-separated numbers"))
                .collect::<anyhow::Result<Vec<_>>>()?;
            runtime.block_on(scim::run(&cli.lockstep, &sizes, seconds, reference.as_deref()))
        }
        Command::Authority { seconds, connections, dot, max_rate } => {
            runtime.block_on(authority::run(&cli.lockstep, seconds, connections, dot.as_deref(), max_rate))
        }
        Command::Ssf { users, fanout, delivery_nice } => {
            runtime.block_on(ssf::run(&cli.lockstep, users, fanout, delivery_nice))
        }
        Command::Sources { entries, users, samples, poll_samples, poll_interval_ms } => {
            runtime.block_on(sources::run(sources::Options {
                entries,
                users,
                samples,
                poll_samples,
                poll_interval: Duration::from_millis(poll_interval_ms),
            }))
        }
        Command::All { dot } => runtime.block_on(async {
            introspect(&cli.lockstep, 10, 64).await?;
            deprovision(&cli.lockstep, 200).await?;
            fanout(&cli.lockstep, 10_000, 10).await?;
            tiers(&cli.lockstep, 10_000, 10).await?;
            authority::run(&cli.lockstep, 10, 64, dot.as_deref(), 30_000).await?;
            sources::run(sources::Options {
                entries: 100_000,
                users: 1_000,
                samples: 500,
                poll_samples: 200,
                poll_interval: Duration::from_secs(2),
            })
            .await?;
            memory(&cli.lockstep, 10_000_000, 1_000_000, None).await
        }),
    }
}

pub(crate) fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    format!("{cores} cores, {cpu}")
}

/// `POST /oauth2/introspect` of `bodies` (form `token=…`) with the admin
/// token: 16 connections for 2 s, no warm-up, unless the caller says else.
fn introspections(addr: &str, bodies: Vec<String>) -> LoadSpec {
    LoadSpec {
        addr: addr.to_owned(),
        method: hyper::Method::POST,
        paths: vec!["/oauth2/introspect".into()],
        content_type: "application/x-www-form-urlencoded".into(),
        bearer: ADMIN.into(),
        bodies,
        body_per_pass: false,
        connections: 16,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(2),
    }
}

async fn introspect(bin: &Path, seconds: u64, connections: usize) -> anyhow::Result<()> {
    println!("\n## Introspection throughput ({})", machine());
    let dir = tempfile::tempdir()?;
    let tokens = seed::sessions_for_one_user(dir.path(), 1_000)?;
    let lockstep = Running::lockstep(bin, dir.path()).await?;
    let bare = Running::bare().await?;
    let spec = |addr: &str| LoadSpec {
        connections,
        warmup: Duration::from_secs(2),
        duration: Duration::from_secs(seconds),
        ..introspections(addr, tokens.iter().map(|t| format!("token={t}")).collect())
    };
    // Check the answer is the real one before timing it.
    let sample = lockstep.introspect(&tokens[0]).await?;
    if sample["active"] != json!(true) {
        bail!("seeded token is not active: {sample}");
    }
    println!(
        "method: {connections} keep-alive HTTP/1.1 connections (hyper client, this process), POST form token=…, \
         {seconds}s measured after 2s warm-up, each server its own process on 127.0.0.1; 1,000 distinct live tokens \
         rotated; admin bearer auth on every request"
    );
    let base = run_load(spec(&bare.addr)).await?;
    println!("bare axum handler (fixed JSON body): {base}");
    let ours = run_load(spec(&lockstep.addr)).await?;
    println!("lockstep /oauth2/introspect:         {ours}");
    println!("ratio lockstep / bare: {:.1} %", 100.0 * ours.rps / base.rps);
    if ours.errors > 0 || base.errors > 0 {
        bail!("requests failed during the run");
    }
    Ok(())
}

async fn deprovision(bin: &Path, users: usize) -> anyhow::Result<()> {
    println!("\n## Deprovision latency ({})", machine());
    let dir = tempfile::tempdir()?;
    let seeded = seed::users_with_sessions(dir.path(), users, 100, users)?;
    let server = Running::lockstep(bin, dir.path()).await?;
    println!(
        "method: {users} users with 100 live sessions each and {users} users with none, seeded through the engine; \
         `lockstep serve` with durability=full (fsync per commit); one client, sequential PATCH active=false, \
         round trip measured client-side; propagation read from lockstep_revocation_propagation_seconds"
    );
    let mut baseline = Vec::new();
    for id in &seeded.idle_users {
        baseline.push(server.deactivate(id).await?);
    }
    let mut loaded = Vec::new();
    for (id, tokens) in &seeded.users {
        loaded.push(server.deactivate(id).await?);
        let check = server.introspect(&tokens[tokens.len() - 1]).await?;
        if check["active"] != json!(false) {
            bail!("token still active after PATCH returned");
        }
    }
    println!("PATCH round trip, user with 0 sessions (baseline):  {}", load::summary(&mut baseline));
    println!("PATCH round trip, user with 100 live sessions:      {}", load::summary(&mut loaded));
    let metrics = server.metrics().await?;
    println!(
        "propagation (directory commit -> session commit), from the histogram: {}",
        load::histogram(&metrics)?
    );
    Ok(())
}

async fn fanout(bin: &Path, users: usize, per_user: usize) -> anyhow::Result<()> {
    println!("\n## Fan-out ({})", machine());
    let dir = tempfile::tempdir()?;
    #[allow(clippy::disallowed_methods)]
    let t = Instant::now();
    let seeded = seed::users_with_sessions(dir.path(), users, per_user, users)?;
    println!(
        "seeded {users} users x {per_user} sessions (+{users} users without sessions) in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let server = Running::lockstep(bin, dir.path()).await?;
    println!(
        "method: `lockstep serve` (durability=full) warm-started on the seeded data; 16 concurrent clients send \
         PATCH active=false for every user; a PATCH returns only after its sessions are revoked, so the last \
         acknowledgement is the moment every token is inactive; then every token is introspected to prove it"
    );
    let idle: Vec<String> = seeded.idle_users.clone();
    let (base_secs, _) = server.deactivate_all(&idle, 16).await?;
    println!(
        "baseline: deactivate {users} users with no sessions: {base_secs:.2}s ({:.0} users/s)",
        users as f64 / base_secs
    );
    let ids: Vec<String> = seeded.users.iter().map(|(id, _)| id.clone()).collect();
    let (secs, _) = server.deactivate_all(&ids, 16).await?;
    let total = users * per_user;
    println!(
        "deactivate {users} users holding {total} live sessions: every token inactive after {secs:.2}s \
         ({:.0} users/s, {:.0} sessions revoked/s)",
        users as f64 / secs,
        total as f64 / secs
    );
    #[allow(clippy::disallowed_methods)]
    let t = Instant::now();
    let tokens: Vec<String> = seeded.users.iter().flat_map(|(_, t)| t.iter().cloned()).collect();
    let active = server.count_active(&tokens, 32).await?;
    println!(
        "verification: introspected all {} tokens in {:.1}s: {active} active",
        tokens.len(),
        t.elapsed().as_secs_f64()
    );
    if active != 0 {
        bail!("{active} tokens still active");
    }
    println!("propagation, from the histogram: {}", load::histogram(&server.metrics().await?)?);
    Ok(())
}

async fn tiers(bin: &Path, users: usize, per_user: usize) -> anyhow::Result<()> {
    println!("\n## Deleting a privileged group ({})", machine());
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("lockstep.toml");
    std::fs::write(&config, seed::TIER_POLICY)?;
    let data = dir.path().join("data");
    #[allow(clippy::disallowed_methods)]
    let t = Instant::now();
    let seeded = seed::tier_groups(&data, users, per_user)?;
    println!(
        "seeded prod-admins ({users} members x {per_user} sessions) and an ordinary group of {users} members \
         without sessions in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let server = Running::lockstep_with(bin, &data, Some(&config)).await?;
    println!(
        "method: `lockstep serve --config` with `[policy.tiers.privileged] groups = [\"prod-admins\"]`, \
         durability=full; one DELETE /scim/v2/Groups/{{id}}, round trip measured client-side; the DELETE is \
         acknowledged only after every member's removal event is decided and applied (revoke, for a group that \
         confers the tier), so the acknowledgement is the moment every session is inactive; then every token \
         is introspected to prove it. Baseline: the same DELETE of the ordinary group (same member count, no \
         sessions to cut), first"
    );
    let sample = server.introspect(&seeded.tokens[0]).await?;
    if sample["active"] != json!(true) || sample["tier"] != json!("privileged") {
        bail!("seeded token is not an active privileged one: {sample}");
    }
    let base = server.delete(&format!("/scim/v2/Groups/{}", seeded.ordinary)).await?;
    println!("baseline: delete a group of {users} members without sessions: {:.3}s", base.as_secs_f64());
    let took = server.delete(&format!("/scim/v2/Groups/{}", seeded.privileged)).await?;
    // A read of the audit trail waits for the session store's record of
    // every acknowledged cut (the deletion is acknowledged before it).
    #[allow(clippy::disallowed_methods)]
    let t = Instant::now();
    let last = server.get_json("/v1/audit?after=0&limit=1").await?;
    let recorded = took + t.elapsed();
    if last["records"].as_array().is_none() {
        bail!("unexpected audit page: {last}");
    }
    let total = seeded.tokens.len();
    println!(
        "delete prod-admins ({users} members, {total} live sessions): every session inactive after {:.3}s \
         ({:.0} sessions revoked/s); the session store's record of it complete after {:.3}s",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64(),
        recorded.as_secs_f64()
    );
    #[allow(clippy::disallowed_methods)]
    let t = Instant::now();
    let active = server.count_active(&seeded.tokens, 32).await?;
    println!(
        "verification: introspected all {total} tokens in {:.1}s: {active} active",
        t.elapsed().as_secs_f64()
    );
    if active != 0 {
        bail!("{active} tokens still active");
    }
    Ok(())
}

async fn memory(bin: &Path, sessions: usize, identities: usize, reuse: Option<&Path>) -> anyhow::Result<()> {
    println!("\n## Memory per live session and start-up ({})", machine());
    let empty = tempfile::tempdir()?;
    seed::users_with_sessions(empty.path(), 1, 0, 0)?;
    let temporary = tempfile::tempdir()?;
    let full = reuse.unwrap_or(temporary.path());
    if full.join("sessions.db").exists() {
        println!("reusing the data set in {} (seeded by `lockstep-bench seed-sessions`)", full.display());
    } else {
        #[allow(clippy::disallowed_methods)]
        let t = Instant::now();
        seed::many_sessions(full, identities, sessions)?;
        println!(
            "seeded {sessions} live sessions over {identities} users straight into the session store in {:.1}s",
            t.elapsed().as_secs_f64()
        );
    }
    let probes = seed::probes(full, 10)?;
    let baseline = Running::lockstep(bin, empty.path()).await?;
    let base_rss = baseline.rss()?;
    drop(baseline);
    // Once with a cold page cache for the data files would need root's
    // drop_caches; this is the warm start a restart after a crash sees.
    let _ = std::fs::read(full.join("sessions.db"))?;
    #[allow(clippy::disallowed_methods)]
    let t = Instant::now();
    let loaded = Running::lockstep(bin, full).await?;
    let start = t.elapsed().as_secs_f64();
    // Serving already: the probes introspect while the bearer secrets are
    // still loading (those not loaded yet are read from the store).
    let early = loaded.count_active(&probes, 4).await?;
    // Introspection while the secrets load, at its worst: tokens that are
    // not in memory (unknown ones), each read from the store until the
    // load is done; then the same once warm (a miss in memory, no read).
    let unknown: Vec<String> = (0..1_000).map(|n| format!("token=lst_at_not-issued-{n:04}")).collect();
    let misses = |addr: &str| introspections(addr, unknown.clone());
    let loading = run_load(misses(&loaded.addr)).await?;
    let still_loading = loaded.health().await?["bearer_tokens_loaded"] == json!(false);
    let warm = loop {
        let health: Value = loaded.health().await?;
        if health["bearer_tokens_loaded"] == json!(true) {
            break t.elapsed().as_secs_f64();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let health: Value = loaded.health().await?;
    let cached = health["cached_sessions"].as_u64().context("no cached_sessions")?;
    let rss = loaded.rss()?;
    let active = loaded.count_active(&probes, 4).await?;
    let warm_misses = run_load(misses(&loaded.addr)).await?;
    println!(
        "method: VmRSS of `lockstep serve` after start-up on an empty data directory (baseline) and on one with \
         {cached} live sessions, measured once every bearer secret is in memory; start to serving timed from \
         spawning the process to its \"listening\" line (it listens once every live session and the claims of \
         their holders are loaded; the bearer secrets load after, and introspection reads those not loaded yet \
         from the store), and to the secrets loaded (`/healthz` polled every 50 ms); page cache warm; {early} of \
         {} tokens opened through the authority just before introspect active right after \"listening\", \
         {active} once every secret is loaded",
        probes.len()
    );
    println!("start to serving with {cached} live sessions: {start:.1}s");
    println!(
        "start to every bearer secret in memory: {warm:.1}s (with the 2 s introspection load below running in \
         that window)"
    );
    println!(
        "introspection of tokens not in memory, 16 connections, 2 s right after \"listening\" (each read from \
         the store while the secrets load{}): {loading}",
        if still_loading { "; still loading at its end" } else { "; the load ended within it" }
    );
    println!("the same once warm (a miss in memory):                 {warm_misses}");
    println!(
        "RSS empty: {:.1} MiB; RSS with {cached} sessions: {:.1} MiB",
        base_rss as f64 / 1048576.0,
        rss as f64 / 1048576.0
    );
    println!(
        "resident bytes per live session: {:.0}",
        (rss.saturating_sub(base_rss)) as f64 / cached.max(1) as f64
    );
    if active != probes.len() || early != probes.len() {
        bail!("a live session introspected inactive after the restart");
    }
    Ok(())
}
