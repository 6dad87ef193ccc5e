//! Plain progress: one line per step transition on stderr, no escape codes, no carriage
//! returns (`codex  build  started (image missing)`, `codex  build  done 12.4s`). Outside
//! text in a line (reasons, errors, build output) is masked and made inert
//! ([`crate::text::printed`]): a control character in it is shown escaped, never sent.

use std::io::Write;
use std::sync::Arc;

use crate::exec::{Event, Sink};

/// How much to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// Only failures.
    Quiet,
    /// Every step transition.
    Normal,
    /// Transitions and build output.
    Verbose,
}

/// Formats an event as one line (without the newline); `None` when `verbosity` hides it.
pub fn line(event: &Event, verbosity: Verbosity, width: usize) -> Option<String> {
    let (step, what) = match event {
        Event::Failed {
            step,
            duration,
            error,
        } => (
            step,
            format!(
                "FAILED {:.1}s: {}",
                duration.as_secs_f64(),
                error.replace('\n', "\n    ")
            ),
        ),
        _ if verbosity == Verbosity::Quiet => return None,
        Event::Skipped { step, reason } => (step, format!("skipped ({reason})")),
        Event::Started { step, reason } => (step, format!("started ({reason})")),
        Event::Finished {
            step,
            duration,
            detail,
        } => (
            step,
            format!("done {:.1}s ({detail})", duration.as_secs_f64()),
        ),
        Event::Blocked { step, reason } => (step, format!("blocked ({reason})")),
        Event::Waiting { step, reason } => (step, format!("waiting ({reason})")),
        Event::Output { step, line } if verbosity == Verbosity::Verbose => {
            (step, format!("| {line}"))
        }
        Event::Output { .. } => return None,
        Event::Substep { step, name, state } => {
            (step, format!("{} {}", state.name(), one_line(name)))
        }
    };
    let who = step.runtimes.join(",");
    let text = format!("{who:<width$}  {:<17}  {what}", step.kind.name());
    Some(crate::text::printed(&text.replace('\r', "")))
}

/// A BuildKit step name on one line, at most 100 characters.
fn one_line(name: &str) -> String {
    let flat = name.replace(['\n', '\r'], " ");
    let mut short: String = flat.chars().take(100).collect();
    if short.len() < flat.len() {
        short.push('…');
    }
    short
}

/// A sink printing plain lines to stderr. `width` pads the runtime column.
pub fn stderr_sink(verbosity: Verbosity, width: usize) -> Sink {
    Arc::new(move |event| {
        if let Some(l) = line(event, verbosity, width) {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{l}");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::StepRef;

    use crate::steps::build;
    use std::time::Duration;

    fn step() -> StepRef {
        StepRef {
            runtimes: vec!["codex".into()],
            kind: build::KIND,
            step_id: "build".into(),
            key: None,
        }
    }

    #[test]
    fn lines_name_runtime_step_and_what_happened() {
        let e = Event::Started {
            step: step(),
            reason: "image missing".into(),
        };
        assert_eq!(
            line(&e, Verbosity::Normal, 5).unwrap(),
            "codex  build              started (image missing)"
        );
        let e = Event::Finished {
            step: step(),
            duration: Duration::from_millis(12_400),
            detail: "abc".into(),
        };
        assert!(
            line(&e, Verbosity::Normal, 5)
                .unwrap()
                .ends_with("done 12.4s (abc)")
        );
    }

    #[test]
    fn quiet_keeps_only_failures_and_output_needs_verbose() {
        let started = Event::Started {
            step: step(),
            reason: "x".into(),
        };
        assert!(line(&started, Verbosity::Quiet, 5).is_none());
        let failed = Event::Failed {
            step: step(),
            duration: Duration::ZERO,
            error: "boom\nhelp: fix".into(),
        };
        assert!(
            line(&failed, Verbosity::Quiet, 5)
                .unwrap()
                .contains("FAILED 0.0s: boom\n    help: fix")
        );
        let out = Event::Output {
            step: step(),
            line: "Step 1/2".into(),
        };
        assert!(line(&out, Verbosity::Normal, 5).is_none());
        assert!(
            line(&out, Verbosity::Verbose, 5)
                .unwrap()
                .ends_with("| Step 1/2")
        );
    }

    #[test]
    fn buildkit_steps_are_transitions_on_one_line() {
        use crate::exec::event::SubstepState;
        let e = Event::Substep {
            step: step(),
            name: "[2/5] RUN pip install \\\n  -r req.txt".into(),
            state: SubstepState::Cached,
        };
        assert_eq!(
            line(&e, Verbosity::Normal, 5).unwrap(),
            "codex  build              cached [2/5] RUN pip install \\   -r req.txt"
        );
        assert!(line(&e, Verbosity::Quiet, 5).is_none());
    }

    #[test]
    fn outside_text_is_inert_and_an_error_keeps_its_lines() {
        let e = Event::Failed {
            step: step(),
            duration: Duration::ZERO,
            error: "pull: platform arm\x1b[2J\x1b]0;pwned\x07\nhelp: fix".into(),
        };
        let l = line(&e, Verbosity::Normal, 5).unwrap();
        assert!(!l.chars().any(|c| c != '\n' && c.is_control()), "{l:?}");
        assert!(
            l.ends_with("arm\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\n    help: fix"),
            "{l:?}"
        );
        let out = Event::Output {
            step: step(),
            line: "\u{9b}2J\u{202e}gnp.exe".into(),
        };
        let l = line(&out, Verbosity::Verbose, 5).unwrap();
        assert!(l.ends_with("| \\u{9b}2J\\u{202e}gnp.exe"), "{l:?}");
    }
}
