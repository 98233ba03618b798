//! The only module that talks to the server: connect and bind, paged
//! searches, and the three session kinds (syncrepl, poll, AD `uSNChanged`
//! poll). Each session runs inside its own `tokio::spawn` (see
//! [`crate::run`]), so a residual panic in ldap3 ends only the session.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::controls::{MakeCritical, RawControl, RefreshMode, SyncRequest};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, ResultEntry, Scope, SearchStream};
use lockstep_engine::sources::{ConnectionState, Removals, SourceSink, SourceUpdate};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::LdapSourceConfig;
use crate::ber::{
    ProtocolError, RawEntry, SYNC_DONE_OID, SYNC_STATE_OID, UsnCursor, decode_sync_cursor, decode_usn_cursor,
    encode_usn_cursor, parse_entry, parse_sync_done, parse_sync_info, parse_sync_state,
};
use crate::map::{DnIndex, Skip, dn_is_under, entry_key, is_group_entry, is_tombstone, normalize_dn};
use crate::sync::{Kind, Step, SyncError, SyncMachine, SyncMsg, build_update, map_records};

/// How often a live syncrepl session proves the server still answers.
const PROBE_INTERVAL: Duration = Duration::from_secs(30);
/// How long the probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Per-reply timeout of ordinary (non-persistent) operations.
const OP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a persist-phase change waits for companions before it is
/// handed over: bursts become one update, a lone change waits this long.
const COALESCE: Duration = Duration::from_millis(5);
/// The most persist-phase messages folded into one update.
const COALESCE_MAX: usize = 1000;
/// AD: a full snapshot every this many polls catches what the
/// `uSNChanged` delta cannot see (objects moved out of scope, expired
/// tombstones).
const USN_FULL_EVERY: u32 = 60;
/// AD "Show Deleted": tombstones are returned (critical: a server that
/// ignores it would silently hide deletions).
const SHOW_DELETED_OID: &str = "1.2.840.113556.1.4.417";

/// Why a session ended. No variant carries the bind password or a cookie.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// TCP/TLS connection failed.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The server URL.
        url: String,
        /// The cause.
        source: Box<LdapError>,
    },
    /// The server refused the bind.
    #[error("bind as {dn:?} failed: rc={rc} ({name}): {text}")]
    Bind {
        /// The bind DN.
        dn: String,
        /// LDAP result code.
        rc: u32,
        /// The code's name.
        name: &'static str,
        /// The server's diagnostic message.
        text: String,
    },
    /// A search or other operation failed.
    #[error("{what}: {source}")]
    Op {
        /// Which operation.
        what: String,
        /// The cause.
        source: Box<LdapError>,
    },
    /// Malformed data from the server.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The sync cannot continue (including rc 4096).
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The sink refused or failed an update.
    #[error("applying the update failed: {0}")]
    Sink(String),
    /// The liveness probe failed.
    #[error("liveness probe failed: {0}")]
    Probe(String),
    /// The connection's driver task ended.
    #[error("connection closed")]
    Closed,
    /// Something the server returned that the mode cannot work with.
    #[error("{0}")]
    Unsupported(String),
}

fn op(what: impl Into<String>) -> impl FnOnce(LdapError) -> SessionError {
    let what = what.into();
    move |source| SessionError::Op { what, source: Box::new(source) }
}

/// The name of a common LDAP result code (for readable errors).
pub fn rc_name(rc: u32) -> &'static str {
    match rc {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        12 => "unavailableCriticalExtension",
        13 => "confidentialityRequired",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        80 => "other",
        4096 => "e-syncRefreshRequired",
        _ => "unknown",
    }
}

