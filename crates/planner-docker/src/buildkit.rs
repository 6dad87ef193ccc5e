//! BuildKit builds through the engine API, as the docker CLI made them before buildx: a
//! session of planner's own ([`super::session`]) serving the build context and the Dockerfile
//! the way BuildKit's own client does ([`super::filesync`]), then `POST /build?version=2`
//! naming it (`remote=client-session`), built by the engine's built-in Dockerfile frontend;
//! no buildx, no frontend image.
//!
//! - Detection ([`Engine::offers_buildkit`]): API ≥ 1.39 and a `/session` endpoint (the engine
//!   answers 400 to a bare `POST /session`, 404 when it has none); asked once per connection.
//! - Progress: the engine re-sends each vertex as it goes queued → started → done; each
//!   transition is passed on once as a [`BuildOutput::Step`], `RUN` output (the vertices'
//!   logs) as [`BuildOutput::Line`].
//! - Errors name the failing step, its exit code and the last lines of its own output.
//! - Cancel: dropping the build future closes the `/build` request and the session; the
//!   engine then cancels the solve (no build left running).
//! - The session is planner's own ([`super::session`], opened for each build here after the
//!   ignore file BuildKit will read is checked; the `/build` call goes out without
//!   bollard, [`super::build_api`]): what BuildKit pulls itself authenticates through its
//!   auth service, which answers only for the registries this build names and fetches every
//!   token in planner, under the rules of planner's own registry client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bollard::models::{BuildInfo, BuildInfoAux};
use bollard::query_parameters::{BuildImageOptions, BuilderVersion};
use bytes::Bytes;
use http_body_util::Empty;

use crate::build::{
    Answers, BuildOutput, BuildRequest, BuildStepState, Tail, Taken, Upload, build_failed,
    with_help,
};
use crate::engine::{Activity, Engine, IDLE_KEY};
use crate::error::{DockerError, api, checked_id};
use crate::filesync::{FileSyncService, Locals};
use crate::session::Session;
use planner_base::Builder;

/// Most vertices tracked in one build (a hostile engine cannot make planner grow without bound).
const MAX_VERTICES: usize = 4096;
/// Longest pending (unterminated) log line kept per vertex.
const MAX_PENDING: usize = 64 * 1024;

impl Engine {
    /// Whether the engine offers BuildKit builds (API ≥ 1.39 with a `/session` endpoint).
    /// Asked once per connected engine, then answered from memory.
    pub async fn offers_buildkit(&self) -> bool {
        *self
            .buildkit
            .get_or_init(|| async { self.probe_buildkit().await })
            .await
    }

    /// The builder that builds `configured` on this engine: `auto` is BuildKit when the
    /// engine offers it, else classic. The build key is computed from this (never `auto`).
    pub async fn effective_builder(&self, configured: Builder) -> Builder {
        match configured {
            Builder::Auto => configured.effective(self.offers_buildkit().await),
            other => other,
        }
    }

    async fn probe_buildkit(&self) -> bool {
        let v = self.docker.client_version();
        if (v.major_version, v.minor_version) < (1, 39) {
            return false;
        }
        let path = format!("/v{}.{}/session", v.major_version, v.minor_version);
        let Ok(request) = hyper::Request::post(path)
            .header("Host", "docker")
            .body(Empty::<Bytes>::new())
        else {
            return false;
        };
        // No answer in time marks the engine stalled: the next call fails with that error.
        match self
            .bounded("the BuildKit probe (POST /session)", self.send(request))
            .await
        {
            Ok(Ok(response)) => response.status() != hyper::StatusCode::NOT_FOUND,
            _ => false,
        }
    }

