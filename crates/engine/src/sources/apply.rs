//! Applying a source update: plan, circuit breaker, directory writes in
//! chunks through the bridge, the cursor with the last write.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use lockstep_domain::{
    Actor, AuditEntry, AuditKind, DirectoryChange, Identity, IdentityId, Origin, SourceId, Timestamp,
};
use lockstep_store::{SessionBatch, SourceState};

use super::held::{self, Held};
use super::plan::{Owned, Plan, plan};
use super::record::{Removals, SourceRecord, SourceUpdate};
use super::{ConnectionState, Entry, SourceApplied, SourceError, SourceSettings, SourceSink};
use crate::batch::{Prepared, Rejection, Request};
use crate::bridge::UpdateError;
use crate::metrics::{SourceLabel, SourceOutcomeLabel};
use crate::{Engine, EngineError, EngineResult};

/// Identity writes per directory transaction: large enough that a 100,000
/// entry sync is a hundred commits, small enough that a SCIM write waiting
/// for the writer lock waits for one chunk, not the whole sync.
const CHUNK: usize = 1000;

/// The sources of an engine.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    engine: &'a Engine,
}

/// One removal a plan would make, for a dry run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedRemoval {
    /// The identity.
    pub identity: IdentityId,
    /// Its `userName`.
    pub user_name: String,
    /// The source's key for it.
    pub key: String,
    /// `deactivate` or `delete`.
    pub action: &'static str,
    /// Live sessions it would cut.
    pub sessions: usize,
}

/// What a source looks like now (`GET /v1/sources`).
#[derive(Clone, Debug, PartialEq)]
pub struct SourceStatus {
    /// Its settings.
    pub settings: SourceSettings,
    /// What its connection is doing.
    pub connection: ConnectionState,
    /// The last moment the directory held everything the source had.
    pub complete_at: Option<Timestamp>,
    /// The last update applied.
    pub last_sync: Option<Timestamp>,
    /// The last error a connector or an update reported.
    pub last_error: Option<String>,
    /// Seconds since `complete_at` (0 while live; `None` if never complete).
    pub staleness: Option<f64>,
    /// Whether it is staler than its bound (its privileged sessions are
    /// suspended).
    pub stale: bool,
    /// Live identities it owns.
    pub identities: usize,
    /// Groups it owns.
    pub groups: usize,
    /// Totals since start.
    pub totals: SourceApplied,
    /// Held removals: (key, what would happen), in order.
    pub held: Vec<(String, String)>,
    /// When the oldest held change was held.
    pub held_since: Option<Timestamp>,
    /// The breaker's threshold now.
    pub threshold: usize,
}

/// A plan and what it would cut, without applying it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DryRun {
    /// The plan.
    pub plan: Plan,
    /// Each removal or deactivation, with the sessions it would cut.
    pub removals: Vec<PlannedRemoval>,
    /// The breaker's threshold for this source now.
    pub threshold: usize,
    /// Whether the breaker would hold the update.
    pub would_hold: bool,
}

/// A [`SourceSink`] for one source of a shared engine.
#[derive(Debug, Clone)]
pub struct SourceHandle {
    engine: Arc<Engine>,
    name: String,
}

impl SourceHandle {
    /// A sink feeding `name` (which must be configured).
    pub fn new(engine: Arc<Engine>, name: &str) -> Result<Self, SourceError> {
        engine.sources.get(name)?;
        Ok(Self { engine, name: name.to_owned() })
    }
}

impl SourceSink for SourceHandle {
    fn cursor(&self) -> Result<Option<Vec<u8>>, SourceError> {
        self.engine.sources().cursor(&self.name)
    }
    fn apply(&self, update: SourceUpdate) -> Result<SourceApplied, SourceError> {
        self.engine.sources().apply(&self.name, update)
    }
    fn connection(&self, state: ConnectionState) {
        self.engine.sources().connection(&self.name, state);
    }
    fn now(&self) -> lockstep_domain::Timestamp {
        self.engine.clock.now()
    }
}

impl Engine {
    /// The configured directory sources: updates, approval, status.
    pub fn sources(&self) -> Sources<'_> {
        Sources { engine: self }
    }
}

fn origin(source: &SourceId, key: &str) -> Origin {
    Origin { source: source.clone(), client: None, source_ref: Some(key.to_owned()) }
}

