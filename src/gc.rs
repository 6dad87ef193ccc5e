//! `planner gc`: per runtime, keep the newest N commits (images and checkouts) and whatever
//! `:latest` names; remove the other images planner built, their checkouts, stale temp dirs
//! and orphan records.
//!
//! Safety rules:
//! - An image is planner's only if its `dev.planner.key` label recomputes from its other
//!   labels; only its *pinned* tags (`{image_prefix}{runtime}:{sha12 of its revision}`) are
//!   removed, by reference and without force, so the engine deletes the image only when no
//!   other tag is left, and never while a container uses it (those are reported and skipped).
//! - Whatever `:latest` names is kept, with its checkout.
//! - A checkout or temp dir is removed only while holding its key lock (skipped if held).
//! - A record is an orphan when malformed, or when the checkout/image it describes is gone
//!   (or is removed in this run, and then only if that removal succeeded).
//!
//! [`plan`] decides and writes nothing (that is the dry run); [`execute`] carries out a plan.
//! The caller holds the run lock exclusively for a real run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Runtime;
use crate::docker::DockerError;
use crate::docker::engine::{self as eng, Engine, ImageEntry, RemoveOutcome};
use crate::key::{self, Key};
use crate::store::{self, CheckoutDir, CheckoutState, Store, StoreError};

/// Version of the `gc --json` document.
pub const GC_SCHEMA: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ItemKind {
    Image,
    Checkout,
    TempDir,
    Record,
}

impl ItemKind {
    pub fn name(self) -> &'static str {
        match self {
            ItemKind::Image => "image",
            ItemKind::Checkout => "checkout",
            ItemKind::TempDir => "temp-dir",
            ItemKind::Record => "record",
        }
    }
}

/// Where an item stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemStatus {
    /// Will be removed (the dry run stops here).
    Planned,
    Removed,
    /// Left in place, and why (in use, lock held, its checkout/image was kept).
    Skipped(String),
    /// Removing it failed (the error names what and why).
    Failed(String),
}

impl ItemStatus {
    pub fn name(&self) -> &'static str {
        match self {
            ItemStatus::Planned => "would-remove",
            ItemStatus::Removed => "removed",
            ItemStatus::Skipped(_) => "skipped",
            ItemStatus::Failed(_) => "failed",
        }
    }
}

/// One thing gc removes (or would, or could not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcItem {
    pub kind: ItemKind,
    /// Runtimes it belongs to (empty for temp dirs and malformed records).
    pub runtimes: Vec<String>,
    /// Image: the tags removed. Others: empty.
    pub tags: Vec<String>,
    pub image_id: Option<String>,
    /// Checkout, temp dir or record file.
    pub path: Option<PathBuf>,
    pub commit: Option<String>,
    /// Checkout: the repository identity it belongs to.
    pub repo: Option<String>,
    /// The key whose lock guards it (checkouts: the clone key; temp dirs: their key).
    pub key: Option<Key>,
    /// Bytes freed: disk usage for files, the engine's unique size for a deleted image, 0 for
    /// an image that stays because it has other tags.
    pub bytes: u64,
    /// Image: whether removing the tags deletes the image (no other tag left).
    pub deletes_image: bool,
    /// Why it is garbage.
    pub reason: String,
    pub status: ItemStatus,
    /// Indexes of items whose removal makes this one garbage (a record of a removed checkout).
    pub after: Vec<usize>,
}

impl GcItem {
    /// What the item is, for display: the tags or the path.
    pub fn target(&self) -> String {
        match (&self.path, self.kind) {
            (_, ItemKind::Image) => self.tags.join(", "),
            (Some(p), _) => p.display().to_string(),
            (None, _) => String::new(),
        }
    }
}

/// A commit gc keeps for a runtime, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptCommit {
    pub runtime: String,
    pub commit: String,
    /// 1-based position among the runtime's commits, newest first, when within `--keep`.
    pub newest: Option<usize>,
    /// `:latest` names this commit's image.
    pub latest: bool,
    /// The pinned tag, when the image is present.
    pub image: Option<String>,
    /// The checkout, when present.
    pub checkout: Option<PathBuf>,
}