/// Aborts the connection driver when the session goes away, so a dropped
/// or aborted session never leaves a socket behind.
struct Driver(JoinHandle<Result<(), LdapError>>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A bound connection.
struct Conn {
    ldap: Ldap,
    driver: Driver,
}

async fn connect(cfg: &LdapSourceConfig) -> Result<Conn, SessionError> {
    let settings = LdapConnSettings::new().set_conn_timeout(cfg.connect_timeout);
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &cfg.url)
        .await
        .map_err(|source| SessionError::Connect { url: cfg.url.clone(), source: Box::new(source) })?;
    let driver = Driver(tokio::spawn(conn.drive()));
    if let Some(dn) = &cfg.bind_dn {
        let pw = cfg.bind_password.as_deref().unwrap_or("");
        let res = ldap
            .with_timeout(cfg.connect_timeout)
            .simple_bind(dn, pw)
            .await
            .map_err(op(format!("bind as {dn:?}")))?;
        if res.rc != 0 {
            return Err(SessionError::Bind {
                dn: dn.clone(),
                rc: res.rc,
                name: rc_name(res.rc),
                text: res.text,
            });
        }
    }
    Ok(Conn { ldap, driver })
}

/// A paged subtree search (always paged: Windows caps unpaged results at
/// 1,000), references and intermediates dropped, entries parsed by us.
async fn paged_search(
    ldap: &mut Ldap,
    cfg: &LdapSourceConfig,
    base: &str,
    filter: &str,
    attrs: Vec<String>,
    extra: Vec<RawControl>,
) -> Result<Vec<RawEntry>, SessionError> {
    let what = || format!("search of {base:?} for {filter}");
    let adapters: Vec<Box<dyn Adapter<'_, String, Vec<String>>>> =
        vec![Box::new(EntriesOnly::new()), Box::new(PagedResults::new(cfg.page_size.max(1)))];
    if !extra.is_empty() {
        ldap.with_controls(extra);
    }
    let mut st: SearchStream<'_, String, Vec<String>> = ldap
        .with_timeout(OP_TIMEOUT)
        .streaming_search_with(adapters, base, Scope::Subtree, filter, attrs)
        .await
        .map_err(op(what()))?;
    let mut out = Vec::new();
    while let Some(re) = st.next().await.map_err(op(what()))? {
        if re.is_ref() || re.is_intermediate() {
            continue;
        }
        out.push(parse_entry(&re.0)?);
    }
    let res = st.finish().await;
    if res.rc != 0 {
        return Err(SessionError::Op { what: what(), source: Box::new(LdapError::from(res)) });
    }
    Ok(out)
}

/// Completes a ranged attribute of `entry` in place. Active Directory hands
/// out at most `MaxValRange` values (1,500 by default) of a multi-valued
/// attribute per read, labelled `member;range=0-1499`; the rest must be
/// asked for, range after range, until the server labels a range `…-*`.
/// Afterwards the entry holds every value under the plain attribute name,
/// as from a server that does not range. Entries without a ranged `attr`
/// are left alone (one map lookup).
pub async fn complete_ranged(ldap: &mut Ldap, attr: &str, entry: &mut RawEntry) -> Result<(), SessionError> {
    let prefix = format!("{};range=", attr.to_ascii_lowercase());
    let Some(first) = entry.attrs.keys().find(|k| k.starts_with(&prefix)).cloned() else {
        return Ok(());
    };
    let what = || format!("ranged read of {attr} of {:?}", entry.dn);
    let malformed = |label: &str| SessionError::Unsupported(format!("{}: range {label:?}", what()));
    let mut values = entry.attrs.remove(&first).unwrap_or_default();
    let mut label = first[prefix.len()..].to_owned();
    // A server that keeps answering with ranges it already gave would loop
    // for ever; no group holds this many values.
    for _ in 0..100_000 {
        let (_, end) = label.split_once('-').ok_or_else(|| malformed(&label))?;
        if end == "*" {
            entry.attrs.entry(attr.to_ascii_lowercase()).or_default().extend(values);
            return Ok(());
        }
        let next = end.parse::<u64>().map_err(|_| malformed(&label))? + 1;
        let ask = vec![format!("{attr};range={next}-*")];
        let (found, _) = ldap
            .with_timeout(OP_TIMEOUT)
            .search(&entry.dn, Scope::Base, "(objectClass=*)", ask)
            .await
            .and_then(|r| r.success())
            .map_err(op(what()))?;
        let part = match found.first() {
            Some(re) => parse_entry(&re.0)?,
            None => return Err(SessionError::Unsupported(format!("{}: the entry is gone", what()))),
        };
        let Some((key, more)) = part.attrs.into_iter().find(|(k, _)| k.starts_with(&prefix)) else {
            // Nothing beyond what was given: the values were complete.
            entry.attrs.entry(attr.to_ascii_lowercase()).or_default().extend(values);
            return Ok(());
        };
        values.extend(more);
        label = key[prefix.len()..].to_owned();
    }
    Err(malformed(&label))
}

