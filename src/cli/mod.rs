//! The command line: clap definitions, and the mapping of results to output and exit codes
//! (0 all ensured; 1 some runtime failed or the environment is unusable; 2 usage or
//! configuration error; 75 another run holds the run lock and `--no-wait` was given;
//! 130 interrupted (SIGINT), 143 terminated (SIGTERM); `watch` exits 0 on SIGTERM). `ops`
//! holds the `status` and `gc` commands, `watch` the `watch` command.
//!
//! Everything the commands print goes through [`print_text`], [`print_json`] or
//! [`eprint_text`] (or a renderer of [`crate::report`] that does the same): masked, with the
//! control characters of outside text escaped ([`crate::text`]). Warnings (`tracing`) are
//! masked and inert too, and coloured only on a terminal without `NO_COLOR`.

// The command line and the renderers are the only code that prints (`[workspace.lints]`
// denies `print_stdout`/`print_stderr` everywhere else).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod ops;
mod watch;

pub use watch::WatchArgs;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::app::{self, AppError, Globals};
use crate::exec;
use crate::report::{self, json, plain, plan as plan_report, summary, tty};
use crate::shard::Shard;
use crate::store::RunLockMode;

const AFTER_HELP: &str = "\
Exit codes: 0 all ensured; 1 some runtime failed (or the Docker engine/cache dir is unusable);
2 usage or configuration error; 75 another run holds the run lock (--no-wait); 130 interrupted
(Ctrl-C); 143 terminated (SIGTERM, handled like Ctrl-C; `watch` exits 0 instead). `plan` exits
1 when a step of the plan failed (a branch head that could not be resolved included), after
printing the plan.

