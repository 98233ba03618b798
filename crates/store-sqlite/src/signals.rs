//! Shared Signals streams and the outbox, in `sessions.db` (so the outbox
//! commits in the transaction of the session change it reports).

use lockstep_domain::{
    ClientId, Delivery, IdentityId, Outgoing, SessionId, Signal, SignalKind, Stream, StreamId, StreamStatus,
    Tiers, Timestamp,
};
use lockstep_store::codec::parse;
use lockstep_store::{Queued, SignalRecord, SignalStore, StoreResult};
use rusqlite::{Row, params};

use crate::conn::{Cached, backend, lock};
use crate::sessions::SqliteSessions;

/// Appended to the sessions schema.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS streams (
    id            TEXT PRIMARY KEY,
    client        TEXT,
    audience      TEXT NOT NULL,
    delivery      TEXT NOT NULL,
    endpoint      TEXT,
    authorization TEXT,
    requested     TEXT NOT NULL,
    status        TEXT NOT NULL,
    reason        TEXT,
    description   TEXT,
    subjects      TEXT NOT NULL DEFAULT '',
    excluded      TEXT NOT NULL DEFAULT '',
    created       INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    stream          TEXT NOT NULL,
    jti             TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    at              INTEGER NOT NULL,
    identity        TEXT,
    user_name       TEXT,
    session         TEXT,
    change          TEXT,
    credential_type TEXT,
    groups          TEXT,
    tiers           TEXT,
    initiator       TEXT NOT NULL,
    reason          TEXT NOT NULL,
    txn             TEXT NOT NULL,
    state           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt    INTEGER NOT NULL DEFAULT 0,
    delivered_at    INTEGER,
    error           TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (stream, seq) WHERE delivered_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_txn ON outbox (txn);
CREATE TABLE IF NOT EXISTS status_indexes (
    idx     INTEGER PRIMARY KEY,
    session TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS received_sets (
    source TEXT NOT NULL,
    jti    TEXT NOT NULL,
    at     INTEGER NOT NULL,
    PRIMARY KEY (source, jti)
) WITHOUT ROWID;
";

const OUTBOX_COLUMNS: &str = "seq, stream, jti, kind, at, identity, user_name, session, change, credential_type, groups, tiers, initiator, reason, txn, state, attempts, delivered_at, error";

/// Records Token Status List indexes inside an open transaction.
pub(crate) fn index(
    tx: &rusqlite::Connection,
    indexes: &[(u32, lockstep_domain::SessionId)],
) -> StoreResult<()> {
    for (idx, session) in indexes {
        tx.cached_exec(
            "INSERT OR IGNORE INTO status_indexes (idx, session) VALUES (?1, ?2)",
            params![i64::from(*idx), session.to_string()],
        )
        .map_err(backend)?;
    }
    Ok(())
}

/// Every status index given out.
pub(crate) fn indexes(s: &SqliteSessions) -> StoreResult<Vec<(u32, SessionId)>> {
    let rows: Vec<(i64, String)> = s.pool().read(|c| {
        let mut stmt = c.prepare_cached("SELECT idx, session FROM status_indexes ORDER BY idx")?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()
    })?;
    rows.into_iter()
        .map(|(idx, session)| {
            Ok((u32::try_from(idx).unwrap_or(u32::MAX), parse::<SessionId>("session id", &session)?))
        })
        .collect()
}

/// Queues signals inside an open transaction.
pub(crate) fn enqueue(tx: &rusqlite::Connection, outgoing: &[Outgoing]) -> StoreResult<()> {
    for o in outgoing {
        let s = &o.signal;
        let (groups, tiers) = match &s.claims {
            Some((groups, tiers)) => (Some(groups.join("\n")), Some(tiers.as_str())),
            None => (None, None),
        };
        tx.cached_exec(
            "INSERT INTO outbox (stream, jti, kind, at, identity, user_name, session, change, credential_type, groups, tiers, initiator, reason, txn, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            params![
                o.stream.to_string(),
                o.jti,
                s.kind.as_str(),
                s.at.micros(),
                s.identity.map(|i| i.to_string()),
                s.user_name,
                s.session.map(|i| i.to_string()),
                s.change,
                s.credential_type,
                groups,
                tiers,
                s.initiator,
                s.reason,
                s.txn,
                s.state,
            ],
        )
        .map_err(backend)?;
    }
    Ok(())
}

type OutboxRow = (
    i64,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<i64>,
    Option<String>,
);

fn outbox_row(r: &Row<'_>) -> rusqlite::Result<OutboxRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
        r.get(12)?,
        r.get(13)?,
        r.get(14)?,
        r.get(15)?,
        r.get(16)?,
        r.get(17)?,
        r.get(18)?,
    ))
}

