//! The key file: private keys, readable by the owner only, replaced
//! atomically (a server reloading it never reads half a file).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::{JoseError, Keyring};

/// The keyring a server signs with, reloaded when the file changes (so
/// `lockstep keys rotate` beside a running server takes effect without a
/// restart).
#[derive(Debug)]
pub struct SharedKeys {
    path: Option<PathBuf>,
    ring: RwLock<Arc<Keyring>>,
    /// The text last loaded (the file is small: comparing it is cheaper
    /// and surer than trusting modification times).
    loaded: Mutex<Option<String>>,
}

impl SharedKeys {
    /// Loads (or creates) the keyring at `path`.
    pub fn open(path: &Path, now: i64) -> Result<Self, JoseError> {
        let ring = load_or_create(path, now)?;
        let loaded = fs::read_to_string(path).ok();
        Ok(Self {
            path: Some(path.to_owned()),
            ring: RwLock::new(Arc::new(ring)),
            loaded: Mutex::new(loaded),
        })
    }

    /// A keyring kept in memory only (tests, benchmarks).
    pub fn in_memory(ring: Keyring) -> Self {
        Self { path: None, ring: RwLock::new(Arc::new(ring)), loaded: Mutex::new(None) }
    }

    /// The keyring now.
    pub fn current(&self) -> Arc<Keyring> {
        self.ring.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reloads the file if it changed since it was loaded; `true` if it did.
    /// A file that fails to load leaves the keys in use as they were.
    pub fn reload_if_changed(&self) -> Result<bool, JoseError> {
        let Some(path) = &self.path else { return Ok(false) };
        let text = fs::read_to_string(path).map_err(io(path))?;
        let mut last = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        let ring = Keyring::from_json(&text)?;
        *self.ring.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ring);
        *last = Some(text);
        Ok(true)
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> JoseError + '_ {
    move |source| JoseError::Io { path: path.display().to_string(), source }
}

/// Reads the keyring at `path`, creating one with a fresh key (created at
/// `now`, Unix seconds) if there is no file.
pub fn load_or_create(path: &Path, now: i64) -> Result<Keyring, JoseError> {
    match fs::read_to_string(path) {
        Ok(text) => Keyring::from_json(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let ring = Keyring::generate(now)?;
            save(path, &ring)?;
            Ok(ring)
        }
        Err(e) => Err(io(path)(e)),
    }
}

/// Rotates the keyring at `path`: a new signing key, the current one
/// retired, and keys retired more than `keep` seconds ago dropped. Returns
/// the new key's id and the ids dropped.
pub fn rotate_file(path: &Path, now: i64, keep: i64) -> Result<(String, Vec<String>), JoseError> {
    let mut ring = load_or_create(path, now)?;
    let dropped = ring.prune(now, keep);
    let kid = ring.rotate(now)?;
    save(path, &ring)?;
    Ok((kid, dropped))
}

/// Writes the keyring: a temporary file (mode 0600) synced and renamed
/// over the old one.
fn save(path: &Path, ring: &Keyring) -> Result<(), JoseError> {
    let text = ring.to_json()?;
    let tmp = path.with_extension("json.tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io(&tmp))?;
    file.write_all(text.as_bytes()).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent()
        && let Ok(dir) = fs::File::open(dir)
    {
        // Best effort: the rename is durable once the directory is synced.
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_rotated_in_place() {
        let dir = std::env::temp_dir().join(format!("lockstep-jose-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("signing-keys.json");
        let _ = fs::remove_file(&path);
        let first = load_or_create(&path, 10).unwrap();
        let kid = first.signing_kid().unwrap().to_owned();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(
            load_or_create(&path, 20).unwrap().signing_kid(),
            Some(kid.as_str()),
            "loaded, not created"
        );
        let (new, dropped) = rotate_file(&path, 30, 100).unwrap();
        assert!(dropped.is_empty());
        let again = load_or_create(&path, 40).unwrap();
        assert_eq!(again.signing_kid(), Some(new.as_str()));
        assert_eq!(again.kids().len(), 2);
        let shared = SharedKeys::open(&path, 450).unwrap();
        let before = shared.current().signing_kid().unwrap().to_owned();
        let (_, dropped) = rotate_file(&path, 500, 100).unwrap();
        assert_eq!(dropped, vec![kid]);
        assert!(shared.reload_if_changed().unwrap());
        assert!(!shared.reload_if_changed().unwrap(), "unchanged");
        assert_ne!(shared.current().signing_kid().unwrap(), before);
        fs::remove_dir_all(&dir).unwrap();
    }
}
