//! The Docker engine through bollard: connection (to the engine [`super::endpoint`] names, API
//! version negotiated), image inspection, tagging, and builds from a streamed context.
//!
//! Every call is bounded in time: a call with one answer by `[engine] timeout`
//! ([`Engine::bounded`], the one place that waits on such a call), a stream (a build's output, a
//! pull's or push's progress) by `[engine] idle_timeout` between items
//! ([`Engine::next_or_idle`]). The first call that runs out of time marks the engine stalled
//! for the rest of the run (every clone shares the mark): later calls fail at once with that
//! error ([`DockerError::Stalled`], [`DockerError::Idle`]), which names the engine (masked) and
//! the key to raise, instead of each waiting out the limit again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use super::buildkit::BuildCacheUsage;
use bollard::query_parameters::{BuildImageOptions, TagImageOptions};
use bollard::{ClientVersion, Docker};
use futures_util::StreamExt;

use super::endpoint::{Endpoint, Transport};
use super::remote;

/// Labels planner puts on every image it builds, so the image describes itself.
pub const LABEL_KEY: &str = "dev.planner.key";
pub const LABEL_KEY_FORMAT: &str = "dev.planner.key-format";
pub const LABEL_REPO: &str = "dev.planner.repo";
pub const LABEL_DOCKERFILE: &str = "dev.planner.dockerfile";
pub const LABEL_DOCKERFILE_BLAKE3: &str = "dev.planner.dockerfile-blake3";
pub const LABEL_PLATFORM: &str = "dev.planner.platform";
pub const LABEL_PARAMS: &str = "dev.planner.params";
/// Declared build args as canonical JSON; absent when none are declared.
pub const LABEL_BUILD_ARGS: &str = "dev.planner.build-args";
/// The base images a build keyed on (JSON, [`crate::bases::Base`] list).
pub const LABEL_BASES: &str = "dev.planner.bases";
/// The builder that built the image (`buildkit`, `classic`).
pub const LABEL_BUILDER: &str = "dev.planner.builder";
pub const LABEL_REVISION: &str = "org.opencontainers.image.revision";
pub const LABEL_SOURCE: &str = "org.opencontainers.image.source";

/// How long to wait for the engine to answer a ping before calling it unreachable.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// bollard's own per-request limit, above every limit planner sets itself (builds may take
/// long; the idle limit and cancellation end them sooner).
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// The config key bounding calls with one answer, and the one bounding streams.
const CALL_KEY: &str = "timeout";
pub(super) const IDLE_KEY: &str = "idle_timeout";

#[derive(Debug, Clone, thiserror::Error)]
pub enum DockerError {
    #[error(
        "Docker engine unreachable at {host}: {detail}\n  help: start the Docker daemon, or set DOCKER_HOST to its socket ({env})"
    )]
    Unreachable {
        host: String,
        detail: String,
        env: String,
    },
    #[error("Docker engine call {what} failed: {detail}")]
    Api { what: String, detail: String },
    /// The engine address, its TLS, or what the engine answered first is not usable.
    #[error(transparent)]
    Endpoint(Box<super::endpoint::EndpointError>),
    #[error(
        "the Docker engine at {host} stopped answering: nothing moved for {limit} during {what}, so planner asks this engine nothing more in this run\n  help: check the engine (`docker info`, its logs) and run again; if this build is legitimately silent for longer (a long quiet RUN step, a slow pull), raise `idle_timeout` in the [engine] table of runtimes.toml"
    )]
    Idle {
        host: String,
        what: String,
        limit: String,
    },
    /// A call with one answer got none within its limit; planner asks the engine nothing
    /// more in this run.
    #[error(
        "the Docker engine at {host} stopped answering: {what} got no answer within {limit}, so planner asks this engine nothing more in this run\n  help: check the engine (`docker info`, its logs) and run again; if it is only slow to answer (a busy or distant engine), raise `{key}` in the [engine] table of runtimes.toml"
    )]
    Stalled {
        host: String,
        what: String,
        limit: String,
        /// The `[engine]` key that sets `limit`.
        key: &'static str,
    },
    #[error(
        "docker build of {image} failed: {detail}\n  Dockerfile {dockerfile} in {repo} at commit {commit}{tail}"
    )]
    BuildFailed {
        image: String,
        dockerfile: String,
        repo: String,
        commit: String,
        detail: String,
        tail: String,
    },
}

/// What the engine says about an image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageInfo {
    pub id: String,
    pub labels: HashMap<String, String>,
}

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
    pub builder: crate::config::Builder,
    /// The network mode of RUN steps.
    pub network: crate::config::BuildNetwork,
    /// What BuildKit's pulls may authenticate with: the registries this build names (its
    /// bases) and the run's registry client ([`super::SessionAuth`]).
    pub credentials: super::SessionAuth,
    /// For errors: the runtime whose `builder` to change.
    pub runtime: String,
}

