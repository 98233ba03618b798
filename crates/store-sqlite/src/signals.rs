//! Shared Signals streams and the outbox, in `sessions.db` (so the outbox
//! commits in the transaction of the session change it reports).
//!
//! Three tables keep the outbox: `signals` holds each signal once, with the
//! streams it goes to (space-separated ids, matched with `instr`: ids are
//! fixed-length UUIDs); `stream_cursors` says up to which `seq` a stream is
//! settled; `signal_deliveries` holds attempts and acknowledgements, per
//! signal and stream, written by delivery. A signal is pending for a stream
//! while its `seq` is past the stream's cursor and no delivery row says it
//! was delivered. Cursors move forward when acknowledgements close a gap,
//! when a stream is disabled, and when a scan finds a long run of signals
//! that are all settled for the stream (one not addressed to a stream does
//! not hold it back).

use lockstep_domain::{
    Addressed, ClientId, Delivery, IdentityId, Outgoing, SessionId, Signal, SignalKind, Stream, StreamId,
    StreamStatus, Tiers, Timestamp, split_jti,
};
use lockstep_store::codec::parse;
use lockstep_store::{Queued, SignalRecord, SignalStore, StoreResult};
use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};

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
CREATE TABLE IF NOT EXISTS signals (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    jti_base        TEXT NOT NULL UNIQUE,
    streams         TEXT NOT NULL,
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
    state           TEXT
);
CREATE INDEX IF NOT EXISTS signals_txn ON signals (txn);
CREATE TABLE IF NOT EXISTS stream_cursors (
    stream  TEXT PRIMARY KEY,
    settled INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS signal_deliveries (
    seq          INTEGER NOT NULL,
    stream       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER NOT NULL DEFAULT 0,
    delivered_at INTEGER,
    error        TEXT,
    PRIMARY KEY (seq, stream)
) WITHOUT ROWID;
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

const SIGNAL_COLUMNS: &str = "seq, jti_base, streams, kind, at, identity, user_name, session, change, credential_type, groups, tiers, initiator, reason, txn, state";

/// The same columns, qualified for joins.
const SIGNAL_COLUMNS_S: &str = "s.seq, s.jti_base, s.streams, s.kind, s.at, s.identity, s.user_name, s.session, s.change, s.credential_type, s.groups, s.tiers, s.initiator, s.reason, s.txn, s.state";

/// A stream's pending signals: past its cursor, addressed to it, not
/// delivered to it. (`?1` the stream; no cursor row, no pending.)
// Parameters are written `CAST(?1 AS TEXT)`: SQLite re-prepared the
// statement on every run when a bare parameter was compared with `=` in a
// query with an ORDER BY (the delivery thread spent most of its outbox
// reads in the SQL parser).
const PENDING_WHERE: &str =
    "FROM signals s LEFT JOIN signal_deliveries d ON d.seq = s.seq AND d.stream = CAST(?1 AS TEXT)
     WHERE s.seq > (SELECT settled FROM stream_cursors WHERE stream = CAST(?1 AS TEXT))
       AND instr(s.streams, CAST(?1 AS TEXT)) > 0 AND d.delivered_at IS NULL";

/// A stream's pending signals, oldest first (`?1` the stream, `?2` how many).
fn pending_sql() -> String {
    format!(
        "SELECT {SIGNAL_COLUMNS_S}, COALESCE(d.attempts, 0), COALESCE(d.next_attempt, 0) {PENDING_WHERE}
         ORDER BY s.seq LIMIT CAST(?2 AS INTEGER)"
    )
}

/// A scan that found nothing pending over at least this many signals
/// moves the stream's cursor past them, so a stream that few signals are
/// addressed to does not rescan the same settled run on every call.
const SKIP_AHEAD: i64 = 512;

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

/// Queues signals inside an open transaction: one row per signal,
/// however many streams it goes to.
pub(crate) fn enqueue(tx: &rusqlite::Connection, outgoing: &[Outgoing]) -> StoreResult<()> {
    for o in outgoing {
        let s = &o.signal;
        let (groups, tiers) = match &s.claims {
            Some((groups, tiers)) => (Some(groups.join("\n")), Some(tiers.as_str())),
            None => (None, None),
        };
        tx.cached_exec(
            "INSERT INTO signals (jti_base, streams, kind, at, identity, user_name, session, change, credential_type, groups, tiers, initiator, reason, txn, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            params![
                o.jti_base,
                join_streams(&o.streams),
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

fn join_streams(streams: &[StreamId]) -> String {
    streams.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}

type SignalRow = (
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
);

fn signal_row(r: &Row<'_>) -> rusqlite::Result<SignalRow> {
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
    ))
}

fn decode(row: SignalRow) -> StoreResult<(u64, Outgoing)> {
    let (
        seq,
        jti_base,
        streams,
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
    ) = row;
    let claims = match (groups, tiers) {
        (Some(g), Some(t)) => Some((
            g.split('\n').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            parse::<Tiers>("tiers", &t)?,
        )),
        _ => None,
    };
    let outgoing = Outgoing {
        jti_base,
        streams: streams
            .split_whitespace()
            .map(|s| parse::<StreamId>("stream id", s))
            .collect::<StoreResult<_>>()?,
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
    };
    Ok((seq.unsigned_abs(), outgoing))
}

/// The `seq` of the signal a `jti` names, if it is still pending for
/// `stream` (inside the writer's transaction).
fn pending_seq(tx: &rusqlite::Connection, stream: &str, jti: &str) -> StoreResult<Option<i64>> {
    let Some((base, k)) = split_jti(jti) else {
        return Ok(None);
    };
    let found: Option<(i64, String)> = tx
        .cached_row("SELECT seq, streams FROM signals WHERE jti_base = ?1", [base], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(backend)?;
    let Some((seq, streams)) = found else {
        return Ok(None);
    };
    if streams.split_whitespace().nth(k) != Some(stream) {
        return Ok(None);
    }
    let pending: bool = tx
        .cached_row(
            &format!("SELECT EXISTS (SELECT 1 {PENDING_WHERE} AND s.seq = ?2)"),
            params![stream, seq],
            |r| r.get(0),
        )
        .map_err(backend)?;
    Ok(pending.then_some(seq))
}

/// Moves a stream's cursor up to just before its first pending signal (or
/// to the last signal, if none is pending).
fn advance(tx: &rusqlite::Connection, stream: &str) -> StoreResult<()> {
    tx.cached_exec(
        &format!(
            "UPDATE stream_cursors SET settled = COALESCE(
                 (SELECT MIN(s.seq) - 1 {PENDING_WHERE}),
                 (SELECT MAX(seq) FROM signals), settled)
             WHERE stream = ?1"
        ),
        [stream],
    )
    .map_err(backend)?;
    Ok(())
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
        let mut conn = lock(&self.pool().writer)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
        tx.cached_exec(
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
        // A new stream is settled up to now: it gets no older signals.
        tx.cached_exec(
            "INSERT OR IGNORE INTO stream_cursors (stream, settled) VALUES (?1, (SELECT COALESCE(MAX(seq), 0) FROM signals))",
            [s.id.to_string()],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        drop(conn);
        self.sync_now()
    }

    fn delete_stream(&self, id: StreamId) -> StoreResult<bool> {
        let mut conn = lock(&self.pool().writer)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
        // Its delivery rows stay: the reach report still shows what the
        // stream was delivered.
        tx.cached_exec("DELETE FROM stream_cursors WHERE stream = ?1", [id.to_string()]).map_err(backend)?;
        let n = tx.cached_exec("DELETE FROM streams WHERE id = ?1", [id.to_string()]).map_err(backend)?;
        tx.commit().map_err(backend)?;
        drop(conn);
        self.sync_now()?;
        Ok(n > 0)
    }

    fn queue(&self, outgoing: Vec<Outgoing>) -> StoreResult<()> {
        let mut conn = lock(&self.pool().writer)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
        enqueue(&tx, &outgoing)?;
        tx.commit().map_err(backend)?;
        drop(conn);
        self.sync_now()
    }

    fn pending(&self, stream: StreamId, now: Timestamp, limit: usize) -> StoreResult<Vec<Queued>> {
        // Oldest first, and only up to the first one not yet due: a signal
        // waiting for its retry holds back the ones after it, so a receiver
        // sees a stream's SETs in order.
        let sql = pending_sql();
        let id = stream.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (last, settled, rows) = self.pool().read(|c| {
            // The last signal is read before the scan: when the scan finds
            // nothing pending, every signal up to it is settled for the
            // stream (later ones have higher `seq`s).
            let (last, settled): (i64, Option<i64>) = c.cached_row(
                "SELECT (SELECT COALESCE(MAX(seq), 0) FROM signals), (SELECT settled FROM stream_cursors WHERE stream = ?1)",
                [&id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt
                .query_map(params![id, limit], |r| Ok((signal_row(r)?, r.get::<_, i64>(16)?, r.get::<_, i64>(17)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((last, settled, rows))
        })?;
        if let Some(settled) = settled
            && rows.is_empty()
            && last - settled >= SKIP_AHEAD
        {
            let conn = lock(&self.pool().writer)?;
            conn.cached_exec(
                "UPDATE stream_cursors SET settled = ?2 WHERE stream = ?1 AND settled < ?2",
                params![id, last],
            )
            .map_err(backend)?;
        }
        let mut out = Vec::with_capacity(rows.len());
        for (row, attempts, next) in rows {
            if next > now.micros() {
                break;
            }
            let (seq, outgoing) = decode(row)?;
            let k = outgoing.streams.iter().position(|s| *s == stream).unwrap_or(0);
            out.push(Queued {
                seq,
                outgoing: Addressed { stream, jti: outgoing.jti(k), signal: outgoing.signal },
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            });
        }
        Ok(out)
    }

    fn pending_count(&self, stream: StreamId) -> StoreResult<usize> {
        let n: i64 = self.pool().read(|c| {
            c.cached_row(&format!("SELECT COUNT(*) {PENDING_WHERE}"), [stream.to_string()], |r| r.get(0))
        })?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    fn delivered(&self, stream: StreamId, jtis: &[String], at: Timestamp) -> StoreResult<usize> {
        let id = stream.to_string();
        let mut conn = lock(&self.pool().writer)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
        let mut n = 0;
        for jti in jtis {
            let Some(seq) = pending_seq(&tx, &id, jti)? else { continue };
            n += tx
                .cached_exec(
                    "INSERT INTO signal_deliveries (seq, stream, delivered_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (seq, stream) DO UPDATE SET delivered_at = excluded.delivered_at, error = NULL",
                    params![seq, id, at.micros()],
                )
                .map_err(backend)?;
        }
        if n > 0 {
            advance(&tx, &id)?;
        }
        tx.commit().map_err(backend)?;
        // Not waited onto the disk (the next synchronous commit takes it
        // there): a lost acknowledgement only sends its SET again.
        Ok(n)
    }

    fn retry_later(&self, stream: StreamId, jti: &str, next: Timestamp, error: &str) -> StoreResult<()> {
        let id = stream.to_string();
        let mut conn = lock(&self.pool().writer)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
        if let Some(seq) = pending_seq(&tx, &id, jti)? {
            tx.cached_exec(
                "INSERT INTO signal_deliveries (seq, stream, attempts, next_attempt, error) VALUES (?1, ?2, 1, ?3, ?4)
                 ON CONFLICT (seq, stream) DO UPDATE SET attempts = attempts + 1, next_attempt = excluded.next_attempt, error = excluded.error",
                params![seq, id, next.micros(), error],
            )
            .map_err(backend)?;
        }
        // Not waited onto the disk, like an acknowledgement.
        tx.commit().map_err(backend)
    }

    fn drop_pending(&self, stream: StreamId) -> StoreResult<usize> {
        let id = stream.to_string();
        let mut conn = lock(&self.pool().writer)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
        let n: i64 = tx
            .cached_row(&format!("SELECT COUNT(*) {PENDING_WHERE}"), [&id], |r| r.get(0))
            .map_err(backend)?;
        tx.cached_exec(
            "UPDATE stream_cursors SET settled = (SELECT COALESCE(MAX(seq), 0) FROM signals) WHERE stream = ?1",
            [&id],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        drop(conn);
        self.sync_now()?;
        Ok(usize::try_from(n).unwrap_or(0))
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
        type Delivered = (i64, String, i64, Option<i64>, Option<String>);
        let (rows, cursors, deliveries) = self.pool().read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {SIGNAL_COLUMNS} FROM signals WHERE txn = CAST(?1 AS TEXT) ORDER BY seq"
            ))?;
            let rows = stmt.query_map([txn], signal_row)?.collect::<Result<Vec<_>, _>>()?;
            let mut stmt = c.prepare_cached("SELECT stream, settled FROM stream_cursors")?;
            let cursors = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                .collect::<Result<std::collections::HashMap<_, _>, _>>()?;
            let mut stmt = c.prepare_cached(
                "SELECT seq, stream, attempts, delivered_at, error FROM signal_deliveries WHERE seq = ?1",
            )?;
            let mut deliveries: Vec<Delivered> = Vec::new();
            for row in &rows {
                deliveries.extend(
                    stmt.query_map([row.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
                        .collect::<Result<Vec<_>, _>>()?,
                );
            }
            Ok((rows, cursors, deliveries))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, outgoing) = decode(row)?;
            let seq = i64::try_from(seq).unwrap_or(i64::MAX);
            for (k, stream) in outgoing.streams.iter().enumerate() {
                let id = stream.to_string();
                let d = deliveries.iter().find(|d| d.0 == seq && d.1 == id);
                let delivered_at = d.and_then(|d| d.3).map(Timestamp);
                // Undelivered and settled: dropped, or its stream deleted.
                let settled = cursors.get(&id).is_none_or(|c| seq <= *c);
                if delivered_at.is_none() && settled {
                    continue;
                }
                out.push(SignalRecord {
                    stream: *stream,
                    jti: outgoing.jti(k),
                    kind: outgoing.signal.kind,
                    delivered_at,
                    attempts: d.map_or(0, |d| u32::try_from(d.2).unwrap_or(u32::MAX)),
                    error: d.and_then(|d| d.4.clone()),
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    use super::*;
    use crate::{Durability, SqliteSessions};

    /// The delivery thread reads the outbox for every stream on every
    /// round: its statements must stay prepared (a re-prepare per run put
    /// most of its reads in SQLite's parser).
    #[test]
    fn outbox_reads_are_not_prepared_again_on_every_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.db");
        drop(SqliteSessions::open(&path, Durability::Off).unwrap());
        let conn = rusqlite::Connection::open(&path).unwrap();
        for sql in [pending_sql(), format!("SELECT COUNT(*) {PENDING_WHERE}")] {
            let mut stmt = conn.prepare(&sql).unwrap();
            let limit = sql.contains("?2");
            for stream in ["a", "b", "c"] {
                let mut rows = if limit {
                    stmt.query(params![stream, 10]).unwrap()
                } else {
                    stmt.query([stream]).unwrap()
                };
                while rows.next().unwrap().is_some() {}
            }
            assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0, "{sql}");
        }
    }
}
