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

/// Serves `state` on `listener` until `shutdown` resolves, with the
/// engine's timers running beside the listener. Persists last uses once
/// more on the way out.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let engine = state.engine.clone();
    let timers = tokio::spawn(timers(engine.clone()));
    let served = axum::serve(listener, crate::router(state)).with_graceful_shutdown(shutdown).await;
    timers.abort();
    let _ = tokio::task::spawn_blocking(move || engine.persist_last_seen()).await;
    served
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

async fn timers(engine: Arc<Engine>) {
    let mut grace = tokio::time::interval(GRACE_TICK);
    let mut last_seen = tokio::time::interval(LAST_SEEN_TICK);
    let mut sweep = tokio::time::interval(SWEEP_TICK);
    for tick in [&mut grace, &mut last_seen, &mut sweep] {
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        tokio::select! {
            _ = grace.tick() => chore("revoking suspensions whose grace ended", &engine, Engine::apply_due_suspensions).await,
            _ = last_seen.tick() => chore("persisting last use", &engine, Engine::persist_last_seen).await,
            _ = sweep.tick() => chore("sweeping expired sessions", &engine, |e| Ok(e.sweep_expired())).await,
        }
    }
}
