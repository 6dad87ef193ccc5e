//! What the engine and the cache dir hold, and which of it is planner's: images whose labels
//! recompute to their key, pulled images a valid record and the engine both prove, each
//! runtime's commits with the evidence of when they were last seen.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Runtime;
use crate::docker::DockerError;
use crate::docker::engine::Engine;
use crate::docker::images::{self as eng, ImageEntry};
use crate::ids::short;
use crate::key::Key;
use crate::registry::ImageRef;
use crate::steps::record::{RecordFileView as RecordFile, RecordView as Record};
use crate::steps::{self, Attests, labels};
use crate::store::CheckoutDir;

/// An image whose labels prove planner built it.
#[derive(Debug, Clone)]
pub(super) struct OwnImage {
    pub(super) entry: ImageEntry,
    pub(super) key: Key,
    pub(super) commit: String,
    /// Nanoseconds since the epoch (precise when the engine says so).
    pub(super) created: i128,
}

/// `(key, commit)` when the labels carry a key that recomputes from the other labels.
pub(super) fn own_labels(labels: &HashMap<String, String>) -> Option<(Key, String)> {
    let label_key = Key::parse(labels.get(labels::LABEL_KEY)?)?;
    let commit = labels.get(labels::LABEL_REVISION)?.clone();
    if !crate::ids::is_commit(&commit) {
        return None;
    }
    let inputs = crate::steps::build::inputs_from_labels(labels);
    (steps::build::key(&inputs) == label_key).then_some((label_key, commit))
}

/// A commit's artifacts for one runtime.
#[derive(Debug, Default)]
pub(super) struct CommitArtifacts {
    /// Newest evidence of the commit (image creation, records, checkout time), ns.
    pub(super) seen: i128,
    /// (image ID, pinned tag) of this runtime.
    pub(super) images: Vec<(String, String)>,
    pub(super) checkout: Option<PathBuf>,
}

pub(super) const NANOS: i128 = 1_000_000_000;

/// `t` in nanoseconds since the epoch (0 before it).
pub(super) fn system_nanos(t: std::time::SystemTime) -> i128 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

/// Runtimes grouped by repository (they share checkouts).
pub(super) fn by_repo(runtimes: &[Arc<Runtime>]) -> BTreeMap<String, Vec<Arc<Runtime>>> {
    let mut repos: BTreeMap<String, Vec<Arc<Runtime>>> = BTreeMap::new();
    for rt in runtimes {
        repos
            .entry(rt.repo_identity())
            .or_default()
            .push(Arc::clone(rt));
    }
    repos
}

/// Planner's images by ID: those whose labels prove planner built them.
pub(super) async fn own_images(
    engine: &Engine,
    runtimes: &[Arc<Runtime>],
) -> Result<BTreeMap<String, OwnImage>, DockerError> {
    let image_repos: BTreeSet<String> = runtimes.iter().map(|r| r.image_repo()).collect();
    let mut own = BTreeMap::new();
    for entry in engine.list_images_with_label(labels::LABEL_KEY).await? {
        let Some((key, commit)) = own_labels(&entry.labels) else {
            continue;
        };
        let created = created_nanos(engine, &entry, &image_repos).await?;
        own.insert(
            entry.id.clone(),
            OwnImage {
                entry,
                key,
                commit,
                created,
            },
        );
    }
    Ok(own)
}

/// When `entry` was created, in nanoseconds since the epoch. Precise creation times only
/// matter for ranking this config's images (tagged in `image_repos`), so only those are asked
/// of the engine; the others get the listing's seconds.
pub(super) async fn created_nanos(
    engine: &Engine,
    entry: &ImageEntry,
    image_repos: &BTreeSet<String>,
) -> Result<i128, DockerError> {
    let ours = entry
        .repo_tags
        .iter()
        .any(|t| image_repos.contains(eng::split_reference(t).0));
    let precise = if ours {
        engine
            .image_created(&entry.id)
            .await?
            .and_then(|c| eng::parse_rfc3339_nanos(&c))
    } else {
        None
    };
    Ok(precise.unwrap_or(i128::from(entry.created) * NANOS))
}

/// The commits of `rt` that have an artifact (a pinned image or a checkout), with the newest
/// evidence of each.
pub(super) fn artifacts(
    rt: &Runtime,
    repo: &str,
    runtimes_on_repo: usize,
    own: &BTreeMap<String, OwnImage>,
    checkouts: &[CheckoutDir],
    records: &[RecordFile],
) -> BTreeMap<String, CommitArtifacts> {
    let mut out = pinned_images(rt, own);
    let (attributed, mine) = record_commits(rt, repo, records);
    for co in checkouts {
        let belongs = out.contains_key(&co.commit)
            || mine.contains(co.commit.as_str())
            || runtimes_on_repo == 1
            || !attributed.contains(co.commit.as_str());
        if !belongs {
            continue;
        }
        let a = out.entry(co.commit.clone()).or_default();
        a.checkout = Some(co.path.clone());
        if let Some(m) = co.modified {
            a.seen = a.seen.max(system_nanos(m));
        }
    }
    for rec in records.iter().filter_map(|f| f.record.as_ref()) {
        if rec.repo != repo || !mine.contains(rec.commit.as_deref().unwrap_or("")) {
            continue;
        }
        if let Some(a) = rec.commit.as_ref().and_then(|c| out.get_mut(c)) {
            a.seen = a.seen.max(i128::from(rec.finished_at) * NANOS);
        }
    }
    out
}

