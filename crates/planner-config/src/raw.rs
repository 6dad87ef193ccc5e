//! The raw schema of `runtimes.toml`: every table and key as written, with the byte spans
//! errors point at (a span becomes `file:line:column` in [`crate::error::Locator`]). Nothing here
//! is validated; [`crate::validate`] and [`crate::defaults`] turn it into a [`crate::Config`].

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::{build_args, cache};

/// An argv as written, each argument's span kept.
pub(crate) type RawArgv = Spanned<Vec<Spanned<String>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) default_runtime: Option<Spanned<String>>,
    pub(crate) cache_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) defaults: RawKeys,
    #[serde(default)]
    pub(crate) git: RawGit,
    #[serde(default)]
    pub(crate) engine: RawEngine,
    #[serde(default)]
    pub(crate) registry: RawRegistry,
    #[serde(default)]
    pub(crate) cache: cache::RawCache,
    #[serde(default)]
    pub(crate) publish: RawPublish,
    #[serde(default)]
    pub(crate) indexes: build_args::RawIndexes,
    #[serde(default)]
    pub(crate) runtimes: BTreeMap<Spanned<String>, Spanned<RawRuntime>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKeys {
    pub(crate) repo_prefix: Option<Spanned<String>>,
    pub(crate) source: Option<Spanned<String>>,
    pub(crate) registry: Option<Spanned<String>>,
    pub(crate) registry_image: Option<Spanned<String>>,
    pub(crate) registry_tag: Option<Spanned<String>>,
    pub(crate) branch: Option<Spanned<String>>,
    pub(crate) dockerfile: Option<Spanned<String>>,
    pub(crate) platform: Option<Spanned<String>>,
    pub(crate) image_prefix: Option<Spanned<String>>,
    pub(crate) plan: Option<Spanned<String>>,
    pub(crate) build_args: Option<build_args::RawBuildArgs>,
    pub(crate) base_images: Option<Spanned<String>>,
    pub(crate) builder: Option<Spanned<String>>,
    pub(crate) build_network: Option<Spanned<String>>,
    /// The smoke test's argv (`smoke = ["python3", "-c", "import x"]`).
    pub(crate) smoke: Option<RawArgv>,
    pub(crate) smoke_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRuntime {
    pub(crate) repo: Option<Spanned<String>>,
    pub(crate) source: Option<Spanned<String>>,
    pub(crate) registry: Option<Spanned<String>>,
    pub(crate) registry_image: Option<Spanned<String>>,
    pub(crate) registry_tag: Option<Spanned<String>>,
    pub(crate) repo_prefix: Option<Spanned<String>>,
    pub(crate) branch: Option<Spanned<String>>,
    pub(crate) dockerfile: Option<Spanned<String>>,
    pub(crate) platform: Option<Spanned<String>>,
    pub(crate) image_prefix: Option<Spanned<String>>,
    pub(crate) plan: Option<Spanned<String>>,
    pub(crate) build_args: Option<build_args::RawBuildArgs>,
    pub(crate) base_images: Option<Spanned<String>>,
    pub(crate) builder: Option<Spanned<String>>,
    pub(crate) build_network: Option<Spanned<String>>,
    /// The smoke test's argv (`smoke = ["python3", "-c", "import x"]`).
    pub(crate) smoke: Option<RawArgv>,
    pub(crate) smoke_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGit {
    pub(crate) token_env: Option<Spanned<String>>,
    pub(crate) allow_insecure_http: Option<bool>,
    pub(crate) timeout: Option<Spanned<String>>,
    pub(crate) low_speed_limit: Option<Spanned<i64>>,
    pub(crate) low_speed_time: Option<Spanned<String>>,
    pub(crate) connect_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEngine {
    pub(crate) idle_timeout: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRegistry {
    pub(crate) insecure: Option<Vec<Spanned<String>>>,
    pub(crate) timeout: Option<Spanned<String>>,
}

/// `[publish]`: where built images are pushed for registry-mode consumers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPublish {
    pub(crate) registry: Option<Spanned<String>>,
}
