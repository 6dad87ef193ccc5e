//! `runtimes.toml`: the schema, the built-in defaults, environment overrides and validation.
//!
//! Owns everything a runtime resolves to (repo URL, branch, Dockerfile path, platform, image
//! names, plan). Every refusal names the file, line and column, what is wrong and how to fix it.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;
use url::Url;

mod build_args;
mod cache;
pub use build_args::{
    BuildArgs, MAX_BUILD_ARGS, MAX_NAME_BYTES, MAX_VALUE_BYTES, to_label as build_args_label,
};
pub use cache::CacheSettings;
mod builder;
pub use builder::{BuildNetwork, Builder};
mod source;
use source::{BUILTIN_REGISTRY_IMAGE, BUILTIN_REGISTRY_TAG};
pub use source::{
    DEFAULT_REGISTRY_TIMEOUT, RegistrySettings, RegistrySource, Source, SourceKind,
    validate_insecure_host,
};

/// The `runtimes.toml` shipped in the repository, embedded so an installed binary works alone.
pub const BUILTIN_RUNTIMES_TOML: &str = include_str!("../../runtimes.toml");

/// Built-in values used when neither the file nor the environment sets a key.
pub const BUILTIN_REPO_PREFIX: &str =
    "https://git.moleculesai.app/molecule-ai/molecule-ai-workspace-template-";
pub const BUILTIN_BRANCH: &str = "main";
pub const BUILTIN_DOCKERFILE: &str = "Dockerfile";
pub const BUILTIN_PLATFORM: &str = "linux/amd64";
pub const BUILTIN_IMAGE_PREFIX: &str = "molecule-local/workspace-template-";

static NAME_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9._-]*$").unwrap());
static ENV_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").unwrap());
static PLATFORM_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$").unwrap());
/// One path component of an image repository, per the distribution reference grammar.
static IMAGE_COMPONENT_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$").unwrap());
static IMAGE_HOST_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9.-]+(:[0-9]+)?$").unwrap());

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

/// The `[engine]` table: how long planner waits on the Docker engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    /// A stream (a build's context upload and output, a pull's or push's progress) with
    /// nothing moving for this long fails: the engine stopped answering (`idle_timeout`,
    /// default 10 minutes).
    pub idle_timeout: std::time::Duration,
    /// Every other engine call (inspect, tag, list, remove, disk usage) fails when the engine
    /// has not answered within this (`timeout`, default 60 seconds).
    pub timeout: std::time::Duration,
}

/// Built-in `engine.idle_timeout`.
pub const DEFAULT_ENGINE_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
/// Built-in `engine.timeout`.
pub const DEFAULT_ENGINE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            idle_timeout: DEFAULT_ENGINE_IDLE_TIMEOUT,
            timeout: DEFAULT_ENGINE_TIMEOUT,
        }
    }
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

/// How long a `git` subprocess may take, and how slow it may be (`[git] timeout`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitLimits {
    /// Total wall time of one git command; the command is killed after it.
    pub timeout: Duration,
    /// Bytes per second below which an HTTP transfer counts as stalled (0: no limit).
    pub low_speed_limit: u32,
    /// How long an HTTP transfer may stay below `low_speed_limit` before git aborts it.
    pub low_speed_time: Duration,
    /// ssh `ConnectTimeout` (TCP connect and banner exchange), also the keep-alive interval.
    pub connect_timeout: Duration,
}

/// Built-in `[git]` limits.
pub const BUILTIN_GIT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
pub const BUILTIN_LOW_SPEED_LIMIT: u32 = 1000;
pub const BUILTIN_LOW_SPEED_TIME: Duration = Duration::from_secs(60);
pub const BUILTIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest duration any `[git]` limit accepts.
const MAX_GIT_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

impl Default for GitLimits {
    fn default() -> Self {
        GitLimits {
            timeout: BUILTIN_GIT_TIMEOUT,
            low_speed_limit: BUILTIN_LOW_SPEED_LIMIT,
            low_speed_time: BUILTIN_LOW_SPEED_TIME,
            connect_timeout: BUILTIN_CONNECT_TIMEOUT,
        }
    }
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