/// Reads rootDSE attributes.
async fn root_dse(ldap: &mut Ldap, attrs: Vec<String>, timeout: Duration) -> Result<RawEntry, SessionError> {
    let (entries, _) = ldap
        .with_timeout(timeout)
        .search("", Scope::Base, "(objectClass=*)", attrs)
        .await
        .and_then(|r| r.success())
        .map_err(op("rootDSE read"))?;
    match entries.first() {
        Some(re) => Ok(parse_entry(&re.0)?),
        None => Ok(RawEntry::default()),
    }
}

/// Hands an update to the sink on a blocking thread (it commits to SQLite).
async fn apply(sink: &Arc<dyn SourceSink>, update: SourceUpdate) -> Result<(), SessionError> {
    let sink = Arc::clone(sink);
    let upserts = update.upserts.len();
    let res = tokio::task::spawn_blocking(move || sink.apply(update))
        .await
        .map_err(|e| SessionError::Sink(format!("apply task failed: {e}")))?;
    match res {
        Ok(applied) => {
            tracing::debug!(upserts, ?applied, "ldap update applied");
            Ok(())
        }
        Err(e) => Err(SessionError::Sink(e.to_string())),
    }
}

fn report(sink: &Arc<dyn SourceSink>, state: ConnectionState) {
    sink.connection(state);
}

fn log_skipped(source: &str, skipped: &[(String, Skip)]) {
    for (dn, why) in skipped {
        tracing::warn!(source, dn = %dn, reason = %why, "ldap entry skipped");
    }
}

/// `(&{a}{b})`.
fn and(a: &str, b: &str) -> String {
    format!("(&{a}{b})")
}

/// Keys of the users matching the disabled filter (a paged key-only search).
async fn disabled_keys(
    ldap: &mut Ldap,
    cfg: &LdapSourceConfig,
    extra_filter: Option<&str>,
) -> Result<BTreeSet<String>, SessionError> {
    let Some(df) = &cfg.disabled_filter else { return Ok(BTreeSet::new()) };
    let mut filter = and(&cfg.user_filter, df);
    if let Some(x) = extra_filter {
        filter = and(&filter, x);
    }
    let entries =
        paged_search(ldap, cfg, &cfg.base_dn, &filter, vec![cfg.mapping.key.clone()], vec![]).await?;
    Ok(entries.iter().filter_map(|e| entry_key(e, &cfg.mapping).ok()).collect())
}

/// Whether the single entry at `dn` matches the disabled filter, asked the
/// server (the connector never evaluates filters itself).
async fn entry_disabled(ldap: &mut Ldap, cfg: &LdapSourceConfig, dn: &str) -> Result<bool, SessionError> {
    let Some(df) = &cfg.disabled_filter else { return Ok(false) };
    let res = ldap
        .with_timeout(OP_TIMEOUT)
        .search(dn, Scope::Base, &and(&cfg.user_filter, df), vec!["1.1"])
        .await
        .map_err(op(format!("disabled check of {dn:?}")))?;
    match res.1.rc {
        0 => Ok(!res.0.is_empty()),
        // Gone since: its deletion follows.
        32 => Ok(false),
        _ => Err(SessionError::Op {
            what: format!("disabled check of {dn:?}"),
            source: Box::new(LdapError::from(res.1)),
        }),
    }
}

