//! Seeding data sets through the real engine and stores (no fsync while
//! seeding; the measured server then runs with full durability).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lockstep_domain::{
    CredentialKind, Group, Identity, IdentityId, IdentityKind, Origin, Session, SessionId, SessionState,
    SourceId, Timestamp, Token, TokenFormat, TokenHash, TokenKind,
};
use lockstep_engine::{
    CredentialRequest, Engine, EngineConfig, OpenRequest, OsEntropy, Principal, Stores, SystemClock,
};
use lockstep_policy::Policy;
use lockstep_store::{SessionBatch, SessionStore};
use lockstep_store_sqlite::{Durability, SqliteDirectory, SqliteSessions};

fn engine(dir: &Path) -> anyhow::Result<Engine> {
    engine_with(dir, Policy::default())
}

fn engine_with(dir: &Path, policy: Policy) -> anyhow::Result<Engine> {
    std::fs::create_dir_all(dir)?;
    let sessions = Arc::new(SqliteSessions::open(&dir.join("sessions.db"), Durability::Off)?);
    let stores = Stores {
        directory: Arc::new(SqliteDirectory::open(&dir.join("directory.db"), Durability::Off)?),
        sessions: sessions.clone(),
        credentials: sessions,
    };
    let config = EngineConfig { policy, ..EngineConfig::default() };
    Ok(Engine::open(stores, config, Arc::new(SystemClock), Arc::new(OsEntropy))?)
}

fn group(engine: &Engine, name: &str, members: &[String]) -> anyhow::Result<String> {
    let members = members.iter().map(|m| m.parse::<IdentityId>()).collect::<Result<Vec<_>, _>>()?;
    let group = Group {
        id: engine.new_group_id()?,
        display_name: name.to_owned(),
        external_id: None,
        source: lockstep_domain::SourceId::scim(),
        members,
        version: 0,
        created: Timestamp(0),
        modified: Timestamp(0),
    };
    let origin = Origin { source: SourceId::scim(), client: None, source_ref: None };
    let applied = engine.create_group(group, origin)?;
    Ok(applied.group.map(|g| g.id.to_string()).unwrap_or_default())
}

/// The policy the tier benchmark serves: `prod-admins` confers the
/// privileged tier (the two lines of the README).
pub const TIER_POLICY: &str = "[policy.tiers.privileged]\ngroups = [\"prod-admins\"]\n";

/// A privileged group of `users` members with `per_user` sessions each, and
/// an ordinary group of as many members without sessions (the baseline).
#[derive(Debug)]
pub struct TierGroups {
    pub privileged: String,
    pub ordinary: String,
    pub tokens: Vec<String>,
}

pub fn tier_groups(dir: &Path, users: usize, per_user: usize) -> anyhow::Result<TierGroups> {
    let mut config = lockstep_policy::PolicyConfig::default();
    config.tiers.push((
        "privileged".into(),
        lockstep_policy::TierConfig { groups: Some(vec!["prod-admins".into()]), ..Default::default() },
    ));
    let engine = engine_with(dir, Policy::from_config(&config).map_err(|e| anyhow::anyhow!("{e}"))?)?;
    let admins: Vec<String> =
        (0..users).map(|u| user(&engine, &format!("admin{u}"))).collect::<anyhow::Result<_>>()?;
    let others: Vec<String> =
        (0..users).map(|u| user(&engine, &format!("other{u}"))).collect::<anyhow::Result<_>>()?;
    let privileged = group(&engine, "prod-admins", &admins)?;
    let ordinary = group(&engine, "ordinary", &others)?;
    let mut tokens = Vec::with_capacity(users * per_user);
    for id in &admins {
        for _ in 0..per_user {
            tokens.push(open(&engine, id)?);
        }
    }
    Ok(TierGroups { privileged, ordinary, tokens })
}

fn user(engine: &Engine, name: &str) -> anyhow::Result<String> {
    Ok(create(engine, name, IdentityKind::Human, Vec::new())?.id.to_string())
}

