//! Directory sources: LDAP (syncrepl and poll) and HR-file imports, each
//! beside a baseline measured in the same run.
//!
//! Unlike the other benchmarks the server runs in this process: the same
//! `lockstep_http::run` wiring `lockstep serve` uses, on 127.0.0.1:0, with
//! the LDAP connectors started the way `serve` starts them. That lets the
//! bench see the moment a connector hands an update to the engine (a
//! recording [`SourceSink`] wrapped around the real [`SourceHandle`]) and
//! introspect tokens in memory every half millisecond (the answer
//! `/oauth2/introspect` gives, without the HTTP round trip). slapd is the
//! throw-away one of `lockstep-source-ldap`'s `testing` feature.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, Mod, Scope, SearchEntry, SearchStream};
use lockstep_domain::{IdentityKind, SourceId};
use lockstep_engine::sources::{
    Breaker, ConnectionState, Removal, SourceApplied, SourceError, SourceHandle, SourceRecord,
    SourceSettings, SourceSink, SourceUpdate, UserRecord,
};
use lockstep_engine::{Engine, EngineConfig, OpenRequest, OsEntropy, Principal, Stores, SystemClock};
use lockstep_http::{AppState, HttpConfig};
use lockstep_proto::sources::{ImportRequest, ImportResponse};
use lockstep_source_ldap::testing::{ADMIN_DN, ADMIN_PW, GROUPS, PEOPLE, Slapd};
use lockstep_source_ldap::{LdapSourceConfig, Mapping, Mode};
use lockstep_store_sqlite::{DIRECTORY_FILE, Durability, SESSIONS_FILE, SqliteDirectory, SqliteSessions};
use serde_json::{Value, json};

use crate::load::summary;
use crate::machine;
use crate::server::ADMIN;

/// How often the watcher introspects the tokens it waits for.
const TICK: Duration = Duration::from_micros(500);
/// Members per generated LDAP group.
const GROUP_SIZE: usize = 1_000;
/// The disabled filter of every LDAP source here.
const DISABLED: &str = "(employeeType=disabled)";

/// What the `sources` subcommand measures.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Entries of the bulk LDAP directory and rows of the HR file.
    pub entries: usize,
    /// Users of the LDAP directory behind the latency measurements.
    pub users: usize,
    /// Sequential deactivations in syncrepl mode (and as many SCIM ones).
    pub samples: usize,
    /// Deactivations in poll mode.
    pub poll_samples: usize,
    /// The poll interval of the poll-mode latency measurement.
    pub poll_interval: Duration,
}

/// Runs every sources benchmark.
pub async fn run(o: Options) -> anyhow::Result<()> {
    println!("\n## Directory sources: LDAP and HR files ({})", machine());
    if o.samples + o.poll_samples > o.users {
        bail!("--samples + --poll-samples must not exceed --users");
    }
    println!(
        "server: in this process, lockstep_http::run on 127.0.0.1:0 (the wiring `lockstep serve` uses), \
         SQLite stores with durability=full (fsync per commit); LDAP connectors started as `serve` starts \
         them, through a recording sink around the engine's SourceHandle; slapd 2.x (mdb, syncprov, memberof; \
         its default: a synced write per LDAP write) on 127.0.0.1; tokens introspected in memory every \
         {} µs (engine.introspect, the answer /oauth2/introspect gives)",
        TICK.as_micros()
    );
    let t = Instant::now();
    latency(o).await?;
    bulk(o.entries).await?;
    import(o.entries).await?;
    println!("\n(sources run took {:.0}s)", t.elapsed().as_secs_f64());
    Ok(())
}

// ------------------------------------------------------------ the server

/// Every update a connector handed over, and when.
#[derive(Debug, Clone)]
struct Handed {
    start: Instant,
    end: Instant,
    upserts: usize,
    result: Result<SourceApplied, String>,
}

#[derive(Debug, Default)]
struct ProbeLog {
    applies: Vec<Handed>,
    /// `ConnectionState::Polling` reports: a poll session reports it right
    /// after its apply, then sleeps the interval.
    polling: Vec<Instant>,
    errors: Vec<String>,
}

/// The engine's sink for one source, recording what passes through.
#[derive(Debug)]
struct Probe {
    inner: SourceHandle,
    log: Mutex<ProbeLog>,
}

