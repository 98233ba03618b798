//! Prometheus metrics, in an explicit registry (no global recorder, so
//! engines in parallel tests never share counters).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label: a directory change kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// e.g. `identity_deactivated`.
    pub kind: String,
}

/// Label: why a session was revoked.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// e.g. `identity_deactivated`.
    pub reason: String,
}

/// Label: introspection outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActiveLabel {
    /// `true` or `false`.
    pub active: String,
}

/// Label: a directory source.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// The source's configured name.
    pub source: String,
}

/// Label: a directory source and what happened to a record of it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceOutcomeLabel {
    /// The source's configured name.
    pub source: String,
    /// `created`, `updated`, `deactivated`, `deleted`, `unchanged`,
    /// `rejected` or `held`.
    pub outcome: String,
}

/// A gauge of seconds.
pub type Seconds = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Every metric the engine maintains.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Directory event committed → session impact committed.
    pub propagation: Histogram,
    /// Directory events consumed by the bridge.
    pub directory_events: Family<KindLabel, Counter>,
    /// Sessions revoked.
    pub revocations: Family<ReasonLabel, Counter>,
    /// Sessions opened.
    pub sessions_opened: Counter,
    /// Introspection answers that were active. Resolved from the family once,
    /// so the introspection hot path does no label allocation or lookup.
    pub introspected_active: Counter,
    /// Introspection answers that were inactive.
    pub introspected_inactive: Counter,
    /// Sessions in the introspection cache.
    pub live_sessions: Gauge,
    /// Requests per authority batch (one commit, one fsync).
    pub authority_batch: Histogram,
    /// Time an authority batch holds the sessions lock (prepare and commit).
    pub authority_locked: Histogram,
    /// Time an authority batch waits for its commit to reach the disk.
    pub authority_durable: Histogram,
    /// Now minus the last moment each source was known complete (0 while a
    /// syncrepl session is live).
    pub source_staleness: Family<SourceLabel, Seconds>,
    /// Removals each source's circuit breaker holds.
    pub source_held: Family<SourceLabel, Gauge>,
    /// Source records by outcome.
    pub source_records: Family<SourceOutcomeLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lockstep");
        // 25 µs … ~13 s, doubling: propagation is normally sub-millisecond
        // to a few milliseconds; the tail shows fsync stalls.
        let propagation =
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.000_025, 2.0, 20));
        registry.register_with_unit(
            "revocation_propagation",
            "Time from a directory event's commit to the commit of its session impact",
            prometheus_client::registry::Unit::Seconds,
            propagation.clone(),
        );
        let directory_events = Family::<KindLabel, Counter>::default();
        registry.register(
            "directory_events",
            "Directory events applied through the bridge",
            directory_events.clone(),
        );
        let revocations = Family::<ReasonLabel, Counter>::default();
        registry.register("session_revocations", "Sessions revoked", revocations.clone());
        let sessions_opened = Counter::default();
        registry.register("sessions_opened", "Sessions opened", sessions_opened.clone());
        let introspections = Family::<ActiveLabel, Counter>::default();
        registry.register("introspections", "Token introspection answers", introspections.clone());
        let introspected_active =
            introspections.get_or_create(&ActiveLabel { active: "true".into() }).clone();
        let introspected_inactive =
            introspections.get_or_create(&ActiveLabel { active: "false".into() }).clone();
        let live_sessions = Gauge::default();
        registry.register("live_sessions", "Sessions held in the introspection cache", live_sessions.clone());
        let authority_batch =
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "authority_batch_requests",
            "Requests committed together by one authority batch",
            authority_batch.clone(),
        );
        let seconds =
            || Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.000_025, 2.0, 20));
        let authority_locked = seconds();
        registry.register_with_unit(
            "authority_locked",
            "Time an authority batch holds the sessions lock to prepare and commit",
            prometheus_client::registry::Unit::Seconds,
            authority_locked.clone(),
        );
        let authority_durable = seconds();
        registry.register_with_unit(
            "authority_durable_wait",
            "Time an authority batch waits for its commit to reach the disk",
            prometheus_client::registry::Unit::Seconds,
            authority_durable.clone(),
        );
        let source_staleness = Family::<SourceLabel, Seconds>::default();
        registry.register_with_unit(
            "source_staleness",
            "Now minus the last moment the directory source was known complete (0 while a syncrepl session is live)",
            prometheus_client::registry::Unit::Seconds,
            source_staleness.clone(),
        );
        let source_held = Family::<SourceLabel, Gauge>::default();
        registry.register(
            "source_held_changes",
            "Deactivations and deletions the source's circuit breaker holds until approved",
            source_held.clone(),
        );
        let source_records = Family::<SourceOutcomeLabel, Counter>::default();
        registry.register(
            "source_records",
            "Directory source records applied, by outcome",
            source_records.clone(),
        );
        Self {
            source_staleness,
            source_held,
            source_records,
            authority_batch,
            authority_locked,
            authority_durable,
            registry,
            propagation,
            directory_events,
            revocations,
            sessions_opened,
            introspected_active,
            introspected_inactive,
            live_sessions,
        }
    }

    /// Records one propagation time.
    pub fn observe_propagation(&self, d: Duration) {
        self.propagation.observe(d.as_secs_f64());
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
