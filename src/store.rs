//! The cache directory: checkouts, step records, per-key lock files and temp dirs.
//!
//! Layout (all under the cache dir):
//! ```text
//! checkouts/<repo-slug>-<hash8>/<commit>/   complete checkouts (renamed into place when done)
//! records/<key>.json                        one record per finished step, written atomically
//! locks/<key>.lock                          per-key cross-process locks (released by the OS on exit)
//! locks/run.lock                            the run lock: exclusive for whole-run commands
//!                                           (`ensure --all`, `gc`), shared for `ensure NAME…`
//! tmp/<key>.<random>/                       work in progress; removed by whoever next holds the key's lock
//! ```
//! Records are hints that save work; the engine and the filesystem are the truth.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::key::Key;

/// Version of the record format.
pub const RECORD_SCHEMA: u32 = 1;

#[derive(Debug, thiserror::Error)]
#[error(
    "cache dir {path}: {action} failed: {source}\n  help: check permissions and free space, or pick another dir with --cache-dir / PLANNER_CACHE_DIR"
)]
pub struct StoreError {
    pub path: PathBuf,
    pub action: &'static str,
    #[source]
    pub source: io::Error,
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError {
        path: path.to_owned(),
        action,
        source,
    }
}

/// What a step leaves behind in `records/`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub schema: u32,
    pub kind: String,
    pub key: Key,
    /// Runtime names that shared the step when it ran.
    pub runtimes: Vec<String>,
    pub repo: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile_blake3: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// Seconds since the Unix epoch.
    pub finished_at: u64,
}

/// State of a checkout directory for a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutState {
    Present(PathBuf),
    Missing,
    /// Something is at the path but it is not a checkout of the commit.
    Corrupt(String),
}

/// How a command holds the run lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunLockMode {
    /// Runs of named runtimes may overlap each other (per-key locks keep them correct).
    Shared,
    /// Whole-run commands (`ensure --all`, `gc`) run alone.
    Exclusive,
}

fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(path, "open lock file"))
}

