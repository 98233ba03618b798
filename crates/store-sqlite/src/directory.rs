//! `directory.db`: identities and the directory event log.

use std::path::Path;

use lockstep_domain::{
    ClientId, DirectoryEvent, DirectoryEventId, Group, GroupId, Identity, IdentityId, IdentityKind,
    IdentityStatus, Origin, RiskTier, SourceId, Subject, Tiers, Timestamp,
};
use lockstep_store::{
    Committed, CommittedGroup, DirectoryRead, DirectoryStore, GroupPage, GroupQuery, GroupWrite,
    IdentityPage, IdentityQuery, IdentityWrite, NewEvent, SourceState, StoreError, StoreResult,
    UserWithGroups, cause_positions, write_events,
};
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};

use crate::conn::{Cached, Durability, Pool, Schema, Tuning, Upgrade, backend, lock};
use crate::keys::{SearchKeys, write_due_grams};
use crate::search::compile;
use lockstep_store::codec::{
    corrupt, decode_change, decode_ids, decode_list, encode_change, encode_ids, encode_list, parse,
    seq_to_sql,
};

const SCHEMA: &str = "
-- `seq` is the rowid without AUTOINCREMENT: identity rows are never
-- deleted (a deletion keeps a tombstone), so SQLite's max + 1 never reuses
-- one, and AUTOINCREMENT would write its `sqlite_sequence` page in every
-- commit that creates an identity. (Files created before version 5 keep
-- their AUTOINCREMENT; the two behave the same here.)
CREATE TABLE IF NOT EXISTS identities (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    user_name    TEXT NOT NULL,
    user_name_lc TEXT NOT NULL,
    external_id  TEXT,
    -- The source that owns the row ('scim' or a configured source).
    source       TEXT NOT NULL DEFAULT 'scim',
    display_name TEXT,
    display_name_lc TEXT,
    emails       TEXT NOT NULL DEFAULT '',
    kind         TEXT NOT NULL,
    -- Owner ids, space-separated (the reverse index is identity_owners).
    owners       TEXT NOT NULL DEFAULT '',
    risk_tier    TEXT,
    status       TEXT NOT NULL,
    -- 1 unless deprovisioned. Its own column so that the partial indexes
    -- on live (or deleted) names are not rewritten by every status change.
    live         INTEGER NOT NULL,
    profile      TEXT NOT NULL,
    version      INTEGER NOT NULL,
    created      INTEGER NOT NULL,
    modified     INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS identities_live_user_name
    ON identities (user_name_lc) WHERE live = 1;
-- Tombstones by name (is a userName one that was deleted?); live names are
-- in the unique index above, so no index holds every row's name twice.
CREATE INDEX IF NOT EXISTS identities_deleted_user_name
    ON identities (user_name_lc) WHERE live = 0;
-- Partial (here and below): most creates carry no externalId or no
-- displayName, and an index that holds NULLs gets a page written for each
-- of them; every comparison implies NOT NULL, so the filters still use it.
CREATE INDEX IF NOT EXISTS identities_external_id ON identities (external_id) WHERE external_id IS NOT NULL;
-- What a non-SCIM source owns, by its key (a reconcile reads it whole).
CREATE INDEX IF NOT EXISTS identities_source ON identities (source, external_id) WHERE source <> 'scim';
CREATE INDEX IF NOT EXISTS identities_display_name
    ON identities (display_name_lc) WHERE display_name_lc IS NOT NULL;
-- Partial: a deactivated identity is the exception; `active eq false` (who
-- lost access) stays indexed without every active write touching it.
CREATE INDEX IF NOT EXISTS identities_inactive ON identities (status) WHERE status <> 'active';
-- One row per distinct address, keyed by the identity's seq.
CREATE TABLE IF NOT EXISTS identity_emails (
    identity INTEGER NOT NULL,
    value_lc TEXT NOT NULL,
    PRIMARY KEY (identity, value_lc)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS identity_emails_value ON identity_emails (value_lc);
-- Trigrams of the searchable text (rowid = seq * 4 + slot: 0 userName,
-- 1 displayName, 2 externalId, 3 e-mails joined by newlines) for `co` and
-- `ew`. Contentless: the text itself stays in `identities`.
CREATE VIRTUAL TABLE IF NOT EXISTS identity_grams
    USING fts5(text, tokenize = 'trigram case_sensitive 1', content = '', contentless_delete = 1, detail = none);
-- Identities whose trigram rows are not current. FTS5 writes a segment of
-- its index (and merges segments) at every commit that changed it: a
-- quarter of the directory writer's time when each batch of creates did.
-- So a write lists its identity here (in its own transaction), and the
-- trigram rows of every listed identity are rewritten in one go once
-- `DUE_GRAMS` are listed; a search takes every listed identity as a
-- candidate, so it sees every committed write. `indexed`: which slots the
-- identity has rows in (bit per slot), to delete them then.
CREATE TABLE IF NOT EXISTS identity_grams_due (
    seq     INTEGER PRIMARY KEY,
    indexed INTEGER NOT NULL
);
-- Partial: most identities are human and own nothing, so writes to them
-- never touch these; filters on a non-human kind stay indexed.
CREATE INDEX IF NOT EXISTS identities_kind ON identities (kind) WHERE kind <> 'human';
-- Who owns what: an owner's deactivation fans out to what it owns inside
-- its own write, so this is read on the write path.
CREATE TABLE IF NOT EXISTS identity_owners (
    owner    TEXT NOT NULL,
    identity TEXT NOT NULL,
    PRIMARY KEY (owner, identity)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS groups (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    display_name    TEXT NOT NULL,
    display_name_lc TEXT NOT NULL,
    external_id     TEXT,
    source          TEXT NOT NULL DEFAULT 'scim',
    version         INTEGER NOT NULL,
    created         INTEGER NOT NULL,
    modified        INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS groups_display_name ON groups (display_name_lc);
CREATE INDEX IF NOT EXISTS groups_external_id ON groups (external_id) WHERE external_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS groups_source ON groups (source, external_id) WHERE source <> 'scim';
-- Each non-SCIM source's position (syncrepl cookie, uSNChanged mark), the
-- last moment it was known complete, and what its circuit breaker holds:
-- written in the transaction of the update it follows.
CREATE TABLE IF NOT EXISTS source_state (
    source      TEXT PRIMARY KEY,
    cursor      BLOB,
    complete_at INTEGER,
    held        TEXT,
    updated     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE VIRTUAL TABLE IF NOT EXISTS group_grams
    USING fts5(text, tokenize = 'trigram case_sensitive 1', content = '', contentless_delete = 1, detail = none);
CREATE TABLE IF NOT EXISTS group_members (
    group_id TEXT NOT NULL,
    identity TEXT NOT NULL,
    PRIMARY KEY (group_id, identity)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS group_members_identity ON group_members (identity);
CREATE TABLE IF NOT EXISTS directory_events (
    seq           INTEGER PRIMARY KEY,
    at            INTEGER NOT NULL,
    subject_type  TEXT NOT NULL,
    subject       TEXT NOT NULL,
    subject_name  TEXT NOT NULL,
    identity_kind TEXT,
    tiers         TEXT,
    change        TEXT NOT NULL,
    detail        TEXT NOT NULL,
    source        TEXT NOT NULL,
    client        TEXT,
    source_ref    TEXT,
    -- The event of the same write that caused this one (fan-out).
    cause         INTEGER
);
CREATE INDEX IF NOT EXISTS directory_events_cause ON directory_events (cause) WHERE cause IS NOT NULL;
CREATE TRIGGER IF NOT EXISTS directory_events_append_only_u BEFORE UPDATE ON directory_events
    BEGIN SELECT RAISE(ABORT, 'directory_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS directory_events_append_only_d BEFORE DELETE ON directory_events
    BEGIN SELECT RAISE(ABORT, 'directory_events is append-only'); END;
";

/// `PRAGMA user_version` of this schema. Version 2 added the search
/// indexes (displayName, e-mails, status, trigrams); version 3 several
/// owners, the risk tier, the subject's tiers and fan-out causes; version 4
/// the owning source of identities and groups, and source state; version 5
/// made the externalId and displayName indexes partial (non-NULL values);
/// version 6 writes trigram rows behind the commit (`identity_grams_due`).
const SCHEMA_VERSION: i32 = 6;

/// In-place upgrades: from version 4 the old full indexes are dropped, and
/// the schema then creates their partial replacements; from version 5 the
/// schema adds the (empty) table of due trigram rows.
const UPGRADES: &[Upgrade] = &[
    Upgrade {
        from: 4,
        sql: "DROP INDEX IF EXISTS identities_external_id;
          DROP INDEX IF EXISTS identities_display_name;
          DROP INDEX IF EXISTS groups_external_id;",
    },
    Upgrade { from: 5, sql: "" },
];

/// Due identities (see `identity_grams_due`) at which a commit rewrites
/// their trigram rows. Larger amortises FTS5's per-commit segment over more
/// identities but makes that one commit longer and every substring search
/// check more rows exactly.
const DUE_GRAMS: i64 = 256;

/// The columns an [`IdentityRow`] reads, as a macro so that fixed
/// statements are `concat!`ed at compile time rather than formatted per
/// call on the write path.
macro_rules! identity_columns {
    () => {
        "id, user_name, external_id, display_name, kind, status, profile, version, created, modified, owners, emails, risk_tier, source"
    };
}
const IDENTITY_COLUMNS: &str = identity_columns!();

/// The columns of a directory event row (see [`identity_columns`]).
macro_rules! event_columns {
    () => {
        "seq, at, subject_type, subject, subject_name, identity_kind, change, detail, source, client, source_ref, tiers, cause"
    };
}
const EVENT_COLUMNS: &str = event_columns!();

/// The directory role on SQLite.
#[derive(Debug)]
pub struct SqliteDirectory {
    pool: Pool,
}

impl SqliteDirectory {
    /// Opens (creating if needed) the directory database at `path`.
    pub fn open(path: &Path, durability: Durability) -> StoreResult<Self> {
        let pool = Pool::open(
            path,
            durability,
            Schema { sql: SCHEMA, version: SCHEMA_VERSION, upgrades: UPGRADES },
            Tuning { cache_kib: 16 * 1024, reader_cache_kib: 16 * 1024, explicit_sync: false },
        )?;
        // What the last run left due is written now, so that a restarted
        // server's searches start from a complete trigram index.
        {
            let mut conn = lock(&pool.writer)?;
            let due: i64 = conn
                .cached_row("SELECT COUNT(*) FROM identity_grams_due", [], |r| r.get(0))
                .map_err(backend)?;
            if due > 0 {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
                write_due_grams(&tx, 1)?;
                tx.commit().map_err(backend)?;
            }
        }
        Ok(Self { pool })
    }
}

/// Raw row, decoded outside the rusqlite callback so decode errors keep
/// their own type.
struct IdentityRow {
    id: String,
    user_name: String,
    external_id: Option<String>,
    display_name: Option<String>,
    kind: String,
    status: String,
    profile: String,
    version: i64,
    created: i64,
    modified: i64,
    owners: String,
    emails: String,
    risk_tier: Option<String>,
    source: String,
}

fn identity_row(row: &Row<'_>) -> rusqlite::Result<IdentityRow> {
    Ok(IdentityRow {
        id: row.get(0)?,
        user_name: row.get(1)?,
        external_id: row.get(2)?,
        display_name: row.get(3)?,
        kind: row.get(4)?,
        status: row.get(5)?,
        profile: row.get(6)?,
        version: row.get(7)?,
        created: row.get(8)?,
        modified: row.get(9)?,
        owners: row.get(10)?,
        emails: row.get(11)?,
        risk_tier: row.get(12)?,
        source: row.get(13)?,
    })
}

impl IdentityRow {
    fn decode(self) -> StoreResult<Identity> {
        Ok(Identity {
            id: parse::<IdentityId>("identity id", &self.id)?,
            user_name: self.user_name,
            external_id: self.external_id,
            source: SourceId::new(self.source),
            display_name: self.display_name,
            kind: parse::<IdentityKind>("identity kind", &self.kind)?,
            owners: decode_ids(&self.owners)?,
            risk_tier: self.risk_tier.map(|r| parse::<RiskTier>("risk tier", &r)).transpose()?,
            status: parse::<IdentityStatus>("status", &self.status)?,
            emails: decode_list(&self.emails),
            profile: self.profile,
            version: self.version.unsigned_abs(),
            created: Timestamp(self.created),
            modified: Timestamp(self.modified),
        })
    }
}

struct EventRow {
    seq: i64,
    at: i64,
    subject_type: String,
    subject: String,
    subject_name: String,
    identity_kind: Option<String>,
    change: String,
    detail: String,
    source: String,
    client: Option<String>,
    source_ref: Option<String>,
    tiers: Option<String>,
    cause: Option<i64>,
}

fn event_row(r: &Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        seq: r.get(0)?,
        at: r.get(1)?,
        subject_type: r.get(2)?,
        subject: r.get(3)?,
        subject_name: r.get(4)?,
        identity_kind: r.get(5)?,
        change: r.get(6)?,
        detail: r.get(7)?,
        source: r.get(8)?,
        client: r.get(9)?,
        source_ref: r.get(10)?,
        tiers: r.get(11)?,
        cause: r.get(12)?,
    })
}

impl EventRow {
    fn decode(self) -> StoreResult<DirectoryEvent> {
        Ok(DirectoryEvent {
            id: DirectoryEventId(self.seq.unsigned_abs()),
            at: Timestamp(self.at),
            subject: match self.subject_type.as_str() {
                "identity" => Subject::Identity {
                    id: parse::<IdentityId>("identity id", &self.subject)?,
                    user_name: self.subject_name,
                    kind: parse::<IdentityKind>(
                        "identity kind",
                        self.identity_kind.as_deref().unwrap_or(""),
                    )?,
                    tiers: parse::<Tiers>("tiers", self.tiers.as_deref().unwrap_or("standard"))?,
                },
                "group" => Subject::Group {
                    id: parse::<GroupId>("group id", &self.subject)?,
                    display_name: self.subject_name,
                },
                other => return Err(corrupt(format!("bad subject type {other:?}"))),
            },
            change: decode_change(&self.change, &self.detail)?,
            origin: Origin {
                source: SourceId::new(self.source),
                client: self.client.map(|c| parse::<ClientId>("client id", &c)).transpose()?,
                source_ref: self.source_ref,
            },
            cause: self.cause.map(|c| DirectoryEventId(c.unsigned_abs())),
        })
    }
}

fn live(identity: &Identity) -> bool {
    identity.status != IdentityStatus::Deprovisioned
}

/// Appends events, in order, after the last one, inside an open
/// transaction; every directory write records its changes through here. A
/// `caused_by` index becomes the position of the event it names.
pub(crate) fn append_events(
    tx: &rusqlite::Connection,
    at: Timestamp,
    origin: &Origin,
    new: Vec<NewEvent>,
) -> StoreResult<Vec<DirectoryEvent>> {
    let first = next_event_seq(tx)?;
    let causes = cause_positions(&new, first.unsigned_abs())?;
    let mut events = Vec::with_capacity(new.len());
    for ((seq, event), cause) in (first..).zip(new).zip(causes) {
        let event = DirectoryEvent {
            id: DirectoryEventId(seq.unsigned_abs()),
            at,
            subject: event.subject,
            change: event.change,
            origin: origin.clone(),
            cause,
        };
        insert_event(tx, &event)?;
        events.push(event);
    }
    Ok(events)
}

/// Appends one directory event inside an open transaction.
fn insert_event(tx: &rusqlite::Connection, event: &DirectoryEvent) -> StoreResult<()> {
    let (kind, detail) = encode_change(&event.change);
    let (subject_type, subject_id, name, identity_kind, tiers) = match &event.subject {
        Subject::Identity { id, user_name, kind, tiers } => {
            ("identity", id.to_string(), user_name.as_str(), Some(kind.as_str()), Some(tiers.as_str()))
        }
        Subject::Group { id, display_name } => ("group", id.to_string(), display_name.as_str(), None, None),
    };
    let origin = &event.origin;
    tx.prepare_cached(concat!(
        "INSERT INTO directory_events (",
        event_columns!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    ))
    .and_then(|mut stmt| {
        stmt.execute(params![
            seq_to_sql(event.id.0),
            event.at.micros(),
            subject_type,
            subject_id,
            name,
            identity_kind,
            kind,
            detail,
            origin.source.as_str(),
            origin.client.map(|c| c.to_string()),
            origin.source_ref,
            tiers,
            event.cause.map(|c| seq_to_sql(c.0)),
        ])
    })
    .map(|_| ())
    .map_err(backend)
}

/// The position the next event gets.
fn next_event_seq(tx: &rusqlite::Connection) -> StoreResult<i64> {
    tx.cached_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM directory_events", [], |r| r.get(0)).map_err(backend)
}

/// Why an identity write did not apply.
#[derive(Debug)]
enum WriteError {
    /// Refused before anything was written (a version mismatch, a name
    /// taken, ...): the transaction is as it was, and the batch goes on.
    Refused(StoreError),
    /// Failed part-way: the transaction holds part of the write and must
    /// be rolled back whole.
    Failed(StoreError),
}

impl From<WriteError> for StoreError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Refused(e) | WriteError::Failed(e) => e,
        }
    }
}

/// One identity write inside an open transaction. Every check that can
/// refuse it runs before its first change, so a refused write needs no
/// savepoint to undo it (a savepoint per write of a batch cost two parsed
/// statements and a copy of every page it touched).
fn write_identity(
    tx: &rusqlite::Connection,
    write: IdentityWrite,
) -> Result<(Committed, Option<Reindex>), WriteError> {
    let refused = WriteError::Refused;
    if write.changes.is_empty() {
        return Err(refused(StoreError::Backend("a directory write must record at least one change".into())));
    }
    let mut identity = write.identity;
    let id = identity.id.to_string();
    // The stored row: its seq, version and every column a write may change.
    let found: Option<(i64, i64, Vec<Value>)> = tx
        .prepare_cached(&SELECT_WRITTEN)
        .and_then(|mut stmt| {
            stmt.query_row([&id], |r| {
                let old = (0..WRITTEN.len()).map(|i| r.get::<_, Value>(i + 2)).collect::<Result<_, _>>()?;
                Ok((r.get(0)?, r.get(1)?, old))
            })
            .optional()
        })
        .map_err(|e| refused(backend(e)))?;
    let found_version = found.as_ref().map(|f| f.1.unsigned_abs());
    if found_version != write.expected_version {
        return Err(refused(StoreError::VersionMismatch {
            expected: write.expected_version,
            found: found_version,
        }));
    }
    let keys = SearchKeys::of(&identity);
    identity.version = write.expected_version.map_or(1, |v| v + 1);
    let new = written_values(&identity, &keys);
    if let Some((_, _, old)) = &found
        && old[SOURCE] != new[SOURCE]
    {
        return Err(refused(StoreError::Backend("a write cannot change an identity's source".into())));
    }
    // A live name is unique, so the check runs whenever a row takes a live
    // name it did not hold: a new row, a renamed one, or a tombstone brought
    // back under the name it had (another identity may have taken it since).
    let takes_live_name = found
        .as_ref()
        .is_none_or(|(_, _, old)| old[USER_NAME_LC] != new[USER_NAME_LC] || old[LIVE] != new[LIVE]);
    if live(&identity) && takes_live_name {
        let clash: Option<String> = tx
            .prepare_cached("SELECT id FROM identities WHERE user_name_lc = ?1 AND live = 1 AND id <> ?2")
            .and_then(|mut stmt| stmt.query_row(params![keys.user_name, id], |r| r.get(0)).optional())
            .map_err(|e| refused(backend(e)))?;
        if clash.is_some() {
            return Err(refused(StoreError::Conflict { field: "userName", value: identity.user_name }));
        }
    }
    // From here on, a failure leaves a partial write.
    let failed = WriteError::Failed;
    let old_keys = match &found {
        None => {
            let values = std::iter::once(Value::Text(id.clone())).chain(new.iter().cloned());
            tx.prepare_cached(&INSERT_WRITTEN)
                .and_then(|mut stmt| stmt.execute(rusqlite::params_from_iter(values)))
                .map_err(|e| failed(backend(e)))?;
            None
        }
        Some((seq, _, old)) => {
            // Only the columns whose value changed are assigned: SQLite
            // rewrites every index on an assigned column, changed or not,
            // and each is a page in the WAL. A PATCH of `active` then
            // touches the row and the status indexes, not all nine.
            let changed: Vec<usize> = (0..WRITTEN.len()).filter(|&i| old[i] != new[i]).collect();
            let set: Vec<String> = changed.iter().map(|&i| format!("{} = ?", WRITTEN[i])).collect();
            let sql = format!("UPDATE identities SET {} WHERE seq = ?", set.join(", "));
            let values = changed.iter().map(|&i| new[i].clone()).chain(std::iter::once(Value::Integer(*seq)));
            tx.prepare_cached(&sql)
                .and_then(|mut stmt| stmt.execute(rusqlite::params_from_iter(values)))
                .map_err(|e| failed(backend(e)))?;
            Some(SearchKeys::from_row(old))
        }
    };
    let old_owners = match &found {
        Some((_, _, old)) => match &old[OWNERS] {
            Value::Text(t) => decode_ids(t).map_err(failed)?,
            _ => Vec::new(),
        },
        None => Vec::new(),
    };
    if old_owners != identity.owners {
        write_owners(tx, &id, &old_owners, &identity.owners).map_err(failed)?;
    }
    let reindex = match (found, old_keys) {
        // Most updates (PATCH active, a profile edit) leave every search
        // key alone: then no index but the row's own is written.
        (Some(_), Some(old)) if old == keys => None,
        (Some((seq, _, _)), old) => Some(Reindex { seq, old, new: keys }),
        (None, _) => Some(Reindex { seq: tx.last_insert_rowid(), old: None, new: keys }),
    };
    let new = write_events(write.changes, write.fanout, &Subject::of_identity(&identity, write.tiers));
    let events = append_events(tx, write.at, &write.origin, new).map_err(failed)?;
    Ok((Committed { identity, events }, reindex))
}

/// Runs `f` in a write transaction on the writer and commits it: in the
/// batch's transaction when one is open ([`DirectoryStore::begin_batch`]),
/// else in one begun `IMMEDIATE` here (never deferred: a deferred writer
/// waiting for the lock would hold the snapshot a checkpoint waits for). On
/// any error, the commit's included, the transaction is rolled back whole.
fn in_write_transaction<T>(
    conn: &rusqlite::Connection,
    f: impl FnOnce(&rusqlite::Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    if conn.is_autocommit() {
        conn.cached_exec("BEGIN IMMEDIATE", []).map_err(backend)?;
    }
    let result = f(conn).and_then(|value| conn.cached_exec("COMMIT", []).map(|_| value).map_err(backend));
    if result.is_err() && !conn.is_autocommit() {
        let _ = conn.cached_exec("ROLLBACK", []);
    }
    result
}

/// Writes a source's state inside an open transaction.
pub(crate) fn write_source_state(tx: &rusqlite::Connection, state: &SourceState) -> StoreResult<()> {
    tx.cached_exec(
        "INSERT OR REPLACE INTO source_state (source, cursor, complete_at, held, updated) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            state.source.as_str(),
            state.cursor,
            state.complete_at.map(Timestamp::micros),
            state.held,
            state.updated.micros()
        ],
    )
    .map(|_| ())
    .map_err(backend)
}

/// Rewrites the reverse ownership rows of one identity.
fn write_owners(
    tx: &rusqlite::Connection,
    id: &str,
    old: &[IdentityId],
    new: &[IdentityId],
) -> StoreResult<()> {
    let run = |sql: &str, owner: &IdentityId| {
        tx.prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute(params![owner.to_string(), id]))
            .map(|_| ())
            .map_err(backend)
    };
    for owner in old.iter().filter(|o| !new.contains(o)) {
        run("DELETE FROM identity_owners WHERE owner = ?1 AND identity = ?2", owner)?;
    }
    for owner in new.iter().filter(|o| !old.contains(o)) {
        run("INSERT OR IGNORE INTO identity_owners (owner, identity) VALUES (?1, ?2)", owner)?;
    }
    Ok(())
}

/// Search-index rows to rewrite after an identity write, applied together
/// once the batch's writes are done (FTS5 then flushes the batch's trigrams
/// as one segment at the commit).
struct Reindex {
    seq: i64,
    old: Option<SearchKeys>,
    new: SearchKeys,
}

impl Reindex {
    fn apply(self, tx: &rusqlite::Connection) -> StoreResult<()> {
        self.new.reindex(tx, self.seq, self.old.as_ref())
    }
}

/// Columns a write sets, in the order of [`written_values`].
const WRITTEN: [&str; 16] = [
    "user_name",
    "user_name_lc",
    "external_id",
    "display_name",
    "display_name_lc",
    "kind",
    "owners",
    "risk_tier",
    "status",
    "live",
    "profile",
    "version",
    "created",
    "modified",
    "emails",
    "source",
];
/// The live identities an owner owns. Read for every deactivation (its
/// fan-out), so its parameter is a CAST: SQLite re-prepared the bare `= ?1`
/// with the ORDER BY on every run, a third of a PATCH batch's time.
static OWNED_BY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let columns = IDENTITY_COLUMNS.split(", ").map(|c| format!("i.{c}")).collect::<Vec<_>>().join(", ");
    format!(
        "SELECT {columns} FROM identity_owners o JOIN identities i ON i.id = o.identity
         WHERE o.owner = CAST(?1 AS TEXT) AND i.live = 1 ORDER BY i.seq"
    )
});

