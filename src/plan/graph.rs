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

    /// The root node (resolve-head, resolve-digest) this node's work descends from.
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
        Graph {
            g: self.g,
            order,
            goals: self.goals,
        }
    }
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
    for (name, value) in crate::steps::of(kind).reads(rt) {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{EnvOverrides, parse};
    use crate::plan::load::parse_plan;

    /// The graph of the named runtimes of `toml` with the built-in plans (shared by unit tests).
    pub(crate) fn graph_for(toml: &str, names: &[&str]) -> Graph {
        let plans = PlanSet::load(None).unwrap();
        let cfg = parse(toml, "t.toml", &EnvOverrides::default(), &|p| {
            plans.source(p)
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
        assert_eq!(kinds, StepKind::ALL[..5]);
    }

    #[test]
    fn a_registry_runtime_is_resolve_digest_pull_tag_latest() {
        let g = graph_for(
            "[defaults]\nsource = \"registry\"\nregistry = \"127.0.0.1:5000/org\"\n[runtimes.a]\n",
            &["a"],
        );
        let kinds: Vec<_> = g.order().iter().map(|&n| g.node(n).kind).collect();
        assert_eq!(
            kinds,
            [StepKind::ResolveDigest, StepKind::Pull, StepKind::TagLatest]
        );
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
    fn a_different_builder_splits_the_build_only() {
        // The builders do not make the same image: one build node would build both
        // runtimes' images with the first one's builder.
        let toml = "[runtimes.a]\nrepo = \"https://h.example/r\"\nbuilder = \"classic\"\n[runtimes.b]\nrepo = \"https://h.example/r\"\nbuilder = \"buildkit\"\n";
        let g = graph_for(toml, &["a", "b"]);
        assert_eq!(g.len(), 7);
        let mut builds: Vec<Vec<String>> = g
            .order()
            .iter()
            .filter(|&&n| g.node(n).kind == StepKind::Build)
            .map(|&n| g.node(n).runtime_names())
            .collect();
        builds.sort();
        assert_eq!(builds, [vec!["a"], vec!["b"]]);
    }

    /// A plan of `n` steps, listed last step first: resolve, clone, verify, then builds each
    /// needing the verify and the build before it, and a tag-latest of the last build.
    pub(crate) fn chain_plan_toml(n: usize) -> String {
        let builds = n - 4;
        let mut steps = vec![
            "[[steps]]\nid = \"r\"\nkind = \"resolve-head\"\n".to_owned(),
            "[[steps]]\nid = \"c\"\nkind = \"clone\"\nneeds = [\"r\"]\n".to_owned(),
            "[[steps]]\nid = \"v\"\nkind = \"verify-dockerfile\"\nneeds = [\"c\"]\n".to_owned(),
        ];
        for i in 0..builds {
            let needs = if i == 0 {
                "\"v\"".to_owned()
            } else {
                format!("\"v\", \"b{}\"", i - 1)
            };
            steps.push(format!(
                "[[steps]]\nid = \"b{i}\"\nkind = \"build\"\nneeds = [{needs}]\nparams = {{ target = \"t{i}\" }}\n"
            ));
        }
        steps.push(format!(
            "[[steps]]\nid = \"t\"\nkind = \"tag-latest\"\nneeds = [\"b{}\"]\n",
            builds - 1
        ));
        steps.reverse();
        steps.concat()
    }

    #[test]
    fn a_20000_step_chain_plan_loads_and_compiles() {
        let n = 20_000;
        let plan = parse_plan("chain", "plans/chain.toml", &chain_plan_toml(n)).unwrap();
        assert_eq!(plan.steps.len(), n);
        assert_eq!(
            plan.goals(),
            [0],
            "the tag-latest, listed first, is the only goal"
        );
        let mut position = vec![usize::MAX; n];
        for (at, &i) in plan.order().iter().enumerate() {
            position[i] = at;
        }
        assert!(
            position.iter().all(|&p| p < n),
            "every step is ordered once"
        );
        for (i, step) in plan.steps.iter().enumerate() {
            assert!(step.needs.iter().all(|&need| position[need] < position[i]));
        }
        let mut plans = PlanSet::load(None).unwrap();
        plans.plans.insert("chain".into(), plan);
        let cfg = parse(
            "[defaults]\nplan = \"chain\"\n[runtimes.a]\nrepo = \"https://h.example/r\"\n\
             [runtimes.b]\nrepo = \"https://h.example/r\"\n",
            "t.toml",
            &EnvOverrides::default(),
            &|p| plans.source(p),
        )
        .unwrap();
        let rts: Vec<_> = ["a", "b"]
            .iter()
            .map(|name| Arc::new(cfg.runtimes[*name].clone()))
            .collect();
        let g = Graph::compile(&rts, &plans);
        assert_eq!(g.len(), n + 1, "both share everything but their tag-latest");
        assert_eq!(g.goals().len(), 2);
        assert_eq!(g.order().len(), n + 1);
        let last_build = g.needs(g.goals()[0]);
        assert_eq!(last_build.len(), 1);
        assert_eq!(g.node(last_build[0]).step_id, format!("b{}", n - 5));
        assert_eq!(g.node(last_build[0]).runtime_names(), ["a", "b"]);
        let verify = g
            .order()
            .iter()
            .copied()
            .find(|&id| g.node(id).kind == StepKind::VerifyDockerfile)
            .unwrap();
        assert_eq!(
            g.dependents(verify).len(),
            n - 4,
            "one edge per build, no duplicate"
        );
        assert_eq!(g.edges().len(), 2 + (n - 4) + (n - 5) + 2);
    }

    #[test]
    fn resolve_of_walks_to_the_root() {
        let g = graph_for("[runtimes.a]\n", &["a"]);
        let goal = g.goals()[0];
        let root = g.resolve_of(goal).unwrap();
        assert_eq!(g.node(root).kind, StepKind::ResolveHead);
    }
}
