//! BuildKit builds through the engine API, as the docker CLI made them before buildx: a
//! session ([`super::session`]) serving the build context and the Dockerfile the way
//! BuildKit's own client does ([`super::filesync`]), then `POST /build?version=2` naming it
//! (`remote=client-session`), built by the engine's built-in Dockerfile frontend; no buildx,
//! no frontend image.
//!
//! - Detection ([`Engine::offers_buildkit`]): API ≥ 1.39 and a `/session` endpoint (the engine
//!   answers 400 to a bare `POST /session`, 404 when it has none); asked once per connection.
//! - Progress: the engine re-sends each vertex as it goes queued → started → done; each
//!   transition is passed on once as a [`BuildOutput::Step`], `RUN` output (the vertices'
//!   logs) as [`BuildOutput::Line`].
//! - Errors name the failing step, its exit code and the last lines of its own output.
//! - Cancel: dropping the build future closes the `/build` request and the session; the
//!   engine then cancels the solve (no build left running).
//! - Base-image pulls authenticate through the session's auth service with the credentials
//!   `docker login` left ([`crate::registry::DockerConfig`]), for the registries the
//!   Dockerfile's `FROM` lines name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bollard::auth::DockerCredentials;
use bollard::models::{BuildInfo, BuildInfoAux};
use bytes::Bytes;
use http_body_util::{BodyStream, Empty};