/// What a build passes on as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildOutput<'a> {
    /// A line of output (the classic builder's stream; BuildKit's RUN logs).
    Line(&'a str),
    /// A BuildKit step transition.
    Step {
        name: &'a str,
        state: crate::exec::event::BuildStepState,
    },
}

/// A connected engine.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(super) docker: Docker,
    pub(super) host: String,
    /// How to reach the engine for the calls made without bollard (the pull).
    pub(super) endpoint: Arc<Endpoint>,
    /// A stream (build, pull, push) with nothing moving this long fails (`idle_timeout`).
    pub(super) idle: Duration,
    /// A call with one answer fails when it has none within this (`timeout`).
    limit: Duration,
    /// The error of the first call that ran out of time, shared by every clone: later calls
    /// fail with it at once.
    stalled: Arc<std::sync::OnceLock<DockerError>>,
    /// Answers known in advance, by reference (views made by [`Engine::prefetched`]).
    known: Option<Arc<HashMap<String, Option<ImageInfo>>>>,
    /// Whether the engine offers BuildKit, once asked ([`Engine::offers_buildkit`]).
    pub(super) buildkit: Arc<tokio::sync::OnceCell<bool>>,
}

/// Above this many references, [`Engine::prefetched`] lists images once instead of inspecting
/// each: a listing costs dockerd about as much as 20–40 inspects (and grows with the images it
/// holds), an inspect stays cheap.
pub const LIST_ABOVE: usize = 64;
/// Inspects [`Engine::prefetched`] has in flight at once.
const PREFETCH_CONCURRENCY: usize = 16;

/// Whether a listing filtered by `reference={prefix}*` for `prefixes` answers for `reference`:
/// a `repo:tag` under one of the prefixes with nothing after it but a name and a tag (what the
/// pattern's `*` matches), spelled as the engine lists it. References the engine would rewrite
/// (`docker.io/…`, `library/…`) are left to a live inspect.
fn listing_covers(prefixes: &[String], reference: &str) -> bool {
    let rewritten = ["docker.io/", "index.docker.io/", "library/"]
        .iter()
        .any(|p| reference.starts_with(p));
    !rewritten
        && prefixes.iter().any(|p| {
            reference
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.contains(':') && !rest.contains(['/', '@']))
        })
}

impl Engine {
    /// Connects to the engine [`Endpoint::resolve`] names (`--engine`, `DOCKER_HOST`, a Docker
    /// context), negotiates the API version and checks it is at least [`remote::MIN_API`].
    /// Its calls are bounded as `settings` (the `[engine]` table) says.
    pub async fn connect(settings: &crate::config::EngineSettings) -> Result<Engine, DockerError> {
        Ok(Engine::connect_default().await?.with_limits(settings))
    }

    async fn connect_default() -> Result<Engine, DockerError> {
        let endpoint = Endpoint::resolve().map_err(|e| DockerError::Endpoint(Box::new(e)))?;
        #[cfg(unix)]
        if let Transport::Unix(path) = &endpoint.transport {
            // Negotiate from the ping's `Api-Version` header, as the docker CLI does: bollard's
            // negotiation asks `GET /version`, for which dockerd runs `runc --version` and
            // `docker-init --version` (~10 ms, a sixth of a warm `ensure`).
            let path = path.to_string_lossy().into_owned();
            let ping = tokio::task::spawn_blocking(move || ping_api_version(&path));
            let version = match tokio::time::timeout(PING_TIMEOUT, ping).await {
                Err(_) => Err(format!("no answer within {}s", PING_TIMEOUT.as_secs())),
                Ok(Err(e)) => Err(format!("ping: {e}")),
                Ok(Ok(answer)) => answer.map_err(|e| e.to_string()),
            }
            .map_err(|detail| remote::unreachable(&endpoint, detail))?;
            if let Some(server) = version {
                remote::check_version(&endpoint, &server).map_err(|e| *e)?;
                let version = if server < *bollard::API_DEFAULT_VERSION {
                    server
                } else {
                    *bollard::API_DEFAULT_VERSION
                };
                let docker =
                    Docker::connect_with_unix(&endpoint.host, BUILD_TIMEOUT.as_secs(), &version)
                        .map_err(|e| remote::unreachable(&endpoint, e.to_string()))?;
                return Ok(Engine::new(docker, endpoint));
            }
        }
        let docker = remote::connect(&endpoint).await?;
        Ok(Engine::new(docker, endpoint))
    }