Environment: PLANNER_CONFIG, PLANNER_CACHE_DIR, PLANNER_REPO_PREFIX, PLANNER_REGISTRY (registry
mode for runtimes without their own source), DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH
(TLS engines), DOCKER_CONTEXT, DOCKER_CONFIG (registry credentials, contexts),
PLANNER_ENGINE_SSH_COMMAND (ssh:// engines), JOB_COMPLETION_INDEX (--shard auto/N), and the token
variable named by [git] token_env (PLANNER_GIT_TOKEN in the shipped runtimes.toml).";

/// Keep container images for allowlisted runtimes: built from their template repo pinned to the
/// commit, or pulled from a registry pinned to the digest, never twice.
#[derive(Debug, Parser)]
#[command(name = "planner", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// runtimes.toml to use [default: $PLANNER_CONFIG, else ./runtimes.toml, else the built-in one]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Cache dir for checkouts, records and locks [default: $PLANNER_CACHE_DIR, else config cache_dir, else ~/.cache/planner]
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Directory of extra plans (NAME.toml); they add to or override the built-in plans
    #[arg(long, global = true, value_name = "DIR")]
    pub plans: Option<PathBuf>,
    /// Print build output too
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Print only errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Docker engine for this run: unix:///PATH, tcp://HOST:PORT (TLS with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH) or ssh://USER@HOST [default: DOCKER_HOST, else the Docker context, else unix:///var/run/docker.sock]
    #[arg(long, global = true, value_name = "URL", value_parser = engine_url)]
    pub engine: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what `ensure` would do and why, without writing anything (no clone, build, tag or record)
    #[command(
        after_help = "Examples:\n  planner plan --all\n  planner plan codex --format json\n  planner plan --all --format dot | dot -Tsvg > plan.svg\n  planner plan --all --offline   # use the last recorded branch heads, no network"
    )]
    Plan(PlanArgs),
    /// Make sure each runtime's image exists for its branch HEAD (or registry digest): clone, build, pull and tag only what is missing
    #[command(
        after_help = "Examples:\n  planner ensure                 # the default_runtime\n  planner ensure --all --jobs 4  # prewarm every runtime\n  planner ensure codex hermes --fail-fast\n  planner ensure --all --dry-run # same as `planner plan --all` (with --json: `plan --format json`)\n  planner ensure --all --json --no-wait -q > prewarm.ndjson   # a nightly job: events + summary, exit 75 if busy\n  planner ensure --all --shard 2/3   # this machine's third of a fleet (auto/3: from JOB_COMPLETION_INDEX)\n  planner --engine tcp://builder:2376 ensure --all   # a remote engine (TLS: DOCKER_TLS_VERIFY, DOCKER_CERT_PATH)"
    )]
    Ensure(EnsureArgs),
    /// Show per runtime the last resolved commit or digest, its image, `:latest` and the checkout cache (no network unless --refresh)
    #[command(
        after_help = "Examples:\n  planner status\n  planner status codex --json\n  planner status --refresh        # ask the git host for the branch heads first"
    )]
    Status(StatusArgs),
    /// Remove old images and checkouts that planner built or pulled: keep the newest N commits or digests per runtime and what :latest names
    #[command(
        after_help = "Examples:\n  planner gc --dry-run           # what would be removed, and how much it frees\n  planner gc --keep 1\n  planner gc --build-cache --older-than 7d\n  planner gc --remote --keep 3 --dry-run   # old entries of the shared cache ([cache] registry)\n\nOnly images carrying planner's labels are ever removed. The shared cache is only touched with --remote."
    )]
    Gc(GcArgs),
    /// Keep runtimes fresh: ensure every interval, run a hook when a runtime's :latest moves
    #[command(
        after_help = "Examples:\n  planner watch --all                       # every 5m (+ up to 30s jitter)\n  planner watch --all --on-change 'docker compose up -d'   # recreate on a new :latest\n  planner watch codex --once --json         # one tick, NDJSON, ensure's exit code\n\nSIGTERM ends it with exit 0, SIGINT with 130; state: <cache dir>/watch/state.json."
    )]
    Watch(WatchArgs),
    /// Print a shell completion script (e.g. `planner completions bash > /etc/bash_completion.d/planner`)
    #[command(
        after_help = "Examples:\n  planner completions bash > ~/.local/share/bash-completion/completions/planner\n  planner completions zsh > \"${fpath[1]}/_planner\"\n  planner completions fish > ~/.config/fish/completions/planner.fish"
    )]
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Runtimes to show [default: all of them]
    #[arg(value_name = "RUNTIME")]
    pub runtimes: Vec<String>,
    /// Print JSON (one object) instead of a table
    #[arg(long)]
    pub json: bool,
    /// Ask the git host for each branch HEAD instead of using the last recorded one
    #[arg(long)]
    pub refresh: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Keep the newest N commits of each runtime (plus whatever :latest names); with --remote, also its newest N shared-cache entries
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: u32,
    /// Print what would be removed and how much it frees; remove nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON (one object) instead of lines
    #[arg(long)]
    pub json: bool,
    /// If another planner run holds the run lock, exit 75 at once instead of waiting
    #[arg(long)]
    pub no_wait: bool,
    /// Also prune the engine's BuildKit build cache (layers and cache mounts of builds)
    #[arg(long)]
    pub build_cache: bool,
    /// Also remove old entries of the shared cache ([cache] registry): per runtime, keep the newest --keep k- entries and the one its current s- pointer names (the registry must allow deletes)
    #[arg(long)]
    pub remote: bool,
    /// With --build-cache: only entries last used longer ago than this (e.g. "7d", "12h")
    #[arg(long, value_name = "DURATION", requires = "build_cache", value_parser = humantime::parse_duration)]
    pub older_than: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct Selection {
    /// Runtimes to act on [default: default_runtime from runtimes.toml]
    #[arg(value_name = "RUNTIME", conflicts_with = "all")]
    pub runtimes: Vec<String>,
    /// Act on every runtime in runtimes.toml
    #[arg(long)]
    pub all: bool,
    /// Only this machine's share of the selected runtimes: shard K of N (from 1), or auto/N with K = JOB_COMPLETION_INDEX + 1 (a Kubernetes Indexed Job)
    #[arg(long, value_name = "K/N", value_parser = shard_arg)]
    pub shard: Option<Shard>,
}

impl Selection {
    /// The runtimes this selection names, cut to its shard. `None` when the shard holds
    /// none of them (said on stderr: nothing to do is not an error).
    fn runtimes(&self, config: &crate::config::Config) -> Result<Option<Runtimes>, AppError> {
        let runtimes = app::select(config, &self.runtimes, self.all)?;
        let Some(shard) = self.shard else {
            return Ok(Some(runtimes));
        };
        let selected = runtimes.len();
        let held: Runtimes = runtimes
            .into_iter()
            .filter(|r| shard.holds(&r.name))
            .collect();
        if held.is_empty() {
            eprint_text(&format!(
                "planner: shard {shard} holds none of the {selected} selected runtime(s); nothing to do\n"
            ));
            return Ok(None);
        }
        Ok(Some(held))
    }
}

type Runtimes = Vec<Arc<crate::config::Runtime>>;

fn shard_arg(text: &str) -> Result<Shard, String> {
    let index = std::env::var(crate::shard::INDEX_ENV).ok();
    Shard::parse(text, index.as_deref())
}

