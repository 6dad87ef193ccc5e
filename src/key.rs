//! Content addresses of steps: blake3 over a canonical, versioned, length-prefixed encoding.
//!
//! Keys never include mtimes, absolute paths or credentials: only the repository identity
//! (URL without credentials), the commit, and configuration values that change the output.
//! Bump [`KEY_FORMAT`] whenever the meaning of a step's output changes (for example how the
//! build context is assembled), so that old outputs stop matching.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::plan::{Graph, NodeId, StepKind};

/// Version of the key encoding and of the step semantics it covers.
pub const KEY_FORMAT: &str = "planner-key/1";

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

/// The inputs of a build key, as carried by an image's labels or the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInputs {
    pub repo: String,
    pub commit: String,
    pub dockerfile: String,
    pub platform: String,
    pub params: BTreeMap<String, String>,
}

pub fn resolve_key(repo: &str, branch: &str) -> Key {
    KeyBuilder::new(StepKind::ResolveHead)
        .field("repo", repo)
        .field("branch", branch)
        .finish()
}

pub fn clone_key(repo: &str, commit: &str) -> Key {
    KeyBuilder::new(StepKind::Clone)
        .field("repo", repo)
        .field("commit", commit)
        .finish()
}

pub fn verify_key(clone: &Key, dockerfile: &str) -> Key {
    KeyBuilder::new(StepKind::VerifyDockerfile)
        .field("clone", clone.as_str())
        .field("dockerfile", dockerfile)
        .finish()
}

/// The build key. The Dockerfile's digest is not an input: the commit already fixes every
/// byte of the tree, so the key is known as soon as the branch HEAD is (see README).
pub fn build_key(inputs: &BuildInputs) -> Key {
    let mut b = KeyBuilder::new(StepKind::Build);
    b.field("repo", &inputs.repo)
        .field("commit", &inputs.commit)
        .field("dockerfile", &inputs.dockerfile)
        .field("platform", &inputs.platform);
    for (k, v) in &inputs.params {
        b.field(&format!("param.{k}"), v);
    }
    b.finish()
}

pub fn tag_latest_key(build: &Key, latest_tag: &str) -> Key {
    KeyBuilder::new(StepKind::TagLatest)
        .field("build", build.as_str())
        .field("tag", latest_tag)
        .finish()
}

/// Computes every node's key from the commits its resolve-head nodes answered.
/// Nodes whose resolve-head has no commit (it failed) get no key.
pub fn keys_for(graph: &Graph, commits: &HashMap<NodeId, String>) -> HashMap<NodeId, Key> {
    let mut keys: HashMap<NodeId, Key> = HashMap::new();
    for &id in graph.order() {
        let node = graph.node(id);
        let rt = node.runtime();
        let input = node
            .kind
            .input_kind()
            .and_then(|k| graph.need_of_kind(id, k));
        let Some(commit) = graph.resolve_of(id).and_then(|r| commits.get(&r)) else {
            if node.kind == StepKind::ResolveHead {
                keys.insert(id, resolve_key(&rt.repo_identity(), &rt.branch));
            }
            continue;
        };
        let key = match node.kind {
            StepKind::ResolveHead => resolve_key(&rt.repo_identity(), &rt.branch),
            StepKind::Clone => clone_key(&rt.repo_identity(), commit),
            StepKind::VerifyDockerfile => {
                verify_key(&keys[&input.expect("validated")], &rt.dockerfile)
            }
            StepKind::Build => build_key(&build_inputs(node, commit)),
            StepKind::TagLatest => {
                tag_latest_key(&keys[&input.expect("validated")], &rt.latest_tag())
            }
        };
        keys.insert(id, key);
    }
    keys
}

/// The build inputs of a build node at a commit.
pub fn build_inputs(node: &crate::plan::Node, commit: &str) -> BuildInputs {
    let rt = node.runtime();
    BuildInputs {
        repo: rt.repo_identity(),
        commit: commit.to_owned(),
        dockerfile: rt.dockerfile.clone(),
        platform: rt.platform.clone(),
        params: node.params.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> BuildInputs {
        BuildInputs {
            repo: "https://h.example/r".into(),
            commit: "a".repeat(40),
            dockerfile: "Dockerfile".into(),
            platform: "linux/amd64".into(),
            params: BTreeMap::new(),
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
        ];
        for v in variants {
            assert_ne!(build_key(&v), base, "{v:?}");
        }
        assert_eq!(build_key(&inputs()), base, "deterministic");
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
            "bb4e0d34b5f2dd7a4f592c31fba7ea0b689410bd9cb389c7ea24788fcc134776"
        );
        assert_ne!(
            clone_key("https://h.example/r", &"a".repeat(40)),
            clone_key("https://h.example/s", &"a".repeat(40))
        );
    }
}
