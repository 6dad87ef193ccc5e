//! Content addresses of steps: blake3 over a canonical, versioned, length-prefixed encoding.
//!
//! Keys never include mtimes, absolute paths or credentials: only the repository identity
//! (URL without credentials), the commit, and configuration values that change the output.
//! What each kind's key covers is in its module under [`crate::steps`]; this is the encoding
//! and the walk over the graph. Bump [`KEY_FORMAT`] whenever the meaning of a step's output
//! changes (for example how the build context is assembled), so that old outputs stop matching.

use std::collections::HashMap;
use std::fmt;

use crate::bases::Bases;
use crate::plan::{Graph, Node, NodeId, StepKind};

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
        crate::ids::short(&self.0)
    }

    /// Parses a key read from a label or record; `None` unless 64 lowercase hex digits.
    pub fn parse(text: &str) -> Option<Key> {
        crate::ids::is_blake3_hex(text).then(|| Key(text.to_owned()))
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
    pub fn new(kind: StepKind) -> Self {
        let mut b = KeyBuilder(blake3::Hasher::new());
        b.field("format", KEY_FORMAT).field("kind", kind.name());
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
/// the kinds that discover some ([`crate::steps::Kind::discovers`]: a build's base images),
/// asking each node's kind ([`crate::steps::Kind::key`]). A node whose inputs are not known
/// yet (its root failed, its bases are read only once its checkout exists, or its input has
/// no key) gets no key here; the scheduler completes it once they are ([`key_of`]).
pub fn keys_for(
    graph: &Graph,
    revisions: &HashMap<NodeId, String>,
    found: &HashMap<NodeId, Bases>,
) -> HashMap<NodeId, Key> {
    let mut keys: HashMap<NodeId, Key> = HashMap::new();
    for &id in graph.order() {
        let input = graph.input_of(id).and_then(|n| keys.get(&n));
        if let Some(key) = key_of(graph, id, revisions, found.get(&id), input) {
            keys.insert(id, key);
        }
    }
    keys
}

/// One node's key from its root's revision, its discovered inputs and its input's key.
pub fn key_of(
    graph: &Graph,
    id: NodeId,
    revisions: &HashMap<NodeId, String>,
    found: Option<&Bases>,
    input: Option<&Key>,
) -> Option<Key> {
    let node = graph.node(id);
    let at = KeyInputs {
        node,
        revision: graph
            .resolve_of(id)
            .and_then(|r| revisions.get(&r))
            .map(String::as_str),
        input,
        found,
    };
    crate::steps::of(node.kind).key(&at)
}

/// What a kind computes its key from.
pub struct KeyInputs<'a> {
    pub node: &'a Node,
    /// The revision (commit or manifest digest) its root answered, once known.
    pub revision: Option<&'a str>,
    /// The key of its input need ([`Graph::input_of`]), once known.
    pub input: Option<&'a Key>,
    /// The inputs found in the world for a kind that discovers some, once known.
    pub found: Option<&'a Bases>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bases::{Base, Origin};
    use crate::steps::build::{BuildInputs, key as build_key};
    use crate::steps::clone::key as clone_key;
    use std::collections::BTreeMap;

    fn inputs() -> BuildInputs {
        BuildInputs {
            repo: "https://h.example/r".into(),
            commit: "a".repeat(40),
            dockerfile: "Dockerfile".into(),
            platform: "linux/amd64".into(),
            params: BTreeMap::new(),
            build_args: BTreeMap::new(),
            bases: Vec::new(),
            builder: "classic".into(),
        }
    }

    #[test]
    fn build_key_changes_with_each_input() {
        let base = build_key(&inputs());
        let variants = [
            BuildInputs {
                repo: "https://h.example/s".into(),
                ..inputs()
            },
            BuildInputs {
                commit: "b".repeat(40),
                ..inputs()
            },
            BuildInputs {
                dockerfile: "docker/Dockerfile".into(),
                ..inputs()
            },
            BuildInputs {
                platform: "linux/arm64".into(),
                ..inputs()
            },
            BuildInputs {
                params: [("target".into(), "x".into())].into(),
                ..inputs()
            },
            BuildInputs {
                build_args: [("RUNTIME_VERSION".into(), "1.4.2".into())].into(),
                ..inputs()
            },
            BuildInputs {
                build_args: [("RUNTIME_VERSION".into(), String::new())].into(),
                ..inputs()
            },
            BuildInputs {
                builder: "buildkit".into(),
                ..inputs()
            },
        ];
        for v in variants {
            assert_ne!(build_key(&v), base, "{v:?}");
        }
        assert_eq!(build_key(&inputs()), base, "deterministic");
    }

    #[test]
    fn build_key_is_stable_across_releases() {
        // planner-key/2 (build args, base images, builder). Changing this value means every user's
        // images rebuild: bump KEY_FORMAT on purpose, and say so in README's upgrade notes.
        assert_eq!(
            build_key(&inputs()).as_str(),
            "8acde40443d0714f465ccf6a9b6a90e3d1e87f52b49cfad89ca4ccff71a52561"
        );
    }

    #[test]
    fn build_key_covers_each_base_digest() {
        let base = |reference: &str, digest: char, origin| Base {
            reference: reference.into(),
            platform: "linux/amd64".into(),
            origin,
            digest: format!("sha256:{}", digest.to_string().repeat(64)),
        };
        let with = |bases: Vec<Base>| build_key(&BuildInputs { bases, ..inputs() });
        let one = with(vec![base("python:3.11-slim", 'a', Origin::Registry)]);
        assert_ne!(one, build_key(&inputs()));
        assert_ne!(
            one,
            with(vec![base("python:3.11-slim", 'b', Origin::Registry)])
        );
        assert_ne!(one, with(vec![base("python:3.11", 'a', Origin::Registry)]));
        assert_ne!(
            one,
            with(vec![base("python:3.11-slim", 'a', Origin::Local)])
        );
        let two = vec![
            base("a:1", 'a', Origin::Registry),
            base("b:1", 'b', Origin::Registry),
        ];
        assert_ne!(with(two.clone()), with(vec![two[0].clone()]));
    }

    #[test]
    fn build_args_are_keyed_by_name_and_value() {
        let with = |pairs: &[(&str, &str)]| {
            build_key(&BuildInputs {
                build_args: pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..inputs()
            })
        };
        let v1 = with(&[("RUNTIME_VERSION", "1.4.2")]);
        assert_eq!(v1, with(&[("RUNTIME_VERSION", "1.4.2")]), "deterministic");
        assert_ne!(v1, with(&[("RUNTIME_VERSION", "1.4.3")]));
        assert_ne!(v1, with(&[("RUNTIME_VERSIO", "N1.4.2")]), "length-prefixed");
        assert_ne!(
            with(&[("A", "1"), ("B", "2")]),
            with(&[("A", "2"), ("B", "1")])
        );
        // Declaration order does not matter: the map is sorted.
        assert_eq!(
            with(&[("A", "1"), ("B", "2")]),
            with(&[("B", "2"), ("A", "1")])
        );
    }

    #[test]
    fn keys_deserialize_only_when_valid() {
        let good = "a".repeat(64);
        let key: Key = serde_json::from_str(&format!("{good:?}")).unwrap();
        assert_eq!(key.short(), &good[..12]);
        for bad in ["\"x\"", "\"é\"", &format!("{:?}", "A".repeat(64)), "12"] {
            assert!(serde_json::from_str::<Key>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fields_are_length_prefixed() {
        let a = KeyBuilder::new(StepKind::Clone).field("ab", "c").finish();
        let b = KeyBuilder::new(StepKind::Clone).field("a", "bc").finish();
        assert_ne!(a, b);
    }

    #[test]
    fn key_parse_accepts_only_hex64() {
        let k = build_key(&inputs());
        assert_eq!(Key::parse(k.as_str()), Some(k.clone()));
        assert_eq!(k.short().len(), 12);
        assert!(Key::parse("xyz").is_none());
        assert!(Key::parse(&"A".repeat(64)).is_none());
    }

    #[test]
    fn golden_key_is_stable_across_releases() {
        // Changing this value means every user's images rebuild: bump KEY_FORMAT on purpose.
        assert_eq!(
            clone_key("https://h.example/r", &"a".repeat(40)).as_str(),
            "39012a878128d80e2c86bae7a64fbc6de37c13792a71ceadc74271eb15106552"
        );
        assert_ne!(
            clone_key("https://h.example/r", &"a".repeat(40)),
            clone_key("https://h.example/s", &"a".repeat(40))
        );
    }
}
