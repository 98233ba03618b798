//! The one wiring function: the router on a listener, and the engine's
//! timers beside it, until `shutdown` resolves. `lockstep serve`, the demo,
//! the end-to-end tests and (through the binary) the benchmarks all run
//! the server through here, so the server under test is the one that
//! serves.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lockstep_engine::Engine;
use tokio::net::TcpListener;

use crate::AppState;

/// How often suspended sessions whose grace period ended are revoked.
const GRACE_TICK: Duration = Duration::from_secs(1);
/// How often the last use of sessions is persisted.
const LAST_SEEN_TICK: Duration = Duration::from_secs(10);
/// How often expired sessions are dropped from memory.
const SWEEP_TICK: Duration = Duration::from_secs(60);
/// How often sessions past retention are purged from the store.
const PURGE_TICK: Duration = Duration::from_secs(600);
/// Sessions purged per write transaction (short, so the hot path never
/// waits long for the sessions lock).
const PURGE_CHUNK: usize = 500;
/// How often the signing key file is checked for a rotation.
const KEYS_TICK: Duration = Duration::from_secs(5);

/// Serves `state` on `listener` until `shutdown` resolves, with the
/// engine's timers running beside the listener. Persists last uses once
/// more on the way out.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let engine = state.engine.clone();
    // The authority's worker: requests are queued by the handlers and
    // committed in batches on this thread (and answered by its syncer once
    // on disk), so no handler blocks a thread waiting for the disk.
    let worker = {
        let engine = engine.clone();
        std::thread::Builder::new()
            .name("lockstep-authority".into())
            .spawn(move || engine.authority().serve())?
    };
    // The directory's worker: SCIM writes are queued by the handlers and
    // committed in batches here, so a write blocks no thread while it waits.
    let directory = {
        let engine = engine.clone();
        std::thread::Builder::new()
            .name("lockstep-directory".into())
            .spawn(move || engine.serve_directory())?
    };
    let timers = tokio::spawn(timers(engine.clone(), state.keys.clone()));
    // Shared Signals push delivery, beside the bridge (never in it).
    let (stop_transmitter, transmitter_stopping) = tokio::sync::watch::channel(false);
    let transmitter = match &state.keys {
        Some(keys) => {
            let issuer = engine.tokens().issuer.trim_end_matches('/').to_owned();
            match lockstep_ssf::Transmitter::new(engine.clone(), keys.clone(), issuer) {
                Ok(t) => deliver_beside(t, transmitter_stopping, state.config.delivery_nice),
                Err(e) => {
                    tracing::error!(error = %e, "Shared Signals push delivery is off");
                    None
                }
            }
        }
        None => None,
    };
    // Upstream transmitters that are polled rather than pushing (RFC 8936).
    let pollers: Vec<_> = state
        .config
        .receivers
        .iter()
        .filter(|r| r.config.poll.is_some())
        .map(|r| tokio::spawn(lockstep_ssf::poll::run(r.clone(), engine.clone())))
        .collect();
    let served = axum::serve(listener, crate::router(state)).with_graceful_shutdown(shutdown).await;
    timers.abort();
    for poller in pollers {
        poller.abort();
    }
    let _ = stop_transmitter.send(true);
    if let Some(t) = transmitter {
        let joined = tokio::task::spawn_blocking(move || t.join());
        let _ = tokio::time::timeout(Duration::from_secs(5), joined).await;
    }
    engine.authority().stop();
    engine.stop_directory();
    let _ = tokio::task::spawn_blocking(move || (worker.join(), directory.join())).await;
    let _ = tokio::task::spawn_blocking(move || engine.persist_last_seen()).await;
    served
}

/// Runs push delivery on a thread of its own, with a runtime of its own,
/// at nice `nice`. Signing and POSTing SETs is real CPU work (ES256 and an
/// HTTP request per SET; about 2,000 SETs/s took a fifth to a third of two
/// cores from introspection when delivery shared the serving runtime);
/// below the serving threads it takes what they leave, and SETs queue in
/// the durable outbox meanwhile. One thread: delivery never takes more than
/// one core. Its blocking pool (outbox reads, acknowledgements) keeps the
/// server's priority: an acknowledgement holds the session store's writer,
/// which the bridge needs, and a low-priority thread preempted while
/// holding it would stall the bridge behind it.
fn deliver_beside(
    transmitter: lockstep_ssf::Transmitter,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    nice: i32,
) -> Option<std::thread::JoinHandle<()>> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().thread_name("lockstep-ssf-io").build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "Shared Signals push delivery is off: no runtime");
            return None;
        }
    };
    let spawned = std::thread::Builder::new().name("lockstep-ssf".into()).spawn(move || {
        lower_priority(nice);
        runtime.block_on(transmitter.run(async move {
            let _ = stopping.wait_for(|s| *s).await;
        }));
    });
    match spawned {
        Ok(thread) => Some(thread),
        Err(e) => {
            tracing::error!(error = %e, "Shared Signals push delivery is off: no thread");
            None
        }
    }
}

/// Lowers the calling thread's priority (on Linux a nice value is per
/// thread); a failure leaves it as it was.
fn lower_priority(nice: i32) {
    if nice > 0
        && let Err(e) = rustix::process::setpriority_process(None, nice)
    {
        tracing::warn!(error = %e, nice, "cannot lower the priority of Shared Signals delivery");
    }
}

/// Runs a blocking engine chore off the reactor, logging a failure (a
/// timer that fails retries at its next tick).
async fn chore<T: Send + 'static>(
    what: &'static str,
    engine: &Arc<Engine>,
    f: fn(&Engine) -> lockstep_engine::EngineResult<T>,
) {
    let engine = engine.clone();
    match tokio::task::spawn_blocking(move || f(&engine)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "{what} failed; retrying at the next tick"),
        Err(e) => tracing::error!(error = %e, "{what} panicked"),
    }
}

async fn timers(engine: Arc<Engine>, keys: Option<Arc<lockstep_jose::SharedKeys>>) {
    let mut grace = tokio::time::interval(GRACE_TICK);
    let mut last_seen = tokio::time::interval(LAST_SEEN_TICK);
    let mut sweep = tokio::time::interval(SWEEP_TICK);
    let mut purge = tokio::time::interval(PURGE_TICK);
    let mut reload = tokio::time::interval(KEYS_TICK);
    for tick in [&mut grace, &mut last_seen, &mut sweep, &mut purge, &mut reload] {
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        tokio::select! {
            _ = grace.tick() => {
                chore("revoking suspensions whose grace ended", &engine, Engine::apply_due_suspensions).await;
                chore("checking directory source staleness", &engine, Engine::check_sources).await;
            }
            _ = last_seen.tick() => chore("persisting last use", &engine, Engine::persist_last_seen).await,
            _ = sweep.tick() => chore("sweeping expired sessions", &engine, |e| Ok(e.sweep_expired())).await,
            _ = purge.tick() => chore("purging sessions past retention", &engine, |e| e.purge_expired(PURGE_CHUNK)).await,
            _ = reload.tick() => reload_keys(keys.as_ref()).await,
        }
    }
}

/// Picks up a rotated key file (`lockstep keys rotate` beside the server).
async fn reload_keys(keys: Option<&Arc<lockstep_jose::SharedKeys>>) {
    let Some(keys) = keys.cloned() else { return };
    match tokio::task::spawn_blocking(move || keys.reload_if_changed()).await {
        Ok(Ok(true)) => tracing::info!("signing keys reloaded"),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "signing keys unchanged: the key file does not load"),
        Err(e) => tracing::error!(error = %e, "reloading signing keys panicked"),
    }
}
