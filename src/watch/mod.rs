//! `planner watch`: keep runtimes fresh, tick after tick, and tell a hook when `:latest` moves.
//!
//! A tick is one [`app::ensure`] over the selected runtimes (the same resolve → decide → exec
//! path as `planner ensure`, whatever kind of runtime), under the cache dir's run lock taken
//! shared for that tick only (as `ensure` takes it), so `gc` runs between ticks and `ensure`
//! beside them. After it, each runtime's `:latest` image id (asked of
//! the engine) is compared with the id the watcher last acknowledged ([`State`]):
//!
//! - moved: the `--on-change` hook runs (`sh -c CMD`, one runtime at a time, after the run
//!   lock is released) with `PLANNER_RUNTIME`, `PLANNER_IMAGE`, `PLANNER_OLD_ID` and
//!   `PLANNER_NEW_ID`. Exit 0 records the new id; a non-zero exit, a hook that cannot start
//!   or one still running after `--hook-timeout` (its process group is killed) keeps the old
//!   id, so the next tick runs it again. Without a hook the new id is recorded.
//! - no id acknowledged yet (a fresh state): the id `:latest` had *before* this tick's
//!   ensure stands in. If there was none, nothing was there to replace: no hook, the id is
//!   recorded ([`decide`]).
//!
//! State lives in `watch/state.json` in the cache dir, written atomically after every
//! change, so a restarted watcher neither repeats a hook nor misses a move made while it was
//! down (it compares with what it acknowledged, not with what it saw last in memory).
//!
//! Failures back off per host ([`host_of`]): when every runtime of a host failed in a tick,
//! that host's runtimes sit out 1, 2, 4, … ticks (at most [`MAX_BACKOFF`] worth); when others
//! on the host succeeded, only the failing runtime backs off. Nothing stalls the others.
//! Events go to an [`EventSink`]; `report::watch` renders them. Nothing here prints.
//!
//! This module is the loop; [`state`] the acknowledged ids and the hook decision,
//! [`backoff`] the per-host backoff, [`hook`] running the hook.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::{self, AppError, Loaded};
use crate::config::Runtime;
use crate::docker::Engine;
use crate::exec;
use crate::ids;
use crate::store::RunLockMode;
use crate::summary::{RunStatus, RuntimeSummary};

mod backoff;
mod hook;
mod state;

use backoff::{Backoff, runtime_scope};
pub use backoff::{MAX_BACKOFF, host_of};
pub use hook::{HookPipes, run_hook};
pub use state::{Decision, STATE_CAP, STATE_SCHEMA, Seen, State, decide};

/// How the watcher runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Pause after each tick (plus a random part up to `jitter`).
    pub interval: Duration,
    pub jitter: Duration,
    /// One tick, then stop.
    pub once: bool,
    /// The `--on-change` command, run by `sh -c`.
    pub on_change: Option<String>,
    /// A hook still running after this long is killed and counts as failed.
    pub hook_timeout: Duration,
    /// The scheduler's options for each tick's ensure.
    pub exec: exec::Options,
    /// How each tick takes the run lock (as `ensure` would for the same selection).
    pub lock_mode: RunLockMode,
}

/// A `:latest` that moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub runtime: String,
    /// The `:latest` reference.
    pub image: String,
    pub old_id: String,
    pub new_id: String,
}

