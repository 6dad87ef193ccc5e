//! The `[cache]` table: a shared cache of built images in an OCI registry
//! (the shared cache of `planner-steps`). Absent `registry`: no shared cache, today's behaviour.

use serde::Deserialize;
use toml::Spanned;

use crate::error::ConfigError;
use crate::error::Locator;
use planner_base::reference::ImageRef;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    registry: Option<Spanned<String>>,
    pull: Option<bool>,
    push: Option<bool>,
}

/// Where builds are shared, and whether this machine reads and writes there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// `host[:port]/path`: entries are `{registry}/{runtime}:k-<key>`.
    pub registry: String,
    /// Look for a cached build before building.
    pub pull: bool,
    /// Publish each build.
    pub push: bool,
}

/// The validated table; `None` without a `registry`.
pub(super) fn validate(
    raw: &RawCache,
    loc: &Locator,
) -> Result<Option<CacheSettings>, ConfigError> {
    let Some(registry) = &raw.registry else {
        if raw.pull.is_some() || raw.push.is_some() {
            return Err(loc.error(
                0..0,
                "[cache] sets pull or push but no registry\n  help: add registry = \"host[:port]/path\" to [cache], or remove the table",
            ));
        }
        return Ok(None);
    };
    let text = registry.get_ref().trim_end_matches('/');
    check(text).map_err(|why| {
        loc.error(
            registry.span(),
            format!("invalid cache.registry {:?}: {why}\n  help: write host[:port]/path, e.g. \"registry.example.com/planner-cache\" (no scheme, tag or digest)", registry.get_ref()),
        )
    })?;
    Ok(Some(CacheSettings {
        registry: text.to_owned(),
        pull: raw.pull.unwrap_or(true),
        push: raw.push.unwrap_or(true),
    }))
}

/// A cache (or publish) registry must name a repository prefix an entry can be appended to.
pub(crate) fn check(text: &str) -> Result<(), String> {
    if text.contains("://") || text.contains('@') {
        return Err("it has a scheme or a digest".into());
    }
    let last = text.rsplit('/').next().unwrap_or(text);
    if text.contains('/') && last.contains(':') {
        return Err("it has a tag".into());
    }
    let probe = format!("{text}/runtime:k-0");
    let image = ImageRef::parse(&probe).map_err(|e| e.replace(&format!("{probe:?}"), "it"))?;
    if image.registry == planner_base::reference::DOCKER_HUB && !text.starts_with("docker.io") {
        return Err(
            "it names no registry host (the first component needs a '.' or ':', or is localhost)"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn cache_registries_are_host_and_path() {
        for ok in [
            "registry.example.com/planner-cache",
            "127.0.0.1:5000/c",
            "localhost:5000/a/b",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for bad in [
            "https://r.example/c",
            "r.example/c:tag",
            "r.example/c@sha256:x",
            "cache",
            "R.example/UPPER",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}
