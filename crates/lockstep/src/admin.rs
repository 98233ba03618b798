//! Local admin commands that work on a data directory directly (safe while
//! a server runs: SQLite serialises writers, and the server re-reads API
//! clients on an authentication miss).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use lockstep_domain::{AuditRecord, Scope};
use lockstep_engine::Principal;
use lockstep_store::{ChainBreak, verify_chain};
use lockstep_store_sqlite::Durability;

use crate::serve::{open_admin, open_stores};

pub fn create_client(data_dir: &Path, name: &str, scopes: &[String]) -> anyhow::Result<ExitCode> {
    let scopes = scopes
        .iter()
        .map(|s| {
            s.parse::<Scope>().map_err(|_| {
                anyhow::anyhow!("--scope: unknown scope {s:?} (use scim, sessions, introspect, audit)")
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let engine = open_admin(data_dir)?;
    let created = engine.create_client(name, &scopes, &Principal::admin())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "client_id:     {}", created.client.id)?;
    writeln!(out, "client_secret: {}", created.secret)?;
    let names: Vec<&str> = created.client.scopes.iter().map(|s| s.as_str()).collect();
    writeln!(out, "scopes:        {}", names.join(" "))?;
    writeln!(out, "The secret is shown once; only its hash is stored.")?;
    Ok(ExitCode::SUCCESS)
}

pub fn list_clients(data_dir: &Path) -> anyhow::Result<ExitCode> {
    let engine = open_admin(data_dir)?;
    let mut out = std::io::stdout().lock();
    for c in engine.clients() {
        let names: Vec<&str> = c.scopes.iter().map(|s| s.as_str()).collect();
        writeln!(out, "{}  {:<24} {}", c.id, c.name, names.join(" "))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rotate_admin_token(data_dir: &Path) -> anyhow::Result<ExitCode> {
    let engine = open_admin(data_dir)?;
    let token = engine.rotate_admin_token()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "admin token: {token}")?;
    writeln!(out, "Shown once; only its hash is stored. Restart a running server to use it.")?;
    Ok(ExitCode::SUCCESS)
}

/// Records read per page while verifying.
const PAGE: usize = 10_000;

pub fn verify_audit(data_dir: &Path) -> anyhow::Result<ExitCode> {
    if !data_dir.join(lockstep_store_sqlite::SESSIONS_FILE).exists() {
        bail!("data_dir: {} holds no Lockstep data", data_dir.display());
    }
    // Read-only use: no replay, no engine; just the stores.
    let stores = open_stores(data_dir, Durability::Full)?;
    let mut failure = None;
    let mut after = 0u64;
    let mut buffer: std::vec::IntoIter<AuditRecord> = Vec::new().into_iter();
    let records = std::iter::from_fn(|| {
        if let Some(r) = buffer.next() {
            return Some(r);
        }
        match stores.sessions.audit_after(after, PAGE) {
            Ok(page) => {
                after = page.last().map_or(after, |r| r.seq);
                buffer = page.into_iter();
                buffer.next()
            }
            Err(e) => {
                failure = Some(e);
                None
            }
        }
    });
    let result: Result<u64, ChainBreak> = verify_chain(records);
    if let Some(e) = failure {
        return Err(e).context("reading the audit log");
    }
    let consumed = stores.sessions.consumed()?;
    let pending = stores.directory.events_after(consumed, PAGE).context("reading the directory log")?.len();
    let consumed = consumed.map_or(0, |c| c.0);
    let mut out = std::io::stdout().lock();
    match result {
        Ok(n) => {
            writeln!(
                out,
                "audit chain OK: {n} records verified; directory events applied up to {consumed}, {pending} pending replay at next start"
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(brk) => {
            writeln!(out, "audit chain BROKEN: {brk}")?;
            Ok(ExitCode::from(1))
        }
    }
}
