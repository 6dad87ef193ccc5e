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
//! watch/state.json, watch/lock              `planner watch`'s state and its one-watcher lock ([`crate::watch`])
//! ```
//! Records are hints that save work; the engine and the filesystem are the truth.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ids;
use crate::key::Key;
use crate::plan::StepKind;

/// Version of the record format.
pub const RECORD_SCHEMA: u32 = 1;

/// Largest record file read; planner's own are a few hundred bytes.
pub const RECORD_CAP: u64 = 64 * 1024;

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
    /// A registry manifest digest (resolve-digest, pull).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile_blake3: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The id of the checkout a clone made (see [`CHECKOUT_ID_FILE`]) and a verify checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout_id: Option<String>,
    /// Seconds since the Unix epoch.
    pub finished_at: u64,
}

/// Where a checkout keeps the random id its clone gave it (inside `.git`, so neither
/// `git status` nor the build context sees it). A verify record names the id it verified.
pub const CHECKOUT_ID_FILE: &str = "planner-checkout-id";

impl Record {
    /// Records the revision a step descends from in its field: a commit (git) or a
    /// manifest digest (registry).
    pub fn set_revision(&mut self, revision: &str) {
        if ids::is_manifest_digest(revision) {
            self.digest = Some(revision.to_owned());
        } else {
            self.commit = Some(revision.to_owned());
        }
    }

    /// Why the record is not one planner wrote for `key`; `None` when every field is valid.
    pub fn invalid(&self, key: &Key) -> Option<String> {
        let bad = |field: &str, value: &str| {
            let shown: String = value.chars().take(72).collect();
            Some(format!("{field} {shown:?} is not valid"))
        };
        if self.schema != RECORD_SCHEMA {
            return Some(format!("schema {} (expected {RECORD_SCHEMA})", self.schema));
        }
        if &self.key != key {
            return Some(format!("it names key {} (expected {key})", self.key));
        }
        if StepKind::from_name(&self.kind).is_none() {
            return bad("kind", &self.kind);
        }
        let fields = [
            ("commit", &self.commit, ids::is_commit as fn(&str) -> bool),
            ("digest", &self.digest, ids::is_manifest_digest),
            (
                "dockerfile_blake3",
                &self.dockerfile_blake3,
                ids::is_blake3_hex,
            ),
            ("image_id", &self.image_id, ids::is_image_id),
            ("checkout_id", &self.checkout_id, ids::is_blake3_hex),
        ];
        for (field, value, valid) in fields {
            if let Some(v) = value
                && !valid(v)
            {
                return bad(field, v);
            }
        }
        None
    }
}

/// Why reading a record file failed; every case is a miss.
#[derive(Debug)]
enum ReadError {
    /// No file at the path: a plain miss, no warning.
    Missing,
    /// Something is there but it is not a valid record.
    Invalid(String),
}

/// Reads a record file without blocking or following symlinks: only a regular file within
/// [`RECORD_CAP`] is read (a FIFO, a directory or a device is refused without opening
/// it for long), then parsed and validated for `key`.
fn read_record_file(path: &Path, key: Option<&Key>) -> Result<Record, ReadError> {
    let bytes = read_small_file(path, RECORD_CAP)?;
    let record: Record = serde_json::from_slice(&bytes)
        .map_err(|e| ReadError::Invalid(format!("malformed: {e}")))?;
    let key = key.unwrap_or(&record.key);
    match record.invalid(key) {
        Some(why) => Err(ReadError::Invalid(why)),
        None => Ok(record),
    }
}

