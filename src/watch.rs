//! `planner watch`: keep runtimes fresh, tick after tick, and tell a hook when `:latest` moves.
//!
//! A tick is one [`app::ensure`] over the selected runtimes (the same resolve → decide → exec
//! path as `planner ensure`, whatever kind of runtime), under the cache dir's run lock taken
//! for that tick only (exclusive with `--all`, shared otherwise, as `ensure` takes it), so
//! `gc` and `ensure` run between ticks. After it, each runtime's `:latest` image id (asked of
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

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::app::{self, AppError, Loaded};
use crate::config::Runtime;
use crate::docker::Engine;
use crate::exec;
use crate::ids;
use crate::report::summary::RuntimeSummary;
use crate::store::{self, RunLockMode};

/// Version of `watch/state.json`.
pub const STATE_SCHEMA: u32 = 1;
/// Largest state file read (an entry is about 200 bytes; 10,000 runtimes fit many times).
pub const STATE_CAP: u64 = 16 * 1024 * 1024;
/// The longest a host or runtime backs off after repeated failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// After the hook's shell exits, how long its output may still drain (a background child
/// holding the pipe open is not waited for).
const DRAIN: Duration = Duration::from_secs(2);
/// Longest hook output line relayed; the rest of the line is dropped.
const HOOK_LINE_CAP: usize = 4096;

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

/// The host a runtime's refresh depends on, for backoff: `host[:port]` of its git repo URL,
/// or a registry runtime's registry.
pub fn host_of(rt: &Runtime) -> String {
    if let Some(image) = rt.registry_image() {
        return image.registry.clone();
    }
    let host = rt.repo.host_str().unwrap_or("local");
    match rt.repo.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// What a tick decides for one runtime from the acknowledged id, the id `:latest` had before
/// the tick's ensure, and the one it has after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do or record.
    Nothing,
    /// Record `id` without a hook: nothing was there to replace (`appeared`), or it is the
    /// first id acknowledged and `:latest` did not move.
    Baseline { id: String, appeared: bool },
    /// `:latest` moved from `old` to `new`: run the hook.
    Moved { old: String, new: String },
}

/// The rule (see the module doc). A `:latest` that is gone changes nothing: the state keeps
/// the acknowledged id, so a later `:latest` is compared with it.
pub fn decide(seen: Option<&str>, before: Option<&str>, after: Option<&str>) -> Decision {
    let Some(new) = after else {
        return Decision::Nothing;
    };
    match seen.or(before) {
        None => Decision::Baseline {
            id: new.to_owned(),
            appeared: true,
        },
        Some(old) if old == new && seen.is_some() => Decision::Nothing,
        Some(old) if old == new => Decision::Baseline {
            id: new.to_owned(),
            appeared: false,
        },
        Some(old) => Decision::Moved {
            old: old.to_owned(),
            new: new.to_owned(),
        },
    }
}

/// One acknowledged `:latest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// The `:latest` reference the id is for (a renamed image starts afresh).
    pub image: String,
    pub id: String,
    /// Seconds since the Unix epoch.
    pub at: u64,
}

/// The watcher's persisted state: per runtime, the `:latest` id last acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub runtimes: BTreeMap<String, Seen>,
}

#[derive(Serialize)]
struct StateOut<'a> {
    schema: u32,
    runtimes: &'a BTreeMap<String, Seen>,
}

#[derive(Deserialize)]
struct StateIn {
    schema: u32,
    runtimes: BTreeMap<String, serde_json::Value>,
}

impl State {
    /// The state file of a cache dir.
    pub fn path(cache_dir: &Path) -> PathBuf {
        cache_dir.join("watch").join("state.json")
    }