/// The user DN → key index from a key-only listing of the user base, and
/// the groups' current entries (their members are needed to refresh a
/// group when one of its users is deleted).
async fn list_index(
    ldap: &mut Ldap,
    cfg: &LdapSourceConfig,
    group_entries: bool,
) -> Result<(DnIndex, Vec<(String, RawEntry)>), SessionError> {
    let mut index = DnIndex::default();
    let key = vec![cfg.mapping.key.clone()];
    for e in paged_search(ldap, cfg, &cfg.base_dn, &cfg.user_filter, key.clone(), vec![]).await? {
        if let Ok(k) = entry_key(&e, &cfg.mapping) {
            index.insert_user(&k, &e.dn);
        }
    }
    let mut groups = Vec::new();
    if let Some(gb) = &cfg.group_base_dn {
        let attrs = if group_entries { cfg.mapping.group_attrs() } else { key };
        for mut e in paged_search(ldap, cfg, gb, &cfg.group_filter, attrs, vec![]).await? {
            if let Ok(k) = entry_key(&e, &cfg.mapping) {
                index.insert_group(&k);
                if group_entries {
                    complete_ranged(ldap, &cfg.mapping.member, &mut e).await?;
                    groups.push((k, e));
                }
            }
        }
    }
    Ok((index, groups))
}

/// Reads users, groups and disabled keys (with AD accounts expired by
/// `now`): the whole truth.
async fn full_read(
    ldap: &mut Ldap,
    cfg: &LdapSourceConfig,
    now: lockstep_domain::Timestamp,
) -> Result<(BTreeMap<String, RawEntry>, BTreeMap<String, RawEntry>, BTreeSet<String>, DnIndex), SessionError>
{
    let mut index = DnIndex::default();
    let mut users = BTreeMap::new();
    let mut skipped = Vec::new();
    for e in paged_search(ldap, cfg, &cfg.base_dn, &cfg.user_filter, cfg.mapping.user_attrs(), vec![]).await?
    {
        match entry_key(&e, &cfg.mapping) {
            Ok(k) => {
                index.insert_user(&k, &e.dn);
                users.insert(k, e);
            }
            Err(why) => skipped.push((e.dn, why)),
        }
    }
    let mut groups = BTreeMap::new();
    if let Some(gb) = &cfg.group_base_dn {
        for mut e in paged_search(ldap, cfg, gb, &cfg.group_filter, cfg.mapping.group_attrs(), vec![]).await?
        {
            match entry_key(&e, &cfg.mapping) {
                Ok(k) => {
                    index.insert_group(&k);
                    complete_ranged(ldap, &cfg.mapping.member, &mut e).await?;
                    groups.insert(k, e);
                }
                Err(why) => skipped.push((e.dn, why)),
            }
        }
    }
    log_skipped(&cfg.name, &skipped);
    let mut disabled = disabled_keys(ldap, cfg, None).await?;
    disabled.extend(expired_keys(&users, cfg, now));
    Ok((users, groups, disabled, index))
}

/// Keys of the AD users among `users` whose account has expired by `now`
/// (none for other directories).
fn expired_keys<'a>(
    users: &'a BTreeMap<String, RawEntry>,
    cfg: &'a LdapSourceConfig,
    now: lockstep_domain::Timestamp,
) -> impl Iterator<Item = String> + 'a {
    users
        .iter()
        .filter(move |(_, e)| cfg.mapping.active_directory && crate::map::ad_expired(e, now))
        .map(|(k, _)| k.clone())
}

/// AD users whose `accountExpires` fell in `(since, now]`: they changed
/// nothing (no `uSNChanged`), yet cannot sign in any more, so each delta
/// poll asks for them by that window.
async fn newly_expired(
    ldap: &mut Ldap,
    cfg: &LdapSourceConfig,
    since: lockstep_domain::Timestamp,
    now: lockstep_domain::Timestamp,
) -> Result<BTreeMap<String, RawEntry>, SessionError> {
    if !cfg.mapping.active_directory {
        return Ok(BTreeMap::new());
    }
    let window = format!(
        "(&(accountExpires>={})(accountExpires<={}))",
        crate::map::filetime(since).saturating_add(1),
        crate::map::filetime(now)
    );
    let filter = and(&cfg.user_filter, &window);
    let mut out = BTreeMap::new();
    for e in paged_search(ldap, cfg, &cfg.base_dn, &filter, cfg.mapping.user_attrs(), vec![]).await? {
        if let Ok(k) = entry_key(&e, &cfg.mapping) {
            out.insert(k, e);
        }
    }
    Ok(out)
}

