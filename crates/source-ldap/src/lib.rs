//! LDAP and Active Directory as a directory source.
//!
//! The connector reads users and groups from a directory and hands them to
//! the engine through [`SourceSink`] as [`SourceUpdate`]s; it never writes
//! the directory itself. Three modes:
//!
//! - [`Mode::Syncrepl`] (OpenLDAP, RFC 4533 refreshAndPersist): the
//!   refresh is one update, then every change is handed over as it
//!   happens, with the cookie as the cursor.
//! - [`Mode::Poll`] (any LDAP server): a paged full read every interval,
//!   handed over as a snapshot.
//! - [`Mode::UsnPoll`] (Active Directory): only what changed since the
//!   last poll's `highestCommittedUSN`, tombstones included.
//!
//! Layout: `ber` parses the wire without panicking, `map` turns entries
//! into records, `sync` is the syncrepl state machine (all three pure),
//! `conn` holds the sessions (the only I/O), and [`run`] supervises them.
//!
//! Trust: ldap3 can still panic (its connection driver, the paged-results
//! adapter) or overflow the stack (deeply nested BER) on malicious input.
//! Each session runs in its own task, so a panic ends only that session;
//! a stack overflow would abort the process, so connect to a server you
//! trust, over TLS with a verified certificate.

mod ber;
mod conn;
mod map;
mod sync;
#[cfg(feature = "testing")]
pub mod testing;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lockstep_engine::sources::{ConnectionState, SourceSink};

pub use ber::{
    EntryState, ProtocolError, RawEntry, SyncDoneValue, SyncInfo, SyncStateValue, UsnCursor,
    decode_sync_cursor, decode_usn_cursor, encode_sync_cursor, encode_usn_cursor, parse_ber, parse_entry,
    parse_sync_done, parse_sync_info, parse_sync_state,
};
pub use conn::{SessionError, UsnDelta, classify_usn_delta, complete_ranged};
pub use map::{
    DnIndex, Mapping, Skip, ad_disabled, dn_is_under, entry_key, guid_text, is_tombstone, map_group,
    map_user, normalize_dn, render_profile, uuid_text,
};
pub use sync::{Batch, Kind, Step, SyncError, SyncMachine, SyncMsg, build_update, map_records};

/// How the connector follows the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// RFC 4533 refreshAndPersist (OpenLDAP with syncprov).
    Syncrepl,
    /// A full paged read every `poll_interval`.
    Poll,
    /// Active Directory: `uSNChanged` deltas every `poll_interval`.
    UsnPoll,
}

/// One LDAP source, as the binary builds it from its configuration.
#[derive(Clone)]
pub struct LdapSourceConfig {
    /// The source's name.
    pub name: String,
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    /// The DN to bind as (`None`: anonymous).
    pub bind_dn: Option<String>,
    /// The bind password. Never logged ([`Debug`] redacts it).
    pub bind_password: Option<String>,
    /// Where the users are.
    pub base_dn: String,
    /// Where the groups are (`None`: groups are not synced).
    pub group_base_dn: Option<String>,
    /// How to follow changes.
    pub mode: Mode,
    /// Interval between polls (poll modes).
    pub poll_interval: Duration,
    /// Which entries under `base_dn` are users.
    pub user_filter: String,
    /// Which entries under `group_base_dn` are groups.
    pub group_filter: String,
    /// Users matching this filter are inactive (asked of the server, never
    /// evaluated by the connector).
    pub disabled_filter: Option<String>,
    /// Attribute names.
    pub mapping: Mapping,
    /// Paged-results page size (searches are always paged).
    pub page_size: i32,
    /// TCP connect (and bind) timeout.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for LdapSourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapSourceConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("bind_dn", &self.bind_dn)
            .field("bind_password", &self.bind_password.as_ref().map(|_| "<redacted>"))
            .field("base_dn", &self.base_dn)
            .field("group_base_dn", &self.group_base_dn)
            .field("mode", &self.mode)
            .field("poll_interval", &self.poll_interval)
            .field("user_filter", &self.user_filter)
            .field("group_filter", &self.group_filter)
            .field("disabled_filter", &self.disabled_filter)
            .field("mapping", &self.mapping)
            .field("page_size", &self.page_size)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl LdapSourceConfig {
    /// OpenLDAP defaults: syncrepl, inetOrgPerson users, groupOfNames
    /// groups (none synced until `group_base_dn` is set), `entryUUID` keys.
    pub fn openldap(name: impl Into<String>, url: impl Into<String>, base_dn: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
            bind_dn: None,
            bind_password: None,
            base_dn: base_dn.into(),
            group_base_dn: None,
            mode: Mode::Syncrepl,
            poll_interval: Duration::from_secs(60),
            user_filter: "(objectClass=inetOrgPerson)".into(),
            group_filter: "(objectClass=groupOfNames)".into(),
            disabled_filter: None,
            mapping: Mapping::openldap(),
            page_size: 500,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// Active Directory defaults: `uSNChanged` polling, `objectGUID` keys,
    /// `sAMAccountName` logins. The user filter uses `objectClass`, not
    /// `objectCategory=person`, because tombstones lose `objectCategory`
    /// and deletions would go unseen; computers are excluded by class.
    pub fn active_directory(
        name: impl Into<String>,
        url: impl Into<String>,
        base_dn: impl Into<String>,
    ) -> Self {
        Self {
            mode: Mode::UsnPoll,
            poll_interval: Duration::from_secs(30),
            user_filter: "(&(objectClass=user)(!(objectClass=computer)))".into(),
            group_filter: "(objectClass=group)".into(),
            mapping: Mapping::active_directory(),
            page_size: 500,
            ..Self::openldap(name, url, base_dn)
        }
    }
}

/// Reconnect delays: 1 s doubling to 60 s; reset after a healthy minute.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
const HEALTHY: Duration = Duration::from_secs(60);

impl Backoff {
    fn new() -> Self {
        Self { next: BACKOFF_MIN }
    }
    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
    fn take(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        d
    }
}

/// Aborts a spawned session when the supervisor stops waiting for it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn read_cursor(sink: &Arc<dyn SourceSink>) -> Result<Option<Vec<u8>>, String> {
    let s = Arc::clone(sink);
    match tokio::task::spawn_blocking(move || s.cursor()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!("cannot read the source's cursor: {e}")),
        Err(e) => Err(format!("cannot read the source's cursor: {e}")),
    }
}