/// A held per-key lock; dropping it (or the process dying) releases it.
#[derive(Debug)]
pub struct KeyLock {
    _file: File,
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the cache dir, creating its layout if needed.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        for sub in ["checkouts", "records", "locks", "tmp"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(io_err(&dir, "create directory"))?;
        }
        Ok(Store {
            root: root.to_owned(),
        })
    }

    /// A store that is never written (for `plan`): paths are computed, nothing is created.
    pub fn read_only(root: &Path) -> Store {
        Store {
            root: root.to_owned(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the checkout of `commit` of `repo` lives.
    pub fn checkout_path(&self, repo: &str, commit: &str) -> PathBuf {
        self.root
            .join("checkouts")
            .join(repo_dir_name(repo))
            .join(commit)
    }

    /// Checks the checkout against the filesystem: present and at `commit`.
    pub fn checkout_state(&self, repo: &str, commit: &str) -> CheckoutState {
        let path = self.checkout_path(repo, commit);
        match fs::symlink_metadata(&path) {
            Err(_) => return CheckoutState::Missing,
            Ok(m) if !m.is_dir() => {
                return CheckoutState::Corrupt(format!("{} is not a directory", path.display()));
            }
            Ok(_) => {}
        }
        match fs::read_to_string(path.join(".git").join("HEAD")) {
            Ok(head) if head.trim() == commit => CheckoutState::Present(path),
            Ok(head) => {
                CheckoutState::Corrupt(format!("HEAD is {} (expected {commit})", head.trim()))
            }
            Err(e) => CheckoutState::Corrupt(format!("cannot read .git/HEAD: {e}")),
        }
    }

    /// Removes whatever is at the checkout path (a corrupt checkout), so it can be redone.
    pub fn remove_checkout(&self, repo: &str, commit: &str) -> Result<(), StoreError> {
        let path = self.checkout_path(repo, commit);
        match fs::remove_dir_all(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(io_err(&path, "remove corrupt checkout")(e))
            }
            _ => Ok(()),
        }
    }

    fn record_path(&self, key: &Key) -> PathBuf {
        self.root.join("records").join(format!("{key}.json"))
    }

    /// Reads a record; a missing, unreadable or malformed record is `None` (it is only a hint).
    pub fn read_record(&self, key: &Key) -> Option<Record> {
        read_json(&self.record_path(key))
            .filter(|r: &Record| r.schema == RECORD_SCHEMA && &r.key == key)
    }

    /// Writes a record atomically: temp file, fsync, rename, fsync of the directory.
    pub fn write_record(&self, record: &Record) -> Result<(), StoreError> {
        let path = self.record_path(&record.key);
        let bytes = serde_json::to_vec_pretty(record).expect("records serialize");
        write_atomic(&path, &bytes)
    }

    /// Takes the per-key lock, blocking until it is free. Call from a blocking context.
    pub fn lock_blocking(&self, key: &Key) -> Result<KeyLock, StoreError> {
        let file = self.open_lock(key)?;
        let path = self.lock_path(key);
        file.lock().map_err(io_err(&path, "lock"))?;
        Ok(KeyLock { _file: file })
    }

    /// Tries the per-key lock; `None` when another process holds it.
    pub fn try_lock(&self, key: &Key) -> Result<Option<KeyLock>, StoreError> {
        let file = self.open_lock(key)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(KeyLock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(io_err(&self.lock_path(key), "lock")(e)),
        }
    }

    /// Tries the run lock in `mode`; `None` when another process holds it in a conflicting mode.
    pub fn try_run_lock(&self, mode: RunLockMode) -> Result<Option<KeyLock>, StoreError> {
        let path = self.run_lock_path();
        let file = open_lock_file(&path)?;
        let res = match mode {
            RunLockMode::Shared => file.try_lock_shared(),
            RunLockMode::Exclusive => file.try_lock(),
        };
        match res {
            Ok(()) => Ok(Some(KeyLock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(io_err(&path, "lock")(e)),
        }
    }

    /// Takes the run lock in `mode`, blocking until it is free. Call from a blocking context.
    pub fn run_lock_blocking(&self, mode: RunLockMode) -> Result<KeyLock, StoreError> {
        let path = self.run_lock_path();
        let file = open_lock_file(&path)?;
        match mode {
            RunLockMode::Shared => file.lock_shared(),
            RunLockMode::Exclusive => file.lock(),
        }
        .map_err(io_err(&path, "lock"))?;
        Ok(KeyLock { _file: file })
    }

    /// The run lock's path (named in "waiting for another run" messages).
    pub fn run_lock_path(&self) -> PathBuf {
        self.root.join("locks").join("run.lock")
    }

    fn lock_path(&self, key: &Key) -> PathBuf {
        self.root.join("locks").join(format!("{key}.lock"))
    }

    fn open_lock(&self, key: &Key) -> Result<File, StoreError> {
        open_lock_file(&self.lock_path(key))
    }

    /// A fresh temp dir for work on `key`. Hold the key's lock while using it.
    pub fn temp_dir(&self, key: &Key) -> Result<tempfile::TempDir, StoreError> {
        let tmp = self.root.join("tmp");
        tempfile::Builder::new()
            .prefix(&format!("{key}."))
            .tempdir_in(&tmp)
            .map_err(io_err(&tmp, "create temp dir"))
    }

    /// Removes temp dirs left for `key` by a killed process. Hold the key's lock.
    pub fn clean_stale_temps(&self, key: &Key) -> Result<usize, StoreError> {
        let tmp = self.root.join("tmp");
        let prefix = format!("{key}.");
        let mut removed = 0;
        for entry in fs::read_dir(&tmp)
            .map_err(io_err(&tmp, "list temp dirs"))?
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let path = entry.path();
                fs::remove_dir_all(&path).map_err(io_err(&path, "remove stale temp dir"))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Moves a finished temp dir to its final path (same filesystem, so the rename is atomic).
    pub fn commit_dir(&self, from: &Path, to: &Path) -> Result<(), StoreError> {
        let parent = to.parent().expect("checkout paths have parents");
        fs::create_dir_all(parent).map_err(io_err(parent, "create directory"))?;
        fs::rename(from, to).map_err(io_err(to, "move checkout into place"))?;
        sync_dir(parent);
        Ok(())
    }
}

/// `<last path segment>-<8 hex of blake3(repo)>`: readable and unique per repository.
pub fn repo_dir_name(repo: &str) -> String {
    let last = repo
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("repo");
    let slug: String = last
        .trim_end_matches(".git")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let hash = blake3::hash(repo.as_bytes()).to_hex();
    format!("{}-{}", slug.trim_start_matches('.'), &hash[..8])
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!("ignoring malformed record {}: {e}", path.display());
            None
        }
    }
}

/// Writes `bytes` to `path` so that readers see the old content or the new, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().expect("record paths have parents");
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir, "create temp file"))?;
    tmp.write_all(bytes).map_err(io_err(path, "write"))?;
    tmp.as_file().sync_all().map_err(io_err(path, "fsync"))?;
    tmp.persist(path)
        .map_err(|e| io_err(path, "rename into place")(e.error))?;
    sync_dir(dir);
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::clone_key;

    fn record(key: &Key) -> Record {
        Record {
            schema: RECORD_SCHEMA,
            kind: "clone".into(),
            key: key.clone(),
            runtimes: vec!["a".into()],
            repo: "https://h.example/r".into(),
            branch: None,
            commit: Some("a".repeat(40)),
            dockerfile_blake3: None,
            image_id: None,
            finished_at: 1,
        }
    }

    #[test]
    fn records_round_trip_and_malformed_ones_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = clone_key("r", &"a".repeat(40));
        assert!(store.read_record(&key).is_none());
        store.write_record(&record(&key)).unwrap();
        assert_eq!(store.read_record(&key), Some(record(&key)));
        fs::write(store.record_path(&key), b"{not json").unwrap();
        assert!(store.read_record(&key).is_none());
        let other = clone_key("r", &"b".repeat(40));
        fs::write(
            store.record_path(&other),
            serde_json::to_vec(&record(&key)).unwrap(),
        )
        .unwrap();
        assert!(
            store.read_record(&other).is_none(),
            "a record under the wrong key is not trusted"
        );
    }

    #[test]
    fn checkout_state_checks_head() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let commit = "c".repeat(40);
        assert_eq!(store.checkout_state("r", &commit), CheckoutState::Missing);
        let path = store.checkout_path("r", &commit);
        fs::create_dir_all(path.join(".git")).unwrap();
        fs::write(path.join(".git/HEAD"), "d".repeat(40)).unwrap();
        assert!(matches!(
            store.checkout_state("r", &commit),
            CheckoutState::Corrupt(_)
        ));
        fs::write(path.join(".git/HEAD"), format!("{commit}\n")).unwrap();
        assert_eq!(
            store.checkout_state("r", &commit),
            CheckoutState::Present(path)
        );
    }

    #[test]
    fn lock_excludes_a_second_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = clone_key("r", "x");
        let held = store.try_lock(&key).unwrap().expect("free");
        assert!(store.try_lock(&key).unwrap().is_none());
        drop(held);
        assert!(store.try_lock(&key).unwrap().is_some());
    }

    #[test]
    fn stale_temps_are_cleaned_for_their_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = clone_key("r", "a");
        let b = clone_key("r", "b");
        let ta = store.temp_dir(&a).unwrap().keep();
        let tb = store.temp_dir(&b).unwrap().keep();
        assert_eq!(store.clean_stale_temps(&a).unwrap(), 1);
        assert!(!ta.exists() && tb.exists());
    }

    #[test]
    fn repo_dir_names_are_readable_and_distinct() {
        let a = repo_dir_name("https://h.example/org/tpl-a.git");
        assert!(a.starts_with("tpl-a-"), "{a}");
        assert_ne!(a, repo_dir_name("https://other.example/org/tpl-a.git"));
    }
}
