//! The AD `uSNChanged` mode against a real Samba AD DC, provisioned by the
//! test in a temp dir. Samba's LDAP port is fixed (389), so this binary
//! holds ONE test: cargo runs test binaries one after another, and a single
//! test cannot race itself. Needs `samba samba-ad-dc samba-ad-provision`;
//! `LOCKSTEP_SKIP_AD=1` skips it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use lockstep_engine::sources::{ConnectionState, Removals, SourceSink};
use lockstep_source_ldap::{LdapSourceConfig, Mode, run};

/// How long a change may take to reach the sink (Samba under a loaded CI
/// machine is slow; waits end as soon as the change arrives).
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_usn_poll_follows_users_groups_and_deletions() {
    let Some(samba) = Samba::start() else { return };
    let mut cfg = LdapSourceConfig::active_directory("ad", "ldap://127.0.0.1:389", AD_USERS);
    cfg.bind_dn = Some(AD_ADMIN.into());
    cfg.bind_password = Some(AD_PW.into());
    cfg.group_base_dn = Some(AD_USERS.into());
    cfg.poll_interval = Duration::from_millis(300);
    cfg.page_size = 5; // several pages: CN=Users holds ~25 objects
    assert_eq!(cfg.mode, Mode::UsnPoll);
    let sink = Arc::new(RecordingSink::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let dyn_sink: Arc<dyn SourceSink> = sink.clone();
    let task = tokio::spawn(run(cfg, dyn_sink, async move {
        let _ = stopped.await;
    }));
    let states = || format!("{:?}", sink.states.lock().unwrap());

    // First poll: a snapshot with a USN cursor.
    wait_until_or("first poll", Duration::from_secs(15), || sink.update_count() >= 1, states).await;
    let first = sink.updates_since(0).remove(0);
    assert_eq!(first.removals, Removals::AllExcept { present: BTreeSet::new() });
    assert!(first.complete && first.cursor.is_some());
    let admin = sink.user("Administrator").expect("Administrator");
    assert_eq!(admin.key, samba.guid("user", "Administrator"), "objectGUID text (little-endian fields)");
    assert!(admin.active);
    assert!(!sink.user("Guest").expect("Guest").active, "Guest is disabled (userAccountControl & 2)");
    let admins = sink.group("Domain Admins").expect("Domain Admins");
    assert!(admins.member_keys.contains(&admin.key));
    assert_eq!(sink.last_state(), Some(ConnectionState::Polling));

    // Later polls are deltas.
    let n = sink.update_count();
    samba.tool(&[
        "user",
        "create",
        "zoe",
        "Zoe-Passw0rd-1",
        "--given-name=Zoe",
        "--surname=Zed",
        "--mail-address=zoe@lockstep.test",
    ]);
    wait_until("zoe created", WAIT, || sink.user("zoe").is_some()).await;
    let zoe = sink.user("zoe").unwrap();
    assert_eq!(zoe.key, samba.guid("user", "zoe"));
    assert!(zoe.active);
    assert_eq!(zoe.emails, ["zoe@lockstep.test"]);
    assert_eq!(zoe.profile, r#"{"name":{"familyName":"Zed","givenName":"Zoe"}}"#);
    assert!(
        sink.updates_since(n).iter().all(|u| matches!(u.removals, Removals::Keys(_)) && u.complete),
        "USN polls after the first are deltas"
    );

    samba.tool(&["user", "disable", "zoe"]);
    wait_until("zoe disabled", WAIT, || sink.user("zoe").is_some_and(|z| !z.active)).await;

    samba.tool(&["group", "add", "eng"]);
    samba.tool(&["group", "addmembers", "eng", "zoe,Administrator"]);
    wait_until("eng = {zoe, admin}", WAIT, || {
        sink.group("eng")
            .is_some_and(|g| g.member_keys == BTreeSet::from([zoe.key.clone(), admin.key.clone()]))
    })
    .await;
    samba.tool(&["group", "removemembers", "eng", "Administrator"]);
    wait_until("eng = {zoe}", WAIT, || {
        sink.group("eng").is_some_and(|g| g.member_keys == BTreeSet::from([zoe.key.clone()]))
    })
    .await;

    // Deletion: the tombstone (Show Deleted) becomes a removal by objectGUID.
    let n = sink.update_count();
    samba.tool(&["user", "delete", "zoe"]);
    wait_until("zoe removed", WAIT, || sink.user("zoe").is_none()).await;
    let removed: Vec<String> = sink
        .updates_since(n)
        .into_iter()
        .flat_map(|u| match u.removals {
            Removals::Keys(k) => k,
            Removals::AllExcept { .. } => panic!("a delete is seen by the delta, not a snapshot"),
        })
        .collect();
    assert!(removed.contains(&zoe.key), "{removed:?}");

    // accountExpires: an account past its end date cannot sign in though
    // userAccountControl still says enabled. Set in the past (a change:
    // the delta sees it), or passing later with nothing changed (each
    // delta asks for accounts that expired since the last poll).
    let filetime = |offset_s: i64| {
        let unix = i64::try_from(std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap().as_secs()).unwrap();
        (unix + offset_s) * 10_000_000 + 116_444_736_000_000_000
    };
    let expire = |name: &str, at: i64| {
        samba.ldapmodify(&format!(
            "dn: CN={name},{AD_USERS}\nchangetype: modify\nreplace: accountExpires\naccountExpires: {at}\n"
        ));
    };
    for name in ["ctr1", "ctr2"] {
        samba.tool(&["user", "create", name, "Ctr-Passw0rd-1"]);
    }
    wait_until("contractors synced", WAIT, || {
        sink.user("ctr1").is_some_and(|u| u.active) && sink.user("ctr2").is_some_and(|u| u.active)
    })
    .await;
    expire("ctr1", filetime(-86_400));
    wait_until("ctr1 expired yesterday", WAIT, || sink.user("ctr1").is_some_and(|u| !u.active)).await;
    // An hour ahead; then the connector's clock (the sink's) moves two
    // hours on, so the expiry passes between two polls with nothing changed
    // in the directory, however slowly the machine runs.
    expire("ctr2", filetime(3_600));
    let n = sink.update_count();
    wait_until("ctr2 read, not yet expired", WAIT, || sink.update_count() > n + 1).await;
    assert!(sink.user("ctr2").unwrap().active, "not expired yet");
    sink.skew_s.store(7_200, std::sync::atomic::Ordering::SeqCst);
    wait_until("ctr2 expired with nothing changed", WAIT, || sink.user("ctr2").is_some_and(|u| !u.active))
        .await;
    // Far in the future or "never" (0): active.
    expire("ctr1", 0);
    wait_until("ctr1 never expires", WAIT, || sink.user("ctr1").is_some_and(|u| u.active)).await;

    // A group too big for one read: Windows AD hands out 1,500 members
    // per read (`member;range=0-1499`) and the connector asks for the rest.
    // Samba answers whole unless a range is asked for, so the test asks
    // for the first range itself (as Windows would answer) and lets the
    // connector's `complete_ranged` fetch the rest from the real server.
    let members = 250;
    let mut ldif = String::new();
    for i in 0..members {
        ldif.push_str(&format!("dn: CN=r{i},{AD_USERS}\nobjectClass: user\nsAMAccountName: r{i}\n\n"));
    }
    ldif.push_str(&format!("dn: CN=ranged,{AD_USERS}\nobjectClass: group\nsAMAccountName: ranged\n"));
    for i in 0..members {
        ldif.push_str(&format!("member: CN=r{i},{AD_USERS}\n"));
    }
    samba.ldapadd(&ldif);
    wait_until("the connector holds all of ranged", Duration::from_secs(10), || {
        sink.group("ranged").is_some_and(|g| g.member_keys.len() == members)
    })
    .await;
    let (conn, mut ldap) = ldap3::LdapConnAsync::new("ldap://127.0.0.1:389").await.unwrap();
    ldap3::drive!(conn);
    ldap.simple_bind(AD_ADMIN, AD_PW).await.unwrap().success().unwrap();
    let dn = format!("CN=ranged,{AD_USERS}");
    let (found, _) = ldap
        .search(&dn, ldap3::Scope::Base, "(objectClass=*)", vec!["member;range=0-99"])
        .await
        .unwrap()
        .success()
        .unwrap();
    let first = ldap3::SearchEntry::construct(found[0].clone());
    let mut entry = lockstep_source_ldap::RawEntry { dn: first.dn.clone(), ..Default::default() };
    for (k, v) in first.attrs {
        entry.attrs.insert(k.to_ascii_lowercase(), v.into_iter().map(String::into_bytes).collect());
    }
    assert_eq!(
        entry.attrs.keys().collect::<Vec<_>>(),
        ["member;range=0-99"],
        "the server ranged the first read"
    );
    assert_eq!(entry.values("member;range=0-99").len(), 100);
    lockstep_source_ldap::complete_ranged(&mut ldap, "member", &mut entry).await.unwrap();
    assert_eq!(entry.attrs.keys().collect::<Vec<_>>(), ["member"], "completed under the plain name");
    let all: BTreeSet<String> = entry.texts("member").into_iter().collect();
    assert_eq!(all.len(), members, "every member, once");
    // A malformed range label is an error, not a loop or a partial group.
    let mut bad = lockstep_source_ldap::RawEntry { dn: dn.clone(), ..Default::default() };
    bad.attrs.insert("member;range=abc".into(), vec![b"CN=r0".to_vec()]);
    assert!(lockstep_source_ldap::complete_ranged(&mut ldap, "member", &mut bad).await.is_err());

    let _ = stop.send(());
    tokio::time::timeout(WAIT, task).await.expect("run stops").unwrap();
}
