//! Declared build args: `build_args = { RUNTIME_VERSION = "1.4.2" }` in `[defaults]` or a
//! runtime's table, and released versions as build args: `{ pypi = "pkg" }` (`pre = true`:
//! pre-releases too) or `{ npm = "@scope/pkg" }`, the latest release at the index `[indexes]`
//! names (defaults: the public PyPI and npm registry), resolved every run by the
//! `resolve-version` step.
//!
//! A runtime's table merges over `[defaults]` key by key (its own value wins; a key only in
//! `[defaults]` is inherited). Names are Docker `ARG` names (`^[A-Za-z_][A-Za-z0-9_]*$`),
//! values strings, both bounded. Build args come only from the file: never from the
//! environment or the command line (the origin's rule: no build args from outside), so the
//! key and the image depend on `runtimes.toml` alone.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use toml::Spanned;
use url::Url;

use crate::error::ConfigError;
use crate::error::Locator;

/// A runtime's build args, sorted by name.
pub type BuildArgs = BTreeMap<String, String>;

/// A runtime's released-version build args (`{ pypi = ".." }`), by arg name.
pub type Releases = BTreeMap<String, Release>;

/// The public PyPI's Simple API, the default `[indexes] pypi`.
pub const DEFAULT_PYPI_INDEX: &str = "https://pypi.org/simple/";
/// The public npm registry, the default `[indexes] npm`.
pub const DEFAULT_NPM_INDEX: &str = "https://registry.npmjs.org/";

/// Which index a released version is asked of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndexKind {
    Pypi,
    Npm,
}

impl IndexKind {
    /// The key naming it in `build_args` and `[indexes]`.
    pub fn name(self) -> &'static str {
        match self {
            IndexKind::Pypi => "pypi",
            IndexKind::Npm => "npm",
        }
    }
}

/// A build arg whose value is the latest release of a package.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Release {
    pub kind: IndexKind,
    /// The index (`[indexes]`); it may carry userinfo (a credential): never print or key it
    /// unmasked ([`planner_base::mask::display_url`]).
    pub index: Url,
    pub package: String,
    /// Pre-releases count too (PyPI).
    pub pre: bool,
}

impl Release {
    /// `pypi molecule-ai-workspace-runtime` (`, pre-releases` when `pre`): how reasons name it.
    pub fn describe(&self) -> String {
        let pre = if self.pre { ", pre-releases" } else { "" };
        format!("{} {}{pre}", self.kind.name(), self.package)
    }

    /// Its identity in keys and records: kind, index without credentials, package (a PyPI
    /// name normalized as PEP 503 says, so `My_Pkg` and `my-pkg` are one), `pre`.
    pub fn identity(&self) -> String {
        static RUNS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[-_.]+").unwrap());
        let package = match self.kind {
            IndexKind::Pypi => RUNS.replace_all(&self.package, "-").to_ascii_lowercase(),
            IndexKind::Npm => self.package.clone(),
        };
        format!(
            "{} {} {package}{}",
            self.kind.name(),
            planner_base::mask::display_url(&self.index),
            if self.pre { " pre" } else { "" }
        )
    }
}

/// The `[indexes]` table: where releases are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indexes {
    pub pypi: Url,
    pub npm: Url,
}

impl Default for Indexes {
    fn default() -> Indexes {
        Indexes {
            pypi: Url::parse(DEFAULT_PYPI_INDEX).expect("a valid URL"),
            npm: Url::parse(DEFAULT_NPM_INDEX).expect("a valid URL"),
        }
    }
}

/// The raw `[indexes]` table.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIndexes {
    pypi: Option<Spanned<String>>,
    npm: Option<Spanned<String>>,
}

/// One build arg as declared: a value, or a release to look up (its index filled in per
/// runtime from `[indexes]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArgValue {
    Fixed(String),
    Release {
        kind: IndexKind,
        package: String,
        pre: bool,
    },
}

/// A table's build args as declared.
pub(crate) type ArgValues = BTreeMap<String, ArgValue>;

/// The raw table as written, spans kept for errors.
pub(super) type RawBuildArgs = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

