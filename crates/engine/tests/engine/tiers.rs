//! Tiers, owners and the policy on the real SQLite stores.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use lockstep_domain::{
    ApiClient, AuditEntry, AuditKind, AuditRecord, DirectoryChange, DirectoryEvent, DirectoryEventId, Group,
    GroupId, Identity, IdentityId, IdentityKind, IdentityStatus, Session, SessionId, SessionState, SourceId,
    Timestamp, Token, TokenHash,
};
use lockstep_engine::{Engine, EngineConfig, OsEntropy, Principal, Stores};

use super::Sessions as _;
use lockstep_policy::{Policy, PolicyConfig, TierConfig};
use lockstep_store::{
    Committed, CommittedGroup, CredentialStore, DirectoryRead, DirectoryStore, GroupPage, GroupQuery,
    GroupWrite, IdentityPage, IdentityQuery, IdentityWrite, SessionBatch, SessionStore, SourceState,
    StoreResult,
};

use super::{ManualClock, draft, origin, stores};

fn open_with(dir: &std::path::Path, policy: Policy, clock: Arc<ManualClock>) -> Engine {
    Engine::open(stores(dir), EngineConfig { policy, ..EngineConfig::default() }, clock, Arc::new(OsEntropy))
        .unwrap()
}

fn standard_cap(ttl: &str) -> Policy {
    Policy::from_config(&PolicyConfig {
        tiers: vec![(
            "standard".into(),
            TierConfig { session_max_ttl: Some(ttl.into()), ..TierConfig::default() },
        )],
    })
    .unwrap()
}

#[test]
fn a_changed_policy_is_audited_and_a_new_cap_shortens_live_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock(AtomicI64::new(1_700_000_000_000_000)));
    let token = {
        let engine = open_with(dir.path(), Policy::default(), clock.clone());
        engine.create_identity(draft(&engine, "long"), origin()).unwrap();
        engine.open_session("long", Some(Duration::from_secs(10 * 3600)), &Principal::admin()).unwrap()
    };
    let policy_records = |engine: &Engine| {
        engine
            .audit_page(0, 1_000)
            .unwrap()
            .into_iter()
            .filter(|r| r.entry.kind == AuditKind::PolicyChanged)
            .count()
    };
    let engine = open_with(dir.path(), standard_cap("1h"), clock.clone());
    assert_eq!(policy_records(&engine), 2, "first start, then the change");
    let session = &engine.list_sessions("long").unwrap()[0];
    assert_eq!(
        session.expires_at,
        token.session.issued_at.plus(Duration::from_secs(3600)),
        "shortened, not revoked"
    );
    let shortened = engine
        .audit_page(0, 1_000)
        .unwrap()
        .into_iter()
        .find(|r| r.entry.kind == AuditKind::SessionExpiryShortened)
        .unwrap();
    assert_eq!(shortened.entry.actor.rule(), Some("standard.session_max_ttl"));
    drop(engine);
    // The same policy again: nothing recorded. A looser one: nothing extended.
    let engine = open_with(dir.path(), standard_cap("1h"), clock.clone());
    assert_eq!(policy_records(&engine), 2);
    drop(engine);
    let engine = open_with(dir.path(), Policy::default(), clock);
    assert_eq!(policy_records(&engine), 3);
    let session = &engine.list_sessions("long").unwrap()[0];
    assert_eq!(session.expires_at, token.session.issued_at.plus(Duration::from_secs(3600)), "never extended");
}

fn owned(engine: &Engine, name: &str, owners: Vec<IdentityId>) -> Identity {
    let mut sa = draft(engine, name);
    sa.kind = IdentityKind::ServiceAccount;
    sa.owners = owners;
    engine.create_identity(sa, origin()).unwrap().identity
}

fn set_active(engine: &Engine, id: IdentityId, active: bool) -> lockstep_engine::Applied {
    engine
        .update_identity(id, origin(), None, move |cur| {
            let mut next = cur.clone();
            next.status = if active { IdentityStatus::Active } else { IdentityStatus::Disabled };
            Ok::<_, ()>(next)
        })
        .unwrap()
}

