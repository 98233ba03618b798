//! The RFC 4533 (syncrepl) state machine, pure: the session feeds it the
//! messages of its searches (one for users, optionally one for groups) and
//! takes batches out of it; it never touches the network.
//!
//! Semantics (RFC 4533 and what slapd does):
//! - `Add`/`Modify` ⇒ upsert the full entry (slapd reports modifies as Add);
//!   `Delete` ⇒ removal by UUID; `Present` ⇒ seen.
//! - `syncIdSet` with `refreshDeletes` ⇒ removals, without ⇒ seen.
//! - The end of a present phase (or a refresh without a cookie, which is
//!   all Adds) makes the refresh the whole truth for that search:
//!   everything neither present nor added is gone.
//! - The refresh of all searches is handed over as ONE batch with the
//!   combined cookie; after it every change is its own (small) batch.
//! - `e-syncRefreshRequired` (4096) ⇒ the caller drops the cookie and
//!   refreshes from scratch.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use lockstep_engine::sources::{Removals, SourceRecord, SourceUpdate};

use crate::ber::{EntryState, RawEntry, SyncDoneValue, SyncInfo, SyncStateValue, encode_sync_cursor};
use crate::map::{DnIndex, Mapping, Skip, map_group, map_user, normalize_dn, uuid_text};

/// LDAP result code `e-syncRefreshRequired`.
pub const E_SYNC_REFRESH_REQUIRED: u32 = 4096;
/// LDAP result code `unwillingToPerform`.
const UNWILLING_TO_PERFORM: u32 = 53;

/// What a search returns: users or groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The user search (`base_dn`, `user_filter`).
    Users,
    /// The group search (`group_base_dn`, `group_filter`).
    Groups,
}

/// One message of a syncrepl search, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncMsg {
    /// A SearchResultEntry with its Sync State control.
    Entry {
        /// The control.
        state: SyncStateValue,
        /// The entry (no attributes for Present and Delete).
        entry: RawEntry,
    },
    /// A Sync Info intermediate message.
    Info(SyncInfo),
    /// The SearchResultDone: in refreshAndPersist only on an error or when
    /// the server ends the search.
    Done {
        /// Result code.
        rc: u32,
        /// Diagnostic text.
        text: String,
        /// The Sync Done control, if any.
        done: Option<SyncDoneValue>,
    },
}

/// What the caller should do after feeding a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to hand over yet (inside the refresh).
    Pending,
    /// Every search finished its refresh: take the refresh batch now.
    RefreshDone,
    /// A persist-phase change is pending: take a batch (soon).
    Change,
}

/// The sync cannot continue on this session.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// rc 4096: the cookie is too old; refresh from scratch.
    #[error("server requires a full refresh (e-syncRefreshRequired)")]
    RefreshRequired,
    /// The server ended the search.
    #[error("server ended the sync search: rc={rc} {text}")]
    Ended {
        /// Result code.
        rc: u32,
        /// Diagnostic text.
        text: String,
    },
    /// A Sync State control whose UUID is not 16 bytes.
    #[error("syncState carries a malformed entryUUID ({0} bytes)")]
    BadUuid(usize),
}

#[derive(Clone, Debug)]
struct Stream {
    kind: Kind,
    cookie: Option<Vec<u8>>,
    /// The refresh is the whole truth for this search (no start cookie, or
    /// a present phase ended).
    whole: bool,
    present: BTreeSet<String>,
    refresh_done: bool,
    started_with_cookie: bool,
}

/// Entries and removals ready to hand over (before the disabled check and
/// mapping, which the session does with [`build_update`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// User entries by key.
    pub users: BTreeMap<String, RawEntry>,
    /// Group entries by key.
    pub groups: BTreeMap<String, RawEntry>,
    /// What was removed.
    pub removals: Removals,
    /// The combined cookie to commit with the batch (`None`: unchanged).
    pub cursor: Option<Vec<u8>>,
    /// Whether this is the refresh batch.
    pub refresh: bool,
}

/// Keys deleted since the last batch, in the order the server sent them:
/// the engine's circuit breaker holds deletions past its threshold in the
/// order a batch lists them, so a batch must list them as they happened.
#[derive(Debug, Default)]
struct Deleted {
    order: Vec<String>,
    set: std::collections::HashSet<String>,
}