/// Most build args one table may declare.
pub const MAX_BUILD_ARGS: usize = 64;
/// Longest build arg name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Longest build arg value, in bytes.
pub const MAX_VALUE_BYTES: usize = 4096;

static ARG_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").unwrap());

/// Validates one `build_args` table (`table` names it in errors: `defaults`, `runtime "x"`).
pub(super) fn validate(
    raw: &RawBuildArgs,
    table: &str,
    loc: &Locator,
) -> Result<ArgValues, ConfigError> {
    let mut out = ArgValues::new();
    for (i, (name, value)) in raw.iter().enumerate() {
        if i >= MAX_BUILD_ARGS {
            return Err(loc.error(
                name.span(),
                format!("{table}: more than {MAX_BUILD_ARGS} build_args\n  help: declare only the args the Dockerfile reads"),
            ));
        }
        validate_name(name.get_ref())
            .map_err(|m| loc.error(name.span(), format!("{table}: {m}")))?;
        let arg = match value.get_ref() {
            toml::Value::Table(t) => release_of(name.get_ref(), t),
            v => validate_value(name.get_ref(), v).map(ArgValue::Fixed),
        }
        .map_err(|m| loc.error(value.span(), format!("{table}: {m}")))?;
        out.insert(name.get_ref().clone(), arg);
    }
    Ok(out)
}

/// `own` over `defaults`, key by key.
pub(super) fn merge(defaults: &ArgValues, own: ArgValues) -> ArgValues {
    let mut out = defaults.clone();
    out.extend(own);
    out
}

/// The values split: fixed ones, and releases with their index from `indexes`.
pub(super) fn split(values: ArgValues, indexes: &Indexes) -> (BuildArgs, Releases) {
    let (mut fixed, mut releases) = (BuildArgs::new(), Releases::new());
    for (name, value) in values {
        match value {
            ArgValue::Fixed(text) => {
                fixed.insert(name, text);
            }
            ArgValue::Release { kind, package, pre } => {
                let index = match kind {
                    IndexKind::Pypi => indexes.pypi.clone(),
                    IndexKind::Npm => indexes.npm.clone(),
                };
                let release = Release {
                    kind,
                    index,
                    package,
                    pre,
                };
                releases.insert(name, release);
            }
        }
    }
    (fixed, releases)
}

/// `{ pypi = "pkg", pre = true }` or `{ npm = "pkg" }`.
fn release_of(name: &str, table: &toml::Table) -> Result<ArgValue, String> {
    let help = format!(
        "\n  help: {name} = {{ pypi = \"package\" }} (pre = true for pre-releases) or {name} = {{ npm = \"package\" }}"
    );
    let mut kind = None;
    let mut pre = false;
    for (key, value) in table {
        match (key.as_str(), value) {
            ("pypi", toml::Value::String(p)) if kind.is_none() => kind = Some((IndexKind::Pypi, p)),
            ("npm", toml::Value::String(p)) if kind.is_none() => kind = Some((IndexKind::Npm, p)),
            ("pypi" | "npm", _) if kind.is_some() => {
                return Err(format!("build arg {name} names more than one index{help}"));
            }
            ("pre", toml::Value::Boolean(b)) => pre = *b,
            _ => {
                let shown: String = key.chars().take(64).collect();
                return Err(format!(
                    "build arg {name}: unknown or mistyped key {shown:?}{help}"
                ));
            }
        }
    }
    let Some((kind, package)) = kind else {
        return Err(format!("build arg {name} names no index{help}"));
    };
    if pre && kind == IndexKind::Npm {
        return Err(format!(
            "build arg {name}: pre applies to pypi only (npm's latest release is its dist-tags.latest)"
        ));
    }
    validate_package(kind, package).map_err(|m| format!("build arg {name}: {m}"))?;
    Ok(ArgValue::Release {
        kind,
        package: package.clone(),
        pre,
    })
}

