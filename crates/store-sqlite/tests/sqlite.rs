//! The SQLite backend passes the shared conformance suite, and keeps what it
//! committed across a reopen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use lockstep_store::{DirectoryRead, SessionStore};
use lockstep_store_sqlite::{Durability, SqliteDirectory, SqliteSessions};

/// Fresh stores in a temporary directory that lives as long as the test
/// process (the stores hold the files open, and the model checks open
/// hundreds). They all live under one root in Cargo's target directory,
/// emptied when the first test of a run asks for one, so runs do not pile
/// up databases in the system's temporary directory.
fn dir() -> std::path::PathBuf {
    static ROOT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let root = ROOT.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sqlite-conformance");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        root
    });
    tempfile::tempdir_in(root).unwrap().keep()
}

fn open_dir() -> SqliteDirectory {
    SqliteDirectory::open(&dir().join("directory.db"), Durability::Off).unwrap()
}

fn open_sessions() -> SqliteSessions {
    SqliteSessions::open(&dir().join("sessions.db"), Durability::Off).unwrap()
}

lockstep_store::conformance_suite!(directory: open_dir(), sessions: open_sessions(), cases: 48);

#[test]
fn committed_state_survives_reopen() {
    use lockstep_store::conformance as c;
    let root = dir();
    {
        let d = SqliteDirectory::open(&root.join("directory.db"), Durability::Full).unwrap();
        c::create(&d, 0, "alice");
        let s = SqliteSessions::open(&root.join("sessions.db"), Durability::Full).unwrap();
        let x = c::session(1, c::identity_id(0), 1_000);
        s.insert_session(
            &x,
            &[c::token(1, &x)],
            c::audit(lockstep_domain::AuditKind::SessionCreated, Some(x.id)),
        )
        .unwrap();
    }
    let d = SqliteDirectory::open(&root.join("directory.db"), Durability::Full).unwrap();
    assert_eq!(d.live_identity_by_user_name("ALICE").unwrap().unwrap().version, 1);
    assert_eq!(d.events_after(None, 10).unwrap().len(), 1);
    let s = SqliteSessions::open(&root.join("sessions.db"), Durability::Full).unwrap();
    assert_eq!(s.sessions_of(c::identity_id(0)).unwrap().len(), 1);
    assert_eq!(lockstep_store::verify_chain(s.audit_after(0, 10).unwrap()), Ok(1));
}

#[test]
fn audit_rows_cannot_be_edited_in_place() {
    let root = dir();
    let s = SqliteSessions::open(&root.join("sessions.db"), Durability::Off).unwrap();
    let x = lockstep_store::conformance::session(1, lockstep_store::conformance::identity_id(0), 9);
    s.insert_session(
        &x,
        &[],
        lockstep_store::conformance::audit(lockstep_domain::AuditKind::SessionCreated, None),
    )
    .unwrap();
    drop(s);
    let raw = rusqlite::Connection::open(root.join("sessions.db")).unwrap();
    let err = raw.execute("UPDATE audit SET detail = 'x'", []).unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let err = raw.execute("DELETE FROM audit", []).unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
}

/// Under steady writes the WAL is started over instead of growing: a
/// PASSIVE checkpoint alone never finds the moment to reset it (a seed of
/// ten million sessions grew a 10 GB WAL), and a deferred writer waiting
/// for the lock while a RESTART checkpoint waits for its snapshot failed
/// with "database is locked". About 200 MiB of commits, back to back.
#[test]
fn the_wal_stays_bounded_under_steady_writes() {
    let root = dir();
    let path = root.join("sessions.db");
    let s = SqliteSessions::open(&path, Durability::Off).unwrap();
    let wal = root.join("sessions.db-wal");
    let mut entry = lockstep_store::conformance::audit(lockstep_domain::AuditKind::SessionCreated, None);
    entry.detail = "x".repeat(3500); // about one 4 KiB page per record
    let mut largest = 0;
    for _ in 0..500 {
        let batch = lockstep_store::SessionBatch { audit: vec![entry.clone(); 100], ..Default::default() };
        s.apply(batch).unwrap();
        largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
    }
    // The restart threshold is 64 MiB; what is appended while a
    // checkpoint catches up comes on top.
    println!("largest WAL: {} MiB", largest >> 20);
    assert!(largest < 160 << 20, "the WAL grew to {} MiB", largest >> 20);
    assert_eq!(lockstep_store::verify_chain(s.audit_after(0, 100_000).unwrap()), Ok(50_000));
}

/// A directory written by version 4 (full externalId and displayName
/// indexes) opens upgraded: its data kept, the indexes partial; an older
/// file is refused with a message that says what to do.
#[test]
fn an_older_directory_is_upgraded_in_place_or_refused() {
    use lockstep_store::conformance as c;
    let root = dir();
    let path = root.join("directory.db");
    c::create(&SqliteDirectory::open(&path, Durability::Full).unwrap(), 0, "alice");
    let index_sql = |conn: &rusqlite::Connection, name: &str| -> String {
        conn.query_row("SELECT sql FROM sqlite_schema WHERE name = ?1", [name], |r| r.get(0)).unwrap()
    };
    {
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(
            "DROP INDEX identities_external_id; CREATE INDEX identities_external_id ON identities (external_id);
             DROP INDEX identities_display_name; CREATE INDEX identities_display_name ON identities (display_name_lc);
             DROP INDEX groups_external_id; CREATE INDEX groups_external_id ON groups (external_id);
             PRAGMA user_version = 4;",
        )
        .unwrap();
    }
    let d = SqliteDirectory::open(&path, Durability::Full).unwrap();
    assert_eq!(d.live_identity_by_user_name("alice").unwrap().unwrap().version, 1);
    drop(d);
    let raw = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(raw.query_row("PRAGMA user_version", [], |r| r.get::<_, i32>(0)).unwrap(), 6);
    assert!(index_sql(&raw, "identities_external_id").ends_with("WHERE external_id IS NOT NULL"));
    assert!(index_sql(&raw, "identities_display_name").ends_with("WHERE display_name_lc IS NOT NULL"));
    assert!(index_sql(&raw, "groups_external_id").ends_with("WHERE external_id IS NOT NULL"));
    raw.execute_batch("PRAGMA user_version = 3;").unwrap();
    drop(raw);
    let refused = SqliteDirectory::open(&path, Durability::Full).unwrap_err().to_string();
    assert!(refused.contains("schema version 3, this build needs 6"), "{refused}");
    assert!(refused.contains("start from an empty data directory"), "{refused}");
}
