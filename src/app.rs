//! The library's entry points for the CLI: load configuration and plans, select runtimes,
//! then plan (dry run) or ensure. Precedence for every setting: flag > env > file > built-in.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::config::{self, Config, EnvOverrides, Runtime};
use crate::docker::Engine;
use crate::exec::{self, Sink};
use crate::git::{GitAuth, smart_http};
use crate::plan::{Decided, Graph, PlanSet, decide::decide};
use crate::steps::RealWorld;
use crate::store::{KeyLock, RunLockMode, Store};
use crate::summary::{RuntimeSummary, summarize};

/// Errors of the whole command, by exit code.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad arguments or configuration: exit 2.
    #[error("{0}")]
    Usage(String),
    /// The environment is not usable (engine down, cache dir unwritable): exit 1.
    #[error("{0}")]
    Environment(String),
    /// Another run holds the run lock and the caller would not wait: exit 75 (EX_TEMPFAIL).
    #[error("{0}")]
    Busy(String),
}

impl AppError {
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Usage(_) => 2,
            AppError::Environment(_) => 1,
            AppError::Busy(_) => 75,
        }
    }
}

/// Settings from global flags.
#[derive(Debug, Clone, Default)]
pub struct Globals {
    pub config: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub plans: Option<PathBuf>,
}

/// Configuration, plans and the cache dir, all resolved.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub plans: PlanSet,
    pub cache_dir: PathBuf,
}