/// A package name as its index names packages (PEP 508 names; npm's rules).
fn validate_package(kind: IndexKind, package: &str) -> Result<(), String> {
    static PYPI: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^(?i)[a-z0-9]([a-z0-9._-]*[a-z0-9])?$").unwrap());
    static NPM: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(@[a-z0-9-~][a-z0-9-._~]*/)?[a-z0-9-~][a-z0-9-._~]*$").unwrap()
    });
    let ok = match kind {
        IndexKind::Pypi => PYPI.is_match(package),
        IndexKind::Npm => NPM.is_match(package),
    };
    if ok && package.len() <= 214 {
        return Ok(());
    }
    let shown: String = package.chars().take(64).collect();
    Err(format!(
        "{shown:?} is not a valid {} package name",
        kind.name()
    ))
}

/// The `[indexes]` table: each URL https, or http to a loopback host.
pub(super) fn validate_indexes(raw: &RawIndexes, loc: &Locator) -> Result<Indexes, ConfigError> {
    let mut out = Indexes::default();
    for (kind, value, slot) in [
        ("pypi", &raw.pypi, &mut out.pypi),
        ("npm", &raw.npm, &mut out.npm),
    ] {
        if let Some(v) = value {
            *slot = index_url(v.get_ref())
                .map_err(|m| loc.error(v.span(), format!("indexes.{kind}: {m}")))?;
        }
    }
    Ok(out)
}

fn index_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text)
        .map_err(|e| format!("{:?} is not a URL: {e}", planner_base::mask::mask(text)))?;
    let loopback = url
        .host_str()
        .is_some_and(planner_base::reference::is_loopback);
    let ok = match url.scheme() {
        "https" => true,
        "http" => loopback,
        _ => false,
    };
    if !ok || url.host_str().is_none() || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{} is not allowed: an index URL is https://host/path (http:// only to a loopback host), without query or fragment",
            planner_base::mask::display_url(&url)
        ));
    }
    url.password().map(planner_base::mask::register_secret);
    Ok(url)
}

fn validate_name(name: &str) -> Result<(), String> {
    if ARG_RE.is_match(name) && name.len() <= MAX_NAME_BYTES {
        return Ok(());
    }
    let shown: String = name.chars().take(64).collect();
    Err(format!(
        "invalid build arg name {shown:?}: names must match ^[A-Za-z_][A-Za-z0-9_]*$ (at most {MAX_NAME_BYTES} bytes), as a Dockerfile ARG"
    ))
}

fn validate_value(name: &str, value: &toml::Value) -> Result<String, String> {
    let toml::Value::String(text) = value else {
        return Err(format!(
            "build arg {name} must be a string, not a {}\n  help: quote it: {name} = \"{value}\"",
            value.type_str()
        ));
    };
    if text.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "build arg {name} is {} bytes long; at most {MAX_VALUE_BYTES}",
            text.len()
        ));
    }
    if text.contains('\0') {
        return Err(format!("build arg {name} contains a NUL byte"));
    }
    Ok(text.clone())
}

/// The canonical JSON of `args` (sorted keys, no spaces), as the image label carries it.
pub fn to_label(args: &BuildArgs) -> String {
    serde_json::to_string(args).expect("a string map serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker_arg_names() {
        for ok in ["RUNTIME_VERSION", "_x", "a1", "http_proxy"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["1A", "A-B", "A B", "", "É", "A=B", &"A".repeat(129)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn merge_is_per_key_and_the_runtime_wins() {
        let f = |s: &str| ArgValue::Fixed(s.into());
        let d: ArgValues = [("A".into(), f("1")), ("B".into(), f("2"))].into();
        let own: ArgValues = [("B".into(), f("3")), ("C".into(), f("4"))].into();
        let (m, _) = split(merge(&d, own), &Indexes::default());
        assert_eq!(
            m,
            BuildArgs::from([
                ("A".into(), "1".into()),
                ("B".into(), "3".into()),
                ("C".into(), "4".into())
            ])
        );
    }

    #[test]
    fn label_is_canonical_json() {
        let a: BuildArgs = [("Z".into(), "1".into()), ("A".into(), "é\"".into())].into();
        assert_eq!(to_label(&a), r#"{"A":"é\"","Z":"1"}"#);
    }
}
