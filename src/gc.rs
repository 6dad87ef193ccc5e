//! `planner gc`: per runtime, keep the newest N commits (images and checkouts) and whatever
//! `:latest` names; remove the other images planner built, their checkouts, stale temp dirs
//! and orphan records. A registry runtime is the same with manifest digests for commits: keep
//! its newest N pulled digests and whatever `:latest` names, remove the older pulled images.
//!
//! Safety rules:
//! - An image is planner's only if its `dev.planner.key` label recomputes from its other
//!   labels; only its *pinned* tags (`{image_prefix}{runtime}:{sha12 of its revision}`) are
//!   removed, by reference and without force, so the engine deletes the image only when no
//!   other tag is left, and never while a container uses it (those are reported and skipped).
//! - A pulled image (it carries the publisher's labels, not planner's) is planner's only when
//!   a valid `pull` record of the runtime names its digest and image ID, the runtime's pinned
//!   tag `{image_prefix}{runtime}:{12 hex of the digest}` names that image ID, and its
//!   `RepoDigests` has `{registry}/{repository}@{digest}`: never on a tag match alone. Its
//!   pinned tag is removed like a built image's. Only when no other tag would be left (so
//!   the image goes) are the registry's names removed too: the registry reference
//!   `{registry}/{repository}:{tag}` if it still names the image (it follows the newest pull,
//!   so normally it does not), then the digest reference (the engine keeps an image while a
//!   digest reference names it); an image someone else also tagged keeps both.
//! - Pulled digests are ranked by their records' `finished_at` (pull, tag-latest and
//!   resolve-digest, which every run rewrites for the digest the tag names now), not by the
//!   engine's `Created`: that is when the publisher built the image, so a re-pushed older
//!   build would rank as old although it is what the tag names. `Created` only breaks ties
//!   (records have seconds).
//! - Whatever `:latest` names is kept, with its checkout.
//! - A checkout or temp dir is removed only while holding its key lock (skipped if held).
//! - A record is an orphan when malformed, or when the checkout/image it describes is gone
//!   (or is removed in this run, and then only if that removal succeeded).
//! - A per-key lock file is removed only while gc holds it (taken with `try_lock`, unlinked
//!   while held); one another process holds is not garbage and is left alone. The lock
//!   protocol tolerates this: a locker checks that the file it locked is still the one at
//!   the path (see `store`), so nobody ever holds a lock on an unlinked file.
//!
//! [`plan`] decides and writes nothing (that is the dry run); [`execute`] carries out a plan.
//! The caller holds the run lock exclusively for a real run.

use crate::ids::short;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Runtime;
use crate::docker::DockerError;
use crate::docker::engine::{self as eng, Engine, ImageDetail, ImageEntry, RemoveOutcome};
use crate::key::Key;
use crate::registry::ImageRef;
use crate::steps::{self, Attests};
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
    LockFile,
}

impl ItemKind {
    /// The kind as written in reports: `image`, `checkout`, `temp-dir`, `record`, `lock-file`.
    pub fn name(self) -> &'static str {
        match self {
            ItemKind::Image => "image",
            ItemKind::Checkout => "checkout",
            ItemKind::TempDir => "temp-dir",
            ItemKind::Record => "record",
            ItemKind::LockFile => "lock-file",
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
    /// The status as written in `--json`: `would-remove`, `removed`, `skipped`, `failed`.
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
    /// Pulled image or registry record: the manifest digest.
    pub digest: Option<String>,
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
            (_, ItemKind::Image) => crate::text::list(&self.tags, crate::text::LIST_MAX),
            (Some(p), _) => p.display().to_string(),
            (None, _) => String::new(),
        }
    }
}

/// A commit gc keeps for a runtime, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptCommit {
    pub runtime: String,
    /// The commit (git runtime) or the manifest digest (registry runtime, `sha256:…`).
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

    /// How many items could not be removed.
    pub fn failed(&self) -> usize {
        self.items
            .iter()
            .filter(|i| matches!(i.status, ItemStatus::Failed(_)))
            .count()
    }

    /// How many items were left in place.
    pub fn skipped(&self) -> usize {
        self.items
            .iter()
            .filter(|i| matches!(i.status, ItemStatus::Skipped(_)))
            .count()
    }

    /// The items that were (or would be) removed.
    fn counted(&self) -> impl Iterator<Item = &GcItem> {
        self.items
            .iter()
            .filter(|i| matches!(i.status, ItemStatus::Planned | ItemStatus::Removed))
    }
}

/// What `gc --build-cache` did (or, in a dry run, would do) to the engine's BuildKit cache.
/// The engine's cache has no owner: on planner's engine it is what planner's builds filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildCachePrune {
    /// Only entries last used longer ago than this (`--older-than`); all when `None`.
    pub older_than: Option<std::time::Duration>,
    pub dry_run: bool,
    /// Entries and bytes removed (or that would be), or why it failed.
    pub outcome: Result<eng::BuildCacheUsage, String>,
}

