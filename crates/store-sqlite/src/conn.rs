//! Connection set-up shared by both stores.

use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};

use lockstep_store::{StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags};

/// How hard a commit waits for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: a commit survives power loss once acknowledged.
    /// The default, because an acknowledged revocation must never be lost.
    #[default]
    Full,
    /// `synchronous=NORMAL`: survives a process crash (`kill -9`), may lose
    /// the last commits on power loss.
    Normal,
    /// `synchronous=OFF`: for throw-away benchmark data only.
    Off,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
            Durability::Off => "OFF",
        }
    }
}

pub(crate) fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> StoreResult<MutexGuard<'_, T>> {
    m.lock().map_err(|_| StoreError::Backend("connection lock poisoned".into()))
}

/// Tries of [`wait_for_lock`] that sleep [`BUSY_SHORT`]; the later ones
/// sleep [`BUSY_LONG`], up to [`BUSY_TRIES`] in all (about five seconds).
const BUSY_SHORT_TRIES: i32 = 100;
const BUSY_SHORT: std::time::Duration = std::time::Duration::from_micros(100);
const BUSY_LONG: std::time::Duration = std::time::Duration::from_millis(1);
const BUSY_TRIES: i32 = BUSY_SHORT_TRIES + 4_990;

/// The busy handler of the pool's connections: a lock another connection
/// holds is tried again every 0.1 ms for the first 10 ms, then every
/// millisecond, for about five seconds in all.
///
/// SQLite's own handler (`busy_timeout`) sleeps 1, 2, 5, 10, 15, 20, 25,
/// 25, 25, 50, 50, then 100 ms between tries, so a writer that met the
/// checkpoint thread's RESTART (which holds the write lock while it copies
/// the last frames) slept on to the end of the step it was in: 8, 18, 33,
/// 53, 78 or 103 ms in all. Measured in one authority benchmark: about 190
/// such waits, the p99 of its 64-connection writes; a stalled authority
/// batch holds every request behind it.
fn wait_for_lock(tries: i32) -> bool {
    if tries >= BUSY_TRIES {
        return false;
    }
    std::thread::sleep(if tries < BUSY_SHORT_TRIES { BUSY_SHORT } else { BUSY_LONG });
    true
}

/// A writer and a few readers on one database file.
///
/// Readers are a free list: a request takes whichever connection is free
/// and, when none is, waits for the first one given back (a fixed fallback
/// connection would make every waiter queue behind one reader while others
/// sit idle).
#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    returned: Condvar,
    /// With [`Durability::Full`] and explicit syncing: the WAL is fsynced
    /// by [`Pool::wait_durable`], outside the writer lock.
    wal: Option<WalSync>,
    _checkpointer: Checkpointer,
}

/// Group fsync of the WAL, outside the writer lock.
///
/// The writer commits at `synchronous=NORMAL` (in WAL mode: appended to the
/// WAL, not fsynced) and numbers the commit; a caller that needs it durable
/// fsyncs the WAL file through a descriptor of its own — which flushes every
/// commit appended so far — unless a concurrent fsync that started after
/// its commit already did. The writer is free for the next commit during
/// the fsync, and one fsync covers every commit waiting on it. A crash
/// recovers the WAL up to its last valid frame, so a commit that survived
/// implies every earlier one did.
#[derive(Debug)]
struct WalSync {
    path: std::path::PathBuf,
    /// Commits appended to the WAL so far (numbered after they complete).
    committed: std::sync::atomic::AtomicU64,
    /// The highest commit known to be on disk, and the WAL's descriptor.
    synced: Mutex<(u64, Option<std::fs::File>)>,
}