impl<'a> Sources<'a> {
    pub(super) fn engine(&self) -> &'a Engine {
        self.engine
    }

    /// The configured sources, in configuration order.
    pub fn settings(&self) -> Vec<SourceSettings> {
        self.engine.sources.all().map(|e| e.settings.clone()).collect()
    }

    /// Reads a source's state from the store once (held changes and the
    /// last complete moment survive restarts).
    pub(super) fn load(&self, entry: &Entry) -> Result<(), SourceError> {
        if entry.runtime().loaded {
            return Ok(());
        }
        let now = self.engine.clock.now();
        let state =
            self.engine.stores.directory.source_state(&entry.settings.name).map_err(EngineError::from)?;
        let mut rt = entry.runtime();
        if let Some(state) = state {
            rt.complete_at = state.complete_at;
            if let Some(text) = state.held {
                rt.held = held::decode(&text).map_err(|e| {
                    SourceError::Engine(EngineError::Store(lockstep_store::StoreError::Corrupt(e)))
                })?;
            }
        }
        rt.loaded = true;
        rt.started = Some(now);
        Ok(())
    }

    /// The cursor committed with the source's last update.
    pub fn cursor(&self, name: &str) -> Result<Option<Vec<u8>>, SourceError> {
        let entry = self.engine.sources.get(name)?;
        Ok(self
            .engine
            .stores
            .directory
            .source_state(&entry.settings.name)
            .map_err(EngineError::from)?
            .and_then(|s| s.cursor))
    }

    /// Records what the source's connection is doing.
    pub fn connection(&self, name: &str, state: ConnectionState) {
        let Ok(entry) = self.engine.sources.get(name) else { return };
        let now = self.engine.clock.now();
        let mut rt = entry.runtime();
        // Leaving a live session: it was complete until now.
        if rt.connection == ConnectionState::Live && state != ConnectionState::Live {
            rt.complete_at = Some(now);
        }
        if let ConnectionState::Down { error } = &state {
            rt.last_error = Some(error.clone());
            tracing::warn!(source = %entry.settings.name, error = %error, "directory source is down");
        }
        rt.connection = state;
    }

    /// Plans and applies an update (see the module documentation), holding
    /// what the circuit breaker does not allow.
    pub fn apply(&self, name: &str, update: SourceUpdate) -> Result<SourceApplied, SourceError> {
        self.locked(name, |entry| self.apply_locked(entry, update, None))
    }

    /// Runs `f` under the source's lock with its state loaded, and records
    /// the error it ends with, if any, as the source's last.
    fn locked<T>(
        &self,
        name: &str,
        f: impl FnOnce(&Entry) -> Result<T, SourceError>,
    ) -> Result<T, SourceError> {
        let entry = self.engine.sources.get(name)?;
        let _applying = entry.applying.lock().unwrap_or_else(|p| p.into_inner());
        self.load(&entry)?;
        let result = f(&entry);
        if let Err(e) = &result {
            entry.runtime().last_error = Some(e.to_string());
        }
        result
    }

    fn owned(&self, entry: &Entry) -> EngineResult<(Vec<Identity>, Vec<lockstep_domain::Group>)> {
        let name = &entry.settings.name;
        Ok((
            self.engine.stores.directory.source_identities(name)?,
            self.engine.stores.directory.source_groups(name)?,
        ))
    }

    /// What the plan of `update` reads: everything the source owns for a
    /// complete update; for a delta only what it names (its records, their
    /// owners and group members, its removals), read by key from the index,
    /// so a one-entry change does not read a 100,000-entry directory.
    fn relevant(
        &self,
        entry: &Entry,
        update: &SourceUpdate,
    ) -> EngineResult<(Vec<Identity>, Vec<lockstep_domain::Group>, usize)> {
        let directory = &self.engine.stores.directory;
        let name = &entry.settings.name;
        let Removals::Keys(removed) = &update.removals else {
            let (identities, groups) = self.owned(entry)?;
            let count = identities.len();
            return Ok((identities, groups, count));
        };
        let mut user_keys: Vec<String> = removed.clone();
        let mut group_keys: Vec<String> = removed.clone();
        for record in &update.upserts {
            match record {
                SourceRecord::User(u) => {
                    user_keys.push(u.key.clone());
                    user_keys.extend(u.owner_key.iter().cloned());
                }
                SourceRecord::Group(g) => {
                    group_keys.push(g.key.clone());
                    user_keys.extend(g.member_keys.iter().cloned());
                }
            }
        }
        user_keys.sort();
        user_keys.dedup();
        group_keys.sort();
        group_keys.dedup();
        Ok((
            directory.source_identities_by_key(name, &user_keys)?,
            directory.source_groups_by_key(name, &group_keys)?,
            directory.count_source_identities(name)?,
        ))
    }

    fn plan(&self, entry: &Entry, update: &SourceUpdate) -> Result<(Plan, usize), SourceError> {
        let (identities, groups, owned_count) = self.relevant(entry, update)?;
        if matches!(&update.removals, Removals::AllExcept { present } if present.is_empty())
            && update.upserts.is_empty()
            && !(identities.is_empty() && groups.is_empty())
        {
            return Err(SourceError::Refused(format!(
                "source {:?} delivered an empty result as the whole truth; an empty result never wipes the directory (nothing applied)",
                entry.settings.name.as_str()
            )));
        }
        let owned = Owned {
            source: &entry.settings.name,
            identities: &identities,
            groups: &groups,
            removal: entry.settings.removal,
            now: self.engine.clock.now(),
        };
        let failed = std::cell::RefCell::new(None);
        let plan = plan(
            &owned,
            update,
            &mut || self.engine.new_identity_id().map_err(|e| *failed.borrow_mut() = Some(e)).ok(),
            &mut || self.engine.new_group_id().map_err(|e| *failed.borrow_mut() = Some(e)).ok(),
        );
        if let Some(e) = failed.into_inner() {
            return Err(e.into());
        }
        Ok((plan, entry.settings.breaker.threshold(owned_count)))
    }

    /// The plan an update would get, and the sessions each removal would
    /// cut; nothing is written.
    pub fn dry_run(&self, name: &str, update: &SourceUpdate) -> Result<DryRun, SourceError> {
        let entry = self.engine.sources.get(name)?;
        self.dry_run_of(&entry, update)
    }

    /// Plans an update, shows the plan (`show`), and applies that same
    /// plan: one planning under the source's lock, so what the answer
    /// shows is what was applied (planned twice, a write in between could
    /// make them differ). The import endpoint's path.
    pub fn import<T>(
        &self,
        name: &str,
        update: SourceUpdate,
        show: impl FnOnce(&DryRun) -> T,
    ) -> Result<(T, SourceApplied), SourceError> {
        self.locked(name, |entry| {
            let dry = self.dry_run_of(entry, &update)?;
            let shown = show(&dry);
            let applied = self.apply_locked(entry, update, Some((dry.plan, dry.threshold)))?;
            Ok((shown, applied))
        })
    }

    fn dry_run_of(&self, entry: &Entry, update: &SourceUpdate) -> Result<DryRun, SourceError> {
        // It counts live sessions in the store: not while an early-
        // acknowledged cut is still being recorded there.
        self.engine.await_acknowledged_writes();
        let (plan, threshold) = self.plan(entry, update)?;
        let now = self.engine.clock.now();
        let losses: Vec<&Identity> = plan.losses().collect();
        let ids: Vec<IdentityId> = losses.iter().map(|i| i.id).collect();
        let mut sessions: HashMap<IdentityId, usize> = HashMap::new();
        for s in self.engine.stores.sessions.live_sessions_of(&ids, now).map_err(EngineError::from)? {
            *sessions.entry(s.identity).or_default() += 1;
        }
        let deleted: HashSet<IdentityId> = plan
            .removals
            .iter()
            .filter(|(_, after)| after.status == lockstep_domain::IdentityStatus::Deprovisioned)
            .map(|(b, _)| b.id)
            .collect();
        let removals = losses
            .iter()
            .map(|i| PlannedRemoval {
                identity: i.id,
                user_name: i.user_name.clone(),
                key: i.external_id.clone().unwrap_or_default(),
                action: if deleted.contains(&i.id) { "delete" } else { "deactivate" },
                sessions: sessions.get(&i.id).copied().unwrap_or(0),
            })
            .collect::<Vec<_>>();
        let rt = entry.runtime();
        let window = window_count(&rt.window, now, entry.settings.breaker.window);
        let would_hold = match &update.removals {
            Removals::AllExcept { .. } => removals.len() > threshold,
            Removals::Keys(_) => !removals.is_empty() && window + removals.len() > threshold,
        };
        Ok(DryRun { plan, removals, threshold, would_hold })
    }

    /// Applies an update under the source's lock; `planned`: its plan and
    /// threshold, already made under the same lock.
    fn apply_locked(
        &self,
        entry: &Entry,
        update: SourceUpdate,
        planned: Option<(Plan, usize)>,
    ) -> Result<SourceApplied, SourceError> {
        let engine = self.engine;
        let now = engine.clock.now();
        let (plan, threshold) = match planned {
            Some(planned) => planned,
            None => self.plan(entry, &update)?,
        };
        let losses = plan.losses().count();
        let breaker = &entry.settings.breaker;
        let mut rt_held = entry.runtime().held.clone();
        let complete_update = matches!(update.removals, Removals::AllExcept { .. });
        // The whole truth that removes too much is held whole.
        if complete_update && losses > threshold {
            let mut stored = update.clone();
            stored.cursor = None;
            rt_held = Held { updates: vec![stored], since: Some(now), losses };
            let applied = SourceApplied { held: losses, ..SourceApplied::default() };
            self.hold(entry, rt_held, update.cursor, losses, threshold, "the whole update")?;
            return Ok(applied);
        }
        let window = window_count(&entry.runtime().window, now, breaker.window);
        let (plan, held_part) = if !complete_update && losses > 0 && window + losses > threshold {
            // Deletions one by one: the losses that still fit under the
            // window's threshold apply, in the order the update lists them;
            // every further loss is held, and the rest of the update
            // applies. So what is held does not depend on how a source
            // happened to batch its deletions (syncrepl may send 25 at once
            // or one by one).
            let all_lost: HashSet<String> = plan.losses().filter_map(|i| i.external_id.clone()).collect();
            let in_order = match &update.removals {
                Removals::Keys(keys) => keys.iter().collect::<Vec<_>>(),
                Removals::AllExcept { .. } => Vec::new(),
            }
            .into_iter()
            .chain(update.upserts.iter().filter_map(|r| match r {
                SourceRecord::User(u) => Some(&u.key),
                SourceRecord::Group(_) => None,
            }))
            .filter(|k| all_lost.contains(*k));
            let mut seen = HashSet::new();
            let lost: HashSet<String> = in_order
                .filter(|k| seen.insert(*k))
                .skip(threshold.saturating_sub(window))
                .cloned()
                .collect();
            let (held_upserts, kept): (Vec<SourceRecord>, Vec<SourceRecord>) = update
                .upserts
                .iter()
                .cloned()
                .partition(|r| matches!(r, SourceRecord::User(u) if lost.contains(&u.key)));
            let (held_keys, kept_keys): (Vec<String>, Vec<String>) = match &update.removals {
                Removals::Keys(keys) => keys.iter().cloned().partition(|k| lost.contains(k)),
                Removals::AllExcept { .. } => (Vec::new(), Vec::new()),
            };
            let rest = SourceUpdate::delta(kept, kept_keys);
            let (plan, _) = self.plan(entry, &rest)?;
            (plan, Some(SourceUpdate::delta(held_upserts, held_keys)))
        } else {
            (plan, None)
        };
        if complete_update {
            // A newer whole truth within the threshold supersedes what was
            // held: it already says what really went away.
            rt_held = Held::default();
        }
        let held_count = held_part.as_ref().map_or(0, count_losses);
        if let Some(part) = held_part {
            rt_held.since.get_or_insert(now);
            rt_held.losses += held_count;
            rt_held.updates.push(part);
        }
        let applied_losses = plan.losses().count();
        let complete_at =
            if update.complete && rt_held.is_empty() { Some(now) } else { entry.runtime().complete_at };
        let state = SourceState {
            source: entry.settings.name.clone(),
            cursor: match update.cursor.clone() {
                Some(c) => Some(c),
                None => self.cursor(entry.settings.name.as_str())?,
            },
            complete_at,
            held: (!rt_held.is_empty()).then(|| held::encode(&rt_held)),
            updated: now,
        };
        let mut applied = self.execute(entry, plan, state)?;
        applied.held = held_count;
        if held_count > 0 {
            self.audit_held(entry, held_count, threshold, "deletions past the window's threshold")?;
        }
        let mut rt = entry.runtime();
        rt.held = rt_held;
        rt.complete_at = complete_at;
        rt.last_sync = Some(now);
        if applied_losses > 0 {
            rt.window.push_back((now, applied_losses));
        }
        // Only the window's span is ever counted: drop what fell out of it,
        // or a long-running syncrepl source keeps every removal forever.
        let from = now.micros().saturating_sub(i64::try_from(breaker.window.as_micros()).unwrap_or(i64::MAX));
        while rt.window.front().is_some_and(|(at, _)| at.micros() <= from) {
            rt.window.pop_front();
        }
        add_totals(&mut rt.totals, &applied);
        engine
            .metrics
            .source_held
            .get_or_create(&SourceLabel { source: entry.settings.name.to_string() })
            .set(i64::try_from(rt.held.losses).unwrap_or(i64::MAX));
        drop(rt);
        self.count(entry, &applied);
        Ok(applied)
    }

    /// Holds a whole update: the cursor moves on (what it covered is held,
    /// not lost), nothing else is written.
    fn hold(
        &self,
        entry: &Entry,
        held: Held,
        cursor: Option<Vec<u8>>,
        losses: usize,
        threshold: usize,
        what: &str,
    ) -> Result<(), SourceError> {
        let now = self.engine.clock.now();
        let complete_at = entry.runtime().complete_at;
        let state = SourceState {
            source: entry.settings.name.clone(),
            cursor: match cursor {
                Some(c) => Some(c),
                None => self.cursor(entry.settings.name.as_str())?,
            },
            complete_at,
            held: Some(held::encode(&held)),
            updated: now,
        };
        {
            // Under the commit lock like every directory write: a batch the
            // directory worker has begun is its own until it commits.
            let _writer = self.engine.lock_writer()?;
            self.engine.stores.directory.commit_source(Vec::new(), Some(state)).map_err(EngineError::from)?;
        }
        self.audit_held(entry, losses, threshold, what)?;
        let mut rt = entry.runtime();
        rt.held = held;
        rt.last_sync = Some(now);
        self.engine
            .metrics
            .source_held
            .get_or_create(&SourceLabel { source: entry.settings.name.to_string() })
            .set(i64::try_from(rt.held.losses).unwrap_or(i64::MAX));
        drop(rt);
        self.engine
            .metrics
            .source_records
            .get_or_create(&SourceOutcomeLabel {
                source: entry.settings.name.to_string(),
                outcome: "held".into(),
            })
            .inc_by(losses as u64);
        Ok(())
    }

    fn audit_held(
        &self,
        entry: &Entry,
        losses: usize,
        threshold: usize,
        what: &str,
    ) -> Result<(), SourceError> {
        let name = entry.settings.name.as_str();
        tracing::warn!(source = name, held = losses, threshold, "circuit breaker held a directory change");
        self.audit(
            AuditKind::SyncHeld,
            Actor::Source { source: entry.settings.name.clone(), client: None },
            format!(
                "held={losses}; threshold={threshold}; scope={what}; approve with `lockstep sources approve {name}`"
            ),
        )
    }

    fn audit(&self, kind: AuditKind, actor: Actor, detail: String) -> Result<(), SourceError> {
        let engine = self.engine;
        let _sessions = engine.lock_sessions();
        let entry = AuditEntry {
            at: engine.clock.now(),
            kind,
            identity: None,
            user_name: None,
            session: None,
            directory_event: None,
            actor,
            detail,
        };
        let ticket = engine
            .stores
            .sessions
            .commit(SessionBatch { audit: vec![entry], ..SessionBatch::default() })
            .map_err(EngineError::from)?;
        engine.stores.sessions.wait_durable(ticket.1).map_err(EngineError::from)?;
        Ok(())
    }

    /// Applies exactly what the source's breaker holds, then clears it.
    pub fn approve(&self, name: &str, actor: Actor) -> Result<SourceApplied, SourceError> {
        let entry = self.engine.sources.get(name)?;
        let _applying = entry.applying.lock().unwrap_or_else(|p| p.into_inner());
        self.load(&entry)?;
        let held = entry.runtime().held.clone();
        if held.is_empty() {
            return Err(SourceError::NothingHeld(name.to_owned()));
        }
        let mut total = SourceApplied::default();
        let count = held.losses;
        let mut complete_at = entry.runtime().complete_at;
        for (i, update) in held.updates.iter().enumerate() {
            let (plan, _) = self.plan(&entry, update)?;
            if matches!(update.removals, Removals::AllExcept { .. }) {
                complete_at = complete_at.max(held.since);
            }
            // What is still held after this one, written with it: a crash
            // halfway through an approval leaves exactly the rest held.
            let rest = Held { updates: held.updates[i + 1..].to_vec(), since: held.since, losses: count };
            let state = SourceState {
                source: entry.settings.name.clone(),
                cursor: self.cursor(name)?,
                complete_at,
                held: (!rest.is_empty()).then(|| held::encode(&rest)),
                updated: self.engine.clock.now(),
            };
            let applied = self.execute(&entry, plan, state)?;
            add_totals(&mut total, &applied);
        }
        self.audit(AuditKind::SyncApproved, actor, format!("source={name}; approved={count}"))?;
        let mut rt = entry.runtime();
        rt.held = Held::default();
        rt.complete_at = complete_at;
        rt.window.clear();
        add_totals(&mut rt.totals, &total);
        drop(rt);
        self.engine.metrics.source_held.get_or_create(&SourceLabel { source: name.to_owned() }).set(0);
        self.count(&entry, &total);
        Ok(total)
    }

    fn count(&self, entry: &Entry, applied: &SourceApplied) {
        let source = entry.settings.name.to_string();
        for (outcome, n) in [
            ("created", applied.created),
            ("updated", applied.updated),
            ("deactivated", applied.deactivated),
            ("deleted", applied.deleted),
            ("unchanged", applied.unchanged),
            ("rejected", applied.rejected.len()),
            ("held", applied.held),
        ] {
            if n > 0 {
                self.engine
                    .metrics
                    .source_records
                    .get_or_create(&SourceOutcomeLabel { source: source.clone(), outcome: outcome.into() })
                    .inc_by(n as u64);
            }
        }
    }

    /// The writes of a plan, in order: identities created and changed (in
    /// chunks), groups, identities removed; the source's state rides on the
    /// last commit (on its own commit if the plan writes nothing).
    fn execute(&self, entry: &Entry, plan: Plan, state: SourceState) -> Result<SourceApplied, SourceError> {
        let engine = self.engine;
        let source = &entry.settings.name;
        let mut applied =
            SourceApplied { unchanged: plan.unchanged, rejected: plan.rejected, ..SourceApplied::default() };
        let mut steps: Vec<Step> = Vec::new();
        let upserts: Vec<(String, Request)> = plan
            .creates
            .into_iter()
            .map(|identity| {
                let key = identity.external_id.clone().unwrap_or_default();
                (key.clone(), Request::Create { identity, origin: origin(source, &key) })
            })
            .chain(plan.updates.into_iter().map(|(before, after)| update_request(source, before, after)))
            .collect();
        let removals: Vec<(String, Request)> =
            plan.removals.into_iter().map(|(before, after)| update_request(source, before, after)).collect();
        push_chunks(&mut steps, upserts);
        for group in plan.group_creates {
            steps.push(Step::Group(Box::new((None, Some(group)))));
        }
        for (before, after) in plan.group_updates {
            steps.push(Step::Group(Box::new((Some(before), Some(after)))));
        }
        for group in plan.group_deletes {
            steps.push(Step::Group(Box::new((Some(group), None))));
        }
        push_chunks(&mut steps, removals);
        if steps.is_empty() {
            let _writer = engine.lock_writer()?;
            engine.stores.directory.commit_source(Vec::new(), Some(state)).map_err(EngineError::from)?;
            return Ok(applied);
        }
        let last = steps.len() - 1;
        let mut state = Some(state);
        for (i, step) in steps.into_iter().enumerate() {
            let state = if i == last { state.take() } else { None };
            match step {
                Step::Identities(requests) => self.commit_requests(requests, state, &mut applied)?,
                Step::Group(pair) => {
                    let (before, after) = *pair;
                    let key = after
                        .as_ref()
                        .or(before.as_ref())
                        .and_then(|g| g.external_id.clone())
                        .unwrap_or_default();
                    let Some(id) = after.as_ref().or(before.as_ref()).map(|g| g.id) else { continue };
                    let created = before.is_none();
                    let deleted = after.is_none();
                    let mut writer = engine.lock_writer()?;
                    match engine.write_group(&mut writer, id, before, after, origin(source, &key), state) {
                        Ok(g) => {
                            applied.revoked += g.revoked;
                            if created {
                                applied.created += 1;
                            } else if deleted {
                                applied.deleted += 1;
                            } else {
                                applied.updated += 1;
                            }
                        }
                        Err(e @ (EngineError::Store(_) | EngineError::BridgePending(_))) => {
                            return Err(e.into());
                        }
                        Err(e) => applied.rejected.push((key, e.to_string())),
                    }
                }
            }
        }
        Ok(applied)
    }

    /// Commits identity requests under the writer lock: rounds of prepared
    /// writes (a request touching what an earlier one of the round touched
    /// waits for the next round), each one directory transaction and one
    /// bridge step; `state` rides on the last round.
    fn commit_requests(
        &self,
        requests: Vec<(String, Request)>,
        state: Option<SourceState>,
        applied: &mut SourceApplied,
    ) -> Result<(), SourceError> {
        let engine = self.engine;
        let mut writer = engine.lock_writer()?;
        engine.catch_up(&mut writer).map_err(EngineError::BridgePending)?;
        let mut pending = requests;
        let mut state = state;
        loop {
            let now = engine.clock.now();
            let mut touched: HashSet<IdentityId> = HashSet::new();
            let mut writes = Vec::new();
            let mut keys = Vec::new();
            let mut deferred = Vec::new();
            for (key, request) in pending {
                if touched.contains(&request.target()) {
                    deferred.push((key, request));
                    continue;
                }
                match engine.prepare(&request, now) {
                    Ok(Prepared::Write { write, footprint, .. }) => {
                        if footprint.iter().any(|id| touched.contains(id)) {
                            deferred.push((key, request));
                            continue;
                        }
                        touched.extend(footprint);
                        writes.push(write);
                        keys.push(key);
                    }
                    Ok(Prepared::Unchanged { .. }) => applied.unchanged += 1,
                    Err(UpdateError::Engine(e)) => applied.rejected.push((key, e.to_string())),
                    Err(UpdateError::Rejected(_)) => applied.rejected.push((key, "refused".into())),
                }
            }
            let last = deferred.is_empty();
            let round_state = if last { state.take() } else { None };
            if writes.is_empty() {
                if round_state.is_some() {
                    engine
                        .stores
                        .directory
                        .commit_source(Vec::new(), round_state)
                        .map_err(EngineError::from)?;
                }
            } else {
                let results =
                    engine.stores.directory.commit_source(writes, round_state).map_err(EngineError::from)?;
                let committed_at = engine.clock.now();
                let events: Vec<_> = results
                    .iter()
                    .filter_map(|r| r.as_ref().ok())
                    .flat_map(|c| c.events.iter().cloned())
                    .collect();
                let revoked = engine
                    .apply_events(&mut writer, &events, Some(committed_at), None)
                    .map_err(EngineError::BridgePending)?;
                applied.revoked += revoked.values().sum::<usize>();
                for (key, result) in keys.into_iter().zip(results) {
                    match result {
                        Ok(c) => {
                            let kinds: Vec<&DirectoryChange> = c.events.iter().map(|e| &e.change).collect();
                            if kinds.iter().any(|k| matches!(k, DirectoryChange::IdentityCreated)) {
                                applied.created += 1;
                            } else if kinds.iter().any(|k| matches!(k, DirectoryChange::IdentityDeleted)) {
                                applied.deleted += 1;
                            } else if kinds
                                .iter()
                                .any(|k| matches!(k, DirectoryChange::IdentityDeactivated { .. }))
                            {
                                applied.deactivated += 1;
                            } else {
                                applied.updated += 1;
                            }
                        }
                        Err(e) => applied.rejected.push((key, EngineError::from(e).to_string())),
                    }
                }
            }
            if last {
                return Ok(());
            }
            pending = deferred;
        }
    }

    /// Every source's status.
    pub fn status(&self) -> Result<Vec<SourceStatus>, SourceError> {
        let now = self.engine.clock.now();
        let mut out = Vec::new();
        for entry in self.engine.sources.all() {
            self.load(&entry)?;
            let directory = &self.engine.stores.directory;
            let identities =
                directory.count_source_identities(&entry.settings.name).map_err(EngineError::from)?;
            let groups = directory.count_source_groups(&entry.settings.name).map_err(EngineError::from)?;
            let rt = entry.runtime();
            let held: Vec<(String, String)> = rt
                .held
                .updates
                .iter()
                .flat_map(|u| {
                    let removed: Vec<(String, String)> = match &u.removals {
                        Removals::Keys(keys) => {
                            keys.iter().map(|k| (k.clone(), "removed at the source".into())).collect()
                        }
                        Removals::AllExcept { .. } => vec![(
                            "*".into(),
                            format!("a complete update of {} records held whole", u.upserts.len()),
                        )],
                    };
                    let inactive = u.upserts.iter().filter_map(|r| match r {
                        SourceRecord::User(user) if !user.active => {
                            Some((user.key.clone(), "deactivated at the source".into()))
                        }
                        _ => None,
                    });
                    removed.into_iter().chain(inactive).collect::<Vec<_>>()
                })
                .collect();
            out.push(SourceStatus {
                settings: entry.settings.clone(),
                connection: rt.connection.clone(),
                complete_at: rt.complete_at,
                last_sync: rt.last_sync,
                last_error: rt.last_error.clone(),
                staleness: super::stale::staleness(&rt, now),
                stale: rt.stale == Some(true),
                identities,
                groups,
                totals: rt.totals.clone(),
                held,
                held_since: rt.held.since,
                threshold: entry.settings.breaker.threshold(identities),
            });
        }
        Ok(out)
    }
}

