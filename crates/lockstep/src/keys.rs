//! Signing keys in the data directory: the engine's JWT signer, and
//! `lockstep keys rotate` / `lockstep keys list`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lockstep_jose::SharedKeys;

/// The key file in a data directory.
pub const KEYS_FILE: &str = "signing-keys.json";

/// How long a retired key stays published beyond the longest access token
/// lifetime (clock skew between us and resource servers).
const PUBLISH_MARGIN: Duration = Duration::from_secs(60);

/// The path of the key file in `data_dir`.
pub fn keys_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEYS_FILE)
}

fn now_seconds() -> i64 {
    use lockstep_engine::Clock as _;
    lockstep_engine::SystemClock.now().unix_seconds()
}

/// Loads (or creates) the data directory's signing keys.
pub fn open(data_dir: &Path) -> anyhow::Result<Arc<SharedKeys>> {
    let path = keys_path(data_dir);
    let keys = SharedKeys::open(&path, now_seconds())
        .with_context(|| format!("signing keys: {}", path.display()))?;
    Ok(Arc::new(keys))
}

/// `lockstep keys rotate`: a new signing key; the old one stays published
/// until every token it signed has expired (`access_token_ttl` + a
/// minute), and keys retired longer ago than that are dropped. A running
/// server picks the new key up within seconds.
pub fn rotate(data_dir: &Path, access_token_ttl: Duration) -> anyhow::Result<ExitCode> {
    let path = keys_path(data_dir);
    let keep = i64::try_from((access_token_ttl + PUBLISH_MARGIN).as_secs()).unwrap_or(i64::MAX);
    let (kid, dropped) = lockstep_jose::rotate_file(&path, now_seconds(), keep)
        .with_context(|| format!("signing keys: {}", path.display()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "new signing key: {kid}")?;
    for old in dropped {
        writeln!(out, "dropped key:     {old} (every token it signed has expired)")?;
    }
    writeln!(
        out,
        "The previous key stays published at /.well-known/jwks.json for {}.",
        humantime::format_duration(access_token_ttl + PUBLISH_MARGIN)
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `lockstep keys list`: key ids, newest first, and when each was retired.
pub fn list(data_dir: &Path) -> anyhow::Result<ExitCode> {
    let path = keys_path(data_dir);
    let ring = lockstep_jose::load_or_create(&path, now_seconds())
        .with_context(|| format!("signing keys: {}", path.display()))?;
    let mut out = std::io::stdout().lock();
    for (kid, retired) in ring.kids() {
        match retired {
            None => writeln!(out, "{kid}  signing")?,
            Some(at) => writeln!(out, "{kid}  retired at {at} (Unix seconds)")?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
