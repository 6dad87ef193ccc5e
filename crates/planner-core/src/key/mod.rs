//! Content addresses of steps: blake3 over a canonical, versioned, length-prefixed encoding.
//!
//! Keys never include mtimes, absolute paths or credentials: only the repository identity
//! (URL without credentials), the commit, and configuration values that change the output.
//! What each kind's key covers is the kind's ([`crate::kind::Kind::key`]); this is the
//! encoding and the walk over the graph. Bump [`KEY_FORMAT`] whenever the meaning of a step's output
//! changes (for example how the build context is assembled), so that old outputs stop matching.

use std::collections::HashMap;
use std::fmt;

use crate::kind::StepKind;
use crate::output::{Found, Output};
use crate::plan::{Answer, Graph, Node, NodeId};

/// Version of the key encoding and of the step semantics it covers.
pub const KEY_FORMAT: &str = "planner-key/2";

/// A step's content address: 64 lowercase hex digits.
/// Deserializing validates (a record is read from disk, so anything may be there).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Key(String);

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        let text = String::deserialize(d)?;
        Key::parse(&text).ok_or_else(|| {
            let shown: String = text.chars().take(72).collect();
            serde::de::Error::custom(format!("key {shown:?} is not 64 lowercase hex digits"))
        })
    }
}

impl Key {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, for display.
    pub fn short(&self) -> &str {
        planner_base::ids::short(&self.0)
    }

    /// Parses a key read from a label or record; `None` unless 64 lowercase hex digits.
    pub fn parse(text: &str) -> Option<Key> {
        planner_base::ids::is_blake3_hex(text).then(|| Key(text.to_owned()))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Builds a key from named fields, each length-prefixed so no two field lists collide.
pub struct KeyBuilder(blake3::Hasher);

impl KeyBuilder {
    /// A key of `kind`: the format and the kind's name come first.
    pub fn new(kind: StepKind) -> Self {
        KeyBuilder::named(kind.name())
    }

    /// A key of the kind named `kind` (for a module that computes the key of a kind it
    /// cannot name by its handle without an import circle: the build key in the label schema).
    pub fn named(kind: &str) -> Self {
        let mut b = KeyBuilder(blake3::Hasher::new());
        b.field("format", KEY_FORMAT).field("kind", kind);
        b
    }

    pub fn field(&mut self, name: &str, value: &str) -> &mut Self {
        for part in [name, value] {
            self.0.update(&(part.len() as u64).to_le_bytes());
            self.0.update(part.as_bytes());
        }
        self
    }

    pub fn finish(&self) -> Key {
        Key(self.0.finalize().to_hex().to_string())
    }
}

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
    node.kind.get().key(&at)
}

/// What a kind computes its key from.
pub struct KeyInputs<'a> {
    pub node: &'a Node,
    /// The revision its primary root answered (the root its input chain descends from:
    /// [`Graph::resolve_of`]), once known.
    pub revision: Option<&'a str>,
    /// Every root the step descends from through any need, with its answer, for the roots
    /// that answered ([`Graph::roots_of`]): a build whose build arg is a `resolve-version`
    /// root's answer finds it here.
    pub answers: Vec<Answer<'a>>,
    /// The key of its input need ([`Graph::input_of`]), once known.
    pub input: Option<&'a Key>,
    /// The inputs found in the world for a kind that discovers some, once known.
    pub found: Option<&'a Found>,
    /// Its input's output, once the input is materialized (probed present, or ran): for a
    /// kind keyed on what its input produced (an image ID). `None` while computing keys
    /// before deciding.
    pub input_output: Option<&'a Output>,
}

#[cfg(test)]
mod tests;
