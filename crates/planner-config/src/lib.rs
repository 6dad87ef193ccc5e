//! `runtimes.toml`: the schema, the built-in defaults, environment overrides and validation.
//!
//! Owns everything a runtime resolves to (repo URL, branch, Dockerfile path, platform, image
//! names, plan). Every refusal names the file, line and column, what is wrong and how to fix it.
//!
//! - this file: the validated types ([`Config`], [`Runtime`]) and [`parse`];
//! - [`raw`]: the schema as written (serde, with spans);
//! - [`defaults`]: how each key resolves (own value > `[defaults]` > environment > built-in);
//! - [`validate`]: the rules each value must pass, and the refusals;
//! - `build_args`, `cache`, `source`: the `build_args` key, the `[cache]` table, a runtime's
//!   source and the `[registry]` table.
//!
//! The settings the leaf crates take (git limits, builder, registry transport) are defined in
//! `planner-base` and re-exported here: the config depends on no leaf crate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use url::Url;

mod build_args;
mod cache;
pub use build_args::{
    BuildArgs, MAX_BUILD_ARGS, MAX_NAME_BYTES, MAX_VALUE_BYTES, to_label as build_args_label,
};
pub use cache::CacheSettings;
mod defaults;
mod raw;
mod source;
mod validate;
use defaults::Defaults;
pub use defaults::EnvOverrides;
pub use planner_base::settings::{
    BUILTIN_CONNECT_TIMEOUT, BUILTIN_GIT_TIMEOUT, BUILTIN_LOW_SPEED_LIMIT, BUILTIN_LOW_SPEED_TIME,
    DEFAULT_ENGINE_IDLE_TIMEOUT, DEFAULT_ENGINE_TIMEOUT, EngineSettings, GitLimits,
    RegistrySettings,
};
pub use planner_base::{BuildNetwork, Builder};
use planner_base::{ids, mask};
pub use raw::line_column;
use raw::{Locator, RawConfig};
pub use source::{
    DEFAULT_REGISTRY_TIMEOUT, RegistrySource, Source, SourceKind, validate_insecure_host,
};
pub use validate::{
    validate_branch, validate_dockerfile, validate_image_repo, validate_platform, validate_repo_url,
};
use validate::{
    validate_default_runtime, validate_engine, validate_git, validate_registry, validate_runtime,
};

/// The `runtimes.toml` shipped in the repository, embedded so an installed binary works alone.
pub const BUILTIN_RUNTIMES_TOML: &str = include_str!("../../../runtimes.toml");

/// Built-in values used when neither the file nor the environment sets a key.
pub const BUILTIN_REPO_PREFIX: &str =
    "https://git.moleculesai.app/molecule-ai/molecule-ai-workspace-template-";
pub const BUILTIN_BRANCH: &str = "main";
pub const BUILTIN_DOCKERFILE: &str = "Dockerfile";
pub const BUILTIN_PLATFORM: &str = "linux/amd64";
pub const BUILTIN_IMAGE_PREFIX: &str = "molecule-local/workspace-template-";

/// A refusal of the configuration: where, what, and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read config {path}: {source}\n  help: pass --config PATH or set PLANNER_CONFIG"
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{origin}: {message}")]
    Env { origin: String, message: String },
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the configuration came from (a path, or `<built-in runtimes.toml>`).
    pub origin: String,
    pub default_runtime: Option<String>,
    /// `cache_dir` from the file, if set (flag and env take precedence; see `store`).
    pub cache_dir: Option<PathBuf>,
    pub git: GitSettings,
    pub engine: EngineSettings,
    pub registry: RegistrySettings,
    /// The shared cache (`[cache]`), when configured.
    pub cache: Option<CacheSettings>,
    pub runtimes: BTreeMap<String, Runtime>,
}

/// The `[git]` table.
#[derive(Debug, Clone, Default)]
pub struct GitSettings {
    /// Name of the environment variable holding the git host token.
    pub token_env: Option<String>,
    pub allow_insecure_http: bool,
    /// Time limits for every `git` subprocess.
    pub limits: GitLimits,
}