/// Reads a regular file of at most `cap` bytes without blocking on a FIFO or following a
/// symlink.
fn read_small_file(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    use std::os::unix::fs::OpenOptionsExt;
    let invalid = |why: String| ReadError::Invalid(why);
    let mut file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadError::Missing),
        Err(e) => return Err(invalid(format!("cannot open it: {e}"))),
    };
    let meta = file
        .metadata()
        .map_err(|e| invalid(format!("cannot stat it: {e}")))?;
    if !meta.is_file() {
        return Err(invalid("it is not a regular file".into()));
    }
    if meta.len() > cap {
        return Err(invalid(format!(
            "it is {} bytes, over the {cap} byte limit",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    Read::by_ref(&mut file)
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| invalid(format!("cannot read it: {e}")))?;
    Ok(bytes)
}

/// Reads a file planner wrote (a record, the watcher's state) as hostile input: only a
/// regular file of at most `cap` bytes, never through a symlink, never blocking on a FIFO.
/// `Ok(None)` when nothing is there; `Err(why)` when something else is.
pub fn read_capped(path: &Path, cap: u64) -> Result<Option<Vec<u8>>, String> {
    match read_small_file(path, cap) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(ReadError::Missing) => Ok(None),
        Err(ReadError::Invalid(why)) => Err(why),
    }
}

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
                tracing::warn!("could not remove stale temp dir {}: {e}", path.display());
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    false
}

/// How a command holds the run lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunLockMode {
    /// Runs of named runtimes may overlap each other (per-key locks keep them correct).
    Shared,
    /// Whole-run commands (`ensure --all`, `gc`) run alone.
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

fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(path, "open lock file"))
}

