//! `runtimes.toml`: the schema, the built-in defaults, environment overrides and validation.
//!
//! Owns everything a runtime resolves to (repo URL, branch, Dockerfile path, platform, image
//! names, plan). Every refusal names the file, line and column, what is wrong and how to fix it.
//!
//! - [`error`]: [`ConfigError`] and the `file:line:column` of a span;
//! - [`model`]: the validated types ([`Config`], [`Runtime`], the built-in
//!   values); this file: [`load`] and [`parse`];
//! - [`raw`]: the schema as written (serde, with spans);
//! - [`defaults`]: how each key resolves (own value > `[defaults]` > environment > built-in);
//! - [`validate`]: the rules each value must pass, and the refusals;
//! - `build_args`, `cache`, `smoke`, `source`: the `build_args` key, the `[cache]` table, the
//!   smoke test's keys, a runtime's source and the `[registry]` table (`[publish]` is in
//!   [`model`] and [`validate`]).
//!
//! The settings the leaf crates take (git limits, builder, registry transport) are defined in
//! `planner-base` and re-exported here: the config depends on no leaf crate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod build_args;
mod cache;
pub use build_args::{
    BuildArgs, DEFAULT_NPM_INDEX, DEFAULT_PYPI_INDEX, IndexKind, Indexes, MAX_BUILD_ARGS,
    MAX_NAME_BYTES, MAX_VALUE_BYTES, Release, Releases, to_label as build_args_label,
};
pub use cache::CacheSettings;
mod defaults;
mod error;
mod model;
pub use model::*;
mod raw;
mod smoke;
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

use error::Locator;
pub use error::{ConfigError, line_column};
use raw::RawConfig;
pub use source::{
    DEFAULT_REGISTRY_TIMEOUT, RegistrySource, Source, SourceKind, validate_insecure_host,
};
pub use validate::{
    validate_branch, validate_dockerfile, validate_image_repo, validate_platform, validate_repo_url,
};
use validate::{
    validate_default_runtime, validate_engine, validate_git, validate_publish, validate_registry,
    validate_runtime,
};

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
    let publish = validate_publish(&raw.publish, &loc)?;
    let indexes = build_args::validate_indexes(&raw.indexes, &loc)?;
    let defaults = Defaults::resolve(&raw.defaults, env, &loc)?;
    let tables = validate::Tables {
        git: &git,
        publish: publish.as_ref(),
        indexes: &indexes,
    };
    let mut runtimes = BTreeMap::new();
    for (name, entry) in &raw.runtimes {
        let rt = validate_runtime(name, entry.get_ref(), &defaults, &tables, plan_source, &loc)?;
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
        publish,
        indexes,
        runtimes,
    })
}

#[cfg(test)]
mod tests;
