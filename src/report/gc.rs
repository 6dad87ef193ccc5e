//! `planner gc` rendered: what is kept and why, what is (or would be) removed, the total; as
//! a table, one JSON object, or (with `-q`) only the failures.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use super::human_bytes;
use super::table::Table;
use crate::gc::{self, GcItem, GcPlan, ItemKind, ItemStatus, KeptCommit};
use crate::gc_remote::{RemoteEntry, RemoteGc};
use crate::ids::short;

/// The gc report: what is kept and why, what is (or would be) removed, and the total.
pub fn text(plan: &GcPlan, cache_dir: &Path, verbose: bool) -> String {
    let mut table = Table::new(&["ACTION", "RUNTIME", "WHAT", "TARGET", "SIZE", "WHY"]);
    for k in &plan.kept {
        table.row(kept_row(k, plan.keep));
    }
    // Records are many and alike: one line for the plain removals unless verbose.
    let mut records = RecordsRow::default();
    let mut locks = RecordsRow::default();
    for item in &plan.items {
        let summed = !verbose && matches!(item.status, ItemStatus::Planned | ItemStatus::Removed);
        match item.kind {
            ItemKind::Record if summed => records.add(item),
            ItemKind::LockFile if summed => locks.add(item),
            _ => table.row(item_row(item, cache_dir)),
        }
    }
    table.extend(records.into_row(plan.dry_run));
    table.extend(locks.into_lock_row(plan.dry_run));
    let mut out = format!(
        "gc in {}: keeping the newest {} {} of each runtime and what :latest names\n",
        cache_dir.display(),
        plan.keep,
        if plan.keep == 1 {
            "commit or digest"
        } else {
            "commits or digests"
        }
    );
    if !table.is_empty() {
        out.push_str(&table.render());
    }
    out.push_str(&totals(plan));
    out
}

/// One line per item whose removal failed (what `-q` prints, on stderr).
pub fn failures(plan: &GcPlan) -> String {
    let mut out = String::new();
    for item in &plan.items {
        if let ItemStatus::Failed(why) = &item.status {
            let _ = writeln!(
                out,
                "planner: gc: removing {} {} failed: {why}",
                item.kind.name(),
                item.target()
            );
        }
    }
    out
}
/// `path` relative to the cache dir when it is inside it.
fn show_path(path: &Path, cache_dir: &Path) -> String {
    path.strip_prefix(cache_dir)
        .map_or_else(|_| path.display().to_string(), |p| p.display().to_string())
}

/// The ACTION cell of an item: `remove`, `removed`, `skip` or `FAILED`.
fn action(item: &GcItem) -> &'static str {
    match item.status {
        ItemStatus::Planned => "remove",
        ItemStatus::Removed => "removed",
        ItemStatus::Skipped(_) => "skip",
        ItemStatus::Failed(_) => "FAILED",
    }
}

/// The WHY cell of an item: why it was skipped or failed, else why it is garbage.
fn why(item: &GcItem) -> String {
    match &item.status {
        ItemStatus::Skipped(w) | ItemStatus::Failed(w) => w.clone(),
        _ => item.reason.clone(),
    }
}

/// The RUNTIME cell: the names joined with commas, or `-`.
fn runtimes_cell(names: &[String]) -> String {
    if names.is_empty() {
        "-".into()
    } else {
        names.join(",")
    }
}

/// The TARGET cell: an image's tags and short ID, or a path relative to the cache dir.
fn target(item: &GcItem, cache_dir: &Path) -> String {
    match (&item.path, item.kind) {
        (_, ItemKind::Image) => {
            let id = item.image_id.as_deref().map(short).unwrap_or_default();
            let tags: Vec<String> = item.tags.iter().map(|t| short_reference(t)).collect();
            format!("{} ({id})", crate::text::list(&tags, crate::text::LIST_MAX))
        }
        (Some(p), _) => show_path(p, cache_dir),
        (None, _) => String::new(),
    }
}

/// A reference for the table: a digest reference (`name@sha256:…`) with its digest cut to
/// 12 hex digits and `…`; a tag as it is.
fn short_reference(reference: &str) -> String {
    match reference.split_once('@') {
        Some((name, digest)) => format!("{name}@sha256:{}…", short(digest)),
        None => reference.to_owned(),
    }
}