/// Two owners leaving at once, in one group commit or two: the identity
/// they own loses its last active owner exactly once.
#[test]
fn the_last_owner_leaving_is_one_owner_lost_however_the_owners_race() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(super::open(dir.path()));
    for round in 0..30 {
        let o1 = engine.create_identity(draft(&engine, &format!("o1-{round}")), origin()).unwrap().identity;
        let o2 = engine.create_identity(draft(&engine, &format!("o2-{round}")), origin()).unwrap().identity;
        let sa = owned(&engine, &format!("sa-{round}"), vec![o1.id, o2.id]);
        let token = engine.open_session(&sa.user_name, None, &Principal::admin()).unwrap();
        // Unrelated writers around them, so that writes queue up and share
        // group commits (the two owners then often land in one batch).
        let fillers: Vec<IdentityId> = (0..6)
            .map(|n| {
                engine
                    .create_identity(draft(&engine, &format!("f{n}-{round}")), origin())
                    .unwrap()
                    .identity
                    .id
            })
            .collect();
        let start = Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = [o1.id, o2.id]
            .into_iter()
            .chain(fillers)
            .map(|o| {
                let (engine, start) = (engine.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    set_active(&engine, o, false)
                })
            })
            .collect();
        let applied: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let lost: Vec<&DirectoryEvent> = applied
            .iter()
            .flat_map(|a| &a.events)
            .filter(|e| {
                e.subject.identity() == Some(sa.id) && matches!(e.change, DirectoryChange::OwnerLost { .. })
            })
            .collect();
        assert_eq!(lost.len(), 1, "round {round}: {lost:?}");
        assert!(lost[0].cause.is_some(), "cites the owner's deactivation");
        assert!(engine.introspect(&token.access_token).is_none(), "suspended");
        assert!(matches!(
            engine.list_sessions(&sa.user_name).unwrap()[0].state,
            SessionState::Suspended { .. }
        ));
        // One owner back: the suspension lifts.
        let back = set_active(&engine, o2.id, true);
        assert!(back.events.iter().any(|e| matches!(e.change, DirectoryChange::OwnerRestored { .. })));
        assert!(engine.introspect(&token.access_token).is_some(), "round {round}: resumed");
    }
}

/// Store reads, counted: introspection must make none.
#[derive(Debug)]
struct Counting {
    inner: Stores,
    reads: AtomicUsize,
}

impl Counting {
    fn read(&self) {
        self.reads.fetch_add(1, Ordering::SeqCst);
    }
}

impl DirectoryRead for Counting {
    fn identity(&self, id: IdentityId) -> StoreResult<Option<Identity>> {
        self.read();
        self.inner.directory.identity(id)
    }
    fn live_identity_by_user_name(&self, user_name: &str) -> StoreResult<Option<Identity>> {
        self.read();
        self.inner.directory.live_identity_by_user_name(user_name)
    }
    fn deleted_user_name_exists(&self, user_name: &str) -> StoreResult<bool> {
        self.read();
        self.inner.directory.deleted_user_name_exists(user_name)
    }
    fn list_identities(&self, query: &IdentityQuery) -> StoreResult<IdentityPage> {
        self.read();
        self.inner.directory.list_identities(query)
    }
    fn owned_by(&self, owner: IdentityId) -> StoreResult<Vec<Identity>> {
        self.read();
        self.inner.directory.owned_by(owner)
    }
    fn events_after(
        &self,
        after: Option<DirectoryEventId>,
        limit: usize,
    ) -> StoreResult<Vec<DirectoryEvent>> {
        self.read();
        self.inner.directory.events_after(after, limit)
    }
    fn event(&self, id: DirectoryEventId) -> StoreResult<Option<DirectoryEvent>> {
        self.read();
        self.inner.directory.event(id)
    }
    fn events_caused_by(&self, cause: DirectoryEventId) -> StoreResult<Vec<DirectoryEvent>> {
        self.read();
        self.inner.directory.events_caused_by(cause)
    }
    fn group(&self, id: GroupId) -> StoreResult<Option<Group>> {
        self.read();
        self.inner.directory.group(id)
    }
    fn list_groups(&self, query: &GroupQuery) -> StoreResult<GroupPage> {
        self.read();
        self.inner.directory.list_groups(query)
    }
    fn groups_of(&self, identity: IdentityId) -> StoreResult<Vec<(GroupId, String)>> {
        self.read();
        self.inner.directory.groups_of(identity)
    }
    fn source_identities(&self, source: &SourceId) -> StoreResult<Vec<Identity>> {
        self.read();
        self.inner.directory.source_identities(source)
    }
    fn source_groups(&self, source: &SourceId) -> StoreResult<Vec<Group>> {
        self.read();
        self.inner.directory.source_groups(source)
    }
    fn source_state(&self, source: &SourceId) -> StoreResult<Option<SourceState>> {
        self.read();
        self.inner.directory.source_state(source)
    }
}