/// An identity's row by id, on a reader or the writer.
fn identity_on(c: &rusqlite::Connection, id: IdentityId) -> rusqlite::Result<Option<IdentityRow>> {
    let sql = concat!("SELECT ", identity_columns!(), " FROM identities WHERE id = ?1");
    c.cached_row(sql, [id.to_string()], identity_row).optional()
}

/// Up to `limit` events after `after`, in order, on a reader or the writer.
fn events_after_on(
    c: &rusqlite::Connection,
    after: Option<DirectoryEventId>,
    limit: usize,
) -> rusqlite::Result<Vec<EventRow>> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {EVENT_COLUMNS} FROM directory_events WHERE seq > ?1 ORDER BY seq LIMIT CAST(?2 AS INTEGER)"
        )
    });
    let after = after.map_or(0, |a| seq_to_sql(a.0));
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = c.prepare_cached(&SQL)?;
    stmt.query_map(params![after, limit], event_row)?.collect()
}

/// The rows of what `owner` owns, on a reader or the writer.
fn owned_by_on(c: &rusqlite::Connection, owner: IdentityId) -> rusqlite::Result<Vec<IdentityRow>> {
    c.prepare_cached(&OWNED_BY)?.query_map([owner.to_string()], identity_row)?.collect()
}

/// The stored row's seq, version and [`WRITTEN`] columns, by id (built
/// once: the statement cache is keyed by the text).
static SELECT_WRITTEN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT seq, version, {} FROM identities WHERE id = ?1", WRITTEN.join(", "))
});