fn engine_url(text: &str) -> Result<String, String> {
    crate::docker::endpoint::check_address(text).map(|()| text.to_owned())
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Do not ask the git host: use the branch heads recorded by the last run
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Args)]
pub struct EnsureArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// At most N clones and builds at once [default: CPUs, at most 4]
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: Option<u16>,
    /// Print the plan instead of running it (same as `planner plan`; with --json, its JSON)
    #[arg(long)]
    pub dry_run: bool,
    /// Stop at the first failure instead of finishing the other runtimes
    #[arg(long)]
    pub fail_fast: bool,
    /// Print NDJSON events on stdout (one object per line; the last is the summary, or an error event; both carry the exit code)
    #[arg(long)]
    pub json: bool,
    /// Progress display on stderr [default: tty when stderr is a terminal, else plain]
    #[arg(long, value_enum, value_name = "MODE")]
    pub progress: Option<Progress>,
    /// If another planner run holds the run lock, exit 75 at once instead of waiting
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    /// Live display, one line per runtime (indicatif)
    Tty,
    /// One line per step transition, no escape codes
    Plain,
    /// Nothing but errors (no summary table either)
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Dot,
}

/// Parses arguments, runs the command, and returns the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => usage_error(&e),
    };
    init_tracing(cli.verbose);
    // `ensure --json`: one writer for the whole process, so that whatever ends the run (its
    // result, an error, a signal) writes the last line after every event.
    let ndjson = ensure_json(&cli).then(|| json::Writer::new(std::io::stdout()));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let e = anyhow::Error::new(e).context("cannot start the async runtime");
            let code = fail_last(&e, ndjson.as_ref());
            if let Some(writer) = ndjson {
                writer.finish();
            }
            return ExitCode::from(code);
        }
    };
    let watching = matches!(cli.command, Command::Watch(_));
    let code = runtime.block_on(async {
        if watching {
            return run(cli, None).await; // `watch` handles its own signals (SIGTERM exits 0)
        }
        let stop = tokio::select! {
            code = run(cli, ndjson.as_ref()) => return code,
            signal = stop_signal() => signal,
        };
        // `run` is dropped by now: running steps are cancelled, their temp dirs removed and
        // their children killed (`kill_on_drop`).
        eprint_text(&format!(
            "planner: {}; running steps cancelled, temporary files removed\n",
            stop.describe()
        ));
        if let Some(writer) = &ndjson {
            let message = format!("{}; running steps cancelled", stop.describe());
            writer.emit_last(&json::error(stop.code(), &message));
        }
        ExitCode::from(stop.code())
    });
    if let Some(writer) = ndjson {
        writer.finish();
    }
    // Never wait for blocking tasks at exit (a blocking task may be stuck on a slow disk or a
    // stalled pipe); those still running after a moment are abandoned.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}

/// A signal that stops planner.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// SIGINT (Ctrl-C): exit 130.
    Interrupt,
    /// SIGTERM (systemd, Kubernetes, job runners): handled exactly like Ctrl-C, exit 143.
    Terminate,
}

impl Stop {
    fn describe(self) -> &'static str {
        match self {
            Stop::Interrupt => "interrupted",
            Stop::Terminate => "terminated (SIGTERM)",
        }
    }

    fn code(self) -> u8 {
        match self {
            Stop::Interrupt => 130,
            Stop::Terminate => 143,
        }
    }
}

/// Resolves at the first SIGINT or SIGTERM. If a handler cannot be installed, that signal
/// keeps its default action (the process ends at once).
async fn stop_signal() -> Stop {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let terminated = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Stop::Interrupt,
        () = terminated => Stop::Terminate,
    }
}

/// Warnings and debug lines on stderr: every field masked and inert, coloured only when
/// [`colour_on_stderr`] says so.
fn init_tracing(verbose: bool) {
    use tracing_subscriber::field::MakeExt;
    let default = if verbose {
        "planner=debug"
    } else {
        "planner=warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PLANNER_LOG")
        .unwrap_or_else(|_| default.into());
    let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let shown = crate::text::printed(&format!("{value:?}"));
        match field.name() {
            "message" => write!(w, "{shown}"),
            name => write!(w, "{name}={shown}"),
        }
    })
    .delimited(" ");
    let no_color = std::env::var_os("NO_COLOR");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            no_color.as_deref(),
        ))
        .fmt_fields(fields)
        .without_time()
        .try_init();
}

