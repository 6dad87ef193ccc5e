//! How each runtime key resolves: its own value, else `[defaults]`, else the environment
//! (`PLANNER_REPO_PREFIX`, `PLANNER_REGISTRY`), else the built-in default, each value with
//! where it came from so that a refusal points there.

use std::ops::Range;

use toml::Spanned;

use crate::build_args;
use crate::error::{ConfigError, Locator};
use crate::model::{
    BUILTIN_BRANCH, BUILTIN_DOCKERFILE, BUILTIN_IMAGE_PREFIX, BUILTIN_PLATFORM,
    BUILTIN_REPO_PREFIX, BUILTIN_SMOKE_TIMEOUT, BaseImages,
};
use crate::raw::{RawKeys, RawRuntime};
use crate::source::{BUILTIN_REGISTRY_IMAGE, BUILTIN_REGISTRY_TAG};
use crate::source::{RegistrySource, Source, SourceKind};
use planner_base::{BuildNetwork, Builder};

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

/// A `[defaults]` value with the span it came from (`None` for built-in or env values).
#[derive(Clone)]
pub(crate) struct Sourced {
    pub(crate) value: String,
    pub(crate) span: Option<Range<usize>>,
    pub(crate) origin: &'static str,
}

pub(crate) struct Defaults {
    pub(crate) repo_prefix: Sourced,
    pub(crate) branch: Sourced,
    pub(crate) dockerfile: Sourced,
    pub(crate) platform: Sourced,
    pub(crate) image_prefix: Sourced,
    /// `None`: each runtime runs its source's default plan.
    pub(crate) plan: Option<Sourced>,
    pub(crate) source: Sourced,
    pub(crate) registry: Option<Sourced>,
    pub(crate) registry_image: Sourced,
    pub(crate) registry_tag: Sourced,
    pub(crate) build_args: build_args::ArgValues,
    pub(crate) base_images: Sourced,
    pub(crate) builder: Sourced,
    pub(crate) build_network: Sourced,
    /// `[defaults] smoke`, validated.
    pub(crate) smoke: Option<Vec<String>>,
    pub(crate) smoke_timeout: Sourced,
}

impl Defaults {
    pub(crate) fn resolve(
        raw: &RawKeys,
        env: &EnvOverrides,
        loc: &Locator,
    ) -> Result<Self, ConfigError> {
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
                None => build_args::ArgValues::new(),
            },
            base_images: pick(&raw.base_images, BaseImages::Track.name()),
            builder: pick(&raw.builder, Builder::Auto.name()),
            build_network: pick(&raw.build_network, BuildNetwork::Default.name()),
            smoke: match &raw.smoke {
                Some(argv) => Some(crate::smoke::validate_smoke(argv, "defaults", loc)?),
                None => None,
            },
            smoke_timeout: pick(&raw.smoke_timeout, BUILTIN_SMOKE_TIMEOUT),
        };
        Ok(defaults)
    }
}

/// Reports a bad value at its span, or at the runtime's table when it was inherited.
pub(crate) fn refuse(
    loc: &Locator,
    value: &Sourced,
    table: Range<usize>,
    message: String,
) -> ConfigError {
    match (&value.span, value.origin) {
        (Some(span), _) => loc.error(span.clone(), message),
        (None, origin) if origin.starts_with("PLANNER_") => ConfigError::Env {
            origin: origin.into(),
            message,
        },
        (None, origin) => loc.error(table, format!("{message} (from the {origin})")),
    }
}

pub(crate) fn override_or(own: &Option<Spanned<String>>, default: &Sourced) -> Sourced {
    match own {
        Some(s) => Sourced {
            value: s.get_ref().clone(),
            span: Some(s.span()),
            origin: "",
        },
        None => default.clone(),
    }
}

/// The runtime's plan: its own, else `[defaults] plan`, else its source's default plan.
pub(crate) fn plan_of(raw: &RawRuntime, defaults: &Defaults, source: SourceKind) -> Sourced {
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
pub(crate) fn source_of(
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
    let image_ref = planner_base::ImageRef::parse(&text).map_err(|m| {
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
pub(crate) fn repo_of(rt: &str, raw: &RawRuntime, defaults: &Defaults) -> Sourced {
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
