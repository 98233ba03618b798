//! The in-memory reference model of every role.
//!
//! Simple enough to be obviously right; the conformance suite checks every
//! real backend against it, operation by operation.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use lockstep_domain::{
    ApiClient, AuditEntry, AuditRecord, ChainHash, DirectoryEvent, DirectoryEventId, Group, GroupId,
    Identity, IdentityId, IdentityStatus, Origin, Outgoing, Session, SessionId, SessionState, SourceId,
    Stream, StreamId, Subject, Timestamp, Token, TokenHash, TokenKind,
};

use crate::chain::seal;
use crate::{
    Committed, CommittedGroup, CredentialStore, DirectoryRead, DirectoryStore, GroupField, GroupPage,
    GroupQuery, GroupWrite, IdentityField, IdentityPage, IdentityQuery, IdentityWrite, NewEvent, Queued,
    SessionBatch, SessionStore, SignalRecord, SignalStore, SourceState, StoreError, StoreResult,
    cause_positions, write_events,
};
use lockstep_domain::text::fold;

fn lock<T>(m: &Mutex<T>) -> StoreResult<MutexGuard<'_, T>> {
    m.lock().map_err(|_| StoreError::Backend("lock poisoned".into()))
}

#[derive(Debug, Default)]
struct DirectoryState {
    /// In creation order (the order listings use).
    identities: Vec<Identity>,
    events: Vec<DirectoryEvent>,
    /// In creation order.
    groups: Vec<Group>,
    sources: BTreeMap<SourceId, SourceState>,
}

impl DirectoryState {
    /// Appends events after the last one, resolving each `caused_by` index
    /// to the position it names.
    fn append(
        &mut self,
        at: Timestamp,
        origin: &Origin,
        new: Vec<NewEvent>,
    ) -> StoreResult<Vec<DirectoryEvent>> {
        let first = self.events.last().map_or(1, |e| e.id.0 + 1);
        let causes = cause_positions(&new, first)?;
        let out: Vec<DirectoryEvent> = (first..)
            .zip(new.into_iter().zip(causes))
            .map(|(next, (event, cause))| DirectoryEvent {
                id: DirectoryEventId(next),
                at,
                subject: event.subject,
                change: event.change,
                origin: origin.clone(),
                cause,
            })
            .collect();
        self.events.extend(out.iter().cloned());
        Ok(out)
    }

    /// One identity write; on error nothing changed.
    fn write_identity(&mut self, write: IdentityWrite) -> StoreResult<Committed> {
        let st = self;
        let pos = st.identities.iter().position(|i| i.id == write.identity.id);
        let found = pos.map(|p| st.identities[p].version);
        if found != write.expected_version {
            return Err(StoreError::VersionMismatch { expected: write.expected_version, found });
        }
        if write.changes.is_empty() {
            return Err(StoreError::Backend("a directory write must record at least one change".into()));
        }
        let mut identity = write.identity;
        if let Some(p) = pos
            && st.identities[p].source != identity.source
        {
            return Err(StoreError::Backend("a write cannot change an identity's source".into()));
        }
        if live(&identity) {
            let lower = fold(&identity.user_name);
            let clash =
                st.identities.iter().any(|i| i.id != identity.id && live(i) && fold(&i.user_name) == lower);
            if clash {
                return Err(StoreError::Conflict { field: "userName", value: identity.user_name });
            }
        }
        identity.version = write.expected_version.map_or(1, |v| v + 1);
        let new = write_events(write.changes, write.fanout, &Subject::of_identity(&identity, write.tiers));
        // Validate before changing anything: a failed write leaves no trace.
        cause_positions(&new, 0)?;
        match pos {
            Some(p) => st.identities[p] = identity.clone(),
            None => st.identities.push(identity.clone()),
        }
        let events = st.append(write.at, &write.origin, new)?;
        Ok(Committed { identity, events })
    }

    fn is_live(&self, id: IdentityId) -> bool {
        self.identities.iter().any(|i| i.id == id && live(i))
    }

    /// A group as read: members that were deleted since are left out.
    fn visible(&self, group: &Group) -> Group {
        let mut g = group.clone();
        g.members.retain(|m| self.is_live(*m));
        g
    }
}

/// In-memory directory.
#[derive(Debug, Default)]
pub struct MemoryDirectory {
    state: Mutex<DirectoryState>,
}

impl MemoryDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }
}

fn live(identity: &Identity) -> bool {
    identity.status != IdentityStatus::Deprovisioned
}

