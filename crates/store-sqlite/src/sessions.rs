//! `sessions.db`: sessions, the bridge cursor, the audit chain, API clients.

use std::path::Path;

use lockstep_domain::{
    Actor, ApiClient, AuditEntry, AuditKind, AuditRecord, ChainHash, ClientId, CredentialKind,
    DirectoryEventId, IdentityId, Scope, Session, SessionId, SessionState, Timestamp, Token, TokenFormat,
    TokenHash, TokenKind,
};
use lockstep_store::{
    CredentialStore, DurableTicket, LiveSession, SessionBatch, SessionStore, StoreError, StoreResult, seal,
};
use rusqlite::{OptionalExtension, Row, Transaction, TransactionBehavior, params};

use crate::conn::{Cached, Durability, Pool, Schema, Tuning, backend, lock};
use lockstep_store::SessionUpdate;
use lockstep_store::codec::{StateColumns, corrupt, decode_state, encode_state, parse, seq_to_sql};
use std::collections::HashMap;
use std::collections::hash_map::Entry;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id             TEXT PRIMARY KEY,
    identity       TEXT NOT NULL,
    kind           TEXT NOT NULL,
    format         TEXT NOT NULL,
    issued_to      TEXT,
    user_name      TEXT NOT NULL,
    claims_version INTEGER NOT NULL,
    issued_at      INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    last_seen      INTEGER NOT NULL,
    state          TEXT NOT NULL,
    -- When it was revoked or suspended; the revocation reason or the
    -- suspension condition; the directory event that caused it; when a
    -- suspension turns into a revocation.
    state_at       INTEGER,
    reason         TEXT,
    cause          INTEGER,
    until          INTEGER
);
CREATE INDEX IF NOT EXISTS sessions_identity ON sessions (identity);
-- Suspensions by deadline: a timer asks for the due ones every second.
CREATE INDEX IF NOT EXISTS sessions_due ON sessions (until) WHERE state = 'suspended';
-- Retention: what expired, or was revoked, long enough ago to purge.
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at);
CREATE INDEX IF NOT EXISTS sessions_revoked ON sessions (state_at) WHERE state = 'revoked';
-- The secrets of sessions, by hash; the secrets themselves are never stored.
CREATE TABLE IF NOT EXISTS tokens (
    hash       BLOB PRIMARY KEY,
    session    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    retired_at INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tokens_session ON tokens (session);
CREATE TRIGGER IF NOT EXISTS sessions_revoked_is_terminal BEFORE UPDATE ON sessions
    WHEN OLD.state = 'revoked'
    BEGIN SELECT RAISE(ABORT, 'a revoked session cannot change'); END;
CREATE TABLE IF NOT EXISTS bridge_cursor (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    consumed INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq             INTEGER PRIMARY KEY,
    at              INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    identity        TEXT,
    user_name       TEXT,
    session         TEXT,
    directory_event INTEGER,
    actor           TEXT NOT NULL,
    detail          TEXT NOT NULL,
    prev_hash       BLOB NOT NULL,
    hash            BLOB NOT NULL
);
-- The reach report of a directory event reads the records citing it.
CREATE INDEX IF NOT EXISTS audit_directory_event ON audit (directory_event) WHERE directory_event IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_append_only_u BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_d BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TABLE IF NOT EXISTS clients (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    name_key    TEXT NOT NULL UNIQUE,
    secret_hash BLOB NOT NULL UNIQUE,
    scopes      TEXT NOT NULL,
    created     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS admin_token (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    token_hash BLOB NOT NULL
);
";

/// `PRAGMA user_version` of this schema. Version 1 added the unique
/// client name key; version 2 suspension, last use, the policy hash and
/// the audit index by directory event; version 3 tokens of their own
/// (refresh rotation, credentials, JWTs); version 4 Shared Signals streams
/// and the outbox (`signals.rs`); version 5 each signal stored once with
/// per-stream cursors and deliveries.
const SCHEMA_VERSION: i32 = 5;

const SESSION_COLUMNS: &str = "id, identity, kind, format, issued_to, user_name, claims_version, issued_at, expires_at, state, state_at, reason, cause, until, last_seen";

const TOKEN_COLUMNS: &str = "hash, session, kind, issued_at, expires_at, retired_at";

/// Suspensions whose deadline passed (a timer asks every second). Forced
/// onto the partial index: with `ORDER BY rowid` the planner preferred
/// scanning every session, a second of CPU per second at ten million.
const SUSPENSIONS_DUE: &str = "FROM sessions INDEXED BY sessions_due
     WHERE state = 'suspended' AND until <= ?1 AND expires_at > ?1 ORDER BY rowid";

/// Sessions past retention (expired, or revoked, before ?1), at most ?2.
const PURGEABLE: &str = "SELECT id FROM sessions INDEXED BY sessions_expiry WHERE expires_at < ?1
     UNION SELECT id FROM sessions INDEXED BY sessions_revoked WHERE state = 'revoked' AND state_at < ?1
     LIMIT CAST(?2 AS INTEGER)";

/// The session-authority role (and Lockstep's own credentials) on SQLite.
#[derive(Debug)]
pub struct SqliteSessions {
    pool: Pool,
}

impl SqliteSessions {
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Waits until every commit made so far is on stable storage (writes
    /// outside a session batch: streams, acknowledgements).
    pub(crate) fn sync_now(&self) -> StoreResult<()> {
        self.pool.wait_durable(self.pool.committed())
    }

    /// Opens (creating if needed) the session database at `path`. With
    /// [`Durability::Full`] commits are fsynced outside the writer lock
    /// (see [`SessionStore::commit`]): the authority's next batch commits
    /// while the previous one's fsync runs.
    pub fn open(path: &Path, durability: Durability) -> StoreResult<Self> {
        let tuning = Tuning { cache_kib: 8 * 1024, reader_cache_kib: 2 * 1024, explicit_sync: true };
        let pool = Pool::open(
            path,
            durability,
            Schema { sql: SCHEMA, version: SCHEMA_VERSION, upgrades: &[] },
            tuning,
        )?;
        lock(&pool.writer)?.execute_batch(crate::signals::SCHEMA).map_err(backend)?;
        Ok(Self { pool })
    }
}

/// A session row, decoded in the row callback without copying its text
/// columns (a bridge step reads a hundred thousand of them).
fn session_row(r: &Row<'_>) -> rusqlite::Result<StoreResult<Session>> {
    let text = |i: usize| r.get_ref(i).and_then(|v| v.as_str().map_err(Into::into));
    let opt_text = |i: usize| r.get_ref(i).and_then(|v| v.as_str_or_null().map_err(Into::into));
    let decoded = || -> StoreResult<Session> {
        let get = |i: usize| text(i).map_err(crate::conn::backend);
        let get_opt = |i: usize| opt_text(i).map_err(crate::conn::backend);
        let int = |i: usize| r.get::<_, i64>(i).map_err(crate::conn::backend);
        let opt_int = |i: usize| r.get::<_, Option<i64>>(i).map_err(crate::conn::backend);
        Ok(Session {
            id: parse::<SessionId>("session id", get(0)?)?,
            identity: parse::<IdentityId>("identity id", get(1)?)?,
            kind: parse::<CredentialKind>("credential kind", get(2)?)?,
            format: parse::<TokenFormat>("token format", get(3)?)?,
            issued_to: get_opt(4)?.map(|c| parse::<ClientId>("client id", c)).transpose()?,
            user_name: get(5)?.to_owned(),
            claims_version: int(6)?.unsigned_abs(),
            issued_at: Timestamp(int(7)?),
            expires_at: Timestamp(int(8)?),
            last_seen: Timestamp(int(14)?),
            state: decode_state(get(9)?, opt_int(10)?, get_opt(11)?, opt_int(12)?, opt_int(13)?)?,
        })
    };
    Ok(decoded())
}

/// Live sessions a start-up reader hands over at a time: about 80 KB, under
/// glibc's initial mmap threshold (a freed mmapped chunk raises it, and
/// later large buffers then stay in the heap after they are freed).
const LIVE_CHUNK: usize = 1_024;

/// What the introspection map keeps of a session row (see
/// `for_each_live_entry`).
fn live_session_row(r: &Row<'_>) -> rusqlite::Result<StoreResult<LiveSession>> {
    let text = |i: usize| r.get_ref(i).and_then(|v| v.as_str().map_err(Into::into));
    let decoded = || -> StoreResult<LiveSession> {
        let get = |i: usize| text(i).map_err(crate::conn::backend);
        let int = |i: usize| r.get::<_, i64>(i).map_err(crate::conn::backend);
        let issued_to = r
            .get_ref(3)
            .and_then(|v| v.as_str_or_null().map_err(Into::into))
            .map_err(crate::conn::backend)?;
        Ok(LiveSession {
            id: parse::<SessionId>("session id", get(0)?)?,
            identity: parse::<IdentityId>("identity id", get(1)?)?,
            kind: parse::<CredentialKind>("credential kind", get(2)?)?,
            issued_to: issued_to.map(|c| parse::<ClientId>("client id", c)).transpose()?,
            issued_at: Timestamp(int(4)?),
            expires_at: Timestamp(int(5)?),
            last_seen: Timestamp(int(6)?),
            suspended: get(7)? == "suspended",
        })
    };
    Ok(decoded())
}

/// A token row.
fn token_row(r: &Row<'_>) -> rusqlite::Result<StoreResult<Token>> {
    let decoded = || -> StoreResult<Token> {
        let hash =
            r.get_ref(0).and_then(|v| v.as_blob().map_err(Into::into)).map_err(crate::conn::backend)?;
        let session =
            r.get_ref(1).and_then(|v| v.as_str().map_err(Into::into)).map_err(crate::conn::backend)?;
        let kind = r.get_ref(2).and_then(|v| v.as_str().map_err(Into::into)).map_err(crate::conn::backend)?;
        let int = |i: usize| r.get::<_, i64>(i).map_err(crate::conn::backend);
        Ok(Token {
            hash: TokenHash(hash32(hash)?),
            session: parse::<SessionId>("session id", session)?,
            kind: parse::<TokenKind>("token kind", kind)?,
            issued_at: Timestamp(int(3)?),
            expires_at: Timestamp(int(4)?),
            retired_at: r.get::<_, Option<i64>>(5).map_err(crate::conn::backend)?.map(Timestamp),
        })
    };
    Ok(decoded())
}

fn hash32(bytes: &[u8]) -> StoreResult<[u8; 32]> {
    bytes.try_into().map_err(|_| corrupt("hash is not 32 bytes"))
}

struct AuditRow {
    seq: i64,
    at: i64,
    kind: String,
    identity: Option<String>,
    user_name: Option<String>,
    session: Option<String>,
    directory_event: Option<i64>,
    actor: String,
    detail: String,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

const AUDIT_COLUMNS: &str =
    "seq, at, kind, identity, user_name, session, directory_event, actor, detail, prev_hash, hash";

fn audit_row(r: &Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        seq: r.get(0)?,
        at: r.get(1)?,
        kind: r.get(2)?,
        identity: r.get(3)?,
        user_name: r.get(4)?,
        session: r.get(5)?,
        directory_event: r.get(6)?,
        actor: r.get(7)?,
        detail: r.get(8)?,
        prev_hash: r.get(9)?,
        hash: r.get(10)?,
    })
}

impl AuditRow {
    fn decode(self) -> StoreResult<AuditRecord> {
        Ok(AuditRecord {
            seq: self.seq.unsigned_abs(),
            entry: AuditEntry {
                at: Timestamp(self.at),
                kind: parse::<AuditKind>("audit kind", &self.kind)?,
                identity: self.identity.map(|i| parse::<IdentityId>("identity id", &i)).transpose()?,
                user_name: self.user_name,
                session: self.session.map(|s| parse::<SessionId>("session id", &s)).transpose()?,
                directory_event: self.directory_event.map(|e| DirectoryEventId(e.unsigned_abs())),
                actor: parse::<Actor>("actor", &self.actor)?,
                detail: self.detail,
            },
            prev_hash: ChainHash(hash32(&self.prev_hash)?),
            hash: ChainHash(hash32(&self.hash)?),
        })
    }
}

/// Appends entries to the chain inside `tx`.
fn seal_all(tx: &Transaction<'_>, entries: Vec<AuditEntry>) -> StoreResult<Vec<AuditRecord>> {
    let head: Option<(i64, Vec<u8>)> = tx
        .cached_row("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(backend)?;
    let (mut seq, mut prev) = match head {
        Some((seq, hash)) => (seq.unsigned_abs(), ChainHash(hash32(&hash)?)),
        None => (0, ChainHash::GENESIS),
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        seq += 1;
        let hash = seal(&prev, seq, &entry);
        out.push(AuditRecord { seq, entry, prev_hash: prev, hash });
        prev = hash;
    }
    for chunk in out.chunks(CHUNK) {
        let row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        let sql = format!(
            "INSERT INTO audit (seq, at, kind, identity, user_name, session, directory_event, actor, detail, prev_hash, hash)
             VALUES {}",
            vec![row; chunk.len()].join(", ")
        );
        let mut values: Vec<rusqlite::types::Value> = Vec::with_capacity(chunk.len() * 11);
        for r in chunk {
            use rusqlite::types::Value as V;
            let text = |s: Option<String>| s.map_or(V::Null, V::Text);
            let e = &r.entry;
            values.extend([
                V::Integer(seq_to_sql(r.seq)),
                V::Integer(e.at.micros()),
                V::Text(e.kind.as_str().to_owned()),
                text(e.identity.map(|i| i.to_string())),
                text(e.user_name.clone()),
                text(e.session.map(|s| s.to_string())),
                e.directory_event.map_or(V::Null, |d| V::Integer(seq_to_sql(d.0))),
                V::Text(e.actor.to_string()),
                V::Text(e.detail.clone()),
                V::Blob(r.prev_hash.0.to_vec()),
                V::Blob(r.hash.0.to_vec()),
            ]);
        }
        tx.prepare_cached(&sql)
            .and_then(|mut stmt| stmt.execute(rusqlite::params_from_iter(values)))
            .map_err(backend)?;
    }
    Ok(out)
}

/// Inserts a session inside an open transaction.
fn insert(tx: &Transaction<'_>, session: &Session) -> StoreResult<()> {
    let (state, state_at, reason, cause, until) = encode_state(&session.state);
    tx.prepare_cached(&format!(
        "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
    ))
    .and_then(|mut stmt| {
        stmt.execute(params![
            session.id.to_string(),
            session.identity.to_string(),
            session.kind.as_str(),
            session.format.as_str(),
            session.issued_to.map(|c| c.to_string()),
            session.user_name,
            seq_to_sql(session.claims_version),
            session.issued_at.micros(),
            session.expires_at.micros(),
            state,
            state_at,
            reason,
            cause,
            until,
            session.last_seen.micros(),
        ])
    })
    .map(|_| ())
    .map_err(|e| conflict(e, "session", session.id.to_string()))
}

/// Rows per multi-row statement: one statement per row costs more than
/// the row itself when a directory change revokes a hundred thousand
/// sessions.
const CHUNK: usize = 32;

/// Ids per `IN (…)` list when reading many rows at once.
const IN_CHUNK: usize = 500;

/// Applies session updates: the last update of each session wins (a later
/// expiry-less update keeps an earlier shortened expiry), and updates with
/// the same values share one statement per [`CHUNK`] sessions.
fn apply_updates(tx: &Transaction<'_>, updates: &[SessionUpdate]) -> StoreResult<()> {
    let mut last: HashMap<SessionId, (SessionState, Option<Timestamp>)> =
        HashMap::with_capacity(updates.len());
    let mut order = Vec::with_capacity(updates.len());
    for u in updates {
        match last.entry(u.session) {
            Entry::Vacant(e) => {
                order.push(u.session);
                e.insert((u.state, u.expires_at));
            }
            Entry::Occupied(mut e) => {
                let expires_at = u.expires_at.or(e.get().1);
                e.insert((u.state, expires_at));
            }
        }
    }
    type Key = (StateColumns, Option<i64>);
    let mut groups: Vec<(Key, Vec<String>)> = Vec::new();
    let mut index: HashMap<Key, usize> = HashMap::new();
    for id in order {
        let Some((state, expires_at)) = last.get(&id) else { continue };
        let key = (encode_state(state), expires_at.map(|t| t.micros()));
        let slot = *index.entry(key).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[slot].1.push(id.to_string());
    }
    for (((state, state_at, reason, cause, until), expires_at), ids) in groups {
        // `expires_at` is assigned only when it changes: SQLite rewrites the
        // entry of every index whose column the SET names, even to the same
        // value, and `sessions_expiry` would cost a revocation a page read
        // and a page written at a random place.
        let (expiry, expiry_value) = match &expires_at {
            Some(at) => (", expires_at = ?", Some(at as &dyn rusqlite::ToSql)),
            None => ("", None),
        };
        for chunk in ids.chunks(CHUNK) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "UPDATE sessions SET state = ?, state_at = ?, reason = ?, cause = ?, until = ?{expiry}
                     WHERE id IN ({marks}) AND state <> 'revoked'"
            );
            let values: [&dyn rusqlite::ToSql; 5] = [&state, &state_at, &reason, &cause, &until];
            let params = values
                .into_iter()
                .chain(expiry_value)
                .chain(chunk.iter().map(|id| id as &dyn rusqlite::ToSql));
            let changed = tx
                .prepare_cached(&sql)
                .and_then(|mut stmt| stmt.execute(rusqlite::params_from_iter(params)))
                .map_err(backend)?;
            if changed < chunk.len() {
                // Revoked sessions are left alone; a missing one fails the batch.
                for id in chunk {
                    let exists: bool = tx
                        .cached_row("SELECT EXISTS (SELECT 1 FROM sessions WHERE id = ?1)", [id], |r| {
                            r.get(0)
                        })
                        .map_err(backend)?;
                    if !exists {
                        return Err(StoreError::NotFound(format!("session {id}")));
                    }
                }
            }
        }
    }
    Ok(())
}

/// One session batch in its own transaction on the writer.
fn apply_batch(conn: &mut rusqlite::Connection, batch: SessionBatch) -> StoreResult<Vec<AuditRecord>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
    if let Some(new) = batch.consumed {
        let old: Option<i64> = tx
            .cached_row("SELECT consumed FROM bridge_cursor WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(backend)?;
        if old.is_some_and(|old| seq_to_sql(new.0) <= old) {
            return Ok(Vec::new());
        }
    }
    for session in &batch.inserts {
        insert(&tx, session)?;
    }
    for token in &batch.tokens {
        let known: bool = tx
            .cached_row(
                "SELECT EXISTS (SELECT 1 FROM sessions WHERE id = ?1)",
                [token.session.to_string()],
                |r| r.get(0),
            )
            .map_err(backend)?;
        if !known {
            return Err(StoreError::NotFound(format!("session {}", token.session)));
        }
        tx.cached_exec(
            &format!("INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
            params![
                token.hash.0.as_slice(),
                token.session.to_string(),
                token.kind.as_str(),
                token.issued_at.micros(),
                token.expires_at.micros(),
                token.retired_at.map(|t| t.micros()),
            ],
        )
        .map_err(|e| conflict(e, "token", format!("{:?}", token.hash)))?;
    }
    for update in &batch.token_updates {
        let changed = tx
            .cached_exec(
                "UPDATE tokens SET retired_at = COALESCE(retired_at, ?2), expires_at = MIN(expires_at, COALESCE(?3, expires_at))
                 WHERE hash = ?1",
                params![update.hash.0.as_slice(), update.retired_at.map(|t| t.micros()), update.expires_at.map(|t| t.micros())],
            )
            .map_err(backend)?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("token {:?}", update.hash)));
        }
    }
    apply_updates(&tx, &batch.updates)?;
    for (session, seen) in &batch.last_seen {
        tx.cached_exec(
            "UPDATE sessions SET last_seen = ?2 WHERE id = ?1 AND state <> 'revoked' AND last_seen < ?2",
            params![session.to_string(), seen.micros()],
        )
        .map_err(backend)?;
    }
    if let Some(new) = batch.consumed {
        tx.cached_exec(
            "INSERT INTO bridge_cursor (id, consumed) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET consumed = excluded.consumed",
            [seq_to_sql(new.0)],
        )
        .map_err(backend)?;
    }
    if let Some(policy) = &batch.policy {
        tx.cached_exec(
            "INSERT INTO meta (key, value) VALUES ('policy', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [policy],
        )
        .map_err(backend)?;
    }
    crate::signals::enqueue(&tx, &batch.outbox)?;
    crate::signals::index(&tx, &batch.status_indexes)?;
    let sealed = seal_all(&tx, batch.audit)?;
    tx.commit().map_err(backend)?;
    Ok(sealed)
}