/// Prunes the engine's BuildKit cache (a dry run only measures what a prune would free).
pub async fn build_cache(
    engine: &Engine,
    older_than: Option<std::time::Duration>,
    dry_run: bool,
) -> BuildCachePrune {
    let outcome = match dry_run {
        true => engine.build_cache_usage(older_than).await,
        false => engine.prune_build_cache(older_than).await,
    };
    BuildCachePrune {
        older_than,
        dry_run,
        outcome: outcome.map_err(|e| e.to_string()),
    }
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
    if !crate::ids::is_commit(&commit) {
        return None;
    }
    let inputs = crate::steps::build::inputs_from_labels(labels);
    (steps::build::key(&inputs) == label_key).then_some((label_key, commit))
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

/// `t` in nanoseconds since the epoch (0 before it).
fn system_nanos(t: std::time::SystemTime) -> i128 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

/// Decides what to keep and what to remove. Writes nothing.
///
/// Lists planner's images, the containers and the records; then, per repository, decides which
/// commits each runtime keeps and which pinned tags and checkouts go; then adds stale temp dirs
/// and orphan records.
pub async fn plan(
    engine: &Engine,
    store: &Store,
    runtimes: &[Arc<Runtime>],
    keep: usize,
) -> Result<GcPlan, GcError> {
    let mut planner = Planner::survey(engine, store, runtimes, keep.max(1)).await?;
    for (repo, group) in &by_repo(runtimes) {
        planner.plan_repo(repo, group).await?;
    }
    for rt in runtimes {
        planner.plan_pulled(rt).await?;
    }
    planner.into_plan().await
}

/// Runtimes grouped by repository (they share checkouts).
fn by_repo(runtimes: &[Arc<Runtime>]) -> BTreeMap<String, Vec<Arc<Runtime>>> {
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
async fn own_images(
    engine: &Engine,
    runtimes: &[Arc<Runtime>],
) -> Result<BTreeMap<String, OwnImage>, DockerError> {
    let image_repos: BTreeSet<String> = runtimes.iter().map(|r| r.image_repo()).collect();
    let mut own = BTreeMap::new();
    for entry in engine.list_images_with_label(eng::LABEL_KEY).await? {
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
async fn created_nanos(
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

/// The pinned tags gc removes from one image, the runtimes they belong to, and their commit.
#[derive(Debug, Default)]
struct Untag {
    tags: BTreeSet<String>,
    runtimes: BTreeSet<String>,
    commit: String,
    /// A pulled image: the registry images and digests it was pulled as.
    pulls: Vec<(ImageRef, String)>,
}

/// A registry runtime's pulled digest whose image the engine proves (see the module doc).
#[derive(Debug)]
struct PulledDigest {
    id: String,
    pinned: String,
    /// Newest `finished_at` of the runtime's records of the digest, ns.
    seen: i128,
    /// The engine's creation time of the image, ns (tie-break only).
    created: i128,
}

/// The state [`plan`] builds up: what the engine and the cache dir hold, and the decisions
/// made so far.
struct Planner<'a> {
    engine: &'a Engine,
    store: &'a Store,
    keep: usize,
    own: BTreeMap<String, OwnImage>,
    /// Pulled images proven planner's, by ID.
    pulled: BTreeMap<String, ImageDetail>,
    /// IDs of the images that exist among those records name (planner's own, and those
    /// registry records name).
    present: BTreeSet<String>,
    /// Image ID -> names of the containers using it.
    containers: HashMap<String, Vec<String>>,
    records: Vec<store::RecordFile>,
    kept: Vec<KeptCommit>,
    /// Image ID -> what gc removes from it.
    untag: BTreeMap<String, Untag>,
    /// Checkout items, in repository order.
    checkouts: Vec<GcItem>,
}

impl<'a> Planner<'a> {
    /// Lists planner's images, the containers using images, and the records.
    async fn survey(
        engine: &'a Engine,
        store: &'a Store,
        runtimes: &[Arc<Runtime>],
        keep: usize,
    ) -> Result<Self, GcError> {
        let own = own_images(engine, runtimes).await?;
        let containers = engine.containers_by_image().await?;
        let records = store.list_records()?;
        let present = present_images(engine, &own, &records).await?;
        Ok(Planner {
            engine,
            store,
            keep,
            own,
            pulled: BTreeMap::new(),
            present,
            containers,
            records,
            kept: Vec::new(),
            untag: BTreeMap::new(),
            checkouts: Vec::new(),
        })
    }

    /// Decides for the runtimes of one repository (`group`): the commits each keeps, the
    /// pinned tags that go, then the checkouts no runtime keeps.
    async fn plan_repo(&mut self, repo: &str, group: &[Arc<Runtime>]) -> Result<(), GcError> {
        let checkouts = self.store.list_checkouts(repo)?;
        let mut keep_checkouts: BTreeSet<String> = BTreeSet::new();
        for rt in group {
            let commits = self.plan_runtime(rt, repo, group.len(), &checkouts).await?;
            keep_checkouts.extend(commits);
        }
        let names: Vec<String> = group.iter().map(|r| r.name.clone()).collect();
        for co in &checkouts {
            if keep_checkouts.contains(&co.commit) {
                continue;
            }
            let args = (repo.to_owned(), names.clone(), co.clone());
            let item = off_runtime(self.store, args, |store, (repo, names, co)| {
                checkout_item(store, &repo, &names, &co)
            })
            .await?;
            self.checkouts.push(item);
        }
        Ok(())
    }

    /// Ranks `rt`'s commits newest first; keeps the newest `keep` and the one `:latest` names,
    /// and marks the other commits' pinned tags for removal. Returns the commits whose
    /// checkouts stay.
    async fn plan_runtime(
        &mut self,
        rt: &Runtime,
        repo: &str,
        runtimes_on_repo: usize,
        checkouts: &[CheckoutDir],
    ) -> Result<Vec<String>, GcError> {
        let latest = self.engine.inspect(&rt.latest_tag()).await?;
        let latest_id = latest.as_ref().map(|i| i.id.clone());
        let latest_commit = latest
            .as_ref()
            .and_then(|i| own_labels(&i.labels))
            .map(|(_, c)| c);
        let commits = artifacts(
            rt,
            repo,
            runtimes_on_repo,
            &self.own,
            checkouts,
            &self.records,
        );
        let mut keep_checkouts = Vec::new();
        for (rank, (commit, arts)) in newest_first(&commits).into_iter().enumerate() {
            let newest = (rank < self.keep).then_some(rank + 1);
            let is_latest = latest_commit.as_deref() == Some(commit.as_str());
            if newest.is_some() || is_latest {
                keep_checkouts.push(commit.clone());
                self.kept
                    .push(kept_commit(rt, commit, arts, newest, is_latest));
            } else {
                self.untag_commit(rt, commit, arts, latest_id.as_deref());
            }
        }
        keep_checkouts.extend(latest_commit);
        Ok(keep_checkouts)
    }

    /// Marks the pinned tags of a commit `rt` does not keep for removal, except on the image
    /// `:latest` names (`latest_id`).
    fn untag_commit(
        &mut self,
        rt: &Runtime,
        commit: &str,
        arts: &CommitArtifacts,
        latest_id: Option<&str>,
    ) {
        for (id, tag) in &arts.images {
            if Some(id.as_str()) == latest_id {
                continue;
            }
            let e = self.untag.entry(id.clone()).or_default();
            e.tags.insert(tag.clone());
            e.runtimes.insert(rt.name.clone());
            e.commit = commit.to_owned();
        }
    }

    /// A registry runtime's pulled digests, ranked newest first: keeps the newest `keep` and
    /// what `:latest` names, and marks the others' pinned tags for removal. Nothing for a
    /// git runtime.
    async fn plan_pulled(&mut self, rt: &Runtime) -> Result<(), GcError> {
        let Some(image) = rt.registry_image() else {
            return Ok(());
        };
        let latest_id = self.engine.inspect(&rt.latest_tag()).await?.map(|i| i.id);
        let digests = self.pulled_digests(rt, image).await?;
        let mut ranked: Vec<(&String, &PulledDigest)> = digests.iter().collect();
        ranked.sort_by(|a, b| (b.1.seen, b.1.created, b.0).cmp(&(a.1.seen, a.1.created, a.0)));
        for (rank, (digest, p)) in ranked.into_iter().enumerate() {
            let newest = (rank < self.keep).then_some(rank + 1);
            let latest = latest_id.as_deref() == Some(p.id.as_str());
            if newest.is_some() || latest {
                self.kept.push(KeptCommit {
                    runtime: rt.name.clone(),
                    commit: digest.clone(),
                    newest,
                    latest,
                    image: Some(p.pinned.clone()),
                    checkout: None,
                });
                continue;
            }
            let e = self.untag.entry(p.id.clone()).or_default();
            e.tags.insert(p.pinned.clone());
            e.runtimes.insert(rt.name.clone());
            let pull = (image.clone(), digest.clone());
            if !e.pulls.contains(&pull) {
                e.pulls.push(pull);
            }
        }
        Ok(())
    }

    /// The digests `rt`'s valid pull records name whose image the engine proves planner's
    /// (see the module doc), remembering those images in `self.pulled`.
    async fn pulled_digests(
        &mut self,
        rt: &Runtime,
        image: &ImageRef,
    ) -> Result<BTreeMap<String, PulledDigest>, DockerError> {
        let claims = pull_claims(rt, image, &self.records);
        let mut out = BTreeMap::new();
        for (digest, id) in claims {
            let pinned = rt.pinned_tag(&digest);
            let Some(detail) = self.engine.inspect_detail(&pinned).await? else {
                continue;
            };
            let by_digest = |r: &String| names_digest(r, image, &digest);
            if detail.entry.id != id || !detail.repo_digests.iter().any(by_digest) {
                continue;
            }
            let created = detail
                .created_nanos
                .unwrap_or(i128::from(detail.entry.created) * NANOS);
            let seen = records_seen(rt, &digest, &self.records);
            self.pulled.insert(id.clone(), detail);
            out.insert(
                digest,
                PulledDigest {
                    id,
                    pinned,
                    seen,
                    created,
                },
            );
        }
        Ok(out)
    }

    /// The plan: image items, checkout items, temp dir items, orphan records, then free lock
    /// files (last: removing the others takes their locks); the kept
    /// commits by runtime, newest first.
    async fn into_plan(mut self) -> Result<GcPlan, GcError> {
        let mut items = self.image_items().await?;
        let removals = PlannedRemovals::new(&items, &self.checkouts);
        items.append(&mut self.checkouts);
        items.extend(off_runtime(self.store, (), |store, ()| temp_dir_items(store)).await?);
        let records = std::mem::take(&mut self.records);
        items.extend(self.record_items(records, &removals));
        items.extend(off_runtime(self.store, (), |store, ()| lock_file_items(store)).await?);
        self.kept.sort_by(|a, b| {
            (&a.runtime, a.newest.unwrap_or(usize::MAX))
                .cmp(&(&b.runtime, b.newest.unwrap_or(usize::MAX)))
        });
        Ok(GcPlan {
            keep: self.keep,
            dry_run: true,
            kept: self.kept,
            items,
        })
    }

    /// One item per image, with every pinned tag gc removes from it. Asks the engine for
    /// unique sizes only when the listing lacks one.
    async fn image_items(&mut self) -> Result<Vec<GcItem>, DockerError> {
        let untag = std::mem::take(&mut self.untag);
        let unique_sizes = if untag.keys().any(|id| self.entry(id).unique_size.is_none()) {
            self.engine.unique_image_sizes().await?
        } else {
            HashMap::new()
        };
        Ok(untag
            .into_iter()
            .map(|(id, u)| self.image_item(id, u, &unique_sizes))
            .collect())
    }

    /// The engine's listing of image `id`, one of planner's own or pulled images.
    fn entry(&self, id: &str) -> &ImageEntry {
        match self.own.get(id) {
            Some(img) => &img.entry,
            None => &self.pulled[id].entry,
        }
    }

    /// The item removing `u.tags` from image `id`: it deletes the image when no other tag is
    /// left (then a container using it makes it skipped), otherwise it frees nothing. For a
    /// pulled image that goes, the registry's names of it go too (see the module doc).
    fn image_item(&self, id: String, u: Untag, unique_sizes: &HashMap<String, u64>) -> GcItem {
        let entry = self.entry(&id);
        let mut remaining: Vec<&str> = entry
            .repo_tags
            .iter()
            .filter(|t| !u.tags.contains(*t))
            .map(String::as_str)
            .collect();
        let mut tags: Vec<String> = u.tags.iter().cloned().collect();
        if let Some(detail) = self.pulled.get(&id).filter(|_| !u.pulls.is_empty()) {
            remaining = registry_names(detail, &u.pulls, remaining, &mut tags);
        }
        let deletes = remaining.is_empty();
        let mut reason = match u.pulls.first() {
            Some((_, digest)) => format!("digest {} is not kept", short(digest)),
            None => format!("commit {} is not kept", short(&u.commit)),
        };
        if !deletes {
            reason.push_str(&format!(
                "; the image stays, still tagged {}",
                crate::text::list(&remaining, crate::text::LIST_MAX)
            ));
        }
        let status = match self.containers.get(&id) {
            Some(names) if deletes => ItemStatus::Skipped(format!(
                "used by container {}; planner never force-removes (remove the container first)",
                crate::text::list(names, crate::text::LIST_MAX)
            )),
            _ => ItemStatus::Planned,
        };
        let bytes = if deletes {
            entry
                .unique_size
                .or_else(|| unique_sizes.get(&id).copied())
                .unwrap_or(entry.size)
        } else {
            0
        };
        let key = match (self.own.get(&id), u.pulls.first()) {
            (Some(img), _) => Some(img.key.clone()),
            (None, Some((image, digest))) => Some(steps::pull::key(image, digest)),
            (None, None) => None,
        };
        GcItem {
            runtimes: u.runtimes.into_iter().collect(),
            tags,
            bytes,
            image_id: Some(id),
            commit: (!u.commit.is_empty()).then_some(u.commit),
            digest: u.pulls.first().map(|(_, d)| d.clone()),
            key,
            deletes_image: deletes,
            ..new_item(ItemKind::Image, reason, status)
        }
    }

    /// One item per orphan record (see [`record_orphan`]), malformed ones included.
    fn record_items(
        &self,
        records: Vec<store::RecordFile>,
        removals: &PlannedRemovals,
    ) -> Vec<GcItem> {
        let images_by_key: HashMap<&Key, Vec<&String>> =
            self.own.values().fold(HashMap::new(), |mut m, img| {
                m.entry(&img.key).or_default().push(&img.entry.id);
                m
            });
        let mut items = Vec::new();
        for file in records {
            let orphan = match &file.record {
                None => Some((
                    "malformed: not a valid record for its name".to_owned(),
                    vec![],
                )),
                Some(rec) => {
                    record_orphan(rec, self.store, &self.present, &images_by_key, removals)
                }
            };
            if let Some((reason, after)) = orphan {
                items.push(record_item(file, reason, after));
            }
        }
        items
    }
}

/// `rt`'s commits, newest evidence first (ties: the greater commit first).
fn newest_first(commits: &BTreeMap<String, CommitArtifacts>) -> Vec<(&String, &CommitArtifacts)> {
    let mut ranked: Vec<(&String, &CommitArtifacts)> = commits.iter().collect();
    ranked.sort_by(|a, b| b.1.seen.cmp(&a.1.seen).then(b.0.cmp(a.0)));
    ranked
}

/// What gc keeps of `commit` for `rt`, and why (`newest` rank, `:latest`).
fn kept_commit(
    rt: &Runtime,
    commit: &str,
    arts: &CommitArtifacts,
    newest: Option<usize>,
    latest: bool,
) -> KeptCommit {
    KeptCommit {
        runtime: rt.name.clone(),
        commit: commit.to_owned(),
        newest,
        latest,
        image: arts.images.first().map(|(_, t)| t.clone()),
        checkout: arts.checkout.clone(),
    }
}

/// An item of `kind` with only its reason and status; the caller fills in the rest.
fn new_item(kind: ItemKind, reason: String, status: ItemStatus) -> GcItem {
    GcItem {
        kind,
        runtimes: Vec::new(),
        tags: Vec::new(),
        image_id: None,
        path: None,
        commit: None,
        digest: None,
        repo: None,
        key: None,
        bytes: 0,
        deletes_image: false,
        reason,
        status,
        after: Vec::new(),
    }
}

/// The item removing checkout `co` of `repo` (shared by the runtimes `names`); skipped while
/// another process holds its clone key's lock.
fn checkout_item(
    store: &Store,
    repo: &str,
    names: &[String],
    co: &CheckoutDir,
) -> Result<GcItem, StoreError> {
    let key = steps::clone::key(repo, &co.commit);
    let status = if store.is_locked(&key)? {
        ItemStatus::Skipped(format!(
            "another planner process holds its lock (key {})",
            key.short()
        ))
    } else {
        ItemStatus::Planned
    };
    let reason = format!("commit {} is not kept", short(&co.commit));
    Ok(GcItem {
        runtimes: names.to_vec(),
        path: Some(co.path.clone()),
        commit: Some(co.commit.clone()),
        repo: Some(repo.to_owned()),
        key: Some(key),
        bytes: store::disk_usage(&co.path),
        ..new_item(ItemKind::Checkout, reason, status)
    })
}

/// One item per temp dir left with a key; skipped while a process holds that key's lock.
fn temp_dir_items(store: &Store) -> Result<Vec<GcItem>, StoreError> {
    let mut items = Vec::new();
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
        let reason = "left by an interrupted run (no process holds its key lock)".into();
        items.push(GcItem {
            bytes: store::disk_usage(&tmp.path),
            path: Some(tmp.path),
            key: Some(key),
            ..new_item(ItemKind::TempDir, reason, status)
        });
    }
    Ok(items)
}

/// One item per per-key lock file no process holds (one that is held is not garbage).
fn lock_file_items(store: &Store) -> Result<Vec<GcItem>, StoreError> {
    let mut items = Vec::new();
    for key in store.list_lock_keys()? {
        if store.is_locked(&key)? {
            continue;
        }
        let path = store.lock_file_path(&key);
        items.push(GcItem {
            bytes: store::disk_usage(&path),
            path: Some(path),
            key: Some(key),
            ..new_item(
                ItemKind::LockFile,
                "no process holds it".into(),
                ItemStatus::Planned,
            )
        });
    }
    Ok(items)
}

/// The item removing record `file`, an orphan for `reason` once the items `after` are gone.
fn record_item(file: store::RecordFile, reason: String, after: Vec<usize>) -> GcItem {
    let rec = file.record.as_ref();
    GcItem {
        runtimes: rec.map(|r| r.runtimes.clone()).unwrap_or_default(),
        image_id: rec.and_then(|r| r.image_id.clone()),
        path: Some(file.path),
        commit: rec.and_then(|r| r.commit.clone()),
        digest: rec.and_then(|r| r.digest.clone()),
        repo: rec.map(|r| r.repo.clone()),
        key: file.name_key,
        bytes: file.bytes,
        after,
        ..new_item(ItemKind::Record, reason, ItemStatus::Planned)
    }
}

/// The planned removals that make records orphans, each by its item index: images that go
/// away with their last tag, and checkouts (by repository and commit).
struct PlannedRemovals {
    images: HashMap<String, usize>,
    checkouts: HashMap<(String, String), usize>,
}

impl PlannedRemovals {
    /// From the image items and the checkout items that follow them.
    fn new(images: &[GcItem], checkouts: &[GcItem]) -> Self {
        let images_map = images
            .iter()
            .enumerate()
            .filter(|(_, it)| it.deletes_image && it.status == ItemStatus::Planned)
            .filter_map(|(i, it)| it.image_id.clone().map(|id| (id, i)))
            .collect();
        let checkouts_map = checkouts
            .iter()
            .enumerate()
            .filter(|(_, it)| it.status == ItemStatus::Planned)
            .filter_map(|(j, it)| Some(((it.repo.clone()?, it.commit.clone()?), images.len() + j)))
            .collect();
        PlannedRemovals {
            images: images_map,
            checkouts: checkouts_map,
        }
    }
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
fn pinned_images(
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
async fn present_images(
    engine: &Engine,
    own: &BTreeMap<String, OwnImage>,
    records: &[store::RecordFile],
) -> Result<BTreeSet<String>, DockerError> {
    let mut present: BTreeSet<String> = own.keys().cloned().collect();
    let mut asked: BTreeSet<&str> = BTreeSet::new();
    for rec in records.iter().filter_map(|f| f.record.as_ref()) {
        let registry = attests(rec) == Some(Attests::PulledImage)
            || (attests(rec) == Some(Attests::LatestTag) && rec.digest.is_some());
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
fn pull_claims(
    rt: &Runtime,
    image: &ImageRef,
    records: &[store::RecordFile],
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
fn records_seen(rt: &Runtime, digest: &str, records: &[store::RecordFile]) -> i128 {
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
fn names_digest(engine_ref: &str, image: &ImageRef, digest: &str) -> bool {
    let Some((name, d)) = engine_ref.split_once('@') else {
        return false;
    };
    d == digest
        && ImageRef::parse(name)
            .is_ok_and(|r| r.registry == image.registry && r.repository == image.repository)
}

/// Whether the engine's tag `engine_ref` (`name:tag`, possibly short) is `image` itself.
fn names_tag(engine_ref: &str, image: &ImageRef) -> bool {
    ImageRef::parse(engine_ref).is_ok_and(|r| &r == image)
}

/// For a pulled image whose pinned tags go: when nothing but the registry's names of it
/// (`pulls`) would be left, appends those to `tags` (the registry reference tag, then the
/// digest references, in the engine's spelling) and returns no remaining names; otherwise
/// returns every name that keeps the image (`remaining` tags, foreign digest references).
fn registry_names<'a>(
    detail: &'a ImageDetail,
    pulls: &[(ImageRef, String)],
    remaining: Vec<&'a str>,
    tags: &mut Vec<String>,
) -> Vec<&'a str> {
    let ours_tag = |t: &&str| pulls.iter().any(|(image, _)| names_tag(t, image));
    let ours_digest = |r: &&str| pulls.iter().any(|(image, d)| names_digest(r, image, d));
    let digests: Vec<&str> = detail.repo_digests.iter().map(String::as_str).collect();
    let foreign: Vec<&str> = digests
        .iter()
        .filter(|r| !ours_digest(r))
        .copied()
        .collect();
    if !foreign.is_empty() || remaining.iter().any(|t| !ours_tag(t)) {
        return remaining.into_iter().chain(foreign).collect();
    }
    tags.extend(
        remaining
            .iter()
            .filter(|t| ours_tag(t))
            .map(|t| t.to_string()),
    );
    tags.extend(
        digests
            .iter()
            .filter(|r| ours_digest(r))
            .map(|r| r.to_string()),
    );
    Vec::new()
}

/// Which commits of `repo` the records attribute to some runtime, and which to `rt` (a
/// resolve-head record only counts for `rt` when it is of `rt`'s branch).
fn record_commits<'r>(
    rt: &Runtime,
    repo: &str,
    records: &'r [store::RecordFile],
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
            && (attests(rec) != Some(Attests::BranchHead)
                || rec.branch.as_deref() == Some(rt.branch.as_str()));
        if is_mine {
            mine.insert(c);
        }
    }
    (attributed, mine)
}

/// Why a well-formed record is an orphan, and after which removals; `None` to keep it.
fn record_orphan(
    rec: &store::Record,
    store: &Store,
    present: &BTreeSet<String>,
    images_by_key: &HashMap<&Key, Vec<&String>>,
    removals: &PlannedRemovals,
) -> Option<(String, Vec<usize>)> {
    match attests(rec)? {
        Attests::BranchHead => None,
        Attests::Checkout => checkout_record_orphan(rec, store, removals),
        Attests::Image => build_record_orphan(rec, images_by_key, removals),
        Attests::LatestTag | Attests::PulledImage => image_record_orphan(rec, present, removals),
    }
}

/// What a record stands for, asked of the kind it names; `None` for an unknown kind.
fn attests(rec: &store::Record) -> Option<Attests> {
    steps::by_name(&rec.kind).map(|k| k.attests())
}

/// A clone or verify-dockerfile record is an orphan when its checkout is gone, or after the
/// checkout's removal in this run.
fn checkout_record_orphan(
    rec: &store::Record,
    store: &Store,
    removals: &PlannedRemovals,
) -> Option<(String, Vec<usize>)> {
    let Some(commit) = &rec.commit else {
        return Some(("malformed: no commit".into(), vec![]));
    };
    if !matches!(
        store.checkout_state(&rec.repo, commit),
        CheckoutState::Present(_)
    ) {
        return Some((format!("its checkout of {} is gone", short(commit)), vec![]));
    }
    removals
        .checkouts
        .get(&(rec.repo.clone(), commit.clone()))
        .map(|&i| {
            (
                format!("its checkout of {} is removed", short(commit)),
                vec![i],
            )
        })
}

/// A build record is an orphan when no image carries its key, or after every image that does
/// is deleted in this run.
fn build_record_orphan(
    rec: &store::Record,
    images_by_key: &HashMap<&Key, Vec<&String>>,
    removals: &PlannedRemovals,
) -> Option<(String, Vec<usize>)> {
    let ids = images_by_key.get(&rec.key).cloned().unwrap_or_default();
    if ids.is_empty() {
        return Some(("its image is gone".into(), vec![]));
    }
    let after: Option<Vec<usize>> = ids
        .iter()
        .map(|id| removals.images.get(*id).copied())
        .collect();
    after.map(|a| ("its image is removed".into(), a))
}

/// A tag-latest or pull record is an orphan when the image it names is gone (`present`: the
/// image IDs that exist among those records name), or after that image is deleted in this
/// run.
fn image_record_orphan(
    rec: &store::Record,
    present: &BTreeSet<String>,
    removals: &PlannedRemovals,
) -> Option<(String, Vec<usize>)> {
    let Some(id) = &rec.image_id else {
        return Some(("malformed: no image id".into(), vec![]));
    };
    if !present.contains(id) {
        return Some(("its image is gone".into(), vec![]));
    }
    removals
        .images
        .get(id)
        .map(|&i| ("its image is removed".into(), vec![i]))
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
            ItemKind::Checkout | ItemKind::TempDir | ItemKind::LockFile => {
                off_runtime(store, item.clone(), |store, item| match item.kind {
                    ItemKind::LockFile => remove_lock_file(store, &item),
                    _ => remove_locked(store, &item),
                })
                .await
            }
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

/// Removes an image item's pinned tags by reference, never by force: skipped when a tag now
/// names another image or the engine refuses (in use). Corrects `deletes_image` and `bytes` to
/// what happened.
async fn remove_image(engine: &Engine, item: &mut GcItem) -> ItemStatus {
    let id = item.image_id.clone().unwrap_or_default();
    let mut deleted = false;
    for tag in item.tags.clone() {
        match engine.inspect(&tag).await {
            Ok(None) => continue,
            Ok(Some(info)) if info.id != id => {
                return ItemStatus::Skipped(format!(
                    "{tag} now names another image ({}); left alone",
                    crate::ids::short(&info.id)
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

/// Removes a checkout or temp dir while holding its key lock (skipped when the lock is held).
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

/// Runs filesystem work (directory walks, recursive deletes) on the blocking pool, not on
/// the async runtime's threads.
async fn off_runtime<A: Send + 'static, T: Send + 'static>(
    store: &Store,
    arg: A,
    op: impl FnOnce(&Store, A) -> T + Send + 'static,
) -> T {
    let store = store.clone();
    tokio::task::spawn_blocking(move || op(&store, arg))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Removes a free lock file: takes it, then unlinks it while holding it (skipped when
/// another process holds it by now).
fn remove_lock_file(store: &Store, item: &GcItem) -> ItemStatus {
    let Some(key) = &item.key else {
        return ItemStatus::Skipped("no key".into());
    };
    match store.try_lock(key) {
        Ok(Some(lock)) => match lock.remove_file() {
            Ok(()) => ItemStatus::Removed,
            Err(e) => ItemStatus::Failed(e.to_string()),
        },
        Ok(None) => ItemStatus::Skipped(format!(
            "another planner process holds it (key {})",
            key.short()
        )),
        Err(e) => ItemStatus::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(commit: &str) -> HashMap<String, String> {
        let inputs = steps::build::BuildInputs {
            repo: "https://h.example/tpl".into(),
            commit: commit.into(),
            dockerfile: "Dockerfile".into(),
            platform: "linux/amd64".into(),
            params: Default::default(),
            build_args: Default::default(),
            bases: Default::default(),
            builder: String::new(),
        };
        HashMap::from([
            (
                eng::LABEL_KEY.into(),
                steps::build::key(&inputs).to_string(),
            ),
            (eng::LABEL_REPO.into(), inputs.repo.clone()),
            (eng::LABEL_REVISION.into(), commit.into()),
            (eng::LABEL_DOCKERFILE.into(), inputs.dockerfile.clone()),
            (eng::LABEL_PLATFORM.into(), inputs.platform.clone()),
            (eng::LABEL_PARAMS.into(), "{}".into()),
        ])
    }

    #[test]
    fn images_with_build_args_labels_are_planners_too() {
        let c = "a".repeat(40);
        let mut l = labels(&c);
        let args: crate::config::BuildArgs = [("RUNTIME_VERSION".into(), "1.4.2".into())].into();
        let mut inputs = steps::build::inputs_from_labels(&l);
        inputs.build_args = args.clone();
        l.insert(
            eng::LABEL_KEY.into(),
            steps::build::key(&inputs).to_string(),
        );
        l.insert(
            eng::LABEL_BUILD_ARGS.into(),
            crate::config::build_args_label(&args),
        );
        assert!(own_labels(&l).is_some(), "with its build args label");
        let mut edited = l.clone();
        edited.insert(
            eng::LABEL_BUILD_ARGS.into(),
            r#"{"RUNTIME_VERSION":"9"}"#.into(),
        );
        assert!(own_labels(&edited).is_none(), "an edited build args label");
        let mut garbled = l.clone();
        garbled.insert(eng::LABEL_BUILD_ARGS.into(), "{not json".into());
        assert!(own_labels(&garbled).is_none(), "an unreadable label");
        l.remove(eng::LABEL_BUILD_ARGS);
        assert!(own_labels(&l).is_none(), "its build args label removed");
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
    fn gc_removes_free_lock_files_never_a_held_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let free = steps::clone::key("r", &"a".repeat(40));
        let busy = steps::clone::key("r", &"b".repeat(40));
        drop(store.try_lock(&free).unwrap().unwrap());
        let held = store.try_lock(&busy).unwrap().unwrap();
        std::fs::write(dir.path().join("locks/run.lock"), b"").unwrap();
        let items = lock_file_items(&store).unwrap();
        assert_eq!(items.len(), 1, "only the free one: {items:?}");
        assert_eq!(items[0].key.as_ref(), Some(&free));
        assert_eq!(remove_lock_file(&store, &items[0]), ItemStatus::Removed);
        assert!(!store.lock_file_path(&free).exists());
        // Taken by another process between the plan and the removal: left alone.
        let late = GcItem {
            key: Some(busy.clone()),
            path: Some(store.lock_file_path(&busy)),
            ..new_item(ItemKind::LockFile, String::new(), ItemStatus::Planned)
        };
        assert!(matches!(
            remove_lock_file(&store, &late),
            ItemStatus::Skipped(_)
        ));
        assert!(
            store.lock_file_path(&busy).exists(),
            "a held lock file stays"
        );
        assert!(
            dir.path().join("locks/run.lock").exists(),
            "the run lock is not collected"
        );
        drop(held);
    }

    fn registry_runtime(name: &str, image: &str) -> Runtime {
        Runtime {
            name: name.into(),
            source: crate::config::Source::Registry(crate::config::RegistrySource {
                image: ImageRef::parse(image).unwrap(),
            }),
            repo: url::Url::parse("https://git.invalid/x").unwrap(),
            branch: "main".into(),
            dockerfile: "Dockerfile".into(),
            platform: "linux/amd64".into(),
            image_prefix: "p/".into(),
            plan: "registry-pull".into(),
            build_args: Default::default(),
            base_images: Default::default(),
            builder: Default::default(),
            build_network: Default::default(),
        }
    }

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn pull_record(rt: &Runtime, digest: &str, id: &str, at: u64) -> store::RecordFile {
        let image = rt.registry_image().unwrap();
        let record = store::Record {
            schema: store::RECORD_SCHEMA,
            kind: "pull".into(),
            key: steps::pull::key(image, digest),
            runtimes: vec![rt.name.clone()],
            repo: rt.repo_identity(),
            branch: None,
            commit: None,
            digest: Some(digest.into()),
            dockerfile_blake3: None,
            image_id: Some(id.into()),
            checkout_id: None,
            finished_at: at,
        };
        store::RecordFile {
            path: PathBuf::from("r.json"),
            bytes: 1,
            name_key: Some(record.key.clone()),
            record: Some(record),
        }
    }

    #[test]
    fn the_engines_short_names_match_the_registry_image() {
        let hub = ImageRef::parse("ubuntu").unwrap();
        let d = digest('a');
        assert!(names_digest(&format!("ubuntu@{d}"), &hub, &d));
        assert!(names_digest(
            &format!("docker.io/library/ubuntu@{d}"),
            &hub,
            &d
        ));
        assert!(!names_digest(&format!("ubuntu@{}", digest('b')), &hub, &d));
        assert!(!names_digest(&format!("debian@{d}"), &hub, &d));
        assert!(!names_digest("ubuntu:latest", &hub, &d));
        assert!(names_tag("ubuntu:latest", &hub) && names_tag("ubuntu", &hub));
        assert!(!names_tag("ubuntu:22.04", &hub));
        let local = ImageRef::parse("127.0.0.1:5000/t/alpha:latest").unwrap();
        assert!(names_digest(
            &format!("127.0.0.1:5000/t/alpha@{d}"),
            &local,
            &d
        ));
        assert!(!names_digest(
            &format!("127.0.0.1:5001/t/alpha@{d}"),
            &local,
            &d
        ));
        assert!(!names_tag("p/alpha:aaaaaaaaaaaa", &local));
    }

    #[test]
    fn only_valid_pull_records_of_the_runtime_claim_a_digest() {
        let rt = registry_runtime("alpha", "127.0.0.1:5000/t/alpha:latest");
        let other = registry_runtime("beta", "127.0.0.1:5000/t/beta:latest");
        let id = digest('9');
        let image = rt.registry_image().unwrap();
        let mut wrong_kind = pull_record(&rt, &digest('b'), &id, 1);
        wrong_kind.record.as_mut().unwrap().kind = "tag-latest".into();
        let mut wrong_key = pull_record(&rt, &digest('c'), &id, 1);
        wrong_key.record.as_mut().unwrap().key = steps::pull::key(image, &digest('d'));
        let mut no_id = pull_record(&rt, &digest('e'), &id, 1);
        no_id.record.as_mut().unwrap().image_id = None;
        let mut other_repo = pull_record(&rt, &digest('f'), &id, 1);
        other_repo.record.as_mut().unwrap().repo = "127.0.0.1:5000/t/beta".into();
        let malformed = store::RecordFile {
            record: None,
            ..pull_record(&rt, &digest('1'), &id, 1)
        };
        let records = vec![
            pull_record(&rt, &digest('a'), &id, 1),
            wrong_kind,
            wrong_key,
            no_id,
            other_repo,
            malformed,
            pull_record(&other, &digest('2'), &id, 1),
        ];
        let claims = pull_claims(&rt, image, &records);
        assert_eq!(claims.into_iter().collect::<Vec<_>>(), [(digest('a'), id)]);
    }

    #[test]
    fn a_digest_is_as_new_as_the_runtimes_newest_record_of_it() {
        let rt = registry_runtime("alpha", "127.0.0.1:5000/t/alpha:latest");
        let other = registry_runtime("beta", "127.0.0.1:5000/t/alpha:latest");
        let (a, id) = (digest('a'), digest('9'));
        let mut resolve = pull_record(&rt, &a, &id, 50);
        resolve.record.as_mut().unwrap().kind = "resolve-digest".into();
        let records = vec![
            pull_record(&rt, &a, &id, 10),
            resolve,
            pull_record(&other, &a, &id, 99),
            pull_record(&rt, &digest('b'), &id, 70),
        ];
        assert_eq!(records_seen(&rt, &a, &records), 50 * NANOS);
        assert_eq!(records_seen(&rt, &digest('c'), &records), 0);
    }

    #[test]
    fn registry_names_go_only_with_the_image() {
        let image = ImageRef::parse("127.0.0.1:5000/t/alpha:latest").unwrap();
        let d = digest('a');
        let pulls = vec![(image.clone(), d.clone())];
        let ours = format!("127.0.0.1:5000/t/alpha@{d}");
        let detail = |tags: &[&str], digests: &[&str]| ImageDetail {
            entry: ImageEntry {
                id: digest('9'),
                repo_tags: tags.iter().map(|t| t.to_string()).collect(),
                ..Default::default()
            },
            repo_digests: digests.iter().map(|t| t.to_string()).collect(),
            created_nanos: None,
        };
        let reference = "127.0.0.1:5000/t/alpha:latest";
        // Only the registry's names left: they go, the reference tag before the digest.
        let d1 = detail(&["p/alpha:aaaaaaaaaaaa", reference], &[&ours]);
        let mut tags = vec!["p/alpha:aaaaaaaaaaaa".to_owned()];
        assert!(registry_names(&d1, &pulls, vec![reference], &mut tags).is_empty());
        assert_eq!(tags, ["p/alpha:aaaaaaaaaaaa", reference, ours.as_str()]);
        // Someone else's tag keeps the image: the registry's names stay with it.
        let d2 = detail(&["p/alpha:aaaaaaaaaaaa", "mine:1", reference], &[&ours]);
        let mut tags = vec!["p/alpha:aaaaaaaaaaaa".to_owned()];
        let left = registry_names(&d2, &pulls, vec!["mine:1", reference], &mut tags);
        assert_eq!(left, ["mine:1", reference]);
        assert_eq!(tags, ["p/alpha:aaaaaaaaaaaa"]);
        // So does a digest reference from another repository.
        let foreign = format!("127.0.0.1:5000/mirror/alpha@{d}");
        let d3 = detail(&["p/alpha:aaaaaaaaaaaa"], &[&ours, &foreign]);
        let mut tags = vec!["p/alpha:aaaaaaaaaaaa".to_owned()];
        assert_eq!(
            registry_names(&d3, &pulls, vec![], &mut tags),
            [foreign.as_str()]
        );
        assert_eq!(tags.len(), 1);
    }

    #[test]
    fn a_pull_or_tag_latest_record_goes_with_the_image_it_names() {
        let rt = registry_runtime("alpha", "127.0.0.1:5000/t/alpha:latest");
        let (kept, gone, removed) = (digest('1'), digest('2'), digest('3'));
        let present = BTreeSet::from([kept.clone(), removed.clone()]);
        let removals = PlannedRemovals {
            images: HashMap::from([(removed.clone(), 4)]),
            checkouts: HashMap::new(),
        };
        let orphan = |id: &str, kind: &str| {
            let mut file = pull_record(&rt, &digest('a'), id, 1);
            file.record.as_mut().unwrap().kind = kind.into();
            image_record_orphan(file.record.as_ref().unwrap(), &present, &removals)
        };
        for kind in ["pull", "tag-latest"] {
            assert_eq!(orphan(&kept, kind), None, "{kind}");
            assert_eq!(
                orphan(&gone, kind),
                Some(("its image is gone".into(), vec![]))
            );
            assert_eq!(
                orphan(&removed, kind),
                Some(("its image is removed".into(), vec![4]))
            );
        }
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
            digest: None,
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