    fn parse(text: &str) -> Result<BaseImages, String> {
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
    pub fn registry_image(&self) -> Option<&crate::registry::ImageRef> {
        match &self.source {
            Source::Registry(r) => Some(&r.image),
            Source::Git => None,
        }
    }
}

/// Values that come from the environment rather than the file.
#[derive(Debug, Clone, Default)]
pub struct EnvOverrides {
    /// `PLANNER_REPO_PREFIX`: replaces `defaults.repo_prefix`.
    pub repo_prefix: Option<String>,
    /// `PLANNER_REGISTRY`: registry mode with this prefix for runtimes without a `source`.
    pub registry: Option<String>,
}

impl EnvOverrides {
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// The overrides from `var` (the environment, or a test's map). A variable set to the
    /// empty string counts as unset.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let set = |name: &str| var(name).filter(|s| !s.is_empty());
        EnvOverrides {
            repo_prefix: set("PLANNER_REPO_PREFIX"),
            registry: set("PLANNER_REGISTRY"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    default_runtime: Option<Spanned<String>>,
    cache_dir: Option<Spanned<String>>,
    #[serde(default)]
    defaults: RawKeys,
    #[serde(default)]
    git: RawGit,
    #[serde(default)]
    engine: RawEngine,
    #[serde(default)]
    registry: RawRegistry,
    #[serde(default)]
    cache: cache::RawCache,
    #[serde(default)]
    runtimes: BTreeMap<Spanned<String>, Spanned<RawRuntime>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    repo_prefix: Option<Spanned<String>>,
    source: Option<Spanned<String>>,
    registry: Option<Spanned<String>>,
    registry_image: Option<Spanned<String>>,
    registry_tag: Option<Spanned<String>>,
    branch: Option<Spanned<String>>,
    dockerfile: Option<Spanned<String>>,
    platform: Option<Spanned<String>>,
    image_prefix: Option<Spanned<String>>,
    plan: Option<Spanned<String>>,
    build_args: Option<build_args::RawBuildArgs>,
    base_images: Option<Spanned<String>>,
    builder: Option<Spanned<String>>,
    build_network: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    repo: Option<Spanned<String>>,
    source: Option<Spanned<String>>,
    registry: Option<Spanned<String>>,
    registry_image: Option<Spanned<String>>,
    registry_tag: Option<Spanned<String>>,
    repo_prefix: Option<Spanned<String>>,
    branch: Option<Spanned<String>>,
    dockerfile: Option<Spanned<String>>,
    platform: Option<Spanned<String>>,
    image_prefix: Option<Spanned<String>>,
    plan: Option<Spanned<String>>,
    build_args: Option<build_args::RawBuildArgs>,
    base_images: Option<Spanned<String>>,
    builder: Option<Spanned<String>>,
    build_network: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGit {
    token_env: Option<Spanned<String>>,
    allow_insecure_http: Option<bool>,
    timeout: Option<Spanned<String>>,
    low_speed_limit: Option<Spanned<i64>>,
    low_speed_time: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    idle_timeout: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    insecure: Option<Vec<Spanned<String>>>,
    timeout: Option<Spanned<String>>,
}

/// Turns byte spans into `file:line:column` errors.
struct Locator<'a> {
    file: &'a str,
    text: &'a str,
}

impl Locator<'_> {
    fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let (line, column) = line_column(self.text, span.start);
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// 1-based line and column of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
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

/// The `[engine]` table: `idle_timeout` and `timeout` are durations (`"10m"`, `"90s"`), at
/// least a second.
fn validate_engine(raw: &RawEngine, loc: &Locator) -> Result<EngineSettings, ConfigError> {
    let builtin = EngineSettings::default();
    let duration = |key: &str, v: &Option<Spanned<String>>, default| {
        let Some(v) = v else { return Ok(default) };
        let bad = |why: String| {
            loc.error(
                v.span(),
                format!(
                    "invalid engine.{key} {:?}: {why}\n  help: write a duration such as \"10m\", \"90s\" or \"1h\"",
                    v.get_ref()
                ),
            )
        };
        let d = humantime::parse_duration(v.get_ref()).map_err(|e| bad(e.to_string()))?;
        if d < std::time::Duration::from_secs(1) {
            return Err(bad("it must be at least 1s".into()));
        }
        Ok(d)
    };
    Ok(EngineSettings {
        idle_timeout: duration("idle_timeout", &raw.idle_timeout, builtin.idle_timeout)?,
        timeout: duration("timeout", &raw.timeout, builtin.timeout)?,
    })
}

/// The `[registry]` table: `insecure` hosts and the per-request `timeout`.
fn validate_registry(raw: &RawRegistry, loc: &Locator) -> Result<RegistrySettings, ConfigError> {
    let mut out = RegistrySettings {
        insecure: Vec::new(),
        timeout: DEFAULT_REGISTRY_TIMEOUT,
    };
    for host in raw.insecure.iter().flatten() {
        validate_insecure_host(host.get_ref()).map_err(|m| loc.error(host.span(), m))?;
        out.insecure.push(host.get_ref().to_ascii_lowercase());
    }
    if let Some(v) = &raw.timeout {
        out.timeout = parse_git_duration(v.get_ref()).map_err(|m| {
            loc.error(
                v.span(),
                format!("invalid registry.timeout {:?}: {m}", v.get_ref()),
            )
        })?;
    }
    Ok(out)
}

fn validate_git(raw: &RawGit, loc: &Locator) -> Result<GitSettings, ConfigError> {
    let token_env = match &raw.token_env {
        Some(v) if !ENV_RE.is_match(v.get_ref()) => {
            return Err(loc.error(
                v.span(),
                format!(
                    "invalid git.token_env {:?}: name an environment variable (letters, digits, _), not the token itself",
                    v.get_ref()
                ),
            ));
        }
        Some(v) => Some(v.get_ref().clone()),
        None => None,
    };
    Ok(GitSettings {
        token_env,
        allow_insecure_http: raw.allow_insecure_http.unwrap_or(false),
        limits: validate_git_limits(raw, loc)?,
    })
}

/// The `[git]` time limits: durations such as `"30m"` or `"90s"`, whole seconds, 1 s to 7 days.
fn validate_git_limits(raw: &RawGit, loc: &Locator) -> Result<GitLimits, ConfigError> {
    let builtin = GitLimits::default();
    let duration = |key: &str, v: &Option<Spanned<String>>, default: Duration| match v {
        None => Ok(default),
        Some(v) => parse_git_duration(v.get_ref()).map_err(|m| {
            loc.error(
                v.span(),
                format!("invalid git.{key} {:?}: {m}", v.get_ref()),
            )
        }),
    };
    let low_speed_limit = match &raw.low_speed_limit {
        None => builtin.low_speed_limit,
        Some(v) => u32::try_from(*v.get_ref()).map_err(|_| {
            loc.error(
                v.span(),
                format!(
                    "invalid git.low_speed_limit {}: give bytes per second, 0 (no limit) to {}",
                    v.get_ref(),
                    u32::MAX
                ),
            )
        })?,
    };
    Ok(GitLimits {
        timeout: duration("timeout", &raw.timeout, builtin.timeout)?,
        low_speed_limit,
        low_speed_time: duration(
            "low_speed_time",
            &raw.low_speed_time,
            builtin.low_speed_time,
        )?,
        connect_timeout: duration(
            "connect_timeout",
            &raw.connect_timeout,
            builtin.connect_timeout,
        )?,
    })
}

/// Parses a `[git]` duration (humantime syntax: `"90s"`, `"30m"`, `"1h 30m"`).
fn parse_git_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{e}; write a duration such as \"90s\", \"30m\" or \"1h\""))?;
    if d.subsec_nanos() != 0 || d < Duration::from_secs(1) || d > MAX_GIT_DURATION {
        return Err("give whole seconds, from \"1s\" to \"7d\"".into());
    }
    Ok(d)
}

