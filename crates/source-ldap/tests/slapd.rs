//! The connector against a real slapd (syncprov + memberof), started by
//! the tests on a free loopback port. Needs `slapd` and `ldap-utils`;
//! `LOCKSTEP_SKIP_LDAP=1` skips when they are missing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use lockstep_engine::sources::{ConnectionState, Removals, SourceRecord, SourceSink};
use lockstep_source_ldap::{LdapSourceConfig, Mode, run};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a change may take to reach the sink: generous, because two
/// tests (each with its own slapd and LDAP tool processes) share two cores
/// in CI. Waits end as soon as the change arrives.
const DELIVERY: Duration = Duration::from_secs(20);

fn config(slapd: &Slapd, mode: Mode) -> LdapSourceConfig {
    let mut c = LdapSourceConfig::openldap("corp", slapd.url.clone(), PEOPLE);
    c.bind_dn = Some(ADMIN_DN.into());
    c.bind_password = Some(ADMIN_PW.into());
    c.group_base_dn = Some(GROUPS.into());
    c.disabled_filter = Some("(employeeType=disabled)".into());
    c.mode = mode;
    c.poll_interval = Duration::from_millis(300);
    c.page_size = 2; // several pages even with a handful of entries
    c
}

struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("run returns on shutdown")
            .unwrap();
    }
}

fn start(cfg: LdapSourceConfig, sink: &Arc<RecordingSink>) -> Running {
    let (tx, rx) = oneshot::channel::<()>();
    let sink: Arc<dyn SourceSink> = sink.clone();
    let task = tokio::spawn(run(cfg, sink, async move {
        let _ = rx.await;
    }));
    Running { stop: Some(tx), task }
}

