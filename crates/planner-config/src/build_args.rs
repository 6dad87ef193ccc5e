//! Declared build args: `build_args = { RUNTIME_VERSION = "1.4.2" }` in `[defaults]` or a
//! runtime's table.
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

use crate::error::ConfigError;
use crate::error::Locator;

/// A runtime's build args, sorted by name.
pub type BuildArgs = BTreeMap<String, String>;

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
) -> Result<BuildArgs, ConfigError> {
    let mut out = BuildArgs::new();
    for (i, (name, value)) in raw.iter().enumerate() {
        if i >= MAX_BUILD_ARGS {
            return Err(loc.error(
                name.span(),
                format!("{table}: more than {MAX_BUILD_ARGS} build_args\n  help: declare only the args the Dockerfile reads"),
            ));
        }
        validate_name(name.get_ref())
            .map_err(|m| loc.error(name.span(), format!("{table}: {m}")))?;
        let text = validate_value(name.get_ref(), value.get_ref())
            .map_err(|m| loc.error(value.span(), format!("{table}: {m}")))?;
        out.insert(name.get_ref().clone(), text);
    }
    Ok(out)
}

/// `own` over `defaults`, key by key.
pub(super) fn merge(defaults: &BuildArgs, own: BuildArgs) -> BuildArgs {
    let mut out = defaults.clone();
    out.extend(own);
    out
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
        let d: BuildArgs = [("A".into(), "1".into()), ("B".into(), "2".into())].into();
        let own: BuildArgs = [("B".into(), "3".into()), ("C".into(), "4".into())].into();
        let m = merge(&d, own);
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
