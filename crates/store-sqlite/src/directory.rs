//! `directory.db`: identities and the directory event log.

use std::path::Path;

use lockstep_domain::{
    ClientId, DirectoryChange, DirectoryEvent, DirectoryEventId, Group, GroupId, Identity, IdentityId,
    IdentityKind, IdentityStatus, Origin, SourceId, Subject, Timestamp,
};
use lockstep_store::{
    Committed, CommittedGroup, DirectoryStore, GroupPage, GroupQuery, GroupWrite, IdentityFilter,
    IdentityPage, IdentityQuery, IdentityWrite, StoreError, StoreResult, UserWithGroups,
};
use rusqlite::{OptionalExtension, Row, params};

use crate::codec::{corrupt, decode_change, encode_change, parse, seq_to_sql};
use crate::conn::{Durability, Pool, backend, lock};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS identities (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    user_name    TEXT NOT NULL,
    user_name_lc TEXT NOT NULL,
    external_id  TEXT,
    display_name TEXT,
    kind         TEXT NOT NULL,
    owner        TEXT,
    status       TEXT NOT NULL,
    profile      TEXT NOT NULL,
    version      INTEGER NOT NULL,
    created      INTEGER NOT NULL,
    modified     INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS identities_live_user_name
    ON identities (user_name_lc) WHERE status <> 'deprovisioned';
CREATE INDEX IF NOT EXISTS identities_user_name ON identities (user_name_lc);
CREATE INDEX IF NOT EXISTS identities_external_id ON identities (external_id);
-- Partial: most identities are human and own nothing, so writes to them
-- never touch these; filters on a non-human kind stay indexed.
CREATE INDEX IF NOT EXISTS identities_kind ON identities (kind) WHERE kind <> 'human';
CREATE INDEX IF NOT EXISTS identities_owner ON identities (owner) WHERE owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS groups (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    display_name    TEXT NOT NULL,
    display_name_lc TEXT NOT NULL,
    external_id     TEXT,
    version         INTEGER NOT NULL,
    created         INTEGER NOT NULL,
    modified        INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS groups_display_name ON groups (display_name_lc);
CREATE INDEX IF NOT EXISTS groups_external_id ON groups (external_id);
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
    change        TEXT NOT NULL,
    detail        TEXT NOT NULL,
    source        TEXT NOT NULL,
    client        TEXT,
    source_ref    TEXT
);
CREATE TRIGGER IF NOT EXISTS directory_events_append_only_u BEFORE UPDATE ON directory_events
    BEGIN SELECT RAISE(ABORT, 'directory_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS directory_events_append_only_d BEFORE DELETE ON directory_events
    BEGIN SELECT RAISE(ABORT, 'directory_events is append-only'); END;
";

const IDENTITY_COLUMNS: &str =
    "id, user_name, external_id, display_name, kind, status, profile, version, created, modified, owner";

/// The directory role on SQLite.
#[derive(Debug)]
pub struct SqliteDirectory {
    pool: Pool,
}

impl SqliteDirectory {
    /// Opens (creating if needed) the directory database at `path`.
    pub fn open(path: &Path, durability: Durability) -> StoreResult<Self> {
        Ok(Self { pool: Pool::open(path, durability, SCHEMA)? })
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
    owner: Option<String>,
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
        owner: row.get(10)?,
    })
}

impl IdentityRow {
    fn decode(self) -> StoreResult<Identity> {
        Ok(Identity {
            id: parse::<IdentityId>("identity id", &self.id)?,
            user_name: self.user_name,
            external_id: self.external_id,
            display_name: self.display_name,
            kind: parse::<IdentityKind>("identity kind", &self.kind)?,
            owner: self.owner.map(|o| parse::<IdentityId>("owner id", &o)).transpose()?,
            status: parse::<IdentityStatus>("status", &self.status)?,
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
        })
    }
}

fn live(identity: &Identity) -> bool {
    identity.status != IdentityStatus::Deprovisioned
}

/// Appends one directory event inside an open transaction.
pub(crate) fn insert_event(
    tx: &rusqlite::Connection,
    seq: i64,
    at: Timestamp,
    subject: &Subject,
    change: &DirectoryChange,
    origin: &Origin,
) -> StoreResult<()> {
    let (kind, detail) = encode_change(change);
    let (subject_type, subject_id, name, identity_kind) = match subject {
        Subject::Identity { id, user_name, kind } => {
            ("identity", id.to_string(), user_name.as_str(), Some(kind.as_str()))
        }
        Subject::Group { id, display_name } => ("group", id.to_string(), display_name.as_str(), None),
    };
    tx.prepare_cached(
        "INSERT INTO directory_events (seq, at, subject_type, subject, subject_name, identity_kind, change, detail, source, client, source_ref)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            seq,
            at.micros(),
            subject_type,
            subject_id,
            name,
            identity_kind,
            kind,
            detail,
            origin.source.as_str(),
            origin.client.map(|c| c.to_string()),
            origin.source_ref,
        ])
    })
    .map(|_| ())
    .map_err(backend)
}