fn is_live(sink: &RecordingSink) -> bool {
    sink.last_state() == Some(ConnectionState::Live)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncrepl_snapshot_then_live_changes() {
    let Some(slapd) = Slapd::start() else { return };
    let sink = Arc::new(RecordingSink::default());
    let running = start(config(&slapd, Mode::Syncrepl), &sink);
    wait_until("refresh applied and live", Duration::from_secs(10), || is_live(&sink)).await;

    // The refresh is ONE complete snapshot with the cookie.
    let first = sink.updates_since(0);
    assert_eq!(first.len(), 1, "{first:#?}");
    let snap = &first[0];
    assert!(snap.complete);
    assert!(snap.cursor.is_some());
    assert_eq!(snap.removals, Removals::AllExcept { present: BTreeSet::new() });
    let alice_key = slapd.entry_uuid(&format!("uid=alice,{PEOPLE}"));
    let eng_key = slapd.entry_uuid(&format!("cn=engineering,{GROUPS}"));
    let alice = sink.user("alice").expect("alice synced");
    // The control's UUID text equals the entryUUID attribute's.
    assert_eq!(alice.key, alice_key);
    assert_eq!(alice.emails, ["alice@example.com"]);
    assert_eq!(alice.display_name.as_deref(), Some("Alice Example"));
    assert_eq!(alice.profile, r#"{"name":{"familyName":"Example"}}"#);
    assert!(alice.active);
    let eng = sink.group("engineering").expect("engineering synced");
    assert_eq!(eng.key, eng_key);
    assert_eq!(eng.member_keys, BTreeSet::from([alice_key.clone()]));
    assert_eq!(sink.model.lock().unwrap().len(), 2, "services OU and OUs are not users");

    // A new user arrives in persist mode (the latency is printed, not
    // asserted: a loaded CI machine is no benchmark).
    let n = sink.update_count();
    let t0 = Instant::now();
    slapd.add_user("bob", "");
    wait_until("bob upserted", DELIVERY, || sink.user("bob").is_some()).await;
    let latency = t0.elapsed();
    let bob_key = slapd.entry_uuid(&format!("uid=bob,{PEOPLE}"));
    let bob = sink.user("bob").unwrap();
    assert_eq!(bob.key, bob_key);
    assert!(bob.active);
    assert_eq!(bob.profile, r#"{"name":{"familyName":"Test","givenName":"bob"}}"#);
    let deltas = sink.updates_since(n);
    assert!(deltas.iter().all(|u| u.complete && matches!(u.removals, Removals::Keys(_))), "{deltas:#?}");
    assert!(deltas.iter().any(|u| u.cursor.is_some()), "persist changes carry the cookie");
    eprintln!("ldapadd → sink latency {latency:?}");

    // Disabled through the configured filter.
    slapd.ldapmodify(&format!(
        "dn: uid=bob,{PEOPLE}\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n"
    ));
    wait_until("bob inactive", DELIVERY, || sink.user("bob").is_some_and(|b| !b.active)).await;
    slapd.ldapmodify(&format!("dn: uid=bob,{PEOPLE}\nchangetype: modify\ndelete: employeeType\n"));
    wait_until("bob active again", DELIVERY, || sink.user("bob").is_some_and(|b| b.active)).await;

    // Membership: add bob and carol, drop alice.
    slapd.add_user("carol", "");
    let carol_key = slapd.entry_uuid(&format!("uid=carol,{PEOPLE}"));
    slapd.ldapmodify(&format!(
        "dn: cn=engineering,{GROUPS}\nchangetype: modify\nadd: member\nmember: uid=bob,{PEOPLE}\nmember: uid=carol,{PEOPLE}\n-\n\
         delete: member\nmember: uid=alice,{PEOPLE}\n"
    ));
    wait_until("engineering = {bob, carol}", DELIVERY, || {
        sink.group("engineering")
            .is_some_and(|g| g.member_keys == BTreeSet::from([bob_key.clone(), carol_key.clone()]))
    })
    .await;
    // Member removal.
    slapd.ldapmodify(&format!(
        "dn: cn=engineering,{GROUPS}\nchangetype: modify\ndelete: member\nmember: uid=carol,{PEOPLE}\n"
    ));
    wait_until("engineering = {bob}", DELIVERY, || {
        sink.group("engineering").is_some_and(|g| g.member_keys == BTreeSet::from([bob_key.clone()]))
    })
    .await;
    slapd.ldapmodify(&format!(
        "dn: cn=engineering,{GROUPS}\nchangetype: modify\nadd: member\nmember: uid=carol,{PEOPLE}\n"
    ));

    // Deletion: a removal of bob's entryUUID; memberof's refint drops him
    // from the group, and that modify reaches the sink too.
    let n = sink.update_count();
    slapd.ldapdelete(&format!("uid=bob,{PEOPLE}"));
    wait_until("bob removed", DELIVERY, || sink.user("bob").is_none()).await;
    let removed: Vec<String> = sink
        .updates_since(n)
        .into_iter()
        .flat_map(|u| match u.removals {
            Removals::Keys(k) => k,
            Removals::AllExcept { .. } => panic!("a persist delete is not a snapshot"),
        })
        .collect();
    assert!(removed.contains(&bob_key), "{removed:?}");
    wait_until_or(
        "engineering = {carol}",
        DELIVERY,
        || sink.group("engineering").is_some_and(|g| g.member_keys == BTreeSet::from([carol_key.clone()])),
        || format!("{:?}", sink.group("engineering")),
    )
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncrepl_restart_resumes_from_the_cursor() {
    let Some(slapd) = Slapd::start() else { return };
    let sink = Arc::new(RecordingSink::default());
    slapd.add_user("dora", "");
    let running = start(config(&slapd, Mode::Syncrepl), &sink);
    wait_until("live", Duration::from_secs(10), || is_live(&sink)).await;
    running.stop().await;
    assert!(sink.cursor.lock().unwrap().is_some());

    // Restart with nothing changed: nothing is resent.
    let n = sink.update_count();
    let running = start(config(&slapd, Mode::Syncrepl), &sink);
    wait_until("live again", Duration::from_secs(10), || sink.updates_since(n).len() == 1 && is_live(&sink))
        .await;
    let up = &sink.updates_since(n)[0];
    assert!(up.upserts.is_empty(), "unchanged entries resent: {:#?}", up.upserts);
    assert_eq!(sink.model.lock().unwrap().len(), 3, "alice, dora, engineering kept");
    running.stop().await;

    // Changes while the connector is away: a new user, a deleted one.
    slapd.add_user("carol", "");
    slapd.ldapdelete(&format!("uid=dora,{PEOPLE}"));
    let n = sink.update_count();
    let running = start(config(&slapd, Mode::Syncrepl), &sink);
    wait_until("live after changes", Duration::from_secs(10), || {
        sink.updates_since(n).len() == 1 && is_live(&sink)
    })
    .await;
    let up = &sink.updates_since(n)[0];
    let names: Vec<&str> = up
        .upserts
        .iter()
        .filter_map(|r| match r {
            SourceRecord::User(u) => Some(u.user_name.as_str()),
            SourceRecord::Group(_) => None,
        })
        .collect();
    assert_eq!(names, ["carol"], "only the changed user is resent: {up:#?}");
    assert!(sink.user("dora").is_none(), "the offline delete is applied");
    assert!(sink.user("alice").is_some(), "unchanged alice is kept");
    assert!(sink.group("engineering").is_some());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_mode_yields_snapshots() {
    let Some(slapd) = Slapd::start() else { return };
    for i in 0..5 {
        slapd.add_user(&format!("p{i}"), if i == 3 { "employeeType: disabled\n" } else { "" });
    }
    let sink = Arc::new(RecordingSink::default());
    let running = start(config(&slapd, Mode::Poll), &sink);
    wait_until("two polls", Duration::from_secs(10), || sink.update_count() >= 2).await;
    assert_eq!(sink.last_state(), Some(ConnectionState::Polling));
    for up in sink.updates_since(0) {
        assert!(up.complete);
        assert_eq!(up.cursor, None);
        assert_eq!(up.removals, Removals::AllExcept { present: BTreeSet::new() });
        assert_eq!(up.upserts.len(), 7, "alice, p0..p4, engineering (paged by 2)");
    }
    assert!(!sink.user("p3").unwrap().active);
    assert!(sink.user("p2").unwrap().active);
    slapd.ldapdelete(&format!("uid=p1,{PEOPLE}"));
    wait_until("p1 gone", DELIVERY, || sink.user("p1").is_none()).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_slapd_reports_down_and_reconnects() {
    let Some(mut slapd) = Slapd::start() else { return };
    let sink = Arc::new(RecordingSink::default());
    let running = start(config(&slapd, Mode::Syncrepl), &sink);
    wait_until("live", Duration::from_secs(10), || is_live(&sink)).await;

    slapd.kill();
    wait_until("down", Duration::from_secs(5), || {
        matches!(sink.last_state(), Some(ConnectionState::Down { .. }))
    })
    .await;
    slapd.launch();
    let states = || format!("{:?}", sink.states.lock().unwrap());
    wait_until_or("live again", Duration::from_secs(20), || is_live(&sink), states).await;
    slapd.add_user("erin", "");
    wait_until("erin after reconnect", DELIVERY, || sink.user("erin").is_some()).await;
    assert!(sink.user("alice").is_some());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_failure_is_down_naming_the_bind_dn() {
    let Some(slapd) = Slapd::start() else { return };
    let sink = Arc::new(RecordingSink::default());
    let mut cfg = config(&slapd, Mode::Syncrepl);
    cfg.bind_password = Some("not-the-password".into());
    let running = start(cfg, &sink);
    wait_until("down", Duration::from_secs(5), || {
        matches!(sink.last_state(), Some(ConnectionState::Down { .. }))
    })
    .await;
    let Some(ConnectionState::Down { error }) = sink.last_state() else { unreachable!() };
    assert!(error.contains(ADMIN_DN), "{error}");
    assert!(error.contains("invalidCredentials") && error.contains("49"), "{error}");
    assert!(!error.contains("not-the-password"), "{error}");
    assert_eq!(sink.update_count(), 0);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_cookie_falls_back_to_a_full_refresh() {
    let Some(slapd) = Slapd::start() else { return };
    let sink = Arc::new(RecordingSink::default());
    // A cookie from the future: slapd refuses it ("consumer state is newer
    // than provider"), like a cookie from before a restored backup.
    let future = b"rid=000,csn=29991231000000.000000Z#000000#000#000000".to_vec();
    *sink.cursor.lock().unwrap() =
        Some(lockstep_source_ldap::encode_sync_cursor(&[Some(future.clone()), Some(future)]));
    let running = start(config(&slapd, Mode::Syncrepl), &sink);
    wait_until_or(
        "live after reload",
        Duration::from_secs(10),
        || is_live(&sink),
        || format!("{:?}", sink.states.lock().unwrap()),
    )
    .await;
    let ups = sink.updates_since(0);
    assert_eq!(ups.len(), 1, "{ups:#?}");
    assert_eq!(ups[0].removals, Removals::AllExcept { present: BTreeSet::new() }, "a reload is a snapshot");
    assert_eq!(ups[0].upserts.len(), 2);
    assert!(sink.user("alice").is_some() && sink.group("engineering").is_some());
    running.stop().await;
}