impl Deleted {
    fn contains(&self, key: &str) -> bool {
        self.set.contains(key)
    }

    fn insert(&mut self, key: String) {
        if self.set.insert(key.clone()) {
            self.order.push(key);
        }
    }

    /// A key added again after its deletion (rare: the order is scanned).
    fn remove(&mut self, key: &str) {
        if self.set.remove(key) {
            self.order.retain(|k| k != key);
        }
    }

    fn into_keys(self) -> Vec<String> {
        self.order
    }
}

/// The syncrepl state of one session.
#[derive(Debug)]
pub struct SyncMachine {
    streams: Vec<Stream>,
    index: DnIndex,
    users: BTreeMap<String, RawEntry>,
    groups: BTreeMap<String, RawEntry>,
    deleted: Deleted,
    cursor_dirty: bool,
    live: bool,
    /// The last full entry of every group with its normalised member DNs:
    /// slapd's memberof refint drops a deleted user from its groups with an
    /// internal modify that syncprov never reports, so the machine re-emits
    /// the affected groups itself (the deleted DN no longer resolves).
    group_entries: HashMap<String, (RawEntry, BTreeSet<String>)>,
    member_attr: String,
}

impl SyncMachine {
    /// A machine for searches of `kinds`, starting from their cookies
    /// (`None`: from scratch), with an index of what exists now.
    pub fn new(streams: &[(Kind, Option<Vec<u8>>)], index: DnIndex) -> Self {
        Self::with_groups(streams, index, "member", Vec::new())
    }

    /// [`SyncMachine::new`] with the groups' current entries (keyed), so a
    /// user deletion can refresh the groups that listed the user.
    pub fn with_groups(
        streams: &[(Kind, Option<Vec<u8>>)],
        index: DnIndex,
        member_attr: &str,
        groups: Vec<(String, RawEntry)>,
    ) -> Self {
        let mut m = Self {
            streams: streams
                .iter()
                .map(|(kind, cookie)| Stream {
                    kind: *kind,
                    whole: cookie.is_none(),
                    started_with_cookie: cookie.is_some(),
                    cookie: cookie.clone(),
                    present: BTreeSet::new(),
                    refresh_done: false,
                })
                .collect(),
            index,
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            deleted: Deleted::default(),
            cursor_dirty: false,
            live: false,
            group_entries: HashMap::new(),
            member_attr: member_attr.to_owned(),
        };
        for (k, e) in groups {
            m.remember_group(k, &e);
        }
        m
    }

    fn remember_group(&mut self, key: String, entry: &RawEntry) {
        let members = entry.texts(&self.member_attr).iter().map(|d| normalize_dn(d)).collect();
        self.group_entries.insert(key, (entry.clone(), members));
    }

    /// The DN index (for resolving group members).
    pub fn index(&self) -> &DnIndex {
        &self.index
    }

    /// Whether the refresh batch has been taken (persist phase).
    pub fn is_live(&self) -> bool {
        self.live
    }

    fn set_cookie(&mut self, s: usize, cookie: Option<Vec<u8>>) {
        if let (Some(c), Some(st)) = (cookie, self.streams.get_mut(s)) {
            st.cookie = Some(c);
            self.cursor_dirty = true;
        }
    }

    fn delete(&mut self, key: String) {
        if let Some(dn) = self.index.user_dn(&key).map(str::to_owned) {
            for (gk, (entry, members)) in &mut self.group_entries {
                if members.remove(&dn) && !self.deleted.contains(gk) {
                    self.groups.entry(gk.clone()).or_insert_with(|| entry.clone());
                }
            }
        }
        self.group_entries.remove(&key);
        self.index.remove(&key);
        self.users.remove(&key);
        self.groups.remove(&key);
        for st in &mut self.streams {
            st.present.remove(&key);
        }
        self.deleted.insert(key);
    }

    fn after(&self) -> Step {
        if self.live {
            Step::Change
        } else if self.streams.iter().all(|s| s.refresh_done) {
            Step::RefreshDone
        } else {
            Step::Pending
        }
    }