async fn unbind(mut conn: Conn) {
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.ldap.unbind()).await;
    drop(conn.driver);
}

// ---------------------------------------------------------------- poll

/// Poll mode: every interval, a fresh connection reads everything and
/// hands it over as a snapshot.
pub async fn poll_session(cfg: Arc<LdapSourceConfig>, sink: Arc<dyn SourceSink>) -> Result<(), SessionError> {
    loop {
        let mut conn = connect(&cfg).await?;
        let (users, groups, disabled, index) = full_read(&mut conn.ldap, &cfg, sink.now()).await?;
        unbind(conn).await;
        let (records, skipped) = map_records(users, groups, &disabled, &cfg.mapping, &index);
        log_skipped(&cfg.name, &skipped);
        tracing::debug!(source = %cfg.name, records = records.len(), skipped = skipped.len(), "ldap poll read");
        apply(&sink, SourceUpdate::snapshot(records)).await?;
        report(&sink, ConnectionState::Polling);
        tokio::time::sleep(cfg.poll_interval).await;
    }
}

// ------------------------------------------------------------- AD USN poll

/// An AD `uSNChanged` delta, sorted by what to do with each entry.
#[derive(Debug, Default)]
pub struct UsnDelta {
    /// Changed users by key.
    pub users: BTreeMap<String, RawEntry>,
    /// Changed groups by key.
    pub groups: BTreeMap<String, RawEntry>,
    /// Keys of tombstones that were in scope.
    pub removed: Vec<String>,
    /// Entries without a usable key.
    pub skipped: Vec<(String, Skip)>,
}

/// Classifies the entries of an AD `uSNChanged` delta: tombstones become
/// removals (when `lastKnownParent` was in scope), groups and users under
/// their bases become upserts, the rest is out of scope and ignored (a
/// move out of scope is caught by the periodic full snapshot).
pub fn classify_usn_delta(entries: Vec<RawEntry>, cfg: &LdapSourceConfig, index: &mut DnIndex) -> UsnDelta {
    let user_base = normalize_dn(&cfg.base_dn);
    let group_base = cfg.group_base_dn.as_deref().map(normalize_dn);
    let in_scope = |dn: &str| {
        let dn = normalize_dn(dn);
        dn_is_under(&dn, &user_base) || group_base.as_deref().is_some_and(|g| dn_is_under(&dn, g))
    };
    let mut out = UsnDelta::default();
    for e in entries {
        let key = match entry_key(&e, &cfg.mapping) {
            Ok(k) => k,
            Err(why) => {
                out.skipped.push((e.dn, why));
                continue;
            }
        };
        if is_tombstone(&e) {
            // Tombstones live in CN=Deleted Objects; lastKnownParent says
            // where the object was. Without it, remove anyway (a key the
            // source does not own is a no-op removal).
            let was_ours = e.first_text("lastKnownParent").is_none_or(|p| in_scope(&p));
            if was_ours {
                index.remove(&key);
                out.removed.push(key);
            }
            continue;
        }
        let dn = normalize_dn(&e.dn);
        if is_group_entry(&e) {
            if group_base.as_deref().is_some_and(|g| dn_is_under(&dn, g)) {
                index.insert_group(&key);
                out.groups.insert(key, e);
            }
        } else if dn_is_under(&dn, &user_base) {
            index.insert_user(&key, &e.dn);
            out.users.insert(key, e);
        }
    }
    out
}

