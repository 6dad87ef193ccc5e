//! Compiling requests into one sealed DAG of steps (petgraph), deduplicated by step identity.
//!
//! A step's identity is known before anything is resolved: its kind, the configuration values
//! it reads, and the identities of its needs. Two runtimes whose plans reach an identical step
//! (same repo, branch, Dockerfile, platform…) share one node, so the work is done once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

use planner_config::Runtime;

use super::load::{Plan, PlanSet};
use crate::kind::{Answer, Node, StepKind};

/// Index of a node in the [`Graph`].
pub type NodeId = NodeIndex;

/// The compiled, immutable step graph. Edges run from a need to the step that needs it.
#[derive(Debug)]
pub struct Graph {
    g: DiGraph<Node, ()>,
    order: Vec<NodeId>,
    goals: Vec<NodeId>,
    /// By node index: the roots each node descends from through any need, sorted.
    roots: Vec<Vec<NodeId>>,
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

    /// The need of `id` whose output it consumes: the one whose kind is among its kind's
    /// [`StepKind::input_kinds`] (plan loading checks there is exactly one).
    pub fn input_of(&self, id: NodeId) -> Option<NodeId> {
        let kinds = self.g[id].kind.input_kinds();
        // No `needs()` Vec: this runs for every hop of every `resolve_of`.
        self.g
            .neighbors_directed(id, Direction::Incoming)
            .filter(|&n| kinds.contains(&self.g[n].kind))
            .min()
    }

    /// Every root node this node descends from through any of its needs (itself, for a
    /// root), sorted: a step keyed on several answers (a build whose build arg is a released
    /// version) has several.
    pub fn roots_of(&self, id: NodeId) -> &[NodeId] {
        &self.roots[id.index()]
    }

    /// The answers of the roots `id` descends from ([`Graph::roots_of`]), for those that
    /// answered.
    pub fn answers<'a>(
        &'a self,
        id: NodeId,
        revisions: &'a HashMap<NodeId, String>,
    ) -> Vec<Answer<'a>> {
        self.roots_of(id)
            .iter()
            .filter_map(|r| {
                let revision = revisions.get(r)?;
                Some(Answer {
                    node: &self.g[*r],
                    revision,
                })
            })
            .collect()
    }

    /// The primary root this node's work descends from: the root of its chain of inputs
    /// ([`Graph::input_of`]), whose answer is the step's `revision`.
    pub fn resolve_of(&self, id: NodeId) -> Option<NodeId> {
        let mut cur = id;
        loop {
            if self.g[cur].kind.is_root() {
                return Some(cur);
            }
            cur = self.input_of(cur)?;
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
        let mut is_goal = vec![false; plan.steps.len()];
        for &g in plan.goals() {
            is_goal[g] = true;
        }
        // Plans are validated acyclic; visit in an order where needs come first.
        for &i in plan.order() {
            let step = &plan.steps[i];
            let need_ids: Vec<NodeId> = step
                .needs
                .iter()
                .map(|&n| ids[n].expect("need visited first"))
                .collect();
            let identity = identity(step.kind, rt, &step.params, &need_ids, &self.g);
            let (id, created) = self.node_for(identity, step, rt);
            // A node found again has its edges already: its identity covers its needs.
            // (`update_edge` scanned the need's edges each time: quadratic for a step needed
            // by thousands.)
            if created {
                self.add_edges(need_ids, id);
            }
            ids[i] = Some(id);
            if is_goal[i] && self.goal_set.insert(id) {
                self.goals.push(id);
            }
        }
    }

    fn add_edges(&mut self, mut needs: Vec<NodeId>, id: NodeId) {
        needs.sort_unstable();
        needs.dedup();
        for need in needs {
            self.g.add_edge(need, id, ());
        }
    }

    /// The node of `identity`, and whether it was created now.
    fn node_for(
        &mut self,
        identity: blake3::Hash,
        step: &super::PlanStep,
        rt: &Arc<Runtime>,
    ) -> (NodeId, bool) {
        if let Some(&id) = self.by_identity.get(&identity) {
            let node = &mut self.g[id];
            // Requests are added one runtime at a time: only the last one can be this one.
            if node.runtimes.last().is_none_or(|r| r.name != rt.name) {
                node.runtimes.push(rt.clone());
            }
            return (id, false);
        }
        let id = self.g.add_node(Node {
            kind: step.kind,
            step_id: step.id.clone(),
            runtimes: vec![rt.clone()],
            params: step.params.clone(),
            identity,
        });
        self.by_identity.insert(identity, id);
        (id, true)
    }

    fn seal(self) -> Graph {
        let order = petgraph::algo::toposort(&self.g, None).expect("plans are acyclic");
        let roots = roots(&self.g, &order);
        Graph {
            g: self.g,
            order,
            goals: self.goals,
            roots,
        }
    }
}

/// The roots of every node, by node index: a root's is itself, any other node's the union
/// of its needs' (computed once, in dependency order: O(nodes × roots per node)).
fn roots(g: &DiGraph<Node, ()>, order: &[NodeId]) -> Vec<Vec<NodeId>> {
    let mut roots: Vec<Vec<NodeId>> = vec![Vec::new(); g.node_count()];
    for &id in order {
        let mine = if g[id].kind.is_root() {
            vec![id]
        } else {
            let mut all: Vec<NodeId> = g
                .neighbors_directed(id, Direction::Incoming)
                .flat_map(|n| roots[n.index()].iter().copied())
                .collect();
            all.sort_unstable();
            all.dedup();
            all
        };
        roots[id.index()] = mine;
    }
    roots
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
    for (name, value) in kind.get().reads(rt) {
        field(name, &value);
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
