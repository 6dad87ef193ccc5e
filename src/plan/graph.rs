//! Compiling requests into one sealed DAG of steps (petgraph), deduplicated by step identity.
//!
//! A step's identity is known before anything is resolved: its kind, the configuration values
//! it reads, and the identities of its needs. Two runtimes whose plans reach an identical step
//! (same repo, branch, Dockerfile, platform…) share one node, so the work is done once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

use super::load::{Plan, PlanSet};
use super::step::StepKind;
use crate::config::Runtime;

/// Index of a node in the [`Graph`].
pub type NodeId = NodeIndex;

/// One step of work, shared by every runtime whose plan reaches it.
#[derive(Debug, Clone)]
pub struct Node {
    pub kind: StepKind,
    /// The plan step id (from the first runtime that reached the node).
    pub step_id: String,
    /// The runtimes that need this node, in request order; the first one names it.
    pub runtimes: Vec<Arc<Runtime>>,
    pub params: std::collections::BTreeMap<String, String>,
    identity: blake3::Hash,
}

impl Node {
    /// The runtime the node is reported under.
    pub fn runtime(&self) -> &Runtime {
        &self.runtimes[0]
    }

    /// Names of all runtimes sharing this node.
    pub fn runtime_names(&self) -> Vec<String> {
        self.runtimes.iter().map(|r| r.name.clone()).collect()
    }

    /// A stable, readable id: `runtime/step-id`.
    pub fn display_id(&self) -> String {
        format!("{}/{}", self.runtime().name, self.step_id)
    }
}

/// The compiled, immutable step graph. Edges run from a need to the step that needs it.
#[derive(Debug)]
pub struct Graph {
    g: DiGraph<Node, ()>,
    order: Vec<NodeId>,
    goals: Vec<NodeId>,
}

impl Graph {
    /// Compiles one request per runtime into a single deduplicated graph.
    pub fn compile(runtimes: &[Arc<Runtime>], plans: &PlanSet) -> Graph {
        let mut builder = Builder::default();
        for rt in runtimes {
            let plan = plans
                .get(&rt.plan)
                .expect("config validation checks plan names");
            builder.add_request(rt, plan);
        }
        builder.seal()
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.g[id]
    }

    /// Nodes in dependency order (every need before the steps that need it).
    pub fn order(&self) -> &[NodeId] {
        &self.order
    }

    /// The goal nodes: the last step(s) of every requested plan.
    pub fn goals(&self) -> &[NodeId] {
        &self.goals
    }

    pub fn needs(&self, id: NodeId) -> Vec<NodeId> {
        let mut v: Vec<_> = self.g.neighbors_directed(id, Direction::Incoming).collect();
        v.sort();
        v
    }

    pub fn dependents(&self, id: NodeId) -> Vec<NodeId> {
        let mut v: Vec<_> = self.g.neighbors_directed(id, Direction::Outgoing).collect();
        v.sort();
        v
    }

    /// The need of `id` whose kind is `kind`, if any (the first in [`Graph::needs`] order).
    pub fn need_of_kind(&self, id: NodeId, kind: StepKind) -> Option<NodeId> {
        // No `needs()` Vec: this runs for every hop of every `resolve_of`.
        self.g
            .neighbors_directed(id, Direction::Incoming)
            .filter(|&n| self.g[n].kind == kind)
            .min()
    }

    /// The resolve-head node this node's work descends from.
    pub fn resolve_of(&self, id: NodeId) -> Option<NodeId> {
        let mut cur = id;
        loop {
            let node = &self.g[cur];
            if node.kind == StepKind::ResolveHead {
                return Some(cur);
            }
            cur = self.need_of_kind(cur, node.kind.input_kind()?)?;
        }
    }

    pub fn len(&self) -> usize {
        self.g.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.g.node_count() == 0
    }

    /// Edges as (need, dependent) pairs, for renderers.
    pub fn edges(&self) -> Vec<(NodeId, NodeId)> {
        self.g
            .edge_indices()
            .filter_map(|e| self.g.edge_endpoints(e))
            .collect()
    }
}

#[derive(Default)]
struct Builder {
    g: DiGraph<Node, ()>,
    by_identity: HashMap<blake3::Hash, NodeId>,
    goals: Vec<NodeId>,
    /// The same goals, for dedupe in O(1) (a `Vec::contains` made compiling quadratic).
    goal_set: HashSet<NodeId>,
}

impl Builder {
    fn add_request(&mut self, rt: &Arc<Runtime>, plan: &Plan) {
        // The node of each plan step, by step index.
        let mut ids: Vec<Option<NodeId>> = vec![None; plan.steps.len()];
        let goals = plan.goals();
        // Plans are validated acyclic; visit in an order where needs come first.
        for i in plan_order(plan) {
            let step = &plan.steps[i];
            let need_ids: Vec<NodeId> = step
                .needs
                .iter()
                .map(|&n| ids[n].expect("need visited first"))
                .collect();
            let identity = identity(step.kind, rt, &step.params, &need_ids, &self.g);
            let id = self.node_for(identity, step, rt);
            for need in need_ids {
                self.g.update_edge(need, id, ());
            }
            ids[i] = Some(id);
            if goals.contains(&i) && self.goal_set.insert(id) {
                self.goals.push(id);
            }
        }
    }

