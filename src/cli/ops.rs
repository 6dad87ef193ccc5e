//! The `status` and `gc` commands: CLI glue over [`crate::status`] and [`crate::gc`], and
//! their rendering (a table, or one JSON object with `--json`). Everything printed is masked.

use crate::config::sha12;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::{GcArgs, StatusArgs, write_stdout};
use crate::app::{self, AppError, Globals, Loaded};
use crate::docker::Engine;
use crate::exec::scheduler::short_id;
use crate::gc::{self, GcItem, GcPlan, ItemKind, ItemStatus, KeptCommit};
use crate::git::GitAuth;
use crate::mask::mask;
use crate::report::plain;
use crate::status::{self, CheckoutStatus, Heads, LatestStatus, RuntimeStatus, StatusReport};
use crate::store::{self, KeyLock, RunLockMode, Store};

/// Connects to the Docker engine; failing is an environment error (exit 1).
async fn connect() -> anyhow::Result<Engine> {
    Ok(Engine::connect()
        .await
        .map_err(|e| AppError::Environment(e.to_string()))?)
}

/// `planner status`: prints each selected runtime's state. Exits 1 when a refresh failed.
pub async fn cmd_status(globals: &Globals, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let loaded = app::load(globals)?;
    let runtimes = app::select(&loaded.config, &args.runtimes, args.runtimes.is_empty())?;
    // Registers the token for masking even when nothing is refreshed.
    let auth = GitAuth::from_env(loaded.config.git.token_env.as_deref())
        .with_limits(loaded.config.git.limits.clone());
    let engine = connect().await?;
    let store = Store::read_only(&loaded.cache_dir);
    let heads = if args.refresh {
        Heads::Refresh
    } else {
        Heads::Recorded
    };
    let rows = status::status(&engine, &store, &runtimes, heads, &auth)
        .await
        .with_context(|| {
            format!(
                "status: cannot ask the Docker engine at {} about the images\n  help: check the engine is healthy (`docker info`), then retry",
                engine.host()
            )
        })?;
    let text = if args.json {
        status_json(&rows) + "\n"
    } else {
        status_text(&rows, store::now_secs())
    };
    write_stdout(&mask(&text)).context("cannot write the status to stdout")?;
    Ok(if rows.iter().any(|r| r.error.is_some()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `planner gc`: plans, removes (unless `--dry-run`) and reports. Exits 1 when a removal
/// failed.
pub async fn cmd_gc(
    globals: &Globals,
    args: &GcArgs,
    verbosity: plain::Verbosity,
) -> anyhow::Result<ExitCode> {
    let loaded = app::load(globals)?;
    let runtimes = app::select(&loaded.config, &[], true)?;
    let engine = connect().await?;
    let (store, _run_lock) = gc_store(&loaded, args).await?;
    let mut plan = gc::plan(&engine, &store, &runtimes, args.keep as usize)
        .await
        .with_context(|| {
            format!(
                "gc: nothing was removed: cannot work out what to remove in cache dir {} with the engine at {} (fix the cause that follows, then run `planner gc` again)",
                loaded.cache_dir.display(),
                engine.host()
            )
        })?;
    if !args.dry_run {
        gc::execute(&engine, &store, &mut plan).await;
    }
    report_gc(&plan, &loaded.cache_dir, args.json, verbosity)?;
    Ok(if plan.failed() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The cache dir for gc: read only for the dry run, which writes nothing (not even a lock
/// file) and so takes no lock; otherwise opened under the run lock, held exclusively.
async fn gc_store(loaded: &Loaded, args: &GcArgs) -> anyhow::Result<(Store, Option<KeyLock>)> {
    if args.dry_run {
        return Ok((Store::read_only(&loaded.cache_dir), None));
    }
    let lock = app::run_lock(loaded, RunLockMode::Exclusive, args.no_wait, |path| {
        eprintln!(
            "planner: waiting for another planner run (lock {})…",
            path.display()
        )
    })
    .await?;
    let store = Store::open(&loaded.cache_dir).map_err(|e| AppError::Environment(e.to_string()))?;
    Ok((store, Some(lock)))
}

/// Prints the gc report: JSON on stdout with `--json`; with `-q` only the failures, on
/// stderr; otherwise the table on stdout.
fn report_gc(
    plan: &GcPlan,
    cache_dir: &Path,
    json: bool,
    verbosity: plain::Verbosity,
) -> anyhow::Result<()> {
    if json {
        write_stdout(&mask(&(gc_json(plan, cache_dir) + "\n")))
            .context("cannot write the gc report to stdout")?;
    } else if verbosity == plain::Verbosity::Quiet {
        print_gc_failures(plan);
    } else {
        let verbose = verbosity == plain::Verbosity::Verbose;
        write_stdout(&mask(&gc_text(plan, cache_dir, verbose)))
            .context("cannot write the gc report to stdout")?;
    }
    Ok(())
}

/// One line on stderr per item whose removal failed.
fn print_gc_failures(plan: &GcPlan) {
    for item in &plan.items {
        if let ItemStatus::Failed(why) = &item.status {
            eprintln!(
                "{}",
                mask(&format!(
                    "planner: gc: removing {} {} failed: {why}",
                    item.kind.name(),
                    item.target()
                ))
            );
        }
    }
}

// ---- rendering -------------------------------------------------------------------------

/// `1536` → `1.5 KiB`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// How long ago `then` was, coarsely: `5s ago`, `3m ago`, `2h ago`, `4d ago`.
pub(crate) fn ago(now: u64, then: u64) -> String {
    let d = now.saturating_sub(then);
    match d {
        0..60 => format!("{d}s ago"),
        60..3600 => format!("{}m ago", d / 60),
        3600..86_400 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86_400),
    }
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[c] - cell.chars().count();
                let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The status table, then one line per problem.
pub(crate) fn status_text(rows: &[RuntimeStatus], now: u64) -> String {
    let mut cells = vec![
        [
            "RUNTIME", "BRANCH", "COMMIT", "RESOLVED", "IMAGE", "LATEST", "CHECKOUT",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    cells.extend(rows.iter().map(|r| status_row(r, now)));
    let mut notes: Vec<String> = rows.iter().flat_map(status_notes).collect();
    if rows.iter().any(|r| r.commit.is_none() && r.error.is_none()) {
        notes.push(
            "COMMIT -: never resolved here; run `planner ensure`, or `planner status --refresh` to ask the git host"
                .into(),
        );
    }
    let mut out = table(&cells);
    for n in notes {
        out.push_str(&n);
        out.push('\n');
    }
    out
}

/// One runtime's row of the status table.
fn status_row(r: &RuntimeStatus, now: u64) -> Vec<String> {
    let commit = match (&r.commit, &r.error) {
        (Some(c), _) => sha12(c).to_owned(),
        (None, Some(_)) => "error".into(),
        (None, None) => "-".into(),
    };
    let resolved = r
        .resolved_at
        .map_or_else(|| "never".into(), |t| ago(now, t));
    let image = match (&r.image.tag, r.image.present) {
        (None, _) => "-".to_owned(),
        (Some(_), true) => "present".into(),
        (Some(_), false) => "missing".into(),
    };
    vec![
        r.runtime.clone(),
        r.branch.clone(),
        commit,
        resolved,
        image,
        latest_cell(&r.latest),
        checkout_cell(&r.checkout),
    ]
}

/// The LATEST cell: the image ID, and whether it is the pinned image, another commit's or
/// not planner's.
fn latest_cell(latest: &LatestStatus) -> String {
    match (&latest.id, latest.matches_commit) {
        (None, _) => "missing".to_owned(),
        (Some(id), Some(true)) => format!("{} (pinned)", short_id(id)),
        (Some(id), Some(false)) => match &latest.commit {
            Some(c) => format!("{} (commit {})", short_id(id), sha12(c)),
            None => format!("{} (not planner's)", short_id(id)),
        },
        (Some(id), None) => short_id(id),
    }
}

/// The CHECKOUT cell: present with its size, missing, or unusable.
fn checkout_cell(checkout: &CheckoutStatus) -> String {
    match (&checkout.path, checkout.present, &checkout.problem) {
        (None, _, _) => "-".to_owned(),
        (Some(_), true, _) => format!("present {}", human_bytes(checkout.bytes.unwrap_or(0))),
        (Some(_), false, Some(_)) => "unusable".into(),
        (Some(_), false, None) => "missing".into(),
    }
}

/// The problem lines of one runtime: its refresh error, then an unusable checkout.
fn status_notes(r: &RuntimeStatus) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(e) = &r.error {
        notes.push(format!("{}: {e}", r.runtime));
    }
    if let Some(p) = &r.checkout.problem {
        notes.push(format!(
            "{}: checkout unusable ({p}); the next `planner ensure` checks it out again",
            r.runtime
        ));
    }
    notes
}

/// `{"schema_version":1,"runtimes":[…]}`.
pub(crate) fn status_json(rows: &[RuntimeStatus]) -> String {
    serde_json::to_string_pretty(&StatusReport {
        schema_version: status::STATUS_SCHEMA,
        runtimes: rows,
    })
    .expect("status rows serialize")
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
            let id = item.image_id.as_deref().map(short_id).unwrap_or_default();
            format!("{} ({id})", item.tags.join(", "))
        }
        (Some(p), _) => show_path(p, cache_dir),
        (None, _) => String::new(),
    }
}

/// The gc report: what is kept and why, what is (or would be) removed, and the total.
pub(crate) fn gc_text(plan: &GcPlan, cache_dir: &Path, verbose: bool) -> String {
    let mut cells = vec![
        ["ACTION", "RUNTIME", "WHAT", "TARGET", "SIZE", "WHY"]
            .map(str::to_owned)
            .to_vec(),
    ];
    cells.extend(plan.kept.iter().map(|k| kept_row(k, plan.keep)));
    // Records are many and alike: one line for the plain removals unless verbose.
    let mut records = RecordsRow::default();
    let mut locks = RecordsRow::default();
    for item in &plan.items {
        let summed = !verbose && matches!(item.status, ItemStatus::Planned | ItemStatus::Removed);
        match item.kind {
            ItemKind::Record if summed => records.add(item),
            ItemKind::LockFile if summed => locks.add(item),
            _ => cells.push(item_row(item, cache_dir)),
        }
    }
    cells.extend(records.into_row(plan.dry_run));
    cells.extend(locks.into_lock_row(plan.dry_run));
    let mut out = format!(
        "gc in {}: keeping the newest {} commit{} of each runtime and what :latest names\n",
        cache_dir.display(),
        plan.keep,
        if plan.keep == 1 { "" } else { "s" }
    );
    if cells.len() > 1 {
        out.push_str(&table(&cells));
    }
    out.push_str(&gc_totals(plan));
    out
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
    vec![
        "keep".into(),
        k.runtime.clone(),
        "commit".into(),
        sha12(&k.commit).into(),
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
fn gc_totals(plan: &GcPlan) -> String {
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

/// The gc report as one JSON object.
pub(crate) fn gc_json(plan: &GcPlan, cache_dir: &Path) -> String {
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
    serde_json::to_string_pretty(&doc).expect("gc report serializes")
}

/// A kept commit in the gc report's JSON.
fn kept_json(k: &KeptCommit) -> serde_json::Value {
    json!({
        "runtime": k.runtime,
        "commit": k.commit,
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
    use crate::status::{CheckoutStatus, ImageStatus, LatestStatus};

    #[test]
    fn bytes_and_ages_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(ago(100, 95), "5s ago");
        assert_eq!(ago(1000, 820), "3m ago");
        assert_eq!(ago(10_000, 2800), "2h ago");
        assert_eq!(ago(400_000, 0), "4d ago");
        assert_eq!(ago(0, 10), "0s ago");
    }

    fn row(commit: Option<&str>) -> RuntimeStatus {
        RuntimeStatus {
            runtime: "alpha".into(),
            branch: "main".into(),
            repo: "https://h.example/tpl".into(),
            commit: commit.map(str::to_owned),
            resolved_at: commit.map(|_| 90),
            error: None,
            image: ImageStatus {
                tag: commit.map(|c| format!("p/alpha:{}", &c[..12])),
                present: commit.is_some(),
                id: commit.map(|_| format!("sha256:{}", "a".repeat(64))),
            },
            latest: LatestStatus {
                tag: "p/alpha:latest".into(),
                present: commit.is_some(),
                id: commit.map(|_| format!("sha256:{}", "a".repeat(64))),
                commit: commit.map(str::to_owned),
                matches_commit: commit.map(|_| true),
            },
            checkout: CheckoutStatus {
                present: commit.is_some(),
                path: commit.map(|c| format!("/c/checkouts/tpl/{c}").into()),
                bytes: commit.map(|_| 4096),
                problem: None,
            },
        }
    }

    #[test]
    fn status_table_shows_present_and_never_resolved() {
        let c = "1".repeat(40);
        let text = status_text(
            &[
                row(Some(&c)),
                RuntimeStatus {
                    runtime: "beta".into(),
                    ..row(None)
                },
            ],
            100,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("RUNTIME  BRANCH  COMMIT"), "{text}");
        assert!(
            lines[1].contains(
                "111111111111  10s ago   present  aaaaaaaaaaaa (pinned)  present 4.0 KiB"
            ),
            "{text}"
        );
        let cols: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            cols,
            ["beta", "main", "-", "never", "-", "missing", "-"],
            "{text}"
        );
        assert!(lines[3].contains("never resolved"), "{text}");
    }

    #[test]
    fn status_json_has_the_documented_shape() {
        let doc: serde_json::Value = serde_json::from_str(&status_json(&[row(None)])).unwrap();
        assert_eq!(doc["schema_version"], 1);
        let r = &doc["runtimes"][0];
        for k in [
            "runtime",
            "branch",
            "repo",
            "commit",
            "resolved_at",
            "image",
            "latest",
            "checkout",
        ] {
            assert!(r.get(k).is_some(), "{k} in {r}");
        }
        assert!(r["commit"].is_null() && r["image"]["tag"].is_null());
        assert_eq!(r["latest"]["present"], false);
        assert!(r["latest"]["matches_commit"].is_null());
        assert!(r["checkout"]["bytes"].is_null());
    }
}