fn conflict(e: rusqlite::Error, field: &'static str, value: String) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            StoreError::Conflict { field, value }
        }
        other => backend(other),
    }
}

impl SessionStore for SqliteSessions {
    fn signals(&self) -> Option<&dyn lockstep_store::SignalStore> {
        Some(self)
    }

    fn status_indexes(&self) -> StoreResult<Vec<(u32, lockstep_domain::SessionId)>> {
        crate::signals::indexes(self)
    }

    fn session(&self, id: SessionId) -> StoreResult<Option<Session>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1");
        self.pool.read(|c| c.cached_row(&sql, [id.to_string()], session_row).optional())?.transpose()
    }

    fn token(&self, hash: &TokenHash) -> StoreResult<Option<Token>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1");
        self.pool.read(|c| c.cached_row(&sql, [hash.0.as_slice()], token_row).optional())?.transpose()
    }

    fn tokens_of(&self, session: SessionId) -> StoreResult<Vec<Token>> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE session = CAST(?1 AS TEXT) ORDER BY issued_at, hash"
        );
        let rows = self.pool.read(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            stmt.query_map([session.to_string()], token_row)?.collect::<Result<Vec<_>, _>>()
        })?;
        rows.into_iter().collect()
    }

    fn for_each_live_token(&self, now: Timestamp, f: &mut dyn FnMut(Token)) -> StoreResult<()> {
        // One sequential scan of the tokens table; a token's expiry is never
        // later than its session's, and the caller drops tokens of revoked
        // sessions (see the trait).
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens NOT INDEXED WHERE kind IN ('access', 'api_key') AND expires_at > ?1"
        );
        self.stream(&sql, now, token_row, f)
    }

    fn purge(&self, before: Timestamp, limit: usize) -> StoreResult<usize> {
        let mut conn = lock(&self.pool.writer)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let ids: Vec<String> = {
            let mut stmt = tx.prepare_cached(PURGEABLE).map_err(backend)?;
            stmt.query_map(params![before.micros(), limit], |r| r.get(0))
                .and_then(|rows| rows.collect::<Result<Vec<String>, _>>())
                .map_err(backend)?
        };
        for id in &ids {
            tx.cached_exec("DELETE FROM tokens WHERE session = ?1", [id]).map_err(backend)?;
            tx.cached_exec("DELETE FROM sessions WHERE id = ?1", [id]).map_err(backend)?;
        }
        tx.commit().map_err(backend)?;
        Ok(ids.len())
    }

    fn sessions_of(&self, identity: IdentityId) -> StoreResult<Vec<Session>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE identity = CAST(?1 AS TEXT) ORDER BY rowid"
        );
        let rows = self.pool.read(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            stmt.query_map([identity.to_string()], session_row)?.collect::<Result<Vec<_>, _>>()
        })?;
        rows.into_iter().collect()
    }

    fn live_sessions_of(&self, identities: &[IdentityId], now: Timestamp) -> StoreResult<Vec<Session>> {
        let mut rows = Vec::new();
        self.pool.read(|c| {
            for chunk in identities.chunks(IN_CHUNK) {
                let marks = vec!["?"; chunk.len()].join(", ");
                let sql = format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions INDEXED BY sessions_identity
                     WHERE identity IN ({marks}) AND state <> 'revoked' AND expires_at > ?"
                );
                let mut stmt = c.prepare_cached(&sql)?;
                let ids: Vec<String> = chunk.iter().map(ToString::to_string).collect();
                let params = ids
                    .iter()
                    .map(|id| id as &dyn rusqlite::ToSql)
                    .chain(std::iter::once(&now.0 as &dyn rusqlite::ToSql));
                rows.extend(
                    stmt.query_map(rusqlite::params_from_iter(params), session_row)?
                        .collect::<Result<Vec<_>, _>>()?,
                );
            }
            Ok(())
        })?;
        rows.into_iter().collect()
    }

    fn for_each_live_entry(&self, now: Timestamp, f: &mut dyn FnMut(LiveSession)) -> StoreResult<()> {
        // Decoding rows is most of start-up at ten million sessions, and
        // one reader decodes on one core: the two halves of the rowid range
        // are read side by side, each on its own reader, and handed to the
        // caller in chunks. Each half is its own read transaction; start-up
        // reads before anything writes, and a caller reading while others
        // write gets every session live in either snapshot.
        let (first, last): (i64, i64) = self.pool.read(|c| {
            c.cached_row("SELECT IFNULL(MIN(rowid), 0), IFNULL(MAX(rowid), 0) FROM sessions", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
        })?;
        let middle = first + (last - first) / 2;
        let sql = "SELECT id, identity, kind, issued_to, issued_at, expires_at, last_seen, state \
                   FROM sessions NOT INDEXED \
                   WHERE rowid BETWEEN ?2 AND ?3 AND state <> 'revoked' AND expires_at > ?1";
        let (chunks, received) = std::sync::mpsc::sync_channel::<StoreResult<Vec<LiveSession>>>(8);
        std::thread::scope(|scope| {
            for (from, to) in [(first, middle), (middle + 1, last)] {
                let chunks = chunks.clone();
                scope.spawn(move || {
                    let read = self.pool.read(|c| {
                        let mut stmt = c.prepare_cached(sql)?;
                        let mut rows = stmt.query(params![now.micros(), from, to])?;
                        let mut chunk = Vec::with_capacity(LIVE_CHUNK);
                        while let Some(row) = rows.next()? {
                            match live_session_row(row)? {
                                Ok(entry) => chunk.push(entry),
                                Err(e) => return Ok(Err(e)),
                            }
                            if chunk.len() == LIVE_CHUNK {
                                let full = std::mem::replace(&mut chunk, Vec::with_capacity(LIVE_CHUNK));
                                if chunks.send(Ok(full)).is_err() {
                                    return Ok(Ok(Vec::new()));
                                }
                            }
                        }
                        Ok(Ok(chunk))
                    });
                    // The last partial chunk, or what went wrong.
                    let last = match read {
                        Ok(Ok(rest)) => Ok(rest),
                        Ok(Err(e)) | Err(e) => Err(e),
                    };
                    let _ = chunks.send(last);
                });
            }
            drop(chunks);
            let mut failure = None;
            for chunk in received {
                match chunk {
                    Ok(entries) => entries.into_iter().for_each(&mut *f),
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
            failure.map_or(Ok(()), Err)
        })
    }

    fn for_each_live(&self, now: Timestamp, f: &mut dyn FnMut(Session)) -> StoreResult<()> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions NOT INDEXED WHERE state <> 'revoked' AND expires_at > ?1"
        );
        self.stream(&sql, now, session_row, f)
    }

    fn apply(&self, batch: SessionBatch) -> StoreResult<Vec<AuditRecord>> {
        // A replayable batch is not waited for: in WAL mode it is ordered
        // before every later commit, whose fsync makes it durable too, and
        // it survives a crash of the process either way.
        let replayable = batch.replayable;
        let (records, ticket) = self.commit(batch)?;
        if !replayable {
            self.wait_durable(ticket)?;
        }
        Ok(records)
    }

    fn commit(&self, batch: SessionBatch) -> StoreResult<(Vec<AuditRecord>, DurableTicket)> {
        let mut conn = lock(&self.pool.writer)?;
        let records = apply_batch(&mut conn, batch)?;
        Ok((records, DurableTicket(self.pool.committed())))
    }

    fn wait_durable(&self, ticket: DurableTicket) -> StoreResult<()> {
        self.pool.wait_durable(ticket.0)
    }

    fn suspensions_due(&self, now: Timestamp) -> StoreResult<Vec<Session>> {
        let sql = format!("SELECT {SESSION_COLUMNS} {SUSPENSIONS_DUE}");
        let rows = self.pool.read(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            stmt.query_map([now.micros()], session_row)?.collect::<Result<Vec<_>, _>>()
        })?;
        rows.into_iter().collect()
    }

    fn policy(&self) -> StoreResult<Option<String>> {
        self.pool.read(|c| {
            c.cached_row("SELECT value FROM meta WHERE key = 'policy'", [], |r| r.get(0)).optional()
        })
    }

    fn audit_of_events(&self, events: &[DirectoryEventId]) -> StoreResult<Vec<AuditRecord>> {
        let mut rows = self.pool.read(|c| {
            let mut stmt =
                c.prepare_cached(&format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE directory_event = ?1"))?;
            let mut out = Vec::new();
            for event in events {
                out.extend(stmt.query_map([seq_to_sql(event.0)], audit_row)?.collect::<Result<Vec<_>, _>>()?);
            }
            Ok(out)
        })?;
        rows.sort_by_key(|r| r.seq);
        rows.dedup_by_key(|r| r.seq);
        rows.into_iter().map(AuditRow::decode).collect()
    }

    fn consumed(&self) -> StoreResult<Option<DirectoryEventId>> {
        let v: Option<i64> = self.pool.read(|c| {
            c.cached_row("SELECT consumed FROM bridge_cursor WHERE id = 1", [], |r| r.get(0)).optional()
        })?;
        Ok(v.map(|v| DirectoryEventId(v.unsigned_abs())))
    }

    fn audit_after(&self, after: u64, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.pool.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT CAST(?2 AS INTEGER)"
            ))?;
            stmt.query_map(params![seq_to_sql(after), limit], audit_row)?.collect::<Result<Vec<_>, _>>()
        })?;
        rows.into_iter().map(AuditRow::decode).collect()
    }
}