    fn new(docker: Docker, endpoint: Endpoint) -> Engine {
        Engine {
            docker,
            host: endpoint.host.clone(),
            endpoint: Arc::new(endpoint),
            idle: crate::config::DEFAULT_ENGINE_IDLE_TIMEOUT,
            limit: crate::config::DEFAULT_ENGINE_TIMEOUT,
            stalled: Arc::default(),
            known: None,
            buildkit: Arc::default(),
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// This engine with streams failing after `idle_timeout` with nothing moving (no context
    /// bytes taken, no output, no pull progress) and other calls after `timeout`.
    fn with_limits(self, settings: &crate::config::EngineSettings) -> Engine {
        Engine {
            idle: settings.idle_timeout,
            limit: settings.timeout,
            ..self
        }
    }

    /// Waits for `call`, one engine call with one answer (`what` names it for errors), at
    /// most the call limit (`[engine] timeout`).
    pub(super) async fn bounded<F: std::future::Future>(
        &self,
        what: &str,
        call: F,
    ) -> Result<F::Output, DockerError> {
        self.bounded_by(self.limit, CALL_KEY, what, call).await
    }

    /// Waits for `call` at most `limit` (set by the `[engine]` key `key`). Fails at once when
    /// the engine already stalled in this run; a call that runs out of time marks it stalled.
    pub(super) async fn bounded_by<F: std::future::Future>(
        &self,
        limit: Duration,
        key: &'static str,
        what: &str,
        call: F,
    ) -> Result<F::Output, DockerError> {
        if let Some(first) = self.earlier_stall() {
            return Err(first);
        }
        tokio::time::timeout(limit, call)
            .await
            .map_err(|_| self.stall(what, limit, key))
    }

    /// The first stall's error when the engine stalled earlier in this run.
    pub(super) fn earlier_stall(&self) -> Option<DockerError> {
        self.stalled.get().cloned()
    }

    /// The error for `what`, which got no answer within `limit`; the engine is marked stalled.
    fn stall(&self, what: &str, limit: Duration, key: &'static str) -> DockerError {
        self.mark_stalled(DockerError::Stalled {
            host: self.shown_host(),
            what: what.to_owned(),
            limit: humantime::format_duration(limit).to_string(),
            key,
        })
    }

    /// Marks the engine stalled with `error` (the first mark stays); returns `error`.
    fn mark_stalled(&self, error: DockerError) -> DockerError {
        let _ = self.stalled.set(error.clone());
        error
    }

    /// The engine as errors name it: its address without credentials.
    pub(super) fn shown_host(&self) -> String {
        match url::Url::parse(&self.host) {
            Ok(u) => crate::mask::display_url(&u),
            Err(_) => crate::mask::mask(&self.host).into_owned(),
        }
    }

    /// A view of this engine that has asked about `references` all at once and answers
    /// [`inspect`](Engine::inspect) of them from memory (anything else live). Deciding a graph
    /// asks about two or three tags per runtime, one after the other (the same tag up to three
    /// times): this asks each once, `:latest` first, taking the tags an answer names for
    /// answers too (a warm runtime then costs one round trip), or, above [`LIST_ABOVE`]
    /// references, lists the tags under `image_prefixes` in one call. A reference whose answer
    /// failed is left to a live inspect, which then reports the error. The answers are a
    /// snapshot: for deciding, never for the re-check after a step's lock.
    pub async fn prefetched(&self, references: Vec<String>, image_prefixes: Vec<String>) -> Engine {
        let mut references = references;
        references.sort();
        references.dedup();
        let mut known = HashMap::with_capacity(references.len());
        if references.len() > LIST_ABOVE {
            let mut prefixes = image_prefixes;
            prefixes.sort();
            prefixes.dedup();
            if let Ok(tags) = self.list_tags(&prefixes).await {
                for reference in references {
                    if listing_covers(&prefixes, &reference) {
                        let answer = tags.get(&reference).cloned();
                        known.insert(reference, answer);
                    }
                }
            }
        } else {
            // `:latest` first: in the steady state its image also carries the pinned tag, and an
            // inspect names every tag of its image, so one round trip answers both (dockerd
            // answers inspects one at a time, ~0.5 ms each, so round trips are what counts).
            let (first, then): (Vec<String>, Vec<String>) = references
                .iter()
                .cloned()
                .partition(|r| r.ends_with(":latest"));
            for round in [first, then] {
                let round: Vec<String> = round
                    .into_iter()
                    .filter(|r| !known.contains_key(r))
                    .collect();
                let answers: Vec<_> = futures_util::stream::iter(round)
                    .map(|reference| async move {
                        let answer = self.inspect_live(&reference).await;
                        (reference, answer)
                    })
                    .buffer_unordered(PREFETCH_CONCURRENCY)
                    .collect()
                    .await;
                for (reference, answer) in answers {
                    let Ok(answer) = answer else { continue };
                    if let Some((info, tags)) = &answer {
                        for tag in tags {
                            if tag != &reference && references.binary_search(tag).is_ok() {
                                known.insert(tag.clone(), Some(info.clone()));
                            }
                        }
                    }
                    known.insert(reference, answer.map(|(info, _)| info));
                }
            }
        }
        Engine {
            known: Some(Arc::new(known)),
            ..self.clone()
        }
    }

    /// Every `repo:tag` under `prefixes`, in one call.
    async fn list_tags(
        &self,
        prefixes: &[String],
    ) -> Result<HashMap<String, ImageInfo>, DockerError> {
        let patterns: Vec<String> = prefixes.iter().map(|p| format!("{p}*")).collect();
        let options = bollard::query_parameters::ListImagesOptions {
            filters: Some(HashMap::from([("reference".to_owned(), patterns)])),
            ..Default::default()
        };
        let call = self.docker.list_images(Some(options));
        let images = self
            .bounded("the image list", call)
            .await?
            .map_err(|e| api("list images", "under the image prefixes", &e.to_string()))?;
        let mut tags = HashMap::new();
        for image in images {
            let info = ImageInfo {
                id: checked_id(image.id, "list images").map_err(|e| *e)?,
                labels: image.labels,
            };
            for tag in image.repo_tags {
                if tag != "<none>:<none>" {
                    tags.insert(tag, info.clone());
                }
            }
        }
        Ok(tags)
    }

    /// Inspects an image reference or ID; `None` when the engine has no such image.
    pub async fn inspect(&self, reference: &str) -> Result<Option<ImageInfo>, DockerError> {
        if let Some(answer) = self.known.as_ref().and_then(|k| k.get(reference)) {
            return Ok(answer.clone());
        }
        Ok(self.inspect_live(reference).await?.map(|(info, _)| info))
    }

    /// Asks the engine: the image and every `repo:tag` naming it.
    async fn inspect_live(
        &self,
        reference: &str,
    ) -> Result<Option<(ImageInfo, Vec<String>)>, DockerError> {
        let Some(image) = self.inspect_raw(reference).await? else {
            return Ok(None);
        };
        let id = checked_id(image.id.unwrap_or_default(), "inspect image").map_err(|e| *e)?;
        Ok(Some((
            ImageInfo {
                id,
                labels: image.config.and_then(|c| c.labels).unwrap_or_default(),
            },
            image.repo_tags.unwrap_or_default(),
        )))
    }

    /// The engine's full inspect answer, with a time limit; `None` for a 404.
    async fn inspect_raw(
        &self,
        reference: &str,
    ) -> Result<Option<bollard::models::ImageInspect>, DockerError> {
        let call = self.docker.inspect_image(reference);
        match self
            .bounded(&format!("the inspect of {reference}"), call)
            .await?
        {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(api("inspect", reference, &e.to_string())),
            Ok(image) => Ok(Some(image)),
        }
    }

    /// Points `reference` (`repo:tag`) at `image`.
    pub async fn tag(&self, image: &str, reference: &str) -> Result<(), DockerError> {
        let (repo, tag) = split_reference(reference);
        let options = TagImageOptions {
            repo: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
        };
        let call = self.docker.tag_image(image, Some(options));
        self.bounded(&format!("the tag {reference}"), call)
            .await?
            .map_err(|e| api("tag", reference, &e.to_string()))
    }

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
            crate::config::Builder::Buildkit => self.build_buildkit(req, on_output).await,
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
        let (body, producer) = super::context::stream(&req.context_dir, &req.dockerfile);
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
        if req.builder == crate::config::Builder::Classic {
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

/// When something last moved between planner and the engine.
pub(super) struct Activity {
    start: std::time::Instant,
    /// Milliseconds since `start`.
    last: std::sync::atomic::AtomicU64,
}

impl Activity {
    pub(super) fn new() -> Activity {
        Activity {
            start: std::time::Instant::now(),
            last: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub(super) fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last
            .fetch_max(now, std::sync::atomic::Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(std::sync::atomic::Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// The last lines of build output, for errors.
#[derive(Default)]
pub(super) struct Tail(std::collections::VecDeque<String>);

impl Tail {
    const LINES: usize = 12;
    pub(super) fn push(&mut self, line: &str) {
        if self.0.len() == Self::LINES {
            self.0.pop_front();
        }
        self.0.push_back(line.to_owned());
    }
}

pub(super) fn build_failed(req: &BuildRequest, detail: String, tail: &Tail) -> DockerError {
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
pub(super) fn with_help(error: DockerError, help: &str) -> DockerError {
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

/// `GET /_ping` on the engine's unix socket: the API version its `Api-Version` header names
/// (`None` when there is no such header). An error when the engine does not answer 200.
#[cfg(unix)]
fn ping_api_version(socket: &str) -> std::io::Result<Option<ClientVersion>> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(PING_TIMEOUT))?;
    stream.set_write_timeout(Some(PING_TIMEOUT))?;
    stream.write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")?;
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    parse_ping_head(&String::from_utf8_lossy(&head))
}

/// The status line must say 200; returns the `Api-Version` header as a version.
fn parse_ping_head(head: &str) -> std::io::Result<Option<ClientVersion>> {
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if !(status.starts_with("HTTP/1.") && status.split(' ').nth(1) == Some("200")) {
        return Err(std::io::Error::other(format!(
            "unexpected answer to GET /_ping: {:?}",
            status.chars().take(80).collect::<String>()
        )));
    }
    Ok(lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("api-version"))
        .and_then(|(_, v)| {
            let (major, minor) = v.trim().split_once('.')?;
            Some(ClientVersion {
                major_version: major.parse().ok()?,
                minor_version: minor.parse().ok()?,
            })
        }))
}

/// An image ID the engine answered, checked before planner uses it (`sha256:` + 64 hex).
pub(super) fn checked_id(id: String, what: &str) -> Result<String, Box<DockerError>> {
    if crate::ids::is_image_id(&id) {
        return Ok(id);
    }
    let shown: String = id.chars().take(80).collect();
    Err(Box::new(api(
        what,
        "",
        &format!(
            "the engine answered an invalid image ID {shown:?}; is DOCKER_HOST a Docker engine?"
        ),
    )))
}

pub(super) fn api(what: &str, reference: &str, detail: &str) -> DockerError {
    DockerError::Api {
        what: format!("{what} {reference}"),
        detail: detail.to_owned(),
    }
}

/// Splits `repo:tag` at the last `:` that is not part of a registry port.
pub fn split_reference(reference: &str) -> (&str, &str) {
    match reference.rfind(':') {
        Some(i) if !reference[i..].contains('/') => (&reference[..i], &reference[i + 1..]),
        _ => (reference, "latest"),
    }
}

// ---------------------------------------------------------------------------------------
// Listing and removal, for `planner status` and `planner gc`.
// ---------------------------------------------------------------------------------------

/// An image as listed by the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageEntry {
    pub id: String,
    /// `repo:tag` references (never `<none>:<none>`).
    pub repo_tags: Vec<String>,
    pub labels: HashMap<String, String>,
    /// Creation time, seconds since the Unix epoch.
    pub created: i64,
    /// Total size including layers shared with other images.
    pub size: u64,
    /// Bytes no other image shares, when the engine reports it (API ≥ 1.42).
    pub unique_size: Option<u64>,
}

/// An image as inspected: what the listing says (no unique size), its digest references
/// (`RepoDigests`: `name@sha256:…`, where it was pulled from) and its precise creation time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDetail {
    pub entry: ImageEntry,
    pub repo_digests: Vec<String>,
    /// Nanoseconds since the Unix epoch, when the engine states a valid time.
    pub created_nanos: Option<i128>,
}

/// What removing one image reference did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveOutcome {
    /// The reference is gone; the image was deleted too when `deleted` (it had no other).
    Removed { deleted: bool },
    /// The engine refused: a container uses the image (the message names it).
    InUse(String),
    /// No such reference (already gone).
    Missing,
}

impl Engine {
    /// Images (not intermediate layers) carrying `label`, whatever its value.
    pub async fn list_images_with_label(
        &self,
        label: &str,
    ) -> Result<Vec<ImageEntry>, DockerError> {
        let options = bollard::query_parameters::ListImagesOptions {
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![label.to_owned()],
            )])),
            shared_size: true,
            ..Default::default()
        };
        let call = self.docker.list_images(Some(options));
        let images = self
            .bounded("the image list", call)
            .await?
            .map_err(|e| api("list images with label", label, &e.to_string()))?;
        Ok(images
            .into_iter()
            .map(|i| ImageEntry {
                id: i.id,
                repo_tags: i
                    .repo_tags
                    .into_iter()
                    .filter(|t| t != "<none>:<none>")
                    .collect(),
                labels: i.labels,
                created: i.created,
                size: u64::try_from(i.size).unwrap_or(0),
                unique_size: (i.shared_size >= 0)
                    .then(|| u64::try_from(i.size - i.shared_size).unwrap_or(0)),
            })
            .collect())
    }

    /// Bytes each image holds that no other image shares (what deleting it alone frees), by
    /// image ID, from the engine's disk usage report (`docker system df -v`). For engines
    /// whose image list does not report shared sizes (API < 1.42).
    pub async fn unique_image_sizes(&self) -> Result<HashMap<String, u64>, DockerError> {
        Ok(self
            .disk_usage("of images")
            .await?
            .images
            .unwrap_or_default()
            .into_iter()
            .map(|i| {
                let unique = i.size - i.shared_size.max(0);
                (i.id, u64::try_from(unique).unwrap_or(0))
            })
            .collect())
    }

    /// The engine's disk usage report (`GET /system/df`; `of` names what it is for, in errors).
    /// Docker 20.10 lets one such report run at a time and answers 500 "a disk usage
    /// operation is already running" to any other client asking meanwhile (another `gc`, a
    /// user's `docker system df`): that answer is asked again, with growing pauses, until
    /// the call limit (`[engine] timeout`) since the first ask is spent. Newer engines share
    /// one report among concurrent askers.
    pub(super) async fn disk_usage(
        &self,
        of: &str,
    ) -> Result<bollard::models::SystemDataUsageResponse, DockerError> {
        let what = format!("the disk usage report {of}");
        let started = std::time::Instant::now();
        let mut pause = DU_FIRST_PAUSE;
        loop {
            if let Some(first) = self.earlier_stall() {
                return Err(first);
            }
            let call = self
                .docker
                .df(None::<bollard::query_parameters::DataUsageOptions>);
            // At least a pause's worth: a sleep that overran a little is no stall.
            let left = self
                .limit
                .saturating_sub(started.elapsed())
                .max(DU_FIRST_PAUSE);
            let answer = tokio::time::timeout(left, call)
                .await
                .map_err(|_| self.stall(&what, self.limit, CALL_KEY))?;
            let e = match answer {
                Ok(usage) => return Ok(usage),
                Err(e) => e,
            };
            let busy = another_operation_running(&e);
            // Up to half the pause again, so that askers that collided do not collide again.
            let wait = pause + pause.mul_f64(fastrand::f64() / 2.0);
            if !busy || started.elapsed() + wait >= self.limit {
                return Err(api("disk usage", of, &du_failure(&e, busy, self.limit)));
            }
            tokio::time::sleep(wait).await;
            pause = (pause * 2).min(DU_MAX_PAUSE);
        }
    }

    /// The creation time of an image as the engine states it (RFC 3339, nanoseconds), or
    /// `None` when there is no such image.
    pub async fn image_created(&self, reference: &str) -> Result<Option<String>, DockerError> {
        Ok(self
            .inspect_raw(reference)
            .await?
            .and_then(|i| i.created)
            .and_then(|t| t.timestamp_nanos_opt())
            .and_then(|n| jiff::Timestamp::from_nanosecond(n.into()).ok())
            .map(|t| t.to_string()))
    }

    /// An image as the engine inspects it, with its digest references; `None` when there
    /// is no such image. For `gc`, which proves a pulled image by these.
    pub async fn inspect_detail(
        &self,
        reference: &str,
    ) -> Result<Option<ImageDetail>, DockerError> {
        let Some(image) = self.inspect_raw(reference).await? else {
            return Ok(None);
        };
        let id = checked_id(image.id.unwrap_or_default(), "inspect image").map_err(|e| *e)?;
        let created_nanos = image
            .created
            .and_then(|t| t.timestamp_nanos_opt())
            .map(i128::from);
        let created = created_nanos.map_or(0, |n| i64::try_from(n / 1_000_000_000).unwrap_or(0));
        let entry = ImageEntry {
            id,
            repo_tags: image
                .repo_tags
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t != "<none>:<none>")
                .collect(),
            labels: image.config.and_then(|c| c.labels).unwrap_or_default(),
            created,
            size: image.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
            unique_size: None,
        };
        Ok(Some(ImageDetail {
            entry,
            repo_digests: image.repo_digests.unwrap_or_default(),
            created_nanos,
        }))
    }