/// A `[defaults]` value with the span it came from (`None` for built-in or env values).
#[derive(Clone)]
struct Sourced {
    value: String,
    span: Option<Range<usize>>,
    origin: &'static str,
}

struct Defaults {
    repo_prefix: Sourced,
    branch: Sourced,
    dockerfile: Sourced,
    platform: Sourced,
    image_prefix: Sourced,
    /// `None`: each runtime runs its source's default plan.
    plan: Option<Sourced>,
    source: Sourced,
    registry: Option<Sourced>,
    registry_image: Sourced,
    registry_tag: Sourced,
    build_args: BuildArgs,
    base_images: Sourced,
    builder: Sourced,
    build_network: Sourced,
}

impl Defaults {
    fn resolve(raw: &RawKeys, env: &EnvOverrides, loc: &Locator) -> Result<Self, ConfigError> {
        let pick = |v: &Option<Spanned<String>>, builtin: &str| match v {
            Some(s) => Sourced {
                value: s.get_ref().clone(),
                span: Some(s.span()),
                origin: "",
            },
            None => Sourced {
                value: builtin.to_owned(),
                span: None,
                origin: "built-in default",
            },
        };
        let mut repo_prefix = pick(&raw.repo_prefix, BUILTIN_REPO_PREFIX);
        if let Some(prefix) = &env.repo_prefix {
            repo_prefix = Sourced {
                value: prefix.clone(),
                span: None,
                origin: "PLANNER_REPO_PREFIX",
            };
        }
        let own = |v: &Option<Spanned<String>>| {
            v.as_ref().map(|s| Sourced {
                value: s.get_ref().clone(),
                span: Some(s.span()),
                origin: "",
            })
        };
        let from_env = |value: &str| Sourced {
            value: value.to_owned(),
            span: None,
            origin: "PLANNER_REGISTRY",
        };
        let defaults = Defaults {
            repo_prefix,
            branch: pick(&raw.branch, BUILTIN_BRANCH),
            dockerfile: pick(&raw.dockerfile, BUILTIN_DOCKERFILE),
            platform: pick(&raw.platform, BUILTIN_PLATFORM),
            image_prefix: pick(&raw.image_prefix, BUILTIN_IMAGE_PREFIX),
            plan: own(&raw.plan),
            source: match &env.registry {
                Some(_) => from_env(SourceKind::Registry.name()),
                None => pick(&raw.source, SourceKind::Git.name()),
            },
            registry: env
                .registry
                .as_deref()
                .map(from_env)
                .or_else(|| own(&raw.registry)),
            registry_image: pick(&raw.registry_image, BUILTIN_REGISTRY_IMAGE),
            registry_tag: pick(&raw.registry_tag, BUILTIN_REGISTRY_TAG),
            build_args: match &raw.build_args {
                Some(t) => build_args::validate(t, "defaults", loc)?,
                None => BuildArgs::new(),
            },
            base_images: pick(&raw.base_images, BaseImages::Track.name()),
            builder: pick(&raw.builder, Builder::Auto.name()),
            build_network: pick(&raw.build_network, BuildNetwork::Default.name()),
        };
        Ok(defaults)
    }
}

/// Reports a bad value at its span, or at the runtime's table when it was inherited.
fn refuse(loc: &Locator, value: &Sourced, table: Range<usize>, message: String) -> ConfigError {
    match (&value.span, value.origin) {
        (Some(span), _) => loc.error(span.clone(), message),
        (None, origin) if origin.starts_with("PLANNER_") => ConfigError::Env {
            origin: origin.into(),
            message,
        },
        (None, origin) => loc.error(table, format!("{message} (from the {origin})")),
    }
}

fn override_or(own: &Option<Spanned<String>>, default: &Sourced) -> Sourced {
    match own {
        Some(s) => Sourced {
            value: s.get_ref().clone(),
            span: Some(s.span()),
            origin: "",
        },
        None => default.clone(),
    }
}