/// What gc decided (and, after [`execute`], did).
#[derive(Debug, Clone)]
pub struct GcPlan {
    pub keep: usize,
    pub dry_run: bool,
    pub kept: Vec<KeptCommit>,
    pub items: Vec<GcItem>,
}

impl GcPlan {
    /// Bytes freed (after a run) or that would be freed (dry run).
    pub fn freed_bytes(&self) -> u64 {
        self.counted().map(|i| i.bytes).sum()
    }

    /// How many items of `kind` were (or would be) removed.
    pub fn count(&self, kind: ItemKind) -> usize {
        self.counted().filter(|i| i.kind == kind).count()
    }

    pub fn failed(&self) -> usize {
        self.items
            .iter()
            .filter(|i| matches!(i.status, ItemStatus::Failed(_)))
            .count()
    }

    pub fn skipped(&self) -> usize {
        self.items
            .iter()
            .filter(|i| matches!(i.status, ItemStatus::Skipped(_)))
            .count()
    }

    fn counted(&self) -> impl Iterator<Item = &GcItem> {
        self.items
            .iter()
            .filter(|i| matches!(i.status, ItemStatus::Planned | ItemStatus::Removed))
    }
}

fn sha12(commit: &str) -> &str {
    &commit[..12.min(commit.len())]
}

/// An image whose labels prove planner built it.
#[derive(Debug, Clone)]
struct OwnImage {
    entry: ImageEntry,
    key: Key,
    commit: String,
    /// Nanoseconds since the epoch (precise when the engine says so).
    created: i128,
}

/// `(key, commit)` when the labels carry a key that recomputes from the other labels.
fn own_labels(labels: &HashMap<String, String>) -> Option<(Key, String)> {
    let label_key = Key::parse(labels.get(eng::LABEL_KEY)?)?;
    let commit = labels.get(eng::LABEL_REVISION)?.clone();
    if commit.is_empty() {
        return None;
    }
    let inputs = key::BuildInputs {
        repo: labels.get(eng::LABEL_REPO).cloned().unwrap_or_default(),
        commit: commit.clone(),
        dockerfile: labels
            .get(eng::LABEL_DOCKERFILE)
            .cloned()
            .unwrap_or_default(),
        platform: labels.get(eng::LABEL_PLATFORM).cloned().unwrap_or_default(),
        params: labels
            .get(eng::LABEL_PARAMS)
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or_default(),
    };
    (key::build_key(&inputs) == label_key).then_some((label_key, commit))
}

/// A commit's artifacts for one runtime.
#[derive(Debug, Default)]
struct CommitArtifacts {
    /// Newest evidence of the commit (image creation, records, checkout time), ns.
    seen: i128,
    /// (image ID, pinned tag) of this runtime.
    images: Vec<(String, String)>,
    checkout: Option<PathBuf>,
}

const NANOS: i128 = 1_000_000_000;

fn system_nanos(t: std::time::SystemTime) -> i128 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