    /// Reads the state as hostile input. Anything unusable (not a regular file, a symlink,
    /// over [`STATE_CAP`], malformed, another schema) is moved aside to `state.json.bad` and
    /// the watcher starts fresh; an invalid entry is dropped alone. Each refusal is returned
    /// as a reason, for a warning.
    ///
    /// Starting fresh is the safer failure: a runtime without an entry is compared with what
    /// `:latest` names before the next ensure, so no hook is repeated for a change already
    /// handled; the cost is that a change made while the watcher was down is not announced.
    pub fn load(path: &Path) -> (State, Vec<String>) {
        let bytes = match store::read_capped(path, STATE_CAP) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return (State::default(), Vec::new()),
            Err(why) => return (State::default(), vec![set_aside(path, &why)]),
        };
        let parsed: StateIn = match serde_json::from_slice(&bytes) {
            Ok(p) => p,
            Err(e) => {
                return (
                    State::default(),
                    vec![set_aside(path, &format!("malformed: {e}"))],
                );
            }
        };
        if parsed.schema != STATE_SCHEMA {
            let why = format!("schema {} (expected {STATE_SCHEMA})", parsed.schema);
            return (State::default(), vec![set_aside(path, &why)]);
        }
        let mut state = State::default();
        let mut warnings = Vec::new();
        for (name, value) in parsed.runtimes {
            match valid_entry(value) {
                Some(seen) => {
                    state.runtimes.insert(name, seen);
                }
                None => warnings.push(format!(
                    "entry {:?} is not valid; it is dropped (that runtime starts afresh)",
                    name.chars().take(72).collect::<String>()
                )),
            }
        }
        (state, warnings)
    }

    /// Writes the state atomically (temp file, fsync, rename, fsync of the directory).
    pub fn save(&self, path: &Path) -> Result<(), store::StoreError> {
        let bytes = serde_json::to_vec_pretty(&StateOut {
            schema: STATE_SCHEMA,
            runtimes: &self.runtimes,
        })
        .expect("the state serializes");
        store::write_atomic(path, &bytes)
    }

    /// The acknowledged id of `rt`, if it is for its current `:latest` reference.
    fn seen(&self, rt: &Runtime) -> Option<&str> {
        self.runtimes
            .get(&rt.name)
            .filter(|s| s.image == rt.latest_tag())
            .map(|s| s.id.as_str())
    }

    fn record(&mut self, rt: &Runtime, id: &str) {
        let seen = Seen {
            image: rt.latest_tag(),
            id: id.to_owned(),
            at: store::now_secs(),
        };
        self.runtimes.insert(rt.name.clone(), seen);
    }
}

fn valid_entry(value: serde_json::Value) -> Option<Seen> {
    let seen: Seen = serde_json::from_value(value).ok()?;
    (ids::is_image_id(&seen.id) && !seen.image.is_empty() && seen.image.len() <= 512)
        .then_some(seen)
}

/// Moves an unusable state file aside (kept for a look) and says why it was ignored.
fn set_aside(path: &Path, why: &str) -> String {
    let aside = path.with_extension("json.bad");
    match std::fs::rename(path, &aside) {
        Ok(()) => format!("{why}; moved to {}, starting afresh", aside.display()),
        Err(e) => format!("{why}; starting afresh (could not move it aside: {e})"),
    }
}

/// Exponential backoff per scope (a host, or one runtime).
#[derive(Debug)]
struct Backoff {
    entries: HashMap<String, Penalty>,
    /// Most ticks a scope sits out.
    cap: u32,
}

#[derive(Debug, Clone, Copy)]
struct Penalty {
    failures: u32,
    /// Ticks still to sit out.
    left: u32,
}

impl Backoff {
    fn new(interval: Duration) -> Backoff {
        let per_tick = interval.as_secs_f64().max(0.001);
        let cap = (MAX_BACKOFF.as_secs_f64() / per_tick)
            .floor()
            .clamp(1.0, 1e6) as u32;
        Backoff {
            entries: HashMap::new(),
            cap,
        }
    }

    /// Whether `scope` sits this tick out; counts the tick down.
    fn sits_out(&mut self, scope: &str) -> bool {
        match self.entries.get_mut(scope) {
            Some(p) if p.left > 0 => {
                p.left -= 1;
                true
            }
            _ => false,
        }
    }