fn validate_runtime(
    name: &Spanned<String>,
    raw: &RawRuntime,
    defaults: &Defaults,
    git: &GitSettings,
    plan_source: &dyn Fn(&str) -> Option<SourceKind>,
    loc: &Locator,
) -> Result<Runtime, ConfigError> {
    let rt = name.get_ref();
    if !NAME_RE.is_match(rt) || rt.len() > 128 {
        return Err(loc.error(
            name.span(),
            format!("invalid runtime name {rt:?}: names must match ^[a-z0-9][a-z0-9._-]*$ (at most 128 characters)"),
        ));
    }
    // A refusal points at where the value came from (the runtime's table, [defaults], the env).
    let refused = |value: &Sourced, m: String| {
        refuse(loc, value, name.span(), format!("runtime {rt:?}: {m}"))
    };
    let repo = repo_of(rt, raw, defaults);
    let repo_url = validate_repo_url(&repo.value, git).map_err(|m| refused(&repo, m))?;
    let branch = override_or(&raw.branch, &defaults.branch);
    validate_branch(&branch.value).map_err(|m| refused(&branch, m))?;
    let dockerfile = override_or(&raw.dockerfile, &defaults.dockerfile);
    let dockerfile_path =
        validate_dockerfile(&dockerfile.value).map_err(|m| refused(&dockerfile, m))?;
    let platform = override_or(&raw.platform, &defaults.platform);
    validate_platform(&platform.value).map_err(|m| refused(&platform, m))?;
    let image_prefix = override_or(&raw.image_prefix, &defaults.image_prefix);
    validate_image_repo(&format!("{}{rt}", image_prefix.value))
        .map_err(|m| refused(&image_prefix, m))?;
    let (source, source_from) = source_of(rt, raw, defaults, loc, name.span())?;
    let plan = plan_of(raw, defaults, source.kind());
    match plan_source(&plan.value) {
        None => {
            let m = format!(
                "unknown plan {:?}: add plans/{}.toml (or pass --plans DIR holding it)",
                plan.value, plan.value
            );
            return Err(refused(&plan, m));
        }
        Some(reads) if reads != source.kind() => {
            let m = format!(
                "plan {:?} reads a {} source, but this runtime's source is {} ({})\n  help: set plan = {:?} for it, or its source = {:?}",
                plan.value,
                reads.name(),
                source.kind().name(),
                source_from,
                source.kind().default_plan(),
                reads.name()
            );
            return Err(refused(&plan, m));
        }
        Some(_) => {}
    }
    let base_images = override_or(&raw.base_images, &defaults.base_images);
    let base_images =
        BaseImages::parse(&base_images.value).map_err(|m| refused(&base_images, m))?;
    let own_args = match &raw.build_args {
        Some(t) => build_args::validate(t, &format!("runtime {rt:?}"), loc)?,
        None => BuildArgs::new(),
    };
    let builder = override_or(&raw.builder, &defaults.builder);
    let builder_kind = Builder::from_name(&builder.value)
        .ok_or_else(|| refused(&builder, builder::bad_builder(&builder.value)))?;
    let network = override_or(&raw.build_network, &defaults.build_network);
    let network_mode = BuildNetwork::from_name(&network.value)
        .ok_or_else(|| refused(&network, builder::bad_network(&network.value)))?;
    Ok(Runtime {
        name: rt.clone(),
        source,
        repo: repo_url,
        branch: branch.value,
        dockerfile: dockerfile_path,
        platform: platform.value,
        image_prefix: image_prefix.value,
        plan: plan.value,
        build_args: build_args::merge(&defaults.build_args, own_args),
        base_images,
        builder: builder_kind,
        build_network: network_mode,
    })
}

/// The runtime's plan: its own, else `[defaults] plan`, else its source's default plan.
fn plan_of(raw: &RawRuntime, defaults: &Defaults, source: SourceKind) -> Sourced {
    let builtin = || Sourced {
        value: source.default_plan().to_owned(),
        span: None,
        origin: "built-in default",
    };
    match (&raw.plan, &defaults.plan) {
        (Some(_), _) => override_or(&raw.plan, &builtin()),
        (None, Some(d)) => d.clone(),
        (None, None) => builtin(),
    }
}

/// The runtime's source and where that choice came from (for messages), with a registry
/// runtime's image reference validated.
fn source_of(
    rt: &str,
    raw: &RawRuntime,
    defaults: &Defaults,
    loc: &Locator,
    table: Range<usize>,
) -> Result<(Source, String), ConfigError> {
    let kind = override_or(&raw.source, &defaults.source);
    let from = match (kind.span.is_some(), kind.origin) {
        (true, _) => "set in the file".to_owned(),
        (false, origin) => format!("from the {origin}").replace("the PLANNER_", "PLANNER_"),
    };
    let refused =
        |v: &Sourced, m: String| refuse(loc, v, table.clone(), format!("runtime {rt:?}: {m}"));
    let Some(source) = SourceKind::from_name(&kind.value) else {
        let m = format!(
            "invalid source {:?}: give \"git\" or \"registry\"",
            kind.value
        );
        return Err(refused(&kind, m));
    };
    if source == SourceKind::Git {
        return Ok((Source::Git, from));
    }
    let registry = match (&raw.registry, &defaults.registry) {
        (Some(_), _) | (None, None) => raw.registry.as_ref().map(|r| Sourced {
            value: r.get_ref().clone(),
            span: Some(r.span()),
            origin: "",
        }),
        (None, Some(d)) => Some(d.clone()),
    };
    let Some(registry) = registry else {
        let m = "its source is registry but no registry is set\n  help: set registry = \"host/org\" in [defaults] or its table, or PLANNER_REGISTRY".to_owned();
        return Err(refused(&kind, m));
    };
    let image = override_or(&raw.registry_image, &defaults.registry_image);
    let tag = override_or(&raw.registry_tag, &defaults.registry_tag);
    let text = format!(
        "{}/{}{rt}:{}",
        registry.value.trim_end_matches('/'),
        image.value,
        tag.value
    );
    let image_ref = crate::registry::ImageRef::parse(&text).map_err(|m| {
        let culprit = if tag.value.is_empty() || tag.value.contains(['/', ':', '@']) {
            &tag
        } else {
            &registry
        };
        refused(
            culprit,
            format!("registry image {text:?} is not a valid reference: {m}"),
        )
    })?;
    Ok((Source::Registry(RegistrySource { image: image_ref }), from))
}

/// The runtime's repository: its own `repo`, else its (or the default) `repo_prefix` + name.
fn repo_of(rt: &str, raw: &RawRuntime, defaults: &Defaults) -> Sourced {
    match &raw.repo {
        Some(r) => Sourced {
            value: r.get_ref().clone(),
            span: Some(r.span()),
            origin: "",
        },
        None => {
            let prefix = override_or(&raw.repo_prefix, &defaults.repo_prefix);
            Sourced {
                value: format!("{}{rt}", prefix.value),
                ..prefix
            }
        }
    }
}

fn validate_default_runtime(
    raw: Option<&Spanned<String>>,
    runtimes: &BTreeMap<String, Runtime>,
    loc: &Locator,
) -> Result<Option<String>, ConfigError> {
    let Some(name) = raw else { return Ok(None) };
    if runtimes.contains_key(name.get_ref()) {
        return Ok(Some(name.get_ref().clone()));
    }
    let known: Vec<&str> = runtimes.keys().map(String::as_str).collect();
    Err(loc.error(
        name.span(),
        format!(
            "default_runtime {:?} is not declared under [runtimes]; declared: {}",
            name.get_ref(),
            known.join(", ")
        ),
    ))
}