/// Decides what to keep and what to remove. Writes nothing.
pub async fn plan(
    engine: &Engine,
    store: &Store,
    runtimes: &[Arc<Runtime>],
    keep: usize,
) -> Result<GcPlan, GcError> {
    let keep = keep.max(1);
    let image_repos: BTreeSet<String> = runtimes.iter().map(|r| r.image_repo()).collect();
    let mut own: BTreeMap<String, OwnImage> = BTreeMap::new();
    for entry in engine.list_images_with_label(eng::LABEL_KEY).await? {
        let Some((key, commit)) = own_labels(&entry.labels) else {
            continue;
        };
        // Precise creation times only matter for ranking this config's images.
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
        let created = precise.unwrap_or(i128::from(entry.created) * NANOS);
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
    let containers = engine.containers_by_image().await?;
    let records = store.list_records()?;

    // Runtimes grouped by repository (they share checkouts).
    let mut repos: BTreeMap<String, Vec<Arc<Runtime>>> = BTreeMap::new();
    for rt in runtimes {
        repos
            .entry(rt.repo_identity())
            .or_default()
            .push(Arc::clone(rt));
    }
    let mut kept = Vec::new();
    // image ID -> (tags to remove, runtimes, commit)
    let mut untag: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>, String)> = BTreeMap::new();
    let mut checkout_list = Vec::new();

    for (repo, group) in &repos {
        let checkouts = store.list_checkouts(repo)?;
        let mut keep_checkouts: BTreeSet<String> = BTreeSet::new();
        for rt in group {
            let latest = engine.inspect(&rt.latest_tag()).await?;
            let latest_id = latest.as_ref().map(|i| i.id.clone());
            let latest_commit = latest
                .as_ref()
                .and_then(|i| own_labels(&i.labels))
                .map(|(_, c)| c);
            let commits = artifacts(rt, repo, group.len(), &own, &checkouts, &records);
            let mut ranked: Vec<(&String, &CommitArtifacts)> = commits.iter().collect();
            ranked.sort_by(|a, b| b.1.seen.cmp(&a.1.seen).then(b.0.cmp(a.0)));
            for (rank, (commit, arts)) in ranked.iter().enumerate() {
                let newest = (rank < keep).then_some(rank + 1);
                let is_latest = latest_commit.as_deref() == Some(commit.as_str());
                if newest.is_some() || is_latest {
                    keep_checkouts.insert((*commit).clone());
                    kept.push(KeptCommit {
                        runtime: rt.name.clone(),
                        commit: (*commit).clone(),
                        newest,
                        latest: is_latest,
                        image: arts.images.first().map(|(_, t)| t.clone()),
                        checkout: arts.checkout.clone(),
                    });
                    continue;
                }
                for (id, tag) in &arts.images {
                    if Some(id) == latest_id.as_ref() {
                        continue;
                    }
                    let e = untag.entry(id.clone()).or_default();
                    e.0.insert(tag.clone());
                    e.1.insert(rt.name.clone());
                    e.2 = (*commit).clone();
                }
            }
            if let Some(c) = latest_commit {
                keep_checkouts.insert(c);
            }
        }
        let names: Vec<String> = group.iter().map(|r| r.name.clone()).collect();
        for co in &checkouts {
            if keep_checkouts.contains(&co.commit) {
                continue;
            }
            let key = key::clone_key(repo, &co.commit);
            let status = if store.is_locked(&key)? {
                ItemStatus::Skipped(format!(
                    "another planner process holds its lock (key {})",
                    key.short()
                ))
            } else {
                ItemStatus::Planned
            };
            checkout_list.push(GcItem {
                kind: ItemKind::Checkout,
                runtimes: names.clone(),
                tags: Vec::new(),
                image_id: None,
                path: Some(co.path.clone()),
                commit: Some(co.commit.clone()),
                repo: Some(repo.clone()),
                key: Some(key),
                bytes: store::disk_usage(&co.path),
                deletes_image: false,
                reason: format!("commit {} is not kept", sha12(&co.commit)),
                status,
                after: Vec::new(),
            });
        }
    }

    // Images: one item per image, with every pinned tag gc removes from it.
    let unique_sizes = if untag.keys().any(|id| own[id].entry.unique_size.is_none()) {
        engine.unique_image_sizes().await?
    } else {
        HashMap::new()
    };
    let mut items = Vec::new();
    for (id, (tags, rts, commit)) in untag {
        let img = &own[&id];
        let remaining: Vec<&String> = img
            .entry
            .repo_tags
            .iter()
            .filter(|t| !tags.contains(*t))
            .collect();
        let deletes = remaining.is_empty();
        let mut reason = format!("commit {} is not kept", sha12(&commit));
        if !deletes {
            let rest: Vec<&str> = remaining.iter().map(|s| s.as_str()).collect();
            reason.push_str(&format!(
                "; the image stays, still tagged {}",
                rest.join(", ")
            ));
        }
        let status = match containers.get(&id) {
            Some(names) if deletes => ItemStatus::Skipped(format!(
                "used by container {}; planner never force-removes (remove the container first)",
                names.join(", ")
            )),
            _ => ItemStatus::Planned,
        };
        items.push(GcItem {
            kind: ItemKind::Image,
            runtimes: rts.into_iter().collect(),
            tags: tags.into_iter().collect(),
            bytes: if deletes {
                img.entry
                    .unique_size
                    .or_else(|| unique_sizes.get(&id).copied())
                    .unwrap_or(img.entry.size)
            } else {
                0
            },
            image_id: Some(id),
            path: None,
            commit: Some(commit),
            repo: None,
            key: Some(img.key.clone()),
            deletes_image: deletes,
            reason,
            status,
            after: Vec::new(),
        });
    }
    // Images that go away with their last tag, and checkouts, by what records refer to.
    let deleted_images: HashMap<String, usize> = items
        .iter()
        .enumerate()
        .filter(|(_, it)| it.deletes_image && it.status == ItemStatus::Planned)
        .filter_map(|(i, it)| it.image_id.clone().map(|id| (id, i)))
        .collect();
    let removed_checkouts: HashMap<(String, String), usize> = checkout_list
        .iter()
        .enumerate()
        .filter(|(_, it)| it.status == ItemStatus::Planned)
        .filter_map(|(j, it)| Some(((it.repo.clone()?, it.commit.clone()?), items.len() + j)))
        .collect();
    items.append(&mut checkout_list);

    for tmp in store.list_temps()? {
        let Some(key) = tmp.key else { continue };
        let status = if store.is_locked(&key)? {
            ItemStatus::Skipped(format!(
                "a planner process is working in it (key {} locked)",
                key.short()
            ))
        } else {
            ItemStatus::Planned
        };
        items.push(GcItem {
            kind: ItemKind::TempDir,
            runtimes: Vec::new(),
            tags: Vec::new(),
            image_id: None,
            bytes: store::disk_usage(&tmp.path),
            path: Some(tmp.path),
            commit: None,
            repo: None,
            key: Some(key),
            deletes_image: false,
            reason: "left by an interrupted run (no process holds its key lock)".into(),
            status,
            after: Vec::new(),
        });
    }

    let images_by_key: HashMap<&Key, Vec<&String>> =
        own.values().fold(HashMap::new(), |mut m, img| {
            m.entry(&img.key).or_default().push(&img.entry.id);
            m
        });
    for file in records {
        let orphan = match &file.record {
            None => Some((
                "malformed: not a valid record for its name".to_owned(),
                vec![],
            )),
            Some(rec) => record_orphan(
                rec,
                store,
                &own,
                &images_by_key,
                &removed_checkouts,
                &deleted_images,
            ),
        };
        let Some((reason, after)) = orphan else {
            continue;
        };
        let rec = file.record.as_ref();
        items.push(GcItem {
            kind: ItemKind::Record,
            runtimes: rec.map(|r| r.runtimes.clone()).unwrap_or_default(),
            tags: Vec::new(),
            image_id: rec.and_then(|r| r.image_id.clone()),
            path: Some(file.path),
            commit: rec.and_then(|r| r.commit.clone()),
            repo: rec.map(|r| r.repo.clone()),
            key: file.name_key,
            bytes: file.bytes,
            deletes_image: false,
            reason,
            status: ItemStatus::Planned,
            after,
        });
    }
    kept.sort_by(|a, b| {
        (&a.runtime, a.newest.unwrap_or(usize::MAX))
            .cmp(&(&b.runtime, b.newest.unwrap_or(usize::MAX)))
    });
    Ok(GcPlan {
        keep,
        dry_run: true,
        kept,
        items,
    })
}

