//! Builds: what to build ([`BuildRequest`]), what a build passes on as it goes
//! ([`BuildOutput`]), the classic builder's build (the context streamed as a tar,
//! [`crate::context`]; its answers read to the end: the idle bound, a failing context upload
//! named as the cause, the last lines of output in the error, the image ID checked), and what
//! both builders share ([`Engine::next_or_idle`], [`Tail`], [`build_failed`], [`with_help`]).
//! BuildKit's own parts are in [`crate::buildkit`] (its session: [`crate::session`], the
//! context over it: [`crate::filesync`], its `/build` call: [`crate::build_api`]).
//!
//! Upward call, on purpose: [`Engine::build`] dispatches to `Engine::build_buildkit`, defined
//! in `buildkit` (which builds on this module's types); a method call, no import.

use std::collections::HashMap;
use std::sync::Arc;

use bollard::query_parameters::BuildImageOptions;
use futures_util::StreamExt;

use crate::engine::{Activity, Engine};
use crate::error::{DockerError, checked_id};

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub context_dir: std::path::PathBuf,
    pub dockerfile: String,
    pub tag: String,
    pub platform: String,
    pub target: Option<String>,
    pub labels: HashMap<String, String>,
    /// Declared build args (`buildargs`); from `runtimes.toml` only.
    pub build_args: std::collections::BTreeMap<String, String>,
    /// For errors: where the Dockerfile came from.
    pub repo: String,
    pub commit: String,
    /// The builder as configured; `auto` is resolved by [`Engine::build`]
    /// ([`Engine::effective_builder`]).
    pub builder: planner_base::Builder,
    /// The network mode of RUN steps.
    pub network: planner_base::BuildNetwork,
    /// For errors: the runtime whose `builder` to change.
    pub runtime: String,
    /// The commit time of the checkout and the registry logins, asked of the caller.
    pub host: Arc<dyn crate::host::BuildHost>,
    /// What BuildKit's pulls may authenticate with: the registries this build names (its
    /// bases) and the logins and tokens `host` gives ([`crate::session::SessionAuth`]).
    pub credentials: crate::session::SessionAuth,
}

/// Where a BuildKit step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildStepState {
    Started,
    Cached,
    Done,
    Failed,
}

impl BuildStepState {
    /// `started`, `cached`, `done`, `failed`.
    pub fn name(self) -> &'static str {
        match self {
            BuildStepState::Started => "started",
            BuildStepState::Cached => "cached",
            BuildStepState::Done => "done",
            BuildStepState::Failed => "failed",
        }
    }
}

/// What a build passes on as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildOutput<'a> {
    /// A line of output (the classic builder's stream; BuildKit's RUN logs).
    Line(&'a str),
    /// A BuildKit step transition.
    Step {
        name: &'a str,
        state: BuildStepState,
    },
}

impl Engine {
    /// Builds from a streamed context with the builder `req` names (`auto`: BuildKit when
    /// the engine offers it); returns the image ID. `on_output` receives every output line
    /// of the build and, with BuildKit, each step transition.
    pub async fn build(
        &self,
        req: &BuildRequest,
        mut on_output: impl FnMut(BuildOutput<'_>) + Send,
    ) -> Result<String, DockerError> {
        if let Some(first) = self.earlier_stall() {
            return Err(first);
        }
        match self.effective_builder(req.builder).await {
            planner_base::Builder::Buildkit => self.build_buildkit(req, on_output).await,
            _ => {
                self.build_classic(req, |line| on_output(BuildOutput::Line(line)))
                    .await
            }
        }
    }

    /// Builds with the classic builder; `on_line` receives every output line.
    async fn build_classic(
        &self,
        req: &BuildRequest,
        mut on_line: impl FnMut(&str) + Send,
    ) -> Result<String, DockerError> {
        let (body, producer) =
            super::context::stream(&req.context_dir, &req.dockerfile, req.host.clone());
        let activity = Arc::new(Activity::new());
        let body = {
            let activity = activity.clone();
            body.inspect(move |_| activity.touch())
        };
        let options = BuildImageOptions {
            dockerfile: req.dockerfile.clone(),
            t: Some(req.tag.clone()),
            rm: true,
            forcerm: true,
            platform: req.platform.clone(),
            target: req.target.clone().unwrap_or_default(),
            labels: Some(req.labels.clone()),
            buildargs: Some(req.build_args.clone().into_iter().collect()),
            networkmode: req.network.mode().map(str::to_owned),
            ..Default::default()
        };
        let mut stream =
            self.docker
                .build_image(options, None, Some(bollard::body_try_stream(body)));
        let mut tail = Tail::default();
        let mut image_id = None;
        let what = format!("the build of {}", req.tag);
        while let Some(item) = self.next_or_idle(&mut stream, &activity, &what).await? {
            let info = match item {
                Ok(info) => info,
                Err(e) => {
                    // A failing producer cuts the upload: its error is the cause, not hyper's.
                    drop(stream);
                    let detail = super::context::producer_failure(producer).await;
                    let (detail, help) = match detail {
                        Some(c) => (format!("build context: {c}"), String::new()),
                        None => {
                            let e = e.to_string();
                            let help = self.needs_buildkit_help(req, &e).await;
                            (e, help)
                        }
                    };
                    return Err(with_help(build_failed(req, detail, &tail), &help));
                }
            };
            if let Some(text) = &info.stream {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    tail.push(line);
                    on_line(line);
                }
            }
            if let Some(err) = info.error_detail.and_then(|d| d.message).or(info.error) {
                let help = self.needs_buildkit_help(req, &err).await;
                return Err(with_help(build_failed(req, err, &tail), &help));
            }
            if let Some(bollard::models::BuildInfoAux::Default(aux)) = info.aux
                && let Some(id) = aux.id
            {
                image_id = Some(checked_id(id, "build").map_err(|e| *e)?);
            }
        }
        match producer.await {
            Ok(Ok(_stats)) => {}
            Ok(Err(e)) => return Err(build_failed(req, format!("build context: {e}"), &tail)),
            Err(e) => return Err(build_failed(req, format!("build context: {e}"), &tail)),
        }
        match image_id {
            Some(id) => Ok(id),
            None => self
                .inspect(&req.tag)
                .await?
                .map(|i| i.id)
                .ok_or_else(|| build_failed(req, "the engine reported no image".into(), &tail)),
        }
    }
}