/// Checks a repository URL against the safety rules; returns the parsed URL.
pub fn validate_repo_url(text: &str, git: &GitSettings) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("invalid repo URL {text:?}: {e}"))?;
    let shown = crate::mask::display_url(&url);
    // An ssh user name (`ssh://git@host/…`) selects the account, it is no secret; a password is.
    let user_refused = !url.username().is_empty() && url.scheme() != "ssh";
    if user_refused || url.password().is_some() {
        return Err(format!(
            "repo URL {shown} carries credentials: remove them and put the token in the environment variable named by [git] token_env"
        ));
    }
    match url.scheme() {
        "https" | "ssh" | "file" => {}
        "http" if git.allow_insecure_http => {}
        "http" => {
            return Err(format!(
                "repo URL {shown} uses plain http://, which is refused: use https:// or set [git] allow_insecure_http = true"
            ));
        }
        other => {
            return Err(format!(
                "repo URL {shown} has unsupported scheme {other:?}: use https:// (or ssh://, file://)"
            ));
        }
    }
    if url.scheme() != "file" && url.host_str().is_none_or(str::is_empty) {
        return Err(format!("repo URL {shown} has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "repo URL {shown} must not have a query or fragment"
        ));
    }
    if url.path().trim_matches('/').is_empty() {
        return Err(format!("repo URL {shown} has no repository path"));
    }
    Ok(url)
}

/// Checks a branch name with git's ref-name rules (`git check-ref-format`).
pub fn validate_branch(branch: &str) -> Result<(), String> {
    let bad = branch.is_empty()
        || branch.len() > 255
        || branch.starts_with(['-', '/', '.'])
        || branch.ends_with(['/', '.'])
        || branch.ends_with(".lock")
        || branch.contains("..")
        || branch.contains("//")
        || branch.contains("@{")
        || branch.contains("/.")
        || branch == "@"
        || branch
            .chars()
            .any(|c| c.is_control() || c == ' ' || "~^:?*[\\".contains(c));
    if bad {
        return Err(format!(
            "invalid branch {branch:?}: not a valid git branch name (see git check-ref-format)"
        ));
    }
    Ok(())
}

/// Checks a Dockerfile path: relative, inside the repository, no `..`. Returns it normalised.
pub fn validate_dockerfile(path: &str) -> Result<String, String> {
    if path.is_empty() || path.contains('\0') || path.contains('\\') {
        return Err(format!("invalid dockerfile path {path:?}"));
    }
    if path.starts_with('/') {
        return Err(format!(
            "dockerfile path {path:?} is absolute: give a path inside the repository, e.g. \"Dockerfile\""
        ));
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(format!(
            "dockerfile path {path:?} contains \"..\": it must stay inside the repository"
        ));
    }
    if parts.is_empty() {
        return Err(format!("dockerfile path {path:?} names no file"));
    }
    Ok(parts.join("/"))
}

/// Checks a platform string such as `linux/amd64` or `linux/arm64/v8`.
pub fn validate_platform(platform: &str) -> Result<(), String> {
    if PLATFORM_RE.is_match(platform) {
        Ok(())
    } else {
        Err(format!(
            "invalid platform {platform:?}: expected os/arch[/variant], e.g. \"linux/amd64\""
        ))
    }
}

