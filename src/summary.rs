//! The end of a run, per runtime: whether it is ensured, its commit and image, what ran, the
//! first error. `ensure` and `watch` compute it; `report` renders it (a table, NDJSON).

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::exec::Outcome;
use crate::plan::{Decided, Graph, NodeId, Status};
use crate::steps::outputs::{Image, Tagged};
use crate::steps::publish::Published;

/// Whether a runtime ended ensured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Ensured,
    Failed,
}

impl RunStatus {
    /// `ensured` or `failed`, as tables and JSON write it.
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Ensured => "ensured",
            RunStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RuntimeSummary {
    pub runtime: String,
    pub status: RunStatus,
    /// The revision resolved: a git runtime's commit, a registry runtime's manifest digest.
    pub commit: Option<String>,
    /// The commit-pinned tag `{image_prefix}{runtime}:{sha12}` (`None` when failed).
    pub image: Option<String>,
    /// The engine's image ID (`sha256:…`) the run left, read from the `build`/`pull` step's
    /// output (`None` when failed).
    pub image_id: Option<String>,
    /// Where the image sits in a registry for good, `registry/repository@sha256:…`: the
    /// published reference, or a registry runtime's pulled digest (`None` when failed or none).
    pub digest: Option<String>,
    /// Where a `publish` step left the image (`registry/repository@digest`, the immutable
    /// reference registry-mode consumers pull), whether it pushed now or found it there.
    pub published: Option<String>,
    /// Step kinds that ran for this runtime (shared steps count for every runtime).
    pub ran: Vec<String>,
    pub error: Option<String>,
    /// Time spent in this runtime's steps (shared steps count for each runtime).
    pub duration: std::time::Duration,
}

/// How many of `rows` failed.
pub fn failed(rows: &[RuntimeSummary]) -> usize {
    rows.iter()
        .filter(|r| r.status == RunStatus::Failed)
        .count()
}

/// The image the steps of a runtime (`mine`) left, as their outputs say: a build's or pull's
/// image, else (when those were not needed) the image published or tagged `:latest`.
fn image_id(outcome: &Outcome, mine: &[NodeId]) -> Option<String> {
    let outputs = || mine.iter().filter_map(|id| outcome.outputs.get(id));
    outputs()
        .find_map(|o| o.get::<Image>().map(|i| i.id.clone()))
        .or_else(|| outputs().find_map(|o| o.get::<Published>().map(|p| p.id.clone())))
        .or_else(|| outputs().find_map(|o| o.get::<Tagged>().map(|t| t.id.clone())))
}

/// Summarises the outcome per requested runtime, in request order.
pub fn summarize(
    graph: &Graph,
    decided: &Decided,
    outcome: &Outcome,
    runtimes: &[String],
) -> Vec<RuntimeSummary> {
    // Each runtime's steps in dependency order, and the steps that ran, found once: the
    // summary is linear in the graph, not in runtimes × steps.
    let mut steps: HashMap<&str, Vec<NodeId>> = HashMap::new();
    for &id in graph.order() {
        for r in &graph.node(id).runtimes {
            steps.entry(r.name.as_str()).or_default().push(id);
        }
    }
    let ran: HashSet<NodeId> = outcome.ran.iter().copied().collect();
    let run = Run {
        graph,
        decided,
        outcome,
        ran: &ran,
    };
    runtimes
        .iter()
        .map(|rt| {
            let mine = steps.get(rt.as_str()).map_or(&[][..], Vec::as_slice);
            summarize_one(&run, rt, mine)
        })
        .collect()
}

/// What a run left, as the summary reads it.
struct Run<'a> {
    graph: &'a Graph,
    decided: &'a Decided,
    outcome: &'a Outcome,
    ran: &'a HashSet<NodeId>,
}

/// The summary of runtime `rt`, whose steps are `mine` (in dependency order).
fn summarize_one(run: &Run<'_>, rt: &str, mine: &[NodeId]) -> RuntimeSummary {
    let Run {
        graph,
        decided,
        outcome,
        ran,
    } = *run;
    let error = mine.iter().find_map(|id| match outcome.status.get(id) {
        Some(Status::Failed) => Some(format!(
            "{}: {}",
            graph.node(*id).kind,
            outcome.detail.get(id).cloned().unwrap_or_default()
        )),
        Some(Status::Blocked) => Some(format!(
            "{}: blocked ({})",
            graph.node(*id).kind,
            outcome.detail.get(id).cloned().unwrap_or_default()
        )),
        None => Some(format!("{}: did not finish", graph.node(*id).kind)),
        _ => None,
    });
    // The revision the primary root of its goal answered (its commit or digest; a plan may
    // have other roots, such as a released version, which are not its commit).
    let commit = mine
        .last()
        .and_then(|&goal| graph.resolve_of(goal))
        .and_then(|root| decided.revisions.get(&root).cloned());
    let runtime = mine
        .last()
        .and_then(|&goal| graph.node(goal).runtimes.iter().find(|r| r.name == rt));
    let ok = error.is_none();
    let image = commit
        .as_ref()
        .zip(runtime)
        .filter(|_| ok)
        .map(|(c, runtime)| runtime.pinned_tag(c));
    let published = mine.iter().find_map(|id| {
        let output = outcome.outputs.get(id)?;
        Some(output.get::<Published>()?.reference.clone())
    });
    let image_id = image_id(outcome, mine).filter(|_| ok);
    let pulled = runtime
        .and_then(|r| r.registry_image())
        .zip(commit.as_ref())
        .map(|(image, digest)| image.with_digest(digest));
    let digest = published.clone().or(pulled).filter(|_| ok);
    let ran = mine
        .iter()
        .filter(|id| ran.contains(id))
        .map(|id| graph.node(*id).kind.name().to_owned())
        .collect();
    let duration = mine.iter().filter_map(|id| outcome.durations.get(id)).sum();
    RuntimeSummary {
        runtime: rt.to_owned(),
        status: match error {
            None => RunStatus::Ensured,
            Some(_) => RunStatus::Failed,
        },
        commit,
        image,
        image_id,
        digest,
        published: published.filter(|_| ok),
        ran,
        error,
        duration,
    }
}