/// Creates an active identity of `kind` through the engine, as a SCIM client would
/// (owned by the `scim` source, so the SCIM workloads may change it).
fn create(
    engine: &Engine,
    name: &str,
    kind: IdentityKind,
    owners: Vec<IdentityId>,
) -> anyhow::Result<Identity> {
    let identity =
        Identity { kind, owners, ..Identity::draft(engine.new_identity_id()?, name, SourceId::scim()) };
    let origin = Origin { source: SourceId::scim(), client: None, source_ref: None };
    Ok(engine.create_identity(identity, origin)?.identity)
}

const TTL: Option<Duration> = Some(Duration::from_secs(6 * 3600));

/// Opens a session for `subject` through the authority; returns its token.
fn open(engine: &Engine, subject: &str) -> anyhow::Result<String> {
    let request = OpenRequest { subject: subject.to_owned(), ttl: TTL, refresh: false, format: None };
    Ok(engine.authority().open_session(request, &Principal::admin()).wait()?.access_token)
}

/// One user in two groups with `n` sessions; returns the tokens (their
/// introspection answers carry the groups).
pub fn sessions_for_one_user(dir: &Path, n: usize) -> anyhow::Result<Vec<String>> {
    let engine = engine(dir)?;
    let id = user(&engine, "bench")?;
    group(&engine, "engineering", std::slice::from_ref(&id))?;
    group(&engine, "on-call", std::slice::from_ref(&id))?;
    (0..n).map(|_| open(&engine, &id)).collect()
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
        let tokens = (0..per_user).map(|_| open(&engine, &id)).collect::<anyhow::Result<Vec<_>>>()?;
        seeded.users.push((id, tokens));
    }
    for u in 0..idle {
        seeded.idle_users.push(user(&engine, &format!("idle{u}"))?);
    }
    Ok(seeded)
}

/// Like [`users_with_sessions`] without keeping the tokens (for 1M sessions).
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

/// What the authority benchmark needs: users to open sessions for, distinct
/// live tokens to revoke, distinct refresh tokens to exchange, and client
/// secrets of a service account.
#[derive(Debug)]
pub struct AuthorityData {
    /// SCIM ids of users with no sessions.
    pub users: Vec<String>,
    /// Access tokens of distinct live sessions.
    pub tokens: Vec<String>,
    /// Refresh tokens of distinct live sessions.
    pub refresh: Vec<String>,
    /// (client_id, client_secret) of a service account's credentials.
    pub clients: Vec<(String, String)>,
}