/// How a lock file is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LockKind {
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
fn try_lock_file(file: File, path: &Path, kind: LockKind) -> Result<Option<KeyLock>, StoreError> {
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

    /// Reads the record of `kind` for `key`. A missing record is `None`; so is one that is
    /// not a regular file, is malformed, invalid or of another kind, with a warning (records
    /// are only hints; `planner gc` removes the bad one).
    pub fn read_record(&self, key: &Key, kind: StepKind) -> Option<Record> {
        let path = self.record_path(key);
        let why = match read_record_file(&path, Some(key)) {
            Ok(r) if r.kind == kind.name() => return Some(r),
            Ok(r) => format!("it is a {} record, not {}", r.kind, kind.name()),
            Err(ReadError::Missing) => return None,
            Err(ReadError::Invalid(why)) => why,
        };
        warn_ignored(&path, &why);
        None
    }

    /// The resolve-head record of `branch` of `repo` (identity), when it is for exactly that
    /// repository and branch and names a valid commit.
    pub fn recorded_head(&self, repo: &str, branch: &str) -> Option<Record> {
        let key = crate::steps::resolve_head::key(repo, branch);
        let rec = self.read_record(&key, StepKind::ResolveHead)?;
        let matches =
            rec.repo == repo && rec.branch.as_deref() == Some(branch) && rec.commit.is_some();
        if !matches {
            warn_ignored(
                &self.record_path(&key),
                "its repo, branch or commit does not match",
            );
        }
        matches.then_some(rec)
    }

    /// Writes a record atomically: temp file, fsync, rename, fsync of the directory.
    pub fn write_record(&self, record: &Record) -> Result<(), StoreError> {
        let path = self.record_path(&record.key);
        if !self.record_target_usable(&path) {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(record).expect("records serialize");
        write_atomic(&path, &bytes)
    }

    /// Whether a record can be renamed onto `path`. Renaming replaces any file (a FIFO, a
    /// symlink) but not a directory: an empty one is removed; otherwise the record, only a
    /// hint, is skipped with a warning, and `planner gc` removes the directory.
    fn record_target_usable(&self, path: &Path) -> bool {
        let is_dir = fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
        if !is_dir || fs::remove_dir(path).is_ok() {
            return true;
        }
        tracing::warn!(
            "not writing record {}: a directory is in the way (records are only hints; `planner gc` removes it)",
            path.display()
        );
        false
    }

    /// Rewrites a record that restates what its file already says but the time (a warm run's
    /// resolve-head): atomically like [`Store::write_record`] (temp file, rename), but without
    /// the fsyncs, which were a third of a warm `ensure`'s CPU time. A power cut can lose only
    /// this refresh; records are hints, and a lost one is treated as missing.
    pub fn refresh_record(&self, record: &Record) -> Result<(), StoreError> {
        let path = self.record_path(&record.key);
        if !self.record_target_usable(&path) {
            return Ok(());
        }
        let dir = path.parent().expect("record paths have parents");
        let bytes = serde_json::to_vec_pretty(record).expect("records serialize");
        let mut tmp =
            tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir, "create temp file"))?;
        tmp.write_all(&bytes).map_err(io_err(&path, "write"))?;
        tmp.persist(&path)
            .map_err(|e| io_err(&path, "rename into place")(e.error))?;
        Ok(())
    }

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

    fn lock_path(&self, key: &Key) -> PathBuf {
        self.root.join("locks").join(format!("{key}.lock"))
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

fn warn_ignored(path: &Path, why: &str) {
    let text = format!(
        "ignoring record {}: {why}\n  help: records are only hints; `planner gc` removes invalid ones",
        path.display()
    );
    tracing::warn!("{}", crate::mask::mask(&text));
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

/// A file in `records/`, parsed if it is a valid record for the key its name says.
#[derive(Debug, Clone)]
pub struct RecordFile {
    pub path: PathBuf,
    /// Disk usage of the file.
    pub bytes: u64,
    /// The key the file name claims (`<key>.json`), if the name parses.
    pub name_key: Option<Key>,
    /// The record, when the file is a regular file, well formed, schema [`RECORD_SCHEMA`],
    /// its key matches the name and every field is valid ([`Record::invalid`]); `None`
    /// means malformed (or not a record at all: a FIFO, a directory, a `.tmp*` file).
    pub record: Option<Record>,
}

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
    /// Every entry of `records/` planner could have made, valid or not: `*.json` entries of
    /// any type (a FIFO or a directory there is listed as malformed) and `.tmp*` files a
    /// killed writer left. A missing records dir is empty. Reading never blocks.
    pub fn list_records(&self) -> Result<Vec<RecordFile>, StoreError> {
        let dir = self.root.join("records");
        let mut out = Vec::new();
        for entry in read_dir_or_empty(&dir)? {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let name_key = match name.strip_suffix(".json") {
                Some(stem) => Key::parse(stem),
                None if name.starts_with(".tmp") => None,
                None => continue,
            };
            let record = match &name_key {
                Some(k) => read_record_file(&path, Some(k)).ok(),
                None => None,
            };
            out.push(RecordFile {
                bytes: disk_usage(&path),
                path,
                name_key,
                record,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

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

    /// Removes a record file (an orphan or malformed record), or whatever is in its place
    /// (a directory, a FIFO, a writer's left-over temp file). Hold the run lock exclusively.
    pub fn remove_record_file(&self, path: &Path) -> Result<(), StoreError> {
        let removed = match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(path),
            _ => fs::remove_file(path),
        };
        match removed {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path, "remove record")(e)),
            _ => Ok(()),
        }
    }
}

fn read_dir_or_empty(dir: &Path) -> Result<Vec<fs::DirEntry>, StoreError> {
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
mod tests {
    use super::*;
    use crate::steps::clone::key as clone_key;

    fn record(key: &Key) -> Record {
        Record {
            schema: RECORD_SCHEMA,
            kind: "clone".into(),
            key: key.clone(),
            runtimes: vec!["a".into()],
            repo: "https://h.example/r".into(),
            branch: None,
            commit: Some("a".repeat(40)),
            digest: None,
            dockerfile_blake3: None,
            image_id: None,
            checkout_id: None,
            finished_at: 1,
        }
    }

    #[test]
    fn records_round_trip_and_malformed_ones_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = clone_key("r", &"a".repeat(40));
        assert!(store.read_record(&key, StepKind::Clone).is_none());
        store.write_record(&record(&key)).unwrap();
        assert_eq!(store.read_record(&key, StepKind::Clone), Some(record(&key)));
        assert!(
            store.read_record(&key, StepKind::Build).is_none(),
            "a record of another kind is not trusted"
        );
        fs::write(store.record_path(&key), b"{not json").unwrap();
        assert!(store.read_record(&key, StepKind::Clone).is_none());
        let other = clone_key("r", &"b".repeat(40));
        fs::write(
            store.record_path(&other),
            serde_json::to_vec(&record(&key)).unwrap(),
        )
        .unwrap();
        assert!(
            store.read_record(&other, StepKind::Clone).is_none(),
            "a record under the wrong key is not trusted"
        );
    }

    #[test]
    fn records_with_invalid_fields_are_misses() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = clone_key("r", &"a".repeat(40));
        let edits: [fn(&mut Record); 6] = [
            |r| r.commit = Some(format!("a{}", "é".repeat(39))),
            |r| r.commit = Some("0".repeat(40)),
            |r| r.commit = Some("../../etc".into()),
            |r| r.dockerfile_blake3 = Some("FORGED-0000000000".into()),
            |r| r.image_id = Some("sha256:é".into()),
            |r| r.kind = "bogus".into(),
        ];
        for edit in edits {
            let mut rec = record(&key);
            edit(&mut rec);
            fs::write(store.record_path(&key), serde_json::to_vec(&rec).unwrap()).unwrap();
            assert!(
                store.read_record(&key, StepKind::Clone).is_none(),
                "{rec:?}"
            );
            let listed = store.list_records().unwrap();
            assert!(listed[0].record.is_none(), "listed as malformed: {rec:?}");
        }
    }

    #[test]
    fn fifos_and_directories_are_misses_without_blocking_and_writes_get_past_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = clone_key("r", &"a".repeat(40));
        let path = store.record_path(&key);
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        assert!(made.unwrap().success());
        assert!(store.read_record(&key, StepKind::Clone).is_none());
        store.write_record(&record(&key)).unwrap();
        assert!(
            store.read_record(&key, StepKind::Clone).is_some(),
            "FIFO replaced"
        );

        fs::remove_file(&path).unwrap();
        fs::create_dir_all(path.join("x")).unwrap();
        assert!(store.read_record(&key, StepKind::Clone).is_none());
        store.write_record(&record(&key)).unwrap();
        store.refresh_record(&record(&key)).unwrap();
        assert!(path.is_dir(), "a full directory is skipped, not an error");
        fs::write(dir.path().join("records/.tmpXYZ"), b"half").unwrap();
        let listed = store.list_records().unwrap();
        assert_eq!(listed.len(), 2);
        for f in &listed {
            assert!(f.record.is_none());
            store.remove_record_file(&f.path).unwrap();
        }
        assert!(store.list_records().unwrap().is_empty());

        fs::create_dir(&path).unwrap();
        store.write_record(&record(&key)).unwrap();
        assert!(
            store.read_record(&key, StepKind::Clone).is_some(),
            "empty dir replaced"
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
    fn a_lock_on_an_unlinked_lock_file_is_not_taken_for_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = clone_key("r", "x");
        let path = store.lock_path(&key);
        // A locker opened the file; then gc took it, unlinked it and let it go; then a third
        // process created the file anew and locked it.
        let opened_before = open_lock_file(&path).unwrap();
        store
            .try_lock(&key)
            .unwrap()
            .unwrap()
            .remove_file()
            .unwrap();
        assert!(!path.exists());
        let new_holder = store.try_lock(&key).unwrap().expect("the new file is free");
        // The first locker's flock on the old inode succeeds, but it holds nothing: it must
        // find the path's file held by the new holder.
        assert!(
            try_lock_file(opened_before, &path, LockKind::Exclusive)
                .unwrap()
                .is_none(),
            "a lock on an unlinked inode is not the lock"
        );
        drop(new_holder);
        let reopened = open_lock_file(&path).unwrap();
        fs::remove_file(&path).unwrap();
        let lock = try_lock_file(reopened, &path, LockKind::Exclusive)
            .unwrap()
            .expect("recreated and taken");
        assert!(path.exists(), "the lock file was recreated");
        assert!(
            store.try_lock(&key).unwrap().is_none(),
            "and it is the one held"
        );
        drop(lock);
    }

    #[tokio::test]
    async fn waiting_for_a_lock_ends_when_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = clone_key("r", "w");
        let held = store.try_lock(&key).unwrap().unwrap();
        let waiter = {
            let store = store.clone();
            let key = key.clone();
            tokio::spawn(async move { store.lock(&key).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "waits while held");
        drop(held);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
        assert!(got.unwrap().unwrap().is_ok());
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

#[cfg(test)]
mod listing_tests {
    use super::*;
    use crate::steps::clone::key as clone_key;

    #[test]
    fn records_are_listed_with_malformed_ones_marked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let good = clone_key("r", &"a".repeat(40));
        store
            .write_record(&Record {
                schema: RECORD_SCHEMA,
                kind: "clone".into(),
                key: good.clone(),
                runtimes: vec!["a".into()],
                repo: "r".into(),
                branch: None,
                commit: Some("a".repeat(40)),
                digest: None,
                dockerfile_blake3: None,
                image_id: None,
                checkout_id: None,
                finished_at: 1,
            })
            .unwrap();
        let bad = clone_key("r", &"b".repeat(40));
        fs::write(store.record_path(&bad), b"{not json").unwrap();
        fs::write(dir.path().join("records/notakey.json"), b"{}").unwrap();
        let list = store.list_records().unwrap();
        assert_eq!(list.len(), 3);
        let by_key = |k: &Key| {
            list.iter()
                .find(|f| f.name_key.as_ref() == Some(k))
                .unwrap()
        };
        assert!(by_key(&good).record.is_some() && by_key(&good).bytes > 0);
        assert!(by_key(&bad).record.is_none());
        assert!(
            list.iter()
                .any(|f| f.name_key.is_none() && f.record.is_none())
        );
    }

    #[test]
    fn checkouts_and_temps_are_listed_and_discarded_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let commit = "c".repeat(40);
        let path = store.checkout_path("r", &commit);
        fs::create_dir_all(path.join(".git")).unwrap();
        fs::write(path.join(".git/HEAD"), &commit).unwrap();
        fs::create_dir_all(path.parent().unwrap().join("not-a-commit")).unwrap();
        let listed = store.list_checkouts("r").unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].commit, commit);
        assert!(disk_usage(&path) > 0);

        let key = clone_key("r", &commit);
        let _lock = store.try_lock(&key).unwrap().unwrap();
        store.discard_checkout("r", &commit, &key).unwrap();
        assert_eq!(store.checkout_state("r", &commit), CheckoutState::Missing);
        assert!(
            store.list_temps().unwrap().is_empty(),
            "nothing left in tmp"
        );
        store.discard_checkout("r", &commit, &key).unwrap();

        let t = store.temp_dir(&key).unwrap().keep();
        fs::create_dir(dir.path().join("tmp/stray")).unwrap();
        let temps = store.list_temps().unwrap();
        assert_eq!(temps.len(), 2);
        assert!(
            temps
                .iter()
                .any(|e| e.path == t && e.key.as_ref() == Some(&key))
        );
        assert!(temps.iter().any(|e| e.key.is_none()));
        store.remove_temp(&t).unwrap();
        assert!(!t.exists());
    }

    #[test]
    fn is_locked_probes_without_creating_lock_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = clone_key("r", "x");
        assert!(!store.is_locked(&key).unwrap());
        assert!(!store.lock_path(&key).exists(), "probe creates nothing");
        let held = store.try_lock(&key).unwrap().unwrap();
        assert!(store.is_locked(&key).unwrap());
        drop(held);
        assert!(!store.is_locked(&key).unwrap());
    }

    #[test]
    fn listing_a_missing_cache_dir_is_empty() {
        let store = Store::read_only(Path::new("/nonexistent/planner-cache"));
        assert!(store.list_records().unwrap().is_empty());
        assert!(store.list_temps().unwrap().is_empty());
        assert!(store.list_checkouts("r").unwrap().is_empty());
    }
}