/// AD mode: poll `highestCommittedUSN`; read what changed since the last
/// poll (tombstones included) as a delta, or everything as a snapshot on
/// the first poll, after a DC switch or USN rollback, and every
/// [`USN_FULL_EVERY`] polls.
pub async fn usn_session(
    cfg: Arc<LdapSourceConfig>,
    sink: Arc<dyn SourceSink>,
    cursor: Option<Vec<u8>>,
) -> Result<(), SessionError> {
    let mut last = cursor.as_deref().and_then(decode_usn_cursor);
    let mut polls: u32 = 0;
    let mut index: Option<DnIndex> = None;
    // When account expiry was last checked. `None` after a start: the first
    // poll then reads everything, which also finds accounts that expired
    // while the connector was down.
    let mut expiry_checked: Option<lockstep_domain::Timestamp> = None;
    loop {
        let clock = sink.now();
        let mut conn = connect(&cfg).await?;
        let dse = root_dse(
            &mut conn.ldap,
            vec!["highestCommittedUSN".into(), "dsServiceName".into(), "defaultNamingContext".into()],
            OP_TIMEOUT,
        )
        .await?;
        let usn = dse
            .first_text("highestCommittedUSN")
            .and_then(|t| t.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                SessionError::Unsupported("rootDSE has no highestCommittedUSN: not Active Directory?".into())
            })?;
        let server = dse.first_text("dsServiceName").unwrap_or_default();
        let now = UsnCursor { server: server.clone(), usn };
        let full = match &last {
            None => true,
            Some(l) => {
                l.server != server
                    || usn < l.usn
                    || polls >= USN_FULL_EVERY
                    || (cfg.mapping.active_directory && expiry_checked.is_none())
            }
        };
        let expired_since = match (full, expiry_checked) {
            (false, Some(since)) => newly_expired(&mut conn.ldap, &cfg, since, clock).await?,
            _ => BTreeMap::new(),
        };
        let update = if full {
            polls = 0;
            let (users, groups, disabled, idx) = full_read(&mut conn.ldap, &cfg, clock).await?;
            let (records, skipped) = map_records(users, groups, &disabled, &cfg.mapping, &idx);
            log_skipped(&cfg.name, &skipped);
            index = Some(idx);
            SourceUpdate::snapshot(records).with_cursor(Some(encode_usn_cursor(&now)))
        } else if last.as_ref().is_some_and(|l| l.usn == usn) && expired_since.is_empty() {
            // Nothing committed since: an empty complete delta still tells
            // the engine the source was read just now.
            SourceUpdate::delta(vec![], vec![]).complete(true)
        } else {
            let from = last.as_ref().map_or(0, |l| l.usn).saturating_add(1);
            let idx = match index.take() {
                Some(i) => i,
                None => list_index(&mut conn.ldap, &cfg, false).await?.0,
            };
            let mut idx = idx;
            let kinds = match &cfg.group_base_dn {
                Some(_) => format!("(|{}{})", cfg.user_filter, cfg.group_filter),
                None => cfg.user_filter.clone(),
            };
            let usn_filter = format!("(uSNChanged>={from})");
            let filter = and(&kinds, &usn_filter);
            let root = dse.first_text("defaultNamingContext").unwrap_or_else(|| cfg.base_dn.clone());
            let mut attrs = cfg.mapping.user_attrs();
            attrs.extend(cfg.mapping.group_attrs());
            attrs.extend(["uSNChanged".to_owned(), "isDeleted".to_owned(), "lastKnownParent".to_owned()]);
            let show_deleted = RawControl { ctype: SHOW_DELETED_OID.into(), crit: true, val: None };
            let entries =
                paged_search(&mut conn.ldap, &cfg, &root, &filter, attrs, vec![show_deleted]).await?;
            let UsnDelta { mut users, mut groups, removed, mut skipped } =
                classify_usn_delta(entries, &cfg, &mut idx);
            for e in groups.values_mut() {
                complete_ranged(&mut conn.ldap, &cfg.mapping.member, e).await?;
            }
            let mut disabled = if users.is_empty() {
                BTreeSet::new()
            } else {
                disabled_keys(&mut conn.ldap, &cfg, Some(&usn_filter)).await?
            };
            for (key, e) in expired_since {
                users.entry(key).or_insert(e);
            }
            disabled.extend(expired_keys(&users, &cfg, clock));
            let (records, more) = map_records(users, groups, &disabled, &cfg.mapping, &idx);
            skipped.extend(more);
            log_skipped(&cfg.name, &skipped);
            index = Some(idx);
            SourceUpdate::delta(records, removed).complete(true).with_cursor(Some(encode_usn_cursor(&now)))
        };
        unbind(conn).await;
        apply(&sink, update).await?;
        last = Some(now);
        expiry_checked = Some(clock);
        polls = polls.saturating_add(1);
        report(&sink, ConnectionState::Polling);
        tokio::time::sleep(cfg.poll_interval).await;
    }
}