/// A new row: its id and [`WRITTEN`] columns.
static INSERT_WRITTEN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let placeholders = vec!["?"; WRITTEN.len() + 1].join(", ");
    format!("INSERT INTO identities (id, {}) VALUES ({placeholders})", WRITTEN.join(", "))
});

pub(crate) const USER_NAME_LC: usize = 1;
pub(crate) const DISPLAY_NAME_LC: usize = 4;
pub(crate) const EXTERNAL_ID: usize = 2;
const OWNERS: usize = 6;
const LIVE: usize = 9;
pub(crate) const EMAILS: usize = 14;
const SOURCE: usize = 15;

/// An identity's values for [`WRITTEN`].
fn written_values(identity: &Identity, keys: &SearchKeys) -> Vec<Value> {
    let text = |s: &str| Value::Text(s.to_owned());
    let opt = |s: Option<&str>| s.map_or(Value::Null, text);
    vec![
        text(&identity.user_name),
        text(&keys.user_name),
        opt(identity.external_id.as_deref()),
        opt(identity.display_name.as_deref()),
        opt(keys.display_name.as_deref()),
        text(identity.kind.as_str()),
        Value::Text(encode_ids(&identity.owners)),
        opt(identity.risk_tier.map(|r| r.as_str())),
        text(identity.status.as_str()),
        Value::Integer(i64::from(live(identity))),
        text(&identity.profile),
        Value::Integer(seq_to_sql(identity.version)),
        Value::Integer(identity.created.micros()),
        Value::Integer(identity.modified.micros()),
        Value::Text(encode_list(&identity.emails)),
        text(identity.source.as_str()),
    ]
}