/// The position the next event gets.
pub(crate) fn next_event_seq(tx: &rusqlite::Connection) -> StoreResult<i64> {
    tx.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM directory_events", [], |r| r.get(0)).map_err(backend)
}

/// One identity write inside an open transaction (or savepoint).
fn write_identity(tx: &rusqlite::Connection, write: IdentityWrite) -> StoreResult<Committed> {
    if write.changes.is_empty() {
        return Err(StoreError::Backend("a directory write must record at least one change".into()));
    }
    let mut identity = write.identity;
    let id = identity.id.to_string();
    let found: Option<i64> = tx
        .query_row("SELECT version FROM identities WHERE id = ?1", [&id], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    let found = found.map(i64::unsigned_abs);
    if found != write.expected_version {
        return Err(StoreError::VersionMismatch { expected: write.expected_version, found });
    }
    let lower = identity.user_name.to_lowercase();
    if live(&identity) {
        let clash: Option<String> = tx
            .query_row(
                "SELECT id FROM identities WHERE user_name_lc = ?1 AND status <> 'deprovisioned' AND id <> ?2",
                params![lower, id],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        if clash.is_some() {
            return Err(StoreError::Conflict { field: "userName", value: identity.user_name });
        }
    }
    identity.version = write.expected_version.map_or(1, |v| v + 1);
    let version = seq_to_sql(identity.version);
    let values = params![
        id,
        identity.user_name,
        lower,
        identity.external_id,
        identity.display_name,
        identity.kind.as_str(),
        identity.status.as_str(),
        identity.profile,
        version,
        identity.created.micros(),
        identity.modified.micros(),
        identity.owner.map(|o| o.to_string()),
    ];
    let sql = if write.expected_version.is_none() {
        "INSERT INTO identities (id, user_name, user_name_lc, external_id, display_name, kind, status, profile, version, created, modified, owner)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    } else {
        "UPDATE identities SET user_name = ?2, user_name_lc = ?3, external_id = ?4, display_name = ?5,
            kind = ?6, status = ?7, profile = ?8, version = ?9, created = ?10, modified = ?11, owner = ?12
         WHERE id = ?1"
    };
    tx.execute(sql, values).map_err(backend)?;
    let next = next_event_seq(tx)?;
    let mut events = Vec::with_capacity(write.changes.len());
    for (offset, change) in write.changes.into_iter().enumerate() {
        let seq = next + i64::try_from(offset).unwrap_or(0);
        let subject = Subject::of_identity(&identity);
        insert_event(tx, seq, write.at, &subject, &change, &write.origin)?;
        events.push(DirectoryEvent {
            id: DirectoryEventId(seq.unsigned_abs()),
            at: write.at,
            subject,
            change,
            origin: write.origin.clone(),
        });
    }
    Ok(Committed { identity, events })
}

/// Raw rows of a listing, with raw memberships when asked for.
type ListedRows = Vec<(IdentityRow, Vec<(String, String)>)>;

impl SqliteDirectory {
    /// One read transaction for a page of identities and, if asked, the
    /// groups of each (a second reader acquisition per request would halve
    /// lookup throughput under load).
    fn query_identities(&self, query: &IdentityQuery, with_groups: bool) -> StoreResult<(usize, ListedRows)> {
        let (cond, arg): (&str, Option<String>) = match &query.filter {
            IdentityFilter::All => ("1 = 1", None),
            IdentityFilter::UserNameEq(n) => ("user_name_lc = ?1", Some(n.to_lowercase())),
            IdentityFilter::ExternalIdEq(e) => ("external_id = ?1", Some(e.clone())),
            IdentityFilter::IdEq(id) => ("id = ?1", Some(id.to_string())),
            // Non-human kinds are spelled out so the partial index applies.
            IdentityFilter::KindEq(kind) => match kind {
                lockstep_domain::IdentityKind::Human => ("kind = ?1", Some(kind.as_str().to_owned())),
                _ => ("kind = ?1 AND kind <> 'human'", Some(kind.as_str().to_owned())),
            },
        };
        let where_ = format!("status <> 'deprovisioned' AND {cond}");
        let count_sql = format!("SELECT COUNT(*) FROM identities WHERE {where_}");
        let page_sql = format!(
            "SELECT {IDENTITY_COLUMNS} FROM identities WHERE {where_} ORDER BY seq LIMIT {} OFFSET {}",
            query.limit, query.offset
        );
        let (total, rows) = self.pool.read(|c| {
            let args: Vec<&dyn rusqlite::ToSql> = match &arg {
                Some(a) => vec![a],
                None => vec![],
            };
            let mut stmt = c.prepare_cached(&page_sql)?;
            let rows = stmt.query_map(args.as_slice(), identity_row)?.collect::<Result<Vec<_>, _>>()?;
            // A first page that is not full already holds every match (the
            // common `userName eq` lookup): no second query for the total.
            let total = if query.offset == 0 && rows.len() < query.limit {
                i64::try_from(rows.len()).unwrap_or(i64::MAX)
            } else {
                c.query_row(&count_sql, args.as_slice(), |r| r.get(0))?
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
    fn commit_identity(&self, write: IdentityWrite) -> StoreResult<Committed> {
        let mut conn = lock(&self.pool.writer)?;
        let tx = conn.transaction().map_err(backend)?;
        let committed = write_identity(&tx, write)?;
        tx.commit().map_err(backend)?;
        Ok(committed)
    }

    fn commit_identities(&self, writes: Vec<IdentityWrite>) -> StoreResult<Vec<StoreResult<Committed>>> {
        let mut conn = lock(&self.pool.writer)?;
        let mut tx = conn.transaction().map_err(backend)?;
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            // A savepoint per write: a conflict undoes that write only.
            let sp = tx.savepoint().map_err(backend)?;
            let result = write_identity(&sp, write);
            if result.is_ok() {
                sp.commit().map_err(backend)?;
            } // dropping an uncommitted savepoint rolls it back
            results.push(result);
        }
        tx.commit().map_err(backend)?;
        Ok(results)
    }

    fn identity(&self, id: IdentityId) -> StoreResult<Option<Identity>> {
        let sql = format!("SELECT {IDENTITY_COLUMNS} FROM identities WHERE id = ?1");
        self.pool
            .read(|c| c.query_row(&sql, [id.to_string()], identity_row).optional())?
            .map(IdentityRow::decode)
            .transpose()
    }

    fn live_identity_by_user_name(&self, user_name: &str) -> StoreResult<Option<Identity>> {
        let sql = format!(
            "SELECT {IDENTITY_COLUMNS} FROM identities WHERE user_name_lc = ?1 AND status <> 'deprovisioned'"
        );
        self.pool
            .read(|c| c.query_row(&sql, [user_name.to_lowercase()], identity_row).optional())?
            .map(IdentityRow::decode)
            .transpose()
    }

    fn deleted_user_name_exists(&self, user_name: &str) -> StoreResult<bool> {
        self.pool.read(|c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM identities WHERE user_name_lc = ?1 AND status = 'deprovisioned')",
                [user_name.to_lowercase()],
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

    fn commit_group(&self, write: GroupWrite) -> StoreResult<CommittedGroup> {
        let mut conn = lock(&self.pool.writer)?;
        let tx = conn.transaction().map_err(backend)?;
        let committed = crate::groups::write_group(&tx, write)?;
        tx.commit().map_err(backend)?;
        Ok(committed)
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
        let after = after.map_or(0, |a| seq_to_sql(a.0));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.pool.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, at, subject_type, subject, subject_name, identity_kind, change, detail, source, client, source_ref
                 FROM directory_events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            stmt.query_map(params![after, limit], |r| {
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
                })
            })?
            .collect::<Result<Vec<_>, _>>()
        })?;
        rows.into_iter().map(EventRow::decode).collect()
    }
}