struct Decoded {
    seq: u64,
    outgoing: Outgoing,
    attempts: u32,
    delivered_at: Option<Timestamp>,
    error: Option<String>,
}

fn decode(row: OutboxRow) -> StoreResult<Decoded> {
    let (
        seq,
        stream,
        jti,
        kind,
        at,
        identity,
        user_name,
        session,
        change,
        credential_type,
        groups,
        tiers,
        initiator,
        reason,
        txn,
        state,
        attempts,
        delivered_at,
        error,
    ) = row;
    let claims = match (groups, tiers) {
        (Some(g), Some(t)) => Some((
            g.split('\n').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            parse::<Tiers>("tiers", &t)?,
        )),
        _ => None,
    };
    Ok(Decoded {
        seq: seq.unsigned_abs(),
        outgoing: Outgoing {
            stream: parse::<StreamId>("stream id", &stream)?,
            jti,
            signal: Signal {
                kind: parse::<SignalKind>("signal kind", &kind)?,
                at: Timestamp(at),
                identity: identity.map(|i| parse::<IdentityId>("identity id", &i)).transpose()?,
                user_name,
                session: session.map(|i| parse::<SessionId>("session id", &i)).transpose()?,
                change,
                credential_type,
                claims,
                initiator,
                reason,
                txn,
                state,
            },
        },
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        delivered_at: delivered_at.map(Timestamp),
        error,
    })
}

type StreamRow = (
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    i64,
);

const STREAM_COLUMNS: &str = "id, client, audience, delivery, endpoint, authorization, requested, status, reason, description, subjects, excluded, created";

fn stream_row(r: &Row<'_>) -> rusqlite::Result<StreamRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
        r.get(12)?,
    ))
}

fn ids(text: &str) -> StoreResult<Vec<IdentityId>> {
    text.split_whitespace().map(|i| parse::<IdentityId>("identity id", i)).collect()
}

fn decode_stream(row: StreamRow) -> StoreResult<Stream> {
    let (
        id,
        client,
        audience,
        delivery,
        endpoint,
        authorization,
        requested,
        status,
        reason,
        description,
        subjects,
        excluded,
        created,
    ) = row;
    Ok(Stream {
        id: parse::<StreamId>("stream id", &id)?,
        client: client.map(|c| parse::<ClientId>("client id", &c)).transpose()?,
        audience,
        delivery: match delivery.as_str() {
            "push" => Delivery::Push { endpoint: endpoint.unwrap_or_default(), authorization },
            _ => Delivery::Poll,
        },
        requested: requested
            .split_whitespace()
            .map(|k| parse::<SignalKind>("signal kind", k))
            .collect::<StoreResult<_>>()?,
        status: parse::<StreamStatus>("stream status", &status)?,
        reason,
        description,
        subjects: ids(&subjects)?,
        excluded: ids(&excluded)?,
        created: Timestamp(created),
    })
}

fn join_ids(ids: &[IdentityId]) -> String {
    ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}

impl SignalStore for SqliteSessions {
    fn streams(&self) -> StoreResult<Vec<Stream>> {
        let rows = self.pool().read(|c| {
            let mut stmt =
                c.prepare_cached(&format!("SELECT {STREAM_COLUMNS} FROM streams ORDER BY created, id"))?;
            stmt.query_map([], stream_row)?.collect::<Result<Vec<_>, _>>()
        })?;
        rows.into_iter().map(decode_stream).collect()
    }