/// What the watcher reports. Rendered by `report::watch` (plain lines or NDJSON).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Started {
        runtimes: Vec<String>,
        interval: Duration,
        jitter: Duration,
        state: PathBuf,
    },
    /// The state file could not be used (whole or one entry): the watcher starts fresh there.
    StateIgnored {
        path: PathBuf,
        reason: String,
    },
    StateWriteFailed {
        path: PathBuf,
        error: String,
    },
    TickStarted {
        tick: u64,
        runtimes: Vec<String>,
        /// Runtimes sitting this tick out (backing off).
        skipped: Vec<String>,
    },
    /// Waiting for another planner run that holds the run lock.
    WaitingForLock {
        tick: u64,
        path: PathBuf,
    },
    /// The tick could not run at all (engine unreachable, cache dir unusable).
    TickFailed {
        tick: u64,
        error: String,
    },
    RuntimeFailed {
        tick: u64,
        runtime: String,
        error: String,
    },
    /// First id acknowledged for a runtime; `appeared`: `:latest` did not exist before.
    Baseline {
        tick: u64,
        runtime: String,
        image: String,
        id: String,
        appeared: bool,
    },
    Changed {
        tick: u64,
        change: Change,
    },
    HookOutput {
        runtime: String,
        line: String,
    },
    HookFinished {
        tick: u64,
        change: Change,
        duration: Duration,
    },
    HookFailed {
        tick: u64,
        change: Change,
        duration: Duration,
        error: String,
    },
    /// `scope` (a host, or `runtime NAME`) sits out the next `ticks` ticks.
    Backoff {
        tick: u64,
        scope: String,
        runtimes: Vec<String>,
        failures: u32,
        ticks: u32,
    },
    TickFinished {
        tick: u64,
        ensured: usize,
        failed: usize,
        changed: usize,
        hooks_failed: usize,
        duration: Duration,
        /// The pause before the next tick; `None` with `--once`.
        next_in: Option<Duration>,
    },
}

/// Where watcher events go.
pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

/// Where a watcher's output goes: its own events, and each tick's step events.
#[derive(Clone)]
pub struct Sinks {
    pub events: EventSink,
    pub steps: exec::Sink,
}

/// How a tick ended, for `--once`'s exit code.
#[derive(Debug, Default)]
pub struct TickEnd {
    pub failed: usize,
    pub hooks_failed: usize,
    /// The tick could not run at all.
    pub error: Option<AppError>,
}

impl TickEnd {
    /// `ensure`'s exit code semantics: 0 all ensured (and every hook succeeded), 1 some
    /// runtime or hook failed, the error's code when the tick could not run.
    pub fn exit_code(&self) -> u8 {
        match &self.error {
            Some(e) => e.exit_code(),
            None if self.failed + self.hooks_failed > 0 => 1,
            None => 0,
        }
    }
}

/// A running watcher: its selection, state, backoff and the lock that keeps a second
/// watcher off the same state file.
pub struct Watcher<'a> {
    loaded: &'a Loaded,
    runtimes: Vec<Arc<Runtime>>,
    opts: Options,
    sinks: Sinks,
    state: State,
    state_path: PathBuf,
    backoff: Backoff,
    tick: u64,
    _lock: File,
}