/// The commits of `rt` that have an artifact (a pinned image or a checkout), with the newest
/// evidence of each.
fn artifacts(
    rt: &Runtime,
    repo: &str,
    runtimes_on_repo: usize,
    own: &BTreeMap<String, OwnImage>,
    checkouts: &[CheckoutDir],
    records: &[store::RecordFile],
) -> BTreeMap<String, CommitArtifacts> {
    let image_repo = rt.image_repo();
    let mut out: BTreeMap<String, CommitArtifacts> = BTreeMap::new();
    for img in own.values() {
        for tag in &img.entry.repo_tags {
            let (name, t) = eng::split_reference(tag);
            if name == image_repo && t == sha12(&img.commit) && tag == &rt.pinned_tag(&img.commit) {
                let a = out.entry(img.commit.clone()).or_default();
                a.seen = a.seen.max(img.created);
                a.images.push((img.entry.id.clone(), tag.clone()));
            }
        }
    }
    // Which commits of the repo records attribute to some runtime, and to this one.
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
            && (rec.kind != "resolve-head" || rec.branch.as_deref() == Some(rt.branch.as_str()));
        if is_mine {
            mine.insert(c);
        }
    }
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

/// Why a well-formed record is an orphan, and after which removals; `None` to keep it.
fn record_orphan(
    rec: &store::Record,
    store: &Store,
    own: &BTreeMap<String, OwnImage>,
    images_by_key: &HashMap<&Key, Vec<&String>>,
    removed_checkouts: &HashMap<(String, String), usize>,
    deleted_images: &HashMap<String, usize>,
) -> Option<(String, Vec<usize>)> {
    match rec.kind.as_str() {
        "clone" | "verify-dockerfile" => {
            let Some(commit) = &rec.commit else {
                return Some(("malformed: no commit".into(), vec![]));
            };
            if !matches!(
                store.checkout_state(&rec.repo, commit),
                CheckoutState::Present(_)
            ) {
                return Some((format!("its checkout of {} is gone", sha12(commit)), vec![]));
            }
            removed_checkouts
                .get(&(rec.repo.clone(), commit.clone()))
                .map(|&i| {
                    (
                        format!("its checkout of {} is removed", sha12(commit)),
                        vec![i],
                    )
                })
        }
        "build" => {
            let ids = images_by_key.get(&rec.key).cloned().unwrap_or_default();
            if ids.is_empty() {
                return Some(("its image is gone".into(), vec![]));
            }
            let after: Option<Vec<usize>> = ids
                .iter()
                .map(|id| deleted_images.get(*id).copied())
                .collect();
            after.map(|a| ("its image is removed".into(), a))
        }
        "tag-latest" => {
            let Some(id) = &rec.image_id else {
                return Some(("malformed: no image id".into(), vec![]));
            };
            if !own.contains_key(id) {
                return Some(("its image is gone".into(), vec![]));
            }
            deleted_images
                .get(id)
                .map(|&i| ("its image is removed".into(), vec![i]))
        }
        _ => None,
    }
}

