//! Test support, for this crate's tests, the binary's end-to-end tests
//! and the benchmarks (feature `testing`): a throw-away slapd (syncprov and
//! memberof) on a free loopback port and a throw-away Samba AD domain
//! controller, each started in a temp dir and stopped on drop. Panics on
//! failure: it runs only inside tests and benchmarks.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
#[derive(Debug)]
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
        ldap_tool(tool, &self.url, ADMIN_DN, ADMIN_PW, args, stdin);
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

/// Runs an OpenLDAP client tool (`ldapadd`, `ldapmodify`, …) with a simple
/// bind, `stdin` as its LDIF; panics (these are test fixtures) if it fails.
fn ldap_tool(tool: &str, url: &str, bind_dn: &str, password: &str, args: &[&str], stdin: &str) {
    let mut child = Command::new(tool)
        .args(["-x", "-H", url, "-D", bind_dn, "-w", password])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the ldap tool");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write ldif");
    let out = child.wait_with_output().expect("wait for the ldap tool");
    assert!(out.status.success(), "{tool} failed: {}", String::from_utf8_lossy(&out.stderr));
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

pub const AD_BASE: &str = "DC=lockstep,DC=test";
pub const AD_USERS: &str = "CN=Users,DC=lockstep,DC=test";
pub const AD_ADMIN: &str = "CN=Administrator,CN=Users,DC=lockstep,DC=test";
pub const AD_PW: &str = "Lockstep-Adm1n-pw";

#[derive(Debug)]
pub struct Samba {
    /// Its temp dir (configuration, database, logs).
    pub dir: tempfile::TempDir,
}

impl Samba {
    /// Its smb.conf.
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("etc/smb.conf")
    }

    /// Provisions and starts a DC, or `None` when `LOCKSTEP_SKIP_AD=1`.
    pub fn start() -> Option<Samba> {
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
        // A DC dropped by the test before (another test binary) may still be
        // going away: give it a moment before calling the port busy.
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect("127.0.0.1:389").is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
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

    /// Runs `samba-tool ARGS --configfile=…` and returns its output.
    pub fn tool(&self, args: &[&str]) -> String {
        let out = Command::new("samba-tool")
            .args(args)
            .arg(format!("--configfile={}", self.conf().display()))
            .output()
            .expect("samba-tool");
        assert!(out.status.success(), "samba-tool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Adds entries over LDAP as the domain administrator (many users at
    /// once, which `samba-tool` would take a process each for).
    pub fn ldapadd(&self, ldif: &str) {
        self.ldap_tool("ldapadd", ldif);
    }

    /// Modifies entries over LDAP as the domain administrator.
    pub fn ldapmodify(&self, ldif: &str) {
        self.ldap_tool("ldapmodify", ldif);
    }

    fn ldap_tool(&self, tool: &str, ldif: &str) {
        ldap_tool(tool, "ldap://127.0.0.1:389", AD_ADMIN, AD_PW, &[], ldif);
    }

    /// An object's `objectGUID` as `samba-tool` shows it.
    pub fn guid(&self, what: &str, name: &str) -> String {
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