impl Probe {
    fn log(&self) -> MutexGuard<'_, ProbeLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn applies(&self) -> Vec<Handed> {
        self.log().applies.clone()
    }

    /// Waits until `n` updates were applied; fails on a connector error.
    async fn wait_applies(&self, n: usize, limit: Duration) -> anyhow::Result<Vec<Handed>> {
        let deadline = Instant::now() + limit;
        loop {
            {
                let log = self.log();
                if let Some(e) = log.errors.first() {
                    bail!("the LDAP source went down: {e}");
                }
                if let Some(h) = log.applies.iter().find(|h| h.result.is_err()) {
                    bail!("an update failed: {:?}", h.result);
                }
                if log.applies.len() >= n {
                    return Ok(log.applies.clone());
                }
            }
            if Instant::now() > deadline {
                bail!("no {n} updates applied within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

impl Probe {
    /// Waits for the `n`th poll report; returns when it came.
    async fn wait_polling(&self, n: usize) -> anyhow::Result<Instant> {
        for _ in 0..5_000 {
            if let Some(at) = self.log().polling.get(n - 1) {
                return Ok(*at);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        bail!("poll {n} never reported")
    }
}

impl SourceSink for Probe {
    fn cursor(&self) -> Result<Option<Vec<u8>>, SourceError> {
        self.inner.cursor()
    }

    fn now(&self) -> lockstep_domain::Timestamp {
        self.inner.now()
    }

    fn apply(&self, update: SourceUpdate) -> Result<SourceApplied, SourceError> {
        let upserts = update.upserts.len();
        let start = Instant::now();
        let result = self.inner.apply(update);
        let end = Instant::now();
        let logged = result.as_ref().map(Clone::clone).map_err(ToString::to_string);
        self.log().applies.push(Handed { start, end, upserts, result: logged });
        result
    }

    fn connection(&self, state: ConnectionState) {
        let now = Instant::now();
        match &state {
            ConnectionState::Polling => self.log().polling.push(now),
            ConnectionState::Down { error } => self.log().errors.push(error.clone()),
            _ => {}
        }
        self.inner.connection(state);
    }
}

/// A lockstep server in this process on a fresh data directory.
struct Server {
    engine: Arc<Engine>,
    addr: String,
    http: reqwest::Client,
    stop_http: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    stop_sources: tokio::sync::watch::Sender<bool>,
    connectors: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(sources: Vec<SourceSettings>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().to_owned();
        let engine = tokio::task::spawn_blocking(move || -> anyhow::Result<Engine> {
            let sessions = Arc::new(SqliteSessions::open(&path.join(SESSIONS_FILE), Durability::Full)?);
            let stores = Stores {
                directory: Arc::new(SqliteDirectory::open(&path.join(DIRECTORY_FILE), Durability::Full)?),
                sessions: sessions.clone(),
                credentials: sessions,
            };
            let config = EngineConfig { sources, ..EngineConfig::default() };
            let (engine, _) =
                Engine::open_reporting(stores, config, Arc::new(SystemClock), Arc::new(OsEntropy))?;
            Ok(engine)
        })
        .await??;
        let engine = Arc::new(engine);
        engine.ensure_admin_token(Some(ADMIN))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = format!("http://{}", listener.local_addr()?);
        let state = AppState { engine: engine.clone(), config: Arc::new(HttpConfig::default()), keys: None };
        let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(lockstep_http::run(listener, state, async move {
            let _ = stopped.await;
        }));
        let (stop_sources, _) = tokio::sync::watch::channel(false);
        Ok(Self {
            engine,
            addr,
            http: reqwest::Client::new(),
            stop_http: Some(stop_http),
            served: Some(served),
            stop_sources,
            connectors: Vec::new(),
            _dir: dir,
        })
    }

    /// Starts the LDAP connector for `cfg` (as `serve` does); returns its
    /// probe and the moment it was started.
    fn connect(&mut self, cfg: LdapSourceConfig) -> anyhow::Result<(Arc<Probe>, Instant)> {
        let inner = SourceHandle::new(self.engine.clone(), &cfg.name)?;
        let probe = Arc::new(Probe { inner, log: Mutex::new(ProbeLog::default()) });
        let sink: Arc<dyn SourceSink> = probe.clone();
        let mut stop = self.stop_sources.subscribe();
        let started = Instant::now();
        self.connectors.push(tokio::spawn(lockstep_source_ldap::run(cfg, sink, async move {
            let _ = stop.wait_for(|s| *s).await;
        })));
        Ok((probe, started))
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop_sources.send(true);
        for task in self.connectors.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        if let Some(stop) = self.stop_http.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            served.await??;
        }
        Ok(())
    }

    /// Identities and groups the source owns now.
    async fn owned(&self, name: &str) -> anyhow::Result<(usize, usize)> {
        let engine = self.engine.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || {
            let status = engine.sources().status()?;
            let s = status.iter().find(|s| s.settings.name.as_str() == name).context("no such source")?;
            Ok((s.identities, s.groups))
        })
        .await?
    }

    /// Opens one session per subject (from 8 threads: the authority's group
    /// commit batches them); returns the access tokens in order.
    async fn open_sessions(&self, subjects: &[String]) -> anyhow::Result<Vec<String>> {
        let mut tasks = Vec::new();
        for chunk in subjects.chunks(subjects.len().div_ceil(8).max(1)) {
            let (engine, chunk) = (self.engine.clone(), chunk.to_vec());
            tasks.push(tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
                chunk
                    .into_iter()
                    .map(|subject| {
                        let request = OpenRequest {
                            subject,
                            ttl: Some(Duration::from_secs(6 * 3600)),
                            refresh: false,
                            format: None,
                        };
                        Ok(engine.authority().open_session(request, &Principal::admin()).wait()?.access_token)
                    })
                    .collect()
            }));
        }
        let mut tokens = Vec::with_capacity(subjects.len());
        for t in tasks {
            tokens.extend(t.await??);
        }
        if let Some(t) = tokens.iter().find(|t| self.engine.introspect(t).is_none()) {
            bail!("a token just opened is not active: {t}");
        }
        Ok(tokens)
    }

    /// Creates a SCIM user; returns its id.
    async fn scim_user(&self, name: &str) -> anyhow::Result<String> {
        let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, "active": true});
        let r: Value = self
            .http
            .post(format!("{}/scim/v2/Users", self.addr))
            .bearer_auth(ADMIN)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(r["id"].as_str().context("no id")?.to_owned())
    }

    /// PATCH active=false.
    async fn scim_deactivate(&self, id: &str) -> anyhow::Result<()> {
        self.http
            .patch(format!("{}/scim/v2/Users/{id}", self.addr))
            .bearer_auth(ADMIN)
            .header("content-type", "application/scim+json")
            .body(r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}"#)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}

/// Introspects tokens in memory every [`TICK`] until they are inactive.
struct Watcher {
    tx: std::sync::mpsc::Sender<(String, tokio::sync::oneshot::Sender<Instant>)>,
}

impl Watcher {
    fn new(engine: Arc<Engine>) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<(String, tokio::sync::oneshot::Sender<Instant>)>();
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            loop {
                if pending.is_empty() {
                    match rx.recv() {
                        Ok(w) => pending.push(w),
                        Err(_) => return,
                    }
                }
                while let Ok(w) = rx.try_recv() {
                    pending.push(w);
                }
                let now = Instant::now();
                let mut i = 0;
                while i < pending.len() {
                    let (token, done) = &pending[i];
                    if done.is_closed() || engine.introspect(token).is_none() {
                        let (_, done) = pending.swap_remove(i);
                        let _ = done.send(now);
                    } else {
                        i += 1;
                    }
                }
                if !pending.is_empty() {
                    std::thread::sleep(TICK);
                }
            }
        });
        Self { tx }
    }

    /// The moment `token` was first seen inactive.
    async fn inactive(&self, token: &str, limit: Duration) -> anyhow::Result<Instant> {
        let (done, seen) = tokio::sync::oneshot::channel();
        self.tx.send((token.to_owned(), done)).map_err(|_| anyhow::anyhow!("watcher stopped"))?;
        tokio::time::timeout(limit, seen).await.context("the token stayed active")?.context("watcher stopped")
    }
}