/// One allowlisted runtime with every key resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    pub name: String,
    /// Where its image comes from. `repo`, `branch` and `dockerfile` are read by git runtimes
    /// only (registry runtimes resolve them like any runtime, and ignore them).
    pub source: Source,
    pub repo: Url,
    pub branch: String,
    pub dockerfile: String,
    pub platform: String,
    pub image_prefix: String,
    pub plan: String,
    /// Declared build args (`build_args`), passed to the engine and part of the build key.
    /// Only ever from the file, never from the environment or the command line.
    pub build_args: BuildArgs,
    /// How the bases its Dockerfile names are keyed (`base_images`).
    pub base_images: BaseImages,
    /// Which builder builds (`builder`; `auto` resolves per engine, see [`Builder::effective`]).
    pub builder: Builder,
    /// The network mode of the build's RUN steps (`build_network`).
    pub build_network: BuildNetwork,
}

/// `base_images`: how a build's base images are resolved to the digests its key covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BaseImages {
    /// Ask each base's registry every run (one HEAD per base, cached for the run).
    #[default]
    Track,
    /// Never ask a registry: key on the image the engine holds.
    Local,
}

impl BaseImages {
    pub fn name(self) -> &'static str {
        match self {
            BaseImages::Track => "track",
            BaseImages::Local => "local",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<BaseImages, String> {
        match text {
            "track" => Ok(BaseImages::Track),
            "local" => Ok(BaseImages::Local),
            other => Err(format!(
                "base_images = {other:?} is not one of \"track\" (ask the registry for each base every run) or \"local\" (key on what the engine holds)"
            )),
        }
    }
}

impl Runtime {
    /// The image repository, `{image_prefix}{runtime}`.
    pub fn image_repo(&self) -> String {
        format!("{}{}", self.image_prefix, self.name)
    }

    /// The commit-pinned image reference, `{image_prefix}{runtime}:{sha12}`.
    pub fn pinned_tag(&self, commit: &str) -> String {
        format!("{}:{}", self.image_repo(), crate::ids::short(commit))
    }

    /// The floating `{image_prefix}{runtime}:latest` reference.
    pub fn latest_tag(&self) -> String {
        format!("{}:latest", self.image_repo())
    }

    /// The source identity used in keys, records and labels: for git the repository URL
    /// without credentials, for a registry the image repository (`registry/repository`).
    pub fn repo_identity(&self) -> String {
        match &self.source {
            Source::Git => crate::mask::display_url(&self.repo),
            Source::Registry(r) => format!("{}/{}", r.image.registry, r.image.repository),
        }
    }

    /// A registry runtime's image; `None` for a git runtime.
    pub fn registry_image(&self) -> Option<&planner_base::ImageRef> {
        match &self.source {
            Source::Registry(r) => Some(&r.image),
            Source::Git => None,
        }
    }
}

/// Reads and validates a config file. `plan_source` says which source a loaded plan reads
/// (`None`: no such plan).
pub fn load(
    path: &Path,
    env: &EnvOverrides,
    plan_source: &dyn Fn(&str) -> Option<SourceKind>,
) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, &path.display().to_string(), env, plan_source)
}

/// Parses and validates config text; `file` names it in errors.
pub fn parse(
    text: &str,
    file: &str,
    env: &EnvOverrides,
    plan_source: &dyn Fn(&str) -> Option<SourceKind>,
) -> Result<Config, ConfigError> {
    let loc = Locator { file, text };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        loc.error(span, e.message().trim().to_owned())
    })?;
    let git = validate_git(&raw.git, &loc)?;
    let engine = validate_engine(&raw.engine, &loc)?;
    let registry = validate_registry(&raw.registry, &loc)?;
    let cache = cache::validate(&raw.cache, &loc)?;
    let defaults = Defaults::resolve(&raw.defaults, env, &loc)?;
    let mut runtimes = BTreeMap::new();
    for (name, entry) in &raw.runtimes {
        let rt = validate_runtime(name, entry.get_ref(), &defaults, &git, plan_source, &loc)?;
        runtimes.insert(rt.name.clone(), rt);
    }
    let default_runtime = validate_default_runtime(raw.default_runtime.as_ref(), &runtimes, &loc)?;
    Ok(Config {
        origin: file.to_owned(),
        default_runtime,
        cache_dir: raw.cache_dir.map(|c| PathBuf::from(c.into_inner())),
        git,
        engine,
        registry,
        cache,
        runtimes,
    })
}

#[cfg(test)]
mod tests;
