//! Demand-driven decisions: which steps run, which are skipped, and why.
//!
//! Starting from the goals, a step runs only if its output is needed and not materialized;
//! only then are its needs needed. Materialization is asked of a [`World`] (the real one
//! checks the Docker engine and the cache dir), so `plan`, `ensure --dry-run` and `ensure`
//! share this one function and cannot disagree.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use futures_util::StreamExt;

use super::graph::{Graph, NodeId};
use super::keys::{key_of, keys_for};
use crate::error::StepError;
use crate::key::Key;
pub use crate::kind::Via;
use crate::kind::{Answer, Node};
use crate::output::{Found, Output, Revision};

/// What a step's decision is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Skip,
    Run,
    Blocked,
    Failed,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Skip => "skip",
            Status::Run => "run",
            Status::Blocked => "blocked",
            Status::Failed => "failed",
        }
    }
}

/// A decision with the reason a user reads and, for a step that runs, how (where its kind
/// has more than one way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub status: Status,
    pub reason: String,
    pub via: Option<Via>,
}

impl Decision {
    fn new(status: Status, reason: impl Into<String>) -> Self {
        Decision {
            status,
            reason: reason.into(),
            via: None,
        }
    }

    /// A decision to run a step of `kind` the way its kind runs when nothing is found.
    fn run(kind: super::StepKind, reason: impl Into<String>) -> Self {
        Decision {
            via: kind.get().runs_via(),
            ..Decision::new(Status::Run, reason)
        }
    }
}

/// What the world says about a step's output.
#[derive(Debug, Clone)]
pub enum Probe {
    Present {
        output: Output,
        reason: String,
    },
    Missing {
        reason: String,
    },
    /// Not materialized, but running it needs none of its needs: the build's image exists
    /// under another of its tags, or in the shared cache (`via`), so the step only tags (or
    /// pulls) it (no clone, no verify, no build).
    Retag {
        reason: String,
        via: Via,
    },
}

/// The answer of a root step (resolve-head, resolve-digest, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The revision the root step answered (a commit, a manifest digest, …).
    pub revision: String,
    /// The revision recorded by the previous run, if any.
    pub previous: Option<String>,
    /// Whether this came from the network (`Run`) or a record (`--offline`, `Skip`).
    pub status: Status,
    pub reason: String,
}

/// Everything a probe may need to know about its step.
pub struct ProbeRequest<'a> {
    pub graph: &'a Graph,
    pub id: NodeId,
    pub node: &'a Node,
    pub key: &'a Key,
    /// The revision its primary root answered ([`Graph::resolve_of`]).
    pub revision: &'a str,
    pub previous_revision: Option<&'a str>,
    /// Every root it descends from, with its answer ([`Graph::answers`]).
    pub answers: Vec<Answer<'a>>,
    /// The probed output of the step's input need, when it is materialized.
    pub input: Option<&'a Output>,
    /// The inputs discovered for its key ([`World::discover`]), for a kind that has some.
    pub found: Option<&'a Found>,
}

/// What a discovering step needs: its root's answer and, once it has run, its input's output.
pub struct DiscoverRequest<'a> {
    pub graph: &'a Graph,
    pub id: NodeId,
    pub node: &'a Node,
    pub revision: &'a str,
    pub previous_revision: Option<&'a str>,
    /// Every root it descends from, with its answer ([`Graph::answers`]).
    pub answers: Vec<Answer<'a>>,
    /// Its input's output: given before running (the verified checkout), `None` when deciding.
    pub input: Option<&'a Output>,
}

/// The inputs of a key found in the world, or why they are not known yet.
#[derive(Debug, Clone)]
pub enum Discovery {
    Known(Found),
    /// Known only once the step's input has run (its checkout read): the step runs, and the
    /// reason says why.
    Unknown {
        reason: String,
    },
}