    /// Feeds one message of search `s`.
    pub fn feed(&mut self, s: usize, msg: SyncMsg) -> Result<Step, SyncError> {
        let Some(kind) = self.streams.get(s).map(|st| st.kind) else {
            return Ok(Step::Pending);
        };
        let in_refresh = self.streams.get(s).is_some_and(|st| !st.refresh_done);
        match msg {
            SyncMsg::Entry { state, entry } => {
                let key = uuid_text(&state.uuid).ok_or(SyncError::BadUuid(state.uuid.len()))?;
                self.set_cookie(s, state.cookie);
                match state.state {
                    EntryState::Present => {
                        if in_refresh && let Some(st) = self.streams.get_mut(s) {
                            st.present.insert(key);
                        }
                        // Present has no meaning in the persist phase: never
                        // a batch of its own (a cookie it carried rides along
                        // with the next change).
                        return Ok(if self.live { Step::Pending } else { self.after() });
                    }
                    EntryState::Add | EntryState::Modify => {
                        self.deleted.remove(&key);
                        match kind {
                            Kind::Users => {
                                self.index.insert_user(&key, &entry.dn);
                                self.users.insert(key, entry);
                            }
                            Kind::Groups => {
                                self.index.insert_group(&key);
                                self.remember_group(key.clone(), &entry);
                                self.groups.insert(key, entry);
                            }
                        }
                    }
                    EntryState::Delete => self.delete(key),
                }
            }
            SyncMsg::Info(info) => match info {
                SyncInfo::NewCookie(c) => self.set_cookie(s, Some(c)),
                SyncInfo::RefreshDelete { cookie, refresh_done } => {
                    self.set_cookie(s, cookie);
                    if let Some(st) = self.streams.get_mut(s) {
                        st.refresh_done |= refresh_done;
                    }
                }
                SyncInfo::RefreshPresent { cookie, refresh_done } => {
                    self.set_cookie(s, cookie);
                    if let Some(st) = self.streams.get_mut(s) {
                        if !st.refresh_done {
                            st.whole = true;
                        }
                        st.refresh_done |= refresh_done;
                    }
                }
                SyncInfo::SyncIdSet { cookie, refresh_deletes, uuids } => {
                    self.set_cookie(s, cookie);
                    for u in uuids {
                        let key = uuid_text(&u).ok_or(SyncError::BadUuid(u.len()))?;
                        if refresh_deletes {
                            self.delete(key);
                        } else if in_refresh && let Some(st) = self.streams.get_mut(s) {
                            st.present.insert(key);
                        }
                    }
                }
            },
            SyncMsg::Done { rc, text, .. } => {
                // slapd answers a cookie newer than its own state (the
                // provider restored, or killed before its contextCSN
                // checkpoint) with unwillingToPerform: the cookie is useless,
                // so reload like for e-syncRefreshRequired.
                let stale_cookie = rc == UNWILLING_TO_PERFORM
                    && in_refresh
                    && self.streams.get(s).is_some_and(|st| st.started_with_cookie);
                return Err(if rc == E_SYNC_REFRESH_REQUIRED || stale_cookie {
                    SyncError::RefreshRequired
                } else {
                    SyncError::Ended { rc, text }
                });
            }
        }
        Ok(self.after())
    }

    /// The combined cursor of every search's current cookie.
    pub fn cursor(&self) -> Vec<u8> {
        encode_sync_cursor(&self.streams.iter().map(|s| s.cookie.clone()).collect::<Vec<_>>())
    }