impl DirectoryStore for MemoryDirectory {
    fn commit_identity(&self, write: IdentityWrite) -> StoreResult<Committed> {
        lock(&self.state)?.write_identity(write)
    }
    fn commit_source(
        &self,
        writes: Vec<IdentityWrite>,
        state: Option<SourceState>,
    ) -> StoreResult<Vec<StoreResult<Committed>>> {
        let mut st = lock(&self.state)?;
        let results = writes.into_iter().map(|w| st.write_identity(w)).collect();
        if let Some(state) = state {
            st.sources.insert(state.source.clone(), state);
        }
        Ok(results)
    }
    fn commit_group(&self, write: GroupWrite) -> StoreResult<CommittedGroup> {
        let mut st = lock(&self.state)?;
        let pos = st.groups.iter().position(|g| g.id == write.id);
        let found = pos.map(|p| st.groups[p].version);
        if found != write.expected_version {
            return Err(StoreError::VersionMismatch { expected: write.expected_version, found });
        }
        if write.events.is_empty() {
            return Err(StoreError::Backend("a directory write must record at least one change".into()));
        }
        cause_positions(&write.events, 0)?;
        if let Some(group) = &write.group
            && let Some(missing) = group.members.iter().find(|m| !st.is_live(**m))
        {
            return Err(StoreError::NotFound(format!("identity {missing}")));
        }
        if let (Some(p), Some(group)) = (pos, &write.group)
            && st.groups[p].source != group.source
        {
            return Err(StoreError::Backend("a write cannot change a group's source".into()));
        }
        let group = match write.group {
            Some(mut group) => {
                group.members.sort();
                group.members.dedup();
                group.id = write.id;
                group.version = write.expected_version.map_or(1, |v| v + 1);
                match pos {
                    Some(p) => st.groups[p] = group.clone(),
                    None => st.groups.push(group.clone()),
                }
                Some(group)
            }
            None => {
                if let Some(p) = pos {
                    st.groups.remove(p);
                }
                None
            }
        };
        let events = st.append(write.at, &write.origin, write.events)?;
        if let Some(state) = write.state {
            st.sources.insert(state.source.clone(), state);
        }
        Ok(CommittedGroup { group, events })
    }
}

impl DirectoryRead for MemoryDirectory {
    fn source_identities(&self, source: &SourceId) -> StoreResult<Vec<Identity>> {
        Ok(lock(&self.state)?.identities.iter().filter(|i| live(i) && i.source == *source).cloned().collect())
    }
    fn source_groups(&self, source: &SourceId) -> StoreResult<Vec<Group>> {
        let st = lock(&self.state)?;
        Ok(st.groups.iter().filter(|g| g.source == *source).map(|g| st.visible(g)).collect())
    }
    fn source_state(&self, source: &SourceId) -> StoreResult<Option<SourceState>> {
        Ok(lock(&self.state)?.sources.get(source).cloned())
    }
    fn owned_by(&self, owner: IdentityId) -> StoreResult<Vec<Identity>> {
        Ok(lock(&self.state)?
            .identities
            .iter()
            .filter(|i| live(i) && i.owners.contains(&owner))
            .cloned()
            .collect())
    }
    fn event(&self, id: DirectoryEventId) -> StoreResult<Option<DirectoryEvent>> {
        Ok(lock(&self.state)?.events.iter().find(|e| e.id == id).cloned())
    }
    fn events_caused_by(&self, cause: DirectoryEventId) -> StoreResult<Vec<DirectoryEvent>> {
        Ok(lock(&self.state)?.events.iter().filter(|e| e.cause == Some(cause)).cloned().collect())
    }
    fn identity(&self, id: IdentityId) -> StoreResult<Option<Identity>> {
        Ok(lock(&self.state)?.identities.iter().find(|i| i.id == id).cloned())
    }
    fn live_identity_by_user_name(&self, user_name: &str) -> StoreResult<Option<Identity>> {
        let lower = fold(user_name);
        Ok(lock(&self.state)?.identities.iter().find(|i| live(i) && fold(&i.user_name) == lower).cloned())
    }
    fn deleted_user_name_exists(&self, user_name: &str) -> StoreResult<bool> {
        let lower = fold(user_name);
        Ok(lock(&self.state)?.identities.iter().any(|i| !live(i) && fold(&i.user_name) == lower))
    }
    fn list_identities(&self, query: &IdentityQuery) -> StoreResult<IdentityPage> {
        let st = lock(&self.state)?;
        let matches: Vec<&Identity> = st
            .identities
            .iter()
            .filter(|i| live(i))
            .filter(|i| query.filter.holds(&|field: IdentityField| field.values(i)))
            .collect();
        Ok(IdentityPage {
            total: matches.len(),
            items: matches.into_iter().skip(query.offset).take(query.limit).cloned().collect(),
        })
    }
    fn group(&self, id: GroupId) -> StoreResult<Option<Group>> {
        let st = lock(&self.state)?;
        Ok(st.groups.iter().find(|g| g.id == id).map(|g| st.visible(g)))
    }
    fn list_groups(&self, query: &GroupQuery) -> StoreResult<GroupPage> {
        let st = lock(&self.state)?;
        let matches: Vec<&Group> =
            st.groups.iter().filter(|g| query.filter.holds(&|field: GroupField| field.values(g))).collect();
        Ok(GroupPage {
            total: matches.len(),
            items: matches.into_iter().skip(query.offset).take(query.limit).map(|g| st.visible(g)).collect(),
        })
    }
    fn groups_of(&self, identity: IdentityId) -> StoreResult<Vec<(GroupId, String)>> {
        let st = lock(&self.state)?;
        let mut out: Vec<(GroupId, String)> = st
            .groups
            .iter()
            .filter(|g| g.members.contains(&identity))
            .map(|g| (g.id, g.display_name.clone()))
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
        Ok(out)
    }
    fn events_after(
        &self,
        after: Option<DirectoryEventId>,
        limit: usize,
    ) -> StoreResult<Vec<DirectoryEvent>> {
        Ok(lock(&self.state)?
            .events
            .iter()
            .filter(|e| after.is_none_or(|a| e.id > a))
            .take(limit)
            .cloned()
            .collect())
    }
}