/// Carries out a plan: removes every planned item, in order (images, checkouts, temp dirs,
/// records), recording each outcome. Hold the run lock exclusively.
pub async fn execute(engine: &Engine, store: &Store, plan: &mut GcPlan) {
    plan.dry_run = false;
    for i in 0..plan.items.len() {
        if plan.items[i].status != ItemStatus::Planned {
            continue;
        }
        let blocked = plan.items[i].after.iter().find_map(|&j| {
            let dep = &plan.items[j];
            let done = dep.status == ItemStatus::Removed
                && (dep.kind != ItemKind::Image || dep.deletes_image);
            (!done).then(|| format!("kept: the {} it describes was not removed", dep.kind.name()))
        });
        let item = &mut plan.items[i];
        if let Some(why) = blocked {
            item.status = ItemStatus::Skipped(why);
            continue;
        }
        item.status = match item.kind {
            ItemKind::Image => remove_image(engine, item).await,
            ItemKind::Checkout | ItemKind::TempDir => remove_locked(store, item),
            ItemKind::Record => match &item.path {
                Some(p) => match store.remove_record_file(p) {
                    Ok(()) => ItemStatus::Removed,
                    Err(e) => ItemStatus::Failed(e.to_string()),
                },
                None => ItemStatus::Skipped("no path".into()),
            },
        };
    }
}