use super::engine::{
    Activity, BuildOutput, BuildRequest, DockerError, Engine, IDLE_KEY, Tail, api, build_failed,
    checked_id, with_help,
};
use super::filesync::{FileSyncService, Locals};
use super::session::{Services, Session};
use crate::config::Builder;
use crate::exec::event::BuildStepState;

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

    /// Builds `req` with BuildKit; returns the image ID. The build context goes over a
    /// session, as BuildKit's own client sends it ([`super::filesync`]).
    pub(super) async fn build_buildkit(
        &self,
        req: &BuildRequest,
        mut on_output: impl FnMut(BuildOutput<'_>) + Send,
    ) -> Result<String, DockerError> {
        let started = self.start_session(req).await?;
        let request = build_request(self, req, &started.dockerfile, &started.session.id)
            .map_err(|e| api("build", &req.tag, &e))?;
        let what = format!("the BuildKit build of {}", req.tag);
        let mut progress = Progress::default();
        let mut image_id = None;
        let outcome = self
            .build_stream(request, &started.activity, &what, |info| {
                match info.aux {
                    Some(BuildInfoAux::BuildKit(status)) => progress.apply(status, &mut on_output),
                    Some(BuildInfoAux::Default(aux)) => {
                        if let Some(id) = aux.id {
                            image_id = Some(checked_id(id, "build")?);
                        }
                    }
                    None => {}
                }
                Ok(())
            })
            .await;
        drop(started.session);
        let own = started.failure.lock().ok().and_then(|mut f| f.take());
        match (outcome, own) {
            (Ok(()), _) => {}
            // planner's own failure to send the context is what broke the build.
            (Err(_), Some(cause)) => {
                let detail = format!("build context: {cause}");
                return Err(build_failed(req, detail, &progress.all));
            }
            (Err(Failure::Engine(e)), None) => return Err(e),
            (Err(Failure::Build(message)), None) => return Err(progress.failure(req, &message)),
        }
        match image_id {
            Some(id) => Ok(id),
            None => self.inspect(&req.tag).await?.map(|i| i.id).ok_or_else(|| {
                build_failed(req, "the engine reported no image".into(), &progress.all)
            }),
        }
    }

    /// Checks the ignore file BuildKit will read, then opens the build's session serving its
    /// context, its Dockerfile and the registry credentials.
    async fn start_session(&self, req: &BuildRequest) -> Result<Started, DockerError> {
        let context_failed =
            |e: String| build_failed(req, format!("build context: {e}"), &Tail::default());
        let (root, rel) = (req.context_dir.clone(), req.dockerfile.clone());
        tokio::task::spawn_blocking(move || super::context::check_buildkit_ignore(&root, &rel))
            .await
            .map_err(|e| context_failed(e.to_string()))?
            .map_err(|e| context_failed(e.to_string()))?;
        let (locals, dockerfile) = Locals::new(&req.context_dir, &req.dockerfile)
            .await
            .map_err(|e| context_failed(e.to_string()))?;
        let activity = Arc::new(Activity::new());
        let failure = Arc::new(Mutex::new(None));
        let touch = {
            let activity = activity.clone();
            Arc::new(move || activity.touch())
        };
        let services = Services {
            credentials: base_image_credentials(req).await,
            filesync: FileSyncService::new(locals, failure.clone(), touch),
            shared_key: shared_key(req),
        };
        let session = self.open_session(services).await?;
        Ok(Started {
            session,
            dockerfile,
            activity,
            failure,
        })
    }

    /// Sends the build and reads its answer to the end (bounded by the idle limit), passing
    /// each message on; the first error the build reports ends it.
    async fn build_stream(
        &self,
        request: hyper::Request<Empty<Bytes>>,
        activity: &Activity,
        what: &str,
        mut on_info: impl FnMut(BuildInfo) -> Result<(), Box<DockerError>>,
    ) -> Result<(), Failure> {
        // The answer's head may wait while the context goes over the session: bounded by
        // the idle limit like the rest.
        let mut head = Box::pin(futures_util::stream::once(self.send(request)));
        let response = match self.next_or_idle(&mut head, activity, what).await {
            Err(e) => return Err(Failure::Engine(e)),
            Ok(None) => return Err(Failure::Build("the engine did not answer the build".into())),
            Ok(Some(answer)) => answer.map_err(Failure::Build)?,
        };
        let status = response.status();
        let mut body = BodyStream::new(response.into_body());
        let mut lines = Lines::default();
        while let Some(frame) = self
            .next_or_idle(&mut body, activity, what)
            .await
            .map_err(Failure::Engine)?
        {
            let frame =
                frame.map_err(|e| Failure::Build(format!("reading the engine's answer: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            for line in lines.push(&data).map_err(Failure::Build)? {
                let info = parse_info(&line, status).map_err(Failure::Build)?;
                on_info(info).map_err(|e| Failure::Engine(*e))?;
            }
        }
        if let Some(line) = lines.rest() {
            let info = parse_info(&line, status).map_err(Failure::Build)?;
            on_info(info).map_err(|e| Failure::Engine(*e))?;
        }
        if !status.is_success() {
            return Err(Failure::Build(format!("the engine answered {status}")));
        }
        Ok(())
    }
}

impl Engine {
    /// Opens a BuildKit session serving `services` on a fresh connection to the engine.
    async fn open_session(&self, services: Services) -> Result<Session, DockerError> {
        let v = self.docker.client_version();
        let version = format!("{}.{}", v.major_version, v.minor_version);
        let opened = async {
            let io = super::remote::open(&self.endpoint).await?;
            super::session::open(io, &version, services).await
        };
        // No answer in time marks the engine stalled, as for any call with one answer.
        self.bounded("the BuildKit session (POST /session)", opened)
            .await?
            .map_err(|e| api("session", "for a BuildKit build", &e))
    }
}

/// A BuildKit build's open session: the Dockerfile's name in its directory, what moves (the
/// upload counts), and planner's own failure to send the context, if any.
struct Started {
    session: Session,
    dockerfile: String,
    activity: Arc<Activity>,
    failure: Arc<Mutex<Option<String>>>,
}

/// How a BuildKit build ended without an image.
enum Failure {
    /// The build's own error (a step failed, the engine refused it).
    Build(String),
    /// The engine went quiet, or answered what planner cannot take.
    Engine(DockerError),
}

/// Longest line of the build's answer (a status message with its logs, base64).
const MAX_LINE: usize = 8 << 20;

/// Splits the answer into lines, bounded by [`MAX_LINE`].
#[derive(Default)]
struct Lines(Vec<u8>);

impl Lines {
    fn push(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        self.0.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(nl) = self.0.iter().position(|&b| b == b'\n') {
            out.push(self.0.drain(..=nl).collect());
        }
        if self.0.len() > MAX_LINE {
            return Err("the engine sent an over-long build message".into());
        }
        Ok(out)
    }

    fn rest(&mut self) -> Option<Vec<u8>> {
        let rest = std::mem::take(&mut self.0);
        (!rest.iter().all(u8::is_ascii_whitespace)).then_some(rest)
    }
}

/// One message of the build's answer; `Err` with the build's error (or the engine's refusal).
fn parse_info(line: &[u8], status: hyper::StatusCode) -> Result<BuildInfo, String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(BuildInfo::default());
    }
    #[derive(serde::Deserialize)]
    struct Refusal {
        message: Option<String>,
    }
    if !status.is_success() {
        let refusal = serde_json::from_slice::<Refusal>(line)
            .ok()
            .and_then(|r| r.message);
        let text =
            refusal.unwrap_or_else(|| String::from_utf8_lossy(line).chars().take(500).collect());
        return Err(format!(
            "the engine refused the build ({status}): {}",
            text.trim()
        ));
    }
    let info: BuildInfo = serde_json::from_slice(line).map_err(|e| {
        let shown: String = String::from_utf8_lossy(line).chars().take(200).collect();
        format!("unexpected answer from the engine ({e}): {shown:?}")
    })?;
    match info
        .error_detail
        .as_ref()
        .and_then(|d| d.message.clone())
        .or(info.error.clone())
    {
        Some(error) => Err(error),
        None => Ok(info),
    }
}