    /// Containers (running or not) by the ID of the image they use: their names.
    pub async fn containers_by_image(&self) -> Result<HashMap<String, Vec<String>>, DockerError> {
        let options = bollard::query_parameters::ListContainersOptions {
            all: true,
            ..Default::default()
        };
        let call = self.docker.list_containers(Some(options));
        let containers = self
            .bounded("the container list", call)
            .await?
            .map_err(|e| api("list containers", "(all)", &e.to_string()))?;
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for c in containers {
            let Some(image) = c.image_id else { continue };
            let name = c
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_owned())
                .or(c.id.map(|id| crate::ids::short(&id).to_owned()))
                .unwrap_or_default();
            out.entry(image).or_default().push(name);
        }
        Ok(out)
    }

    /// Removes one reference (`repo:tag`) without force: the engine deletes the image only
    /// when no other reference is left, and refuses (409) when a container uses it.
    pub async fn remove_reference(&self, reference: &str) -> Result<RemoveOutcome, DockerError> {
        let options = bollard::query_parameters::RemoveImageOptions {
            force: false,
            noprune: false,
        };
        let call = self.docker.remove_image(reference, Some(options), None);
        match self
            .bounded(&format!("the removal of {reference}"), call)
            .await?
        {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(RemoveOutcome::Missing),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                message,
            }) => Ok(RemoveOutcome::InUse(message)),
            Err(e) => Err(api("remove", reference, &e.to_string())),
            Ok(items) => Ok(RemoveOutcome::Removed {
                deleted: items.iter().any(|i| i.deleted.is_some()),
            }),
        }
    }
}

