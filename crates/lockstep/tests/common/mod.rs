//! What the end-to-end tests of the `lockstep` binary share: starting the
//! real binary and learning where it listens.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_lockstep");

/// A running `lockstep`; killed (SIGKILL) and reaped when dropped, so a
/// failing assertion never leaves a server behind.
#[derive(Debug)]
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `lockstep serve --listen 127.0.0.1:0 --data-dir <data>` with this admin
/// token; the caller adds the rest (`--config`, environment, stderr).
pub fn serve(data: &std::path::Path, admin: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("LOCKSTEP_ADMIN_TOKEN", admin)
        .env("LOCKSTEP_LOG", "warn")
        .stderr(Stdio::inherit());
    command
}

/// Spawns `command` and waits until it says where it listens.
pub fn listening(command: &mut Command) -> (Process, String) {
    wait_listening(Process(command.stdout(Stdio::piped()).spawn().unwrap()))
}

/// Waits (at most a minute) until a process spawned with its stdout piped
/// prints where it listens; its stdout is then drained in the background
/// so the child never blocks on a full pipe.
pub fn wait_listening(mut process: Process) -> (Process, String) {
    let stdout = process.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "server did not start");
        let line = lines.next().expect("server exited before listening").unwrap();
        if let Some(addr) = line.strip_prefix("lockstep: listening on ") {
            let addr = addr.trim().to_owned();
            std::thread::spawn(move || for _ in lines {});
            return (process, addr);
        }
    }
}