// ------------------------------------------------------------ LDAP

fn user_dn(uid: &str) -> String {
    format!("uid={uid},{PEOPLE}")
}

fn uid(i: usize) -> String {
    format!("u{i:06}")
}

/// `n` inetOrgPerson users and groupOfNames groups of [`GROUP_SIZE`].
fn ldif(n: usize) -> String {
    let mut out = String::with_capacity(n * 200 + n * 40);
    for i in 0..n {
        let u = uid(i);
        out.push_str(&format!(
            "dn: {}\nobjectClass: inetOrgPerson\nuid: {u}\ncn: User {i:06}\nsn: U{i:06}\ngivenName: Bench\nmail: {u}@example.com\n\n",
            user_dn(&u)
        ));
    }
    for (g, members) in (0..n).collect::<Vec<_>>().chunks(GROUP_SIZE).enumerate() {
        out.push_str(&format!("dn: cn=g{g:04},{GROUPS}\nobjectClass: groupOfNames\ncn: g{g:04}\n"));
        for &i in members {
            out.push_str(&format!("member: {}\n", user_dn(&uid(i))));
        }
        out.push('\n');
    }
    out
}

fn groups_of(n: usize) -> usize {
    n.div_ceil(GROUP_SIZE)
}

fn find_bin(name: &str) -> anyhow::Result<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin"]
        .iter()
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} not found (apt-get install slapd ldap-utils)"))
}

fn start_slapd() -> anyhow::Result<Slapd> {
    Slapd::start().context("slapd is required (apt-get install slapd ldap-utils)")
}