/// The commits of `rt`'s pinned images among planner's, with those images (ID, pinned tag)
/// and the newest creation time.
pub(super) fn pinned_images(
    rt: &Runtime,
    own: &BTreeMap<String, OwnImage>,
) -> BTreeMap<String, CommitArtifacts> {
    let image_repo = rt.image_repo();
    let mut out: BTreeMap<String, CommitArtifacts> = BTreeMap::new();
    for img in own.values() {
        for tag in &img.entry.repo_tags {
            let (name, t) = eng::split_reference(tag);
            if name == image_repo && t == short(&img.commit) && tag == &rt.pinned_tag(&img.commit) {
                let a = out.entry(img.commit.clone()).or_default();
                a.seen = a.seen.max(img.created);
                a.images.push((img.entry.id.clone(), tag.clone()));
            }
        }
    }
    out
}

/// The IDs of the images that exist among those records name: planner's own, and each image
/// a registry runtime's record (pull, or tag-latest with a digest) names, asked of the engine.
pub(super) async fn present_images(
    engine: &Engine,
    own: &BTreeMap<String, OwnImage>,
    records: &[RecordFile],
) -> Result<BTreeSet<String>, DockerError> {
    let mut present: BTreeSet<String> = own.keys().cloned().collect();
    let mut asked: BTreeSet<&str> = BTreeSet::new();
    for rec in records.iter().filter_map(|f| f.record.as_ref()) {
        let registry = attests(rec) == Some(Attests::PulledImage)
            || (attests(rec) == Some(Attests::NamedImage) && rec.digest.is_some());
        let Some(id) = rec.image_id.as_deref().filter(|_| registry) else {
            continue;
        };
        if present.contains(id) || !asked.insert(id) {
            continue;
        }
        if let Some(info) = engine.inspect(id).await? {
            present.insert(info.id);
        }
    }
    Ok(present)
}

/// `(digest, image ID)` of each valid pull record of `rt` for `image`: its kind, key,
/// repository and runtimes agree.
pub(super) fn pull_claims(
    rt: &Runtime,
    image: &ImageRef,
    records: &[RecordFile],
) -> BTreeMap<String, String> {
    let repo = rt.repo_identity();
    let mut out = BTreeMap::new();
    for rec in records.iter().filter_map(|f| f.record.as_ref()) {
        if attests(rec) != Some(Attests::PulledImage)
            || rec.repo != repo
            || !rec.runtimes.contains(&rt.name)
        {
            continue;
        }
        let (Some(digest), Some(id)) = (&rec.digest, &rec.image_id) else {
            continue;
        };
        if crate::ids::is_manifest_digest(digest) && rec.key == steps::pull::key(image, digest) {
            out.insert(digest.clone(), id.clone());
        }
    }
    out
}

/// The newest `finished_at` (ns) of `rt`'s records of `digest` (pull, tag-latest,
/// resolve-digest: the last is rewritten by every run that finds the tag there).
pub(super) fn records_seen(rt: &Runtime, digest: &str, records: &[RecordFile]) -> i128 {
    let repo = rt.repo_identity();
    records
        .iter()
        .filter_map(|f| f.record.as_ref())
        .filter(|r| r.repo == repo && r.runtimes.contains(&rt.name))
        .filter(|r| r.digest.as_deref() == Some(digest))
        .map(|r| i128::from(r.finished_at) * NANOS)
        .max()
        .unwrap_or(0)
}

/// Whether the engine's digest reference `engine_ref` (`name@sha256:…`, the name possibly in
/// the engine's short form, `ubuntu` for `docker.io/library/ubuntu`) is `image`'s at `digest`.
pub(super) fn names_digest(engine_ref: &str, image: &ImageRef, digest: &str) -> bool {
    let Some((name, d)) = engine_ref.split_once('@') else {
        return false;
    };
    d == digest
        && ImageRef::parse(name)
            .is_ok_and(|r| r.registry == image.registry && r.repository == image.repository)
}

/// Whether the engine's tag `engine_ref` (`name:tag`, possibly short) is `image` itself.
pub(super) fn names_tag(engine_ref: &str, image: &ImageRef) -> bool {
    ImageRef::parse(engine_ref).is_ok_and(|r| &r == image)
}

/// Which commits of `repo` the records attribute to some runtime, and which to `rt` (a
/// resolve-head record only counts for `rt` when it is of `rt`'s branch).
pub(super) fn record_commits<'r>(
    rt: &Runtime,
    repo: &str,
    records: &'r [RecordFile],
) -> (BTreeSet<&'r str>, BTreeSet<&'r str>) {
    let mut attributed: BTreeSet<&str> = BTreeSet::new();
    let mut mine: BTreeSet<&str> = BTreeSet::new();
    for rec in records.iter().filter_map(|f| f.record.as_ref()) {
        if rec.repo != repo {
            continue;
        }
        let Some(c) = rec.commit.as_deref() else {
            continue;
        };
        attributed.insert(c);
        let is_mine = rec.runtimes.contains(&rt.name)
            && (attests(rec) != Some(Attests::RootAnswer)
                || rec.branch.as_deref() == Some(rt.branch.as_str()));
        if is_mine {
            mine.insert(c);
        }
    }
    (attributed, mine)
}

/// What a record stands for, asked of the kind it names; `None` for an unknown kind.
pub(super) fn attests(rec: &Record) -> Option<Attests> {
    steps::by_name(&rec.kind).map(|k| k.attests())
}
