//! Seeding data sets through the real engine and stores (no fsync while
//! seeding; the measured server then runs with full durability).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lockstep_domain::{Identity, IdentityKind, IdentityStatus, Origin, SourceId, Timestamp};
use lockstep_engine::{Engine, EngineConfig, OsEntropy, Principal, Stores, SystemClock};
use lockstep_store_sqlite::{Durability, SqliteDirectory, SqliteSessions};

fn engine(dir: &Path) -> anyhow::Result<Engine> {
    let sessions = Arc::new(SqliteSessions::open(&dir.join("sessions.db"), Durability::Off)?);
    let stores = Stores {
        directory: Arc::new(SqliteDirectory::open(&dir.join("directory.db"), Durability::Off)?),
        sessions: sessions.clone(),
        credentials: sessions,
    };
    Ok(Engine::open(stores, EngineConfig::default(), Arc::new(SystemClock), Arc::new(OsEntropy))?)
}

fn user(engine: &Engine, name: &str) -> anyhow::Result<String> {
    let identity = Identity {
        id: engine.new_identity_id()?,
        user_name: name.to_owned(),
        external_id: None,
        display_name: None,
        kind: IdentityKind::Human,
        owners: Vec::new(),
        risk_tier: None,
        status: IdentityStatus::Active,
        emails: Vec::new(),
        profile: "{}".into(),
        version: 0,
        created: Timestamp(0),
        modified: Timestamp(0),
    };
    let origin = Origin { source: SourceId::new("bench"), client: None, source_ref: None };
    Ok(engine.create_identity(identity, origin)?.identity.id.to_string())
}

const TTL: Option<Duration> = Some(Duration::from_secs(6 * 3600));

/// One user with `n` sessions; returns the tokens.
pub fn sessions_for_one_user(dir: &Path, n: usize) -> anyhow::Result<Vec<String>> {
    let engine = engine(dir)?;
    let id = user(&engine, "bench")?;
    (0..n).map(|_| Ok(engine.open_session(&id, TTL, &Principal::admin())?.access_token)).collect()
}

/// Users with sessions, and users without.
#[derive(Debug)]
pub struct Seeded {
    /// (SCIM id, tokens)
    pub users: Vec<(String, Vec<String>)>,
    /// SCIM ids of users without sessions.
    pub idle_users: Vec<String>,
}

pub fn users_with_sessions(dir: &Path, users: usize, per_user: usize, idle: usize) -> anyhow::Result<Seeded> {
    let engine = engine(dir)?;
    let mut seeded = Seeded { users: Vec::with_capacity(users), idle_users: Vec::with_capacity(idle) };
    for u in 0..users {
        let id = user(&engine, &format!("user{u}"))?;
        let tokens = (0..per_user)
            .map(|_| Ok(engine.open_session(&id, TTL, &Principal::admin())?.access_token))
            .collect::<anyhow::Result<Vec<_>>>()?;
        seeded.users.push((id, tokens));
    }
    for u in 0..idle {
        seeded.idle_users.push(user(&engine, &format!("idle{u}"))?);
    }
    Ok(seeded)
}

/// Like [`users_with_sessions`] without keeping the tokens (for 1M sessions).
pub fn users_with_sessions_quiet(dir: &Path, users: usize, per_user: usize) -> anyhow::Result<()> {
    let engine = engine(dir)?;
    for u in 0..users {
        let id = user(&engine, &format!("user{u}"))?;
        for _ in 0..per_user {
            engine.open_session(&id, TTL, &Principal::admin())?;
        }
    }
    Ok(())
}

/// `n` identities without sessions; returns (SCIM id, userName).
pub fn identities(dir: &Path, n: usize) -> anyhow::Result<Vec<(String, String)>> {
    let engine = engine(dir)?;
    (0..n)
        .map(|i| {
            let name = format!("user{i}");
            Ok((user(&engine, &name)?, name))
        })
        .collect()
}