impl<'a> Watcher<'a> {
    /// Takes the watcher lock (`watch/lock`; another watcher on this cache dir: `Busy`) and
    /// loads the state.
    pub fn start(
        loaded: &'a Loaded,
        runtimes: Vec<Arc<Runtime>>,
        opts: Options,
        sinks: Sinks,
    ) -> Result<Watcher<'a>, AppError> {
        let lock = watcher_lock(&loaded.cache_dir)?;
        let state_path = State::path(&loaded.cache_dir);
        let (state, warnings) = State::load(&state_path);
        for reason in warnings {
            (sinks.events)(&Event::StateIgnored {
                path: state_path.clone(),
                reason,
            });
        }
        (sinks.events)(&Event::Started {
            runtimes: runtimes.iter().map(|r| r.name.clone()).collect(),
            interval: opts.interval,
            jitter: opts.jitter,
            state: state_path.clone(),
        });
        Ok(Watcher {
            loaded,
            backoff: Backoff::new(opts.interval),
            runtimes,
            opts,
            sinks,
            state,
            state_path,
            tick: 0,
            _lock: lock,
        })
    }

    /// Ticks until stopped (the caller drops the future on a signal); with `--once`, one
    /// tick, returning its end.
    pub async fn run(mut self) -> TickEnd {
        loop {
            let started = Instant::now();
            let end = self.tick().await;
            let next_in = (!self.opts.once).then(|| pause(self.opts.interval, self.opts.jitter));
            self.emit(Event::TickFinished {
                tick: self.tick,
                ensured: end.ensured,
                failed: end.end.failed,
                changed: end.changed,
                hooks_failed: end.end.hooks_failed,
                duration: started.elapsed(),
                next_in,
            });
            match next_in {
                None => return end.end,
                Some(pause) => tokio::time::sleep(pause).await,
            }
        }
    }

    fn emit(&self, event: Event) {
        (self.sinks.events)(&event);
    }

    /// One tick: ensure what is not backing off, then compare and run hooks.
    async fn tick(&mut self) -> Ticked {
        self.tick += 1;
        let (attempted, skipped) = self.partition();
        self.emit(Event::TickStarted {
            tick: self.tick,
            runtimes: names(&attempted),
            skipped: names(&skipped),
        });
        if attempted.is_empty() {
            return Ticked::default();
        }
        let observed = match self.ensure_and_observe(&attempted).await {
            Ok(o) => o,
            Err(e) => {
                self.emit(Event::TickFailed {
                    tick: self.tick,
                    error: e.to_string(),
                });
                return Ticked {
                    end: TickEnd {
                        error: Some(e),
                        ..TickEnd::default()
                    },
                    ..Ticked::default()
                };
            }
        };
        self.note_failures(&attempted, &observed.summary);
        let (changed, hooks_failed) = self.settle(&attempted, &observed).await;
        let failed = observed
            .summary
            .iter()
            .filter(|s| s.status == RunStatus::Failed)
            .count();
        Ticked {
            ensured: observed.summary.len() - failed,
            changed,
            end: TickEnd {
                failed,
                hooks_failed,
                error: None,
            },
        }
    }

    /// The runtimes to ensure this tick, and those sitting it out (host or runtime backing off).
    fn partition(&mut self) -> (Vec<Arc<Runtime>>, Vec<Arc<Runtime>>) {
        let mut hosts: HashMap<String, bool> = HashMap::new();
        let (mut attempted, mut skipped) = (Vec::new(), Vec::new());
        for rt in &self.runtimes {
            let host = host_of(rt);
            let host_out = *hosts
                .entry(host.clone())
                .or_insert_with(|| self.backoff.sits_out(&host));
            if host_out || self.backoff.sits_out(&runtime_scope(&rt.name)) {
                skipped.push(rt.clone());
            } else {
                attempted.push(rt.clone());
            }
        }
        (attempted, skipped)
    }

    /// Under the run lock (this tick only): `:latest` before, the ensure, `:latest` after.
    async fn ensure_and_observe(&self, attempted: &[Arc<Runtime>]) -> Result<Observed, AppError> {
        let tick = self.tick;
        let events = self.sinks.events.clone();
        let _run_lock = app::run_lock(self.loaded, self.opts.lock_mode, false, |path| {
            events(&Event::WaitingForLock {
                tick,
                path: path.to_owned(),
            })
        })
        .await?;
        let engine = Engine::connect(&self.loaded.config.engine)
            .await
            .map_err(|e| AppError::Environment(e.to_string()))?;
        let fresh: Vec<Arc<Runtime>> = attempted
            .iter()
            .filter(|rt| self.state.seen(rt).is_none())
            .cloned()
            .collect();
        let before = self.latest_ids(&engine, &fresh).await;
        let ensured =
            app::ensure(self.loaded, attempted, &self.opts.exec, &self.sinks.steps).await?;
        let after = self.latest_ids(&engine, attempted).await;
        Ok(Observed {
            before,
            after,
            summary: ensured.summary,
        })
    }

    /// `:latest`'s image id per runtime; a runtime the engine could not answer for is left
    /// out (and reported), so nothing is decided for it this tick.
    async fn latest_ids(
        &self,
        engine: &Engine,
        runtimes: &[Arc<Runtime>],
    ) -> HashMap<String, Option<String>> {
        let references = runtimes.iter().map(|rt| rt.latest_tag()).collect();
        let prefixes = runtimes.iter().map(|rt| rt.image_prefix.clone()).collect();
        // One listing above a few dozen runtimes, concurrent inspects below.
        let engine = engine.prefetched(references, prefixes).await;
        let mut ids = HashMap::new();
        for rt in runtimes {
            match engine.inspect(&rt.latest_tag()).await {
                Ok(info) => {
                    let id = info.map(|i| i.id).filter(|id| ids::is_image_id(id));
                    ids.insert(rt.name.clone(), id);
                }
                Err(e) => self.emit(Event::RuntimeFailed {
                    tick: self.tick,
                    runtime: rt.name.clone(),
                    error: format!("cannot inspect {}: {e}", rt.latest_tag()),
                }),
            }
        }
        ids
    }

    /// Reports failed runtimes and updates the backoff: a host all of whose attempted
    /// runtimes failed backs off; on a host where some succeeded, each failed runtime does.
    fn note_failures(&mut self, attempted: &[Arc<Runtime>], summary: &[RuntimeSummary]) {
        let failed: HashMap<&str, &RuntimeSummary> = summary
            .iter()
            .filter(|s| s.status == RunStatus::Failed)
            .map(|s| (s.runtime.as_str(), s))
            .collect();
        let mut by_host: BTreeMap<String, Vec<&Arc<Runtime>>> = BTreeMap::new();
        for rt in attempted {
            by_host.entry(host_of(rt)).or_default().push(rt);
        }
        for (host, rts) in by_host {
            let bad: Vec<String> = rts
                .iter()
                .filter(|rt| failed.contains_key(rt.name.as_str()))
                .map(|rt| rt.name.clone())
                .collect();
            for name in &bad {
                let error = failed[name.as_str()].error.clone().unwrap_or_default();
                self.emit(Event::RuntimeFailed {
                    tick: self.tick,
                    runtime: name.clone(),
                    error,
                });
            }
            self.back_off(&host, &rts, bad);
        }
    }

    fn back_off(&mut self, host: &str, rts: &[&Arc<Runtime>], bad: Vec<String>) {
        if bad.len() == rts.len() {
            let (failures, ticks) = self.backoff.failed(host);
            self.emit(Event::Backoff {
                tick: self.tick,
                scope: host.to_owned(),
                runtimes: bad,
                failures,
                ticks,
            });
            return;
        }
        self.backoff.succeeded(host);
        for rt in rts {
            let scope = runtime_scope(&rt.name);
            if !bad.contains(&rt.name) {
                self.backoff.succeeded(&scope);
                continue;
            }
            let (failures, ticks) = self.backoff.failed(&scope);
            self.emit(Event::Backoff {
                tick: self.tick,
                scope,
                runtimes: vec![rt.name.clone()],
                failures,
                ticks,
            });
        }
    }

    /// Decides per runtime, runs hooks, records and saves; returns (moved, hooks failed).
    async fn settle(&mut self, attempted: &[Arc<Runtime>], observed: &Observed) -> (usize, usize) {
        let (mut moved, mut hooks_failed) = (0, 0);
        for rt in attempted {
            let Some(after) = observed.after.get(&rt.name) else {
                continue;
            };
            let before = observed.before.get(&rt.name).cloned().flatten();
            let decision = decide(self.state.seen(rt), before.as_deref(), after.as_deref());
            match decision {
                Decision::Nothing => {}
                Decision::Baseline { id, appeared } => {
                    self.emit(Event::Baseline {
                        tick: self.tick,
                        runtime: rt.name.clone(),
                        image: rt.latest_tag(),
                        id: id.clone(),
                        appeared,
                    });
                    self.acknowledge(rt, &id);
                }
                Decision::Moved { old, new } => {
                    moved += 1;
                    let change = Change {
                        runtime: rt.name.clone(),
                        image: rt.latest_tag(),
                        old_id: old,
                        new_id: new,
                    };
                    if !self.announce(rt, change).await {
                        hooks_failed += 1;
                    }
                }
            }
        }
        (moved, hooks_failed)
    }

    /// Reports a move and runs the hook; records the new id when it succeeded (or there is
    /// no hook), else the old one, so the next tick retries. Whether it succeeded.
    async fn announce(&mut self, rt: &Runtime, change: Change) -> bool {
        self.emit(Event::Changed {
            tick: self.tick,
            change: change.clone(),
        });
        let Some(cmd) = self.opts.on_change.clone() else {
            self.acknowledge(rt, &change.new_id);
            return true;
        };
        let started = Instant::now();
        let (result, output) = run_hook(
            &cmd,
            &change,
            &self.hook_env(),
            self.opts.hook_timeout,
            &self.sinks.events,
        )
        .await;
        let duration = started.elapsed();
        // No await between the hook's end and the write: a stop lands before or after both.
        // Its last output lines drain after, so a stop then cannot undo a finished hook.
        let id = if result.is_ok() {
            &change.new_id
        } else {
            &change.old_id
        };
        self.acknowledge(rt, id);
        output.drained().await;
        match result {
            Ok(()) => {
                self.emit(Event::HookFinished {
                    tick: self.tick,
                    change,
                    duration,
                });
                true
            }
            Err(error) => {
                self.emit(Event::HookFailed {
                    tick: self.tick,
                    change,
                    duration,
                    error,
                });
                false
            }
        }
    }

    /// Environment variables the hook must not see: the git token's.
    fn hook_env(&self) -> Vec<String> {
        self.loaded.config.git.token_env.iter().cloned().collect()
    }

    /// Records `id` for `rt` and saves the state (if it changed).
    fn acknowledge(&mut self, rt: &Runtime, id: &str) {
        if self.state.seen(rt) == Some(id) {
            return;
        }
        self.state.record(rt, id);
        if let Err(e) = self.state.save(&self.state_path) {
            self.emit(Event::StateWriteFailed {
                path: self.state_path.clone(),
                error: e.to_string(),
            });
        }
    }
}