impl WalSync {
    fn wait(&self, ticket: u64) -> StoreResult<()> {
        let mut synced = lock(&self.synced)?;
        if synced.0 >= ticket {
            return Ok(());
        }
        // Every commit numbered so far has been written to the WAL.
        let target = self.committed.load(std::sync::atomic::Ordering::SeqCst);
        let io = |e: std::io::Error| StoreError::Backend(format!("fsync of {}: {e}", self.path.display()));
        if synced.1.is_none() {
            synced.1 = Some(std::fs::File::open(&self.path).map_err(io)?);
        }
        if let Some(file) = &synced.1 {
            file.sync_data().map_err(io)?;
        }
        synced.0 = target;
        Ok(())
    }
}

/// Per-file knobs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    /// Page cache of the writer in KiB. Kept small on purpose: SQLite
    /// (3.54) parks a page at the locking page's number while a B-tree
    /// balance reorders new pages, which leaves the cache's highest page
    /// number past the end of the file, and the next commit then
    /// truncates the cache by walking its whole hash table — a walk as
    /// long as the cache is large, on every commit of a file under 1 GiB.
    /// With 64 MiB that walk was an eighth of the directory writer's
    /// samples under creates; the pages a write touches (the upper levels of each
    /// index, the rightmost leaves) fit in far less.
    pub(crate) cache_kib: u32,
    /// Page cache of each reader in KiB. Readers serve lookups and
    /// listings at random by id and userName, and never commit, so a
    /// cache that holds the hot pages saves a read system call per page.
    pub(crate) reader_cache_kib: u32,
    /// Fsync the WAL outside the writer lock ([`Pool::wait_durable`])
    /// instead of inside each commit; every write path of the store must
    /// then call `committed` and `wait_durable`.
    pub(crate) explicit_sync: bool,
}

/// WAL bytes kept on disk after a checkpoint resets it.
const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// How often the WAL is checkpointed into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// WAL frames (pages) beyond which a checkpoint makes the next writer start
/// the log over (about 64 MiB at SQLite's 4 KiB pages).
const RESTART_FRAMES: i64 = 16_384;

/// Frames a RESTART checkpoint may be left to copy while writers wait.
const RESTART_SLACK: i64 = 256;

/// PASSIVE passes a round makes at most before its RESTART (each after the
/// first copies what arrived during the one before).
const PASSES: usize = 8;

/// Past this (about 96 MiB) a round stops passing and restarts the WAL,
/// however much the RESTART has left to copy: a WAL kept growing while
/// the passes chase the writers is the worse cost.
const PASSING_FRAMES: i64 = RESTART_FRAMES + RESTART_FRAMES / 2;

/// Frames that may arrive during a pass for the round to pass again
/// (about 16 MiB; under the authority bench 1,000-3,000 arrived).
const CHASE_FRAMES: i64 = RESTART_FRAMES / 4;

/// Beyond this (about 128 MiB), and after [`WRITER_RESTART_AFTER`] commits
/// over the threshold, the writer restarts the WAL itself.
const HARD_FRAMES: i64 = 2 * RESTART_FRAMES;
const WRITER_RESTART_AFTER: u32 = 64;

/// A RESTART that found a lock taken is tried again this often, this many
/// times, before the next round.
const RESTART_RETRY: std::time::Duration = std::time::Duration::from_millis(2);
const RESTART_TRIES: usize = 50;