fn name_taken(tx: &Transaction<'_>, name: &str) -> bool {
    tx.cached_row(
        "SELECT EXISTS (SELECT 1 FROM clients WHERE name_key = ?1)",
        [lockstep_domain::text::fold(name)],
        |r| r.get(0),
    )
    .unwrap_or(false)
}

impl CredentialStore for SqliteSessions {
    fn insert_client(&self, client: &ApiClient, audit: AuditEntry) -> StoreResult<()> {
        let mut conn = lock(&self.pool.writer)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
        let scopes: Vec<&str> = client.scopes.iter().map(|s| s.as_str()).collect();
        tx.cached_exec(
            "INSERT INTO clients (id, name, name_key, secret_hash, scopes, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                client.id.to_string(),
                client.name,
                lockstep_domain::text::fold(&client.name),
                client.secret_hash.0.as_slice(),
                scopes.join(" "),
                client.created.micros()
            ],
        )
        .map_err(|e| match conflict(e, "client id", client.id.to_string()) {
            StoreError::Conflict { .. } if name_taken(&tx, &client.name) => {
                StoreError::Conflict { field: "name", value: client.name.clone() }
            }
            other => other,
        })?;
        seal_all(&tx, vec![audit])?;
        tx.commit().map_err(backend)?;
        let ticket = self.pool.committed();
        drop(conn);
        self.pool.wait_durable(ticket)
    }

    fn clients(&self) -> StoreResult<Vec<ApiClient>> {
        let rows: Vec<(String, String, Vec<u8>, String, i64)> = self.pool.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, name, secret_hash, scopes, created FROM clients ORDER BY rowid",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?.collect()
        })?;
        rows.into_iter()
            .map(|(id, name, hash, scopes, created)| {
                Ok(ApiClient {
                    id: parse::<ClientId>("client id", &id)?,
                    name,
                    secret_hash: TokenHash(hash32(&hash)?),
                    scopes: scopes
                        .split_whitespace()
                        .map(|s| parse::<Scope>("scope", s))
                        .collect::<StoreResult<_>>()?,
                    created: Timestamp(created),
                })
            })
            .collect()
    }

    fn admin_token_hash(&self) -> StoreResult<Option<TokenHash>> {
        let v: Option<Vec<u8>> = self.pool.read(|c| {
            c.cached_row("SELECT token_hash FROM admin_token WHERE id = 1", [], |r| r.get(0)).optional()
        })?;
        v.map(|h| hash32(&h).map(TokenHash)).transpose()
    }

    fn set_admin_token_hash(&self, hash: TokenHash) -> StoreResult<()> {
        let ticket = {
            let conn = lock(&self.pool.writer)?;
            conn.execute(
                "INSERT INTO admin_token (id, token_hash) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash",
                [hash.0.as_slice()],
            )
            .map_err(backend)?;
            self.pool.committed()
        };
        self.pool.wait_durable(ticket)
    }
}

