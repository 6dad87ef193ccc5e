//! The smoke test's keys: `smoke` (an argv, run once in each new image before `:latest`
//! moves to it) and `smoke_timeout`, in `[defaults]` or a runtime's table (the runtime's own
//! value wins). The argv is bounded and never goes through a shell.

use std::time::Duration;

use crate::error::{ConfigError, Locator};
use crate::model::{MAX_SMOKE_ARG_BYTES, MAX_SMOKE_ARGS, MAX_SMOKE_TIMEOUT};
use crate::raw::RawArgv;

/// A `smoke` argv (`table` names it in errors: `defaults`, `runtime "x"`): not empty, at
/// most [`MAX_SMOKE_ARGS`] arguments of at most [`MAX_SMOKE_ARG_BYTES`] bytes, no NUL, and a
/// command (the first argument) that is not blank.
pub(crate) fn validate_smoke(
    raw: &RawArgv,
    table: &str,
    loc: &Locator,
) -> Result<Vec<String>, ConfigError> {
    let help = "\n  help: write the command as an argv, e.g. smoke = [\"python3\", \"-c\", \"import molecule_runtime\"] (no shell; for one, [\"sh\", \"-c\", \"...\"])";
    let args = raw.get_ref();
    if args.is_empty() {
        return Err(loc.error(
            raw.span(),
            format!("{table}: smoke is empty{help}; to run no smoke test, leave smoke out"),
        ));
    }
    if args.len() > MAX_SMOKE_ARGS {
        return Err(loc.error(
            raw.span(),
            format!(
                "{table}: smoke has {} arguments, more than {MAX_SMOKE_ARGS}",
                args.len()
            ),
        ));
    }
    for (i, arg) in args.iter().enumerate() {
        let text = arg.get_ref();
        let why = if text.len() > MAX_SMOKE_ARG_BYTES {
            Some(format!("is longer than {MAX_SMOKE_ARG_BYTES} bytes"))
        } else if text.contains('\0') {
            Some("contains a NUL character".to_owned())
        } else if i == 0 && text.trim().is_empty() {
            Some("(the command) is blank".to_owned())
        } else {
            None
        };
        if let Some(why) = why {
            return Err(loc.error(
                arg.span(),
                format!("{table}: smoke argument {} {why}{help}", i + 1),
            ));
        }
    }
    Ok(args.iter().map(|a| a.get_ref().clone()).collect())
}

/// Parses `smoke_timeout` (humantime: `"90s"`, `"2m"`), from 1s to [`MAX_SMOKE_TIMEOUT`].
pub(crate) fn parse_smoke_timeout(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| {
        format!("invalid smoke_timeout {text:?}: {e}\n  help: write a duration such as \"90s\" or \"2m\"")
    })?;
    if d < Duration::from_secs(1) || d > MAX_SMOKE_TIMEOUT {
        return Err(format!(
            "invalid smoke_timeout {text:?}: give from \"1s\" to \"24h\""
        ));
    }
    Ok(d)
}