/// The `/build` request of a BuildKit build over session `session`: the context and the
/// Dockerfile come through the session (`remote=client-session`), `dockerfile` is its name
/// in its own directory.
fn build_request(
    engine: &Engine,
    req: &BuildRequest,
    dockerfile: &str,
    session: &str,
) -> Result<hyper::Request<Empty<Bytes>>, String> {
    let labels = serde_json::to_string(&req.labels).map_err(|e| e.to_string())?;
    let build_args = serde_json::to_string(&req.build_args).map_err(|e| e.to_string())?;
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("version", "2")
        .append_pair("session", session)
        .append_pair("remote", "client-session")
        .append_pair("dockerfile", dockerfile)
        .append_pair("t", &req.tag)
        .append_pair("platform", &req.platform)
        .append_pair("labels", &labels)
        .append_pair("buildargs", &build_args);
    if let Some(target) = &req.target {
        query.append_pair("target", target);
    }
    if let Some(mode) = req.network.mode() {
        query.append_pair("networkmode", mode);
    }
    let v = engine.docker.client_version();
    let path = format!(
        "/v{}.{}/build?{}",
        v.major_version,
        v.minor_version,
        query.finish()
    );
    hyper::Request::post(path)
        .header("Host", "docker")
        .header("Content-Type", "application/x-tar")
        .body(Empty::new())
        .map_err(|e| e.to_string())
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
            Err(e) => Err(super::engine::api(
                "prune",
                "the build cache",
                &e.to_string(),
            )),
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

/// The registries the Dockerfile's `FROM` lines name (`FROM [--platform=…] image [AS name]`),
/// by their `config.json` key; stage names and `scratch` are not registries.
fn from_registries(dockerfile: &str) -> Vec<crate::registry::ImageRef> {
    let mut stages: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in dockerfile.lines().take(10_000) {
        let mut words = line.split_whitespace();
        if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("FROM")) {
            continue;
        }
        let mut words = words.skip_while(|w| w.starts_with("--"));
        let Some(image) = words.next() else { continue };
        if words.next().is_some_and(|w| w.eq_ignore_ascii_case("AS"))
            && let Some(name) = words.next()
        {
            stages.push(name.to_ascii_lowercase());
        }
        let image = image.split('@').next().unwrap_or(image);
        if image.contains('$') || image == "scratch" || stages.iter().any(|s| s == image) {
            continue;
        }
        if let Ok(reference) = crate::registry::ImageRef::parse(image)
            && !out.contains(&reference)
        {
            out.push(reference);
        }
    }
    out
}

/// Credentials for the base images' registries, keyed as the session's auth service asks
/// (the `config.json` key). A registry without credentials (or whose lookup fails) is left
/// out: its pulls go anonymous, and the engine's error names the registry.
async fn base_image_credentials(req: &BuildRequest) -> HashMap<String, DockerCredentials> {
    let path = req.context_dir.join(&req.dockerfile);
    let Ok(text) = read_capped(&path).await else {
        return HashMap::new();
    };
    let config = crate::registry::DockerConfig::from_env();
    let mut out = HashMap::new();
    for image in from_registries(&text) {
        let key = image.auth_key();
        if out.contains_key(&key) {
            continue;
        }
        if let Ok(Some(creds)) = config.lookup(&key).await {
            let docker = match creds.identity_token {
                true => DockerCredentials {
                    identitytoken: Some(creds.secret.clone()),
                    serveraddress: Some(key.clone()),
                    ..Default::default()
                },
                false => DockerCredentials {
                    username: Some(creds.username.clone()),
                    password: Some(creds.secret.clone()),
                    serveraddress: Some(key.clone()),
                    ..Default::default()
                },
            };
            if key == "https://index.docker.io/v1/" {
                // The session's auth service is asked for Docker Hub by its registry host.
                out.insert("registry-1.docker.io".to_owned(), docker.clone());
            }
            out.insert(key, docker);
        }
    }
    out
}

/// The Dockerfile's text, at most 1 MiB of it (it was verified before the build).
async fn read_capped(path: &std::path::Path) -> std::io::Result<String> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path).await?;
    let mut bytes = Vec::new();
    file.take(1024 * 1024).read_to_end(&mut bytes).await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
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
    fn exit_codes_and_base_registries_are_read() {
        assert_eq!(
            exit_code("executor failed running [/bin/sh -c exit 3]: exit code: 3"),
            Some(3)
        );
        assert_eq!(exit_code("no such thing"), None);
        let found = from_registries(
            "# syntax\nFROM --platform=$BUILDPLATFORM localhost:5000/a/b:1 AS build\n\
             from build\nFROM scratch\nFROM ${BASE}\nFROM busybox@sha256:00\nFROM localhost:5000/a/b:1\n",
        );
        let keys: Vec<String> = found.iter().map(|r| r.auth_key()).collect();
        assert_eq!(keys, ["localhost:5000", "https://index.docker.io/v1/"]);
    }
}