#[derive(Debug, Default)]
struct SessionsState {
    sessions: BTreeMap<SessionId, Session>,
    /// Issue order.
    order: Vec<SessionId>,
    tokens: BTreeMap<TokenHash, Token>,
    /// Token issue order.
    token_order: Vec<TokenHash>,
    consumed: Option<DirectoryEventId>,
    policy: Option<String>,
    audit: Vec<AuditRecord>,
    clients: Vec<ApiClient>,
    admin: Option<TokenHash>,
    streams: BTreeMap<StreamId, Stream>,
    outbox: Vec<OutboxRow>,
    /// Per stream: every signal up to this `seq` is settled.
    cursors: BTreeMap<StreamId, u64>,
    /// Per stream and signal: delivery attempts.
    deliveries: BTreeMap<(StreamId, u64), DeliveryState>,
    received: std::collections::BTreeSet<(String, String)>,
    status_indexes: Vec<(u32, SessionId)>,
}

/// One outbox row of the model: a signal, once.
#[derive(Debug, Clone)]
struct OutboxRow {
    seq: u64,
    outgoing: Outgoing,
}

/// One signal's delivery to one stream.
#[derive(Debug, Clone)]
struct DeliveryState {
    attempts: u32,
    next: Timestamp,
    delivered: Option<Timestamp>,
    error: Option<String>,
}

impl Default for DeliveryState {
    fn default() -> Self {
        DeliveryState { attempts: 0, next: Timestamp(0), delivered: None, error: None }
    }
}

impl SessionsState {
    fn enqueue(&mut self, outgoing: Vec<Outgoing>) {
        for o in outgoing {
            let seq = self.last_seq() + 1;
            self.outbox.push(OutboxRow { seq, outgoing: o });
        }
    }

    fn last_seq(&self) -> u64 {
        self.outbox.last().map_or(0, |r| r.seq)
    }

    /// The signals still pending for a stream, with the stream's position
    /// in each.
    fn pending_of(&self, stream: StreamId) -> impl Iterator<Item = (&OutboxRow, usize)> + '_ {
        let cursor = self.cursors.get(&stream).copied();
        self.outbox.iter().filter_map(move |r| {
            let k = r.outgoing.streams.iter().position(|s| *s == stream)?;
            let settled = cursor.is_none_or(|c| r.seq <= c)
                || self.deliveries.get(&(stream, r.seq)).is_some_and(|d| d.delivered.is_some());
            (!settled).then_some((r, k))
        })
    }

    /// The pending signal of a stream that `jti` names.
    fn pending_seq(&self, stream: StreamId, jti: &str) -> Option<u64> {
        let (base, k) = lockstep_domain::split_jti(jti)?;
        self.pending_of(stream).find(|(r, at)| r.outgoing.jti_base == base && *at == k).map(|(r, _)| r.seq)
    }

    fn seal_all(&mut self, entries: Vec<AuditEntry>) -> Vec<AuditRecord> {
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let (seq, prev) = self.audit.last().map_or((1, ChainHash::GENESIS), |r| (r.seq + 1, r.hash));
            let hash = seal(&prev, seq, &entry);
            let record = AuditRecord { seq, entry, prev_hash: prev, hash };
            self.audit.push(record.clone());
            out.push(record);
        }
        out
    }
}