// ---------------------------------------------------------------- syncrepl

type Forwarded = (usize, Result<Option<SyncMsg>, SessionError>);

/// Turns one search result into a [`SyncMsg`] (`None`: a reference).
fn to_msg(re: &ResultEntry) -> Result<Option<SyncMsg>, SessionError> {
    if re.is_ref() {
        return Ok(None);
    }
    if re.is_intermediate() {
        return Ok(Some(SyncMsg::Info(parse_sync_info(&re.0)?)));
    }
    let entry = parse_entry(&re.0)?;
    let ctl =
        re.1.iter()
            .find(|c| c.1.ctype == SYNC_STATE_OID)
            .ok_or(ProtocolError { what: "entry without syncState control" })?;
    let state = parse_sync_state(ctl.1.val.as_deref().unwrap_or(&[]))?;
    Ok(Some(SyncMsg::Entry { state, entry }))
}

/// Reads one syncrepl search and forwards its messages until it ends.
async fn forward(
    i: usize,
    mut st: SearchStream<'static, String, Vec<String>>,
    tx: mpsc::UnboundedSender<Forwarded>,
) {
    loop {
        match st.next().await {
            Ok(Some(re)) => {
                let msg = to_msg(&re);
                let stop = msg.is_err();
                if tx.send((i, msg)).is_err() || stop {
                    return;
                }
            }
            Ok(None) => {
                let res = st.finish().await;
                let done = res
                    .ctrls
                    .iter()
                    .find(|c| c.1.ctype == SYNC_DONE_OID)
                    .and_then(|c| c.1.val.as_deref())
                    .and_then(|v| parse_sync_done(v).ok());
                let _ = tx.send((i, Ok(Some(SyncMsg::Done { rc: res.rc, text: res.text, done }))));
                return;
            }
            Err(e) => {
                let _ = tx
                    .send((i, Err(SessionError::Op { what: "syncrepl search".into(), source: Box::new(e) })));
                return;
            }
        }
    }
}