/// A kept commit's row: `keep`, and why (among the newest `keep`, named by `:latest`).
fn kept_row(k: &KeptCommit, keep: usize) -> Vec<String> {
    let mut why = Vec::new();
    if let Some(n) = k.newest {
        why.push(format!("newest {n} of {keep}"));
    }
    if k.latest {
        why.push(":latest".into());
    }
    let what = if crate::ids::is_manifest_digest(&k.commit) {
        "digest"
    } else {
        "commit"
    };
    vec![
        "keep".into(),
        k.runtime.clone(),
        what.into(),
        short(&k.commit).into(),
        "-".into(),
        why.join("; "),
    ]
}

/// An item's row: what happens to it, what it is, its size and why.
fn item_row(item: &GcItem, cache_dir: &Path) -> Vec<String> {
    vec![
        action(item).into(),
        runtimes_cell(&item.runtimes),
        item.kind.name().into(),
        target(item, cache_dir),
        human_bytes(item.bytes),
        why(item),
    ]
}

/// The record removals the gc table sums up in one row: how many, their size, and their
/// runtimes in first-seen order.
#[derive(Default)]
struct RecordsRow {
    files: usize,
    bytes: u64,
    runtimes: Vec<String>,
}

impl RecordsRow {
    /// Counts one record removal.
    fn add(&mut self, item: &GcItem) {
        self.files += 1;
        self.bytes += item.bytes;
        for r in &item.runtimes {
            if !self.runtimes.contains(r) {
                self.runtimes.push(r.clone());
            }
        }
    }

    /// The summary row (runtimes sorted), when some record was counted.
    fn into_row(mut self, dry_run: bool) -> Option<Vec<String>> {
        if self.files == 0 {
            return None;
        }
        self.runtimes.sort();
        Some(vec![
            if dry_run { "remove" } else { "removed" }.into(),
            runtimes_cell(&self.runtimes),
            "records".into(),
            format!("records/ ({} files)", self.files),
            human_bytes(self.bytes),
            "orphans: malformed, or their checkout or image is gone (-v lists them)".into(),
        ])
    }
}

impl RecordsRow {
    /// The summary row of free lock files, when some was counted.
    fn into_lock_row(self, dry_run: bool) -> Option<Vec<String>> {
        (self.files > 0).then(|| {
            vec![
                if dry_run { "remove" } else { "removed" }.into(),
                "-".into(),
                "lock-files".into(),
                format!("locks/ ({} files)", self.files),
                human_bytes(self.bytes),
                "no process holds them (-v lists them)".into(),
            ]
        })
    }
}

/// The last line of the gc report: bytes freed, what was removed by kind, skips, failures,
/// and whether it was a dry run.
fn totals(plan: &GcPlan) -> String {
    let counts = [
        (ItemKind::Image, "image"),
        (ItemKind::Checkout, "checkout"),
        (ItemKind::TempDir, "temp dir"),
        (ItemKind::Record, "record"),
        (ItemKind::LockFile, "lock file"),
    ]
    .iter()
    .map(|(k, name)| {
        let n = plan.count(*k);
        format!("{n} {name}{}", if n == 1 { "" } else { "s" })
    })
    .collect::<Vec<_>>()
    .join(", ");
    let mut out = format!(
        "{} {} ({counts})",
        if plan.dry_run { "would free" } else { "freed" },
        human_bytes(plan.freed_bytes())
    );
    if plan.skipped() > 0 {
        let _ = write!(out, "; {} skipped", plan.skipped());
    }
    if plan.failed() > 0 {
        let _ = write!(out, "; {} FAILED", plan.failed());
    }
    out.push_str(if plan.dry_run {
        "; dry run, nothing removed\n"
    } else {
        "\n"
    });
    out
}

