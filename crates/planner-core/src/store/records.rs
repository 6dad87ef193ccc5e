//! Step records in `records/<key>.json`: a common header (schema, kind, key, runtimes, repo,
//! time) and the kind's own fields, which only the kind reads and writes (through its own
//! typed struct) and declares with their checks ([`crate::kind::Kind::record_fields`]).
//! Records are hints that save work and hostile input when read back: a record that is not
//! a regular file within [`RECORD_CAP`], is malformed, or has a field its kind's check refuses
//! is a miss, with a warning. The JSON on disk is the header, the fields, then the time.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, disk_usage, io_err, read_dir_or_empty, write_atomic};
use crate::key::Key;
use crate::kind::{Kinds, RecordField, StepKind};

/// Version of the record format.
pub const RECORD_SCHEMA: u32 = 1;

/// Largest record file read; planner's own are a few hundred bytes.
pub const RECORD_CAP: u64 = 64 * 1024;

/// A kind's own record fields: name → value, in the order the kind wrote them.
pub type Fields = serde_json::Map<String, serde_json::Value>;

/// What a step leaves behind in `records/`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub schema: u32,
    pub kind: String,
    pub key: Key,
    /// Runtime names that shared the step when it ran.
    pub runtimes: Vec<String>,
    pub repo: String,
    /// The kind's own fields ([`crate::kind::Kind::record_fields`]).
    #[serde(flatten)]
    pub fields: Fields,
    /// Seconds since the Unix epoch.
    pub finished_at: u64,
}

impl Record {
    /// The string value of field `name`, when present.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(serde_json::Value::as_str)
    }

    /// Why the record is not one planner wrote for `key` with `fields`; `None` when the
    /// header and every declared field are valid.
    pub fn invalid(&self, key: &Key, fields: &[RecordField]) -> Option<String> {
        if self.schema != RECORD_SCHEMA {
            return Some(format!("schema {} (expected {RECORD_SCHEMA})", self.schema));
        }
        if &self.key != key {
            return Some(format!("it names key {} (expected {key})", self.key));
        }
        self.invalid_field(fields)
    }

    /// The first field of `fields` whose value its check refuses.
    fn invalid_field(&self, fields: &[RecordField]) -> Option<String> {
        for f in fields {
            match self.fields.get(f.name) {
                None | Some(serde_json::Value::Null) => {}
                Some(serde_json::Value::String(v)) if (f.valid)(v) => {}
                Some(serde_json::Value::String(v)) => return bad(f.name, v),
                Some(other) => return bad(f.name, &other.to_string()),
            }
        }
        None
    }
}

/// Why a field's value is refused: the value shown quoted, at most 72 characters.
fn bad(field: &str, value: &str) -> Option<String> {
    let shown: String = value.chars().take(72).collect();
    Some(format!("{field} {shown:?} is not valid"))
}

/// Whether `name` reads as a kind's name (lowercase words joined by `-`): a record's kind
/// is only named in a message when it does.
fn plausible_kind(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
}

/// Why reading a record file failed; every case is a miss.
#[derive(Debug)]
pub(super) enum ReadError {
    /// No file at the path: a plain miss, no warning.
    Missing,
    /// Something is there but it is not a valid record.
    Invalid(String),
}

/// Reads a record file without blocking or following symlinks: only a regular file within
/// [`RECORD_CAP`] is read (a FIFO, a directory or a device is refused without opening
/// it for long), then parsed and its header and `fields` validated for `key`.
fn read_record_file(
    path: &Path,
    key: Option<&Key>,
    fields: impl FnOnce(&Record) -> Result<&'static [RecordField], String>,
) -> Result<Record, ReadError> {
    let bytes = read_small_file(path, RECORD_CAP)?;
    let record: Record = serde_json::from_slice(&bytes)
        .map_err(|e| ReadError::Invalid(format!("malformed: {e}")))?;
    let key = key.unwrap_or(&record.key);
    let fields = fields(&record).map_err(ReadError::Invalid)?;
    match record.invalid(key, fields) {
        Some(why) => Err(ReadError::Invalid(why)),
        None => Ok(record),
    }
}

/// Reads a regular file of at most `cap` bytes without blocking on a FIFO or following a
/// symlink.
pub(super) fn read_small_file(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
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

impl Store {
    pub(super) fn record_path(&self, key: &Key) -> PathBuf {
        self.root.join("records").join(format!("{key}.json"))
    }

    /// Reads the record of `kind` for `key`. A missing record is `None`; so is one that is
    /// not a regular file, is malformed, invalid or of another kind, with a warning (records
    /// are only hints; `planner gc` removes the bad one).
    pub fn read_record(&self, key: &Key, kind: StepKind) -> Option<Record> {
        let path = self.record_path(key);
        let fields = |_: &Record| Ok(kind.get().record_fields());
        let why = match read_record_file(&path, Some(key), fields) {
            Ok(r) if r.kind == kind.name() => return Some(r),
            Ok(r) if plausible_kind(&r.kind) => {
                format!("it is a {} record, not {}", r.kind, kind.name())
            }
            Ok(r) => bad("kind", &r.kind).unwrap_or_default(),
            Err(ReadError::Missing) => return None,
            Err(ReadError::Invalid(why)) => why,
        };
        warn_ignored(&path, &why);
        None
    }

    /// Warns that the record of `key` is ignored, and why (a kind's own check refused it).
    pub fn warn_ignored(&self, key: &Key, why: &str) {
        warn_ignored(&self.record_path(key), why);
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
            target: "planner::store",
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

    /// Every entry of `records/` planner could have made, valid or not: `*.json` entries of
    /// any type (a FIFO or a directory there is listed as malformed: so is a record of a
    /// kind `kinds` does not have) and `.tmp*` files a killed writer left. A missing
    /// records dir is empty. Reading never blocks.
    pub fn list_records(&self, kinds: &Kinds) -> Result<Vec<RecordFile>, StoreError> {
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
            let fields = |r: &Record| match kinds.find(&r.kind) {
                Some(kind) => Ok(kind.get().record_fields()),
                None => Err(bad("kind", &r.kind).unwrap_or_default()),
            };
            let record = match &name_key {
                Some(k) => read_record_file(&path, Some(k), fields).ok(),
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

fn warn_ignored(path: &Path, why: &str) {
    let text = format!(
        "ignoring record {}: {why}\n  help: records are only hints; `planner gc` removes invalid ones",
        path.display()
    );
    tracing::warn!(target: "planner::store", "{}", planner_base::mask::mask(&text));
}
