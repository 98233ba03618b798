//! RFC 8935 push delivery, beside the bridge: woken by the engine after
//! every commit that queued signals (and every second, for retries), it
//! reads each enabled push stream's due signals oldest first, signs them and
//! POSTs them; a 202 marks a signal delivered, a 5xx or a connection
//! failure retries it later with capped exponential backoff (same `jti`),
//! holding back the stream's later SETs so the receiver sees them in
//! order; a 4xx other than 408 and 429 is the receiver refusing that SET
//! (RFC 8935 §2.3): logged and settled, not sent again.
//! Nothing here holds an engine lock while it waits for a receiver.

use std::sync::Arc;
use std::time::Duration;

use lockstep_domain::{Delivery, Stream, StreamId, StreamStatus};
use lockstep_engine::Engine;
use lockstep_engine::signals::Doorbell;
use lockstep_store::Queued;

/// Signals read per stream per round.
const BATCH: usize = 256;
/// Acknowledgements recorded in one write, at most.
const ACK_GROUP: usize = 64;
/// Longest an acknowledgement waits to be recorded with others.
const ACK_WAIT: Duration = Duration::from_millis(100);
/// Longest wait between two attempts of one signal.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A receiver's answer must come within this.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The wait before attempt `attempts + 1` of a signal: 1 s, 2 s, 4 s, …
/// capped at 5 minutes.
pub fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(16)).min(MAX_BACKOFF)
}

/// The push transmitter of one server.
#[derive(Debug, Clone)]
pub struct Transmitter {
    engine: Arc<Engine>,
    keys: Arc<lockstep_jose::SharedKeys>,
    issuer: String,
    http: reqwest::Client,
    wake: Arc<tokio::sync::Notify>,
}

impl Transmitter {
    /// A transmitter signing with `keys` as `issuer`, installed as the
    /// engine's doorbell.
    pub fn new(
        engine: Arc<Engine>,
        keys: Arc<lockstep_jose::SharedKeys>,
        issuer: String,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the push client: {e}"))?;
        let wake = Arc::new(tokio::sync::Notify::new());
        let bell = wake.clone();
        engine.signals().set_doorbell(Doorbell(Arc::new(move || bell.notify_one())));
        Ok(Self { engine, keys, issuer, http, wake })
    }

    /// Delivers until `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        loop {
            self.round().await;
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = &mut shutdown => return,
            }
        }
    }

    /// One round: every enabled push stream, side by side.
    pub async fn round(&self) {
        let streams: Vec<Stream> = self
            .engine
            .signals()
            .streams()
            .into_iter()
            .filter(|s| s.status == StreamStatus::Enabled && matches!(s.delivery, Delivery::Push { .. }))
            .collect();
        let mut tasks = tokio::task::JoinSet::new();
        for stream in streams {
            let me = self.clone();
            tasks.spawn(async move { me.drain(stream).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Delivers a stream's due signals in order until none is due or one
    /// fails (later ones wait for it, so a receiver sees them in order).
    /// Acknowledgements are recorded in groups (every [`ACK_GROUP`] SETs,
    /// or sooner when [`ACK_WAIT`] has passed since the first unrecorded
    /// one): one write per group instead of one per SET. A crash before a
    /// group is recorded sends those SETs again, with the same `jti`s —
    /// delivery is at least once.
    async fn drain(&self, stream: Stream) {
        let Delivery::Push { endpoint, authorization } = &stream.delivery else { return };
        let id = stream.id;
        loop {
            let engine = self.engine.clone();
            let due = tokio::task::spawn_blocking(move || engine.signals().pending(id, BATCH)).await;
            let due: Vec<Queued> = match due {
                Ok(Ok(due)) => due,
                Ok(Err(e)) => return tracing::warn!(stream = %id, error = %e, "reading the outbox failed"),
                Err(e) => return tracing::error!(stream = %id, error = %e, "reading the outbox panicked"),
            };
            if due.is_empty() {
                return;
            }
            let full = due.len() == BATCH;
            let keys = self.keys.current();
            let mut acked: Vec<String> = Vec::new();
            let clock = self.engine.clock();
            let mut flush_by = clock.now();
            let mut failed = None;
            // A SET that cannot be signed stops this round (after recording
            // what was delivered); reading the same batch again would fail
            // the same way.
            let mut unsigned = false;
            for q in due {
                let set = match crate::sign(&keys, &self.issuer, &stream, &q.outgoing) {
                    Ok(set) => set,
                    Err(e) => {
                        tracing::error!(stream = %id, error = %e, "cannot sign a SET");
                        unsigned = true;
                        break;
                    }
                };
                let mut request = self
                    .http
                    .post(endpoint)
                    .header("Content-Type", "application/secevent+jwt")
                    .header("Accept", "application/json")
                    .body(set);
                if let Some(auth) = authorization {
                    request = request.header("Authorization", auth);
                }
                let failure = match request.send().await {
                    Ok(r) if r.status().as_u16() == 202 || r.status().as_u16() == 200 => None,
                    Ok(r) if r.status().is_client_error() && !matches!(r.status().as_u16(), 408 | 429) => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        tracing::warn!(stream = %id, jti = %q.outgoing.jti, %status, body = %body.chars().take(300).collect::<String>(), "the receiver refused a SET; not sending it again");
                        None
                    }
                    Ok(r) => Some(format!("{endpoint} answered {}", r.status())),
                    Err(e) => Some(format!("{endpoint}: {}", without_url(&e))),
                };
                if let Some(error) = failure {
                    failed = Some((q.outgoing.jti, q.attempts, error));
                    break;
                }
                if acked.is_empty() {
                    flush_by = clock.now().plus(ACK_WAIT);
                }
                acked.push(q.outgoing.jti);
                if (acked.len() >= ACK_GROUP || clock.now() >= flush_by)
                    && !self.record(id, std::mem::take(&mut acked), None).await
                {
                    return;
                }
            }
            let stop = unsigned || failed.is_some();
            if !self.record(id, acked, failed).await || stop || !full {
                return;
            }
        }
    }

    /// Records acknowledged SETs of a stream and, if one failed, its retry;
    /// whether the stream may go on.
    async fn record(&self, id: StreamId, acked: Vec<String>, failed: Option<(String, u32, String)>) -> bool {
        if acked.is_empty() && failed.is_none() {
            return true;
        }
        let engine = self.engine.clone();
        let retry = failed.as_ref().map(|(_, attempts, error)| (*attempts, error.clone()));
        let done = tokio::task::spawn_blocking(move || {
            let signals = engine.signals();
            if !acked.is_empty() {
                signals.delivered(id, &acked)?;
            }
            if let Some((jti, attempts, error)) = &failed {
                let next = engine.clock().now().plus(backoff(*attempts));
                signals.retry_later(id, jti, next, error)?;
            }
            Ok::<_, lockstep_engine::EngineError>(())
        })
        .await;
        match done {
            Ok(Ok(())) => {
                if let Some((attempts, error)) = retry {
                    tracing::info!(stream = %id, attempts = attempts + 1, %error, "SET delivery failed; retrying later");
                    return false;
                }
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(stream = %id, error = %e, "recording a delivery failed");
                false
            }
            Err(e) => {
                tracing::error!(stream = %id, error = %e, "recording a delivery panicked");
                false
            }
        }
    }
}

/// A reqwest error without its URL's query (a receiver's URL may carry a
/// token in it).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(
            url.as_str(),
            &format!("{}://{}{}", url.scheme(), url.host_str().unwrap_or(""), url.path()),
        );
    }
    text
}