/// Whether warnings get colours: only on a terminal, and never when `NO_COLOR` is set to
/// anything but the empty string (<https://no-color.org>).
fn colour_on_stderr(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Prints the error chain (masked) and maps it to an exit code: an [`AppError`] anywhere in
/// the chain decides it; anything else (I/O at the edges) is 1.
fn fail(e: &anyhow::Error) -> ExitCode {
    ExitCode::from(fail_last(e, None))
}

/// [`fail`], and with `ensure --json` the `error` line (the last) on stdout.
fn fail_last(e: &anyhow::Error, ndjson: Option<&json::Writer>) -> u8 {
    eprint_text(&format!("planner: error: {e:#}\n"));
    let code = e
        .chain()
        .find_map(|c| c.downcast_ref::<AppError>())
        .map_or(1, AppError::exit_code);
    if let Some(writer) = ndjson {
        writer.emit_last(&json::error(code, &format!("{e:#}")));
    }
    code
}

/// Whether the command is `ensure --json` (not a dry run, whose JSON is the plan).
fn ensure_json(cli: &Cli) -> bool {
    matches!(&cli.command, Command::Ensure(a) if a.json && !a.dry_run)
}

/// Exits on a command line clap rejects (exit 2), or for `--help`/`--version` (exit 0). When
/// the arguments ask for `ensure --json`, the error also goes to stdout as the `error` line,
/// so a program reading only stdout learns why.
fn usage_error(e: &clap::Error) -> ! {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let wants_json = args.iter().any(|a| a == "--json") && args.iter().any(|a| a == "ensure");
    if e.use_stderr() && wants_json {
        let message = e.render().to_string();
        let first = message.lines().next().unwrap_or_default();
        let first = first.strip_prefix("error: ").unwrap_or(first);
        let _ = print_json(&format!("{}\n", json::error(2, first)));
    }
    e.exit()
}

fn verbosity(cli: &Cli) -> plain::Verbosity {
    match (cli.quiet, cli.verbose) {
        (true, _) => plain::Verbosity::Quiet,
        (_, true) => plain::Verbosity::Verbose,
        _ => plain::Verbosity::Normal,
    }
}

async fn run(cli: Cli, ndjson: Option<&json::Writer>) -> ExitCode {
    if let Some(url) = &cli.engine {
        crate::docker::endpoint::set_override(url);
    }
    let globals = Globals {
        config: cli.config.clone(),
        cache_dir: cli.cache_dir.clone(),
        plans: cli.plans.clone(),
    };
    let result = match &cli.command {
        Command::Plan(args) => cmd_plan(&globals, &args.selection, args.format, args.offline).await,
        Command::Ensure(args) if args.dry_run => {
            let format = if args.json {
                Format::Json
            } else {
                Format::Text
            };
            cmd_plan(&globals, &args.selection, format, false).await
        }
        Command::Ensure(args) => {
            return match cmd_ensure(&globals, args, verbosity(&cli), ndjson).await {
                Ok(code) => ExitCode::from(code),
                Err(e) => ExitCode::from(fail_last(&e, ndjson)),
            };
        }
        Command::Status(args) => ops::cmd_status(&globals, args).await,
        Command::Gc(args) => ops::cmd_gc(&globals, args, verbosity(&cli)).await,
        Command::Watch(args) => watch::cmd_watch(&globals, args, verbosity(&cli)).await,
        Command::Completions(args) => cmd_completions(args),
    };
    result.unwrap_or_else(|e| fail(&e))
}

async fn cmd_plan(
    globals: &Globals,
    sel: &Selection,
    format: Format,
    offline: bool,
) -> anyhow::Result<ExitCode> {
    let loaded = app::load(globals)?;
    let Some(runtimes) = sel.runtimes(&loaded.config)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let planned = app::plan(&loaded, &runtimes, offline).await?;
    let rows = plan_report::rows(&planned.graph, &planned.decided);
    match format {
        Format::Text => print_text(&plan_report::text(&rows)),
        Format::Json => print_json(&(plan_report::json(&rows) + "\n")),
        Format::Dot => print_text(&plan_report::dot(&rows)),
    }
    .context("cannot write the plan to stdout")?;
    let failed = planned
        .decided
        .decisions
        .values()
        .any(|d| d.status == crate::plan::Status::Failed);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `ensure`: its exit code (0 or 1); with `--json` (`ndjson`), the summary is the last line.
async fn cmd_ensure(
    globals: &Globals,
    args: &EnsureArgs,
    verbosity: plain::Verbosity,
    ndjson: Option<&json::Writer>,
) -> anyhow::Result<u8> {
    let loaded = app::load(globals)?;
    let Some(runtimes) = args.selection.runtimes(&loaded.config)? else {
        if let Some(writer) = ndjson {
            let none = json::summary(&[], &json::Counts::default(), Duration::ZERO, 0);
            writer.emit_last(&none);
        }
        return Ok(0);
    };
    // Shared, `--all` too: only gc runs alone; per-key locks decide who does each key, so a
    // warm `ensure X` beside a prewarm returns in the time of its own work.
    let _run_lock = app::run_lock(&loaded, RunLockMode::Shared, args.no_wait, |path| {
        eprint_text(&format!(
            "planner: waiting for another planner run to finish (run lock {}; --no-wait exits 75 instead)\n",
            path.display()
        ))
    })
    .await?;
    let opts = exec::Options {
        jobs: args.jobs.map_or_else(default_jobs, usize::from),
        fail_fast: args.fail_fast,
    };
    let names: Vec<String> = runtimes.iter().map(|r| r.name.clone()).collect();
    let out = Output::new(args, verbosity, &names, ndjson);
    let ensured = app::ensure(&loaded, &runtimes, &opts, &out.sink).await?;
    let code = u8::from(ensured.failed() != 0);
    out.finish(&ensured, code);
    Ok(code)
}

/// Where `ensure`'s events go: a progress renderer on stderr and, with `--json`, NDJSON on stdout.
struct Output {
    sink: exec::Sink,
    tty: Option<Arc<tty::Display>>,
    json: Option<(json::Writer, Arc<Mutex<json::Counts>>)>,
    /// Whether the summary table goes to stderr (not with -q or --progress none).
    table: bool,
}

impl Output {
    fn new(
        args: &EnsureArgs,
        verbosity: plain::Verbosity,
        names: &[String],
        ndjson: Option<&json::Writer>,
    ) -> Output {
        let progress = match (args.progress, verbosity) {
            (_, plain::Verbosity::Quiet) => Progress::Plain,
            (Some(p), _) => p,
            (None, _) if tty::usable() => Progress::Tty,
            (None, _) => Progress::Plain,
        };
        let width = names.iter().map(String::len).max().unwrap_or(0);
        let mut sinks = Vec::new();
        let mut tty = None;
        match progress {
            Progress::Tty => {
                let display = tty::Display::new(names, verbosity);
                sinks.push(display.sink());
                tty = Some(display);
            }
            Progress::Plain => sinks.push(plain::stderr_sink(verbosity, width)),
            Progress::None => sinks.push(plain::stderr_sink(plain::Verbosity::Quiet, width)),
        }
        let mut counts = None;
        if let Some(writer) = ndjson {
            let (sink, c) = json::sink(writer, verbosity == plain::Verbosity::Verbose);
            sinks.push(sink);
            counts = Some((writer.clone(), c));
        }
        Output {
            sink: report::fan_out(sinks),
            tty,
            json: counts,
            table: verbosity != plain::Verbosity::Quiet && progress != Progress::None,
        }
    }

    fn finish(self, ensured: &app::Ensured, code: u8) {
        if let Some(display) = &self.tty {
            display.finish();
        }
        if self.table {
            eprint_text(&format!(
                "\n{}",
                summary::table(&ensured.summary, ensured.elapsed)
            ));
        }
        if let Some((writer, counts)) = self.json {
            let counts = counts.lock().unwrap_or_else(|e| e.into_inner());
            let summary = json::summary(&ensured.summary, &counts, ensured.elapsed, code);
            writer.emit_last(&summary);
        }
    }
}

fn cmd_completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "planner", &mut out);
    write_stdout(&String::from_utf8_lossy(&out)).context("cannot write the completion script")?;
    Ok(ExitCode::SUCCESS)
}

/// Writes planner's text to stdout: masked, outside text inert ([`crate::text::printed`]).
pub(crate) fn print_text(text: &str) -> std::io::Result<()> {
    write_stdout(&crate::text::printed(text))
}

/// Writes a JSON document to stdout: masked, inert ([`crate::text::printed_json`]).
pub(crate) fn print_json(doc: &str) -> std::io::Result<()> {
    write_stdout(&crate::text::printed_json(doc))
}

/// Writes planner's text to stderr: masked, outside text inert ([`crate::text::printed`]).
/// A closed stderr is ignored.
pub(crate) fn eprint_text(text: &str) {
    let _ = std::io::stderr()
        .lock()
        .write_all(crate::text::printed(text).as_bytes());
}

/// Writes to stdout as it is (the completion scripts, the [`print_text`] family); a closed
/// pipe (`planner plan | head`) is not an error.
fn write_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4)
}