    fn node_for(
        &mut self,
        identity: blake3::Hash,
        step: &super::PlanStep,
        rt: &Arc<Runtime>,
    ) -> NodeId {
        if let Some(&id) = self.by_identity.get(&identity) {
            let node = &mut self.g[id];
            if !node.runtimes.iter().any(|r| r.name == rt.name) {
                node.runtimes.push(rt.clone());
            }
            return id;
        }
        let id = self.g.add_node(Node {
            kind: step.kind,
            step_id: step.id.clone(),
            runtimes: vec![rt.clone()],
            params: step.params.clone(),
            identity,
        });
        self.by_identity.insert(identity, id);
        id
    }

    fn seal(self) -> Graph {
        let order = petgraph::algo::toposort(&self.g, None).expect("plans are acyclic");
        Graph {
            g: self.g,
            order,
            goals: self.goals,
        }
    }
}

/// Plan step indices ordered so that needs come before the steps that need them.
fn plan_order(plan: &Plan) -> Vec<usize> {
    let mut order = Vec::with_capacity(plan.steps.len());
    let mut done = vec![false; plan.steps.len()];
    while order.len() < plan.steps.len() {
        for (i, step) in plan.steps.iter().enumerate() {
            if !done[i] && step.needs.iter().all(|&n| done[n]) {
                done[i] = true;
                order.push(i);
            }
        }
    }
    order
}

/// The identity of a step: kind, the config values it reads, params and its needs' identities.
fn identity(
    kind: StepKind,
    rt: &Runtime,
    params: &std::collections::BTreeMap<String, String>,
    needs: &[NodeId],
    g: &DiGraph<Node, ()>,
) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    let mut field = |name: &str, value: &str| {
        for part in [name, value] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
    };
    field("kind", kind.name());
    match kind {
        StepKind::ResolveHead => {
            field("repo", &rt.repo_identity());
            field("branch", &rt.branch);
        }
        StepKind::Clone => {}
        StepKind::VerifyDockerfile => field("dockerfile", &rt.dockerfile),
        StepKind::Build => field("platform", &rt.platform),
        StepKind::TagLatest => field("latest", &rt.latest_tag()),
    }
    for (k, v) in params {
        field(k, v);
    }
    let mut need_ids: Vec<_> = needs.iter().map(|&n| *g[n].identity.as_bytes()).collect();
    need_ids.sort();
    for id in need_ids {
        field("need", &blake3::Hash::from_bytes(id).to_hex());
    }
    h.finalize()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{EnvOverrides, parse};

    /// The graph of the named runtimes of `toml` with the built-in plans (shared by unit tests).
    pub(crate) fn graph_for(toml: &str, names: &[&str]) -> Graph {
        let plans = PlanSet::load(None).unwrap();
        let cfg = parse(toml, "t.toml", &EnvOverrides::default(), &|p| {
            plans.get(p).is_some()
        })
        .unwrap();
        let rts: Vec<_> = names
            .iter()
            .map(|n| Arc::new(cfg.runtimes[*n].clone()))
            .collect();
        Graph::compile(&rts, &plans)
    }

    #[test]
    fn one_runtime_is_a_chain_of_five() {
        let g = graph_for("[runtimes.a]\n", &["a"]);
        assert_eq!(g.len(), 5);
        assert_eq!(g.goals().len(), 1);
        let kinds: Vec<_> = g.order().iter().map(|&n| g.node(n).kind).collect();
        assert_eq!(kinds, StepKind::ALL);
    }

    #[test]
    fn runtimes_on_one_repo_share_everything_but_tag_latest() {
        let toml = "[runtimes.a]\nrepo = \"https://h.example/r\"\n[runtimes.b]\nrepo = \"https://h.example/r\"\n";
        let g = graph_for(toml, &["a", "b"]);
        assert_eq!(
            g.len(),
            6,
            "resolve, clone, verify, build shared; two tag-latest"
        );
        let build = g
            .order()
            .iter()
            .find(|&&n| g.node(n).kind == StepKind::Build)
            .unwrap();
        assert_eq!(g.node(*build).runtime_names(), ["a", "b"]);
        assert_eq!(g.goals().len(), 2);
    }

    #[test]
    fn different_platform_splits_the_build_only() {
        let toml = "[runtimes.a]\nrepo = \"https://h.example/r\"\n[runtimes.b]\nrepo = \"https://h.example/r\"\nplatform = \"linux/arm64\"\n";
        let g = graph_for(toml, &["a", "b"]);
        assert_eq!(g.len(), 7);
    }

    #[test]
    fn resolve_of_walks_to_the_root() {
        let g = graph_for("[runtimes.a]\n", &["a"]);
        let goal = g.goals()[0];
        let root = g.resolve_of(goal).unwrap();
        assert_eq!(g.node(root).kind, StepKind::ResolveHead);
    }
}
