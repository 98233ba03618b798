//! The AD `uSNChanged` mode against a real Samba AD DC, provisioned by the
//! test in a temp dir. Samba's LDAP port is fixed (389), so this binary
//! holds ONE test: cargo runs test binaries one after another, and a single
//! test cannot race itself. Needs `samba samba-ad-dc samba-ad-provision`;
//! `LOCKSTEP_SKIP_AD=1` skips it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use lockstep_engine::sources::{ConnectionState, Removals, SourceSink};
use lockstep_source_ldap::{LdapSourceConfig, Mode, run};

const AD_BASE: &str = "DC=lockstep,DC=test";
const AD_USERS: &str = "CN=Users,DC=lockstep,DC=test";
const AD_ADMIN: &str = "CN=Administrator,CN=Users,DC=lockstep,DC=test";
const AD_PW: &str = "Lockstep-Adm1n-pw";

struct Samba {
    dir: tempfile::TempDir,
}

impl Samba {
    fn conf(&self) -> PathBuf {
        self.dir.path().join("etc/smb.conf")
    }

    fn start() -> Option<Samba> {
        if std::env::var("LOCKSTEP_SKIP_AD").as_deref() == Ok("1") {
            eprintln!("Samba AD test skipped (LOCKSTEP_SKIP_AD=1)");
            return None;
        }
        let have = |b: &str| {
            ["/usr/bin", "/usr/sbin", "/bin", "/sbin"].iter().any(|d| Path::new(d).join(b).is_file())
        };
        assert!(
            have("samba-tool") && have("samba") && Path::new("/usr/share/samba/setup").is_dir(),
            "Samba AD DC is required for this test: `apt-get install --no-install-recommends samba samba-ad-dc \
             samba-ad-provision ldb-tools` (or set LOCKSTEP_SKIP_AD=1 to skip it)"
        );
        assert!(
            std::net::TcpStream::connect("127.0.0.1:389").is_err(),
            "port 389 is busy: another Samba DC (one per machine) is running"
        );
        let dir = tempfile::Builder::new().prefix("lockstep-samba-ad.").tempdir().expect("tempdir");
        for d in ["etc", "log", "run", "cache"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        let s = Samba { dir };
        std::fs::write(s.conf(), "").expect("empty smb.conf");
        let out = Command::new("samba-tool")
            .args(["domain", "provision"])
            .arg(format!("--configfile={}", s.conf().display()))
            .arg(format!("--targetdir={}", s.dir.path().display()))
            .args([
                "--realm=LOCKSTEP.TEST",
                "--domain=LOCKSTEP",
                "--server-role=dc",
                "--dns-backend=NONE",
                "--use-rfc2307",
                "--host-name=DC1",
                "--host-ip=127.0.0.1",
            ])
            .arg(format!("--adminpass={AD_PW}"))
            .output()
            .expect("samba-tool domain provision");
        assert!(out.status.success(), "provision failed: {}", String::from_utf8_lossy(&out.stderr));
        let d = s.dir.path().display();
        let ours = format!(
            "\tinterfaces = 127.0.0.1\n\tbind interfaces only = yes\n\tserver services = ldap\n\
             \tldap server require strong auth = no\n\ttls enabled = no\n\tpid directory = {d}/run\n\
             \tncalrpc dir = {d}/run/ncalrpc\n\twinbindd socket directory = {d}/run/winbindd\n\
             \tntp signd socket directory = {d}/run/ntp_signd\n\tlogging = file\n\tlog file = {d}/log/samba.log\n"
        );
        let replaced = [
            "interfaces",
            "bind interfaces only",
            "server services",
            "ldap server require strong auth",
            "tls enabled",
            "pid directory",
            "ncalrpc dir",
            "winbindd socket directory",
            "ntp signd socket directory",
            "log file",
            "logging",
        ];
        let conf = std::fs::read_to_string(s.conf()).expect("read smb.conf");
        let mut out_conf = String::new();
        for line in conf.lines() {
            let key = line.split('=').next().unwrap_or("").trim().to_ascii_lowercase();
            if line.contains('=') && replaced.contains(&key.as_str()) {
                continue;
            }
            out_conf.push_str(line);
            out_conf.push('\n');
            if line.trim() == "[global]" {
                out_conf.push_str(&ours);
            }
        }
        std::fs::write(s.conf(), out_conf).expect("write smb.conf");
        let samba = ["/usr/sbin/samba", "/usr/bin/samba"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .expect("samba");
        let st = Command::new(samba)
            .args(["-D", "-s"])
            .arg(s.conf())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("start samba");
        assert!(st.success(), "samba failed to start");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new("ldapsearch")
                .args([
                    "-x",
                    "-LLL",
                    "-o",
                    "nettimeout=2",
                    "-H",
                    "ldap://127.0.0.1:389",
                    "-D",
                    AD_ADMIN,
                    "-w",
                    AD_PW,
                ])
                .args(["-s", "base", "-b", AD_BASE, "dn"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Some(s);
            }
            assert!(Instant::now() < deadline, "samba did not answer LDAP within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn tool(&self, args: &[&str]) -> String {
        let out = Command::new("samba-tool")
            .args(args)
            .arg(format!("--configfile={}", self.conf().display()))
            .output()
            .expect("samba-tool");
        assert!(out.status.success(), "samba-tool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn guid(&self, what: &str, name: &str) -> String {
        let out = self.tool(&[what, "show", name, "--attributes=objectGUID"]);
        out.lines()
            .find_map(|l| l.strip_prefix("objectGUID: "))
            .map(|g| g.trim().to_ascii_lowercase())
            .unwrap_or_else(|| panic!("no objectGUID in {out}"))
    }
}

impl Drop for Samba {
    fn drop(&mut self) {
        let Ok(pid) = std::fs::read_to_string(self.dir.path().join("run/samba.pid")) else { return };
        let pid = pid.trim().to_owned();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let group = || {
            Command::new("ps")
                .args(["-o", "pid=", "-g", &pid])
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !group().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        for p in group() {
            let _ = Command::new("kill").args(["-KILL", &p]).status();
        }
    }
}

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
    wait_until("zoe created", Duration::from_secs(5), || sink.user("zoe").is_some()).await;
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
    wait_until("zoe disabled", Duration::from_secs(5), || sink.user("zoe").is_some_and(|z| !z.active)).await;

    samba.tool(&["group", "add", "eng"]);
    samba.tool(&["group", "addmembers", "eng", "zoe,Administrator"]);
    wait_until("eng = {zoe, admin}", Duration::from_secs(5), || {
        sink.group("eng")
            .is_some_and(|g| g.member_keys == BTreeSet::from([zoe.key.clone(), admin.key.clone()]))
    })
    .await;
    samba.tool(&["group", "removemembers", "eng", "Administrator"]);
    wait_until("eng = {zoe}", Duration::from_secs(5), || {
        sink.group("eng").is_some_and(|g| g.member_keys == BTreeSet::from([zoe.key.clone()]))
    })
    .await;

    // Deletion: the tombstone (Show Deleted) becomes a removal by objectGUID.
    let n = sink.update_count();
    samba.tool(&["user", "delete", "zoe"]);
    wait_until("zoe removed", Duration::from_secs(5), || sink.user("zoe").is_none()).await;
    let removed: Vec<String> = sink
        .updates_since(n)
        .into_iter()
        .flat_map(|u| match u.removals {
            Removals::Keys(k) => k,
            Removals::AllExcept { .. } => panic!("a delete is seen by the delta, not a snapshot"),
        })
        .collect();
    assert!(removed.contains(&zoe.key), "{removed:?}");

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("run stops").unwrap();
}
