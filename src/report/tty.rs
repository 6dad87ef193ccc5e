//! The live display for a terminal: one indicatif line per runtime showing its current step,
//! that step's elapsed time and, during a build, the Dockerfile step (`Step 3/7`) or the last
//! build line. Failures (and, with `-v`, build output) are printed above the lines. Colours
//! follow `NO_COLOR` / `CLICOLOR` (through `console`); `TERM=dumb` gets the plain renderer.
//! Outside text is masked and made inert: a line's message on one line ([`shown`]), text
//! printed above the lines with its own newlines ([`crate::text::printed`]).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::plain::Verbosity;
use crate::exec::{Event, Sink, StepRef};
use crate::mask::mask;
use crate::text::{inert, printed};

/// Whether a live display makes sense: stderr is a terminal that can move the cursor.
pub fn usable() -> bool {
    std::io::stderr().is_terminal() && std::env::var("TERM").is_ok_and(|t| t != "dumb")
}

/// The display: a line per runtime, in request order.
pub struct Display {
    multi: MultiProgress,
    /// The style of an ended line: no spinner, no per-step elapsed time.
    done_style: ProgressStyle,
    bars: HashMap<String, ProgressBar>,
    /// Per runtime: the steps that ran or were skipped so far (shown when the runtime ends).
    state: Mutex<HashMap<String, RuntimeState>>,
    verbosity: Verbosity,
}

#[derive(Default)]
struct RuntimeState {
    ran: Vec<&'static str>,
    skipped: usize,
    failed: bool,
    /// The last Dockerfile step marker seen in the build output (`Step 3/7`).
    dockerfile_step: Option<String>,
    /// Time spent in the runtime's steps that ran.
    busy: Duration,
}

impl Display {
    /// Creates the display with one line per runtime, drawing on stderr.
    pub fn new(runtimes: &[String], verbosity: Verbosity) -> Arc<Display> {
        Self::with_target(runtimes, verbosity, ProgressDrawTarget::stderr_with_hz(10))
    }