impl SqliteSessions {
    /// Runs `sql` with `?1 = now` on a reader and hands each decoded row to
    /// `f`, stopping at the first row that does not decode.
    fn stream<T>(
        &self,
        sql: &str,
        now: Timestamp,
        decode: impl Fn(&Row<'_>) -> rusqlite::Result<StoreResult<T>>,
        f: &mut dyn FnMut(T),
    ) -> StoreResult<()> {
        let mut failure = None;
        self.pool.read(|c| {
            let mut stmt = c.prepare_cached(sql)?;
            let mut rows = stmt.query([now.micros()])?;
            while let Some(row) = rows.next()? {
                match decode(row)? {
                    Ok(item) => f(item),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            Ok(())
        })?;
        failure.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The timers' queries read indexes, never every session.
    #[test]
    fn timer_queries_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteSessions::open(&dir.path().join("sessions.db"), Durability::Off).unwrap();
        let plan = |sql: &str| {
            s.pool
                .read(|c| {
                    let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                    let args = [1_i64, 10];
                    let rows = stmt
                        .query_map(rusqlite::params_from_iter(&args[..stmt.parameter_count()]), |r| {
                            r.get::<_, String>(3)
                        })?
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(rows.join("\n"))
                })
                .unwrap()
        };
        let due = plan(&format!("SELECT id {SUSPENSIONS_DUE}"));
        assert!(due.contains("USING INDEX sessions_due") && !due.contains("SCAN sessions"), "{due}");
        let purge = plan(PURGEABLE);
        assert!(!purge.contains("SCAN sessions"), "{purge}");
    }
}