/// Stops slapd, raises the database's map size, loads `ldif` offline with
/// `slapadd -q -w` and starts it again; returns the time slapadd took.
fn slapadd(slapd: &mut Slapd, ldif: &str) -> anyhow::Result<Duration> {
    let bin = find_bin("slapadd")?;
    slapd.kill();
    let conf = slapd.dir.path().join("slapd.conf");
    let text = std::fs::read_to_string(&conf)?;
    std::fs::write(&conf, text.replace("maxsize 268435456", "maxsize 4294967296"))?;
    let file = slapd.dir.path().join("bulk.ldif");
    std::fs::write(&file, ldif)?;
    let t = Instant::now();
    let out = Command::new(bin).args(["-q", "-w", "-f"]).arg(&conf).arg("-l").arg(&file).output()?;
    let took = t.elapsed();
    if !out.status.success() {
        bail!("slapadd failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    slapd.launch();
    Ok(took)
}

async fn ldap_admin(url: &str) -> anyhow::Result<Ldap> {
    let (conn, mut ldap) = LdapConnAsync::new(url).await?;
    tokio::spawn(async move {
        let _ = conn.drive().await;
    });
    ldap.simple_bind(ADMIN_DN, ADMIN_PW).await?.success()?;
    Ok(ldap)
}

async fn disable(ldap: &mut Ldap, uid: &str) -> anyhow::Result<()> {
    ldap.modify(&user_dn(uid), vec![Mod::Add("employeeType", HashSet::from(["disabled"]))])
        .await?
        .success()?;
    Ok(())
}

fn ldap_config(url: &str, mode: Mode, poll_interval: Duration) -> LdapSourceConfig {
    let mut cfg = LdapSourceConfig::openldap("corp-ldap", url, PEOPLE);
    cfg.bind_dn = Some(ADMIN_DN.into());
    cfg.bind_password = Some(ADMIN_PW.into());
    cfg.group_base_dn = Some(GROUPS.into());
    cfg.disabled_filter = Some(DISABLED.into());
    cfg.mode = mode;
    cfg.poll_interval = poll_interval;
    cfg
}

fn source(name: &str, kind: &str, mode: &str, removal: Removal) -> SourceSettings {
    SourceSettings {
        name: SourceId::new(name),
        kind: kind.into(),
        mode: mode.into(),
        removal,
        max_staleness: None,
        // Raised: the benchmark deactivates hundreds of users within the
        // default window on purpose; the default would hold them.
        breaker: Breaker { fixed: Some(10_000_000), ..Breaker::default() },
    }
}

fn ldap_source(mode: &str) -> SourceSettings {
    source("corp-ldap", "ldap", mode, Removal::Delete)
}

/// One paged search as the connector makes it (page size 500); returns
/// the entries read (each decoded).
async fn paged(ldap: &mut Ldap, base: &str, filter: &str, attrs: Vec<String>) -> anyhow::Result<usize> {
    let adapters: Vec<Box<dyn Adapter<'_, String, Vec<String>>>> =
        vec![Box::new(EntriesOnly::new()), Box::new(PagedResults::new(500))];
    let mut st: SearchStream<'_, String, Vec<String>> =
        ldap.streaming_search_with(adapters, base, Scope::Subtree, filter, attrs).await?;
    let mut n = 0;
    while let Some(e) = st.next().await? {
        let e = SearchEntry::construct(e);
        n += usize::from(!e.dn.is_empty());
    }
    st.finish().await.success()?;
    Ok(n)
}

/// The raw LDAP cost of one poll: the same three paged searches a poll
/// makes (users with their attributes, groups with members, keys of the
/// disabled users), decoded, nothing else.
async fn raw_read(url: &str) -> anyhow::Result<(usize, usize, Duration)> {
    let mut ldap = ldap_admin(url).await?;
    let mapping = Mapping::openldap();
    let t = Instant::now();
    let users = paged(&mut ldap, PEOPLE, "(objectClass=inetOrgPerson)", mapping.user_attrs()).await?;
    let groups = paged(&mut ldap, GROUPS, "(objectClass=groupOfNames)", mapping.group_attrs()).await?;
    paged(&mut ldap, PEOPLE, &format!("(&(objectClass=inetOrgPerson){DISABLED})"), vec!["entryUUID".into()])
        .await?;
    let took = t.elapsed();
    let _ = ldap.unbind().await;
    Ok((users, groups, took))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// The update that carried a change made at `from` and seen at `to`: the
/// last one handed over before `to` (the bridge revokes inside the apply,
/// so `to` can precede the apply's return), if it ended after `from`.
fn handed_between(applies: &[Handed], from: Instant, to: Instant) -> Option<&Handed> {
    applies.iter().rev().find(|h| h.start <= to).filter(|h| h.end >= from)
}

// ------------------------------------------------ 1 and 2: latency

async fn latency(o: Options) -> anyhow::Result<()> {
    let slapd = tokio::task::block_in_place(start_slapd)?;
    let text = ldif(o.users);
    let t = Instant::now();
    tokio::task::block_in_place(|| slapd.ldapadd(&text));
    let added = t.elapsed();
    println!(
        "\n### LDAP change -> session inactive ({} users, {} groups of up to {GROUP_SIZE})\n\
         seeding: one `ldapadd` of a {} KB LDIF ({} entries) into the running slapd took {} ({:.0} entries/s)",
        o.users,
        groups_of(o.users),
        text.len() / 1024,
        o.users + groups_of(o.users),
        secs(added),
        (o.users + groups_of(o.users)) as f64 / added.as_secs_f64()
    );
    syncrepl_latency(&slapd, o).await?;
    poll_latency(&slapd, o).await?;
    drop(slapd);
    Ok(())
}

async fn syncrepl_latency(slapd: &Slapd, o: Options) -> anyhow::Result<()> {
    let mut server = Server::start(vec![ldap_source("syncrepl")]).await?;
    let (probe, started) =
        server.connect(ldap_config(&slapd.url, Mode::Syncrepl, Duration::from_secs(60)))?;
    let first = probe.wait_applies(1, Duration::from_secs(120)).await?;
    let (identities, groups) = server.owned("corp-ldap").await?;
    println!(
        "syncrepl refresh of the {} users: applied after {} ({identities} identities, {groups} groups owned)",
        o.users,
        secs(first[0].end - started)
    );
    let ldap_users: Vec<String> = (0..o.samples).map(uid).collect();
    let ldap_tokens = server.open_sessions(&ldap_users).await?;
    let mut scim_ids = Vec::with_capacity(o.samples);
    let mut scim_names = Vec::with_capacity(o.samples);
    for i in 0..o.samples {
        let name = format!("scim{i:06}");
        scim_ids.push(server.scim_user(&name).await?);
        scim_names.push(name);
    }
    let scim_tokens = server.open_sessions(&scim_names).await?;
    println!(
        "method: {} LDAP users and {} SCIM-owned users on the same server, each with one live session; \
         alternately, one at a time: (a) an in-process ldap3 modify adding `employeeType: disabled` \
         (disabled_filter \"{DISABLED}\") to the next LDAP user, timed from the moment slapd's modify response \
         arrived (the change is committed) until the user's token introspects inactive; (b) PATCH \
         /scim/v2/Users/{{id}} active=false for the next SCIM user (the push path, baseline), timed from \
         sending the PATCH until the token introspects inactive (the PATCH acknowledges after the revocation, \
         so this is its round trip); a 20 ms pause after each",
        o.samples, o.samples
    );
    let watcher = Watcher::new(server.engine.clone());
    let mut ldap = ldap_admin(&slapd.url).await?;
    let limit = Duration::from_secs(30);
    let (mut lat, mut modify, mut scim) = (Vec::new(), Vec::new(), Vec::new());
    let mut marks = Vec::new();
    for i in 0..o.samples {
        let t0 = Instant::now();
        disable(&mut ldap, &ldap_users[i]).await?;
        let t1 = Instant::now();
        let seen = watcher.inactive(&ldap_tokens[i], limit).await?;
        modify.push(t1 - t0);
        lat.push(seen - t1);
        marks.push((t1, seen));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t0 = Instant::now();
        server.scim_deactivate(&scim_ids[i]).await?;
        let seen = watcher.inactive(&scim_tokens[i], limit).await?;
        scim.push(seen - t0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let p99 = {
        lat.sort();
        lat[((lat.len() as f64 - 1.0) * 0.99).round() as usize]
    };
    let (mut pre, mut engine, mut post) = split(&probe.applies(), &marks);
    println!("ldap3 modify round trip (slapd commit, not counted):      {}", summary(&mut modify));
    println!("SCIM PATCH -> token inactive (push path, baseline):        {}", summary(&mut scim));
    println!("LDAP modify committed -> token inactive, syncrepl:         {}", summary(&mut lat));
    println!(
        "  of which: modify response -> update handed to the engine (syncprov notice, 5 ms coalescing, the \
         connector's disabled-filter search) {}; engine apply (plan, directory commit, bridge) {}; apply \
         returned -> seen inactive {}",
        summary(&mut pre),
        summary(&mut engine),
        summary(&mut post)
    );
    println!(
        "target p99 <= 100 ms: {} (p99 {})",
        if p99 <= Duration::from_millis(100) { "met" } else { "NOT met" },
        ms(p99)
    );
    server.stop().await
}

/// Splits each (modify returned, seen inactive) pair by the update that
/// carried it: before the handover, the engine's apply, after it.
fn split(applies: &[Handed], marks: &[(Instant, Instant)]) -> (Vec<Duration>, Vec<Duration>, Vec<Duration>) {
    let (mut pre, mut engine, mut post) = (Vec::new(), Vec::new(), Vec::new());
    for &(from, to) in marks {
        if let Some(h) = handed_between(applies, from, to) {
            pre.push(h.start.saturating_duration_since(from));
            engine.push(h.end - h.start);
            post.push(to.saturating_duration_since(h.end));
        }
    }
    (pre, engine, post)
}

async fn poll_latency(slapd: &Slapd, o: Options) -> anyhow::Result<()> {
    let interval = o.poll_interval;
    let mut server = Server::start(vec![ldap_source("poll")]).await?;
    let (probe, _) = server.connect(ldap_config(&slapd.url, Mode::Poll, interval))?;
    probe.wait_applies(1, Duration::from_secs(120)).await?;
    let users: Vec<String> = (o.samples..o.samples + o.poll_samples).map(uid).collect();
    let tokens = server.open_sessions(&users).await?;
    // About ten changes per interval, at times that have nothing to do with
    // the poll's phase (a fixed stride plus a scrambled offset).
    let window = interval.mul_f64(o.poll_samples as f64 / 10.0);
    let stride = window.div_f64(o.poll_samples as f64);
    println!(
        "method (poll mode, poll_interval {}): a second server with the same source in poll mode over the \
         same slapd; {} other LDAP users with one live session each; their modifies are spread over {} \
         (about ten per interval, at offsets unrelated to the poll's phase), each timed from its modify \
         response until its token introspects inactive",
        secs(interval),
        o.poll_samples,
        secs(window)
    );
    let watcher = Arc::new(Watcher::new(server.engine.clone()));
    let ldap = ldap_admin(&slapd.url).await?;
    let begin = Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::new();
    for (j, (user, token)) in users.into_iter().zip(tokens).enumerate() {
        let scrambled = (j.wrapping_mul(7_919) % 1_000) as f64 / 1_000.0;
        let at = begin + stride.mul_f64(j as f64 + scrambled);
        let (mut ldap, watcher) = (ldap.clone(), watcher.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
            disable(&mut ldap, &user).await?;
            let t1 = Instant::now();
            let seen = watcher.inactive(&token, interval * 10 + Duration::from_secs(30)).await?;
            anyhow::Ok(seen - t1)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.push(t.await??);
    }
    let polls: Vec<Handed> = probe.applies().into_iter().skip(1).collect();
    let mut applies: Vec<Duration> = polls.iter().map(|h| h.end - h.start).collect();
    let log_polling = probe.log().polling.clone();
    // A poll's read starts one interval after the previous poll reported.
    let mut reads: Vec<Duration> = polls
        .iter()
        .filter_map(|h| {
            let previous = log_polling.iter().rev().find(|p| **p < h.start)?;
            Some(h.start.saturating_duration_since(*previous + interval))
        })
        .collect();
    println!("LDAP modify committed -> token inactive, poll every {}: {}", secs(interval), summary(&mut lat));
    println!(
        "  each poll of {} users: LDAP read and mapping {}; engine apply of the snapshot {}",
        o.users,
        summary(&mut reads),
        summary(&mut applies)
    );
    server.stop().await
}

// ------------------------------------------- 3 and 4: 100,000 entries

async fn bulk(entries: usize) -> anyhow::Result<()> {
    let groups = groups_of(entries);
    println!("\n### {entries} LDAP entries: initial sync and poll reconcile");
    let mut slapd = tokio::task::block_in_place(start_slapd)?;
    let text = ldif(entries);
    let took = tokio::task::block_in_place(|| slapadd(&mut slapd, &text))?;
    println!(
        "seeding: `slapadd -q -w` of {entries} users and {groups} groups ({} MB of LDIF) into the stopped slapd \
         took {} ({:.0} entries/s); the directory also holds the fixture's alice and engineering",
        text.len() / 1_000_000,
        secs(took),
        (entries + groups) as f64 / took.as_secs_f64()
    );
    drop(text);
    let mut raw = Vec::new();
    for _ in 0..2 {
        let (u, g, t) = raw_read(&slapd.url).await?;
        raw.push(t);
        if u != entries + 1 || g != groups + 1 {
            bail!("raw read saw {u} users and {g} groups");
        }
    }
    let raw_best = raw.iter().copied().min().unwrap_or_default();
    println!(
        "baseline, raw LDAP read (ldap3 in this process, the three paged searches of a poll: users with their \
         attributes, groups with members, keys of disabled users; page size 500; entries decoded, nothing \
         else): {} then {} for {} users and {} groups ({:.0} entries/s at best)",
        secs(raw[0]),
        secs(raw[1]),
        entries + 1,
        groups + 1,
        (entries + groups + 2) as f64 / raw_best.as_secs_f64()
    );
    initial_syncrepl(&slapd, entries).await?;
    poll_reconcile(&slapd, entries, raw_best).await?;
    drop(slapd);
    Ok(())
}

fn created(h: &Handed) -> usize {
    h.result.as_ref().map_or(0, |a| a.created)
}

async fn initial_syncrepl(slapd: &Slapd, entries: usize) -> anyhow::Result<()> {
    let mut server = Server::start(vec![ldap_source("syncrepl")]).await?;
    let (probe, started) =
        server.connect(ldap_config(&slapd.url, Mode::Syncrepl, Duration::from_secs(60)))?;
    let first = probe.wait_applies(1, Duration::from_secs(1800)).await?;
    let refresh = &first[0];
    let (identities, groups) = server.owned("corp-ldap").await?;
    println!(
        "syncrepl initial refresh (no cookie): connector start -> engine holds every identity and group: {} \
         ({} records handed over as one update, {} created; {identities} identities and {groups} groups \
         owned); LDAP side (index listing, refresh search, disabled-keys search, mapping) {}, engine apply {} \
         ({:.0} records/s end to end)",
        secs(refresh.end - started),
        refresh.upserts,
        created(refresh),
        secs(refresh.start - started),
        secs(refresh.end - refresh.start),
        refresh.upserts as f64 / (refresh.end - started).as_secs_f64()
    );
    if identities != entries + 1 {
        bail!("expected {} identities, the engine holds {identities}", entries + 1);
    }
    // A live change at this size: the per-change plan reads what the source owns.
    let k = 50.min(entries);
    let users: Vec<String> = (0..k).map(uid).collect();
    let tokens = server.open_sessions(&users).await?;
    let watcher = Watcher::new(server.engine.clone());
    let mut ldap = ldap_admin(&slapd.url).await?;
    let (mut lat, mut marks) = (Vec::new(), Vec::new());
    for (user, token) in users.iter().zip(&tokens) {
        disable(&mut ldap, user).await?;
        let t1 = Instant::now();
        let seen = watcher.inactive(token, Duration::from_secs(60)).await?;
        lat.push(seen - t1);
        marks.push((t1, seen));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut pre, mut engine, _) = split(&probe.applies(), &marks);
    println!(
        "syncrepl at {} identities, {k} sequential deactivations as above: LDAP modify committed -> token \
         inactive {}\n  of which handover {}; engine apply {}",
        entries + 1,
        summary(&mut lat),
        summary(&mut pre),
        summary(&mut engine)
    );
    let one = SourceUpdate::delta(
        vec![user_record("bench-plan-probe", "bench-plan-probe", None, None, true)],
        vec![],
    );
    let mut plans = plan_only(&server.engine, "corp-ldap", one, 5).await?;
    println!(
        "  the plan alone (engine.sources().dry_run of a one-record delta: reads every identity and group the \
         source owns, then plans; writes nothing): {}",
        summary(&mut plans)
    );
    server.stop().await
}

fn user_record(
    key: &str,
    user_name: &str,
    display_name: Option<String>,
    email: Option<String>,
    active: bool,
) -> SourceRecord {
    SourceRecord::User(UserRecord {
        key: key.to_owned(),
        user_name: user_name.to_owned(),
        display_name,
        emails: email.into_iter().collect(),
        active,
        kind: IdentityKind::Human,
        owner_key: None,
        profile: "{}".into(),
    })
}

/// Times `n` dry runs of `update` (the plan without the writes).
async fn plan_only(
    engine: &Arc<Engine>,
    source: &str,
    update: SourceUpdate,
    n: usize,
) -> anyhow::Result<Vec<Duration>> {
    let (engine, source) = (engine.clone(), source.to_owned());
    tokio::task::spawn_blocking(move || {
        (0..n)
            .map(|_| {
                let t = Instant::now();
                engine.sources().dry_run(&source, &update)?;
                Ok(t.elapsed())
            })
            .collect()
    })
    .await?
}

async fn poll_reconcile(slapd: &Slapd, entries: usize, raw: Duration) -> anyhow::Result<()> {
    let interval = Duration::from_secs(15);
    let changed = entries / 100;
    let mut server = Server::start(vec![ldap_source("poll")]).await?;
    let (probe, started) = server.connect(ldap_config(&slapd.url, Mode::Poll, interval))?;
    let first = probe.wait_applies(1, Duration::from_secs(1800)).await?;
    let snap = &first[0];
    println!(
        "poll, first snapshot: connector start -> engine holds everything: {} ({} records, {} created); LDAP \
         read and mapping {}, engine apply {}",
        secs(snap.end - started),
        snap.upserts,
        created(snap),
        secs(snap.start - started),
        secs(snap.end - snap.start)
    );
    // Cycle 2 unchanged; then change 1 % between cycles 2 and 3; cycle 4
    // unchanged again.
    probe.wait_applies(2, interval * 3 + Duration::from_secs(600)).await?;
    let next_poll = probe.wait_polling(2).await? + interval;
    let ldap = ldap_admin(&slapd.url).await?;
    let t = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (mut ldap, next) = (ldap.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= changed {
                    return anyhow::Ok(());
                }
                // Spread over the directory: every hundredth user. (`cn`,
                // not `mail`: an e-mail-only change is planned but never
                // written; see BENCHMARKS.md.)
                let u = uid(i * 100 + 7);
                let cn = format!("User {u} Renamed");
                ldap.modify(&user_dn(&u), vec![Mod::Replace("cn", HashSet::from([cn.as_str()]))])
                    .await?
                    .success()?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let done = Instant::now();
    if done > next_poll {
        bail!(
            "the {changed} modifies took {} and overlapped the next poll; raise the interval",
            secs(t.elapsed())
        );
    }
    let applies = probe.wait_applies(4, interval * 3 + Duration::from_secs(600)).await?;
    let polling = probe.log().polling.clone();
    println!(
        "method (reconcile): the same source in poll mode (interval {}), one poll after another; between poll 2 \
         and poll 3, {changed} users (1 %) get a new `cn` (display name; 8 concurrent ldap3 modifies, {}); each poll's time \
         from its start (one interval after the previous poll reported) to the end of its apply, split into \
         the LDAP read (with mapping) and the engine's apply of the snapshot (plan against the {} owned \
         identities, writes of what changed)",
        secs(interval),
        secs(done - t),
        entries + 1
    );
    for (n, what) in
        [(1usize, "poll 2, 0 % changed (baseline)"), (2, "poll 3, 1 % changed"), (3, "poll 4, 0 % changed")]
    {
        let h = &applies[n];
        let start = polling.iter().rev().find(|p| **p < h.start).map(|p| *p + interval).unwrap_or(h.start);
        let a = h.result.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
        println!(
            "{what}: {} end to end = LDAP read {} + engine apply {} ({} updated, {} unchanged)",
            secs(h.end - start),
            secs(h.start.saturating_duration_since(start)),
            secs(h.end - h.start),
            a.updated,
            a.unchanged
        );
    }
    println!("baseline, raw LDAP read of the same entries (best of two, above): {}", secs(raw));
    let updated = applies[2].result.as_ref().map_or(0, |a| a.updated);
    if updated != changed {
        bail!("poll 3 updated {updated} records, expected {changed}");
    }
    server.stop().await
}

// ---------------------------------------------------- 5: HR file import

fn csv(n: usize, changed_every: Option<usize>) -> String {
    let mut out = String::with_capacity(n * 80);
    out.push_str("externalId,userName,email,displayName,active\n");
    for i in 0..n {
        let changed = changed_every.is_some_and(|e| i % e == 7);
        let name = if changed { format!("HR Person {i:06} Renamed") } else { format!("HR Person {i:06}") };
        out.push_str(&format!("E{i:07},hr{i:06},hr{i:06}@example.com,{name},true\n"));
    }
    out
}

/// `lockstep import`: parse the file, POST its rows; returns (parse, POST
/// round trip, the answer).
async fn import_file(
    server: &Server,
    path: &std::path::Path,
) -> anyhow::Result<(Duration, Duration, ImportResponse)> {
    let t = Instant::now();
    let file = std::fs::File::open(path)?;
    let rows = lockstep_source_file::parse(
        std::io::BufReader::new(file),
        lockstep_source_file::Format::of_path(path),
        &mut |_| {},
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let parsed = t.elapsed();
    let t = Instant::now();
    let body = ImportRequest { rows, dry_run: false };
    let response = server
        .http
        .post(format!("{}/v1/sources/hr/import", server.addr))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json::<ImportResponse>()
        .await?;
    Ok((parsed, t.elapsed(), response))
}

async fn import(n: usize) -> anyhow::Result<()> {
    println!("\n### HR file import: {n} rows");
    let changed = n / 100;
    let server = Server::start(vec![source("hr", "file", "import", Removal::Deactivate)]).await?;
    let dir = tempfile::tempdir()?;
    let first = dir.path().join("hr.csv");
    let again = dir.path().join("hr-1pct.csv");
    std::fs::write(&first, csv(n, None))?;
    std::fs::write(&again, csv(n, Some(100)))?;
    println!(
        "method: a {n}-row CSV ({} MB: externalId,userName,email,displayName,active) imported the way \
         `lockstep import` does it — lockstep_source_file::parse, then one POST /v1/sources/hr/import of the \
         rows as JSON to the in-process server (which plans, and applies in directory transactions of 1,000); \
         first into an empty directory, then the same file again (0 % changed), then a file with {changed} \
         display names changed (1 %). Baseline: {n} users created with SCIM POST /Users at 64 keep-alive \
         connections on a fresh server (as the SCIM benchmark creates users)",
        std::fs::metadata(&first)?.len() / 1_000_000
    );
    for (path, what, expect) in [
        (&first, "first import (creates)", n),
        (&first, "re-import, 0 % changed", 0),
        (&again, "re-import, 1 % changed", changed),
    ] {
        let (parse, post, r) = import_file(&server, path).await?;
        let a = r.applied.context("no applied")?;
        let total = parse + post;
        println!(
            "{what}: {} = parse {} + POST round trip {} ({:.0} rows/s; {} created, {} updated, {} unchanged, {} \
             rejected)",
            secs(total),
            secs(parse),
            secs(post),
            n as f64 / total.as_secs_f64(),
            a.created,
            a.updated,
            a.unchanged,
            a.rejected
        );
        if a.created + a.updated != expect || a.rejected > 0 {
            bail!("expected {expect} writes: {a:?}");
        }
    }
    // What one plan of the whole file costs (the endpoint plans twice: its
    // dry run for the answer, then the apply).
    let rows = lockstep_source_file::parse(
        std::io::BufReader::new(std::fs::File::open(&first)?),
        lockstep_source_file::Format::Csv,
        &mut |_| {},
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let records = rows
        .into_iter()
        .map(|r| user_record(&r.external_id, &r.user_name, r.display_name, r.email, r.active.unwrap_or(true)))
        .collect();
    let mut plans = plan_only(&server.engine, "hr", SourceUpdate::snapshot(records), 3).await?;
    println!(
        "  one plan of the unchanged file alone (engine.sources().dry_run; the import endpoint makes two: a dry \
         run for its answer, then the apply): {}",
        summary(&mut plans)
    );
    server.stop().await?;
    let server = Server::start(Vec::new()).await?;
    let took = scim_creates(&server.addr, n, 64).await?;
    println!(
        "baseline, SCIM POST /Users x {n} at 64 connections: {} ({:.0} users/s)",
        secs(took),
        n as f64 / took.as_secs_f64()
    );
    server.stop().await
}

/// Creates `n` users over SCIM at `connections` keep-alive connections;
/// returns the time until the last one was acknowledged.
async fn scim_creates(addr: &str, n: usize, connections: usize) -> anyhow::Result<Duration> {
    let host = addr.trim_start_matches("http://").to_owned();
    let next = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (host, next) = (host.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = crate::load::connect(&host).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                  "userName": format!("scim{i:06}"), "externalId": format!("E{i:07}"),
                                  "emails": [{"value": format!("scim{i:06}@example.com"), "primary": true}],
                                  "displayName": format!("SCIM Person {i:06}"), "active": true});
                let req = hyper::Request::builder()
                    .method(hyper::Method::POST)
                    .uri("/scim/v2/Users")
                    .header("host", host.as_str())
                    .header("content-type", "application/scim+json")
                    .header("authorization", format!("Bearer {ADMIN}"))
                    .body(Full::new(Bytes::from(body.to_string())))?;
                sender.ready().await?;
                let resp = sender.send_request(req).await?;
                let status = resp.status();
                resp.into_body().collect().await?;
                if !status.is_success() {
                    bail!("POST /Users answered {status}");
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(t.elapsed())
}
