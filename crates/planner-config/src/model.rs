//! The validated configuration: [`Config`], [`Runtime`] and the tables, and the built-in
//! values a key takes when nothing sets it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use url::Url;

use crate::build_args::{BuildArgs, Indexes, Releases};
use crate::cache::CacheSettings;
use crate::source::Source;
use planner_base::settings::{EngineSettings, GitLimits, RegistrySettings};
use planner_base::{BuildNetwork, Builder};

/// The `runtimes.toml` shipped in the repository, embedded so an installed binary works alone.
pub const BUILTIN_RUNTIMES_TOML: &str = include_str!("../../../runtimes.toml");

/// Built-in values used when neither the file nor the environment sets a key.
pub const BUILTIN_REPO_PREFIX: &str =
    "https://git.moleculesai.app/molecule-ai/molecule-ai-workspace-template-";
pub const BUILTIN_BRANCH: &str = "main";
pub const BUILTIN_DOCKERFILE: &str = "Dockerfile";
pub const BUILTIN_PLATFORM: &str = "linux/amd64";
pub const BUILTIN_IMAGE_PREFIX: &str = "molecule-local/workspace-template-";
pub const BUILTIN_SMOKE_TIMEOUT: &str = "2m";
/// Most arguments a `smoke` argv may have.
pub const MAX_SMOKE_ARGS: usize = 64;
/// Longest `smoke` argument, in bytes.
pub const MAX_SMOKE_ARG_BYTES: usize = 4096;
/// Longest `smoke_timeout`.
pub const MAX_SMOKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

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
    /// Where builds are published for registry mode (`[publish]`), when configured.
    pub publish: Option<PublishSettings>,
    /// `[indexes]`: where released versions are looked up.
    pub indexes: Indexes,
    pub runtimes: BTreeMap<String, Runtime>,
}

/// The `[publish]` table: the registry prefix builds are pushed under, so that registry-mode
/// consumers with the same `registry_image` and `registry_tag` pull them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishSettings {
    /// `host[:port]/path`, no scheme, tag or digest.
    pub registry: String,
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
    /// Build args whose value is a package's latest release (`{ pypi = ".." }`), looked up
    /// every run by `resolve-version`; the version found is passed and keyed like a declared
    /// value (and labelled with them).
    pub releases: Releases,
    /// How the bases its Dockerfile names are keyed (`base_images`).
    pub base_images: BaseImages,
    /// Which builder builds (`builder`; `auto` resolves per engine, see [`Builder::effective`]).
    pub builder: Builder,
    /// The network mode of the build's RUN steps (`build_network`).
    pub build_network: BuildNetwork,
    /// The smoke test (`smoke`): the argv run once in each new image before `:latest`
    /// moves to it; `None` when none is configured.
    pub smoke: Option<Vec<String>>,
    /// How long the smoke test may run (`smoke_timeout`).
    pub smoke_timeout: std::time::Duration,
    /// Where the `publish` step pushes this runtime's builds (`[publish]`):
    /// `{registry}/{registry_image}{runtime}:{registry_tag}`, the reference a registry-mode
    /// consumer resolves; `None` without a `[publish]` table.
    pub publish: Option<planner_base::ImageRef>,
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
        format!("{}:{}", self.image_repo(), planner_base::ids::short(commit))
    }

    /// The floating `{image_prefix}{runtime}:latest` reference.
    pub fn latest_tag(&self) -> String {
        format!("{}:latest", self.image_repo())
    }

    /// The source identity used in keys, records and labels: for git the repository URL
    /// without credentials, for a registry the image repository (`registry/repository`).
    pub fn repo_identity(&self) -> String {
        match &self.source {
            Source::Git => planner_base::mask::display_url(&self.repo),
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
