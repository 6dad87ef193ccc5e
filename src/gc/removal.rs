//! Carrying out a gc plan: each planned item removed in order, never by force, each under
//! its key's lock; what happened recorded on the item.

use crate::docker::engine::Engine;
use crate::docker::images::RemoveOutcome;
use crate::store::Store;

use super::{GcItem, GcPlan, ItemKind, ItemStatus, off_runtime};

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
pub(super) async fn remove_image(engine: &Engine, item: &mut GcItem) -> ItemStatus {
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
pub(super) fn remove_locked(store: &Store, item: &GcItem) -> ItemStatus {
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

/// Removes a free lock file: takes it, then unlinks it while holding it (skipped when
/// another process holds it by now).
pub(super) fn remove_lock_file(store: &Store, item: &GcItem) -> ItemStatus {
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
