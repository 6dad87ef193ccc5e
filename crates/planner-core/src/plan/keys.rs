//! The keys of a graph's nodes: each asked of its node's kind ([`Kind::key`]) from what
//! it descends from ([`KeyInputs`]), in dependency order.

use std::collections::HashMap;

use super::graph::{Graph, NodeId};
use crate::key::Key;
use crate::kind::{KeyInputs, Kind};
use crate::output::{Found, Output};

/// Computes every node's key from the revisions its roots answered and the inputs found for
/// the kinds that discover some ([`crate::kind::Kind::discovers`]: a build's base images),
/// asking each node's kind ([`crate::kind::Kind::key`]). A node whose inputs are not known
/// yet (its root failed, its bases are read only once its checkout exists, its input has no
/// key, or its key is made from its input's output) gets no key here; `decide` and the
/// scheduler complete it once they are ([`key_of`]).
pub fn keys_for(
    graph: &Graph,
    revisions: &HashMap<NodeId, String>,
    found: &HashMap<NodeId, Found>,
) -> HashMap<NodeId, Key> {
    let mut keys: HashMap<NodeId, Key> = HashMap::new();
    for &id in graph.order() {
        let input = graph.input_of(id).and_then(|n| keys.get(&n));
        if let Some(key) = key_of(graph, id, revisions, found.get(&id), input, None) {
            keys.insert(id, key);
        }
    }
    keys
}

/// One node's key from its roots' revisions, its discovered inputs, its input's key and,
/// once known, its input's output.
pub fn key_of(
    graph: &Graph,
    id: NodeId,
    revisions: &HashMap<NodeId, String>,
    found: Option<&Found>,
    input: Option<&Key>,
    input_output: Option<&Output>,
) -> Option<Key> {
    let node = graph.node(id);
    let at = KeyInputs {
        node,
        revision: graph
            .resolve_of(id)
            .and_then(|r| revisions.get(&r))
            .map(String::as_str),
        answers: graph.answers(id, revisions),
        input,
        found,
        input_output,
    };
    Kind::key(node.kind.get(), &at)
}
