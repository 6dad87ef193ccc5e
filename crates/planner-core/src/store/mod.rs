//! The cache directory: checkouts, step records, per-key lock files and temp dirs.
//!
//! This module owns the layout (directories, checkouts, temp dirs, atomic writes, listing for
//! `status` and `gc`); [`records`] the step records, [`locks`] the per-key and run locks.
//!
//! Layout (all under the cache dir):
//! ```text
//! checkouts/<repo-slug>-<hash8>/<commit>/   complete checkouts (renamed into place when done)
//! records/<key>.json                        one record per finished step, written atomically
//! locks/<key>.lock                          per-key cross-process locks (released by the OS on exit)
//! locks/run.lock                            the run lock: exclusive for whole-run commands
//!                                           (`ensure --all`, `gc`), shared for `ensure NAME…`
//! tmp/<key>.<random>/                       work in progress; removed by whoever next holds the key's lock
//! watch/state.json, watch/lock              `planner watch`'s state and its one-watcher lock (the root package's `watch`)
//! ```
//! Records are hints that save work; the engine and the filesystem are the truth.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use planner_base::ids;

use crate::key::Key;

mod locks;
mod records;

pub use crate::kind::RecordField;
pub use locks::{KeyLock, RunLockMode};
use records::read_small_file;
pub use records::{Fields, RECORD_CAP, RECORD_SCHEMA, Record, RecordFile, read_capped};

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

pub(crate) fn io_err<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError {
        path: path.to_owned(),
        action,
        source,
    }
}

/// Where a checkout keeps the random id its clone gave it (inside `.git`, so neither
/// `git status` nor the build context sees it). A verify record names the id it verified.
pub const CHECKOUT_ID_FILE: &str = "planner-checkout-id";

/// A fresh random checkout id (64 hex digits): blake3 of the temp dir's random name, the
/// time and the process.
pub fn new_checkout_id(tmp: &Path) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!("{}\0{nanos}\0{}", tmp.display(), std::process::id());
    blake3::hash(seed.as_bytes()).to_hex().to_string()
}

/// Gives the checkout at `dir` its id ([`CHECKOUT_ID_FILE`] in its `.git`), atomically (a
/// FIFO or anything else in the way is replaced, never written into).
pub fn write_checkout_id(dir: &Path, id: &str) -> Result<(), StoreError> {
    write_atomic(&dir.join(".git").join(CHECKOUT_ID_FILE), id.as_bytes())
}

/// The id of the checkout at `dir`, when it has a valid one.
pub fn checkout_id(dir: &Path) -> Option<String> {
    let bytes = read_small_file(&dir.join(".git").join(CHECKOUT_ID_FILE), 128).ok()?;
    let id = String::from_utf8(bytes).ok()?;
    ids::is_blake3_hex(id.trim()).then(|| id.trim().to_owned())
}

/// State of a checkout directory for a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutState {
    Present(PathBuf),
    Missing,
    /// Something is at the path but it is not a checkout of the commit.
    Corrupt(String),
}