/// The writer's own reads are not counted: they are what a directory
/// write may read (the SQLite store reads them where it writes).
impl DirectoryStore for Counting {
    fn identity_to_write(&self, id: IdentityId) -> StoreResult<Option<Identity>> {
        self.inner.directory.identity_to_write(id)
    }
    fn owned_by_to_write(&self, owner: IdentityId) -> StoreResult<Vec<Identity>> {
        self.inner.directory.owned_by_to_write(owner)
    }
    fn groups_of_to_write(&self, identity: IdentityId) -> StoreResult<Vec<(GroupId, String)>> {
        self.inner.directory.groups_of_to_write(identity)
    }
    fn events_after_to_write(
        &self,
        after: Option<DirectoryEventId>,
        limit: usize,
    ) -> StoreResult<Vec<DirectoryEvent>> {
        self.inner.directory.events_after_to_write(after, limit)
    }
    fn commit_identity(&self, write: IdentityWrite) -> StoreResult<Committed> {
        self.inner.directory.commit_identity(write)
    }
    fn commit_group(&self, write: GroupWrite) -> StoreResult<CommittedGroup> {
        self.inner.directory.commit_group(write)
    }
    fn commit_source(
        &self,
        writes: Vec<IdentityWrite>,
        state: Option<SourceState>,
    ) -> StoreResult<Vec<StoreResult<Committed>>> {
        self.inner.directory.commit_source(writes, state)
    }
}

impl SessionStore for Counting {
    fn signals(&self) -> Option<&dyn lockstep_store::SignalStore> {
        self.inner.sessions.signals()
    }
    fn status_indexes(&self) -> StoreResult<Vec<(u32, SessionId)>> {
        self.inner.sessions.status_indexes()
    }
    fn session(&self, id: SessionId) -> StoreResult<Option<Session>> {
        self.read();
        self.inner.sessions.session(id)
    }
    fn token(&self, hash: &TokenHash) -> StoreResult<Option<Token>> {
        self.read();
        self.inner.sessions.token(hash)
    }
    fn tokens_of(&self, session: SessionId) -> StoreResult<Vec<Token>> {
        self.read();
        self.inner.sessions.tokens_of(session)
    }
    fn for_each_live_token(&self, now: Timestamp, f: &mut dyn FnMut(Token)) -> StoreResult<()> {
        self.read();
        self.inner.sessions.for_each_live_token(now, f)
    }
    fn purge(&self, before: Timestamp, limit: usize) -> StoreResult<usize> {
        self.inner.sessions.purge(before, limit)
    }
    fn sessions_of(&self, identity: IdentityId) -> StoreResult<Vec<Session>> {
        self.read();
        self.inner.sessions.sessions_of(identity)
    }
    fn for_each_live(&self, now: Timestamp, f: &mut dyn FnMut(Session)) -> StoreResult<()> {
        self.read();
        self.inner.sessions.for_each_live(now, f)
    }
    fn suspensions_due(&self, now: Timestamp) -> StoreResult<Vec<Session>> {
        self.read();
        self.inner.sessions.suspensions_due(now)
    }
    fn apply(&self, batch: SessionBatch) -> StoreResult<Vec<AuditRecord>> {
        self.inner.sessions.apply(batch)
    }
    fn consumed(&self) -> StoreResult<Option<DirectoryEventId>> {
        self.read();
        self.inner.sessions.consumed()
    }
    fn policy(&self) -> StoreResult<Option<String>> {
        self.read();
        self.inner.sessions.policy()
    }
    fn audit_after(&self, after: u64, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        self.read();
        self.inner.sessions.audit_after(after, limit)
    }
    fn audit_of_events(&self, events: &[DirectoryEventId]) -> StoreResult<Vec<AuditRecord>> {
        self.read();
        self.inner.sessions.audit_of_events(events)
    }
}

