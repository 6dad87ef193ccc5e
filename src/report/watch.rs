//! `planner watch` output: each watcher event as a plain line (stderr) or an NDJSON object
//! (stdout, `--json`), every string masked, and outside text (errors, hook output) made inert
//! ([`crate::text`]). Of each tick's step events only those worth a
//! line every few minutes are passed on ([`step_shown`]). The NDJSON schema (README):
//!
//! ```text
//! {"event":"watch_started","schema_version","runtimes":[…],"interval_ms","jitter_ms","state"}
//! {"event":"state_ignored","path","reason"}
//! {"event":"state_write_failed","path","error"}
//! {"event":"tick_started","tick","runtimes":[…],"skipped":[…]}
//! {"event":"waiting_for_lock","tick","path"}
//! {"event":"tick_failed","tick","error"}
//! {"event":"runtime_failed","tick","runtime","error"}
//! {"event":"baseline","tick","runtime","image","id","appeared"}
//! {"event":"latest_changed","tick","runtime","image","old_id","new_id"}
//! {"event":"hook_output","runtime","line"}
//! {"event":"hook_finished","tick","runtime","image","old_id","new_id","duration_ms"}
//! {"event":"hook_failed","tick","runtime","image","old_id","new_id","duration_ms","error"}
//! {"event":"backoff","tick","scope","runtimes":[…],"failures","ticks"}
//! {"event":"tick_finished","tick","ensured","failed","changed","hooks_failed","duration_ms","next_in_ms"}
//! {"event":"watch_stopped","signal"}
//! ```
//! plus `ensure`'s `step_*` events for steps that ran or failed.

use std::time::Duration;

use serde_json::{Value, json};

use super::json::{SCHEMA_VERSION, masked, millis};
use super::plain::Verbosity;
use crate::exec;
use crate::ids::short;
use crate::watch::{Change, Event};

/// Whether a step event of a tick is shown: not skips, and a root step (resolve-head, which
/// runs every tick) only when it failed. A warm tick thus prints its own lines only.
pub fn step_shown(event: &exec::Event) -> bool {
    match event {
        exec::Event::Skipped { .. } => false,
        exec::Event::Failed { .. } | exec::Event::Blocked { .. } => true,
        exec::Event::Started { step, .. }
        | exec::Event::Finished { step, .. }
        | exec::Event::Waiting { step, .. }
        | exec::Event::Output { step, .. }
        | exec::Event::Substep { step, .. } => !step.kind.is_root(),
    }
}

/// Wraps `sink` so it sees only the step events [`step_shown`] keeps.
pub fn step_filter(sink: exec::Sink) -> exec::Sink {
    std::sync::Arc::new(move |event| {
        if step_shown(event) {
            sink(event);
        }
    })
}

/// Whether `event` is a failure or warning (shown even with `-q`).
fn is_problem(event: &Event) -> bool {
    matches!(
        event,
        Event::StateIgnored { .. }
            | Event::StateWriteFailed { .. }
            | Event::TickFailed { .. }
            | Event::RuntimeFailed { .. }
            | Event::HookFailed { .. }
            | Event::Backoff { .. }
    )
}

/// The plain line for `event` (no newline), masked and inert; `None` when `verbosity` hides
/// it.
pub fn line(event: &Event, verbosity: Verbosity) -> Option<String> {
    if verbosity == Verbosity::Quiet && !is_problem(event) {
        return None;
    }
    let text = format!("watch: {}", describe(event));
    Some(crate::text::printed(&text.replace('\r', "")).replace('\n', "\n    "))
}

fn describe(event: &Event) -> String {
    match event {
        Event::Started {
            runtimes,
            interval,
            jitter,
            state,
        } => format!(
            "watching {} every {} (+ up to {} jitter); state in {}",
            runtimes.join(", "),
            human(*interval),
            human(*jitter),
            state.display()
        ),
        Event::StateIgnored { path, reason } => {
            format!("warning: state {}: {reason}", path.display())
        }
        Event::StateWriteFailed { path, error } => format!(
            "warning: cannot save the state {}: {error} (a restarted watcher may run a hook again)",
            path.display()
        ),
        Event::TickFailed { tick, error } => {
            format!("tick {tick} FAILED: {error}\n  (the next tick tries again)")
        }
        Event::HookOutput { runtime, line } => format!("{runtime}: hook | {line}"),
        _ => describe_tick(event),
    }
}