/// Copies the WAL into the database file from a thread of its own.
///
/// SQLite's automatic checkpoint runs inside the commit that crosses the
/// threshold, so every thousandth page of writes stalled a client's request
/// (and, with group commit, everyone batched with it) for the copy and its
/// fsync: a quarter of the write path's time in a profile. A PASSIVE
/// checkpoint runs beside readers and the writer and never blocks them.
///
/// But PASSIVE alone lets the WAL grow without bound under steady writes:
/// SQLite starts the log over only when a writer begins while every frame
/// is already copied back, and with a commit every millisecond that moment
/// never comes (a ten-million-session seed grew a 10 GB WAL, and every read
/// then searched it). So once the WAL holds more than [`RESTART_FRAMES`],
/// a RESTART checkpoint holds new writers back for the short copy of what
/// PASSIVE left, and the next commit starts the log over. Writers begin
/// IMMEDIATE for this: a deferred writer would hold its read snapshot while
/// it waits for the write lock, and the RESTART waits for that snapshot.
/// The writer's commits also nudge the thread the moment the WAL crosses
/// the threshold (SQLite's WAL hook), so a burst of writes does not run on
/// for a whole interval first. The thread's RESTART never waits (a RESTART
/// waiting in a busy handler held writers back for its sleeps); a writer
/// committing back to back may leave it no moment, so past twice the
/// threshold the writer restarts the log itself, between two commits.
#[derive(Debug)]
struct Checkpointer {
    signal: std::sync::Arc<(Mutex<Wake>, Condvar)>,
    /// Frames in the WAL after the writer's last commit (its WAL hook), so
    /// the thread knows what arrived during a pass without another pass.
    frames: std::sync::Arc<std::sync::atomic::AtomicI64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Why the checkpoint thread wakes up early.
#[derive(Debug, Default)]
struct Wake {
    stop: bool,
    due: bool,
}

impl Checkpointer {
    fn start(path: &Path) -> StoreResult<Self> {
        let conn = Connection::open(path).map_err(backend)?;
        // No busy handler: a RESTART that waited in it would hold writers
        // back for the handler's sleeps (up to 100 ms each). It fails at
        // once instead and is tried again a few milliseconds later.
        conn.execute_batch("PRAGMA busy_timeout=0;").map_err(backend)?;
        let signal = std::sync::Arc::new((Mutex::new(Wake::default()), Condvar::new()));
        let shared = signal.clone();
        let frames = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        let written = frames.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                let (state, wake) = &*shared;
                let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
                while !state.stop {
                    if !state.due {
                        state =
                            wake.wait_timeout(state, CHECKPOINT_EVERY).unwrap_or_else(|p| p.into_inner()).0;
                    }
                    state.due = false;
                    drop(state);
                    checkpoint_round(&conn, &written);
                    state = shared.0.lock().unwrap_or_else(|p| p.into_inner());
                }
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Self { signal, frames, thread: Some(thread) })
    }

    /// Wakes the thread when a commit leaves more than [`RESTART_FRAMES`]
    /// in the WAL (install on the writer after `wal_autocheckpoint`, which
    /// replaces the hook).
    fn hook(&self, writer: &mut Connection) -> StoreResult<()> {
        let signal = self.signal.clone();
        let written = self.frames.clone();
        // Commits since the WAL crossed the threshold: one large commit (a
        // bridge step revoking 100,000 sessions writes 60 MB) is the
        // thread's to handle; only a run of commits that never gave the
        // thread its moment makes the writer restart the log itself.
        let mut commits_over = 0u32;
        writer
            .wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, frames: std::ffi::c_int| {
                let frames = i64::from(frames);
                written.store(frames, std::sync::atomic::Ordering::Relaxed);
                commits_over = if frames > RESTART_FRAMES { commits_over.saturating_add(1) } else { 0 };
                if frames > HARD_FRAMES && commits_over > WRITER_RESTART_AFTER {
                    // The thread found no gap between commits to restart
                    // in: the writer restarts the log itself, between two
                    // of its own commits. A restart that failed (the
                    // thread's PASSIVE held the checkpoint lock) is tried
                    // again after the next commit, not 64 commits later:
                    // on a slow machine that wait let the WAL grow past
                    // 160 MiB. A restart that worked starts the log over,
                    // and the next commit's frame count resets the run.
                    if let Err(e) = wal.checkpoint_v2(rusqlite::wal::CheckpointMode::RESTART) {
                        tracing::debug!(error = %e, "WAL restart by the writer failed; retrying after the next commit");
                    }
                } else if frames > RESTART_FRAMES {
                    let (state, wake) = &*signal;
                    state.lock().unwrap_or_else(|p| p.into_inner()).due = true;
                    wake.notify_one();
                }
                Ok(())
            }))
            .map_err(backend)
    }
}