/// The ORDER BY of a listing. Creation order is `seq`, the rowid; with a
/// filter it is written `+seq` so that SQLite cannot satisfy it by walking
/// the table in rowid order (which, under a LIMIT, it prefers for any range
/// condition — a full scan when the range is selective). The matches are
/// then found through the filter's index and sorted, bounded by the LIMIT;
/// the count of the same matches visits them all anyway.
pub(crate) fn order_by<F>(filter: &lockstep_store::Filter<F>) -> &'static str {
    if matches!(filter, lockstep_store::Filter::All) { "seq" } else { "+seq" }
}

/// Raw rows of a listing, with raw memberships when asked for.
type ListedRows = Vec<(IdentityRow, Vec<(String, String)>)>;

impl SqliteDirectory {
    /// One read transaction for a page of identities and, if asked, the
    /// groups of each (a second reader acquisition per request would halve
    /// lookup throughput under load).
    fn query_identities(&self, query: &IdentityQuery, with_groups: bool) -> StoreResult<(usize, ListedRows)> {
        let compiled = compile(&query.filter);
        let where_ = format!("live = 1 AND ({})", compiled.sql);
        let count_sql = format!("SELECT COUNT(*) FROM identities WHERE {where_}");
        let page_sql = format!(
            "SELECT {IDENTITY_COLUMNS} FROM identities WHERE {where_} ORDER BY {} LIMIT {} OFFSET {}",
            order_by(&query.filter),
            query.limit,
            query.offset
        );
        let (total, rows) = self.pool.read(|c| {
            let args = rusqlite::params_from_iter(compiled.args.iter());
            let mut stmt = c.prepare_cached(&page_sql)?;
            let rows = stmt.query_map(args.clone(), identity_row)?.collect::<Result<Vec<_>, _>>()?;
            // A first page that is not full already holds every match (the
            // common `userName eq` lookup): no second query for the total.
            let total = if query.offset == 0 && rows.len() < query.limit {
                i64::try_from(rows.len()).unwrap_or(i64::MAX)
            } else {
                c.cached_row(&count_sql, args, |r| r.get(0))?
            };
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let groups = if with_groups { crate::groups::memberships(c, &row.id)? } else { Vec::new() };
                out.push((row, groups));
            }
            Ok((total, out))
        })?;
        Ok((usize::try_from(total).unwrap_or(0), rows))
    }
}

