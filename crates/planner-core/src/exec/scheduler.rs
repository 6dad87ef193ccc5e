//! The scheduler: runs the `Run` steps of a decided graph in dependency order.
//!
//! A step starts when all its needs have their outputs. A key decided from a hint (found
//! inputs from what an earlier run or another machine left: [`Found::hinted`]) is first derived
//! again from the step's input (its verified checkout); when it changes, the steps that
//! follow are keyed again as they start. Before running, a step takes its key's lock and
//! asks the world again: if another process produced the output meanwhile, the step is
//! skipped ("someone beat us to it"). Only then do clones and builds take a slot of the
//! `--jobs` semaphore (other steps are cheap and unbounded), so a step waiting for another
//! process's lock holds no slot. A failed step blocks its dependents; other
//! runtimes go on unless `fail_fast`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::Semaphore;

use planner_base::mask::mask;

use super::{Effects, Event, RunRequest, Sink, StepRef};
use crate::key::Key;
use crate::output::{Found, Output};
use crate::plan::keys::key_of;
use crate::plan::{
    Decided, DiscoverRequest, Discovery, Graph, NodeId, Probe, ProbeRequest, Status,
};

/// Scheduling options.
#[derive(Debug, Clone)]
pub struct Options {
    /// At most this many clones and builds at once.
    pub jobs: usize,
    /// Stop starting steps and cancel running ones at the first failure.
    pub fail_fast: bool,
}

/// How each step ended.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Final status per node: `Skip` (was materialized), `Run` (ran and succeeded), `Failed`, `Blocked`.
    pub status: HashMap<NodeId, Status>,
    /// The reason or error text per node.
    pub detail: HashMap<NodeId, String>,
    pub outputs: HashMap<NodeId, Output>,
    /// Steps that ran (not skipped on re-check), in completion order.
    pub ran: Vec<NodeId>,
    /// How long each step that ran (or failed) took, lock wait included.
    pub durations: HashMap<NodeId, Duration>,
}

/// Runs the decided graph. Emits an event for every transition.
pub async fn run<E: Effects>(
    graph: &Graph,
    decided: &Decided,
    effects: &E,
    opts: &Options,
    sink: &Sink,
) -> Outcome {
    let jobs = Semaphore::new(opts.jobs.max(1));
    let mut s = Sched::new(graph, decided, effects, opts, sink, &jobs);
    s.announce_static();
    s.drive().await;
    s.out
}

struct Sched<'a, E> {
    ctx: StepCtx<'a, E>,
    opts: &'a Options,
    /// The keys decided, completed as steps whose keys were not known yet start.
    keys: HashMap<NodeId, Key>,
    found: HashMap<NodeId, Found>,
    waiting_on: HashMap<NodeId, usize>,
    ready: VecDeque<NodeId>,
    cancelled: bool,
    out: Outcome,
}

/// A finished step: its output (and the re-check's reason when it found the work done), and
/// the key it ran under with the inputs discovered for it, when they were completed late.
type Done = (
    NodeId,
    Duration,
    Result<(Output, Option<String>), String>,
    Option<(Key, Option<Found>)>,
);

impl<'a, E: Effects> Sched<'a, E> {
    fn new(
        graph: &'a Graph,
        decided: &'a Decided,
        effects: &'a E,
        opts: &'a Options,
        sink: &'a Sink,
        jobs: &'a Semaphore,
    ) -> Self {
        let mut s = Sched {
            ctx: StepCtx {
                graph,
                decided,
                effects,
                sink,
                jobs,
            },
            opts,
            keys: decided.keys.clone(),
            found: decided.found.clone(),
            waiting_on: HashMap::new(),
            ready: VecDeque::new(),
            cancelled: false,
            out: Outcome {
                outputs: decided.outputs.clone(),
                ..Default::default()
            },
        };
        for &id in graph.order() {
            if s.runnable(id) {
                let n = graph
                    .needs(id)
                    .into_iter()
                    .filter(|&n| s.runnable(n))
                    .count();
                s.waiting_on.insert(id, n);
                if n == 0 {
                    s.ready.push_back(id);
                }
            }
        }
        s
    }

    /// Whether the scheduler runs `id`: decided `Run`, and not of a root kind (those were
    /// answered by [`super::resolve_all`] before deciding).
    fn runnable(&self, id: NodeId) -> bool {
        !self.ctx.graph.node(id).kind.is_root() && self.status_of(id) == Status::Run
    }