    fn put_stream(&self, s: &Stream) -> StoreResult<()> {
        let (delivery, endpoint, authorization) = match &s.delivery {
            Delivery::Push { endpoint, authorization } => {
                ("push", Some(endpoint.clone()), authorization.clone())
            }
            Delivery::Poll => ("poll", None, None),
        };
        let requested = s.requested.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(" ");
        let conn = lock(&self.pool().writer)?;
        conn.cached_exec(
            &format!("INSERT OR REPLACE INTO streams ({STREAM_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
            params![
                s.id.to_string(),
                s.client.map(|c| c.to_string()),
                s.audience,
                delivery,
                endpoint,
                authorization,
                requested,
                s.status.as_str(),
                s.reason,
                s.description,
                join_ids(&s.subjects),
                join_ids(&s.excluded),
                s.created.micros(),
            ],
        )
        .map_err(backend)?;
        drop(conn);
        self.sync_now()
    }

    fn delete_stream(&self, id: StreamId) -> StoreResult<bool> {
        let mut conn = lock(&self.pool().writer)?;
        let tx = conn.transaction().map_err(backend)?;
        tx.cached_exec("DELETE FROM outbox WHERE stream = ?1 AND delivered_at IS NULL", [id.to_string()])
            .map_err(backend)?;
        let n = tx.cached_exec("DELETE FROM streams WHERE id = ?1", [id.to_string()]).map_err(backend)?;
        tx.commit().map_err(backend)?;
        drop(conn);
        self.sync_now()?;
        Ok(n > 0)
    }

    fn queue(&self, outgoing: Vec<Outgoing>) -> StoreResult<()> {
        let mut conn = lock(&self.pool().writer)?;
        let tx = conn.transaction().map_err(backend)?;
        enqueue(&tx, &outgoing)?;
        tx.commit().map_err(backend)?;
        drop(conn);
        self.sync_now()
    }

    fn pending(&self, stream: StreamId, now: Timestamp, limit: usize) -> StoreResult<Vec<Queued>> {
        // Oldest first, and only up to the first one not yet due: a signal
        // waiting for its retry holds back the ones after it, so a receiver
        // sees a stream's SETs in order.
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS}, next_attempt FROM outbox INDEXED BY outbox_pending
             WHERE stream = ?1 AND delivered_at IS NULL ORDER BY seq LIMIT ?2"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.pool().read(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            stmt.query_map(params![stream.to_string(), limit], |r| {
                Ok((outbox_row(r)?, r.get::<_, i64>(19)?))
            })?
            .collect::<Result<Vec<_>, _>>()
        })?;
        rows.into_iter()
            .take_while(|(_, next)| *next <= now.micros())
            .map(|(r, _)| {
                decode(r).map(|d| Queued { seq: d.seq, outgoing: d.outgoing, attempts: d.attempts })
            })
            .collect()
    }

    fn pending_count(&self, stream: StreamId) -> StoreResult<usize> {
        let n: i64 = self.pool().read(|c| {
            c.cached_row(
                "SELECT COUNT(*) FROM outbox INDEXED BY outbox_pending WHERE stream = ?1 AND delivered_at IS NULL",
                [stream.to_string()],
                |r| r.get(0),
            )
        })?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    fn delivered(&self, stream: StreamId, jtis: &[String], at: Timestamp) -> StoreResult<usize> {
        let mut conn = lock(&self.pool().writer)?;
        let tx = conn.transaction().map_err(backend)?;
        let mut n = 0;
        for jti in jtis {
            n += tx
                .cached_exec(
                    "UPDATE outbox SET delivered_at = ?3, error = NULL WHERE stream = ?1 AND jti = ?2 AND delivered_at IS NULL",
                    params![stream.to_string(), jti, at.micros()],
                )
                .map_err(backend)?;
        }
        tx.commit().map_err(backend)?;
        drop(conn);
        self.sync_now()?;
        Ok(n)
    }

    fn retry_later(&self, stream: StreamId, jti: &str, next: Timestamp, error: &str) -> StoreResult<()> {
        let conn = lock(&self.pool().writer)?;
        conn.cached_exec(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt = ?3, error = ?4 WHERE stream = ?1 AND jti = ?2",
            params![stream.to_string(), jti, next.micros(), error],
        )
        .map_err(backend)?;
        drop(conn);
        self.sync_now()
    }

    fn drop_pending(&self, stream: StreamId) -> StoreResult<usize> {
        let conn = lock(&self.pool().writer)?;
        let n = conn
            .cached_exec(
                "DELETE FROM outbox WHERE stream = ?1 AND delivered_at IS NULL",
                [stream.to_string()],
            )
            .map_err(backend)?;
        drop(conn);
        self.sync_now()?;
        Ok(n)
    }

    fn remember_received(&self, source: &str, jti: &str, at: Timestamp) -> StoreResult<bool> {
        let conn = lock(&self.pool().writer)?;
        let n = conn
            .cached_exec(
                "INSERT OR IGNORE INTO received_sets (source, jti, at) VALUES (?1, ?2, ?3)",
                params![source, jti, at.micros()],
            )
            .map_err(backend)?;
        drop(conn);
        self.sync_now()?;
        Ok(n > 0)
    }

    fn received(&self, source: &str, jti: &str) -> StoreResult<bool> {
        self.pool().read(|c| {
            c.cached_row(
                "SELECT EXISTS (SELECT 1 FROM received_sets WHERE source = ?1 AND jti = ?2)",
                params![source, jti],
                |r| r.get(0),
            )
        })
    }

    fn signals_of(&self, txn: &str) -> StoreResult<Vec<SignalRecord>> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE txn = ?1 ORDER BY seq");
        let rows = self.pool().read(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            stmt.query_map([txn], outbox_row)?.collect::<Result<Vec<_>, _>>()
        })?;
        rows.into_iter()
            .map(|r| {
                decode(r).map(|d| SignalRecord {
                    stream: d.outgoing.stream,
                    jti: d.outgoing.jti,
                    kind: d.outgoing.signal.kind,
                    delivered_at: d.delivered_at,
                    attempts: d.attempts,
                    error: d.error,
                })
            })
            .collect()
    }
}
