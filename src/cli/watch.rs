//! The `watch` command: CLI glue over [`crate::watch`]; its events are rendered by
//! [`crate::report::watch`]. It handles its own signals: SIGTERM ends it with exit 0 (a
//! watcher stopped by its service manager did nothing wrong), SIGINT with 130; either way
//! the running tick is cancelled as `ensure`'s run is, and the state file is never half
//! written (it is written between awaits, atomically).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::{Selection, Stop, default_jobs, eprint_text, stop_signal};
use crate::app::{self, Globals};
use crate::exec;
use crate::report::{self, json, plain, watch as render};
use crate::store::RunLockMode;
use crate::watch::{self, Watcher};

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Pause between ticks (after one ends, before the next starts)
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = interval)]
    pub interval: Duration,
    /// Add a random pause of up to this much to each interval (spreads many watchers)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = jitter)]
    pub jitter: Duration,
    /// Run one tick, then exit with `ensure`'s exit code (1 if a runtime or hook failed)
    #[arg(long)]
    pub once: bool,
    /// Run `sh -c CMD` for each runtime whose :latest moved (env PLANNER_RUNTIME, PLANNER_IMAGE, PLANNER_OLD_ID, PLANNER_NEW_ID)
    #[arg(long, value_name = "CMD")]
    pub on_change: Option<String>,
    /// A hook still running after this long is killed (its process group) and retried next tick
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = hook_timeout)]
    pub hook_timeout: Duration,
    /// At most N clones and builds at once per tick [default: CPUs, at most 4]
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: Option<u16>,
    /// Print NDJSON events on stdout (one object per line); stderr then shows only problems
    #[arg(long)]
    pub json: bool,
}

fn bounded(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("{e} (e.g. 30s, 5m, 1h)"))?;
    if d < min || d > max {
        return Err(format!(
            "must be between {} and {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        ));
    }
    Ok(d)
}

fn interval(text: &str) -> Result<Duration, String> {
    bounded(
        text,
        Duration::from_secs(1),
        Duration::from_secs(7 * 86_400),
    )
}

fn jitter(text: &str) -> Result<Duration, String> {
    bounded(text, Duration::ZERO, Duration::from_secs(86_400))
}

fn hook_timeout(text: &str) -> Result<Duration, String> {
    bounded(text, Duration::from_secs(1), Duration::from_secs(86_400))
}

/// `planner watch`: ticks until a signal (or once), rendering as it goes. The signal
/// handlers are installed first thing, so a SIGTERM while loading still exits 0.
pub async fn cmd_watch(
    globals: &Globals,
    args: &WatchArgs,
    verbosity: plain::Verbosity,
) -> anyhow::Result<ExitCode> {
    let writer = args.json.then(|| json::Writer::new(std::io::stdout()));
    let code = tokio::select! {
        biased;
        stop = stop_signal() => stopped(stop, writer.as_ref()),
        end = watch(globals, args, verbosity, writer.clone()) => end?,
    };
    if let Some(w) = writer {
        w.finish();
    }
    Ok(ExitCode::from(code))
}

/// Loads, starts the watcher and runs it; `--once`'s exit code.
async fn watch(
    globals: &Globals,
    args: &WatchArgs,
    verbosity: plain::Verbosity,
    writer: Option<json::Writer>,
) -> anyhow::Result<u8> {
    let loaded = app::load(globals)?;
    let Some(runtimes) = args.selection.runtimes(&loaded.config)? else {
        return Ok(0);
    };
    let opts = watch::Options {
        interval: args.interval,
        jitter: args.jitter,
        once: args.once,
        on_change: args.on_change.clone(),
        hook_timeout: args.hook_timeout,
        exec: exec::Options {
            jobs: args.jobs.map_or_else(default_jobs, usize::from),
            fail_fast: false,
        },
        // Shared, as `ensure` takes it (only gc runs alone).
        lock_mode: RunLockMode::Shared,
    };
    let width = runtimes.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let sinks = sinks(writer, verbosity, width);
    let watcher = Watcher::start(&loaded, runtimes, opts, sinks)?;
    Ok(watcher.run().await.exit_code())
}

/// The exit code for a signal (SIGTERM 0, SIGINT 130), after saying so.
fn stopped(stop: Stop, writer: Option<&json::Writer>) -> u8 {
    let (signal, code) = match stop {
        Stop::Terminate => ("SIGTERM", 0),
        Stop::Interrupt => ("SIGINT", 130),
    };
    if let Some(w) = writer {
        w.emit(&render::stopped_object(signal));
    }
    eprint_text(&(render::stopped_line(signal, code) + "\n"));
    code
}

/// The watcher's sinks: plain lines on stderr; with a `writer` (`--json`), NDJSON on stdout
/// as well, stderr then showing only problems.
fn sinks(writer: Option<json::Writer>, verbosity: plain::Verbosity, width: usize) -> watch::Sinks {
    let shown = if writer.is_some() {
        plain::Verbosity::Quiet
    } else {
        verbosity
    };
    let lines: watch::EventSink = Arc::new(move |event| {
        if let Some(l) = render::line(event, shown) {
            eprint_text(&(l + "\n"));
        }
    });
    let step_lines = render::step_filter(plain::stderr_sink(shown, width));
    let Some(writer) = writer else {
        return watch::Sinks {
            events: lines,
            steps: step_lines,
        };
    };
    let (step_json, _counts) = json::sink(&writer, verbosity == plain::Verbosity::Verbose);
    let events: watch::EventSink = Arc::new(move |event| {
        lines(event);
        writer.emit(&render::object(event));
    });
    let steps = report::fan_out(vec![step_lines, render::step_filter(step_json)]);
    watch::Sinks { events, steps }
}