/// The side of the world decisions look at. Implemented for real by `planner-steps`.
pub trait World: Sync {
    fn probe(&self, req: ProbeRequest<'_>)
    -> impl Future<Output = Result<Probe, StepError>> + Send;

    /// The inputs a discovering kind's key covers beyond the graph ([`crate::kind::Kind::discovers`]).
    fn discover(
        &self,
        req: DiscoverRequest<'_>,
    ) -> impl Future<Output = Result<Discovery, StepError>> + Send;
}

/// The decided graph: a decision, a key (when known) and known outputs per node.
#[derive(Debug, Default)]
pub struct Decided {
    pub decisions: HashMap<NodeId, Decision>,
    pub keys: HashMap<NodeId, Key>,
    pub outputs: HashMap<NodeId, Output>,
    /// Each root node's revision (commit or digest).
    pub revisions: HashMap<NodeId, String>,
    /// The inputs discovered for discovering nodes (a build's base images), when known.
    pub found: HashMap<NodeId, Found>,
}

/// Decides every node, given the resolve-head answers (`Err` holds the masked error text).
pub async fn decide<W: World>(
    graph: &Graph,
    resolutions: &HashMap<NodeId, Result<Resolved, String>>,
    world: &W,
) -> Decided {
    let mut d = Decided::default();
    let mut previous = HashMap::new();
    for (&id, res) in resolutions {
        let decision = match res {
            Ok(r) => {
                d.revisions.insert(id, r.revision.clone());
                d.outputs
                    .insert(id, Output::new(Revision(r.revision.clone())));
                if let Some(p) = &r.previous {
                    previous.insert(id, p.clone());
                }
                Decision::new(r.status, r.reason.clone())
            }
            Err(e) => Decision::new(Status::Failed, e.clone()),
        };
        d.decisions.insert(id, decision);
    }
    let (unknown, probed) = discover_all(graph, &mut d, &previous, world).await;
    d.keys = keys_for(graph, &d.revisions, &d.found);
    let mut walk = Walk {
        graph,
        world,
        d,
        previous,
        needed: graph.goals().iter().copied().collect(),
        why_not: HashMap::new(),
        probed,
        unknown,
    };
    walk.keys_from_outputs().await;
    for &id in graph.order().iter().rev() {
        walk.visit(id).await;
    }
    walk.block_dependents_of_failures();
    walk.d
}

/// How many discoveries (a few engine inspects, a registry HEAD per new base) run at once.
const DISCOVER_CONCURRENCY: usize = 16;

/// Asks the world for the discovered inputs of every discovering node whose root answered.
/// Known ones go into `d.found`; a failure decides the node `Failed`; the rest are returned
/// with the reason they run (their inputs are known only once their input has run). The
/// probes of inputs made on the way are returned too, for the walk to reuse.
async fn discover_all<W: World>(
    graph: &Graph,
    d: &mut Decided,
    previous: &HashMap<NodeId, String>,
    world: &W,
) -> (
    HashMap<NodeId, Result<String, String>>,
    HashMap<NodeId, Probe>,
) {
    // The keys of inputs that need no discovery (a verify's), to probe them.
    let keys = keys_for(graph, &d.revisions, &HashMap::new());
    let d_ref: &Decided = d;
    let asks = graph.order().iter().copied().filter_map(|id| {
        let node = graph.node(id);
        if !node.kind.get().discovers() {
            return None;
        }
        let root = graph.resolve_of(id)?;
        let revision = d_ref.revisions.get(&root)?;
        let previous_revision = previous.get(&root).map(String::as_str);
        let keys = &keys;
        Some(async move {
            let req = |input| DiscoverRequest {
                graph,
                id,
                node,
                revision,
                previous_revision,
                answers: graph.answers(id, &d_ref.revisions),
                input,
            };
            let first = world.discover(req(None)).await;
            if !needs_input(&first) {
                return (id, first, None);
            }
            // Not known from what the engine holds, or only from the shared cache's pointer:
            // from the input's output, if it is materialized (a verified checkout whose image
            // was removed). A pointer only saves a clone; a checkout planner holds decides.
            let Some((input, key)) = graph.input_of(id).and_then(|i| Some((i, keys.get(&i)?)))
            else {
                return (id, first, None);
            };
            let probe = world
                .probe(ProbeRequest {
                    graph,
                    id: input,
                    node: graph.node(input),
                    key,
                    revision,
                    previous_revision,
                    answers: graph.answers(input, &d_ref.revisions),
                    input: None,
                    found: None,
                })
                .await;
            match probe {
                Ok(Probe::Present { output, reason }) => {
                    let answer = match (&first, world.discover(req(Some(&output))).await) {
                        (Ok(Discovery::Known(hinted)), Ok(Discovery::Known(derived))) => Ok(
                            Discovery::Known(hinted.over_hint(derived, &node.display_id())),
                        ),
                        (_, answer) => answer,
                    };
                    (id, answer, Some((input, Probe::Present { output, reason })))
                }
                Ok(other) => (id, first, Some((input, other))),
                Err(_) => (id, first, None),
            }
        })
    });
    let answers: Vec<_> = futures_util::stream::iter(asks)
        .buffer_unordered(DISCOVER_CONCURRENCY)
        .collect()
        .await;
    let mut unknown = HashMap::new();
    let mut probed = HashMap::new();
    for (id, answer, probe) in answers {
        probed.extend(probe);
        match answer {
            Ok(Discovery::Known(found)) => {
                d.found.insert(id, found);
            }
            Ok(Discovery::Unknown { reason }) => {
                unknown.insert(id, Ok(reason));
            }
            Err(e) => {
                unknown.insert(
                    id,
                    Err(planner_base::mask::mask(&e.to_string()).into_owned()),
                );
            }
        }
    }
    (unknown, probed)
}

/// Whether a discovery without the step's input leaves the inputs to read from that input
/// when it is materialized: unknown, or known only from a hint the input overrides when
/// present ([`crate::output::FoundData::input_decides_when_present`]).
fn needs_input(first: &Result<Discovery, StepError>) -> bool {
    match first {
        Ok(Discovery::Unknown { .. }) => true,
        Ok(Discovery::Known(found)) => found.input_decides_when_present(),
        Err(_) => false,
    }
}

struct Walk<'a, W> {
    graph: &'a Graph,
    world: &'a W,
    d: Decided,
    previous: HashMap<NodeId, String>,
    needed: HashSet<NodeId>,
    why_not: HashMap<NodeId, String>,
    probed: HashMap<NodeId, Probe>,
    /// Discovering nodes without known inputs: why they run, or the error of discovering.
    unknown: HashMap<NodeId, Result<String, String>>,
}