async fn remove_image(engine: &Engine, item: &mut GcItem) -> ItemStatus {
    let id = item.image_id.clone().unwrap_or_default();
    let mut deleted = false;
    for tag in item.tags.clone() {
        match engine.inspect(&tag).await {
            Ok(None) => continue,
            Ok(Some(info)) if info.id != id => {
                return ItemStatus::Skipped(format!(
                    "{tag} now names another image ({}); left alone",
                    crate::exec::scheduler::short_id(&info.id)
                ));
            }
            Ok(Some(_)) => {}
            Err(e) => return ItemStatus::Failed(e.to_string()),
        }
        match engine.remove_reference(&tag).await {
            Ok(RemoveOutcome::Removed { deleted: d }) => deleted |= d,
            Ok(RemoveOutcome::Missing) => {}
            Ok(RemoveOutcome::InUse(msg)) => {
                item.deletes_image = false;
                item.bytes = 0;
                return ItemStatus::Skipped(format!(
                    "the engine refused: {msg}; planner never force-removes (remove the container first)"
                ));
            }
            Err(e) => {
                item.deletes_image = false;
                item.bytes = 0;
                return ItemStatus::Failed(format!(
                    "{e}\n  help: check the engine, then run `planner gc` again"
                ));
            }
        }
    }
    if !deleted {
        // Only untagged: some other reference keeps the image (or it was already gone).
        let still_there = matches!(engine.inspect(&id).await, Ok(Some(_)));
        if still_there {
            item.deletes_image = false;
            item.bytes = 0;
        }
    }
    ItemStatus::Removed
}

fn remove_locked(store: &Store, item: &GcItem) -> ItemStatus {
    let (Some(key), Some(path)) = (&item.key, &item.path) else {
        return ItemStatus::Skipped("no key or path".into());
    };
    let _lock = match store.try_lock(key) {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            return ItemStatus::Skipped(format!(
                "another planner process holds its lock (key {})",
                key.short()
            ));
        }
        Err(e) => return ItemStatus::Failed(e.to_string()),
    };
    let res = match (item.kind, &item.repo, &item.commit) {
        (ItemKind::Checkout, Some(repo), Some(commit)) => store.discard_checkout(repo, commit, key),
        _ => store.remove_temp(path),
    };
    match res {
        Ok(()) => ItemStatus::Removed,
        Err(e) => ItemStatus::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(commit: &str) -> HashMap<String, String> {
        let inputs = key::BuildInputs {
            repo: "https://h.example/tpl".into(),
            commit: commit.into(),
            dockerfile: "Dockerfile".into(),
            platform: "linux/amd64".into(),
            params: Default::default(),
        };
        HashMap::from([
            (eng::LABEL_KEY.into(), key::build_key(&inputs).to_string()),
            (eng::LABEL_REPO.into(), inputs.repo.clone()),
            (eng::LABEL_REVISION.into(), commit.into()),
            (eng::LABEL_DOCKERFILE.into(), inputs.dockerfile.clone()),
            (eng::LABEL_PLATFORM.into(), inputs.platform.clone()),
            (eng::LABEL_PARAMS.into(), "{}".into()),
        ])
    }

    #[test]
    fn only_labels_that_recompute_to_their_key_are_planners() {
        let c = "a".repeat(40);
        let (k, commit) = own_labels(&labels(&c)).expect("planner's");
        assert_eq!(commit, c);
        assert_eq!(k.as_str().len(), 64);
        let mut copied = labels(&c);
        copied.insert(eng::LABEL_REVISION.into(), "b".repeat(40));
        assert!(
            own_labels(&copied).is_none(),
            "a copied key label is not trusted"
        );
        let mut none = labels(&c);
        none.remove(eng::LABEL_KEY);
        assert!(own_labels(&none).is_none());
        assert!(own_labels(&HashMap::new()).is_none());
    }

    #[test]
    fn plan_totals_count_only_what_goes() {
        let item = |kind, status, bytes| GcItem {
            kind,
            runtimes: vec![],
            tags: vec![],
            image_id: None,
            path: None,
            commit: None,
            repo: None,
            key: None,
            bytes,
            deletes_image: false,
            reason: String::new(),
            status,
            after: vec![],
        };
        let plan = GcPlan {
            keep: 1,
            dry_run: false,
            kept: vec![],
            items: vec![
                item(ItemKind::Image, ItemStatus::Removed, 10),
                item(ItemKind::Checkout, ItemStatus::Skipped("held".into()), 100),
                item(ItemKind::Record, ItemStatus::Failed("io".into()), 1000),
                item(ItemKind::Record, ItemStatus::Removed, 1),
            ],
        };
        assert_eq!(plan.freed_bytes(), 11);
        assert_eq!(plan.count(ItemKind::Record), 1);
        assert_eq!((plan.skipped(), plan.failed()), (1, 1));
    }
}
