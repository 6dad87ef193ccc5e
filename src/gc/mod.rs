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
//!
//! This module holds what gc reports (its items and plan) and the two entry points;
//! [`survey`] what the engine and the cache dir hold and which of it is planner's,
//! [`policy`] what to keep and what to remove, [`removal`] the removals.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Runtime;
use crate::docker::DockerError;
use crate::docker::engine::Engine;
use crate::key::Key;
use crate::store::{Store, StoreError};

mod policy;
mod removal;
mod survey;

use policy::Planner;
pub use removal::execute;
use survey::by_repo;

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
    pub outcome: Result<crate::docker::BuildCacheUsage, String>,
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

/// An item of `kind` with only its reason and status; the caller fills in the rest.
pub(super) fn new_item(kind: ItemKind, reason: String, status: ItemStatus) -> GcItem {
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

/// Runs filesystem work (directory walks, recursive deletes) on the blocking pool, not on
/// the async runtime's threads.
pub(super) async fn off_runtime<A: Send + 'static, T: Send + 'static>(
    store: &Store,
    arg: A,
    op: impl FnOnce(&Store, A) -> T + Send + 'static,
) -> T {
    let store = store.clone();
    tokio::task::spawn_blocking(move || op(&store, arg))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

#[cfg(test)]
mod tests;