    /// Another failure of `scope`: how many failures in a row, and ticks it sits out.
    fn failed(&mut self, scope: &str) -> (u32, u32) {
        let p = self.entries.entry(scope.to_owned()).or_insert(Penalty {
            failures: 0,
            left: 0,
        });
        p.failures = p.failures.saturating_add(1);
        p.left = (1u32 << (p.failures - 1).min(20)).min(self.cap);
        (p.failures, p.left)
    }

    fn succeeded(&mut self, scope: &str) {
        self.entries.remove(scope);
    }
}

fn runtime_scope(name: &str) -> String {
    format!("runtime {name}")
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
            .filter(|s| s.status == "failed")
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
            .filter(|s| s.status == "failed")
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

/// The hook's output relays, still running when its shell has exited.
pub struct HookPipes(tokio::task::JoinSet<()>);

impl HookPipes {
    /// Waits (at most [`DRAIN`]) for the last lines; a background child still holding the
    /// pipes is not waited for.
    pub async fn drained(mut self) {
        let all = async { while self.0.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(DRAIN, all).await;
    }
}

/// Runs the hook: `sh -c CMD` in its own process group with the change in its environment
/// (less the `hidden` variables), stdin closed, output relayed line by line as
/// [`Event::HookOutput`]. `Err` says why it failed. On timeout or cancellation the whole group
/// is killed; after a normal exit, whatever it left running is its own.
pub async fn run_hook(
    cmd: &str,
    change: &Change,
    hidden: &[String],
    limit: Duration,
    events: &EventSink,
) -> (Result<(), String>, HookPipes) {
    let mut relays = tokio::task::JoinSet::new();
    let result = supervise(cmd, change, hidden, limit, events, &mut relays).await;
    (result, HookPipes(relays))
}

async fn supervise(
    cmd: &str,
    change: &Change,
    hidden: &[String],
    limit: Duration,
    events: &EventSink,
    relays: &mut tokio::task::JoinSet<()>,
) -> Result<(), String> {
    use std::process::Stdio;
    let mut command = tokio::process::Command::new("/bin/sh");
    command
        .args(["-c", cmd])
        .env("PLANNER_RUNTIME", &change.runtime)
        .env("PLANNER_IMAGE", &change.image)
        .env("PLANNER_OLD_ID", &change.old_id)
        .env("PLANNER_NEW_ID", &change.new_id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for var in hidden {
        command.env_remove(var);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start /bin/sh for the hook: {e}"))?;
    let mut group = crate::process::GroupKill::new(child.id());
    if let Some(out) = child.stdout.take() {
        relays.spawn(relay(out, change.runtime.clone(), events.clone()));
    }
    if let Some(err) = child.stderr.take() {
        relays.spawn(relay(err, change.runtime.clone(), events.clone()));
    }
    let status = match tokio::time::timeout(limit, child.wait()).await {
        Err(_) => {
            return Err(format!(
                "still running after {} (--hook-timeout): killed",
                humantime::format_duration(limit)
            ));
        }
        Ok(Err(e)) => return Err(format!("cannot wait for the hook: {e}")),
        Ok(Ok(status)) => status,
    };
    group.disarm();
    exit_error(status).map_or(Ok(()), Err)
}

/// Why an exit status is a failure; `None` for success.
fn exit_error(status: std::process::ExitStatus) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => None,
        (Some(127), _) => Some("exit 127 (command not found?)".into()),
        (Some(code), _) => Some(format!("exit {code}")),
        (None, Some(sig)) => Some(format!("killed by signal {sig}")),
        (None, None) => Some("ended without an exit status".into()),
    }
}

/// Relays `pipe` line by line (lossy UTF-8, long lines cut) as hook output events.
async fn relay(pipe: impl tokio::io::AsyncRead + Unpin, runtime: String, events: EventSink) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut reader = tokio::io::BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut reader)
            .take(HOOK_LINE_CAP as u64 * 4)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let line: String = text
            .trim_end_matches(['\n', '\r'])
            .chars()
            .take(HOOK_LINE_CAP)
            .collect();
        events(&Event::HookOutput {
            runtime: runtime.clone(),
            line,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn decide_follows_the_documented_rule() {
        let (a, b) = (id('a'), id('b'));
        let d = |seen: Option<&String>, before: Option<&String>, after: Option<&String>| {
            decide(
                seen.map(String::as_str),
                before.map(String::as_str),
                after.map(String::as_str),
            )
        };
        // Nothing before, nothing acknowledged: a new image replaces nothing.
        let appeared = Decision::Baseline {
            id: a.clone(),
            appeared: true,
        };
        assert_eq!(d(None, None, Some(&a)), appeared);
        // A fresh state and an unchanged :latest: the baseline, no hook.
        let first = Decision::Baseline {
            id: a.clone(),
            appeared: false,
        };
        assert_eq!(d(None, Some(&a), Some(&a)), first);
        // A fresh state but the ensure moved :latest: a move.
        let moved = Decision::Moved {
            old: a.clone(),
            new: b.clone(),
        };
        assert_eq!(d(None, Some(&a), Some(&b)), moved);
        // The acknowledged id wins over what :latest was before this tick.
        assert_eq!(d(Some(&a), Some(&b), Some(&b)), moved);
        assert_eq!(d(Some(&a), None, Some(&a)), Decision::Nothing);
        // :latest gone: nothing changes.
        assert_eq!(d(Some(&a), Some(&a), None), Decision::Nothing);
        assert_eq!(d(None, None, None), Decision::Nothing);
    }

    #[test]
    fn pauses_are_the_interval_plus_up_to_the_jitter() {
        let (i, j) = (Duration::from_secs(300), Duration::from_secs(30));
        let pauses: Vec<Duration> = (0..2000).map(|_| pause(i, j)).collect();
        assert!(pauses.iter().all(|p| *p >= i && *p <= i + j));
        let distinct: std::collections::HashSet<_> = pauses.iter().collect();
        assert!(distinct.len() > 100, "the jitter is random");
        assert_eq!(pause(i, Duration::ZERO), i);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(600));
        assert_eq!(b.cap, 6);
        assert_eq!(b.failed("h"), (1, 1));
        assert!(b.sits_out("h"));
        assert!(!b.sits_out("h"));
        assert_eq!(b.failed("h"), (2, 2));
        assert_eq!(b.failed("h"), (3, 4));
        assert_eq!(b.failed("h"), (4, 6));
        for _ in 0..40 {
            b.failed("h");
        }
        assert_eq!(b.entries["h"].left, 6);
        b.succeeded("h");
        assert!(!b.sits_out("h"));
        assert!(!b.sits_out("other"));
    }

    /// A runtime from a one-runtime config (not a struct literal: new fields come).
    fn runtime(table: &str) -> Runtime {
        let text = format!("[git]\nallow_insecure_http = true\n[runtimes.a]\n{table}\n");
        let plans = crate::plan::PlanSet::load(None).unwrap();
        let config =
            crate::config::parse(&text, "test", &Default::default(), &|p| plans.source(p)).unwrap();
        config.runtimes["a"].clone()
    }

    fn git(repo: &str) -> Runtime {
        runtime(&format!("repo = \"{repo}\""))
    }

    #[test]
    fn host_is_the_repo_urls_host_and_port_or_the_registry() {
        assert_eq!(
            host_of(&git("https://git.example.com/org/a")),
            "git.example.com"
        );
        assert_eq!(host_of(&git("http://127.0.0.1:8080/x")), "127.0.0.1:8080");
        assert_eq!(host_of(&git("file:///srv/git/x")), "local");
        let registry = runtime("source = \"registry\"\nregistry = \"127.0.0.1:5000/org\"");
        assert_eq!(host_of(&registry), "127.0.0.1:5000");
    }

    #[test]
    fn state_round_trips_and_hostile_files_start_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(State::load(&path), (State::default(), vec![]));
        let mut state = State::default();
        state.runtimes.insert(
            "alpha".into(),
            Seen {
                image: "p/alpha:latest".into(),
                id: id('a'),
                at: 1,
            },
        );
        state.save(&path).unwrap();
        assert_eq!(State::load(&path), (state.clone(), vec![]));

        // One bad entry is dropped alone.
        let text = format!(
            r#"{{"schema":1,"runtimes":{{"alpha":{{"image":"p/alpha:latest","id":"{}","at":1}},"evil":{{"image":"x","id":"../../etc","at":1}}}}}}"#,
            id('a')
        );
        std::fs::write(&path, text).unwrap();
        let (loaded, warnings) = State::load(&path);
        assert_eq!(loaded, state);
        assert!(warnings[0].contains("\"evil\""), "{warnings:?}");

        // Malformed, another schema, a symlink, a FIFO, a directory: fresh, file moved aside.
        type Make<'a> = &'a dyn Fn(&Path);
        let cases: [(&str, Make); 5] = [
            ("malformed", &|p| std::fs::write(p, b"{not json").unwrap()),
            ("schema 9", &|p| {
                std::fs::write(p, br#"{"schema":9,"runtimes":{}}"#).unwrap()
            }),
            ("symbolic links", &|p| {
                std::os::unix::fs::symlink("/etc/passwd", p).unwrap()
            }),
            ("regular", &|p| {
                let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
                // SAFETY: a valid NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            }),
            ("regular", &|p| std::fs::create_dir(p).unwrap()),
        ];
        for (why, make) in cases {
            let _ = std::fs::remove_file(&path);
            make(&path);
            let (loaded, warnings) = State::load(&path);
            assert_eq!(loaded, State::default(), "{why}");
            assert!(warnings[0].contains(why), "{why}: {warnings:?}");
            assert!(warnings[0].contains("state.json.bad"), "{warnings:?}");
            assert!(
                std::fs::symlink_metadata(&path).is_err(),
                "{why}: moved aside"
            );
            let aside = path.with_extension("json.bad");
            let _ = std::fs::remove_dir(&aside);
            let _ = std::fs::remove_file(&aside);
        }
    }

    #[test]
    fn state_over_the_cap_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let f = File::create(&path).unwrap();
        f.set_len(STATE_CAP + 1).unwrap();
        let (loaded, warnings) = State::load(&path);
        assert_eq!(loaded, State::default());
        assert!(warnings[0].contains("byte limit"), "{warnings:?}");
    }

    fn collect() -> (EventSink, Arc<std::sync::Mutex<Vec<Event>>>) {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        (
            Arc::new(move |e: &Event| s.lock().unwrap().push(e.clone())),
            seen,
        )
    }

    fn change() -> Change {
        Change {
            runtime: "alpha".into(),
            image: "p/alpha:latest".into(),
            old_id: id('a'),
            new_id: id('b'),
        }
    }

    #[tokio::test]
    async fn hook_gets_the_change_and_its_output_is_relayed() {
        let (sink, seen) = collect();
        // HOME stands in for the token variable (set_var is unsound beside other tests).
        let cmd = r#"echo "$PLANNER_RUNTIME $PLANNER_IMAGE $PLANNER_OLD_ID $PLANNER_NEW_ID ${HOME:-unset}""#;
        let hidden = vec!["HOME".to_owned()];
        let (result, output) =
            run_hook(cmd, &change(), &hidden, Duration::from_secs(30), &sink).await;
        output.drained().await;
        result.unwrap();
        let lines: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::HookOutput { line, .. } => Some(line.clone()),
                _ => None,
            })
            .collect();
        let c = change();
        let want = format!("alpha p/alpha:latest {} {} unset", c.old_id, c.new_id);
        assert_eq!(lines, [want]);
    }

    #[tokio::test]
    async fn hook_failures_say_why() {
        let (sink, _) = collect();
        let run = |cmd: &'static str, limit| {
            let sink = sink.clone();
            async move { run_hook(cmd, &change(), &[], limit, &sink).await.0 }
        };
        assert_eq!(
            run("exit 3", Duration::from_secs(30)).await.unwrap_err(),
            "exit 3"
        );
        let missing = run("no-such-command-xyz", Duration::from_secs(30)).await;
        assert!(missing.unwrap_err().contains("127"));
        let started = Instant::now();
        let slow = run("sleep 60 & wait", Duration::from_millis(300)).await;
        assert!(slow.unwrap_err().contains("--hook-timeout"));
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}