/// The `gc --build-cache` line: what was (or would be) pruned, or why it failed.
pub fn build_cache_text(cache: &gc::BuildCachePrune) -> String {
    let scope = match cache.older_than {
        Some(d) => format!(
            "entries last used over {} ago",
            humantime::format_duration(d)
        ),
        None => "every unused entry".to_owned(),
    };
    match &cache.outcome {
        Ok(u) if cache.dry_run => format!(
            "build cache: would free {} ({} {}, {scope}); dry run, nothing removed\n",
            human_bytes(u.bytes),
            u.entries,
            plural(u.entries, "entry", "entries")
        ),
        Ok(u) => format!(
            "build cache: freed {} ({} {}, {scope})\n",
            human_bytes(u.bytes),
            u.entries,
            plural(u.entries, "entry", "entries")
        ),
        Err(_) => build_cache_failure(cache),
    }
}

/// The `gc --build-cache` failure line (empty when it did not fail).
pub fn build_cache_failure(cache: &gc::BuildCachePrune) -> String {
    match &cache.outcome {
        Err(why) => format!(
            "planner: gc: pruning the build cache failed: {why}\n  help: check the engine (`docker system df`), then run `planner gc --build-cache` again\n"
        ),
        Ok(_) => String::new(),
    }
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// The gc report as one JSON object.
pub fn json(plan: &GcPlan, cache_dir: &Path) -> String {
    json_with_build_cache(plan, None, cache_dir)
}

/// The gc report as one JSON object, with `build_cache` when `gc --build-cache` ran.
pub fn json_with_build_cache(
    plan: &GcPlan,
    cache: Option<&gc::BuildCachePrune>,
    cache_dir: &Path,
) -> String {
    json_with(plan, cache, None, cache_dir)
}

/// The gc report as one JSON object, with `build_cache` and `remote` when those ran.
pub fn json_with(
    plan: &GcPlan,
    cache: Option<&gc::BuildCachePrune>,
    remote: Option<&RemoteGc>,
    cache_dir: &Path,
) -> String {
    let kept: Vec<_> = plan.kept.iter().map(kept_json).collect();
    let items: Vec<_> = plan.items.iter().map(item_json).collect();
    let doc = json!({
        "schema_version": gc::GC_SCHEMA,
        "dry_run": plan.dry_run,
        "keep": plan.keep,
        "cache_dir": cache_dir,
        "kept": kept,
        "items": items,
        "freed_bytes": plan.freed_bytes(),
        "removed": {
            "images": plan.count(ItemKind::Image),
            "checkouts": plan.count(ItemKind::Checkout),
            "temp_dirs": plan.count(ItemKind::TempDir),
            "records": plan.count(ItemKind::Record),
            "lock_files": plan.count(ItemKind::LockFile),
        },
        "skipped": plan.skipped(),
        "failed": plan.failed(),
    });
    let mut doc = doc;
    if let (Some(cache), serde_json::Value::Object(o)) = (cache, &mut doc) {
        o.insert("build_cache".into(), build_cache_json(cache));
    }
    if let (Some(remote), serde_json::Value::Object(o)) = (remote, &mut doc) {
        o.insert("remote".into(), remote_json(remote));
    }
    serde_json::to_string_pretty(&doc).expect("gc report serializes")
}

/// The `gc --remote` lines: each entry removed (or that would be) and each runtime left
/// alone, then a summary.
pub fn remote_text(remote: &RemoteGc, verbose: bool) -> String {
    let mut out = String::new();
    for i in &remote.items {
        let verb = match (&i.status, remote.dry_run) {
            (ItemStatus::Planned, _) => "would remove".to_owned(),
            (ItemStatus::Removed, _) => "removed".to_owned(),
            (ItemStatus::Skipped(why), _) => format!("skipped ({why})"),
            (ItemStatus::Failed(_), _) => "FAILED".to_owned(),
        };
        out.push_str(&format!(
            "remote: {verb} {}@{} ({})\n",
            i.reference, i.digest, i.reason
        ));
    }
    // An entry kept only because a kept tag names its digest is always said.
    for k in remote
        .kept
        .iter()
        .filter(|k| verbose || k.also_named_by.is_some())
    {
        out.push_str(&format!("remote: keep {} ({})\n", k.reference, k.reason));
    }
    out.push_str(&remote_failures(remote));
    let done = match remote.dry_run {
        true => "would remove",
        false => "removed",
    };
    let n = remote.removed();
    out.push_str(&format!(
        "shared cache {}: {done} {n} {}, kept {}{}\n",
        remote.registry,
        plural(n, "entry", "entries"),
        remote.kept.len(),
        if remote.dry_run {
            "; dry run, nothing removed"
        } else {
            ""
        }
    ));
    out
}

/// The `gc --remote` failures, one error each (empty when none failed).
pub fn remote_failures(remote: &RemoteGc) -> String {
    let mut out = String::new();
    for i in &remote.items {
        if let ItemStatus::Failed(why) = &i.status {
            out.push_str(&format!(
                "planner: gc --remote: cannot remove {}@{}: {why}\n",
                i.reference, i.digest
            ));
        }
    }
    for e in &remote.errors {
        out.push_str(&format!(
            "planner: gc --remote: {e}\n  help: check [cache] registry in runtimes.toml and access to it (`docker login`), then run `planner gc --remote` again\n"
        ));
    }
    out
}

/// `gc --remote` in the gc report's JSON.
fn remote_json(remote: &RemoteGc) -> serde_json::Value {
    let entry = |e: &RemoteEntry| {
        let detail = match &e.status {
            ItemStatus::Failed(w) => Some(w.clone()),
            ItemStatus::Skipped(w) if remote.items.contains(e) => Some(w.clone()),
            _ => None,
        };
        json!({
            "runtime": e.runtime,
            "reference": e.reference,
            "digest": e.digest,
            "created": e.created,
            "reason": e.reason,
            "status": e.status.name(),
            "detail": detail,
        })
    };
    json!({
        "registry": remote.registry,
        "keep": remote.keep,
        "kept": remote.kept.iter().map(|k| {
            let mut v = entry(k);
            v["status"] = "kept".into();
            v
        }).collect::<Vec<_>>(),
        "items": remote.items.iter().map(entry).collect::<Vec<_>>(),
        "removed": remote.removed(),
        "failed": remote.failed(),
        "errors": remote.errors,
    })
}

/// `gc --build-cache` in the gc report's JSON.
fn build_cache_json(cache: &gc::BuildCachePrune) -> serde_json::Value {
    let (entries, bytes, error) = match &cache.outcome {
        Ok(u) => (Some(u.entries), Some(u.bytes), None),
        Err(why) => (None, None, Some(why)),
    };
    json!({
        "older_than_secs": cache.older_than.map(|d| d.as_secs()),
        "entries": entries,
        "freed_bytes": bytes,
        "error": error,
    })
}

/// A kept commit (or, for a registry runtime, digest) in the gc report's JSON.
fn kept_json(k: &KeptCommit) -> serde_json::Value {
    let digest = crate::ids::is_manifest_digest(&k.commit);
    json!({
        "runtime": k.runtime,
        "commit": (!digest).then_some(&k.commit),
        "digest": digest.then_some(&k.commit),
        "newest": k.newest,
        "latest": k.latest,
        "image": k.image,
        "checkout": k.checkout,
    })
}

/// An item in the gc report's JSON; `detail` says why it was skipped or failed.
fn item_json(i: &GcItem) -> serde_json::Value {
    let detail = match &i.status {
        ItemStatus::Skipped(w) | ItemStatus::Failed(w) => Some(w.clone()),
        _ => None,
    };
    json!({
        "kind": i.kind.name(),
        "runtimes": i.runtimes,
        "target": i.target(),
        "tags": i.tags,
        "image_id": i.image_id,
        "path": i.path,
        "commit": i.commit,
        "digest": i.digest,
        "bytes": i.bytes,
        "deletes_image": (i.kind == ItemKind::Image).then_some(i.deletes_image),
        "reason": i.reason,
        "status": i.status.name(),
        "detail": detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gc_plan(dry_run: bool) -> crate::gc::GcPlan {
        use crate::gc::*;
        let item =
            |kind, runtimes: &[&str], path: Option<&str>, bytes, status, reason: &str| GcItem {
                kind,
                runtimes: runtimes.iter().map(|s| s.to_string()).collect(),
                tags: if kind == ItemKind::Image {
                    vec!["p/alpha:0c8c5e148e6c".into()]
                } else {
                    vec![]
                },
                image_id: (kind == ItemKind::Image).then(|| format!("sha256:{}", "9".repeat(64))),
                path: path.map(Into::into),
                commit: None,
                digest: None,
                repo: None,
                key: None,
                bytes,
                deletes_image: true,
                reason: reason.into(),
                status,
                after: vec![],
            };
        let ok = if dry_run {
            ItemStatus::Planned
        } else {
            ItemStatus::Removed
        };
        GcPlan {
            keep: 1,
            dry_run,
            kept: vec![KeptCommit {
                runtime: "alpha".into(),
                commit: "a".repeat(40),
                newest: Some(1),
                latest: true,
                image: None,
                checkout: None,
            }],
            items: vec![
                item(
                    ItemKind::Image,
                    &["alpha"],
                    None,
                    107,
                    ok.clone(),
                    "commit 0c8c5e148e6c is not kept",
                ),
                item(
                    ItemKind::Checkout,
                    &["alpha", "beta"],
                    Some("/c/checkouts/tpl/0c8c"),
                    188416,
                    ok.clone(),
                    "commit 0c8c5e148e6c is not kept",
                ),
                item(
                    ItemKind::TempDir,
                    &[],
                    Some("/c/tmp/x.live"),
                    4096,
                    ItemStatus::Skipped("a planner process is working in it".into()),
                    "left",
                ),
                item(
                    ItemKind::TempDir,
                    &[],
                    Some("/elsewhere/y"),
                    5 * 1024 * 1024,
                    ItemStatus::Failed("permission denied".into()),
                    "left",
                ),
                item(
                    ItemKind::Record,
                    &["beta"],
                    Some("/c/records/r1"),
                    4096,
                    ok.clone(),
                    "orphan",
                ),
                item(
                    ItemKind::Record,
                    &["alpha"],
                    Some("/c/records/r2"),
                    4096,
                    ok.clone(),
                    "orphan",
                ),
                item(
                    ItemKind::LockFile,
                    &[],
                    Some("/c/locks/l1"),
                    0,
                    ok.clone(),
                    "free",
                ),
            ],
        }
    }

    #[test]
    fn text_is_byte_identical_to_the_captured_layout() {
        let mut out = String::new();
        for (dry_run, verbose) in [(true, false), (false, false), (true, true)] {
            out += &text(&gc_plan(dry_run), Path::new("/c"), verbose);
        }
        let mut empty = gc_plan(true);
        empty.items.clear();
        empty.kept.clear();
        out += &text(&empty, Path::new("/c"), false);
        assert_eq!(out, include_str!("testdata/gc.txt"));
    }

    #[test]
    fn failures_name_the_item_and_why() {
        assert_eq!(
            failures(&gc_plan(false)),
            "planner: gc: removing temp-dir /elsewhere/y failed: permission denied\n"
        );
    }

    #[test]
    fn registry_rows_name_the_digest_and_shorten_digest_references() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let mut plan = gc_plan(true);
        plan.kept[0].commit = d.clone();
        plan.items.truncate(1);
        plan.items[0].tags = vec!["p/alpha:abababababab".into(), format!("r:5000/t/alpha@{d}")];
        plan.items[0].digest = Some(d.clone());
        let out = text(&plan, Path::new("/c"), false);
        assert!(
            out.contains("keep    alpha    digest  abababababab"),
            "{out}"
        );
        assert!(
            out.contains(
                "p/alpha:abababababab, r:5000/t/alpha@sha256:abababababab… (999999999999)"
            ),
            "{out}"
        );
        let doc: serde_json::Value = serde_json::from_str(&json(&plan, Path::new("/c"))).unwrap();
        assert_eq!(doc["kept"][0]["digest"], d.as_str());
        assert!(doc["kept"][0]["commit"].is_null());
        assert_eq!(doc["items"][0]["digest"], d.as_str());
        assert_eq!(doc["items"][0]["tags"][1], format!("r:5000/t/alpha@{d}"));
    }

    #[test]
    fn json_counts_removals() {
        let doc: serde_json::Value =
            serde_json::from_str(&json(&gc_plan(true), Path::new("/c"))).unwrap();
        assert_eq!(doc["schema_version"], gc::GC_SCHEMA);
        assert_eq!(doc["removed"]["records"], 2);
        assert_eq!(doc["failed"], 1);
        assert_eq!(doc["items"][3]["detail"], "permission denied");
    }
}
