//! Builds: what to build ([`BuildRequest`]), what a build passes on as it goes
//! ([`BuildOutput`]), the classic builder's build (the context streamed as a tar,
//! [`crate::context`]), and the one loop both builders' answers are read with
//! ([`Engine::read_build`]: the idle bound, a failing context upload named as the cause, the
//! last lines of output in the error, the image ID checked; each builder says what an answer
//! means through [`Answers`] and who sends its context through [`Upload`]), with what both
//! share ([`Engine::next_or_idle`], [`Tail`], [`build_failed`], [`with_help`]).
//! BuildKit's own parts are in [`crate::buildkit`] (its session: [`crate::session`], the
//! context over it: [`crate::filesync`], its `/build` call: [`crate::build_api`]).
//!
//! Upward call, on purpose: [`Engine::build`] dispatches to `Engine::build_buildkit`, defined
//! in `buildkit` (which builds on this module's types); a method call, no import.

use std::collections::HashMap;
use std::sync::Arc;

use bollard::models::BuildInfo;
use bollard::query_parameters::BuildImageOptions;
use futures_util::StreamExt;

use crate::context::Producer;
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
        on_line: impl FnMut(&str) + Send,
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
        let stream = self
            .docker
            .build_image(options, None, Some(bollard::body_try_stream(body)));
        let what = format!("the build of {}", req.tag);
        let mut answers = Classic {
            on_line,
            tail: Tail::default(),
        };
        let upload = Tar(producer);
        self.read_build(req, stream, upload, &activity, &what, &mut answers)
            .await
    }

    /// Reads a build's answers to the end, the same way for either builder (`answers` says
    /// what each answer means to it, `upload` who sends the context): the idle bound; a
    /// stream that fails because the context upload failed names that cause; an error the
    /// engine reports ends the build with the last lines of output (and, for the classic
    /// builder, the help when the Dockerfile needs BuildKit); then the image ID, asked of the
    /// engine when no answer named it.
    pub(crate) async fn read_build<S, A: Answers, U: Upload>(
        &self,
        req: &BuildRequest,
        mut stream: S,
        upload: U,
        activity: &Activity,
        what: &str,
        answers: &mut A,
    ) -> Result<String, DockerError>
    where
        S: futures_util::Stream<Item = Result<BuildInfo, bollard::errors::Error>> + Unpin,
    {
        let mut image_id = None;
        while let Some(item) = self.next_or_idle(&mut stream, activity, what).await? {
            let info = match item {
                Ok(info) => info,
                Err(e) => {
                    // A failing upload cuts the stream: its error is the cause, not hyper's.
                    drop(stream);
                    return Err(match upload.failure().await {
                        Some(c) => build_failed(req, format!("build context: {c}"), answers.tail()),
                        None => {
                            let message = answers.stream_error(&e);
                            self.reported(req, answers, &message).await
                        }
                    });
                }
            };
            match answers.take(info).map_err(|e| *e)? {
                Taken::Nothing => {}
                Taken::Image(id) => image_id = Some(id),
                Taken::Failed(message) => return Err(self.reported(req, answers, &message).await),
            }
        }
        let tail = answers.tail();
        if let Err(e) = upload.finished().await {
            return Err(build_failed(req, format!("build context: {e}"), tail));
        }
        match image_id {
            Some(id) => Ok(id),
            None => self
                .inspect(&req.tag)
                .await?
                .map(|i| i.id)
                .ok_or_else(|| build_failed(req, "the engine reported no image".into(), tail)),
        }
    }

    /// The build error for a `message` the engine gave, with the help it calls for.
    async fn reported<A: Answers>(
        &self,
        req: &BuildRequest,
        answers: &mut A,
        message: &str,
    ) -> DockerError {
        let help = match A::CLASSIC {
            true => self.needs_buildkit_help(req, message).await,
            false => String::new(),
        };
        with_help(answers.failed(req, message), &help)
    }
}

/// What one answer of the engine's build stream meant.
pub(crate) enum Taken {
    Nothing,
    /// The image built.
    Image(String),
    /// The build failed, as the engine says.
    Failed(String),
}

/// What a builder makes of the engine's build answers ([`Engine::read_build`]).
pub(crate) trait Answers: Send {
    /// Whether engine messages may call for the help of a Dockerfile that needs BuildKit.
    const CLASSIC: bool;

    /// Takes one answer (passing its output on); an invalid image ID is an error.
    fn take(&mut self, info: BuildInfo) -> Result<Taken, Box<DockerError>>;

    /// The engine's message in a stream error.
    fn stream_error(&self, error: &bollard::errors::Error) -> String;

    /// The build error for the engine's `message`.
    fn failed(&mut self, req: &BuildRequest, message: &str) -> DockerError;

    /// The last lines of output, for errors.
    fn tail(&self) -> &Tail;
}

/// Who sends a build's context ([`Engine::read_build`]): asked why, once the stream broke,
/// or whether it ended well, once the stream ended.
pub(crate) trait Upload: Send {
    /// planner's own failure to send the context, when that is what broke the stream.
    fn failure(self) -> impl std::future::Future<Output = Option<String>> + Send;

    /// Whether the upload ended well (`Err` says why not).
    fn finished(self) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

/// The classic builder's upload: the context tar, produced beside the request.
struct Tar(Producer);

impl Upload for Tar {
    async fn failure(self) -> Option<String> {
        crate::context::producer_failure(self.0).await
    }

    async fn finished(self) -> Result<(), String> {
        match self.0.await {
            Ok(Ok(_stats)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The classic builder's answers: output lines, an error, the image ID.
struct Classic<F> {
    on_line: F,
    tail: Tail,
}

impl<F: FnMut(&str) + Send> Answers for Classic<F> {
    const CLASSIC: bool = true;

    fn take(&mut self, info: BuildInfo) -> Result<Taken, Box<DockerError>> {
        if let Some(text) = &info.stream {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                self.tail.push(line);
                (self.on_line)(line);
            }
        }
        if let Some(err) = info.error_detail.and_then(|d| d.message).or(info.error) {
            return Ok(Taken::Failed(err));
        }
        if let Some(bollard::models::BuildInfoAux::Default(aux)) = info.aux
            && let Some(id) = aux.id
        {
            return Ok(Taken::Image(checked_id(id, "build")?));
        }
        Ok(Taken::Nothing)
    }

    fn stream_error(&self, error: &bollard::errors::Error) -> String {
        error.to_string()
    }

    fn failed(&mut self, req: &BuildRequest, message: &str) -> DockerError {
        build_failed(req, message.to_owned(), &self.tail)
    }

    fn tail(&self) -> &Tail {
        &self.tail
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