    /// Takes what is pending. The first call after [`Step::RefreshDone`]
    /// yields the refresh batch (with `Removals::AllExcept` when some
    /// search's refresh was the whole truth) and switches to persist.
    pub fn take_batch(&mut self) -> Batch {
        let users = std::mem::take(&mut self.users);
        let groups = std::mem::take(&mut self.groups);
        let deleted = std::mem::take(&mut self.deleted).into_keys();
        let refresh = !self.live;
        let removals = if refresh && self.streams.iter().any(|s| s.whole) {
            let mut present = BTreeSet::new();
            for st in &mut self.streams {
                let st_present = std::mem::take(&mut st.present);
                if st.whole {
                    // Whatever the index knew of this kind and the refresh
                    // neither saw nor added is gone: forget it too.
                    let stale: Vec<String> = match st.kind {
                        Kind::Users => self
                            .index
                            .user_keys()
                            .filter(|k| !st_present.contains(*k) && !users.contains_key(*k))
                            .cloned()
                            .collect(),
                        Kind::Groups => self
                            .index
                            .group_keys()
                            .filter(|k| !st_present.contains(*k) && !groups.contains_key(*k))
                            .cloned()
                            .collect(),
                    };
                    for k in stale {
                        self.index.remove(&k);
                    }
                    present.extend(st_present);
                } else {
                    // This search reported only changes: everything of its
                    // kind the index still knows is there.
                    match st.kind {
                        Kind::Users => present.extend(self.index.user_keys().cloned()),
                        Kind::Groups => present.extend(self.index.group_keys().cloned()),
                    }
                }
            }
            for k in users.keys().chain(groups.keys()).chain(deleted.iter()) {
                present.remove(k);
            }
            Removals::AllExcept { present }
        } else {
            for st in &mut self.streams {
                st.present.clear();
            }
            Removals::Keys(deleted)
        };
        let cursor = if refresh || self.cursor_dirty { Some(self.cursor()) } else { None };
        self.cursor_dirty = false;
        if refresh {
            self.live = true;
        }
        Batch { users, groups, removals, cursor, refresh }
    }
}

/// Maps a batch into the update to hand over. `disabled` holds the keys of
/// users that match the configured disabled filter. Entries that do not
/// map are returned with why (the caller logs and counts them).
pub fn build_update(
    batch: Batch,
    disabled: &BTreeSet<String>,
    mapping: &Mapping,
    index: &DnIndex,
) -> (SourceUpdate, Vec<(String, Skip)>) {
    let (upserts, skipped) = map_records(batch.users, batch.groups, disabled, mapping, index);
    let update = SourceUpdate { upserts, removals: batch.removals, cursor: batch.cursor, complete: true };
    (update, skipped)
}