/// What a tick saw.
struct Observed {
    /// `:latest` before the ensure, for runtimes with no acknowledged id.
    before: HashMap<String, Option<String>>,
    after: HashMap<String, Option<String>>,
    summary: Vec<RuntimeSummary>,
}

#[derive(Default)]
struct Ticked {
    ensured: usize,
    changed: usize,
    end: TickEnd,
}

/// The interval plus a random part of the jitter, to the millisecond (`fastrand`: already in
/// the tree through `tempfile`; spreading watchers needs no cryptographic randomness).
fn pause(interval: Duration, jitter: Duration) -> Duration {
    let jitter = u64::try_from(jitter.as_millis()).unwrap_or(u64::MAX);
    interval.saturating_add(Duration::from_millis(fastrand::u64(0..=jitter)))
}

fn names(rts: &[Arc<Runtime>]) -> Vec<String> {
    rts.iter().map(|r| r.name.clone()).collect()
}

/// Takes `watch/lock` exclusively for the watcher's lifetime (released by the OS at exit).
fn watcher_lock(cache_dir: &Path) -> Result<File, AppError> {
    let dir = cache_dir.join("watch");
    let path = dir.join("lock");
    let env_err = |what: &str, e: std::io::Error| {
        AppError::Environment(format!(
            "cannot {what} {}: {e}\n  help: check permissions, or pick another dir with --cache-dir / PLANNER_CACHE_DIR",
            path.display()
        ))
    };
    std::fs::create_dir_all(&dir).map_err(|e| env_err("create the directory of", e))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| env_err("open", e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(AppError::Busy(format!(
            "another planner watch is running on this cache dir (it holds {})\n  help: stop it first, or give this one its own --cache-dir",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(env_err("lock", e)),
    }
}

#[cfg(test)]
mod tests;