    fn with_target(
        runtimes: &[String],
        verbosity: Verbosity,
        target: ProgressDrawTarget,
    ) -> Arc<Display> {
        let multi = MultiProgress::with_draw_target(target);
        let width = runtimes.iter().map(String::len).max().unwrap_or(0);
        let style = ProgressStyle::with_template(&format!(
            "{{spinner:.cyan}} {{prefix:<{width}.bold}}  {{wide_msg}} {{elapsed:>4.dim}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bars = runtimes
            .iter()
            .map(|rt| {
                let bar = multi.add(ProgressBar::new_spinner().with_style(style.clone()));
                bar.set_prefix(rt.clone());
                bar.set_message("waiting");
                bar.enable_steady_tick(Duration::from_millis(100));
                (rt.clone(), bar)
            })
            .collect();
        let done_style =
            ProgressStyle::with_template(&format!("  {{prefix:<{width}.bold}}  {{wide_msg}}"))
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
        Arc::new(Display {
            multi,
            done_style,
            bars,
            state: Mutex::new(HashMap::new()),
            verbosity,
        })
    }

    /// A sink updating the display.
    pub fn sink(self: &Arc<Self>) -> Sink {
        let me = self.clone();
        Arc::new(move |event| me.on_event(event))
    }

    fn on_event(&self, event: &Event) {
        let step = step_of(event);
        for rt in &step.runtimes {
            let Some(bar) = self.bars.get(rt) else {
                continue;
            };
            self.update(rt, bar, step, event);
        }
        match event {
            Event::Failed { step, error, .. } => self.above(&format!(
                "{} {} FAILED: {}",
                step.runtimes.join(","),
                step.kind.name(),
                error.replace('\n', "\n    ")
            )),
            Event::Output { step, line } if self.verbosity == Verbosity::Verbose => {
                self.above(&format!("{} | {line}", step.runtimes.join(",")))
            }
            _ => {}
        }
    }

    fn update(&self, rt: &str, bar: &ProgressBar, step: &StepRef, event: &Event) {
        let kind = step.kind.name();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = state.entry(rt.to_owned()).or_default();
        match event {
            Event::Started { reason, .. } => {
                bar.reset_elapsed();
                st.dockerfile_step = None;
                bar.set_message(shown(&format!("{kind}: {reason}")));
            }
            Event::Waiting { reason, .. } => {
                bar.set_message(shown(&format!("{kind}: waiting ({reason})")))
            }
            Event::Output { line, .. } => {
                let text = build_progress(&mut st.dockerfile_step, line);
                bar.set_message(shown(&format!("{kind}: {text}")))
            }
            Event::Substep { name, state, .. } => {
                let text = buildkit_progress(&mut st.dockerfile_step, name, *state);
                bar.set_message(shown(&format!("{kind}: {text}")))
            }
            Event::Skipped { .. } => {
                st.skipped += 1;
                bar.set_message(format!("{kind}: skipped"));
            }
            Event::Finished { duration, .. } => {
                st.busy += *duration;
                if !step.kind.is_root() {
                    st.ran.push(kind);
                }
                bar.set_message(format!("{kind}: done"));
            }
            Event::Failed { .. } => {
                st.failed = true;
                bar.abandon_with_message(format!("{kind}: FAILED"));
            }
            Event::Blocked { .. } if !st.failed => {
                st.failed = true;
                bar.abandon_with_message(format!("{kind}: blocked"));
            }
            Event::Blocked { .. } => {}
        }
    }

    fn above(&self, text: &str) {
        let _ = self.multi.println(printed(text));
    }

    /// Ends every line with what happened to its runtime, before the summary is printed.
    pub fn finish(&self) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (rt, bar) in &self.bars {
            if bar.is_finished() {
                continue;
            }
            let msg = match state.get(rt) {
                Some(s) if !s.ran.is_empty() => format!(
                    "ensured in {:.1}s: ran {}",
                    s.busy.as_secs_f64(),
                    s.ran.join(", ")
                ),
                Some(s) => format!("ensured: nothing to do ({} steps skipped)", s.skipped),
                None => "not started".to_owned(),
            };
            bar.set_style(self.done_style.clone());
            bar.finish_with_message(msg);
        }
    }
}

/// A line's message: masked, inert on one line.
fn shown(text: &str) -> String {
    inert(&mask(text)).into_owned()
}

fn step_of(event: &Event) -> &StepRef {
    match event {
        Event::Skipped { step, .. }
        | Event::Started { step, .. }
        | Event::Finished { step, .. }
        | Event::Failed { step, .. }
        | Event::Blocked { step, .. }
        | Event::Waiting { step, .. }
        | Event::Output { step, .. }
        | Event::Substep { step, .. } => step,
    }
}

/// What to show of a build output line: the Dockerfile step (`Step 3/7`) and the last line.
fn build_progress(dockerfile_step: &mut Option<String>, line: &str) -> String {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix("Step ")
        && let Some(n) = rest.split_whitespace().next()
    {
        *dockerfile_step = Some(format!("Step {n}"));
    }
    let mut short: String = line.chars().take(80).collect();
    if short.len() < line.len() {
        short.push('…');
    }
    match dockerfile_step {
        Some(s) if !line.starts_with("Step ") => format!("{s} · {short}"),
        _ => short,
    }
}

/// What to show of a BuildKit step: its name, marked when cached; RUN output lines that
/// follow show it as their prefix (see [`build_progress`]).
fn buildkit_progress(
    dockerfile_step: &mut Option<String>,
    name: &str,
    state: crate::exec::event::SubstepState,
) -> String {
    use crate::exec::event::SubstepState as S;
    let flat = name.replace(['\n', '\r'], " ");
    let mut short: String = flat.chars().take(60).collect();
    if short.len() < flat.len() {
        short.push('…');
    }
    match state {
        S::Started => {
            *dockerfile_step = Some(short.clone());
            short
        }
        S::Cached => format!("{short} (cached)"),
        S::Done => format!("{short} (done)"),
        S::Failed => format!("{short} FAILED"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::StepKind;
    use crate::steps::{build, clone};
    use indicatif::InMemoryTerm;

    fn step(rt: &str, kind: StepKind) -> StepRef {
        StepRef {
            runtimes: vec![rt.into()],
            kind,
            step_id: kind.name().into(),
            key: None,
        }
    }

    fn display() -> (Arc<Display>, InMemoryTerm) {
        let term = InMemoryTerm::new(10, 100);
        let d = Display::with_target(
            &["alpha".into(), "beta".into()],
            Verbosity::Normal,
            ProgressDrawTarget::term_like(Box::new(term.clone())),
        );
        (d, term)
    }

    #[test]
    fn each_runtime_line_shows_its_current_step_and_build_progress() {
        let (d, term) = display();
        let sink = d.sink();
        sink(&Event::Started {
            step: step("alpha", build::KIND),
            reason: "image missing".into(),
        });
        sink(&Event::Output {
            step: step("alpha", build::KIND),
            line: "Step 3/7 : RUN make".into(),
        });
        sink(&Event::Output {
            step: step("alpha", build::KIND),
            line: " ---> Running in 0123".into(),
        });
        sink(&Event::Skipped {
            step: step("beta", build::KIND),
            reason: "present".into(),
        });
        d.multi.set_move_cursor(false);
        for bar in d.bars.values() {
            bar.tick();
        }
        let screen = term.contents();
        assert!(
            screen.contains("build: Step 3/7 · ---> Running in 0123"),
            "{screen}"
        );
        assert!(
            screen.contains("beta") && screen.contains("build: skipped"),
            "{screen}"
        );
    }

    #[test]
    fn buildkit_steps_show_as_the_current_step_with_run_output_after_them() {
        use crate::exec::event::SubstepState;
        let (d, term) = display();
        let sink = d.sink();
        let build = || step("alpha", build::KIND);
        sink(&Event::Substep {
            step: build(),
            name: "[2/5] RUN pip install -r requirements.txt".into(),
            state: SubstepState::Started,
        });
        sink(&Event::Output {
            step: build(),
            line: "Collecting flask".into(),
        });
        d.multi.set_move_cursor(false);
        for bar in d.bars.values() {
            bar.tick();
        }
        let screen = term.contents();
        assert!(
            screen.contains("build: [2/5] RUN pip install -r requirements.txt · Collecting flask"),
            "{screen}"
        );
        sink(&Event::Substep {
            step: build(),
            name: "[3/5] COPY . /app".into(),
            state: SubstepState::Cached,
        });
        for bar in d.bars.values() {
            bar.tick();
        }
        let screen = term.contents();
        assert!(
            screen.contains("build: [3/5] COPY . /app (cached)"),
            "{screen}"
        );
    }

    #[test]
    fn finish_says_what_ran_and_failures_are_printed_above() {
        let (d, term) = display();
        let sink = d.sink();
        sink(&Event::Finished {
            step: step("alpha", build::KIND),
            duration: Duration::from_secs(1),
            detail: "x".into(),
        });
        sink(&Event::Failed {
            step: step("beta", clone::KIND),
            duration: Duration::ZERO,
            error: "repository not found".into(),
        });
        d.finish();
        let screen = term.contents();
        assert!(screen.contains("ensured in 1.0s: ran build"), "{screen}");
        assert!(
            screen.contains("beta clone FAILED: repository not found"),
            "{screen}"
        );
        assert!(screen.contains("clone: FAILED"), "{screen}");
    }

    #[test]
    fn outside_text_reaches_the_terminal_inert() {
        let (d, term) = display();
        let sink = d.sink();
        sink(&Event::Started {
            step: step("alpha", build::KIND),
            reason: "stale: repo \x1b[2J\x1b]0;pwned\x07x".into(),
        });
        sink(&Event::Failed {
            step: step("beta", clone::KIND),
            duration: Duration::ZERO,
            error: "boom\x1b[31m\r1 ensured, 0 failed\nhelp: fix".into(),
        });
        d.multi.set_move_cursor(false);
        for bar in d.bars.values() {
            bar.tick();
        }
        let screen = term.contents();
        assert!(
            screen.contains("build: stale: repo \\u{1b}[2J\\u{1b}]0;pwned\\u{7}x"),
            "{screen}"
        );
        assert!(
            screen.contains("boom\\u{1b}[31m\\r1 ensured, 0 failed\n    help: fix"),
            "{screen}"
        );
    }
}