    fn status_of(&self, id: NodeId) -> Status {
        self.ctx
            .decided
            .decisions
            .get(&id)
            .map_or(Status::Blocked, |d| d.status)
    }

    fn step_ref(&self, id: NodeId) -> StepRef {
        StepRef::new(self.ctx.graph, id, self.keys.get(&id))
    }

    /// Reports the steps decided as skipped, blocked or failed before anything runs.
    fn announce_static(&mut self) {
        for &id in self.ctx.graph.order() {
            let Some(d) = self.ctx.decided.decisions.get(&id) else {
                continue;
            };
            if self.ctx.graph.node(id).kind.is_root() {
                self.out.status.insert(
                    id,
                    if d.status == Status::Failed {
                        Status::Failed
                    } else {
                        Status::Skip
                    },
                );
                self.out.detail.insert(id, d.reason.clone());
                continue;
            }
            let step = self.step_ref(id);
            let event = match d.status {
                Status::Skip => Event::Skipped {
                    step,
                    reason: d.reason.clone(),
                },
                Status::Blocked => Event::Blocked {
                    step,
                    reason: d.reason.clone(),
                },
                Status::Failed => Event::Failed {
                    step,
                    duration: Duration::ZERO,
                    error: d.reason.clone(),
                },
                Status::Run => continue,
            };
            (self.ctx.sink)(&event);
            self.out.status.insert(id, d.status);
            self.out.detail.insert(id, d.reason.clone());
        }
    }

    async fn drive(&mut self) {
        let mut running = FuturesUnordered::new();
        loop {
            while let Some(id) = self.ready.pop_front() {
                if self.cancelled {
                    self.block(id, "cancelled by --fail-fast".into());
                    continue;
                }
                let keyed = self.keyed(id);
                running.push(run_step(self.ctx, id, self.input_of(id), keyed));
            }
            let Some(done) = running.next().await else {
                break;
            };
            self.finish(done);
            if self.cancelled && !running.is_empty() {
                drop(running);
                running = FuturesUnordered::new();
                self.block_unfinished();
            }
        }
        self.block_unfinished();
    }

    fn input_of(&self, id: NodeId) -> Option<Output> {
        let need = self.ctx.graph.input_of(id)?;
        self.out.outputs.get(&need).cloned()
    }

    /// What a step's key is made of: its decided key, or what completes it.
    fn keyed(&self, id: NodeId) -> Keyed {
        let input = self
            .ctx
            .graph
            .input_of(id)
            .and_then(|n| self.keys.get(&n).cloned());
        match self.keys.get(&id) {
            Some(key) => Keyed::Known(key.clone(), self.found.get(&id).cloned(), input),
            None => Keyed::Late { input },
        }
    }

    fn finish(&mut self, (id, duration, result, late): Done) {
        if let Some((key, found)) = late {
            let decided = self.keys.insert(id, key.clone());
            if decided.is_some_and(|d| d != key) {
                self.forget_dependent_keys(id);
            }
            if let Some(found) = found {
                self.found.insert(id, found);
            }
        }
        let step = self.step_ref(id);
        self.out.durations.insert(id, duration);
        match result {
            Ok((output, skipped)) => {
                match skipped {
                    Some(reason) => {
                        (self.ctx.sink)(&Event::Skipped {
                            step,
                            reason: reason.clone(),
                        });
                        self.out.status.insert(id, Status::Skip);
                        self.out.detail.insert(id, reason);
                    }
                    None => {
                        (self.ctx.sink)(&Event::Finished {
                            step,
                            duration,
                            detail: output.describe(),
                        });
                        self.out.status.insert(id, Status::Run);
                        self.out.ran.push(id);
                    }
                }
                self.out.outputs.insert(id, output);
                self.release_dependents(id);
            }
            Err(error) => {
                (self.ctx.sink)(&Event::Failed {
                    step,
                    duration,
                    error: error.clone(),
                });
                self.out.status.insert(id, Status::Failed);
                self.out.detail.insert(id, error);
                self.cancelled |= self.opts.fail_fast;
                self.block_dependents(id);
            }
        }
    }

    /// After `id` ran under another key than decided: the decided keys of the steps that
    /// follow it and have yet to run were computed from the old one, so they are completed
    /// again as they start.
    fn forget_dependent_keys(&mut self, id: NodeId) {
        for dep in self.ctx.graph.dependents(id) {
            if self.waiting_on.contains_key(&dep) && self.keys.remove(&dep).is_some() {
                self.found.remove(&dep);
                self.forget_dependent_keys(dep);
            }
        }
    }