impl DirectoryStore for SqliteDirectory {
    fn identity_to_write(&self, id: IdentityId) -> StoreResult<Option<Identity>> {
        identity_on(&*lock(&self.pool.writer)?, id).map_err(backend)?.map(IdentityRow::decode).transpose()
    }
    fn owned_by_to_write(&self, owner: IdentityId) -> StoreResult<Vec<Identity>> {
        owned_by_on(&*lock(&self.pool.writer)?, owner)
            .map_err(backend)?
            .into_iter()
            .map(IdentityRow::decode)
            .collect()
    }
    fn events_after_to_write(
        &self,
        after: Option<DirectoryEventId>,
        limit: usize,
    ) -> StoreResult<Vec<DirectoryEvent>> {
        let rows = events_after_on(&*lock(&self.pool.writer)?, after, limit).map_err(backend)?;
        rows.into_iter().map(EventRow::decode).collect()
    }
    fn groups_of_to_write(&self, identity: IdentityId) -> StoreResult<Vec<(GroupId, String)>> {
        let rows = crate::groups::memberships(&*lock(&self.pool.writer)?, &identity.to_string());
        crate::groups::decode_memberships(rows.map_err(backend)?)
    }
    fn begin_batch(&self) -> StoreResult<()> {
        let conn = lock(&self.pool.writer)?;
        if conn.is_autocommit() {
            conn.cached_exec("BEGIN IMMEDIATE", []).map_err(backend)?;
        }
        Ok(())
    }
    fn end_batch(&self) {
        if let Ok(conn) = lock(&self.pool.writer)
            && !conn.is_autocommit()
        {
            // Only reads happened in it. Should the rollback fail, the
            // transaction stays open and the next commit (the engine's,
            // under the same commit lock) continues it: it holds no write.
            let _ = conn.cached_exec("ROLLBACK", []);
        }
    }
    fn commit_identity(&self, write: IdentityWrite) -> StoreResult<Committed> {
        let conn = lock(&self.pool.writer)?;
        in_write_transaction(&conn, |tx| {
            let (committed, reindex) = write_identity(tx, write).map_err(StoreError::from)?;
            if let Some(reindex) = reindex {
                reindex.apply(tx)?;
            }
            write_due_grams(tx, DUE_GRAMS)?;
            Ok(committed)
        })
    }
    fn commit_source(
        &self,
        writes: Vec<IdentityWrite>,
        state: Option<SourceState>,
    ) -> StoreResult<Vec<StoreResult<Committed>>> {
        let conn = lock(&self.pool.writer)?;
        in_write_transaction(&conn, |tx| {
            let mut results = Vec::with_capacity(writes.len());
            let mut reindexes = Vec::new();
            for write in writes {
                match write_identity(tx, write) {
                    Ok((committed, reindex)) => {
                        reindexes.extend(reindex);
                        results.push(Ok(committed));
                    }
                    // Refused before its first change: the batch goes on.
                    Err(WriteError::Refused(e)) => results.push(Err(e)),
                    // Part of it written: the transaction is rolled back
                    // whole, and every write of it fails.
                    Err(WriteError::Failed(e)) => return Err(e),
                }
            }
            for reindex in reindexes {
                reindex.apply(tx)?;
            }
            write_due_grams(tx, DUE_GRAMS)?;
            if let Some(state) = state {
                write_source_state(tx, &state)?;
            }
            Ok(results)
        })
    }
    fn commit_group(&self, write: GroupWrite) -> StoreResult<CommittedGroup> {
        let conn = lock(&self.pool.writer)?;
        in_write_transaction(&conn, |tx| crate::groups::write_group(tx, write))
    }
}