    /// Builds `req` with BuildKit; returns the image ID. The build context goes over the
    /// session, as BuildKit's own client sends it ([`super::filesync`]).
    pub(super) async fn build_buildkit(
        &self,
        req: &BuildRequest,
        on_output: impl FnMut(BuildOutput<'_>) + Send,
    ) -> Result<String, DockerError> {
        let started = self.start_buildkit_session(req).await?;
        let options = BuildImageOptions {
            dockerfile: started.dockerfile.clone(),
            t: Some(req.tag.clone()),
            platform: req.platform.clone(),
            target: req.target.clone().unwrap_or_default(),
            labels: Some(req.labels.clone()),
            buildargs: Some(req.build_args.clone().into_iter().collect()),
            networkmode: req.network.mode().map(str::to_owned),
            version: BuilderVersion::BuilderBuildKit,
            session: Some(started.id.clone()),
            remote: Some("client-session".to_owned()),
            ..Default::default()
        };
        let stream = self.build_stream(&options, futures_util::stream::empty());
        let what = format!("the BuildKit build of {}", req.tag);
        let mut answers = BuildKit {
            progress: Progress::default(),
            on_output,
        };
        let activity = started.activity.clone();
        self.read_build(req, stream, &started, &activity, &what, &mut answers)
            .await
    }
}

/// BuildKit's answers: its progress (vertices and their logs) and the image ID; errors are
/// the failing vertex's.
struct BuildKit<F> {
    progress: Progress,
    on_output: F,
}

impl<F: FnMut(BuildOutput<'_>) + Send> Answers for BuildKit<F> {
    const CLASSIC: bool = false;

    fn take(&mut self, info: BuildInfo) -> Result<Taken, Box<DockerError>> {
        match info.aux {
            Some(BuildInfoAux::BuildKit(status)) => {
                self.progress.apply(status, &mut self.on_output);
                Ok(Taken::Nothing)
            }
            Some(BuildInfoAux::Default(aux)) => match aux.id {
                Some(id) => Ok(Taken::Image(checked_id(id, "build")?)),
                None => Ok(Taken::Nothing),
            },
            None => Ok(Taken::Nothing),
        }
    }

    fn stream_error(&self, error: &bollard::errors::Error) -> String {
        engine_message(error)
    }

    fn failed(&mut self, req: &BuildRequest, message: &str) -> DockerError {
        self.progress.failure(req, message)
    }

    fn tail(&self) -> &Tail {
        &self.progress.all
    }
}

/// BuildKit's upload: the file sync over planner's session, which notes its own failure.
impl Upload for &Started {
    async fn failure(self) -> Option<String> {
        Started::failure(self)
    }

    async fn finished(self) -> Result<(), String> {
        Ok(())
    }
}

impl Engine {
    /// Checks the ignore file BuildKit will read, then opens the build's session serving its
    /// context, its Dockerfile and the registry credentials the build may use.
    pub(super) async fn start_buildkit_session(
        &self,
        req: &BuildRequest,
    ) -> Result<Started, DockerError> {
        let failed =
            |what: &str, e: String| build_failed(req, format!("{what}: {e}"), &Tail::default());
        let (root, rel) = (req.context_dir.clone(), req.dockerfile.clone());
        tokio::task::spawn_blocking(move || crate::context::check_buildkit_ignore(&root, &rel))
            .await
            .map_err(|e| failed("build context", e.to_string()))?
            .map_err(|e| failed("build context", e.to_string()))?;
        let (locals, dockerfile) =
            Locals::new(&req.context_dir, &req.dockerfile, req.host.as_ref())
                .await
                .map_err(|e| failed("build context", e.to_string()))?;
        let activity = Arc::new(Activity::new());
        let failure = Arc::new(Mutex::new(None));
        let touch = {
            let activity = activity.clone();
            Arc::new(move || activity.touch())
        };
        let files = FileSyncService::new(locals, failure.clone(), touch);
        let id = session_id();
        let session = self
            .start_session(&id, req.credentials.clone(), files, &shared_key(req))
            .await
            .map_err(|e| failed("BuildKit session", e))?;
        Ok(Started {
            _session: session,
            id,
            dockerfile,
            activity,
            failure,
        })
    }
}

/// A BuildKit build's open session (closed when dropped): its id, the Dockerfile's name in
/// its directory, what moves (the upload counts), and planner's own failure to send the
/// context, if any.
pub(super) struct Started {
    _session: Session,
    pub(super) id: String,
    pub(super) dockerfile: String,
    pub(super) activity: Arc<Activity>,
    failure: Arc<Mutex<Option<String>>>,
}

impl Started {
    /// planner's own failure to send the context, once.
    pub(super) fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|mut f| f.take())
    }
}

/// The key BuildKit keeps a transferred context under: the checkout and its commit, so that
/// a rebuild of the same files sends only what changed, and a new commit never reuses files
/// an older one had with the same size and time.
fn shared_key(req: &BuildRequest) -> String {
    let mut h = blake3::Hasher::new();
    h.update(req.context_dir.as_os_str().as_encoded_bytes());
    h.update(b"\0");
    h.update(req.commit.as_bytes());
    h.finalize().to_hex()[..32].to_owned()
}

/// A fresh session id (BuildKit requires one per build).
fn session_id() -> String {
    let mut id = String::from("planner-");
    for _ in 0..25 {
        id.push(fastrand::alphanumeric().to_ascii_lowercase());
    }
    id
}

/// Entries of the engine's BuildKit cache and the bytes they hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildCacheUsage {
    pub entries: usize,
    pub bytes: u64,
}