    fn release_dependents(&mut self, id: NodeId) {
        for dep in self.ctx.graph.dependents(id) {
            if let Some(n) = self.waiting_on.get_mut(&dep) {
                *n -= 1;
                if *n == 0 {
                    self.ready.push_back(dep);
                }
            }
        }
    }

    fn block_dependents(&mut self, id: NodeId) {
        let name = self.ctx.graph.node(id).display_id();
        for dep in self.ctx.graph.dependents(id) {
            if self.waiting_on.contains_key(&dep) && !self.out.status.contains_key(&dep) {
                self.block(dep, format!("needs {name}, which failed"));
                self.block_dependents(dep);
            }
        }
    }

    fn block(&mut self, id: NodeId, reason: String) {
        self.waiting_on.remove(&id);
        (self.ctx.sink)(&Event::Blocked {
            step: self.step_ref(id),
            reason: reason.clone(),
        });
        self.out.status.insert(id, Status::Blocked);
        self.out.detail.insert(id, reason);
    }

    /// After cancellation: everything that was to run and has not ended is blocked.
    fn block_unfinished(&mut self) {
        let unfinished: Vec<NodeId> = self
            .ctx
            .graph
            .order()
            .iter()
            .copied()
            .filter(|id| self.waiting_on.contains_key(id) && !self.out.status.contains_key(id))
            .collect();
        for id in unfinished {
            self.block(id, "cancelled by --fail-fast".into());
        }
    }
}

/// What running one step needs from the scheduler (shared references only, so it is `Copy`).
struct StepCtx<'a, E> {
    graph: &'a Graph,
    decided: &'a Decided,
    effects: &'a E,
    sink: &'a Sink,
    jobs: &'a Semaphore,
}

impl<E> Clone for StepCtx<'_, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for StepCtx<'_, E> {}

/// A step's key as it starts.
enum Keyed {
    /// Decided, with the inputs discovered for it and its input's key.
    Known(Key, Option<Found>, Option<Key>),
    /// Not known when deciding: completed from its input's key and output (and, for a
    /// discovering kind, what it discovers from that output).
    Late { input: Option<Key> },
}

/// Locks, re-checks, and runs one step. `Ok((output, Some(reason)))` when the re-check found it done.
async fn run_step<E: Effects>(
    ctx: StepCtx<'_, E>,
    id: NodeId,
    input: Option<Output>,
    keyed: Keyed,
) -> Done {
    let started = Instant::now();
    let (key, found, late) = match complete_key(&ctx, id, input.as_ref(), keyed).await {
        Ok(k) => k,
        Err(e) => {
            let error = mask(&e.to_string()).into_owned();
            return (id, started.elapsed(), Err(error), None);
        }
    };
    let result = lock_check_run(&ctx, id, input, &key, found.as_ref(), late).await;
    (
        id,
        started.elapsed(),
        result.map_err(|e| mask(&e.to_string()).into_owned()),
        late.then_some((key, found)),
    )
}

/// The step's key and discovered inputs, and whether they were completed now.
async fn complete_key<E: Effects>(
    ctx: &StepCtx<'_, E>,
    id: NodeId,
    input: Option<&Output>,
    keyed: Keyed,
) -> Result<(Key, Option<Found>, bool), crate::error::StepError> {
    let input_key = match keyed {
        Keyed::Known(key, found, input_key) => {
            return rederive(ctx, id, input, key, found, input_key).await;
        }
        Keyed::Late { input } => input,
    };
    let (graph, node) = (ctx.graph, ctx.graph.node(id));
    let unknown = |why: &str| {
        crate::error::StepError::Internal(format!(
            "the key of {} is still not known after its input ran: {why}",
            node.display_id()
        ))
    };
    let root = graph
        .resolve_of(id)
        .ok_or_else(|| unknown("it has no root"))?;
    let revision = ctx
        .decided
        .revisions
        .get(&root)
        .ok_or_else(|| unknown("no revision"))?;
    let found = if node.kind.get().discovers() {
        let req = DiscoverRequest {
            graph,
            id,
            node,
            revision,
            previous_revision: None,
            answers: graph.answers(id, &ctx.decided.revisions),
            input,
        };
        match ctx.effects.discover(req).await? {
            Discovery::Known(found) => Some(found),
            Discovery::Unknown { reason } => return Err(unknown(&reason)),
        }
    } else {
        None
    };
    let revisions = &ctx.decided.revisions;
    let key = key_of(
        graph,
        id,
        revisions,
        found.as_ref(),
        input_key.as_ref(),
        input,
    )
    .ok_or_else(|| unknown("its inputs give none"))?;
    Ok((key, found, true))
}

