//! Where a runtime's image comes from: its git template (clone and build) or a registry
//! (pull by digest), and the `[registry]` table.
//!
//! Precedence of a runtime's source: its own `source` > `PLANNER_REGISTRY` (set and
//! non-empty: registry mode with that prefix) > `[defaults] source` > `"git"`. Its registry
//! prefix: its own `registry` > `PLANNER_REGISTRY` > `[defaults] registry`. An empty
//! `PLANNER_REGISTRY` is unset (the origin's rule: it must never make a malformed reference).

/// What kind of source a runtime has; each plan's root steps read one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The template's git repository: resolve the branch, clone, build.
    Git,
    /// A published image: resolve the tag's digest, pull it.
    Registry,
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Git => "git",
            SourceKind::Registry => "registry",
        }
    }

    pub fn from_name(name: &str) -> Option<SourceKind> {
        match name {
            "git" => Some(SourceKind::Git),
            "registry" => Some(SourceKind::Registry),
            _ => None,
        }
    }

    /// The plan a runtime of this source runs when none is configured.
    pub fn default_plan(self) -> &'static str {
        match self {
            SourceKind::Git => "local-build",
            SourceKind::Registry => "registry-pull",
        }
    }
}

/// A runtime's source, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Clone and build the runtime's `repo` at its `branch`.
    Git,
    /// Pull `image` (`{registry}/{registry_image}{runtime}:{registry_tag}`) by digest.
    Registry(RegistrySource),
}

impl Source {
    pub fn kind(&self) -> SourceKind {
        match self {
            Source::Git => SourceKind::Git,
            Source::Registry(_) => SourceKind::Registry,
        }
    }
}

/// A registry runtime's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySource {
    /// The reference, e.g. `ghcr.io/molecule-ai/workspace-template-langgraph:latest`.
    pub image: planner_base::ImageRef,
}

/// Built-in `registry.timeout` (the `[registry]` table is [`crate::RegistrySettings`]).
pub use planner_base::settings::DEFAULT_REGISTRY_TIMEOUT;

/// Built-in `[defaults]` values of registry mode.
pub const BUILTIN_REGISTRY_IMAGE: &str = "workspace-template-";
pub const BUILTIN_REGISTRY_TAG: &str = "latest";

/// Checks a `[registry] insecure` entry: a bare `host[:port]`, no scheme or path.
pub fn validate_insecure_host(text: &str) -> Result<(), String> {
    let host_ok = !text.is_empty()
        && text.len() <= 255
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    if host_ok {
        Ok(())
    } else {
        Err(format!(
            "invalid registry.insecure entry {text:?}: give host[:port], e.g. \"registry.internal:5000\" (no scheme, no path)"
        ))
    }
}