impl CredentialStore for Counting {
    fn insert_client(&self, client: &ApiClient, audit: AuditEntry) -> StoreResult<()> {
        self.inner.credentials.insert_client(client, audit)
    }
    fn clients(&self) -> StoreResult<Vec<ApiClient>> {
        self.inner.credentials.clients()
    }
    fn admin_token_hash(&self) -> StoreResult<Option<TokenHash>> {
        self.inner.credentials.admin_token_hash()
    }
    fn set_admin_token_hash(&self, hash: TokenHash) -> StoreResult<()> {
        self.inner.credentials.set_admin_token_hash(hash)
    }
}

/// The architecture's promise: introspection answers from memory — also for
/// a session whose claims a directory change re-derived — and never reads
/// a store.
#[test]
fn introspection_never_reads_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let counting = Arc::new(Counting { inner: stores(dir.path()), reads: AtomicUsize::new(0) });
    let stores =
        Stores { directory: counting.clone(), sessions: counting.clone(), credentials: counting.clone() };
    let clock = Arc::new(ManualClock(AtomicI64::new(1_700_000_000_000_000)));
    let engine = Engine::open(stores, EngineConfig::default(), clock, Arc::new(OsEntropy)).unwrap();
    // The bearer secrets load behind the server; until they are in memory
    // a secret missing from it is read from the store (a test in upkeep.rs).
    while !engine.bearer_tokens_loaded() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let ada = engine.create_identity(draft(&engine, "ada"), origin()).unwrap().identity;
    let token = engine.open_session("ada", None, &Principal::admin()).unwrap().access_token;
    let gid = engine.new_group_id().unwrap();
    let group = Group {
        id: gid,
        display_name: "eng".into(),
        external_id: None,
        source: lockstep_domain::SourceId::scim(),
        members: vec![ada.id],
        version: 0,
        created: Timestamp(0),
        modified: Timestamp(0),
    };
    engine.create_group(group, origin()).unwrap();
    let marked = engine.list_sessions("ada").unwrap();
    assert_eq!(marked[0].state, SessionState::NeedsRecheck, "the join re-checked the session");
    let before = counting.reads.load(Ordering::SeqCst);
    for _ in 0..100 {
        let answer = engine.introspect(&token).unwrap();
        let claims = answer.claims.unwrap();
        assert_eq!(claims.groups.iter().map(|(_, n)| n.as_ref()).collect::<Vec<_>>(), ["eng"]);
        assert!(engine.introspect("lst_at_unknown").is_none());
    }
    assert_eq!(counting.reads.load(Ordering::SeqCst), before, "introspection read a store");

    // A directory write reads what it changes, and the groups it answers
    // with, where it writes: no reader, neither before it is queued nor
    // after it committed.
    let before = counting.reads.load(Ordering::SeqCst);
    let applied = engine
        .update_identity(ada.id, origin(), None, |current| {
            let mut next = current.clone();
            next.display_name = Some("Ada L.".into());
            Ok::<_, ()>(next)
        })
        .unwrap();
    assert_eq!(applied.identity.display_name.as_deref(), Some("Ada L."));
    assert_eq!(applied.groups, vec![(gid, "eng".to_owned())]);
    let unchanged =
        engine.update_identity(ada.id, origin(), None, |current| Ok::<_, ()>(current.clone())).unwrap();
    assert!(unchanged.events.is_empty());
    assert_eq!(unchanged.groups, vec![(gid, "eng".to_owned())]);
    assert_eq!(counting.reads.load(Ordering::SeqCst), before, "a directory write read through a reader");
}

