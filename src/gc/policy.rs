//! What gc keeps and what it removes: per runtime the newest commits (or pulled digests) and
//! whatever `:latest` names; the pinned tags, checkouts, temp dirs, records and lock files
//! that go, each as an item with its reason (see the module doc of [`super`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::config::Runtime;
use crate::docker::DockerError;
use crate::docker::engine::Engine;
use crate::docker::images::{ImageDetail, ImageEntry};
use crate::ids::short;
use crate::key::Key;
use crate::registry::ImageRef;
use crate::steps::record::{RecordFileView as RecordFile, RecordView as Record};
use crate::steps::{self, Attests};
use crate::store::{self, CheckoutDir, CheckoutState, Store, StoreError};

use super::survey::*;
use super::{GcError, GcItem, GcPlan, ItemKind, ItemStatus, KeptCommit, new_item, off_runtime};

/// The pinned tags gc removes from one image, the runtimes they belong to, and their commit.
#[derive(Debug, Default)]
pub(super) struct Untag {
    pub(super) tags: BTreeSet<String>,
    pub(super) runtimes: BTreeSet<String>,
    pub(super) commit: String,
    /// A pulled image: the registry images and digests it was pulled as.
    pub(super) pulls: Vec<(ImageRef, String)>,
}

/// A registry runtime's pulled digest whose image the engine proves (see the module doc).
#[derive(Debug)]
pub(super) struct PulledDigest {
    pub(super) id: String,
    pub(super) pinned: String,
    /// Newest `finished_at` of the runtime's records of the digest, ns.
    pub(super) seen: i128,
    /// The engine's creation time of the image, ns (tie-break only).
    pub(super) created: i128,
}

/// The state [`plan`] builds up: what the engine and the cache dir hold, and the decisions
/// made so far.
pub(super) struct Planner<'a> {
    pub(super) engine: &'a Engine,
    pub(super) store: &'a Store,
    pub(super) keep: usize,
    pub(super) own: BTreeMap<String, OwnImage>,
    /// Pulled images proven planner's, by ID.
    pub(super) pulled: BTreeMap<String, ImageDetail>,
    /// IDs of the images that exist among those records name (planner's own, and those
    /// registry records name).
    pub(super) present: BTreeSet<String>,
    /// Image ID -> names of the containers using it.
    pub(super) containers: HashMap<String, Vec<String>>,
    pub(super) records: Vec<RecordFile>,
    pub(super) kept: Vec<KeptCommit>,
    /// Image ID -> what gc removes from it.
    pub(super) untag: BTreeMap<String, Untag>,
    /// Checkout items, in repository order.
    pub(super) checkouts: Vec<GcItem>,
}

impl<'a> Planner<'a> {
    /// Lists planner's images, the containers using images, and the records.
    pub(super) async fn survey(
        engine: &'a Engine,
        store: &'a Store,
        runtimes: &[Arc<Runtime>],
        keep: usize,
    ) -> Result<Self, GcError> {
        let own = own_images(engine, runtimes).await?;
        let containers = engine.containers_by_image().await?;
        let records = steps::record::list(store, steps::kinds())?;
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
    pub(super) async fn plan_repo(
        &mut self,
        repo: &str,
        group: &[Arc<Runtime>],
    ) -> Result<(), GcError> {
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
    pub(super) async fn plan_runtime(
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
    pub(super) fn untag_commit(
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
    pub(super) async fn plan_pulled(&mut self, rt: &Runtime) -> Result<(), GcError> {
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
    pub(super) async fn pulled_digests(
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
    pub(super) async fn into_plan(mut self) -> Result<GcPlan, GcError> {
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
    pub(super) async fn image_items(&mut self) -> Result<Vec<GcItem>, DockerError> {
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
    pub(super) fn entry(&self, id: &str) -> &ImageEntry {
        match self.own.get(id) {
            Some(img) => &img.entry,
            None => &self.pulled[id].entry,
        }
    }

    /// The item removing `u.tags` from image `id`: it deletes the image when no other tag is
    /// left (then a container using it makes it skipped), otherwise it frees nothing. For a
    /// pulled image that goes, the registry's names of it go too (see the module doc).
    pub(super) fn image_item(
        &self,
        id: String,
        u: Untag,
        unique_sizes: &HashMap<String, u64>,
    ) -> GcItem {
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
    pub(super) fn record_items(
        &self,
        records: Vec<RecordFile>,
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
pub(super) fn newest_first(
    commits: &BTreeMap<String, CommitArtifacts>,
) -> Vec<(&String, &CommitArtifacts)> {
    let mut ranked: Vec<(&String, &CommitArtifacts)> = commits.iter().collect();
    ranked.sort_by(|a, b| b.1.seen.cmp(&a.1.seen).then(b.0.cmp(a.0)));
    ranked
}

/// What gc keeps of `commit` for `rt`, and why (`newest` rank, `:latest`).
pub(super) fn kept_commit(
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

/// The item removing checkout `co` of `repo` (shared by the runtimes `names`); skipped while
/// another process holds its clone key's lock.
pub(super) fn checkout_item(
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
pub(super) fn temp_dir_items(store: &Store) -> Result<Vec<GcItem>, StoreError> {
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
pub(super) fn lock_file_items(store: &Store) -> Result<Vec<GcItem>, StoreError> {
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
pub(super) fn record_item(file: RecordFile, reason: String, after: Vec<usize>) -> GcItem {
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
pub(super) struct PlannedRemovals {
    pub(super) images: HashMap<String, usize>,
    pub(super) checkouts: HashMap<(String, String), usize>,
}

impl PlannedRemovals {
    /// From the image items and the checkout items that follow them.
    pub(super) fn new(images: &[GcItem], checkouts: &[GcItem]) -> Self {
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

/// For a pulled image whose pinned tags go: when nothing but the registry's names of it
/// (`pulls`) would be left, appends those to `tags` (the registry reference tag, then the
/// digest references, in the engine's spelling) and returns no remaining names; otherwise
/// returns every name that keeps the image (`remaining` tags, foreign digest references).
pub(super) fn registry_names<'a>(
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

/// Why a well-formed record is an orphan, and after which removals; `None` to keep it.
pub(super) fn record_orphan(
    rec: &Record,
    store: &Store,
    present: &BTreeSet<String>,
    images_by_key: &HashMap<&Key, Vec<&String>>,
    removals: &PlannedRemovals,
) -> Option<(String, Vec<usize>)> {
    match attests(rec)? {
        Attests::RootAnswer => None,
        Attests::Checkout => checkout_record_orphan(rec, store, removals),
        Attests::KeyedImage => build_record_orphan(rec, images_by_key, removals),
        Attests::NamedImage | Attests::PulledImage => image_record_orphan(rec, present, removals),
    }
}

/// A clone or verify-dockerfile record is an orphan when its checkout is gone, or after the
/// checkout's removal in this run.
pub(super) fn checkout_record_orphan(
    rec: &Record,
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
pub(super) fn build_record_orphan(
    rec: &Record,
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
pub(super) fn image_record_orphan(
    rec: &Record,
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
