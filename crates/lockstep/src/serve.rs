//! `lockstep serve`: open the stores, heal, then serve.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use lockstep_engine::{Engine, EngineConfig, OsEntropy, Stores, SystemClock};
use lockstep_http::{AppState, HttpConfig};
use lockstep_store_sqlite::{DIRECTORY_FILE, Durability, SESSIONS_FILE, SqliteDirectory, SqliteSessions};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, Settings};

/// Opens the two stores in `data_dir` (creating it, private to this user).
pub fn open_stores(data_dir: &Path, durability: Durability) -> anyhow::Result<Stores> {
    create_private_dir(data_dir)?;
    let directory = SqliteDirectory::open(&data_dir.join(DIRECTORY_FILE), durability)
        .with_context(|| format!("opening {}", data_dir.join(DIRECTORY_FILE).display()))?;
    let sessions = Arc::new(
        SqliteSessions::open(&data_dir.join(SESSIONS_FILE), durability)
            .with_context(|| format!("opening {}", data_dir.join(SESSIONS_FILE).display()))?,
    );
    Ok(Stores { directory: Arc::new(directory), sessions: sessions.clone(), credentials: sessions })
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("data_dir: cannot create {}", dir.display()))
}

/// Opens the engine on `data_dir` for serving: replays unapplied directory
/// events, records a changed policy, applies grace periods that ended.
pub fn open_engine(data_dir: &Path, durability: Durability, config: EngineConfig) -> anyhow::Result<Engine> {
    let stores = open_stores(data_dir, durability)?;
    let (engine, opened) = Engine::open_reporting(stores, config, Arc::new(SystemClock), Arc::new(OsEntropy))
        .context("opening the engine")?;
    tracing::info!(
        sessions = opened.sessions,
        replayed = opened.replayed,
        policy_changed = opened.policy_changed,
        shortened = opened.shortened,
        grace_ended = opened.grace_ended,
        "engine open"
    );
    Ok(engine)
}

/// Opens the engine for a local administrative command beside a running
/// server: credentials only, nothing replayed, no policy recorded.
pub fn open_admin(data_dir: &Path) -> anyhow::Result<Engine> {
    let stores = open_stores(data_dir, Durability::Full)?;
    Engine::open_detached(stores, Arc::new(SystemClock), Arc::new(OsEntropy))
        .context("opening the data directory")
}

/// Takes the data directory's lock: two servers on one directory would each
/// keep their own introspection cache and miss each other's revocations.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<File> {
    let path = data_dir.join("lockstep.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    file.try_lock().map_err(|_| {
        anyhow::anyhow!("data_dir: {} is in use by another lockstep server", data_dir.display())
    })?;
    Ok(file)
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_env("LOCKSTEP_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: a log file or a pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs the server until SIGINT/SIGTERM.
pub fn run(settings: Settings) -> anyhow::Result<()> {
    init_tracing(settings.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(settings))
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    create_private_dir(&settings.data_dir)?;
    let _lock = lock_data_dir(&settings.data_dir)?;
    let data_dir = settings.data_dir.clone();
    let durability = settings.durability;
    let config = EngineConfig {
        policy: settings.policy.clone(),
        policy_source: settings.policy_source.clone(),
        limits: settings.limits,
        tokens: settings.tokens.clone(),
        sources: settings.sources.iter().map(|s| s.settings.clone()).collect(),
    };
    let keys = crate::keys::open(&settings.data_dir)?;
    // Replay happens here, before the listener exists: nothing is served
    // until every committed directory event has reached the sessions, and
    // grace periods that ended while the process was down are applied.
    let engine = tokio::task::spawn_blocking(move || open_engine(&data_dir, durability, config)).await??;
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listen: cannot bind {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let mut engine = engine.with_signer(Arc::new(lockstep_http::KeySigner(keys.clone())));
    if settings.issuer_from_listen {
        let issuer = format!("http://{addr}");
        let audience = settings.audience_from_issuer.then(|| issuer.clone());
        engine = engine.with_issuer(issuer, audience);
    }
    let engine = Arc::new(engine);
    if let Some(token) = engine.ensure_admin_token(settings.admin_token.as_deref())? {
        let mut out = std::io::stdout().lock();
        writeln!(out, "lockstep: generated the admin token (shown once; only its hash is stored):")?;
        writeln!(out, "lockstep: admin token: {token}")?;
        out.flush()?;
    }
    let state = AppState {
        engine: engine.clone(),
        config: Arc::new(HttpConfig {
            body_limit: settings.body_limit,
            public_url: settings.public_url,
            scim_limits: settings.scim_limits,
            advertise_agent_extension: settings.advertise_agent_extension,
            delivery_nice: settings.delivery_nice,
            receivers: crate::sources::receivers(&settings.sources)?,
        }),
        keys: Some(keys),
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "lockstep: listening on http://{addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, data_dir = %settings.data_dir.display(), "serving");
    // Directory sources start once the server is up: an LDAP connector
    // applies through the same engine the listener serves.
    let (stop_sources, stopping) = tokio::sync::watch::channel(false);
    let sources = crate::sources::start(&engine, &settings.sources, &stopping)?;
    lockstep_http::run(listener, state, shutdown()).await?;
    let _ = stop_sources.send(true);
    for task in sources {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
