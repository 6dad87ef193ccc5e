//! Execution: resolving heads, then running the decided graph with bounded concurrency,
//! per-key cross-process locks, and a re-check of materialization once the lock is held.
//!
//! The scheduler ([`scheduler`]) knows nothing about the work: it talks to an [`Effects`]
//! implementation. `planner-steps`' `RealWorld` is the real one (git host, Docker engine,
//! cache dir); unit tests use in-memory ones.
pub mod event;
pub mod scheduler;

use std::collections::HashMap;
use std::future::Future;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

pub use event::{Event, Sink, StepRef};
pub use scheduler::{Options, Outcome, run};

use crate::error::StepError;
use crate::key::Key;
use crate::output::{Found, Output};
use crate::plan::keys::keys_for;
use crate::plan::{Answer, Graph, Node, NodeId, Resolved, World};

/// What running a step needs.
pub struct RunRequest<'a> {
    pub node: &'a Node,
    pub key: &'a Key,
    /// The revision its primary root answered ([`Graph::resolve_of`]).
    pub revision: &'a str,
    /// Every root it descends from, with its answer ([`Graph::answers`]).
    pub answers: Vec<Answer<'a>>,
    /// Output of the step's input need ([`Graph::input_of`]).
    pub input: Option<Output>,
    /// The inputs discovered for its key, for a kind that has some (a build's bases).
    pub found: Option<&'a Found>,
    pub step: StepRef,
    pub sink: &'a Sink,
}

/// The side effects the scheduler drives.
pub trait Effects: World {
    type Lock: Send;
    /// A root's answer: where its source is now (or, offline, the last recorded answer).
    fn resolve(
        &self,
        node: &Node,
        key: &Key,
        offline: bool,
    ) -> impl Future<Output = Result<Resolved, StepError>> + Send;
    /// Takes the per-key lock, reporting through `on_wait` if another process holds it.
    fn lock(
        &self,
        key: &Key,
        on_wait: &(dyn Fn() + Sync),
    ) -> impl Future<Output = Result<Self::Lock, StepError>> + Send;
    /// Does the step's work and commits its record.
    fn run(&self, req: RunRequest<'_>) -> impl Future<Output = Result<Output, StepError>> + Send;
}

/// Resolves every root node concurrently (at most `limit` at once).
/// Emits events when `sink` is given (ensure); `plan` passes a null sink.
pub async fn resolve_all<E: Effects>(
    graph: &Graph,
    effects: &E,
    offline: bool,
    limit: usize,
    sink: &Sink,
) -> HashMap<NodeId, Result<Resolved, String>> {
    let keys = keys_for(graph, &HashMap::new(), &HashMap::new());
    let roots: Vec<NodeId> = graph
        .order()
        .iter()
        .copied()
        .filter(|&n| graph.node(n).kind.is_root())
        .collect();
    let mut pending = roots.into_iter();
    let mut running = FuturesUnordered::new();
    let mut out = HashMap::new();
    loop {
        while running.len() < limit.max(1) {
            let Some(id) = pending.next() else { break };
            let key = &keys[&id];
            running.push(async move {
                let step = StepRef::new(graph, id, Some(key));
                let started = std::time::Instant::now();
                let res = effects.resolve(graph.node(id), key, offline).await;
                (id, step, started.elapsed(), res)
            });
        }
        let Some((id, step, duration, res)) = running.next().await else {
            break;
        };
        let res = res.map_err(|e| planner_base::mask::mask(&e.to_string()).into_owned());
        match &res {
            Ok(r) if r.status == crate::plan::Status::Skip => sink(&Event::Skipped {
                step,
                reason: r.reason.clone(),
            }),
            Ok(r) => sink(&Event::Finished {
                step,
                duration,
                detail: r.reason.clone(),
            }),
            Err(e) => sink(&Event::Failed {
                step,
                duration,
                error: e.clone(),
            }),
        }
        out.insert(id, res);
    }
    out
}

#[cfg(test)]
mod tests;