/// The first pause before asking for a disk usage report again, and the longest.
const DU_FIRST_PAUSE: Duration = Duration::from_millis(20);
const DU_MAX_PAUSE: Duration = Duration::from_millis(500);

/// Whether the engine refused a call because another client's call of the kind it runs one
/// at a time is under way: 20.10's disk usage ("a disk usage operation is already running")
/// and prunes ("a prune operation is already running").
fn another_operation_running(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError { status_code, message }
            if (*status_code == 500 || *status_code == 409)
                && message.contains("operation is already running")
    )
}

/// The detail of a failed disk usage report: the engine's word, and for a report that stayed
/// busy, why and what to do.
fn du_failure(e: &bollard::errors::Error, busy: bool, limit: Duration) -> String {
    if !busy {
        return e.to_string();
    }
    format!(
        "{e}, still after asking again for {}: another client (`docker system df`, another `planner gc`) keeps asking the engine for its disk usage\n  help: run again once that client is done, or raise `{CALL_KEY}` in the [engine] table of runtimes.toml",
        humantime::format_duration(limit)
    )
}

/// Parses an RFC 3339 time as the engine writes it (`2024-05-01T12:34:56.123456789Z`, or
/// with a `+HH:MM` offset) into nanoseconds since the Unix epoch; `None` for anything else
/// (the engine's answers are input too: never a panic).
pub fn parse_rfc3339_nanos(text: &str) -> Option<i128> {
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_nanosecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_ids_from_the_engine_are_checked() {
        let good = format!("sha256:{}", "0a".repeat(32));
        assert_eq!(checked_id(good.clone(), "inspect image").unwrap(), good);
        for bad in ["", "sha256:é", "sha256:abc", "../../x"] {
            let err = checked_id(bad.into(), "inspect image")
                .unwrap_err()
                .to_string();
            assert!(err.contains("invalid image ID"), "{err}");
        }
    }

    /// An engine at a socket that never answers (in `dir`), calls bounded by `limit`.
    fn engine_with_limit(dir: &std::path::Path, limit: Duration) -> Engine {
        let socket = dir.join("docker.sock");
        if !socket.exists() {
            std::mem::forget(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        }
        let host = format!("unix://{}", socket.display());
        let endpoint = Endpoint::parse(&host, "DOCKER_HOST is a test's", None).unwrap();
        let docker = Docker::connect_with_unix(&host, 1, bollard::API_DEFAULT_VERSION).unwrap();
        let settings = crate::config::EngineSettings {
            timeout: limit,
            ..Default::default()
        };
        Engine::new(docker, endpoint).with_limits(&settings)
    }

    #[tokio::test]
    async fn the_first_stall_fails_every_later_call_of_every_clone_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine_with_limit(dir.path(), Duration::from_millis(20));
        let first = engine
            .bounded("the inspect of x:latest", std::future::pending::<()>())
            .await
            .unwrap_err()
            .to_string();
        for needle in [
            &format!(
                "the Docker engine at unix://{}/docker.sock stopped answering",
                dir.path().display()
            ),
            "the inspect of x:latest got no answer within 20ms",
            "raise `timeout` in the [engine] table",
        ] {
            assert!(first.contains(needle), "{needle:?} in {first}");
        }
        // A call that would answer at once is not made: it fails with the first stall.
        let clone = engine.clone();
        let later = clone.bounded("the tag y", async { 1 }).await.unwrap_err();
        assert_eq!(later.to_string(), first);
        assert!(engine.earlier_stall().is_some());
        let other = engine_with_limit(dir.path(), Duration::from_millis(20));
        assert!(
            other.earlier_stall().is_none(),
            "the mark is per connection"
        );
        // A real call through the wrapper, to the silent socket: bounded too.
        let err = other.inspect("x:latest").await.unwrap_err().to_string();
        assert!(
            err.contains("the inspect of x:latest got no answer within 20ms"),
            "{err}"
        );
    }

    #[test]
    fn only_another_clients_operation_is_asked_again() {
        let answer =
            |status_code: u16, message: &str| bollard::errors::Error::DockerResponseServerError {
                status_code,
                message: message.to_owned(),
            };
        assert!(another_operation_running(&answer(
            500,
            "a disk usage operation is already running"
        )));
        assert!(another_operation_running(&answer(
            409,
            "a prune operation is already running"
        )));
        assert!(!another_operation_running(&answer(
            500,
            "no space left on device"
        )));
        assert!(!another_operation_running(&answer(404, "page not found")));
        let busy = answer(500, "a disk usage operation is already running");
        let detail = du_failure(&busy, true, Duration::from_secs(60));
        assert!(
            detail.contains("another client") && detail.contains("raise `timeout`"),
            "{detail}"
        );
        assert_eq!(
            du_failure(&busy, false, Duration::from_secs(60)),
            busy.to_string()
        );
    }

    #[test]
    fn ping_heads_give_the_api_version() {
        let v = parse_ping_head("HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nOstype: linux\r\n\r\nOK")
            .unwrap()
            .unwrap();
        assert_eq!((v.major_version, v.minor_version), (1, 41));
        assert!(
            parse_ping_head("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
                .unwrap()
                .is_none()
        );
        assert!(parse_ping_head("HTTP/1.1 500 Internal Server Error\r\n\r\n").is_err());
        assert!(parse_ping_head("").is_err());
    }

    #[test]
    fn listings_cover_only_tags_they_can_answer() {
        let prefixes = [
            "planner-bench/warm-".to_owned(),
            "localhost:5000/org/".to_owned(),
        ];
        let covers = |r: &str| listing_covers(&prefixes, r);
        assert!(covers("planner-bench/warm-codex:latest"));
        assert!(covers("planner-bench/warm-codex:0123456789ab"));
        assert!(covers("localhost:5000/org/codex:latest"));
        assert!(!covers("planner-bench/other:latest"));
        assert!(!covers("planner-bench/warm-codex"), "no tag");
        assert!(
            !covers("planner-bench/warm-x/y:latest"),
            "the pattern's * stops at /"
        );
        assert!(!covers("sha256:0123"));
        let hub = ["docker.io/org/".to_owned()];
        assert!(
            !listing_covers(&hub, "docker.io/org/codex:latest"),
            "listed as org/codex"
        );
    }

    #[test]
    fn references_split_at_the_tag_not_the_port() {
        assert_eq!(split_reference("a/b:1234abcd"), ("a/b", "1234abcd"));
        assert_eq!(
            split_reference("localhost:5000/a/b:latest"),
            ("localhost:5000/a/b", "latest")
        );
        assert_eq!(
            split_reference("localhost:5000/a/b"),
            ("localhost:5000/a/b", "latest")
        );
    }

    #[test]
    fn rfc3339_times_parse_to_nanoseconds() {
        assert_eq!(parse_rfc3339_nanos("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_nanos("2026-11-23T10:50:51.897481778Z"),
            Some(1_795_431_051_897_481_778)
        );
        assert_eq!(
            parse_rfc3339_nanos("2026-11-23T11:50:51.5+01:00"),
            Some(1_795_431_051_500_000_000)
        );
        assert_eq!(
            parse_rfc3339_nanos("2000-02-29T00:00:00Z"),
            Some(951_782_400 * 1_000_000_000)
        );
        assert!(parse_rfc3339_nanos("yesterday").is_none());
        assert!(parse_rfc3339_nanos("2026-13-01T00:00:00Z").is_none());
    }

    #[test]
    fn rfc3339_garbage_is_none_never_a_panic() {
        // Each of these panicked the hand-rolled parser (byte slicing inside a character).
        for text in [
            "2026-11-23T10:50:51.\u{e9}Z",
            "2026-11-23T10:50:51\u{e9}\u{e9}\u{e9}",
            "2026-11-23T10:50:51.5+0\u{e9}:00",
            "\u{e9}\u{e9}-11-23T10:50:51Z",
        ] {
            assert!(parse_rfc3339_nanos(text).is_none(), "{text:?}");
        }
        // Random strings over a timestamp's alphabet plus multi-byte characters.
        let alphabet: Vec<char> = "0123456789-:.TZz+ \u{e9}\u{1f600}".chars().collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let text: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let _ = parse_rfc3339_nanos(&text);
            let _ = parse_rfc3339_nanos(&format!("2026-11-23T10:50:51{text}"));
        }
    }
}