/// Seeds the authority benchmark's data, opening sessions from several
/// threads at once (the authority's group commit batches them).
pub fn authority_data(
    dir: &Path,
    users: usize,
    tokens: usize,
    refreshable: usize,
    clients: usize,
) -> anyhow::Result<AuthorityData> {
    let engine = Arc::new(engine(dir)?);
    let ids: Vec<String> =
        (0..users).map(|u| user(&engine, &format!("user{u}"))).collect::<anyhow::Result<_>>()?;
    let holders: Vec<String> =
        (0..1000).map(|u| user(&engine, &format!("holder{u}"))).collect::<anyhow::Result<_>>()?;
    let open_many = |n: usize, refresh: bool| -> anyhow::Result<Vec<String>> {
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let (engine, holders) = (engine.clone(), holders.clone());
                std::thread::spawn(move || -> anyhow::Result<Vec<String>> {
                    let mut out = Vec::with_capacity(n / 16 + 1);
                    for i in (t..n).step_by(16) {
                        let request = OpenRequest {
                            subject: holders[i % holders.len()].clone(),
                            ttl: TTL,
                            refresh,
                            format: None,
                        };
                        let issued = engine.authority().open_session(request, &Principal::admin()).wait()?;
                        out.push(if refresh {
                            issued.refresh_token.unwrap_or_default()
                        } else {
                            issued.access_token
                        });
                    }
                    Ok(out)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(n);
        for t in threads {
            all.extend(t.join().map_err(|_| anyhow::anyhow!("seeding thread panicked"))??);
        }
        Ok(all)
    };
    // Used in random order: a token's stored key begins with its issue
    // time, so revoking or refreshing in issue order would find each row
    // beside the last one, which real clients do not.
    let mut tokens = open_many(tokens, false)?;
    let mut refresh = open_many(refreshable, true)?;
    shuffle(&mut tokens)?;
    shuffle(&mut refresh)?;
    let owner = user(&engine, "owner")?;
    let sa = create(&engine, "bench-service", IdentityKind::ServiceAccount, vec![owner.parse()?])?;
    let clients = (0..clients)
        .map(|_| {
            let request = CredentialRequest { kind: CredentialKind::ClientSecret, ttl: None };
            let c = engine.authority().create_credential(sa.id, request, &Principal::admin()).wait()?;
            Ok((c.credential.id.to_string(), c.secret))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(AuthorityData { users: ids, tokens, refresh, clients })
}

/// Fisher-Yates with a xorshift generator seeded from the OS.
fn shuffle<T>(items: &mut [T]) -> anyhow::Result<()> {
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
    let mut state = u64::from_le_bytes(seed) | 1;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
    Ok(())
}

/// `sessions` live opaque sessions (one access token each) spread evenly
/// over `identities` users, written straight into the session store in
/// large batches: going through the authority would take most of an hour
/// at ten million. The users are created through the engine; the sessions
/// carry no audit records (start-up does not read the chain).
pub fn many_sessions(dir: &Path, identities: usize, sessions: usize) -> anyhow::Result<()> {
    let engine = engine(dir)?;
    let store = SqliteSessions::open(&dir.join("sessions.db"), Durability::Off)?;
    let users: Vec<(IdentityId, String)> = (0..identities)
        .map(|u| {
            let name = format!("user{u}");
            Ok((user(&engine, &name)?.parse()?, name))
        })
        .collect::<anyhow::Result<_>>()?;
    let now = engine.clock().now();
    let expires = Timestamp(now.0 + 12 * 3600 * 1_000_000);
    let mut random = [0u8; 48];
    const CHUNK: usize = 50_000;
    let mut done = 0;
    while done < sessions {
        let n = CHUNK.min(sessions - done);
        let mut batch = SessionBatch { replayable: true, ..SessionBatch::default() };
        batch.inserts.reserve(n);
        batch.tokens.reserve(n);
        for i in done..done + n {
            getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
            let (id_bytes, hash_bytes) = random.split_at(16);
            let mut tail = [0u8; 10];
            tail.copy_from_slice(&id_bytes[..10]);
            // Time-ordered like the engine's v7 ids, one millisecond apart.
            let ms = (now.0 / 1000) as u64 + i as u64;
            let id = SessionId::from_uuid(uuid::Builder::from_unix_timestamp_millis(ms, &tail).into_uuid());
            let (identity, user_name) = &users[i % users.len()];
            batch.inserts.push(Session {
                id,
                identity: *identity,
                kind: CredentialKind::Session,
                format: TokenFormat::Opaque,
                issued_to: None,
                user_name: user_name.clone(),
                claims_version: 1,
                issued_at: now,
                expires_at: expires,
                last_seen: now,
                state: SessionState::Active,
            });
            let mut hash = [0u8; 32];
            hash.copy_from_slice(hash_bytes);
            batch.tokens.push(Token {
                hash: TokenHash(hash),
                session: id,
                kind: TokenKind::Access,
                issued_at: now,
                expires_at: expires,
                retired_at: None,
            });
        }
        store.apply(batch)?;
        done += n;
    }
    Ok(())
}

/// Opens `n` sessions of `user0` through the authority (on a data set of
/// [`many_sessions`]), for a check that a loaded server answers for real
/// tokens.
pub fn probes(dir: &Path, n: usize) -> anyhow::Result<Vec<String>> {
    let engine = engine(dir)?;
    (0..n).map(|_| open(&engine, "user0")).collect()
}