fn privileged_group(engine: &Engine, name: &str, members: Vec<IdentityId>) -> GroupId {
    let id = engine.new_group_id().unwrap();
    let group = Group {
        id,
        display_name: name.into(),
        external_id: None,
        source: lockstep_domain::SourceId::scim(),
        members,
        version: 0,
        created: Timestamp(0),
        modified: Timestamp(0),
    };
    engine.create_group(group, origin()).unwrap();
    id
}

/// A group deletion that cuts enough sessions is acknowledged once the cut
/// is in force, before the session store records it: when the hook runs,
/// every member's token already introspects inactive, and a reader of the
/// audit trail started from the hook sees every revocation recorded. A
/// smaller cut never calls the hook.
#[test]
fn an_early_acknowledgement_follows_the_cut_and_readers_wait_for_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock(AtomicI64::new(1_700_000_000_000_000)));
    let policy = Policy::from_config(&PolicyConfig {
        tiers: vec![(
            "privileged".into(),
            TierConfig {
                groups: Some(vec!["prod-admins".into(), "ops-admins".into()]),
                ..TierConfig::default()
            },
        )],
    })
    .unwrap();
    let engine = Arc::new(open_with(dir.path(), policy, clock));
    let mut members = Vec::new();
    let mut tokens = Vec::new();
    for name in ["a", "b", "c"] {
        members.push(engine.create_identity(draft(&engine, name), origin()).unwrap().identity.id);
        for _ in 0..2 {
            tokens.push(engine.open_session(name, None, &Principal::admin()).unwrap().access_token);
        }
    }
    let d = engine.create_identity(draft(&engine, "d"), origin()).unwrap().identity.id;
    let d_token = engine.open_session("d", None, &Principal::admin()).unwrap().access_token;
    let prod = privileged_group(&engine, "prod-admins", members);
    let ops = privileged_group(&engine, "ops-admins", vec![d]);
    assert!(tokens.iter().chain([&d_token]).all(|t| engine.introspect(t).is_some()));

    // One session cut, two asked for: the hook is dropped unfired.
    let fired = Arc::new(AtomicUsize::new(0));
    let counter = fired.clone();
    let ack = lockstep_engine::EarlyAck::at_least(2, move || {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    engine.delete_group_acknowledged(ops, origin(), None, Some(ack)).unwrap();
    assert_eq!(fired.load(Ordering::SeqCst), 0);
    assert!(engine.introspect(&d_token).is_none());

    // Six sessions cut: the hook runs with the cut in force, and a reader
    // it starts waits for the record.
    let (tx, rx) = std::sync::mpsc::channel();
    let (seen, watching) = (engine.clone(), tokens.clone());
    let ack = lockstep_engine::EarlyAck::at_least(6, move || {
        let in_force = watching.iter().all(|t| seen.introspect(t).is_none());
        let reader = std::thread::spawn(move || {
            seen.audit_page(0, 10_000)
                .unwrap()
                .into_iter()
                .filter(|r| r.entry.kind == AuditKind::SessionRevoked)
                .count()
        });
        tx.send((in_force, reader)).unwrap();
        // Give the reader time to read before the record is written: it
        // must wait for it, not race it.
        std::thread::sleep(Duration::from_millis(30));
    });
    let applied = engine.delete_group_acknowledged(prod, origin(), None, Some(ack)).unwrap();
    assert_eq!(applied.revoked, 6);
    let (in_force, reader) = rx.try_recv().expect("the hook ran");
    assert!(in_force, "acknowledged before every token introspected inactive");
    assert_eq!(reader.join().unwrap(), 7, "d's revocation and the six just acknowledged, recorded");
}