/// Loads plans, then the config found by flag > PLANNER_CONFIG > ./runtimes.toml > built-in.
pub fn load(globals: &Globals) -> Result<Loaded, AppError> {
    let plans: PlanSet = crate::steps::plans::load(globals.plans.as_deref())
        .map_err(|e| AppError::Usage(e.to_string()))?;
    let env = EnvOverrides::from_env();
    let exists = |name: &str| plans.source(name);
    let config_path = globals
        .config
        .clone()
        .or_else(|| {
            std::env::var_os("PLANNER_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .or_else(|| Some(PathBuf::from("runtimes.toml")).filter(|p| p.is_file()));
    let config = match &config_path {
        Some(path) => config::load(path, &env, &exists),
        None => config::parse(
            config::BUILTIN_RUNTIMES_TOML,
            "<built-in runtimes.toml>",
            &env,
            &exists,
        ),
    }
    .map_err(|e| AppError::Usage(e.to_string()))?;
    let cache_dir = cache_dir(globals, &config, config_path.as_deref())?;
    Ok(Loaded {
        config,
        plans,
        cache_dir,
    })
}

/// flag > PLANNER_CACHE_DIR > config `cache_dir` (relative to the config file) > XDG cache dir.
fn cache_dir(
    globals: &Globals,
    config: &Config,
    config_path: Option<&Path>,
) -> Result<PathBuf, AppError> {
    if let Some(dir) = &globals.cache_dir {
        return Ok(dir.clone());
    }
    if let Some(dir) = std::env::var_os("PLANNER_CACHE_DIR").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = &config.cache_dir {
        let base = config_path.and_then(Path::parent).unwrap_or(Path::new("."));
        return Ok(base.join(dir));
    }
    use etcetera::BaseStrategy as _;
    etcetera::choose_base_strategy()
        .map(|s| s.cache_dir().join("planner"))
        .map_err(|e| AppError::Environment(format!("cannot find a cache directory ({e})\n  help: pass --cache-dir DIR or set PLANNER_CACHE_DIR")))
}

/// The runtimes a command acts on: the named ones, all of them, or the default one.
pub fn select(config: &Config, names: &[String], all: bool) -> Result<Vec<Arc<Runtime>>, AppError> {
    let allowlist = || {
        config
            .runtimes
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chosen: Vec<String> = match (all, names.is_empty(), &config.default_runtime) {
        (true, _, _) => config.runtimes.keys().cloned().collect(),
        (false, false, _) => names.to_vec(),
        (false, true, Some(d)) => vec![d.clone()],
        (false, true, None) => {
            return Err(AppError::Usage(format!(
                "no runtime named and no default_runtime in {}\n  help: name runtimes, pass --all, or set default_runtime; allowlisted: {}",
                config.origin,
                allowlist()
            )));
        }
    };
    let mut out: Vec<Arc<Runtime>> = Vec::new();
    // Dedupe through a set: `any` over `out` made `--all` quadratic (a fifth of planning
    // 10,000 runtimes).
    let mut seen = std::collections::HashSet::new();
    for name in chosen {
        let rt = config.runtimes.get(&name).ok_or_else(|| {
            AppError::Usage(format!(
                "unknown runtime {name:?}: it is not in the allowlist of {}\n  help: allowlisted runtimes: {}; to add one, declare [runtimes.{name}] there",
                config.origin,
                allowlist()
            ))
        })?;
        if seen.insert(name) {
            out.push(Arc::new(rt.clone()));
        }
    }
    if out.is_empty() {
        return Err(AppError::Usage(format!(
            "{} declares no runtimes",
            config.origin
        )));
    }
    Ok(out)
}

/// Connects to the engine and builds the real world.
async fn world(loaded: &Loaded, read_only: bool) -> Result<RealWorld, AppError> {
    let engine = Engine::connect(&loaded.config.engine)
        .await
        .map_err(|e| AppError::Environment(e.to_string()))?;
    let store = if read_only {
        Store::read_only(&loaded.cache_dir)
    } else {
        Store::open(&loaded.cache_dir).map_err(|e| AppError::Environment(e.to_string()))?
    };
    let registry = crate::registry::Registry::new(loaded.config.registry.clone());
    Ok(RealWorld {
        store,
        engine,
        http: smart_http::client(),
        auth: GitAuth::from_env(loaded.config.git.token_env.as_deref())
            .with_limits(loaded.config.git.limits.clone()),
        cache: crate::cache::SharedCache::new(loaded.config.cache.clone(), registry.clone()),
        registry,
        index: planner_index::Index::new(loaded.config.registry.timeout),
        bases: crate::bases::Resolver::default(),
        read_only,
    })
}

/// Takes the run lock of the cache dir in `mode`. If another run holds it: with `no_wait`,
/// fails at once with [`AppError::Busy`]; else calls `on_wait` with the lock's path and
/// waits (cancellably: dropping the future stops the wait). The OS releases the lock when
/// the process ends, however it ends.
pub async fn run_lock(
    loaded: &Loaded,
    mode: RunLockMode,
    no_wait: bool,
    on_wait: impl FnOnce(&Path),
) -> Result<KeyLock, AppError> {
    let store = Store::open(&loaded.cache_dir).map_err(|e| AppError::Environment(e.to_string()))?;
    let env_err = |e: crate::store::StoreError| AppError::Environment(e.to_string());
    if let Some(lock) = store.try_run_lock(mode).map_err(env_err)? {
        return Ok(lock);
    }
    let path = store.run_lock_path();
    if no_wait {
        return Err(AppError::Busy(format!(
            "another planner run holds the run lock {}\n  help: wait for it, or run without --no-wait to queue behind it",
            path.display()
        )));
    }
    on_wait(&path);
    store.run_lock(mode).await.map_err(env_err)
}

/// How many resolve-heads run at once.
pub const RESOLVE_CONCURRENCY: usize = 16;

/// A decided graph: what `plan` renders and `ensure` runs.
pub struct Planned {
    pub graph: Graph,
    pub decided: Decided,
}

/// The dry run: resolve heads (no records written), then decide. Writes nothing.
pub async fn plan(
    loaded: &Loaded,
    runtimes: &[Arc<Runtime>],
    offline: bool,
) -> Result<Planned, AppError> {
    let mut world = world(loaded, true).await?;
    if offline {
        world.bases = crate::bases::Resolver::offline();
    }
    let graph = Graph::compile(runtimes, &loaded.plans);
    let resolutions = exec::resolve_all(
        &graph,
        &world,
        offline,
        RESOLVE_CONCURRENCY,
        &exec::event::null_sink(),
    )
    .await;
    let deciding = world.for_deciding(&graph, &resolutions).await;
    let decided = decide(&graph, &resolutions, &deciding).await;
    Ok(Planned { graph, decided })
}

/// What `ensure` did.
pub struct Ensured {
    pub planned: Planned,
    pub outcome: exec::Outcome,
    pub summary: Vec<RuntimeSummary>,
    pub elapsed: std::time::Duration,
}

impl Ensured {
    pub fn failed(&self) -> usize {
        crate::summary::failed(&self.summary)
    }
}

/// Ensures every runtime: resolve, decide, run what is needed.
pub async fn ensure(
    loaded: &Loaded,
    runtimes: &[Arc<Runtime>],
    opts: &exec::Options,
    sink: &Sink,
) -> Result<Ensured, AppError> {
    let started = Instant::now();
    let world = world(loaded, false).await?;
    let graph = Graph::compile(runtimes, &loaded.plans);
    let resolutions = exec::resolve_all(&graph, &world, false, RESOLVE_CONCURRENCY, sink).await;
    let deciding = world.for_deciding(&graph, &resolutions).await;
    let decided = decide(&graph, &resolutions, &deciding).await;
    let outcome = exec::run(&graph, &decided, &world, opts, sink).await;
    let names: Vec<String> = runtimes.iter().map(|r| r.name.clone()).collect();
    let summary = summarize(&graph, &decided, &outcome, &names);
    Ok(Ensured {
        planned: Planned { graph, decided },
        outcome,
        summary,
        elapsed: started.elapsed(),
    })
}