/// Maps user and group entries (keyed) into records, users first.
pub fn map_records(
    users: BTreeMap<String, RawEntry>,
    groups: BTreeMap<String, RawEntry>,
    disabled: &BTreeSet<String>,
    mapping: &Mapping,
    index: &DnIndex,
) -> (Vec<SourceRecord>, Vec<(String, Skip)>) {
    let mut upserts = Vec::with_capacity(users.len() + groups.len());
    let mut skipped = Vec::new();
    for (key, e) in users {
        let off = disabled.contains(&key);
        match map_user(&e, key, mapping, off) {
            Ok(u) => upserts.push(SourceRecord::User(u)),
            Err(why) => skipped.push((e.dn, why)),
        }
    }
    for (key, e) in groups {
        match map_group(&e, key, mapping, index) {
            Ok(g) => upserts.push(SourceRecord::Group(g)),
            Err(why) => skipped.push((e.dn, why)),
        }
    }
    (upserts, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ber::decode_sync_cursor;

    fn uuid(n: u8) -> Vec<u8> {
        vec![n; 16]
    }
    fn key(n: u8) -> String {
        uuid_text(&uuid(n)).unwrap()
    }
    fn user(dn: &str, uid: &str) -> RawEntry {
        let mut e = RawEntry { dn: dn.into(), ..Default::default() };
        e.attrs.insert("uid".into(), vec![uid.as_bytes().to_vec()]);
        e
    }
    fn group(dn: &str, members: &[&str]) -> RawEntry {
        let mut e = RawEntry { dn: dn.into(), ..Default::default() };
        e.attrs.insert("cn".into(), vec![b"eng".to_vec()]);
        e.attrs.insert("member".into(), members.iter().map(|m| m.as_bytes().to_vec()).collect());
        e
    }
    fn ent(state: EntryState, n: u8, cookie: Option<&str>, entry: RawEntry) -> SyncMsg {
        SyncMsg::Entry {
            state: SyncStateValue { state, uuid: uuid(n), cookie: cookie.map(|c| c.as_bytes().to_vec()) },
            entry,
        }
    }
    fn bare(n: u8) -> RawEntry {
        RawEntry { dn: format!("uid=x{n},ou=people,dc=x"), ..Default::default() }
    }
    fn build(m: &mut SyncMachine) -> SourceUpdate {
        let b = m.take_batch();
        let idx = m.index().clone();
        build_update(b, &BTreeSet::new(), &Mapping::openldap(), &idx).0
    }

    #[test]
    fn refresh_without_cookie_is_a_snapshot_then_persist_deltas() {
        let mut m = SyncMachine::new(&[(Kind::Users, None), (Kind::Groups, None)], DnIndex::default());
        // The group arrives before its member: resolved at batch time.
        assert_eq!(
            m.feed(
                1,
                ent(EntryState::Add, 9, None, group("cn=eng,ou=groups,dc=x", &["uid=alice,ou=people,dc=x"]))
            )
            .unwrap(),
            Step::Pending
        );
        assert_eq!(
            m.feed(0, ent(EntryState::Add, 1, None, user("uid=alice,ou=people,dc=x", "alice"))).unwrap(),
            Step::Pending
        );
        let done = |c: &str| {
            SyncMsg::Info(SyncInfo::RefreshDelete { cookie: Some(c.as_bytes().to_vec()), refresh_done: true })
        };
        assert_eq!(m.feed(0, done("u1")).unwrap(), Step::Pending);
        assert_eq!(m.feed(1, done("g1")).unwrap(), Step::RefreshDone);
        let up = build(&mut m);
        assert_eq!(up.removals, Removals::AllExcept { present: BTreeSet::new() });
        assert!(up.complete);
        assert_eq!(
            decode_sync_cursor(up.cursor.as_deref().unwrap()).unwrap(),
            vec![Some(b"u1".to_vec()), Some(b"g1".to_vec())]
        );
        assert_eq!(up.upserts.len(), 2);
        match &up.upserts[1] {
            SourceRecord::Group(g) => assert_eq!(g.member_keys, BTreeSet::from([key(1)])),
            other => panic!("{other:?}"),
        }
        assert!(m.is_live());

        // Persist: an add with a cookie is one delta with that cookie.
        assert_eq!(
            m.feed(0, ent(EntryState::Add, 2, Some("u2"), user("uid=bob,ou=people,dc=x", "bob"))).unwrap(),
            Step::Change
        );
        let up = build(&mut m);
        assert_eq!(up.removals, Removals::Keys(vec![]));
        assert_eq!(up.upserts.len(), 1);
        assert_eq!(
            decode_sync_cursor(up.cursor.as_deref().unwrap()).unwrap(),
            vec![Some(b"u2".to_vec()), Some(b"g1".to_vec())]
        );
        // Persist delete (as a syncIdSet, like slapd's sessionlog).
        let del = SyncMsg::Info(SyncInfo::SyncIdSet {
            cookie: Some(b"u3".to_vec()),
            refresh_deletes: true,
            uuids: vec![uuid(2)],
        });
        assert_eq!(m.feed(0, del).unwrap(), Step::Change);
        let up = build(&mut m);
        assert_eq!(up.removals, Removals::Keys(vec![key(2)]));
        assert!(up.upserts.is_empty());
        // The deleted user no longer resolves as a member.
        m.feed(
            1,
            ent(
                EntryState::Add,
                9,
                None,
                group("cn=eng,ou=groups,dc=x", &["uid=bob,ou=people,dc=x", "uid=alice,ou=people,dc=x"]),
            ),
        )
        .unwrap();
        let up = build(&mut m);
        assert_eq!(up.cursor, None, "no cookie came with it");
        match &up.upserts[0] {
            SourceRecord::Group(g) => assert_eq!(g.member_keys, BTreeSet::from([key(1)])),
            other => panic!("{other:?}"),
        }
        // A lone new cookie is an empty delta carrying it.
        assert_eq!(m.feed(1, SyncMsg::Info(SyncInfo::NewCookie(b"g2".to_vec()))).unwrap(), Step::Change);
        let up = build(&mut m);
        assert!(up.upserts.is_empty());
        assert!(up.cursor.is_some());
    }

    #[test]
    fn refresh_from_cookie_with_present_phase_removes_the_unseen() {
        let mut idx = DnIndex::default();
        idx.insert_user(&key(1), "uid=x1,ou=people,dc=x");
        idx.insert_user(&key(2), "uid=x2,ou=people,dc=x");
        idx.insert_group(&key(9));
        let mut m = SyncMachine::new(
            &[(Kind::Users, Some(b"old".to_vec())), (Kind::Groups, Some(b"oldg".to_vec()))],
            idx,
        );
        m.feed(0, ent(EntryState::Present, 1, None, bare(1))).unwrap();
        m.feed(0, ent(EntryState::Add, 3, None, user("uid=x3,ou=people,dc=x", "x3"))).unwrap();
        m.feed(
            0,
            SyncMsg::Info(SyncInfo::RefreshPresent { cookie: Some(b"u".to_vec()), refresh_done: true }),
        )
        .unwrap();
        // Groups: a delete phase with nothing changed.
        let step =
            m.feed(1, SyncMsg::Info(SyncInfo::RefreshDelete { cookie: None, refresh_done: true })).unwrap();
        assert_eq!(step, Step::RefreshDone);
        let up = build(&mut m);
        // user 2 unseen ⇒ not present; group 9 kept because its search was a delta.
        assert_eq!(up.removals, Removals::AllExcept { present: BTreeSet::from([key(1), key(9)]) });
        assert_eq!(up.upserts.len(), 1);
        assert!(!m.index().is_user(&key(2)));
    }

    #[test]
    fn refresh_from_cookie_with_deletes_only_is_a_delta() {
        let mut m = SyncMachine::new(&[(Kind::Users, Some(b"old".to_vec()))], DnIndex::default());
        m.feed(0, ent(EntryState::Delete, 4, None, bare(4))).unwrap();
        m.feed(
            0,
            SyncMsg::Info(SyncInfo::SyncIdSet { cookie: None, refresh_deletes: true, uuids: vec![uuid(5)] }),
        )
        .unwrap();
        let step = m
            .feed(
                0,
                SyncMsg::Info(SyncInfo::RefreshDelete { cookie: Some(b"n".to_vec()), refresh_done: true }),
            )
            .unwrap();
        assert_eq!(step, Step::RefreshDone);
        let up = build(&mut m);
        assert_eq!(up.removals, Removals::Keys(vec![key(4), key(5)]));
        assert_eq!(decode_sync_cursor(up.cursor.as_deref().unwrap()).unwrap(), vec![Some(b"n".to_vec())]);
    }

    /// Deletions are listed as the server sent them, not sorted by key:
    /// the engine's breaker holds the later ones of a batch.
    #[test]
    fn deletions_keep_the_order_they_arrived_in() {
        let mut m = SyncMachine::new(&[(Kind::Users, Some(b"old".to_vec()))], DnIndex::default());
        for n in [9, 3, 7] {
            m.feed(0, ent(EntryState::Delete, n, None, bare(n))).unwrap();
        }
        m.feed(0, SyncMsg::Info(SyncInfo::RefreshDelete { cookie: Some(b"n".to_vec()), refresh_done: true }))
            .unwrap();
        assert_eq!(build(&mut m).removals, Removals::Keys(vec![key(9), key(3), key(7)]));
    }

    #[test]
    fn present_idset_counts_as_seen_and_add_then_delete_cancels() {
        let mut m = SyncMachine::new(&[(Kind::Users, Some(b"c".to_vec()))], DnIndex::default());
        m.feed(
            0,
            SyncMsg::Info(SyncInfo::SyncIdSet {
                cookie: None,
                refresh_deletes: false,
                uuids: vec![uuid(1), uuid(2)],
            }),
        )
        .unwrap();
        m.feed(0, ent(EntryState::Add, 3, None, user("uid=x3,dc=x", "x3"))).unwrap();
        m.feed(0, ent(EntryState::Delete, 3, None, bare(3))).unwrap();
        m.feed(0, SyncMsg::Info(SyncInfo::RefreshPresent { cookie: None, refresh_done: false })).unwrap();
        assert_eq!(
            m.feed(0, SyncMsg::Info(SyncInfo::RefreshDelete { cookie: None, refresh_done: true })).unwrap(),
            Step::RefreshDone
        );
        let up = build(&mut m);
        assert!(up.upserts.is_empty());
        assert_eq!(up.removals, Removals::AllExcept { present: BTreeSet::from([key(1), key(2)]) });
    }

    #[test]
    fn refresh_required_and_server_end_are_errors() {
        let mut m = SyncMachine::new(&[(Kind::Users, Some(b"c".to_vec()))], DnIndex::default());
        let done = |rc| SyncMsg::Done { rc, text: "x".into(), done: None };
        assert_eq!(m.feed(0, done(4096)), Err(SyncError::RefreshRequired));
        assert!(matches!(m.feed(0, done(0)), Err(SyncError::Ended { rc: 0, .. })));
        // slapd's "consumer state is newer than provider!" during a refresh
        // from a cookie means the cookie is useless: reload.
        assert_eq!(m.feed(0, done(53)), Err(SyncError::RefreshRequired));
        let mut fresh = SyncMachine::new(&[(Kind::Users, None)], DnIndex::default());
        assert!(matches!(fresh.feed(0, done(53)), Err(SyncError::Ended { rc: 53, .. })));
        let bad = SyncMsg::Entry {
            state: SyncStateValue { state: EntryState::Add, uuid: vec![1, 2], cookie: None },
            entry: bare(1),
        };
        assert_eq!(m.feed(0, bad), Err(SyncError::BadUuid(2)));
    }

    #[test]
    fn deleting_a_user_re_emits_the_groups_that_listed_it() {
        let mut idx = DnIndex::default();
        idx.insert_user(&key(1), "uid=a,ou=people,dc=x");
        idx.insert_user(&key(2), "uid=b,ou=people,dc=x");
        idx.insert_group(&key(9));
        let eng = group("cn=eng,ou=groups,dc=x", &["uid=a,ou=people,dc=x", "UID=b, ou=people,dc=x"]);
        let mut m = SyncMachine::with_groups(
            &[(Kind::Users, Some(b"c".to_vec())), (Kind::Groups, Some(b"g".to_vec()))],
            idx,
            "member",
            vec![(key(9), eng), (key(8), group("cn=other,ou=groups,dc=x", &["uid=a,ou=people,dc=x"]))],
        );
        m.feed(0, SyncMsg::Info(SyncInfo::RefreshDelete { cookie: None, refresh_done: true })).unwrap();
        m.feed(1, SyncMsg::Info(SyncInfo::RefreshDelete { cookie: None, refresh_done: true })).unwrap();
        let _ = m.take_batch();
        let step = m
            .feed(
                0,
                SyncMsg::Info(SyncInfo::SyncIdSet {
                    cookie: None,
                    refresh_deletes: true,
                    uuids: vec![uuid(2)],
                }),
            )
            .unwrap();
        assert_eq!(step, Step::Change);
        let up = build(&mut m);
        assert_eq!(up.removals, Removals::Keys(vec![key(2)]));
        match &up.upserts[..] {
            [SourceRecord::Group(g)] => {
                assert_eq!(g.key, key(9));
                assert_eq!(g.member_keys, BTreeSet::from([key(1)]));
            }
            other => panic!("only the group that listed b: {other:?}"),
        }
    }

    #[test]
    fn disabled_keys_and_skips() {
        let mut m = SyncMachine::new(&[(Kind::Users, None)], DnIndex::default());
        m.feed(0, ent(EntryState::Add, 1, None, user("uid=a,dc=x", "a"))).unwrap();
        m.feed(0, ent(EntryState::Add, 2, None, bare(2))).unwrap();
        m.feed(0, SyncMsg::Info(SyncInfo::RefreshPresent { cookie: None, refresh_done: true })).unwrap();
        let b = m.take_batch();
        let idx = m.index().clone();
        let (up, skipped) = build_update(b, &BTreeSet::from([key(1)]), &Mapping::openldap(), &idx);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].1, Skip::MissingUserName("uid".into()));
        match &up.upserts[..] {
            [SourceRecord::User(u)] => assert!(!u.active),
            other => panic!("{other:?}"),
        }
    }
}
