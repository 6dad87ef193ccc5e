//! The `status` and `gc` commands: CLI glue over [`crate::status`] and [`crate::gc`]; their
//! reports are rendered by [`crate::report::status`] and [`crate::report::gc`]. Everything
//! written is masked and inert ([`super::print_text`]).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::{GcArgs, StatusArgs, eprint_text, print_json, print_text};
use crate::app::{self, AppError, Globals, Loaded};
use crate::docker::Engine;
use crate::gc::{self, GcPlan};
use crate::git::GitAuth;
use crate::report::{self, plain};
use crate::status::{self, Heads};
use crate::store::{self, KeyLock, RunLockMode, Store};

/// Connects to the Docker engine, its calls bounded as `[engine]` says; failing is an
/// environment error (exit 1).
async fn connect(loaded: &Loaded) -> anyhow::Result<Engine> {
    Ok(Engine::connect(&loaded.config.engine)
        .await
        .map_err(|e| AppError::Environment(e.to_string()))?)
}

/// The registry client for this run's registry runtimes.
fn planner_registry(loaded: &app::Loaded) -> crate::registry::Registry {
    crate::registry::Registry::new(loaded.config.registry.clone())
}

/// `planner status`: prints each selected runtime's state. Exits 1 when a refresh failed.
pub async fn cmd_status(globals: &Globals, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let loaded = app::load(globals)?;
    let runtimes = app::select(&loaded.config, &args.runtimes, args.runtimes.is_empty())?;
    // Registers the token for masking even when nothing is refreshed.
    let auth = GitAuth::from_env(loaded.config.git.token_env.as_deref())
        .with_limits(loaded.config.git.limits.clone());
    let engine = connect(&loaded).await?;
    let store = Store::read_only(&loaded.cache_dir);
    let heads = if args.refresh {
        Heads::Refresh
    } else {
        Heads::Recorded
    };
    let registry = planner_registry(&loaded);
    let rows = status::status(&engine, &store, &runtimes, heads, &auth, &registry)
        .await
        .with_context(|| {
            format!(
                "status: cannot ask the Docker engine at {} about the images\n  help: check the engine is healthy (`docker info`), then retry",
                engine.host()
            )
        })?;
    match args.json {
        true => print_json(&(report::status::json(&rows) + "\n")),
        false => print_text(&report::status::text(&rows, store::now_secs())),
    }
    .context("cannot write the status to stdout")?;
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
    let engine = connect(&loaded).await?;
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
    let cache = match args.build_cache {
        true => Some(gc::build_cache(&engine, args.older_than, args.dry_run).await),
        false => None,
    };
    let remote = match args.remote {
        true => Some(gc_remote(&loaded, &engine, &runtimes, args).await?),
        false => None,
    };
    let reports = Reports {
        cache: cache.as_ref(),
        remote: remote.as_ref(),
    };
    report_gc(&plan, &reports, &loaded.cache_dir, args.json, verbosity)?;
    let cache_failed = cache.is_some_and(|c| c.outcome.is_err());
    let remote_failed = remote.is_some_and(|r| r.failed() > 0);
    Ok(if plan.failed() > 0 || cache_failed || remote_failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `gc --remote`: plans (and unless `--dry-run` deletes) old entries of the shared cache.
async fn gc_remote(
    loaded: &Loaded,
    engine: &Engine,
    runtimes: &[std::sync::Arc<crate::config::Runtime>],
    args: &GcArgs,
) -> anyhow::Result<crate::gc_remote::RemoteGc> {
    let Some(cache) = &loaded.config.cache else {
        return Err(AppError::Usage(
            "gc --remote: the configuration has no shared cache ([cache] registry)\n  help: add [cache] registry = \"host[:port]/path\" to runtimes.toml, or drop --remote".to_owned(),
        )
        .into());
    };
    let registry = planner_registry(loaded);
    let keep = args.keep as usize;
    let mut remote =
        crate::gc_remote::plan(&registry, engine, cache, runtimes, keep, args.dry_run).await;
    if !args.dry_run {
        crate::gc_remote::execute(&registry, &mut remote).await;
    }
    Ok(remote)
}

/// The optional parts of a gc report.
struct Reports<'a> {
    cache: Option<&'a gc::BuildCachePrune>,
    remote: Option<&'a crate::gc_remote::RemoteGc>,
}

/// The cache dir for gc: read only for the dry run, which writes nothing (not even a lock
/// file) and so takes no lock; otherwise opened under the run lock, held exclusively.
async fn gc_store(loaded: &Loaded, args: &GcArgs) -> anyhow::Result<(Store, Option<KeyLock>)> {
    if args.dry_run {
        return Ok((Store::read_only(&loaded.cache_dir), None));
    }
    let lock = app::run_lock(loaded, RunLockMode::Exclusive, args.no_wait, |path| {
        eprint_text(&format!(
            "planner: waiting for another planner run (lock {})…\n",
            path.display()
        ))
    })
    .await?;
    let store = Store::open(&loaded.cache_dir).map_err(|e| AppError::Environment(e.to_string()))?;
    Ok((store, Some(lock)))
}

/// Prints the gc report: JSON on stdout with `--json`; with `-q` only the failures, on
/// stderr; otherwise the table on stdout.
fn report_gc(
    plan: &GcPlan,
    reports: &Reports<'_>,
    cache_dir: &Path,
    json: bool,
    verbosity: plain::Verbosity,
) -> anyhow::Result<()> {
    let (cache, remote) = (reports.cache, reports.remote);
    if json {
        let doc = report::gc::json_with(plan, cache, remote, cache_dir);
        print_json(&(doc + "\n")).context("cannot write the gc report to stdout")?;
    } else if verbosity == plain::Verbosity::Quiet {
        let cache_failure = cache
            .map(report::gc::build_cache_failure)
            .unwrap_or_default();
        let remote_failures = remote.map(report::gc::remote_failures).unwrap_or_default();
        eprint_text(&format!(
            "{}{cache_failure}{remote_failures}",
            report::gc::failures(plan)
        ));
    } else {
        let verbose = verbosity == plain::Verbosity::Verbose;
        let mut text = report::gc::text(plan, cache_dir, verbose);
        if let Some(cache) = cache {
            text.push_str(&report::gc::build_cache_text(cache));
        }
        if let Some(remote) = remote {
            text.push_str(&report::gc::remote_text(remote, verbose));
        }
        print_text(&text).context("cannot write the gc report to stdout")?;
    }
    Ok(())
}
