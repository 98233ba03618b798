//! Test support: a throw-away slapd (syncprov + memberof) on a free
//! loopback port, started by the tests themselves, and a recording sink
//! that keeps a model of what the engine would hold.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lockstep_engine::sources::{
    ConnectionState, Removals, SourceApplied, SourceError, SourceRecord, SourceSink, SourceUpdate,
};

pub use lockstep_source_ldap::testing::*;

/// A sink that records every call and keeps a model of the directory the
/// engine would hold after applying the updates (upserts replace;
/// `Keys` removes those keys; `AllExcept` removes everything neither
/// upserted nor present; an empty truth is refused like the engine does).
#[derive(Debug, Default)]
pub struct RecordingSink {
    pub updates: Mutex<Vec<(Instant, SourceUpdate)>>,
    pub cursor: Mutex<Option<Vec<u8>>>,
    pub states: Mutex<Vec<ConnectionState>>,
    pub model: Mutex<BTreeMap<String, SourceRecord>>,
    /// Seconds added to the real time the sink reports as now (a test
    /// moves the connector's clock past an expiry instead of sleeping).
    pub skew_s: std::sync::atomic::AtomicI64,
}

impl SourceSink for RecordingSink {
    fn now(&self) -> lockstep_domain::Timestamp {
        let micros = i64::try_from(std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap().as_micros()).unwrap();
        let skew = self.skew_s.load(std::sync::atomic::Ordering::SeqCst) * 1_000_000;
        lockstep_domain::Timestamp(micros + skew)
    }

    fn cursor(&self) -> Result<Option<Vec<u8>>, SourceError> {
        Ok(self.cursor.lock().unwrap().clone())
    }

    fn apply(&self, update: SourceUpdate) -> Result<SourceApplied, SourceError> {
        let mut model = self.model.lock().unwrap();
        if let Removals::AllExcept { present } = &update.removals {
            if update.upserts.is_empty() && present.is_empty() {
                return Err(SourceError::Refused("empty truth".into()));
            }
            let keep: BTreeSet<&str> = update
                .upserts
                .iter()
                .map(SourceRecord::key)
                .chain(present.iter().map(String::as_str))
                .collect();
            model.retain(|k, _| keep.contains(k.as_str()));
        }
        if let Removals::Keys(keys) = &update.removals {
            for k in keys {
                model.remove(k);
            }
        }
        for r in &update.upserts {
            model.insert(r.key().to_owned(), r.clone());
        }
        if let Some(c) = &update.cursor {
            *self.cursor.lock().unwrap() = Some(c.clone());
        }
        self.updates.lock().unwrap().push((Instant::now(), update));
        Ok(SourceApplied::default())
    }

    fn connection(&self, state: ConnectionState) {
        self.states.lock().unwrap().push(state);
    }
}

impl RecordingSink {
    pub fn update_count(&self) -> usize {
        self.updates.lock().unwrap().len()
    }

    pub fn updates_since(&self, n: usize) -> Vec<SourceUpdate> {
        self.updates.lock().unwrap()[n..].iter().map(|(_, u)| u.clone()).collect()
    }

    pub fn last_state(&self) -> Option<ConnectionState> {
        self.states.lock().unwrap().last().cloned()
    }

    pub fn user(&self, user_name: &str) -> Option<lockstep_engine::sources::UserRecord> {
        self.model.lock().unwrap().values().find_map(|r| match r {
            SourceRecord::User(u) if u.user_name == user_name => Some(u.clone()),
            _ => None,
        })
    }

    pub fn group(&self, name: &str) -> Option<lockstep_engine::sources::GroupRecord> {
        self.model.lock().unwrap().values().find_map(|r| match r {
            SourceRecord::Group(g) if g.display_name == name => Some(g.clone()),
            _ => None,
        })
    }
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
pub async fn wait_until(what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
    wait_until_or(what, timeout, cond, String::new).await
}

/// [`wait_until`], describing the state on failure.
pub async fn wait_until_or(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
    describe: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out after {timeout:?} waiting for: {what} {}", describe());
}