fn describe_tick(event: &Event) -> String {
    match event {
        Event::TickStarted {
            tick,
            runtimes,
            skipped,
        } => {
            let mut s = format!("tick {tick}: ensuring {}", list(runtimes));
            if !skipped.is_empty() {
                s += &format!("; backing off: {}", skipped.join(", "));
            }
            s
        }
        Event::WaitingForLock { tick, path } => format!(
            "tick {tick}: waiting for another planner run to finish (run lock {})",
            path.display()
        ),
        Event::RuntimeFailed {
            tick,
            runtime,
            error,
        } => format!("tick {tick}: {runtime} FAILED: {error}"),
        Event::Baseline {
            tick,
            runtime,
            image,
            id,
            appeared,
        } => {
            let why = if *appeared {
                "new, no hook: nothing to replace"
            } else {
                "first seen by this watcher, recorded"
            };
            format!("tick {tick}: {runtime}: {image} is {} ({why})", short(id))
        }
        Event::Changed { tick, change } => format!(
            "tick {tick}: {}: {} moved {} -> {}",
            change.runtime,
            change.image,
            short(&change.old_id),
            short(&change.new_id)
        ),
        Event::HookFinished {
            tick,
            change,
            duration,
        } => format!(
            "tick {tick}: {}: hook done {:.1}s",
            change.runtime,
            duration.as_secs_f64()
        ),
        Event::HookFailed {
            tick,
            change,
            duration,
            error,
        } => format!(
            "tick {tick}: {}: hook FAILED after {:.1}s: {error}; it runs again next tick",
            change.runtime,
            duration.as_secs_f64()
        ),
        Event::Backoff {
            tick,
            scope,
            runtimes,
            failures,
            ticks,
        } => format!(
            "tick {tick}: backing off {scope} for {ticks} tick(s) after {failures} failure(s) in a row ({})",
            runtimes.join(", ")
        ),
        Event::TickFinished {
            tick,
            ensured,
            failed,
            changed,
            hooks_failed,
            duration,
            next_in,
        } => {
            let next = next_in.map_or_else(String::new, |n| format!("; next tick in {}", human(n)));
            format!(
                "tick {tick} done in {:.1}s: {ensured} ensured, {failed} failed, {changed} changed, {hooks_failed} hook(s) failed{next}",
                duration.as_secs_f64()
            )
        }
        _ => String::new(),
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

/// A duration in whole milliseconds, as humantime writes it (`5m 12s 40ms`).
fn human(d: Duration) -> String {
    let ms = Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    humantime::format_duration(ms).to_string()
}

/// The NDJSON object for `event`, masked.
pub fn object(event: &Event) -> Value {
    masked(match event {
        Event::Started {
            runtimes,
            interval,
            jitter,
            state,
        } => json!({
            "event": "watch_started",
            "schema_version": SCHEMA_VERSION,
            "runtimes": runtimes,
            "interval_ms": millis(*interval),
            "jitter_ms": millis(*jitter),
            "state": state.display().to_string(),
        }),
        Event::StateIgnored { path, reason } => json!({
            "event": "state_ignored", "path": path.display().to_string(), "reason": reason,
        }),
        Event::StateWriteFailed { path, error } => json!({
            "event": "state_write_failed", "path": path.display().to_string(), "error": error,
        }),
        Event::TickStarted {
            tick,
            runtimes,
            skipped,
        } => {
            json!({ "event": "tick_started", "tick": tick, "runtimes": runtimes, "skipped": skipped })
        }
        Event::WaitingForLock { tick, path } => json!({
            "event": "waiting_for_lock", "tick": tick, "path": path.display().to_string(),
        }),
        Event::TickFailed { tick, error } => {
            json!({ "event": "tick_failed", "tick": tick, "error": error })
        }
        Event::HookOutput { runtime, line } => {
            json!({ "event": "hook_output", "runtime": runtime, "line": line })
        }
        _ => tick_object(event),
    })
}

fn tick_object(event: &Event) -> Value {
    match event {
        Event::RuntimeFailed {
            tick,
            runtime,
            error,
        } => json!({ "event": "runtime_failed", "tick": tick, "runtime": runtime, "error": error }),
        Event::Baseline {
            tick,
            runtime,
            image,
            id,
            appeared,
        } => json!({
            "event": "baseline", "tick": tick, "runtime": runtime, "image": image, "id": id,
            "appeared": appeared,
        }),
        Event::Changed { tick, change } => change_object("latest_changed", *tick, change),
        Event::HookFinished {
            tick,
            change,
            duration,
        } => with(
            change_object("hook_finished", *tick, change),
            json!({ "duration_ms": millis(*duration) }),
        ),
        Event::HookFailed {
            tick,
            change,
            duration,
            error,
        } => with(
            change_object("hook_failed", *tick, change),
            json!({ "duration_ms": millis(*duration), "error": error }),
        ),
        Event::Backoff {
            tick,
            scope,
            runtimes,
            failures,
            ticks,
        } => json!({
            "event": "backoff", "tick": tick, "scope": scope, "runtimes": runtimes,
            "failures": failures, "ticks": ticks,
        }),
        Event::TickFinished {
            tick,
            ensured,
            failed,
            changed,
            hooks_failed,
            duration,
            next_in,
        } => json!({
            "event": "tick_finished", "tick": tick, "ensured": ensured, "failed": failed,
            "changed": changed, "hooks_failed": hooks_failed, "duration_ms": millis(*duration),
            "next_in_ms": next_in.map(millis),
        }),
        _ => json!({}),
    }
}

fn change_object(name: &str, tick: u64, change: &Change) -> Value {
    json!({
        "event": name, "tick": tick, "runtime": change.runtime, "image": change.image,
        "old_id": change.old_id, "new_id": change.new_id,
    })
}

fn with(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
        b.extend(e);
    }
    base
}

/// The last NDJSON line of a watcher stopped by a signal (`SIGTERM`, `SIGINT`).
pub fn stopped_object(signal: &str) -> Value {
    json!({ "event": "watch_stopped", "signal": signal })
}

/// The last plain line of a watcher stopped by a signal.
pub fn stopped_line(signal: &str, code: u8) -> String {
    format!(
        "watch: stopped by {signal}; the running tick (if any) was cancelled, state intact; exit {code}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::StepRef;

    use crate::steps::{build, resolve_head};

    fn change() -> Change {
        Change {
            runtime: "alpha".into(),
            image: "p/alpha:latest".into(),
            old_id: format!("sha256:{}", "a".repeat(64)),
            new_id: format!("sha256:{}", "b".repeat(64)),
        }
    }

    #[test]
    fn hook_failure_has_the_documented_fields_and_is_masked() {
        crate::mask::register_secret("watch-secret-123");
        let e = Event::HookFailed {
            tick: 4,
            change: change(),
            duration: Duration::from_millis(1500),
            error: "exit 3: token watch-secret-123 refused".into(),
        };
        let o = object(&e);
        let mut keys: Vec<_> = o.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "duration_ms",
                "error",
                "event",
                "image",
                "new_id",
                "old_id",
                "runtime",
                "tick"
            ]
        );
        assert_eq!(o["event"], "hook_failed");
        assert!(!o.to_string().contains("watch-secret-123"));
        let l = line(&e, Verbosity::Quiet).unwrap();
        assert!(l.contains("alpha: hook FAILED after 1.5s"), "{l}");
        assert!(!l.contains("watch-secret-123"));
    }

    #[test]
    fn changes_show_short_ids_and_quiet_hides_them() {
        let e = Event::Changed {
            tick: 2,
            change: change(),
        };
        assert_eq!(
            line(&e, Verbosity::Normal).unwrap(),
            "watch: tick 2: alpha: p/alpha:latest moved aaaaaaaaaaaa -> bbbbbbbbbbbb"
        );
        assert!(line(&e, Verbosity::Quiet).is_none());
        assert_eq!(object(&e)["event"], "latest_changed");
    }

    #[test]
    fn warm_step_events_are_hidden_but_failures_shown() {
        let step = |kind| StepRef {
            runtimes: vec!["a".into()],
            kind,
            step_id: "x".into(),
            key: None,
        };
        let finished = |kind| exec::Event::Finished {
            step: step(kind),
            duration: Duration::ZERO,
            detail: String::new(),
        };
        assert!(!step_shown(&finished(resolve_head::KIND)));
        assert!(step_shown(&finished(build::KIND)));
        assert!(!step_shown(&exec::Event::Skipped {
            step: step(build::KIND),
            reason: "present".into()
        }));
        assert!(step_shown(&exec::Event::Failed {
            step: step(resolve_head::KIND),
            duration: Duration::ZERO,
            error: "x".into()
        }));
    }

    #[test]
    fn hook_output_and_errors_are_inert() {
        let e = Event::HookOutput {
            runtime: "alpha".into(),
            line: "\x1b]0;pwned\x07\x1b[2Jdone".into(),
        };
        let l = line(&e, Verbosity::Normal).unwrap();
        assert_eq!(
            l,
            "watch: alpha: hook | \\u{1b}]0;pwned\\u{7}\\u{1b}[2Jdone"
        );
        let e = Event::TickFailed {
            tick: 3,
            error: "engine said \u{9b}31mno\nhelp: retry".into(),
        };
        let l = line(&e, Verbosity::Quiet).unwrap();
        assert!(!l.chars().any(|c| c != '\n' && c.is_control()), "{l:?}");
        assert!(l.contains("\\u{9b}31mno\n    help: retry"), "{l:?}");
    }

    #[test]
    fn tick_finished_names_the_pause() {
        let e = Event::TickFinished {
            tick: 1,
            ensured: 2,
            failed: 1,
            changed: 1,
            hooks_failed: 0,
            duration: Duration::from_millis(1200),
            next_in: Some(Duration::from_millis(312_040)),
        };
        let l = line(&e, Verbosity::Normal).unwrap();
        assert!(l.ends_with("next tick in 5m 12s 40ms"), "{l}");
        assert_eq!(object(&e)["next_in_ms"], 312_040);
    }
}
