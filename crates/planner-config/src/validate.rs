//! Validation: every value checked against its rules, every refusal with the file, line
//! and column, what is wrong and how to fix it.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use toml::Spanned;
use url::Url;

use crate::build_args;
use crate::defaults::{Defaults, Sourced, override_or, plan_of, refuse, repo_of, source_of};
use crate::error::{ConfigError, Locator};
use crate::model::{BaseImages, GitSettings, PublishSettings, Runtime};
use crate::raw::{RawEngine, RawGit, RawPublish, RawRegistry, RawRuntime};
use crate::smoke::{parse_smoke_timeout, validate_smoke};
use crate::source::{DEFAULT_REGISTRY_TIMEOUT, SourceKind, validate_insecure_host};
use planner_base::settings::{EngineSettings, GitLimits, RegistrySettings};
use planner_base::{BuildNetwork, Builder};

static NAME_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9._-]*$").unwrap());
static ENV_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").unwrap());
static PLATFORM_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$").unwrap());
/// One path component of an image repository, per the distribution reference grammar.
static IMAGE_COMPONENT_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$").unwrap());
static IMAGE_HOST_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9.-]+(:[0-9]+)?$").unwrap());

/// The longest duration any `[git]` limit accepts.
const MAX_GIT_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The `[engine]` table: `idle_timeout` and `timeout` are durations (`"10m"`, `"90s"`), at
/// least a second.
pub(crate) fn validate_engine(
    raw: &RawEngine,
    loc: &Locator,
) -> Result<EngineSettings, ConfigError> {
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
pub(crate) fn validate_registry(
    raw: &RawRegistry,
    loc: &Locator,
) -> Result<RegistrySettings, ConfigError> {
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

/// The `[publish]` table: `registry` is a `host[:port]/path` prefix (the shared cache's rules:
/// no scheme, tag or digest, a registry host); `None` without one.
pub(crate) fn validate_publish(
    raw: &RawPublish,
    loc: &Locator,
) -> Result<Option<PublishSettings>, ConfigError> {
    let Some(registry) = &raw.registry else {
        return Ok(None);
    };
    let text = registry.get_ref().trim_end_matches('/');
    crate::cache::check(text).map_err(|why| {
        loc.error(
            registry.span(),
            format!("invalid publish.registry {:?}: {why}\n  help: write host[:port]/path, e.g. \"registry.example.com/molecule-ai\" (no scheme, tag or digest)", registry.get_ref()),
        )
    })?;
    Ok(Some(PublishSettings {
        registry: text.to_owned(),
    }))
}

/// Where the `publish` step pushes runtime `rt`: `{publish.registry}/{registry_image}{rt}:{registry_tag}`
/// with the runtime's own (or `[defaults]`) `registry_image` and `registry_tag`, the names a
/// registry-mode consumer with the same keys resolves.
fn publish_of(
    rt: &str,
    raw: &RawRuntime,
    defaults: &Defaults,
    publish: Option<&PublishSettings>,
) -> Result<Option<planner_base::ImageRef>, (Sourced, String)> {
    let Some(publish) = publish else {
        return Ok(None);
    };
    let image = override_or(&raw.registry_image, &defaults.registry_image);
    let tag = override_or(&raw.registry_tag, &defaults.registry_tag);
    let text = format!("{}/{}{rt}:{}", publish.registry, image.value, tag.value);
    planner_base::ImageRef::parse(&text).map(Some).map_err(|m| {
        let culprit = if tag.value.is_empty() || tag.value.contains(['/', ':', '@']) {
            tag
        } else {
            image
        };
        (
            culprit,
            format!("publish destination {text:?} is not a valid reference: {m}"),
        )
    })
}

pub(crate) fn validate_git(raw: &RawGit, loc: &Locator) -> Result<GitSettings, ConfigError> {
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
pub(crate) fn validate_git_limits(raw: &RawGit, loc: &Locator) -> Result<GitLimits, ConfigError> {
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
pub(crate) fn parse_git_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{e}; write a duration such as \"90s\", \"30m\" or \"1h\""))?;
    if d.subsec_nanos() != 0 || d < Duration::from_secs(1) || d > MAX_GIT_DURATION {
        return Err("give whole seconds, from \"1s\" to \"7d\"".into());
    }
    Ok(d)
}

/// The file-wide tables a runtime's values are checked and completed with.
pub(crate) struct Tables<'a> {
    pub(crate) git: &'a GitSettings,
    pub(crate) publish: Option<&'a PublishSettings>,
    pub(crate) indexes: &'a build_args::Indexes,
}

pub(crate) fn validate_runtime(
    name: &Spanned<String>,
    raw: &RawRuntime,
    defaults: &Defaults,
    tables: &Tables<'_>,
    plan_source: &dyn Fn(&str) -> Option<SourceKind>,
    loc: &Locator,
) -> Result<Runtime, ConfigError> {
    let Tables {
        git,
        publish,
        indexes,
    } = *tables;
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
        None => build_args::ArgValues::new(),
    };
    let (fixed_args, releases) =
        build_args::split(build_args::merge(&defaults.build_args, own_args), indexes);
    let builder = override_or(&raw.builder, &defaults.builder);
    let builder_kind = Builder::from_name(&builder.value)
        .ok_or_else(|| refused(&builder, bad_builder(&builder.value)))?;
    let network = override_or(&raw.build_network, &defaults.build_network);
    let network_mode = BuildNetwork::from_name(&network.value)
        .ok_or_else(|| refused(&network, bad_network(&network.value)))?;
    let smoke = match &raw.smoke {
        Some(argv) => Some(validate_smoke(argv, &format!("runtime {rt:?}"), loc)?),
        None => defaults.smoke.clone(),
    };
    let timeout = override_or(&raw.smoke_timeout, &defaults.smoke_timeout);
    let smoke_timeout = parse_smoke_timeout(&timeout.value).map_err(|m| refused(&timeout, m))?;
    let publish = publish_of(rt, raw, defaults, publish).map_err(|(v, m)| refused(&v, m))?;
    Ok(Runtime {
        name: rt.clone(),
        source,
        repo: repo_url,
        branch: branch.value,
        dockerfile: dockerfile_path,
        platform: platform.value,
        image_prefix: image_prefix.value,
        plan: plan.value,
        build_args: fixed_args,
        releases,
        base_images,
        builder: builder_kind,
        build_network: network_mode,
        smoke,
        smoke_timeout,
        publish,
    })
}

pub(crate) fn validate_default_runtime(
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
    let shown = planner_base::mask::display_url(&url);
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

/// Refusal text for a bad `builder` value.
pub(crate) fn bad_builder(value: &str) -> String {
    format!("invalid builder {value:?}: give \"auto\", \"buildkit\" or \"classic\"")
}

/// Refusal text for a bad `build_network` value.
pub(crate) fn bad_network(value: &str) -> String {
    format!(
        "invalid build_network {value:?}: give \"default\", \"none\" or \"host\"\n  help: an engine without a bridge network (dockerd --bridge none) needs \"none\" or \"host\""
    )
}