/// One round of the checkpoint thread: PASSIVE, again while writers keep
/// appending (so the RESTART has little left to copy and sync while it
/// holds them back — copying a pass's worth stalled commits for 100 ms and
/// more), then RESTART once the WAL is past [`RESTART_FRAMES`], retried
/// briefly while a lock is taken.
fn checkpoint_round(conn: &Connection, written: &std::sync::atomic::AtomicI64) {
    // (frames in the WAL, frames copied back, a lock was not free)
    let checkpoint = |mode: &str| {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(0)? != 0))
        })
    };
    // A pass copies what the WAL held when it began, and answers with that
    // (all of it copied, unless a reader held some back). Writers go on
    // appending meanwhile; their WAL hook says how far. While what arrived
    // during a pass is a little (at most CHASE_FRAMES), pass again, until at
    // most RESTART_SLACK frames are left: the RESTART, which holds writers
    // back, then copies only those. When writers outrun the passes (more
    // arrived, or the WAL is past PASSING_FRAMES), restart at once: chasing
    // them would only let the WAL grow. (Stopping after one pass, as this
    // did, left the RESTART a whole pass's worth to copy: 55-65 ms with
    // every writer held back, on each restart, under the authority bench.)
    let mut passive = checkpoint("PASSIVE");
    for _ in 0..PASSES {
        let Ok((frames, copied, _)) = passive else { break };
        let now = written.load(std::sync::atomic::Ordering::Relaxed).max(frames);
        let arrived = now - copied;
        if frames <= RESTART_FRAMES
            || now >= PASSING_FRAMES
            || arrived <= RESTART_SLACK
            || arrived > CHASE_FRAMES
        {
            break;
        }
        passive = checkpoint("PASSIVE");
    }
    let frames = match passive {
        Ok((frames, _, _)) => frames,
        Err(e) => return tracing::warn!(error = %e, "WAL checkpoint failed; retrying"),
    };
    if frames <= RESTART_FRAMES {
        return;
    }
    for _ in 0..RESTART_TRIES {
        match checkpoint("RESTART") {
            Ok((_, _, true)) => std::thread::sleep(RESTART_RETRY),
            Ok(_) => return,
            Err(e) => return tracing::warn!(error = %e, "WAL restart checkpoint failed; retrying"),
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (state, wake) = &*self.signal;
        state.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A store's schema: its statements (idempotent, `IF NOT EXISTS`), its
/// `user_version`, and the upgrades of older files it knows.
pub(crate) struct Schema {
    pub(crate) sql: &'static str,
    pub(crate) version: i32,
    pub(crate) upgrades: &'static [Upgrade],
}

/// Brings a file from version `from` to `from + 1`: `sql`, then the
/// schema's own statements, in one transaction.
pub(crate) struct Upgrade {
    pub(crate) from: i32,
    pub(crate) sql: &'static str,
}

const READERS: usize = 4;

/// Cached statements per connection: the fixed statements plus the shapes
/// of filter queries in use.
const STATEMENT_CACHE: usize = 128;

impl Pool {
    /// Opens the file and applies `schema`. A file that already has tables
    /// but an older `user_version` is upgraded in place where the schema
    /// has an upgrade from that version (each step one transaction), and
    /// refused with a message saying so otherwise, rather than failing
    /// half-way through the schema.
    pub(crate) fn open(
        path: &Path,
        durability: Durability,
        schema: Schema,
        tuning: Tuning,
    ) -> StoreResult<Self> {
        let mut writer = Connection::open(path).map_err(backend)?;
        let explicit = tuning.explicit_sync && durability == Durability::Full;
        let synchronous = if explicit { "NORMAL" } else { durability.pragma() };
        writer
            .execute_batch(&format!(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous={synchronous}; PRAGMA foreign_keys=ON;"
            ))
            .map_err(backend)?;
        writer.busy_handler(Some(wait_for_lock)).map_err(backend)?;
        let mut found: i32 = writer.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(backend)?;
        let tables: i64 = writer
            .query_row("SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table'", [], |r| r.get(0))
            .map_err(backend)?;
        while tables > 0 && found < schema.version {
            let Some(step) = schema.upgrades.iter().find(|u| u.from == found) else {
                return Err(StoreError::Backend(format!(
                    "{} has schema version {found}, this build needs {}: it was written by an older \
                     development build and cannot be upgraded in place; start from an empty data directory",
                    path.display(),
                    schema.version
                )));
            };
            let tx = writer
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(backend)?;
            tx.execute_batch(step.sql).map_err(backend)?;
            tx.execute_batch(schema.sql).map_err(backend)?;
            tx.execute_batch(&format!("PRAGMA user_version = {};", found + 1)).map_err(backend)?;
            tx.commit().map_err(backend)?;
            found += 1;
        }
        writer.execute_batch(schema.sql).map_err(backend)?;
        writer.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        writer.execute_batch(&format!("PRAGMA user_version = {};", schema.version)).map_err(backend)?;
        // Checkpoints run on their own thread (see `Checkpointer`), not in
        // whichever write commit crosses the threshold.
        writer
            .execute_batch(&format!(
                "PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit={WAL_SIZE_LIMIT}; PRAGMA cache_size=-{};
                 PRAGMA temp_store=MEMORY; PRAGMA cache_spill=OFF;",
                tuning.cache_kib
            ))
            .map_err(backend)?;
        let checkpointer = Checkpointer::start(path)?;
        let mut writer = writer;
        checkpointer.hook(&mut writer)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let mut reader = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(backend)?;
            reader
                .execute_batch(&format!("PRAGMA cache_size=-{};", tuning.reader_cache_kib))
                .map_err(backend)?;
            reader.busy_handler(Some(wait_for_lock)).map_err(backend)?;
            reader.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            readers.push(reader);
        }
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        let wal = explicit.then(|| WalSync {
            path: wal_path.into(),
            committed: std::sync::atomic::AtomicU64::new(0),
            synced: Mutex::new((0, None)),
        });
        Ok(Self {
            writer: Mutex::new(writer),
            readers: Mutex::new(readers),
            returned: Condvar::new(),
            wal,
            _checkpointer: checkpointer,
        })
    }

    /// Numbers a commit just made on the writer (call with the writer lock
    /// still held, after the commit returned).
    pub(crate) fn committed(&self) -> u64 {
        self.wal.as_ref().map_or(0, |w| w.committed.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
    }

    /// Returns once commit `ticket` is on disk (at once without explicit
    /// syncing: the commit itself waited, or durability was not asked for).
    pub(crate) fn wait_durable(&self, ticket: u64) -> StoreResult<()> {
        match &self.wal {
            Some(wal) => wal.wait(ticket),
            None => Ok(()),
        }
    }

    /// Runs `f` on a free reader, waiting for one if all are busy.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> StoreResult<T> {
        let conn = {
            let mut free = lock(&self.readers)?;
            loop {
                if let Some(conn) = free.pop() {
                    break conn;
                }
                free = self
                    .returned
                    .wait(free)
                    .map_err(|_| StoreError::Backend("reader pool lock poisoned".into()))?;
            }
        };
        let result = f(&conn);
        lock(&self.readers)?.push(conn);
        self.returned.notify_one();
        result.map_err(backend)
    }
}

/// `query_row` and `execute` through the connection's statement cache:
/// rusqlite's plain ones compile the SQL on every call, which on the write
/// path costs more than the statement itself.
pub(crate) trait Cached {
    fn cached_row<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T>;

    fn cached_exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
}

impl Cached for Connection {
    fn cached_row<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    fn cached_exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }
}