/// Runs the source until `shutdown` completes: connects, syncs, and on any
/// failure (including a panic inside ldap3) reports
/// [`ConnectionState::Down`], backs off and reconnects from the last
/// committed cursor. Never returns before `shutdown`.
pub async fn run(
    config: LdapSourceConfig,
    sink: Arc<dyn SourceSink>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let cfg = Arc::new(config);
    tokio::pin!(shutdown);
    let mut backoff = Backoff::new();
    let mut full_refresh = false;
    loop {
        sink.connection(ConnectionState::Connecting);
        let cursor = tokio::select! {
            c = read_cursor(&sink) => c,
            () = &mut shutdown => return,
        };
        let error = match cursor {
            Err(e) => e,
            Ok(stored) => {
                let cursor = if std::mem::take(&mut full_refresh) { None } else { stored };
                let session = {
                    let (cfg, sink) = (Arc::clone(&cfg), Arc::clone(&sink));
                    AbortOnDrop(tokio::spawn(async move {
                        match cfg.mode {
                            Mode::Syncrepl => conn::syncrepl_session(cfg, sink, cursor).await,
                            Mode::Poll => conn::poll_session(cfg, sink).await,
                            Mode::UsnPoll => conn::usn_session(cfg, sink, cursor).await,
                        }
                    }))
                };
                let mut session = session;
                let healthy = tokio::time::sleep(HEALTHY);
                tokio::pin!(healthy);
                let mut was_healthy = false;
                let outcome = loop {
                    tokio::select! {
                        r = &mut session.0 => break r,
                        () = &mut healthy, if !was_healthy => {
                            was_healthy = true;
                            backoff.reset();
                        }
                        () = &mut shutdown => return,
                    }
                };
                match outcome {
                    Ok(Ok(())) => "session ended".to_owned(),
                    Ok(Err(SessionError::Sync(SyncError::RefreshRequired))) => {
                        tracing::warn!(source = %cfg.name, "cookie too old (e-syncRefreshRequired): full refresh");
                        full_refresh = true;
                        continue;
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(j) if j.is_panic() => {
                        "connector panicked (malformed data from the server?)".to_owned()
                    }
                    Err(j) => format!("connector task failed: {j}"),
                }
            }
        };
        tracing::warn!(source = %cfg.name, error = %error, "ldap source down");
        sink.connection(ConnectionState::Down { error });
        let delay = backoff.take();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = &mut shutdown => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_password() {
        let mut c = LdapSourceConfig::openldap("corp", "ldap://x", "dc=x");
        c.bind_password = Some("hunter2".into());
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("<redacted>"));
    }

    #[test]
    fn presets() {
        let ad = LdapSourceConfig::active_directory("ad", "ldap://dc", "CN=Users,DC=t");
        assert_eq!(ad.mode, Mode::UsnPoll);
        assert_eq!(ad.mapping.key, "objectGUID");
        assert_eq!(ad.mapping.user_name, "sAMAccountName");
        assert!(!ad.user_filter.contains("objectCategory"));
        let ol = LdapSourceConfig::openldap("ol", "ldap://x", "dc=x");
        assert_eq!(ol.mode, Mode::Syncrepl);
        assert_eq!(ol.page_size, 500);
        assert_eq!(ol.connect_timeout, Duration::from_secs(10));
    }

    #[test]
    fn backoff_doubles_to_a_minute_and_resets() {
        let mut b = Backoff::new();
        let got: Vec<u64> = (0..8).map(|_| b.take().as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 60, 60]);
        b.reset();
        assert_eq!(b.take().as_secs(), 1);
    }
}
