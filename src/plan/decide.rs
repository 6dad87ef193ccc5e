//! Demand-driven decisions: which steps run, which are skipped, and why.
//!
//! Starting from the goals, a step runs only if its output is needed and not materialized;
//! only then are its needs needed. Materialization is asked of a [`World`] (the real one
//! checks the Docker engine and the cache dir), so `plan`, `ensure --dry-run` and `ensure`
//! share this one function and cannot disagree.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use futures_util::StreamExt;
use std::path::PathBuf;

use super::graph::{Graph, Node, NodeId};
use crate::bases::Bases;
use crate::error::StepError;
use crate::key::{Key, keys_for};

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

/// How a step that runs will be satisfied, for the kinds that have more than one way (a
/// build, a pull): what `plan --format json` says in `via`, so that automation can tell a
/// pull from a build without reading the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// The engine builds the image from the checkout.
    Build,
    /// The image is pulled from the shared cache (`[cache]`) by digest, not built.
    SharedCache,
    /// The engine already holds the image under another tag: it is only tagged.
    Retag,
    /// The image is pulled from its registry (registry runtimes).
    Pull,
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
            via: crate::steps::of(kind).runs_via(),
            ..Decision::new(Status::Run, reason)
        }
    }
}

/// A step's output, whether just produced or found materialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A commit or manifest digest, from a root step.
    Revision(String),
    Checkout(PathBuf),
    Verified {
        checkout: PathBuf,
        dockerfile_blake3: String,
    },
    Image {
        id: String,
    },
    Tagged {
        id: String,
    },
}

/// What the world says about a step's output.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// The answer of a resolve-head step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The commit (git) or manifest digest (registry) the root step answered.
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
    /// The revision its root answered (commit or manifest digest).
    pub revision: &'a str,
    pub previous_revision: Option<&'a str>,
    /// The probed output of the step's input need, when it is materialized.
    pub input: Option<&'a Output>,
    /// The inputs discovered for its key ([`World::discover`]), for a kind that has some.
    pub found: Option<&'a Bases>,
}

/// What a discovering step needs: its root's answer and, once it has run, its input's output.
pub struct DiscoverRequest<'a> {
    pub graph: &'a Graph,
    pub id: NodeId,
    pub node: &'a Node,
    pub revision: &'a str,
    pub previous_revision: Option<&'a str>,
    /// Its input's output: given before running (the verified checkout), `None` when deciding.
    pub input: Option<&'a Output>,
}

/// The inputs of a key found in the world, or why they are not known yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    Known(Bases),
    /// Known only once the step's input has run (its checkout read): the step runs, and the
    /// reason says why.
    Unknown {
        reason: String,
    },
}

/// The side of the world decisions look at. Implemented for real in `exec::world`.
pub trait World: Sync {
    fn probe(&self, req: ProbeRequest<'_>)
    -> impl Future<Output = Result<Probe, StepError>> + Send;

    /// The inputs a discovering kind's key covers beyond the graph ([`crate::steps::Kind::discover`]).
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
    pub found: HashMap<NodeId, Bases>,
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
                d.outputs.insert(id, Output::Revision(r.revision.clone()));
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
        if !crate::steps::of(node.kind).discovers() {
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
                input,
            };
            let first = world.discover(req(None)).await;
            if !needs_checkout(&first) {
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
                    input: None,
                    found: None,
                })
                .await;
            match probe {
                Ok(Probe::Present { output, reason }) => {
                    let answer = match (&first, world.discover(req(Some(&output))).await) {
                        (Ok(Discovery::Known(hinted)), Ok(Discovery::Known(derived))) => {
                            let step = node.display_id();
                            let derived = crate::bases::derived_over_hint(hinted, derived, &step);
                            Ok(Discovery::Known(derived))
                        }
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
            Ok(Discovery::Known(bases)) => {
                d.found.insert(id, bases);
            }
            Ok(Discovery::Unknown { reason }) => {
                unknown.insert(id, Ok(reason));
            }
            Err(e) => {
                unknown.insert(id, Err(crate::mask::mask(&e.to_string()).into_owned()));
            }
        }
    }
    (unknown, probed)
}

/// Whether a discovery without the checkout leaves the inputs to read from it when it is
/// materialized: unknown, or known only from the shared cache's pointer.
fn needs_checkout(first: &Result<Discovery, StepError>) -> bool {
    match first {
        Ok(Discovery::Unknown { .. }) => true,
        Ok(Discovery::Known(found)) => matches!(found.hint, Some(crate::bases::Hint::Pointer(_))),
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
        if !self.d.revisions.contains_key(&root) {
            let reason = format!("{} failed", self.graph.node(root).display_id());
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
                crate::mask::mask(&e.to_string()).into_owned(),
            ),
        };
        self.d.decisions.insert(id, decision);
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