/// In-memory session authority (sessions, bridge cursor, audit, clients).
#[derive(Debug, Default)]
pub struct MemorySessions {
    state: Mutex<SessionsState>,
}

impl MemorySessions {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl SessionStore for MemorySessions {
    fn signals(&self) -> Option<&dyn crate::SignalStore> {
        Some(self)
    }

    fn status_indexes(&self) -> StoreResult<Vec<(u32, SessionId)>> {
        Ok(lock(&self.state)?.status_indexes.clone())
    }

    fn session(&self, id: SessionId) -> StoreResult<Option<Session>> {
        Ok(lock(&self.state)?.sessions.get(&id).cloned())
    }

    fn token(&self, hash: &TokenHash) -> StoreResult<Option<Token>> {
        Ok(lock(&self.state)?.tokens.get(hash).copied())
    }

    fn tokens_of(&self, session: SessionId) -> StoreResult<Vec<Token>> {
        let st = lock(&self.state)?;
        Ok(st
            .token_order
            .iter()
            .filter_map(|h| st.tokens.get(h))
            .filter(|t| t.session == session)
            .copied()
            .collect())
    }

    fn for_each_live_token(&self, now: Timestamp, f: &mut dyn FnMut(Token)) -> StoreResult<()> {
        let st = lock(&self.state)?;
        for t in st.token_order.iter().filter_map(|h| st.tokens.get(h)) {
            let bearer = matches!(t.kind, TokenKind::Access | TokenKind::ApiKey);
            if bearer && t.works(now) && st.sessions.get(&t.session).is_some_and(|s| s.is_live(now)) {
                f(*t);
            }
        }
        Ok(())
    }

    fn purge(&self, before: Timestamp, limit: usize) -> StoreResult<usize> {
        let mut st = lock(&self.state)?;
        let gone: Vec<SessionId> = st
            .order
            .iter()
            .filter_map(|id| st.sessions.get(id))
            .filter(|s| {
                s.expires_at < before || matches!(s.state, SessionState::Revoked { at, .. } if at < before)
            })
            .map(|s| s.id)
            .take(limit)
            .collect();
        for id in &gone {
            st.sessions.remove(id);
        }
        st.order.retain(|id| !gone.contains(id));
        st.tokens.retain(|_, t| !gone.contains(&t.session));
        let tokens = std::mem::take(&mut st.token_order);
        st.token_order = tokens.into_iter().filter(|h| st.tokens.contains_key(h)).collect();
        Ok(gone.len())
    }

    fn sessions_of(&self, identity: IdentityId) -> StoreResult<Vec<Session>> {
        let st = lock(&self.state)?;
        Ok(st
            .order
            .iter()
            .filter_map(|id| st.sessions.get(id))
            .filter(|s| s.identity == identity)
            .cloned()
            .collect())
    }

    fn for_each_live(&self, now: Timestamp, f: &mut dyn FnMut(Session)) -> StoreResult<()> {
        let st = lock(&self.state)?;
        for id in &st.order {
            if let Some(s) = st.sessions.get(id).filter(|s| s.is_live(now)) {
                f(s.clone());
            }
        }
        Ok(())
    }

    fn suspensions_due(&self, now: Timestamp) -> StoreResult<Vec<Session>> {
        let st = lock(&self.state)?;
        Ok(st
            .order
            .iter()
            .filter_map(|id| st.sessions.get(id))
            .filter(|s| {
                s.is_live(now)
                    && matches!(s.state, SessionState::Suspended { until: Some(u), .. } if u <= now)
            })
            .cloned()
            .collect())
    }

