//! Locks in `locks/`: one per key (`<key>.lock`), so that two processes never do the same
//! step at once, and the run lock (`run.lock`): exclusive for `gc` (which removes images,
//! checkouts and records), shared for every `ensure` and watch tick. Locks are `flock`s on files; the OS releases them when the
//! process ends, however it ends. `gc` may unlink a free lock file while holding it; the
//! protocol tolerates it ([`try_lock_file`]).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use super::{Store, StoreError, io_err, read_dir_or_empty};
use crate::key::Key;

/// How a command holds the run lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunLockMode {
    /// Runs (`ensure`, `--all` too, watch ticks) may overlap each other (per-key locks keep
    /// them correct).
    Shared,
    /// `gc` runs alone: it removes what a run may be using.
    Exclusive,
}

impl RunLockMode {
    fn kind(self) -> LockKind {
        match self {
            RunLockMode::Shared => LockKind::Shared,
            RunLockMode::Exclusive => LockKind::Exclusive,
        }
    }
}

pub(super) fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(path, "open lock file"))
}

/// How a lock file is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LockKind {
    Shared,
    Exclusive,
}

/// Whether `file` (locked) is still the file at `path`: `gc` unlinks free lock files while
/// holding them, so a lock taken on a file opened before that guards nothing.
fn is_current(file: &File, path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let held = file.metadata()?;
    match fs::metadata(path) {
        Ok(now) => Ok(held.dev() == now.dev() && held.ino() == now.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Opens `path` and locks it without waiting; `None` when another holder has it.
fn try_lock_path(path: &Path, kind: LockKind) -> Result<Option<KeyLock>, StoreError> {
    try_lock_file(open_lock_file(path)?, path, kind)
}

/// Locks `file`, opened at `path`, without waiting. The lock protocol tolerates unlinking:
/// after locking, the locked inode must still be the one at `path` (fstat against stat),
/// else the file was unlinked (or replaced) meanwhile, and `path` is reopened (recreated)
/// and locked again.
pub(super) fn try_lock_file(
    file: File,
    path: &Path,
    kind: LockKind,
) -> Result<Option<KeyLock>, StoreError> {
    let mut file = file;
    loop {
        let res = match kind {
            LockKind::Shared => file.try_lock_shared(),
            LockKind::Exclusive => file.try_lock(),
        };
        match res {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(io_err(path, "lock")(e)),
        }
        if is_current(&file, path).map_err(io_err(path, "check lock file"))? {
            return Ok(Some(KeyLock {
                _file: file,
                path: path.to_owned(),
            }));
        }
        file = open_lock_file(path)?;
    }
}

/// First and last pause between two tries of a held lock.
const LOCK_POLL_FIRST: std::time::Duration = std::time::Duration::from_millis(10);
const LOCK_POLL_MAX: std::time::Duration = std::time::Duration::from_millis(250);

/// Waits for the lock by polling [`try_lock_path`] (10 ms, doubling to 250 ms). Async and
/// cancellable: dropping the future stops waiting at once (a blocking `flock` in a blocking
/// task could not be interrupted and kept the process alive until the holder finished).
async fn wait_lock_path(path: &Path, kind: LockKind) -> Result<KeyLock, StoreError> {
    let mut pause = LOCK_POLL_FIRST;
    loop {
        if let Some(lock) = try_lock_path(path, kind)? {
            return Ok(lock);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LOCK_POLL_MAX);
    }
}

/// A held per-key lock; dropping it (or the process dying) releases it.
#[derive(Debug)]
pub struct KeyLock {
    _file: File,
    path: PathBuf,
}

impl KeyLock {
    /// Unlinks the lock file while holding it, then releases it. Safe under the protocol of
    /// [`try_lock_path`]: whoever opened the old file finds it is no longer at the path.
    pub fn remove_file(self) -> Result<(), StoreError> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(io_err(&self.path, "remove lock file")(e))
            }
            _ => Ok(()),
        }
    }
}

impl Store {
    /// Takes the per-key lock, waiting (cancellably) until it is free.
    pub async fn lock(&self, key: &Key) -> Result<KeyLock, StoreError> {
        wait_lock_path(&self.lock_path(key), LockKind::Exclusive).await
    }

    /// Tries the per-key lock; `None` when another process holds it.
    pub fn try_lock(&self, key: &Key) -> Result<Option<KeyLock>, StoreError> {
        try_lock_path(&self.lock_path(key), LockKind::Exclusive)
    }

    /// Tries the run lock in `mode`; `None` when another process holds it in a conflicting mode.
    pub fn try_run_lock(&self, mode: RunLockMode) -> Result<Option<KeyLock>, StoreError> {
        try_lock_path(&self.run_lock_path(), mode.kind())
    }

    /// Takes the run lock in `mode`, waiting (cancellably) until it is free.
    pub async fn run_lock(&self, mode: RunLockMode) -> Result<KeyLock, StoreError> {
        wait_lock_path(&self.run_lock_path(), mode.kind()).await
    }

    /// The run lock's path (named in "waiting for another run" messages).
    pub fn run_lock_path(&self) -> PathBuf {
        self.root.join("locks").join("run.lock")
    }

    pub(super) fn lock_path(&self, key: &Key) -> PathBuf {
        self.root.join("locks").join(format!("{key}.lock"))
    }

    /// Whether another process holds `key`'s lock, without creating the lock file (a key
    /// nobody ever locked has none). For dry runs; real removals take the lock instead.
    pub fn is_locked(&self, key: &Key) -> Result<bool, StoreError> {
        let path = self.lock_path(key);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(&path, "open lock file")(e)),
        };
        match file.try_lock() {
            Ok(()) => Ok(false),
            Err(fs::TryLockError::WouldBlock) => Ok(true),
            Err(fs::TryLockError::Error(e)) => Err(io_err(&path, "lock")(e)),
        }
    }

    /// The keys of every per-key lock file in `locks/` (`<key>.lock`; the run lock and names
    /// planner does not make are left out). A missing locks dir is empty.
    pub fn list_lock_keys(&self) -> Result<Vec<Key>, StoreError> {
        let dir = self.root.join("locks");
        let mut keys: Vec<Key> = read_dir_or_empty(&dir)?
            .into_iter()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".lock").and_then(Key::parse)
            })
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// The lock file of `key` (for reports).
    pub fn lock_file_path(&self, key: &Key) -> PathBuf {
        self.lock_path(key)
    }
}