/// One step of a plan's execution.
enum Step {
    Identities(Vec<(String, Request)>),
    Group(Box<(Option<lockstep_domain::Group>, Option<lockstep_domain::Group>)>),
}

fn push_chunks(steps: &mut Vec<Step>, requests: Vec<(String, Request)>) {
    // One pass, moving each request once (cutting from the front with
    // `split_off` copied the whole tail per chunk: quadratic).
    let mut chunk = Vec::with_capacity(CHUNK.min(requests.len()));
    for request in requests {
        chunk.push(request);
        if chunk.len() == CHUNK {
            steps.push(Step::Identities(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK))));
        }
    }
    if !chunk.is_empty() {
        steps.push(Step::Identities(chunk));
    }
}

fn update_request(source: &SourceId, before: Identity, after: Identity) -> (String, Request) {
    let key = before.external_id.clone().unwrap_or_default();
    let version = before.version;
    let next = after.clone();
    let change = Box::new(move |_: &Identity| Ok::<_, Rejection>(next.clone()));
    (
        key.clone(),
        Request::Update {
            id: before.id,
            origin: origin(source, &key),
            if_match: Some(version),
            change,
            guess: Some((version, after)),
        },
    )
}

fn window_count(
    window: &std::collections::VecDeque<(Timestamp, usize)>,
    now: Timestamp,
    span: std::time::Duration,
) -> usize {
    let from = now.micros().saturating_sub(i64::try_from(span.as_micros()).unwrap_or(i64::MAX));
    window.iter().filter(|(at, _)| at.micros() > from).map(|(_, n)| n).sum()
}

fn count_losses(update: &SourceUpdate) -> usize {
    let removed = match &update.removals {
        Removals::Keys(keys) => keys.len(),
        Removals::AllExcept { .. } => 0,
    };
    removed + update.upserts.iter().filter(|r| matches!(r, SourceRecord::User(u) if !u.active)).count()
}

fn add_totals(total: &mut SourceApplied, applied: &SourceApplied) {
    total.created += applied.created;
    total.updated += applied.updated;
    total.deactivated += applied.deactivated;
    total.deleted += applied.deleted;
    total.unchanged += applied.unchanged;
    total.held += applied.held;
    total.revoked += applied.revoked;
    total
        .rejected
        .extend(applied.rejected.iter().take(100usize.saturating_sub(total.rejected.len())).cloned());
}
