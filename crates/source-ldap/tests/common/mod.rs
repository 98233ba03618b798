//! Test support: a throw-away slapd (syncprov + memberof) on a free
//! loopback port, started by the tests themselves, and a recording sink
//! that keeps a model of what the engine would hold.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lockstep_engine::sources::{
    ConnectionState, Removals, SourceApplied, SourceError, SourceRecord, SourceSink, SourceUpdate,
};

pub const BASE: &str = "dc=example,dc=com";
pub const PEOPLE: &str = "ou=people,dc=example,dc=com";
pub const GROUPS: &str = "ou=groups,dc=example,dc=com";
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=com";
pub const ADMIN_PW: &str = "adminpw";

fn find_bin(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// A running slapd in its own temp dir.
pub struct Slapd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub url: String,
    slapd: PathBuf,
}

impl Slapd {
    /// Starts a seeded slapd, or returns `None` when `LOCKSTEP_SKIP_LDAP=1`
    /// and slapd is missing. Without the variable a missing slapd fails the
    /// test: a silently skipped integration test proves nothing.
    pub fn start() -> Option<Slapd> {
        let (slapd, tools) = (find_bin("slapd"), find_bin("ldapadd"));
        let (Some(slapd), Some(_)) = (slapd, tools) else {
            if std::env::var("LOCKSTEP_SKIP_LDAP").as_deref() == Ok("1") {
                eprintln!("slapd/ldap-utils not installed: skipped (LOCKSTEP_SKIP_LDAP=1)");
                return None;
            }
            panic!(
                "slapd and ldap-utils are required for the LDAP integration tests: \
                 `apt-get install slapd ldap-utils` (or set LOCKSTEP_SKIP_LDAP=1 to skip them)"
            );
        };
        let dir = tempfile::Builder::new().prefix("lockstep-slapd.").tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
        let port = free_port();
        let d = dir.path().display();
        let conf = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             include /etc/ldap/schema/nis.schema\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             moduleload syncprov\n\
             moduleload memberof\n\
             pidfile {d}/slapd.pid\n\
             argsfile {d}/slapd.args\n\
             loglevel none\n\
             database mdb\n\
             maxsize 268435456\n\
             suffix \"{BASE}\"\n\
             rootdn \"{ADMIN_DN}\"\n\
             rootpw {ADMIN_PW}\n\
             directory {d}/data\n\
             index objectClass,entryCSN,entryUUID eq\n\
             index uid,cn,member eq\n\
             overlay memberof\n\
             memberof-group-oc groupOfNames\n\
             memberof-member-ad member\n\
             memberof-memberof-ad memberOf\n\
             memberof-refint TRUE\n\
             overlay syncprov\n\
             syncprov-checkpoint 100 10\n\
             syncprov-sessionlog 1000\n"
        );
        std::fs::write(dir.path().join("slapd.conf"), conf).expect("write slapd.conf");
        let check = Command::new(&slapd)
            .args(["-Tt", "-u", "-f"])
            .arg(dir.path().join("slapd.conf"))
            .output()
            .expect("run slapd -Tt");
        assert!(check.status.success(), "slapd.conf invalid: {}", String::from_utf8_lossy(&check.stderr));
        let mut s = Slapd { dir, port, url: format!("ldap://127.0.0.1:{port}"), slapd };
        s.launch();
        s.ldapadd(&format!(
            "dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Test Org\n\n\
             dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n\n\
             dn: ou=services,{BASE}\nobjectClass: organizationalUnit\nou: services\n\n\
             dn: uid=alice,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: alice\ncn: Alice Example\nsn: Example\n\
             mail: alice@example.com\nuserPassword: alicepw\n\n\
             dn: cn=engineering,{GROUPS}\nobjectClass: groupOfNames\ncn: engineering\nmember: uid=alice,{PEOPLE}\n"
        ));
        Some(s)
    }

    fn pid(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("slapd.pid")).ok().map(|p| p.trim().to_owned())
    }

    /// Starts slapd on the configured port (it daemonises) and waits until
    /// it answers.
    pub fn launch(&mut self) {
        let _ = std::fs::remove_file(self.dir.path().join("slapd.pid"));
        let out = Command::new(&self.slapd)
            .arg("-f")
            .arg(self.dir.path().join("slapd.conf"))
            .arg("-h")
            .arg(format!("{}/", self.url))
            .output()
            .expect("start slapd");
        assert!(out.status.success(), "slapd failed: {}", String::from_utf8_lossy(&out.stderr));
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.pid().is_some() && self.search_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("slapd did not come up on {}", self.url);
    }

    fn search_ok(&self) -> bool {
        Command::new("ldapsearch")
            .args(["-x", "-LLL", "-H", &self.url, "-s", "base", "-b", "", "namingContexts"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// SIGKILLs slapd and waits until the port is closed.
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists() {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = std::fs::remove_file(self.dir.path().join("slapd.pid"));
        }
    }

    fn tool(&self, tool: &str, args: &[&str], stdin: &str) {
        let mut child = Command::new(tool)
            .args(["-x", "-H", &self.url, "-D", ADMIN_DN, "-w", ADMIN_PW])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ldap tool");
        child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write ldif");
        let out = child.wait_with_output().expect("wait ldap tool");
        assert!(out.status.success(), "{tool} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn ldapadd(&self, ldif: &str) {
        self.tool("ldapadd", &[], ldif);
    }

    pub fn ldapmodify(&self, ldif: &str) {
        self.tool("ldapmodify", &[], ldif);
    }

    pub fn ldapdelete(&self, dn: &str) {
        self.tool("ldapdelete", &[dn], "");
    }

    /// The entry's `entryUUID` text as slapd shows it.
    pub fn entry_uuid(&self, dn: &str) -> String {
        let out = Command::new("ldapsearch")
            .args([
                "-x",
                "-LLL",
                "-H",
                &self.url,
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PW,
                "-s",
                "base",
                "-b",
                dn,
                "entryUUID",
            ])
            .output()
            .expect("ldapsearch");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix("entryUUID: "))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no entryUUID for {dn}: {text}"))
    }

    pub fn add_user(&self, uid: &str, extra: &str) {
        self.ldapadd(&format!(
            "dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid} Test\nsn: Test\n\
             givenName: {uid}\nmail: {uid}@example.com\n{extra}"
        ));
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

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
}

impl SourceSink for RecordingSink {
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
