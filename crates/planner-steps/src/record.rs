//! The record fields the current kinds write, read and check: one typed struct they share
//! ([`RecordFields`]), flattened into the record's JSON after the core's header in this
//! order, and the checks each value passes when read back ([`FIELDS`]). A new kind with
//! fields of its own declares them in its own module the same way.

use planner_core::store::{Fields, Record, RecordField};
use serde::{Deserialize, Serialize};

use planner_base::ids;

/// The fields of the current kinds' records, each present only where the kind sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordFields {
    /// The branch a resolve-head answered for.
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
    /// The id of the checkout a clone made (see [`planner_core::store::CHECKOUT_ID_FILE`])
    /// and a verify checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout_id: Option<String>,
}

/// The checks of [`RecordFields`]' values, in the order a refusal names the first.
pub const FIELDS: &[RecordField] = &[
    RecordField::new("commit", ids::is_commit),
    RecordField::new("digest", ids::is_manifest_digest),
    RecordField::new("dockerfile_blake3", ids::is_blake3_hex),
    RecordField::new("image_id", ids::is_image_id),
    RecordField::new("checkout_id", ids::is_blake3_hex),
];

impl RecordFields {
    /// The fields of a record read back (validated by the store against [`FIELDS`]); those
    /// that are not strings read as absent.
    pub fn of(record: &Record) -> RecordFields {
        let text = |name: &str| record.field(name).map(str::to_owned);
        RecordFields {
            branch: text("branch"),
            commit: text("commit"),
            digest: text("digest"),
            dockerfile_blake3: text("dockerfile_blake3"),
            image_id: text("image_id"),
            checkout_id: text("checkout_id"),
        }
    }

    /// The fields as the record's JSON holds them, in declaration order.
    pub fn into_map(self) -> Fields {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => Fields::new(),
        }
    }

    /// Records the revision a step descends from in its field: a commit (git) or a
    /// manifest digest (registry).
    pub fn set_revision(&mut self, revision: &str) {
        if ids::is_manifest_digest(revision) {
            self.digest = Some(revision.to_owned());
        } else {
            self.commit = Some(revision.to_owned());
        }
    }
}

/// A record read back with the current kinds' fields typed: what `gc` and `status` read
/// (the store has validated every field against its kind's checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    pub schema: u32,
    pub kind: String,
    pub key: planner_core::key::Key,
    /// Runtime names that shared the step when it ran.
    pub runtimes: Vec<String>,
    pub repo: String,
    pub branch: Option<String>,
    pub commit: Option<String>,
    pub digest: Option<String>,
    pub dockerfile_blake3: Option<String>,
    pub image_id: Option<String>,
    pub checkout_id: Option<String>,
    /// Seconds since the Unix epoch.
    pub finished_at: u64,
}

impl From<&Record> for RecordView {
    fn from(r: &Record) -> RecordView {
        let f = RecordFields::of(r);
        RecordView {
            schema: r.schema,
            kind: r.kind.clone(),
            key: r.key.clone(),
            runtimes: r.runtimes.clone(),
            repo: r.repo.clone(),
            branch: f.branch,
            commit: f.commit,
            digest: f.digest,
            dockerfile_blake3: f.dockerfile_blake3,
            image_id: f.image_id,
            checkout_id: f.checkout_id,
            finished_at: r.finished_at,
        }
    }
}

/// A file in `records/` with its record, when valid ([`planner_core::store::RecordFile`]).
#[derive(Debug, Clone)]
pub struct RecordFileView {
    pub path: std::path::PathBuf,
    /// Disk usage of the file.
    pub bytes: u64,
    /// The key the file name claims (`<key>.json`), if the name parses.
    pub name_key: Option<planner_core::key::Key>,
    /// The record, when the file is a valid record of a registered kind.
    pub record: Option<RecordView>,
}

/// Every entry of `records/`, valid or not, each record checked against its kind in `kinds`
/// (the registry, [`crate::KINDS`]; [`planner_core::store::Store::list_records`]).
pub fn list(
    store: &planner_core::store::Store,
    kinds: &planner_core::Kinds,
) -> Result<Vec<RecordFileView>, planner_core::store::StoreError> {
    let files = store.list_records(kinds)?;
    Ok(files
        .into_iter()
        .map(|f| RecordFileView {
            record: f.record.as_ref().map(RecordView::from),
            path: f.path,
            bytes: f.bytes,
            name_key: f.name_key,
        })
        .collect())
}