/// Syncrepl mode: refreshAndPersist searches of the user base and (if
/// configured) the group base, each with its own cookie.
pub async fn syncrepl_session(
    cfg: Arc<LdapSourceConfig>,
    sink: Arc<dyn SourceSink>,
    cursor: Option<Vec<u8>>,
) -> Result<(), SessionError> {
    let mut conn = connect(&cfg).await?;
    let mut searches =
        vec![(Kind::Users, cfg.base_dn.clone(), cfg.user_filter.clone(), cfg.mapping.user_attrs())];
    if let Some(gb) = &cfg.group_base_dn {
        searches.push((Kind::Groups, gb.clone(), cfg.group_filter.clone(), cfg.mapping.group_attrs()));
    }
    let cookies = match cursor.as_deref().map(decode_sync_cursor) {
        Some(Some(c)) if c.len() == searches.len() => c,
        Some(_) => {
            tracing::warn!(source = %cfg.name, "stored cursor is not a syncrepl cursor for this configuration: full refresh");
            vec![None; searches.len()]
        }
        None => vec![None; searches.len()],
    };
    let (index, groups) = list_index(&mut conn.ldap, &cfg, true).await?;
    let kinds: Vec<_> = searches.iter().zip(&cookies).map(|((k, ..), c)| (*k, c.clone())).collect();
    let mut machine = SyncMachine::with_groups(&kinds, index, &cfg.mapping.member, groups);

    let (tx, mut rx) = mpsc::unbounded_channel::<Forwarded>();
    let mut forwarders = JoinSet::new();
    for (i, ((_, base, filter, attrs), cookie)) in searches.into_iter().zip(cookies).enumerate() {
        let req = SyncRequest { mode: RefreshMode::RefreshAndPersist, cookie, reload_hint: false };
        // No timeout: an idle persist phase must not time out.
        let st = conn
            .ldap
            .with_controls(req.critical())
            .streaming_search(&base, Scope::Subtree, &filter, attrs)
            .await
            .map_err(op(format!("syncrepl search of {base:?}")))?;
        forwarders.spawn(forward(i, st, tx.clone()));
    }
    drop(tx);

    let mut probe = tokio::time::interval(PROBE_INTERVAL);
    probe.tick().await;
    let mut probe_ldap = conn.ldap.clone();
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some((i, msg)) = msg else { return Err(SessionError::Closed) };
                let Some(msg) = msg? else { continue };
                match machine.feed(i, msg)? {
                    Step::Pending => {}
                    Step::RefreshDone => {
                        flush(&mut conn.ldap, &cfg, &sink, &mut machine).await?;
                        report(&sink, ConnectionState::Live);
                    }
                    Step::Change => {
                        // Fold in whatever arrives right behind it.
                        for _ in 0..COALESCE_MAX {
                            let next = match rx.try_recv() {
                                Ok(m) => Some(m),
                                Err(_) => tokio::time::timeout(COALESCE, rx.recv()).await.ok().flatten(),
                            };
                            let Some((i, msg)) = next else { break };
                            if let Some(msg) = msg? {
                                machine.feed(i, msg)?;
                            }
                        }
                        flush(&mut conn.ldap, &cfg, &sink, &mut machine).await?;
                    }
                }
            }
            _ = probe.tick() => {
                let r = tokio::time::timeout(PROBE_TIMEOUT, root_dse(&mut probe_ldap, vec!["1.1".into()], PROBE_TIMEOUT)).await;
                match r {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(SessionError::Probe(e.to_string())),
                    Err(_) => return Err(SessionError::Probe("no answer within 10 s".into())),
                }
            }
            joined = forwarders.join_next(), if !forwarders.is_empty() => {
                if let Some(Err(e)) = joined && e.is_panic() {
                    return Err(SessionError::Unsupported("syncrepl reader panicked (malformed server data?)".into()));
                }
            }
            _ = &mut conn.driver.0 => return Err(SessionError::Closed),
        }
    }
}

/// Takes the machine's pending batch, settles who is disabled, maps it and
/// hands it over.
async fn flush(
    ldap: &mut Ldap,
    cfg: &LdapSourceConfig,
    sink: &Arc<dyn SourceSink>,
    machine: &mut SyncMachine,
) -> Result<(), SessionError> {
    let batch = machine.take_batch();
    let mut disabled = BTreeSet::new();
    if cfg.disabled_filter.is_some() && !batch.users.is_empty() {
        if batch.refresh {
            // One paged search for the whole refresh (the keys come from
            // the entryUUID attribute, whose text equals the control's).
            disabled = disabled_keys(ldap, cfg, None).await?;
        } else {
            for (key, e) in &batch.users {
                if entry_disabled(ldap, cfg, &e.dn).await? {
                    disabled.insert(key.clone());
                }
            }
        }
    }
    let refresh = batch.refresh;
    let (update, skipped) = build_update(batch, &disabled, &cfg.mapping, machine.index());
    log_skipped(&cfg.name, &skipped);
    if refresh {
        let removals = match &update.removals {
            Removals::AllExcept { present } => format!("all except {} present", present.len()),
            Removals::Keys(k) => format!("{} keys", k.len()),
        };
        tracing::info!(source = %cfg.name, upserts = update.upserts.len(), %removals, skipped = skipped.len(), "ldap refresh complete");
    }
    apply(sink, update).await
}