/// A decided key whose discovered inputs came from a hint (the shared cache's pointer, an
/// image's labels) is derived again once the step's input is there (its verified checkout):
/// what planner reads itself decides, never the hint ([`Found::over_hint`]).
/// Returns the key, the inputs, and whether the key changed.
async fn rederive<E: Effects>(
    ctx: &StepCtx<'_, E>,
    id: NodeId,
    input: Option<&Output>,
    key: Key,
    found: Option<Found>,
    input_key: Option<Key>,
) -> Result<(Key, Option<Found>, bool), crate::error::StepError> {
    let (graph, node) = (ctx.graph, ctx.graph.node(id));
    let (Some(hinted), Some(_)) = (found.as_ref().filter(|f| f.hinted()), input) else {
        return Ok((key, found, false));
    };
    let revision = graph
        .resolve_of(id)
        .and_then(|root| ctx.decided.revisions.get(&root));
    let Some(revision) = revision else {
        return Ok((key, found, false));
    };
    let req = DiscoverRequest {
        graph,
        id,
        node,
        revision,
        previous_revision: None,
        answers: graph.answers(id, &ctx.decided.revisions),
        input,
    };
    let derived = match ctx.effects.discover(req).await? {
        Discovery::Known(derived) if !derived.hinted() => derived,
        // The input gave nothing to read: the hint stands.
        _ => return Ok((key, found, false)),
    };
    let derived = hinted.over_hint(derived, &node.display_id());
    let revisions = &ctx.decided.revisions;
    let rekeyed = key_of(
        graph,
        id,
        revisions,
        Some(&derived),
        input_key.as_ref(),
        input,
    );
    match rekeyed {
        Some(new) if new != key => Ok((new, Some(derived), true)),
        _ => Ok((key, Some(derived), false)),
    }
}

async fn lock_check_run<E: Effects>(
    ctx: &StepCtx<'_, E>,
    id: NodeId,
    input: Option<Output>,
    key: &Key,
    found: Option<&Found>,
    late: bool,
) -> Result<(Output, Option<String>), crate::error::StepError> {
    let StepCtx {
        graph,
        decided,
        effects,
        sink,
        jobs,
    } = *ctx;
    let node = graph.node(id);
    let root = graph
        .resolve_of(id)
        .expect("every step descends from a root");
    let commit = &decided.revisions[&root];
    let step = StepRef::new(graph, id, Some(key));
    let on_wait = || {
        sink(&Event::Waiting {
            step: step.clone(),
            reason: "another planner process holds this step's lock".into(),
        })
    };
    let _lock = effects.lock(key, &on_wait).await?;
    let probe = effects
        .probe(ProbeRequest {
            graph,
            id,
            node,
            key,
            revision: commit,
            previous_revision: None,
            answers: graph.answers(id, &decided.revisions),
            input: input.as_ref(),
            found,
        })
        .await?;
    match probe {
        // Moving a tag is idempotent and cheap: it always runs once decided, so the dry run
        // stays exact even when a rebuild reproduces the image ID :latest already names.
        Probe::Present { .. } if node.kind.always_runs() => {}
        Probe::Present { output, reason } => {
            return Ok((
                output,
                Some(format!("done meanwhile by another process: {reason}")),
            ));
        }
        Probe::Missing { .. } | Probe::Retag { .. } => {}
    }
    // One reason per step, computed once: the run says what the plan said.
    let mut reason = decided
        .decisions
        .get(&id)
        .map_or_else(String::new, |d| d.reason.clone());
    // Notes on inputs discovered only now (a base that could not be checked for updates);
    // those discovered when deciding are in the decided reason already.
    for note in found.filter(|_| late).map_or(&[][..], |f| f.notes()) {
        reason.push_str("; ");
        reason.push_str(note);
    }
    // The permit is taken only now, with the key's lock held and the work known to be
    // needed: a step waiting for another process's lock must not hold a `--jobs` slot.
    let _permit = if node.kind.heavy() {
        Some(jobs.acquire().await.expect("semaphore is never closed"))
    } else {
        None
    };
    sink(&Event::Started {
        step: step.clone(),
        reason,
    });
    let output = effects
        .run(RunRequest {
            node,
            key,
            revision: commit,
            answers: graph.answers(id, &decided.revisions),
            input,
            found,
            step,
            sink,
        })
        .await?;
    Ok((output, None))
}