    fn apply(&self, batch: SessionBatch) -> StoreResult<Vec<AuditRecord>> {
        let mut st = lock(&self.state)?;
        if let (Some(new), Some(old)) = (batch.consumed, st.consumed)
            && new <= old
        {
            return Ok(Vec::new());
        }
        // Validate the whole batch first: it applies whole or not at all.
        for (i, session) in batch.inserts.iter().enumerate() {
            let clash = st.sessions.contains_key(&session.id)
                || batch.inserts[..i].iter().any(|s| s.id == session.id);
            if clash {
                return Err(StoreError::Conflict { field: "session", value: session.id.to_string() });
            }
        }
        let known = |st: &SessionsState, id: &SessionId| {
            st.sessions.contains_key(id) || batch.inserts.iter().any(|s| s.id == *id)
        };
        for update in &batch.updates {
            if !known(&st, &update.session) {
                return Err(StoreError::NotFound(format!("session {}", update.session)));
            }
        }
        for (i, token) in batch.tokens.iter().enumerate() {
            if st.tokens.contains_key(&token.hash) || batch.tokens[..i].iter().any(|t| t.hash == token.hash) {
                return Err(StoreError::Conflict { field: "token", value: format!("{:?}", token.hash) });
            }
            if !known(&st, &token.session) {
                return Err(StoreError::NotFound(format!("session {}", token.session)));
            }
        }
        for update in &batch.token_updates {
            if !st.tokens.contains_key(&update.hash) && !batch.tokens.iter().any(|t| t.hash == update.hash) {
                return Err(StoreError::NotFound(format!("token {:?}", update.hash)));
            }
        }
        for session in batch.inserts {
            st.order.push(session.id);
            st.sessions.insert(session.id, session);
        }
        for token in batch.tokens {
            st.token_order.push(token.hash);
            st.tokens.insert(token.hash, token);
        }
        for update in batch.token_updates {
            if let Some(t) = st.tokens.get_mut(&update.hash) {
                if t.retired_at.is_none() {
                    t.retired_at = update.retired_at;
                }
                if let Some(exp) = update.expires_at {
                    t.expires_at = t.expires_at.min(exp);
                }
            }
        }
        if batch.policy.is_some() {
            st.policy = batch.policy;
        }
        for update in batch.updates {
            if let Some(s) = st.sessions.get_mut(&update.session)
                && !s.state.is_revoked()
            {
                s.state = update.state;
                if let Some(exp) = update.expires_at {
                    s.expires_at = exp;
                }
            }
        }
        // After the updates: a session this batch revokes keeps its last use.
        for (id, seen) in batch.last_seen {
            if let Some(s) = st.sessions.get_mut(&id)
                && !s.state.is_revoked()
            {
                s.last_seen = s.last_seen.max(seen);
            }
        }
        if batch.consumed.is_some() {
            st.consumed = batch.consumed;
        }
        st.enqueue(batch.outbox);
        st.status_indexes.extend(batch.status_indexes);
        Ok(st.seal_all(batch.audit))
    }

    fn consumed(&self) -> StoreResult<Option<DirectoryEventId>> {
        Ok(lock(&self.state)?.consumed)
    }

    fn policy(&self) -> StoreResult<Option<String>> {
        Ok(lock(&self.state)?.policy.clone())
    }

    fn audit_after(&self, after: u64, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        Ok(lock(&self.state)?.audit.iter().filter(|r| r.seq > after).take(limit).cloned().collect())
    }

    fn audit_of_events(&self, events: &[DirectoryEventId]) -> StoreResult<Vec<AuditRecord>> {
        Ok(lock(&self.state)?
            .audit
            .iter()
            .filter(|r| r.entry.directory_event.is_some_and(|e| events.contains(&e)))
            .cloned()
            .collect())
    }
}

impl CredentialStore for MemorySessions {
    fn insert_client(&self, client: &ApiClient, audit: AuditEntry) -> StoreResult<()> {
        let mut st = lock(&self.state)?;
        if st.clients.iter().any(|c| c.id == client.id) {
            return Err(StoreError::Conflict { field: "client id", value: client.id.to_string() });
        }
        if st.clients.iter().any(|c| fold(&c.name) == fold(&client.name)) {
            return Err(StoreError::Conflict { field: "name", value: client.name.clone() });
        }
        st.clients.push(client.clone());
        st.seal_all(vec![audit]);
        Ok(())
    }

    fn clients(&self) -> StoreResult<Vec<ApiClient>> {
        Ok(lock(&self.state)?.clients.clone())
    }

    fn admin_token_hash(&self) -> StoreResult<Option<TokenHash>> {
        Ok(lock(&self.state)?.admin)
    }