impl Engine {
    /// The help for a classic build the engine refused because the Dockerfile needs
    /// BuildKit (`the --mount option requires BuildKit`): what to set, or why this engine
    /// cannot; empty for any other error.
    async fn needs_buildkit_help(&self, req: &BuildRequest, error: &str) -> String {
        if !error.contains("requires BuildKit") {
            return String::new();
        }
        let rt = &req.runtime;
        if req.builder == planner_base::Builder::Classic {
            format!(
                "\n  help: this Dockerfile needs BuildKit, but runtime {rt:?} has builder = \"classic\"; set builder = \"auto\" (or \"buildkit\") for it in runtimes.toml"
            )
        } else {
            format!(
                "\n  help: this Dockerfile needs BuildKit, and the Docker engine at {} does not offer it (API 1.39 or later with a /session endpoint); upgrade the engine (Docker 18.09 or later)",
                self.shown_host()
            )
        }
    }

    /// The stream's next item, or [`DockerError::Idle`] once nothing moved (no item, and no
    /// `activity` elsewhere, such as context bytes taken) for the idle limit (which marks the
    /// engine stalled). `next` is cancel-safe, so waiting again after a timeout loses nothing.
    pub(super) async fn next_or_idle<S: futures_util::Stream + Unpin>(
        &self,
        stream: &mut S,
        activity: &Activity,
        what: &str,
    ) -> Result<Option<S::Item>, DockerError> {
        loop {
            let quiet = activity.quiet_for();
            if quiet >= self.idle {
                return Err(self.mark_stalled(DockerError::Idle {
                    host: self.shown_host(),
                    what: what.to_owned(),
                    limit: humantime::format_duration(self.idle).to_string(),
                }));
            }
            if let Ok(item) = tokio::time::timeout(self.idle - quiet, stream.next()).await {
                activity.touch();
                return Ok(item);
            }
        }
    }
}

/// The last lines of build output, for errors.
#[derive(Default)]
pub(crate) struct Tail(std::collections::VecDeque<String>);

impl Tail {
    const LINES: usize = 12;
    pub(crate) fn push(&mut self, line: &str) {
        if self.0.len() == Self::LINES {
            self.0.pop_front();
        }
        self.0.push_back(line.to_owned());
    }
}

pub(crate) fn build_failed(req: &BuildRequest, detail: String, tail: &Tail) -> DockerError {
    let tail = if tail.0.is_empty() {
        String::new()
    } else {
        let lines: Vec<String> = tail.0.iter().map(|l| format!("    | {l}")).collect();
        format!("\n  last build output:\n{}", lines.join("\n"))
    };
    DockerError::BuildFailed {
        image: req.tag.clone(),
        dockerfile: req.dockerfile.clone(),
        repo: req.repo.clone(),
        commit: req.commit.clone(),
        detail: detail.trim().to_owned(),
        tail,
    }
}

/// `error` with `help` (`\n  help: …`, or empty) after everything else it says.
pub(crate) fn with_help(error: DockerError, help: &str) -> DockerError {
    match error {
        DockerError::BuildFailed {
            image,
            dockerfile,
            repo,
            commit,
            detail,
            tail,
        } => DockerError::BuildFailed {
            image,
            dockerfile,
            repo,
            commit,
            detail,
            tail: tail + help,
        },
        other => other,
    }
}