impl Engine {
    /// The build cache entries a prune would remove: not in use and, with `older_than`,
    /// last used longer ago than that (from the engine's disk usage report).
    pub async fn build_cache_usage(
        &self,
        older_than: Option<std::time::Duration>,
    ) -> Result<BuildCacheUsage, DockerError> {
        let usage = self.disk_usage("of the build cache").await?;
        let now = jiff::Timestamp::now().as_second();
        let limit = older_than.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let prunable = usage
            .build_cache
            .unwrap_or_default()
            .into_iter()
            .filter(|c| {
                let last = c.last_used_at.or(c.created_at).map(|t| t.timestamp());
                !c.in_use.unwrap_or(false)
                    && limit.is_none_or(|l| last.is_some_and(|t| now.saturating_sub(t) > l))
            });
        Ok(
            prunable.fold(BuildCacheUsage::default(), |acc, c| BuildCacheUsage {
                entries: acc.entries + 1,
                bytes: acc.bytes + c.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
            }),
        )
    }

    /// Prunes the engine's BuildKit cache: every entry not in use (cache mounts too) or,
    /// with `older_than`, those last used longer ago. Returns what the engine freed.
    pub async fn prune_build_cache(
        &self,
        older_than: Option<std::time::Duration>,
    ) -> Result<BuildCacheUsage, DockerError> {
        let filters = older_than
            .map(|d| HashMap::from([("until".to_owned(), vec![format!("{}s", d.as_secs())])]));
        let options = bollard::query_parameters::PruneBuildOptions {
            all: Some(true),
            filters,
            ..Default::default()
        };
        let call = self.docker.prune_build(Some(options));
        // A prune of a large cache takes a while, and answers only at its end: the idle limit
        // bounds it, as it bounds a build.
        let what = "the build cache prune";
        match self.bounded_by(self.idle, IDLE_KEY, what, call).await? {
            Err(e) => Err(api("prune", "the build cache", &e.to_string())),
            Ok(answer) => Ok(BuildCacheUsage {
                entries: answer.caches_deleted.map_or(0, |c| c.len()),
                bytes: answer
                    .space_reclaimed
                    .and_then(|b| u64::try_from(b).ok())
                    .unwrap_or(0),
            }),
        }
    }
}

/// The engine's error text without bollard's wrapping.
fn engine_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

/// What one vertex has shown so far.
#[derive(Default)]
struct Vertex {
    name: String,
    started: bool,
    finished: bool,
    error: Option<String>,
    output: Tail,
    pending: Vec<u8>,
}

/// The build's vertices by digest, in the order first seen, and every output line.
#[derive(Default)]
struct Progress {
    order: Vec<String>,
    vertices: HashMap<String, Vertex>,
    all: Tail,
}