/// Removes a temp dir left by a killed process. A `git` child of that process may outlive it
/// for a moment and still be writing there, so removal is retried; if it still fails, the dir
/// is left for `planner gc` (the new work uses a fresh temp dir, so nothing depends on it).
fn remove_stale_dir(path: &Path) -> bool {
    for attempt in 0..5 {
        match fs::remove_dir_all(path) {
            Ok(()) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return true,
            Err(e) if attempt == 4 => {
                tracing::warn!(target: "planner::store", "could not remove stale temp dir {}: {e}", path.display());
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    false
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
            if entry.file_name().to_string_lossy().starts_with(&prefix)
                && remove_stale_dir(&entry.path())
            {
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

// ---------------------------------------------------------------------------------------
// Inspection and removal, for `planner status` and `planner gc`. Listing never writes; the
// removals expect the caller to hold the run lock exclusively and the entry's key lock.
// ---------------------------------------------------------------------------------------

/// A directory under `checkouts/<repo-slug>-<hash8>/`.
#[derive(Debug, Clone)]
pub struct CheckoutDir {
    pub commit: String,
    pub path: PathBuf,
    /// Last modification of the directory (when it was checked out), if known.
    pub modified: Option<std::time::SystemTime>,
}

/// An entry of `tmp/`.
#[derive(Debug, Clone)]
pub struct TempEntry {
    pub path: PathBuf,
    /// The key its name starts with (`<key>.<random>`); `None` for names planner does not make.
    pub key: Option<Key>,
    pub modified: Option<std::time::SystemTime>,
}

impl Store {
    /// The checkout directories of `repo`, one per commit-named entry ([`ids::is_commit`]).
    pub fn list_checkouts(&self, repo: &str) -> Result<Vec<CheckoutDir>, StoreError> {
        let dir = self.root.join("checkouts").join(repo_dir_name(repo));
        let mut out = Vec::new();
        for entry in read_dir_or_empty(&dir)? {
            let commit = entry.file_name().to_string_lossy().into_owned();
            if !ids::is_commit(&commit) {
                continue;
            }
            out.push(CheckoutDir {
                path: entry.path(),
                modified: fs::symlink_metadata(entry.path())
                    .and_then(|m| m.modified())
                    .ok(),
                commit,
            });
        }
        out.sort_by(|a, b| a.commit.cmp(&b.commit));
        Ok(out)
    }

    /// Every entry of `tmp/`. A missing tmp dir is empty.
    pub fn list_temps(&self) -> Result<Vec<TempEntry>, StoreError> {
        let dir = self.root.join("tmp");
        let mut out = Vec::new();
        for entry in read_dir_or_empty(&dir)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = name.split_once('.').and_then(|(k, _)| Key::parse(k));
            out.push(TempEntry {
                path: entry.path(),
                key,
                modified: fs::symlink_metadata(entry.path())
                    .and_then(|m| m.modified())
                    .ok(),
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Removes the checkout of `commit` of `repo`: first renamed into `tmp/<key>.gc-…` (so a
    /// crash leaves a stale temp dir, never a half-deleted checkout), then deleted.
    /// Hold the clone key's lock (`key`).
    pub fn discard_checkout(&self, repo: &str, commit: &str, key: &Key) -> Result<(), StoreError> {
        let path = self.checkout_path(repo, commit);
        let tmp = self.root.join("tmp");
        fs::create_dir_all(&tmp).map_err(io_err(&tmp, "create directory"))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let doomed = tmp.join(format!("{key}.gc-{}-{nanos}", std::process::id()));
        match fs::rename(&path, &doomed) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&path, "move checkout out of the cache")(e)),
            Ok(()) => {}
        }
        if let Some(parent) = path.parent() {
            sync_dir(parent);
        }
        fs::remove_dir_all(&doomed).map_err(io_err(&doomed, "remove checkout"))
    }

    /// Removes an entry of `tmp/` (a stale temp dir). Hold its key's lock.
    pub fn remove_temp(&self, path: &Path) -> Result<(), StoreError> {
        let removed = match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Ok(m) if m.is_dir() => fs::remove_dir_all(path),
            _ => fs::remove_file(path),
        };
        match removed {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(io_err(path, "remove stale temp dir")(e))
            }
            _ => Ok(()),
        }
    }
}

pub(crate) fn read_dir_or_empty(dir: &Path) -> Result<Vec<fs::DirEntry>, StoreError> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries.flatten().collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err(dir, "list directory")(e)),
    }
}

/// Disk usage of `path` in bytes, like `du`: allocated blocks of every file, directory and
/// symlink below it, never following symlinks. Unreadable entries count as 0.
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        total += meta.blocks() * 512;
        if meta.is_dir()
            && let Ok(entries) = fs::read_dir(&p)
        {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    total
}

#[cfg(test)]
mod tests;