impl<W: World> Walk<'_, W> {
    async fn visit(&mut self, id: NodeId) {
        let node = self.graph.node(id);
        if node.kind.is_root() {
            return;
        }
        let Some(root) = self.graph.resolve_of(id) else {
            return;
        };
        // Its primary root first, then any other root it descends from.
        let failed = std::iter::once(&root)
            .chain(self.graph.roots_of(id))
            .find(|r| !self.d.revisions.contains_key(r));
        if let Some(&failed) = failed {
            let reason = format!("{} failed", self.graph.node(failed).display_id());
            self.d
                .decisions
                .insert(id, Decision::new(Status::Blocked, reason));
            return;
        }
        if !self.needed.contains(&id) {
            if let Some(Probe::Present { output, reason }) = self.probed.get(&id).cloned() {
                self.materialized(id, output);
                self.d
                    .decisions
                    .insert(id, Decision::new(Status::Skip, reason));
                return;
            }
            let why = self
                .why_not
                .get(&id)
                .cloned()
                .unwrap_or_else(|| "no goal needs it".into());
            for need in self.graph.needs(id) {
                self.why_not.entry(need).or_insert_with(|| why.clone());
            }
            self.d.decisions.insert(
                id,
                Decision::new(Status::Skip, format!("not needed: {why}")),
            );
            return;
        }
        if let Some(decision) = self.keyless(id) {
            if decision.status == Status::Run {
                self.needed.extend(self.graph.needs(id));
            }
            self.d.decisions.insert(id, decision);
            return;
        }
        let probe = self.probe(id, root).await;
        let decision = match probe {
            Ok(Probe::Present { output, reason }) => {
                self.materialized(id, output);
                Decision::new(Status::Skip, reason)
            }
            Ok(Probe::Missing { reason }) => {
                self.needed.extend(self.graph.needs(id));
                Decision::run(node.kind, reason)
            }
            Ok(Probe::Retag { reason, via }) => {
                let step_id = &self.graph.node(id).step_id;
                for need in self.graph.needs(id) {
                    self.why_not
                        .entry(need)
                        .or_insert_with(|| format!("{step_id} only re-tags an existing image"));
                }
                Decision {
                    via: Some(via),
                    ..Decision::new(Status::Run, reason)
                }
            }
            Err(e) => Decision::new(
                Status::Failed,
                planner_base::mask::mask(&e.to_string()).into_owned(),
            ),
        };
        self.d.decisions.insert(id, decision);
    }

    /// Completes, in dependency order, the keys made from an input's output: a kind that
    /// [`probes_input`](crate::kind::Kind::probes_input) whose key was not known from the
    /// graph gets it from its input's probed output when that input is materialized (a step
    /// keyed on the image ID its input produced), and the steps keyed on it
    /// follow. Kinds whose keys need no output are not probed here.
    async fn keys_from_outputs(&mut self) {
        for &id in self.graph.order() {
            if self.d.keys.contains_key(&id) {
                continue;
            }
            let Some(input) = self.graph.input_of(id) else {
                continue;
            };
            let Some(input_key) = self.d.keys.get(&input).cloned() else {
                continue;
            };
            let output = match self.graph.node(id).kind.probes_input() {
                true => self.probed_output(input).await,
                false => None,
            };
            let (revisions, found) = (&self.d.revisions, self.d.found.get(&id));
            let key = key_of(
                self.graph,
                id,
                revisions,
                found,
                Some(&input_key),
                output.as_ref(),
            );
            if let Some(key) = key {
                self.d.keys.insert(id, key);
            }
        }
    }

    /// The output of `id` when it is materialized, probing it once (memoised).
    async fn probed_output(&mut self, id: NodeId) -> Option<Output> {
        if !self.probed.contains_key(&id) {
            let root = self.graph.resolve_of(id)?;
            self.d.revisions.get(&root)?;
            let probe = self.probe_one(id, root, None).await.ok()?;
            self.probed.insert(id, probe);
        }
        match self.probed.get(&id) {
            Some(Probe::Present { output, .. }) => Some(output.clone()),
            _ => None,
        }
    }

    /// The decision of a needed node whose key is not known yet: it runs (its key is
    /// completed before it does), or it failed to discover its inputs. `None` when keyed.
    fn keyless(&self, id: NodeId) -> Option<Decision> {
        if self.d.keys.contains_key(&id) {
            return None;
        }
        let kind = self.graph.node(id).kind;
        Some(match self.unknown.get(&id) {
            Some(Ok(reason)) => Decision::run(kind, reason.clone()),
            Some(Err(error)) => Decision::new(Status::Failed, error.clone()),
            None => {
                let input = self
                    .graph
                    .input_of(id)
                    .map(|n| self.graph.node(n).display_id());
                let after = input.unwrap_or_else(|| "its needs".into());
                Decision::run(
                    kind,
                    format!("follows {after}, whose key is known once it runs"),
                )
            }
        })
    }

    /// Records a materialized output; its needs are then not needed on its account.
    fn materialized(&mut self, id: NodeId, output: Output) {
        self.d.outputs.insert(id, output);
        let step_id = &self.graph.node(id).step_id;
        for need in self.graph.needs(id) {
            self.why_not
                .entry(need)
                .or_insert_with(|| format!("{step_id} is materialized"));
        }
    }

    /// Probes `id` (memoised), first probing its input when the probe needs that output.
    async fn probe(&mut self, id: NodeId, root: NodeId) -> Result<Probe, StepError> {
        let node = self.graph.node(id);
        let input = self.graph.input_of(id);
        if node.kind.probes_input()
            && let Some(input) = input
            && !self.probed.contains_key(&input)
            && self.d.keys.contains_key(&input)
            && let Ok(p) = self.probe_one(input, root, None).await
        {
            self.probed.insert(input, p);
        }
        if let Some(p) = self.probed.get(&id) {
            return Ok(p.clone());
        }
        let input_output = input.and_then(|i| match self.probed.get(&i) {
            Some(Probe::Present { output, .. }) => Some(output.clone()),
            _ => None,
        });
        self.probe_one(id, root, input_output.as_ref()).await
    }

    async fn probe_one(
        &self,
        id: NodeId,
        root: NodeId,
        input: Option<&Output>,
    ) -> Result<Probe, StepError> {
        let req = ProbeRequest {
            graph: self.graph,
            id,
            node: self.graph.node(id),
            key: &self.d.keys[&id],
            revision: &self.d.revisions[&root],
            previous_revision: self.previous.get(&root).map(String::as_str),
            answers: self.graph.answers(id, &self.d.revisions),
            input,
            found: self.d.found.get(&id),
        };
        self.world.probe(req).await
    }

    /// A step that would run but whose need failed is blocked.
    fn block_dependents_of_failures(&mut self) {
        for &id in self.graph.order() {
            let failed_need = self.graph.needs(id).into_iter().find(|n| {
                matches!(
                    self.d.decisions.get(n).map(|d| d.status),
                    Some(Status::Failed | Status::Blocked)
                )
            });
            let runs = self
                .d
                .decisions
                .get(&id)
                .is_some_and(|d| d.status == Status::Run);
            if let (Some(n), true) = (failed_need, runs) {
                let reason = format!(
                    "needs {}, which cannot run",
                    self.graph.node(n).display_id()
                );
                self.d
                    .decisions
                    .insert(id, Decision::new(Status::Blocked, reason));
            }
        }
    }
}