impl Progress {
    /// Passes on each new transition and log line of `status`.
    fn apply(
        &mut self,
        status: bollard::moby::buildkit::v1::StatusResponse,
        on_output: &mut impl FnMut(BuildOutput<'_>),
    ) {
        for v in status.vertexes {
            let Some(vertex) = self.vertex(&v.digest) else {
                continue;
            };
            if vertex.name.is_empty() {
                vertex.name = v.name.chars().take(512).collect();
            }
            let state = if !v.error.is_empty() {
                vertex.error = Some(v.error.chars().take(4096).collect());
                Some(BuildStepState::Failed)
            } else if v.cached {
                Some(BuildStepState::Cached)
            } else if v.completed.is_some() {
                Some(BuildStepState::Done)
            } else if v.started.is_some() {
                Some(BuildStepState::Started)
            } else {
                None
            };
            let Some(state) = state else { continue };
            let show = match state {
                BuildStepState::Started => !std::mem::replace(&mut vertex.started, true),
                _ => !std::mem::replace(&mut vertex.finished, true),
            };
            if show {
                on_output(BuildOutput::Step {
                    name: &vertex.name,
                    state,
                });
            }
        }
        for log in status.logs {
            let Some(vertex) = self.vertex(&log.vertex) else {
                continue;
            };
            vertex.pending.extend_from_slice(&log.msg);
            let mut lines = Vec::new();
            while let Some(nl) = vertex
                .pending
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
            {
                let line: Vec<u8> = vertex.pending.drain(..=nl).collect();
                lines.push(String::from_utf8_lossy(&line).trim_end().to_owned());
            }
            if vertex.pending.len() > MAX_PENDING {
                let line: Vec<u8> = std::mem::take(&mut vertex.pending);
                lines.push(String::from_utf8_lossy(&line).into_owned());
            }
            lines.retain(|l| !l.trim().is_empty());
            for line in &lines {
                vertex.output.push(line);
            }
            for line in &lines {
                self.all.push(line);
                on_output(BuildOutput::Line(line));
            }
        }
    }

    /// The vertex of `digest`, added when new (`None` past [`MAX_VERTICES`]).
    fn vertex(&mut self, digest: &str) -> Option<&mut Vertex> {
        if !self.vertices.contains_key(digest) {
            if self.vertices.len() >= MAX_VERTICES {
                return None;
            }
            self.order.push(digest.to_owned());
        }
        Some(self.vertices.entry(digest.to_owned()).or_default())
    }

    /// The build's failure: the failing step, its exit code and its last output lines.
    fn failure(&mut self, req: &BuildRequest, message: &str) -> DockerError {
        for vertex in self.vertices.values_mut() {
            if !vertex.pending.is_empty() {
                let line = String::from_utf8_lossy(&std::mem::take(&mut vertex.pending))
                    .trim_end()
                    .to_owned();
                vertex.output.push(&line);
            }
        }
        let failed = self
            .order
            .iter()
            .filter_map(|d| self.vertices.get(d))
            .find(|v| v.error.is_some());
        let Some(vertex) = failed else {
            return build_failed(req, message.to_owned(), &self.all);
        };
        let code = exit_code(message)
            .or_else(|| vertex.error.as_deref().and_then(exit_code))
            .map_or_else(String::new, |c| format!(" with exit code {c}"));
        let detail = format!("step {} failed{code}: {}", vertex.name, message.trim());
        let help = network_help(req, message);
        with_help(build_failed(req, detail, &vertex.output), &help)
    }
}

/// The help for a failure: a base image's registry refused the pull, or a RUN the engine
/// could not give a network (its default is a bridge, and `dockerd --bridge none` has none).
fn network_help(req: &BuildRequest, message: &str) -> String {
    if message.contains("401 Unauthorized") || message.contains("403 Forbidden") {
        return "\n  help: log in to the base image's registry (`docker login HOST`, or credentials in ~/.docker/config.json / DOCKER_CONFIG) with an account that may pull it".to_owned();
    }
    if !message.contains("network bridge not found") {
        return String::new();
    }
    format!(
        "\n  help: this engine has no bridge network, which BuildKit's RUN uses by default; set build_network = \"none\" (RUN steps without network) or \"host\" for runtime {:?} in runtimes.toml",
        req.runtime
    )
}

/// The exit code an engine message names (`... exit code: 3`).
fn exit_code(message: &str) -> Option<i64> {
    let at = message.rfind("exit code: ")? + "exit code: ".len();
    let digits: String = message[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::moby::buildkit::v1::{StatusResponse, Vertex as V, VertexLog};

    fn vertex(digest: &str, name: &str, started: bool, done: bool, cached: bool) -> V {
        V {
            digest: digest.into(),
            name: name.into(),
            cached,
            started: started.then(Default::default),
            completed: done.then(Default::default),
            ..Default::default()
        }
    }

    #[test]
    fn each_transition_is_passed_on_once_and_logs_are_lines() {
        let mut p = Progress::default();
        let mut seen = Vec::new();
        let mut on = |o: BuildOutput<'_>| {
            seen.push(match o {
                BuildOutput::Line(l) => format!("| {l}"),
                BuildOutput::Step { name, state } => format!("{} {name}", state.name()),
            })
        };
        let run = "[2/3] RUN make";
        p.apply(
            StatusResponse {
                vertexes: vec![vertex("a", "[1/3] FROM base", true, true, true)],
                ..Default::default()
            },
            &mut on,
        );
        for _ in 0..2 {
            p.apply(
                StatusResponse {
                    vertexes: vec![vertex("b", run, true, false, false)],
                    logs: vec![VertexLog {
                        vertex: "b".into(),
                        msg: b"one\ntw".to_vec(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                &mut on,
            );
        }
        p.apply(
            StatusResponse {
                vertexes: vec![vertex("b", run, true, true, false)],
                ..Default::default()
            },
            &mut on,
        );
        assert_eq!(
            seen,
            [
                "cached [1/3] FROM base",
                "started [2/3] RUN make",
                "| one",
                "| twone",
                "done [2/3] RUN make"
            ]
        );
    }

    #[test]
    fn exit_codes_are_read() {
        assert_eq!(
            exit_code("executor failed running [/bin/sh -c exit 3]: exit code: 3"),
            Some(3)
        );
        assert_eq!(exit_code("no such thing"), None);
    }
}
