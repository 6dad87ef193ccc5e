//! `builder` and `build_network`: which of the engine's builders builds a git runtime's image,
//! and the network its `RUN` steps get.
//!
//! `builder = "auto"` (the default) builds with BuildKit when the engine offers it (its
//! `/session` endpoint, API ≥ 1.39) and with the classic builder otherwise; `"buildkit"` and
//! `"classic"` force one. The two do not produce the same image, so the builder that builds
//! ([`Builder::effective`]) is part of the build key.

/// The `builder` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Builder {
    /// BuildKit when the engine offers it, else the classic builder.
    #[default]
    Auto,
    /// BuildKit through the engine's `/session` endpoint and built-in Dockerfile frontend.
    Buildkit,
    /// The engine's classic (legacy) builder.
    Classic,
}

impl Builder {
    /// The name as written in `runtimes.toml`, plans and keys.
    pub fn name(self) -> &'static str {
        match self {
            Builder::Auto => "auto",
            Builder::Buildkit => "buildkit",
            Builder::Classic => "classic",
        }
    }

    pub fn from_name(name: &str) -> Option<Builder> {
        match name {
            "auto" => Some(Builder::Auto),
            "buildkit" => Some(Builder::Buildkit),
            "classic" => Some(Builder::Classic),
            _ => None,
        }
    }

    /// The builder that builds: `auto` resolves to BuildKit when the engine offers it
    /// (see `Engine::offers_buildkit`), to the classic builder otherwise; the others stand.
    /// Never [`Builder::Auto`]: this is what a build key is computed from.
    pub fn effective(self, engine_offers_buildkit: bool) -> Builder {
        match self {
            Builder::Auto if engine_offers_buildkit => Builder::Buildkit,
            Builder::Auto => Builder::Classic,
            other => other,
        }
    }
}

/// The `build_network` key: the network mode of the build's `RUN` steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BuildNetwork {
    /// The engine's default (its bridge network).
    #[default]
    Default,
    /// No network: for engines without a bridge whose RUN steps need none.
    None,
    /// The engine host's network: for engines without a bridge whose RUN steps download.
    Host,
}

impl BuildNetwork {
    pub fn name(self) -> &'static str {
        match self {
            BuildNetwork::Default => "default",
            BuildNetwork::None => "none",
            BuildNetwork::Host => "host",
        }
    }

    pub fn from_name(name: &str) -> Option<BuildNetwork> {
        match name {
            "default" => Some(BuildNetwork::Default),
            "none" => Some(BuildNetwork::None),
            "host" => Some(BuildNetwork::Host),
            _ => None,
        }
    }

    /// The engine's `networkmode` build parameter; `None` leaves the engine's default.
    pub fn mode(self) -> Option<&'static str> {
        match self {
            BuildNetwork::Default => None,
            BuildNetwork::None => Some("none"),
            BuildNetwork::Host => Some("host"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_resolves_by_what_the_engine_offers() {
        assert_eq!(Builder::Auto.effective(true), Builder::Buildkit);
        assert_eq!(Builder::Auto.effective(false), Builder::Classic);
        assert_eq!(Builder::Classic.effective(true), Builder::Classic);
        assert_eq!(Builder::Buildkit.effective(false), Builder::Buildkit);
        for b in [Builder::Auto, Builder::Buildkit, Builder::Classic] {
            assert_eq!(Builder::from_name(b.name()), Some(b));
        }
        for n in [
            BuildNetwork::Default,
            BuildNetwork::None,
            BuildNetwork::Host,
        ] {
            assert_eq!(BuildNetwork::from_name(n.name()), Some(n));
        }
        assert_eq!(Builder::from_name("BuildKit"), None);
        assert_eq!(BuildNetwork::Default.mode(), None);
        assert_eq!(BuildNetwork::Host.mode(), Some("host"));
    }
}