    fn set_admin_token_hash(&self, hash: TokenHash) -> StoreResult<()> {
        lock(&self.state)?.admin = Some(hash);
        Ok(())
    }
}

impl SignalStore for MemorySessions {
    fn streams(&self) -> StoreResult<Vec<Stream>> {
        Ok(lock(&self.state)?.streams.values().cloned().collect())
    }
    fn put_stream(&self, stream: &Stream) -> StoreResult<()> {
        let mut st = lock(&self.state)?;
        let last = st.last_seq();
        st.cursors.entry(stream.id).or_insert(last);
        st.streams.insert(stream.id, stream.clone());
        Ok(())
    }
    fn delete_stream(&self, id: StreamId) -> StoreResult<bool> {
        let mut st = lock(&self.state)?;
        st.cursors.remove(&id);
        Ok(st.streams.remove(&id).is_some())
    }
    fn queue(&self, outgoing: Vec<Outgoing>) -> StoreResult<()> {
        lock(&self.state)?.enqueue(outgoing);
        Ok(())
    }
    fn pending(&self, stream: StreamId, now: Timestamp, limit: usize) -> StoreResult<Vec<Queued>> {
        let st = lock(&self.state)?;
        Ok(st
            .pending_of(stream)
            .take(limit)
            .map(|(r, k)| (r, k, st.deliveries.get(&(stream, r.seq)).cloned().unwrap_or_default()))
            .take_while(|(_, _, d)| d.next <= now)
            .map(|(r, k, d)| Queued {
                seq: r.seq,
                outgoing: lockstep_domain::Addressed {
                    stream,
                    jti: r.outgoing.jti(k),
                    signal: r.outgoing.signal.clone(),
                },
                attempts: d.attempts,
            })
            .collect())
    }
    fn pending_count(&self, stream: StreamId) -> StoreResult<usize> {
        Ok(lock(&self.state)?.pending_of(stream).count())
    }
    fn delivered(&self, stream: StreamId, jtis: &[String], at: Timestamp) -> StoreResult<usize> {
        let mut st = lock(&self.state)?;
        let mut n = 0;
        for jti in jtis {
            if let Some(seq) = st.pending_seq(stream, jti) {
                let d = st.deliveries.entry((stream, seq)).or_default();
                d.delivered = Some(at);
                d.error = None;
                n += 1;
            }
        }
        Ok(n)
    }
    fn retry_later(&self, stream: StreamId, jti: &str, next: Timestamp, error: &str) -> StoreResult<()> {
        let mut st = lock(&self.state)?;
        if let Some(seq) = st.pending_seq(stream, jti) {
            let d = st.deliveries.entry((stream, seq)).or_default();
            d.attempts += 1;
            d.next = next;
            d.error = Some(error.to_owned());
        }
        Ok(())
    }
    fn drop_pending(&self, stream: StreamId) -> StoreResult<usize> {
        let mut st = lock(&self.state)?;
        let n = st.pending_of(stream).count();
        let last = st.last_seq();
        if let Some(c) = st.cursors.get_mut(&stream) {
            *c = last;
        }
        Ok(n)
    }
    fn remember_received(&self, source: &str, jti: &str, _at: Timestamp) -> StoreResult<bool> {
        Ok(lock(&self.state)?.received.insert((source.to_owned(), jti.to_owned())))
    }
    fn received(&self, source: &str, jti: &str) -> StoreResult<bool> {
        Ok(lock(&self.state)?.received.contains(&(source.to_owned(), jti.to_owned())))
    }
    fn signals_of(&self, txn: &str) -> StoreResult<Vec<SignalRecord>> {
        let st = lock(&self.state)?;
        let mut out = Vec::new();
        for r in st.outbox.iter().filter(|r| r.outgoing.signal.txn == txn) {
            for (k, stream) in r.outgoing.streams.iter().enumerate() {
                let d = st.deliveries.get(&(*stream, r.seq)).cloned().unwrap_or_default();
                // Undelivered and settled: dropped, or its stream deleted.
                let settled = st.cursors.get(stream).is_none_or(|c| r.seq <= *c);
                if d.delivered.is_none() && settled {
                    continue;
                }
                out.push(SignalRecord {
                    stream: *stream,
                    jti: r.outgoing.jti(k),
                    kind: r.outgoing.signal.kind,
                    delivered_at: d.delivered,
                    attempts: d.attempts,
                    error: d.error,
                });
            }
        }
        Ok(out)
    }
}