/// Checks an image repository name (`[host[:port]/]path`) per Docker's reference grammar.
pub fn validate_image_repo(repo: &str) -> Result<(), String> {
    let complaint = || {
        format!(
            "image name {repo:?} is not a valid Docker repository name (lowercase letters, digits, and single . _ - between them; / between path parts)"
        )
    };
    if repo.len() > 255 {
        return Err(complaint());
    }
    let mut parts: Vec<&str> = repo.split('/').collect();
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        if !IMAGE_HOST_RE.is_match(parts[0]) {
            return Err(complaint());
        }
        parts.remove(0);
    }
    if parts.iter().all(|p| IMAGE_COMPONENT_RE.is_match(p)) {
        Ok(())
    } else {
        Err(complaint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Config {
        parse(text, "runtimes.toml", &EnvOverrides::default(), &|p| {
            (p == "local-build").then_some(SourceKind::Git)
        })
        .unwrap()
    }

    #[test]
    fn engine_timeouts_are_durations() {
        let builtin = parse_ok("").engine;
        assert_eq!(builtin.idle_timeout, DEFAULT_ENGINE_IDLE_TIMEOUT);
        assert_eq!(builtin.timeout, DEFAULT_ENGINE_TIMEOUT);
        let c = parse_ok("[engine]\nidle_timeout = \"90s\"\ntimeout = \"5s\"\n");
        assert_eq!(c.engine.idle_timeout, std::time::Duration::from_secs(90));
        assert_eq!(c.engine.timeout, std::time::Duration::from_secs(5));
        for key in ["idle_timeout", "timeout"] {
            for bad in ["soon", "0s", "10 parsecs", "500ms"] {
                let text = format!("[engine]\n{key} = \"{bad}\"\n");
                let err = parse(&text, "r.toml", &EnvOverrides::default(), &|_| {
                    Some(SourceKind::Git)
                })
                .unwrap_err()
                .to_string();
                assert!(
                    err.contains("r.toml:2:") && err.contains(&format!("engine.{key} ")),
                    "{err}"
                );
            }
        }
        let err = parse(
            "[engine]\nidel_timeout = \"1m\"\n",
            "r.toml",
            &EnvOverrides::default(),
            &|_| Some(SourceKind::Git),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("idel_timeout"), "{err}");
    }

    fn parse_err(text: &str) -> String {
        parse(text, "runtimes.toml", &EnvOverrides::default(), &|p| {
            (p == "local-build").then_some(SourceKind::Git)
        })
        .unwrap_err()
        .to_string()
    }

    fn registry_env(value: &str) -> EnvOverrides {
        EnvOverrides::from_vars(|n| (n == "PLANNER_REGISTRY").then(|| value.to_owned()))
    }

    fn both_plans(p: &str) -> Option<SourceKind> {
        match p {
            "local-build" => Some(SourceKind::Git),
            "registry-pull" => Some(SourceKind::Registry),
            _ => None,
        }
    }

    #[test]
    fn planner_registry_puts_runtimes_without_a_source_in_registry_mode() {
        let text = "[runtimes.a]\n[runtimes.b]\nsource = \"git\"\n[runtimes.c]\nregistry = \"127.0.0.1:5000/own\"\nregistry_tag = \"v2\"\n";
        let cfg = parse(
            text,
            "r.toml",
            &registry_env("ghcr.io/molecule-ai"),
            &both_plans,
        )
        .unwrap();
        let a = &cfg.runtimes["a"];
        assert_eq!(a.source.kind(), SourceKind::Registry);
        assert_eq!(
            a.registry_image().unwrap().to_string(),
            "ghcr.io/molecule-ai/workspace-template-a:latest"
        );
        assert_eq!(a.plan, "registry-pull");
        assert_eq!(
            a.repo_identity(),
            "ghcr.io/molecule-ai/workspace-template-a"
        );
        assert_eq!(cfg.runtimes["b"].source, Source::Git);
        assert_eq!(cfg.runtimes["b"].plan, "local-build");
        assert_eq!(
            cfg.runtimes["c"].registry_image().unwrap().to_string(),
            "127.0.0.1:5000/own/workspace-template-c:v2"
        );
        // Unset, the same file is all git.
        let cfg = parse(text, "r.toml", &EnvOverrides::default(), &both_plans).unwrap();
        assert_eq!(cfg.runtimes["a"].source, Source::Git);
    }

    #[test]
    fn an_empty_planner_registry_is_unset() {
        let env = registry_env("");
        assert_eq!(env.registry, None);
        let cfg = parse("[runtimes.a]\n", "r.toml", &env, &both_plans).unwrap();
        assert_eq!(cfg.runtimes["a"].source, Source::Git);
    }

    #[test]
    fn registry_mode_needs_a_registry_and_a_fitting_plan() {
        let err = parse(
            "[defaults]\nsource = \"registry\"\n[runtimes.a]\n",
            "r.toml",
            &EnvOverrides::default(),
            &both_plans,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("r.toml:2:")
                && err.contains("no registry is set")
                && err.contains("PLANNER_REGISTRY"),
            "{err}"
        );
        let err = parse(
            "[defaults]\nplan = \"local-build\"\n[runtimes.a]\n",
            "r.toml",
            &registry_env("h.example/o"),
            &both_plans,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("r.toml:2:")
                && err.contains("reads a git source")
                && err.contains("from PLANNER_REGISTRY")
                && err.contains("registry-pull"),
            "{err}"
        );
        let err = parse(
            "[defaults]\nsource = \"svn\"\n[runtimes.a]\n",
            "r.toml",
            &EnvOverrides::default(),
            &both_plans,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("r.toml:2:") && err.contains("\"git\" or \"registry\""),
            "{err}"
        );
    }

    #[test]
    fn bad_registry_references_and_settings_are_refused() {
        for (text, needle) in [
            (
                "[defaults]\nsource = \"registry\"\nregistry = \"Bad Host/x\"\n[runtimes.a]\n",
                "r.toml:3:",
            ),
            (
                "[defaults]\nsource = \"registry\"\nregistry = \"h.example/x\"\nregistry_tag = \"a/b\"\n[runtimes.a]\n",
                "r.toml:4:",
            ),
            ("[registry]\ninsecure = [\"http://h:5000\"]\n", "r.toml:2:"),
            ("[registry]\ntimeout = \"soon\"\n", "r.toml:2:"),
        ] {
            let err = parse(text, "r.toml", &EnvOverrides::default(), &both_plans)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let cfg = parse(
            "[registry]\ninsecure = [\"Reg.Internal:5000\"]\ntimeout = \"20s\"\n",
            "r.toml",
            &EnvOverrides::default(),
            &both_plans,
        )
        .unwrap();
        assert_eq!(cfg.registry.insecure, ["reg.internal:5000"]);
        assert_eq!(cfg.registry.timeout, std::time::Duration::from_secs(20));
    }

    #[test]
    fn shipped_config_is_valid_and_lists_nine_runtimes() {
        let cfg = parse_ok(BUILTIN_RUNTIMES_TOML);
        let names: Vec<_> = cfg.runtimes.keys().cloned().collect();
        assert_eq!(
            names,
            [
                "autogen",
                "claude-code",
                "codex",
                "crewai",
                "deepagents",
                "gemini-cli",
                "hermes",
                "langgraph",
                "openclaw"
            ]
        );
        assert_eq!(cfg.default_runtime.as_deref(), Some("langgraph"));
        let lg = &cfg.runtimes["langgraph"];
        assert_eq!(
            lg.repo.as_str(),
            "https://git.moleculesai.app/molecule-ai/molecule-ai-workspace-template-langgraph"
        );
        assert_eq!(
            lg.pinned_tag(&"a".repeat(40)),
            "molecule-local/workspace-template-langgraph:aaaaaaaaaaaa"
        );
    }

    #[test]
    fn per_runtime_overrides_win_over_defaults() {
        let cfg = parse_ok(
            "[defaults]\nrepo_prefix = \"https://h.example/org/t-\"\nbranch = \"main\"\n\
             [runtimes.a]\n[runtimes.custom]\nrepo = \"https://git.example.com/org/custom\"\nbranch = \"release\"\n",
        );
        assert_eq!(cfg.runtimes["a"].repo.as_str(), "https://h.example/org/t-a");
        assert_eq!(
            cfg.runtimes["custom"].repo.as_str(),
            "https://git.example.com/org/custom"
        );
        assert_eq!(cfg.runtimes["custom"].branch, "release");
        assert_eq!(cfg.runtimes["a"].branch, "main");
    }

    #[test]
    fn env_repo_prefix_replaces_the_file_default() {
        let env = EnvOverrides {
            repo_prefix: Some("https://mirror.example/x-".into()),
            registry: None,
        };
        let cfg = parse(
            "[defaults]\nrepo_prefix = \"https://h.example/org/t-\"\n[runtimes.a]\n",
            "f.toml",
            &env,
            &|_| Some(SourceKind::Git),
        )
        .unwrap();
        assert_eq!(
            cfg.runtimes["a"].repo.as_str(),
            "https://mirror.example/x-a"
        );
    }

    #[test]
    fn unknown_key_is_refused_with_line_and_column() {
        let err = parse_err("[runtimes.a]\nbrnach = \"main\"\n");
        assert!(err.starts_with("runtimes.toml:2:1: "), "{err}");
        assert!(err.contains("brnach"), "{err}");
    }

    #[test]
    fn bad_runtime_name_is_refused() {
        let err = parse_err("\n[runtimes.Bad_Name]\n");
        assert!(err.starts_with("runtimes.toml:2:"), "{err}");
        assert!(err.contains("invalid runtime name \"Bad_Name\""), "{err}");
    }

    #[test]
    fn dockerfile_escapes_are_refused() {
        let err = parse_err("[runtimes.a]\ndockerfile = \"../etc/passwd\"\n");
        assert!(err.starts_with("runtimes.toml:2:14: "), "{err}");
        assert!(err.contains("\"..\""), "{err}");
        let err = parse_err("[runtimes.a]\ndockerfile = \"/Dockerfile\"\n");
        assert!(err.contains("absolute"), "{err}");
    }

    #[test]
    fn bad_urls_are_refused() {
        let err = parse_err("[runtimes.a]\nrepo = \"http://h.example/x\"\n");
        assert!(err.contains("allow_insecure_http"), "{err}");
        let err = parse_err("[runtimes.a]\nrepo = \"https://u:zz9secret@h.example/x\"\n");
        assert!(
            err.contains("carries credentials") && !err.contains("zz9secret"),
            "{err}"
        );
        let err = parse_err("[runtimes.a]\nrepo = \"ftp://h.example/x\"\n");
        assert!(err.contains("unsupported scheme"), "{err}");
        let err = parse_err("[runtimes.a]\nrepo = \"not a url\"\n");
        assert!(err.contains("invalid repo URL"), "{err}");
        let ok = parse(
            "[git]\nallow_insecure_http = true\n[runtimes.a]\nrepo = \"http://127.0.0.1:9/x\"\n",
            "f",
            &EnvOverrides::default(),
            &|_| Some(SourceKind::Git),
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn ssh_user_is_accepted_but_not_an_ssh_password() {
        let cfg = parse_ok("[runtimes.a]\nrepo = \"ssh://git@h.example:2222/org/a.git\"\n");
        let a = &cfg.runtimes["a"];
        assert_eq!(a.repo.as_str(), "ssh://git@h.example:2222/org/a.git");
        assert_eq!(a.repo_identity(), "ssh://h.example:2222/org/a.git");
        let err = parse_err("[runtimes.a]\nrepo = \"ssh://git:pw9secret@h.example/org/a\"\n");
        assert!(
            err.contains("carries credentials") && !err.contains("pw9secret"),
            "{err}"
        );
        let err = parse_err("[runtimes.a]\nrepo = \"https://git@h.example/org/a\"\n");
        assert!(err.contains("carries credentials"), "{err}");
    }

    #[test]
    fn git_limits_default_and_parse() {
        let cfg = parse_ok("[runtimes.a]\n");
        assert_eq!(cfg.git.limits, GitLimits::default());
        assert_eq!(cfg.git.limits.timeout, Duration::from_secs(1800));
        let cfg = parse_ok(
            "[git]\ntimeout = \"1h 30m\"\nlow_speed_limit = 0\nlow_speed_time = \"2s\"\nconnect_timeout = \"5s\"\n",
        );
        let l = &cfg.git.limits;
        assert_eq!(l.timeout, Duration::from_secs(5400));
        assert_eq!(l.low_speed_limit, 0);
        assert_eq!(l.low_speed_time, Duration::from_secs(2));
        assert_eq!(l.connect_timeout, Duration::from_secs(5));
    }

    #[test]
    fn bad_git_limits_are_refused_with_line_and_column() {
        let err = parse_err("[git]\ntimeout = \"soon\"\n");
        assert!(err.starts_with("runtimes.toml:2:11: "), "{err}");
        assert!(err.contains("invalid git.timeout \"soon\""), "{err}");
        let err = parse_err("[git]\nlow_speed_time = \"500ms\"\n");
        assert!(err.contains("whole seconds"), "{err}");
        let err = parse_err("[git]\nconnect_timeout = \"0s\"\n");
        assert!(err.contains("invalid git.connect_timeout"), "{err}");
        let err = parse_err("[git]\ntimeout = \"30d\"\n");
        assert!(err.contains("\"7d\""), "{err}");
        let err = parse_err("[git]\nlow_speed_limit = -1\n");
        assert!(err.starts_with("runtimes.toml:2:19: "), "{err}");
        let err = parse_err("[git]\ntimeout = 30\n");
        assert!(err.starts_with("runtimes.toml:2:"), "{err}");
    }

    #[test]
    fn bad_platform_branch_plan_and_default_are_refused() {
        assert!(parse_err("[runtimes.a]\nplatform = \"amd64\"\n").contains("invalid platform"));
        assert!(parse_err("[runtimes.a]\nbranch = \"a..b\"\n").contains("invalid branch"));
        assert!(parse_err("[runtimes.a]\nplan = \"nope\"\n").contains("unknown plan \"nope\""));
        let err = parse_err("default_runtime = \"zz\"\n[runtimes.a]\n");
        assert!(err.contains("declared: a"), "{err}");
    }

    #[test]
    fn inherited_bad_value_points_at_the_runtime() {
        let err = parse_err("[defaults]\nimage_prefix = \"Bad/\"\n[runtimes.a]\n");
        assert!(err.starts_with("runtimes.toml:2:16"), "{err}");
        let err = parse(
            "[runtimes.a]\n",
            "f",
            &EnvOverrides {
                repo_prefix: Some("http://x/".into()),
                registry: None,
            },
            &|_| Some(SourceKind::Git),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("PLANNER_REPO_PREFIX: "), "{err}");
    }

    #[test]
    fn image_repo_grammar() {
        assert!(validate_image_repo("molecule-local/workspace-template-claude-code").is_ok());
        assert!(validate_image_repo("localhost:5000/a/b").is_ok());
        assert!(validate_image_repo("UPPER/x").is_err());
        assert!(validate_image_repo("a//b").is_err());
        assert!(validate_image_repo("a/b-").is_err());
    }

    #[test]
    fn builder_and_build_network_default_merge_and_are_checked() {
        let cfg = parse_ok(
            "[defaults]\nbuild_network = \"none\"\n[runtimes.a]\n[runtimes.b]\nbuilder = \"classic\"\nbuild_network = \"host\"\n",
        );
        assert_eq!(cfg.runtimes["a"].builder, Builder::Auto);
        assert_eq!(cfg.runtimes["a"].build_network, BuildNetwork::None);
        assert_eq!(cfg.runtimes["b"].builder, Builder::Classic);
        assert_eq!(cfg.runtimes["b"].build_network, BuildNetwork::Host);
        let plain = parse_ok("[runtimes.a]\n");
        assert_eq!(plain.runtimes["a"].build_network, BuildNetwork::Default);
        let err = parse_err("[runtimes.a]\nbuilder = \"docker\"\n");
        assert!(
            err.contains("runtimes.toml:2:") && err.contains("invalid builder \"docker\""),
            "{err}"
        );
        let err = parse_err("[defaults]\nbuild_network = \"bridge\"\n[runtimes.a]\n");
        assert!(
            err.contains("runtimes.toml:2:") && err.contains("\"none\" or \"host\""),
            "{err}"
        );
    }

    #[test]
    fn build_args_merge_per_key_and_the_runtime_wins() {
        let cfg = parse_ok(
            "[defaults]\nbuild_args = { RUNTIME_VERSION = \"1.4.2\", BASE = \"slim\" }\n\
             [runtimes.a]\n[runtimes.b]\nbuild_args = { RUNTIME_VERSION = \"2.0\", EXTRA = \"\" }\n",
        );
        let a = &cfg.runtimes["a"].build_args;
        assert_eq!(a["RUNTIME_VERSION"], "1.4.2");
        assert_eq!(a.len(), 2);
        let b = &cfg.runtimes["b"].build_args;
        assert_eq!(
            b.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
            ["BASE=slim", "EXTRA=", "RUNTIME_VERSION=2.0"]
        );
        assert!(
            parse_ok("[runtimes.a]\n").runtimes["a"]
                .build_args
                .is_empty()
        );
        assert!(
            parse_ok(BUILTIN_RUNTIMES_TOML).runtimes["codex"]
                .build_args
                .is_empty()
        );
    }

    #[test]
    fn bad_build_args_are_refused_with_line_and_column() {
        let err = parse_err("[runtimes.a]\nbuild_args = { V = 1 }\n");
        assert!(err.starts_with("runtimes.toml:2:20: "), "{err}");
        assert!(
            err.contains("must be a string, not a integer") && err.contains("V = \"1\""),
            "{err}"
        );
        let err = parse_err("[defaults]\nbuild_args = { V = true }\n[runtimes.a]\n");
        assert!(err.starts_with("runtimes.toml:2:20: defaults: "), "{err}");
        let err = parse_err("[runtimes.a]\nbuild_args = { \"1X\" = \"v\" }\n");
        assert!(
            err.starts_with("runtimes.toml:2:16: runtime \"a\": invalid build arg name \"1X\""),
            "{err}"
        );
        let err = parse_err("[runtimes.a]\nbuild_args = { \"A-B\" = \"v\" }\n");
        assert!(err.contains("invalid build arg name"), "{err}");
        let err = parse_err("[runtimes.a]\nbuild_args = { V = [\"a\"] }\n");
        assert!(err.contains("not a array"), "{err}");
        let err = parse_err("[runtimes.a]\nbuild_args = \"V=1\"\n");
        assert!(err.starts_with("runtimes.toml:2:"), "{err}");
        let big = format!(
            "[runtimes.a]\nbuild_args = {{ V = \"{}\" }}\n",
            "x".repeat(5000)
        );
        assert!(parse_err(&big).contains("at most 4096"));
        let nul = "[runtimes.a]\nbuild_args = { V = \"a\\u0000b\" }\n";
        assert!(parse_err(nul).contains("NUL"), "{}", parse_err(nul));
        let many: Vec<String> = (0..65).map(|i| format!("A{i} = \"x\"")).collect();
        let text = format!("[runtimes.a]\nbuild_args = {{ {} }}\n", many.join(", "));
        assert!(parse_err(&text).contains("more than 64 build_args"));
    }

    #[test]
    fn build_args_never_come_from_the_environment() {
        let env = EnvOverrides::from_vars(|n| {
            (n == "RUNTIME_VERSION" || n.starts_with("PLANNER_BUILD")).then(|| "evil".into())
        });
        let cfg = parse(
            "[defaults]\nbuild_args = { RUNTIME_VERSION = \"1.4.2\" }\n[runtimes.a]\n[runtimes.b]\nbuild_args = {}\n",
            "f",
            &env,
            &|_| Some(SourceKind::Git),
        )
        .unwrap();
        assert_eq!(cfg.runtimes["a"].build_args["RUNTIME_VERSION"], "1.4.2");
        assert_eq!(cfg.runtimes["b"].build_args["RUNTIME_VERSION"], "1.4.2");
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
    }
}