impl DirectoryRead for SqliteDirectory {
    fn source_identities(&self, source: &SourceId) -> StoreResult<Vec<Identity>> {
        if source.as_str() == "scim" {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {IDENTITY_COLUMNS} FROM identities INDEXED BY identities_source
             WHERE source = CAST(?1 AS TEXT) AND source <> 'scim' AND live = 1 ORDER BY seq"
        );
        let rows = self.pool.read(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            stmt.query_map([source.as_str()], identity_row)?.collect::<Result<Vec<_>, _>>()
        })?;
        rows.into_iter().map(IdentityRow::decode).collect()
    }
    fn source_groups(&self, source: &SourceId) -> StoreResult<Vec<Group>> {
        if source.as_str() == "scim" {
            return Ok(Vec::new());
        }
        crate::groups::source_groups(&self.pool, source, None)
    }
    fn source_identities_by_key(&self, source: &SourceId, keys: &[String]) -> StoreResult<Vec<Identity>> {
        if source.as_str() == "scim" || keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for chunk in keys.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT {IDENTITY_COLUMNS} FROM identities INDEXED BY identities_source
                 WHERE source = CAST(? AS TEXT) AND source <> 'scim' AND external_id IN ({marks}) AND live = 1 ORDER BY seq"
            );
            let args: Vec<&str> =
                std::iter::once(source.as_str()).chain(chunk.iter().map(String::as_str)).collect();
            let rows = self.pool.read(|c| {
                let mut stmt = c.prepare_cached(&sql)?;
                stmt.query_map(rusqlite::params_from_iter(args.iter()), identity_row)?
                    .collect::<Result<Vec<_>, _>>()
            })?;
            for row in rows {
                out.push(row.decode()?);
            }
        }
        Ok(out)
    }
    fn source_groups_by_key(&self, source: &SourceId, keys: &[String]) -> StoreResult<Vec<Group>> {
        if source.as_str() == "scim" || keys.is_empty() {
            return Ok(Vec::new());
        }
        crate::groups::source_groups(&self.pool, source, Some(keys))
    }
    fn count_source_groups(&self, source: &SourceId) -> StoreResult<usize> {
        if source.as_str() == "scim" {
            return Ok(0);
        }
        let n: i64 = self.pool.read(|c| {
            c.cached_row(
                "SELECT COUNT(*) FROM groups INDEXED BY groups_source WHERE source = ?1 AND source <> 'scim'",
                [source.as_str()],
                |r| r.get(0),
            )
        })?;
        Ok(usize::try_from(n).unwrap_or(0))
    }
    fn count_source_identities(&self, source: &SourceId) -> StoreResult<usize> {
        if source.as_str() == "scim" {
            return Ok(0);
        }
        let n: i64 = self.pool.read(|c| {
            c.cached_row(
                "SELECT COUNT(*) FROM identities INDEXED BY identities_source WHERE source = ?1 AND source <> 'scim' AND live = 1",
                [source.as_str()],
                |r| r.get(0),
            )
        })?;
        Ok(usize::try_from(n).unwrap_or(0))
    }
    fn source_state(&self, source: &SourceId) -> StoreResult<Option<SourceState>> {
        let row = self.pool.read(|c| {
            c.cached_row(
                "SELECT cursor, complete_at, held, updated FROM source_state WHERE source = ?1",
                [source.as_str()],
                |r| {
                    Ok((
                        r.get::<_, Option<Vec<u8>>>(0)?,
                        r.get::<_, Option<i64>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                },
            )
            .optional()
        })?;
        Ok(row.map(|(cursor, complete_at, held, updated)| SourceState {
            source: source.clone(),
            cursor,
            complete_at: complete_at.map(Timestamp),
            held,
            updated: Timestamp(updated),
        }))
    }
    fn identity(&self, id: IdentityId) -> StoreResult<Option<Identity>> {
        self.pool.read(|c| identity_on(c, id))?.map(IdentityRow::decode).transpose()
    }
    fn live_identity_by_user_name(&self, user_name: &str) -> StoreResult<Option<Identity>> {
        let sql =
            concat!("SELECT ", identity_columns!(), " FROM identities WHERE user_name_lc = ?1 AND live = 1");
        self.pool
            .read(|c| c.cached_row(sql, [lockstep_domain::text::fold(user_name)], identity_row).optional())?
            .map(IdentityRow::decode)
            .transpose()
    }
    fn deleted_user_name_exists(&self, user_name: &str) -> StoreResult<bool> {
        self.pool.read(|c| {
            c.cached_row(
                "SELECT EXISTS (SELECT 1 FROM identities WHERE user_name_lc = ?1 AND live = 0)",
                [lockstep_domain::text::fold(user_name)],
                |r| r.get(0),
            )
        })
    }
    fn list_identities(&self, query: &IdentityQuery) -> StoreResult<IdentityPage> {
        let (total, rows) = self.query_identities(query, false)?;
        Ok(IdentityPage {
            total,
            items: rows.into_iter().map(|(row, _)| row.decode()).collect::<StoreResult<_>>()?,
        })
    }
    fn list_identities_with_groups(
        &self,
        query: &IdentityQuery,
    ) -> StoreResult<(usize, Vec<UserWithGroups>)> {
        let (total, rows) = self.query_identities(query, true)?;
        let users = rows
            .into_iter()
            .map(|(row, groups)| Ok((row.decode()?, crate::groups::decode_memberships(groups)?)))
            .collect::<StoreResult<_>>()?;
        Ok((total, users))
    }
    fn group(&self, id: GroupId) -> StoreResult<Option<Group>> {
        crate::groups::group(&self.pool, id)
    }
    fn list_groups(&self, query: &GroupQuery) -> StoreResult<GroupPage> {
        crate::groups::list_groups(&self.pool, query)
    }
    fn groups_of(&self, identity: IdentityId) -> StoreResult<Vec<(GroupId, String)>> {
        crate::groups::groups_of(&self.pool, identity)
    }
    fn events_after(
        &self,
        after: Option<DirectoryEventId>,
        limit: usize,
    ) -> StoreResult<Vec<DirectoryEvent>> {
        self.pool.read(|c| events_after_on(c, after, limit))?.into_iter().map(EventRow::decode).collect()
    }
    fn event(&self, id: DirectoryEventId) -> StoreResult<Option<DirectoryEvent>> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM directory_events WHERE seq = ?1");
        self.pool
            .read(|c| c.cached_row(&sql, [seq_to_sql(id.0)], event_row).optional())?
            .map(EventRow::decode)
            .transpose()
    }
    fn events_caused_by(&self, cause: DirectoryEventId) -> StoreResult<Vec<DirectoryEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM directory_events WHERE cause = CAST(?1 AS INTEGER) ORDER BY seq"
        );
        let rows = self.pool.read(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            stmt.query_map([seq_to_sql(cause.0)], event_row)?.collect::<Result<Vec<_>, _>>()
        })?;
        rows.into_iter().map(EventRow::decode).collect()
    }
    fn owned_by(&self, owner: IdentityId) -> StoreResult<Vec<Identity>> {
        self.pool.read(|c| owned_by_on(c, owner))?.into_iter().map(IdentityRow::decode).collect()
    }
    fn claim_inputs(&self, ids: &[IdentityId]) -> StoreResult<Vec<lockstep_store::ClaimInputs>> {
        self.pool.read(|c| crate::groups::claim_inputs(c, ids))?
    }

    fn identities_with_groups(&self, ids: &[IdentityId]) -> StoreResult<Vec<UserWithGroups>> {
        // Read together, a few hundred per statement: a group write reads
        // every member, and ten thousand point reads cost more than the write.
        let (rows, memberships) = self.pool.read(|c| {
            let mut rows = Vec::with_capacity(ids.len());
            let mut memberships: Vec<(String, String, String)> = Vec::new();
            for chunk in ids.chunks(crate::groups::IDS_PER_READ) {
                let marks = vec!["?"; chunk.len()].join(", ");
                let ids: Vec<String> = chunk.iter().map(ToString::to_string).collect();
                let sql = format!("SELECT {IDENTITY_COLUMNS} FROM identities WHERE id IN ({marks})");
                let mut stmt = c.prepare_cached(&sql)?;
                rows.extend(
                    stmt.query_map(rusqlite::params_from_iter(ids.iter()), identity_row)?
                        .collect::<Result<Vec<_>, _>>()?,
                );
                let mut stmt = c.prepare_cached(&crate::groups::memberships_of(&marks))?;
                memberships.extend(
                    stmt.query_map(rusqlite::params_from_iter(ids.iter()), |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?,
                );
            }
            Ok((rows, memberships))
        })?;
        let mut groups: std::collections::HashMap<String, Vec<(String, String)>> =
            std::collections::HashMap::new();
        for (identity, id, name) in memberships {
            groups.entry(identity).or_default().push((id, name));
        }
        let mut by_id: std::collections::HashMap<String, IdentityRow> =
            rows.into_iter().map(|row| (row.id.clone(), row)).collect();
        ids.iter()
            .filter_map(|id| {
                let key = id.to_string();
                let row = by_id.remove(&key)?;
                let member_of = groups.remove(&key).unwrap_or_default();
                Some(
                    row.decode()
                        .and_then(|identity| Ok((identity, crate::groups::decode_memberships(member_of)?))),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use lockstep_store::{Filter, IdentityField as F, TextOp};

    use super::*;

    /// `EXPLAIN QUERY PLAN` of the page query for `filter`.
    fn plan(d: &SqliteDirectory, filter: &Filter<F>) -> String {
        let compiled = compile(filter);
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT {IDENTITY_COLUMNS} FROM identities
             WHERE live = 1 AND ({}) ORDER BY {} LIMIT 100 OFFSET 0",
            compiled.sql,
            order_by(filter)
        );
        d.pool
            .read(|c| {
                let mut stmt = c.prepare(&sql)?;
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(compiled.args.iter()), |r| r.get::<_, String>(3))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows.join("\n"))
            })
            .unwrap()
    }

    fn text(field: F, op: TextOp, value: &str) -> Filter<F> {
        Filter::Text { field, op, value: value.into() }
    }

    /// A write that fails after its first change (here: its event row is
    /// refused by a trigger) rolls the whole batch back, refused writes
    /// beside it or not; the next batch commits normally.
    #[test]
    fn a_write_failing_part_way_fails_its_batch_whole() {
        use lockstep_domain::{DirectoryChange, Tiers, Timestamp};
        use lockstep_store::conformance as c;
        let dir = tempfile::tempdir().unwrap();
        let d = SqliteDirectory::open(&dir.path().join("directory.db"), Durability::Off).unwrap();
        c::create(&d, 9, "taken");
        lock(&d.pool.writer)
            .unwrap()
            .execute_batch(
                "CREATE TEMP TRIGGER injected BEFORE INSERT ON main.directory_events
                 WHEN NEW.subject_name = 'mallory' BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            )
            .unwrap();
        let write = |n: u128, name: &str| IdentityWrite {
            identity: c::identity(n, name),
            tiers: Tiers::STANDARD,
            fanout: Vec::new(),
            expected_version: None,
            changes: vec![DirectoryChange::IdentityCreated],
            origin: c::origin(),
            at: Timestamp(7),
        };
        let failed =
            d.commit_identities(vec![write(0, "a"), write(1, "TAKEN"), write(2, "mallory"), write(3, "b")]);
        assert!(
            matches!(&failed, Err(StoreError::Backend(m)) if m.contains("injected failure")),
            "{failed:?}"
        );
        for n in [0, 2, 3] {
            assert_eq!(d.identity(c::identity_id(n)).unwrap(), None, "identity {n} was rolled back");
        }
        assert_eq!(d.events_after(None, 10).unwrap().len(), 1, "only the first create's event");
        let results = d.commit_identities(vec![write(0, "a"), write(3, "b")]).unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(d.events_after(None, 10).unwrap().len(), 3);
    }

    /// The statements a write batch runs stay prepared from one run to the
    /// next: SQLite 3.54 re-prepares a statement with a bare `= ?` and an
    /// ORDER BY on every run (the owners query did, and took a third of a
    /// PATCH batch's time).
    #[test]
    fn write_path_statements_are_not_prepared_again_on_every_run() {
        use lockstep_store::conformance as c;
        use rusqlite::StatementStatus;
        let dir = tempfile::tempdir().unwrap();
        let d = SqliteDirectory::open(&dir.path().join("directory.db"), Durability::Off).unwrap();
        let by_cause = format!(
            "SELECT {EVENT_COLUMNS} FROM directory_events WHERE cause = CAST(?1 AS INTEGER) ORDER BY seq"
        );
        let mut n = 0;
        let by_id = concat!("SELECT ", identity_columns!(), " FROM identities WHERE id = ?1");
        let by_name =
            concat!("SELECT ", identity_columns!(), " FROM identities WHERE user_name_lc = ?1 AND live = 1");
        let clash = "SELECT id FROM identities WHERE user_name_lc = ?1 AND live = 1 AND id <> ?1";
        for sql in [OWNED_BY.as_str(), SELECT_WRITTEN.as_str(), by_cause.as_str(), by_id, by_name, clash] {
            for value in ["a", "b", "c"] {
                // A commit between runs, as on a server: without one, the
                // re-prepare did not show.
                n += 1;
                c::create(&d, n, &format!("user{n}"));
                d.pool
                    .read(|conn| {
                        let mut stmt = conn.prepare_cached(sql)?;
                        let mut rows = stmt.query([value])?;
                        while rows.next()?.is_some() {}
                        Ok(())
                    })
                    .unwrap();
            }
            let reprepared = d
                .pool
                .read(|conn| Ok(conn.prepare_cached(sql)?.get_status(StatementStatus::RePrepare)))
                .unwrap();
            assert_eq!(reprepared, 0, "{sql}");
        }
    }

    /// Substring searches see every committed write, whether its trigram
    /// rows are still due or were written: across the bulk rewrite, after
    /// renames on either side of it, and after a reopen.
    #[test]
    fn substring_searches_see_writes_whose_trigrams_are_due_or_written() {
        use lockstep_domain::{DirectoryChange, Tiers, Timestamp};
        use lockstep_store::conformance as c;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("directory.db");
        let d = SqliteDirectory::open(&path, Durability::Off).unwrap();
        let due = |d: &SqliteDirectory| -> i64 {
            d.pool.read(|c| c.query_row("SELECT COUNT(*) FROM identity_grams_due", [], |r| r.get(0))).unwrap()
        };
        let names = |d: &SqliteDirectory, field: F, op: TextOp, value: &str| -> Vec<String> {
            let query = IdentityQuery { filter: text(field, op, value), offset: 0, limit: 1_000 };
            let mut names: Vec<String> =
                d.list_identities(&query).unwrap().items.into_iter().map(|i| i.user_name).collect();
            names.sort();
            names
        };
        let rename = |d: &SqliteDirectory, n: u128, user_name: &str, email: &str| {
            let current = d.identity(c::identity_id(n)).unwrap().unwrap();
            let mut next = current.clone();
            next.user_name = user_name.into();
            next.emails = vec![email.into()];
            d.commit_identity(IdentityWrite {
                identity: next,
                tiers: Tiers::STANDARD,
                fanout: Vec::new(),
                expected_version: Some(current.version),
                changes: vec![DirectoryChange::IdentityUpdated { changed: vec!["userName".into()] }],
                origin: c::origin(),
                at: Timestamp(2_000),
            })
            .unwrap();
        };
        let limit = u128::try_from(DUE_GRAMS).unwrap();
        for n in 0..limit - 1 {
            c::create(&d, n, &format!("member{n:04}"));
        }
        assert_eq!(due(&d), DUE_GRAMS - 1, "nothing written yet");
        rename(&d, 3, "walrus-three", "walrus@zoo.example");
        assert_eq!(names(&d, F::UserName, TextOp::Contains, "alru"), ["walrus-three"]);
        assert_eq!(names(&d, F::Email, TextOp::EndsWith, "zoo.example"), ["walrus-three"]);
        assert_eq!(names(&d, F::UserName, TextOp::Contains, "ber0003"), Vec::<String>::new());
        assert_eq!(names(&d, F::UserName, TextOp::Contains, "ber012").len(), 10);

        // The write that lists the limit's identity writes every due row.
        c::create(&d, limit, "penguin-last");
        assert_eq!(due(&d), 0, "written in bulk");
        assert_eq!(names(&d, F::UserName, TextOp::Contains, "alru"), ["walrus-three"]);
        assert_eq!(names(&d, F::UserName, TextOp::Contains, "nguin"), ["penguin-last"]);
        assert_eq!(names(&d, F::UserName, TextOp::Contains, "ber012").len(), 10);

        // Renamed once its rows are written: the old trigrams are deleted
        // with the next bulk rewrite, and until then the exact check drops
        // the stale candidate.
        rename(&d, 7, "otter-seven", "otter@river.example");
        assert_eq!(due(&d), 1);
        assert_eq!(names(&d, F::UserName, TextOp::Contains, "otte"), ["otter-seven"]);
        assert_eq!(names(&d, F::UserName, TextOp::Contains, "ber0007"), Vec::<String>::new());
        drop(d);
        let d = SqliteDirectory::open(&path, Durability::Off).unwrap();
        assert_eq!(due(&d), 0, "a reopen writes what was due");
        assert_eq!(names(&d, F::UserName, TextOp::Contains, "otte"), ["otter-seven"]);
        assert_eq!(names(&d, F::Email, TextOp::Contains, "river"), ["otter-seven"]);
        assert_eq!(names(&d, F::UserName, TextOp::Contains, "ber0007"), Vec::<String>::new());
        let stale: i64 = d
            .pool
            .read(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM identity_grams WHERE identity_grams MATCH '\"ber\"'
                     AND rowid / 4 = (SELECT seq FROM identities WHERE id = ?1)",
                    [c::identity_id(7).to_string()],
                    |r| r.get(0),
                )
            })
            .unwrap();
        assert_eq!(stale, 0, "the old name's trigram rows are gone");
        lock(&d.pool.writer)
            .unwrap()
            .execute_batch("INSERT INTO identity_grams (identity_grams) VALUES ('integrity-check');")
            .unwrap();
    }

    /// A batch holds the write lock from `begin_batch` (its reads and its
    /// commit one transaction) and releases it at its commit, at
    /// `end_batch`, or when its commit fails: another connection can write
    /// again after each.
    #[test]
    fn a_batch_holds_the_write_lock_until_it_commits_or_ends() {
        use lockstep_store::conformance as c;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("directory.db");
        let d = SqliteDirectory::open(&path, Durability::Off).unwrap();
        let other = rusqlite::Connection::open(&path).unwrap();
        other.busy_timeout(std::time::Duration::ZERO).unwrap();
        let other_writes = || other.execute_batch("BEGIN IMMEDIATE; ROLLBACK;").is_ok();
        let open = |d: &SqliteDirectory| !lock(&d.pool.writer).unwrap().is_autocommit();
        assert!(other_writes());
        d.begin_batch().unwrap();
        assert!(open(&d) && !other_writes(), "the batch holds the write lock");
        c::create(&d, 0, "alice");
        assert!(!open(&d) && other_writes(), "its commit ends it");
        d.begin_batch().unwrap();
        d.end_batch();
        assert!(!open(&d) && other_writes(), "end_batch ends it");
        d.begin_batch().unwrap();
        assert!(d.commit_identity(IdentityWrite { expected_version: Some(9), ..stale_write() }).is_err());
        assert!(!open(&d) && other_writes(), "a failed commit ends it");
    }

    fn stale_write() -> IdentityWrite {
        use lockstep_domain::{DirectoryChange, Tiers, Timestamp};
        use lockstep_store::conformance as c;
        IdentityWrite {
            identity: c::identity(0, "alice"),
            tiers: Tiers::STANDARD,
            fanout: Vec::new(),
            expected_version: None,
            changes: vec![DirectoryChange::IdentityUpdated { changed: vec!["userName".into()] }],
            origin: c::origin(),
            at: Timestamp(7),
        }
    }

    /// The attributes identity providers query are answered from an index:
    /// the plan never reads the whole `identities` table.
    #[test]
    fn provider_queries_never_scan_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let d = SqliteDirectory::open(&dir.path().join("directory.db"), Durability::Off).unwrap();
        let mut cases = Vec::new();
        for field in [F::Id, F::UserName, F::ExternalId, F::DisplayName, F::Email] {
            for op in [TextOp::Eq, TextOp::StartsWith, TextOp::Gt, TextOp::Le] {
                cases.push(text(field, op, "abc"));
            }
        }
        for field in [F::UserName, F::ExternalId, F::DisplayName, F::Email] {
            for op in [TextOp::Contains, TextOp::EndsWith] {
                cases.push(text(field, op, "abc"));
            }
        }
        cases.push(text(F::Active, TextOp::Eq, "false"));
        cases.push(text(F::Kind, TextOp::Eq, "service_account"));
        cases
            .push(Filter::And(vec![text(F::UserName, TextOp::Eq, "a"), text(F::Active, TextOp::Eq, "true")]));
        cases.push(Filter::Or(vec![text(F::UserName, TextOp::Eq, "a"), text(F::Email, TextOp::Eq, "a@b")]));
        cases.push(Filter::Or(vec![
            text(F::ExternalId, TextOp::Eq, "x"),
            text(F::DisplayName, TextOp::Contains, "jen"),
        ]));
        for filter in cases {
            let plan = plan(&d, &filter);
            // Scanning a partial index reads only the rows it holds (the
            // inactive ones, the non-human ones): that is a lookup.
            let partial = ["identities_inactive", "identities_kind"];
            let scans_table = plan
                .lines()
                .any(|l| l.starts_with("SCAN identities") && !partial.iter().any(|p| l.ends_with(p)));
            assert!(!scans_table, "{filter:?} scans the directory:\n{plan}");
        }
    }
}
