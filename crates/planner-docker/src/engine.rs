//! The Docker engine through bollard: connecting (to the engine [`super::endpoint`] names, API
//! version negotiated) and waiting on it within bounds ([`Engine::next_or_idle`] lives in
//! [`crate::build`] with the builds). Images are [`crate::images`]; builds [`crate::build`]
//! and [`crate::buildkit`]; pulls and pushes [`crate::pull`].
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

use bollard::{ClientVersion, Docker};

use crate::endpoint::{BUILD_TIMEOUT, Endpoint, PING_TIMEOUT, Transport};
use crate::error::{DockerError, unreachable};
use crate::remote;
use planner_base::settings::EngineSettings;

/// The config key bounding calls with one answer, and the one bounding streams.
pub(crate) const CALL_KEY: &str = "timeout";
pub(crate) const IDLE_KEY: &str = "idle_timeout";

/// What the engine says about an image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageInfo {
    pub id: String,
    pub labels: HashMap<String, String>,
}

/// A connected engine.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) docker: Docker,
    pub(crate) host: String,
    /// How to reach the engine for the calls made without bollard (the pull).
    pub(crate) endpoint: Arc<Endpoint>,
    /// A stream (build, pull, push) with nothing moving this long fails (`idle_timeout`).
    pub(crate) idle: Duration,
    /// A call with one answer fails when it has none within this (`timeout`).
    pub(crate) limit: Duration,
    /// The error of the first call that ran out of time, shared by every clone: later calls
    /// fail with it at once.
    pub(crate) stalled: Arc<std::sync::OnceLock<DockerError>>,
    /// Answers known in advance, by reference (views made by [`Engine::prefetched`]).
    pub(crate) known: Option<Arc<HashMap<String, Option<ImageInfo>>>>,
    /// Whether the engine offers BuildKit, once asked ([`Engine::offers_buildkit`]).
    pub(crate) buildkit: Arc<tokio::sync::OnceCell<bool>>,
}

impl Engine {
    /// Connects to the engine [`Endpoint::resolve`] names (`--engine`, `DOCKER_HOST`, a Docker
    /// context), negotiates the API version and checks it is at least [`remote::MIN_API`].
    /// Its calls are bounded as `settings` (the `[engine]` table) says.
    pub async fn connect(settings: &EngineSettings) -> Result<Engine, DockerError> {
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
            .map_err(|detail| unreachable(&endpoint, detail))?;
            if let Some(server) = version {
                remote::check_version(&endpoint, &server).map_err(|e| *e)?;
                let version = if server < *bollard::API_DEFAULT_VERSION {
                    server
                } else {
                    *bollard::API_DEFAULT_VERSION
                };
                let docker =
                    Docker::connect_with_unix(&endpoint.host, BUILD_TIMEOUT.as_secs(), &version)
                        .map_err(|e| unreachable(&endpoint, e.to_string()))?;
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
            idle: planner_base::settings::DEFAULT_ENGINE_IDLE_TIMEOUT,
            limit: planner_base::settings::DEFAULT_ENGINE_TIMEOUT,
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
    fn with_limits(self, settings: &EngineSettings) -> Engine {
        Engine {
            idle: settings.idle_timeout,
            limit: settings.timeout,
            ..self
        }
    }

    /// Waits for `call`, one engine call with one answer (`what` names it for errors), at
    /// most the call limit (`[engine] timeout`).
    pub(crate) async fn bounded<F: std::future::Future>(
        &self,
        what: &str,
        call: F,
    ) -> Result<F::Output, DockerError> {
        self.bounded_by(self.limit, CALL_KEY, what, call).await
    }

    /// Waits for `call` at most `limit` (set by the `[engine]` key `key`). Fails at once when
    /// the engine already stalled in this run; a call that runs out of time marks it stalled.
    pub(crate) async fn bounded_by<F: std::future::Future>(
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
    pub(crate) fn earlier_stall(&self) -> Option<DockerError> {
        self.stalled.get().cloned()
    }

    /// The error for `what`, which got no answer within `limit`; the engine is marked stalled.
    pub(crate) fn stall(&self, what: &str, limit: Duration, key: &'static str) -> DockerError {
        self.mark_stalled(DockerError::Stalled {
            host: self.shown_host(),
            what: what.to_owned(),
            limit: humantime::format_duration(limit).to_string(),
            key,
        })
    }

    /// Marks the engine stalled with `error` (the first mark stays); returns `error`.
    pub(crate) fn mark_stalled(&self, error: DockerError) -> DockerError {
        let _ = self.stalled.set(error.clone());
        error
    }

    /// The engine as errors name it: its address without credentials.
    pub(crate) fn shown_host(&self) -> String {
        match url::Url::parse(&self.host) {
            Ok(u) => planner_base::mask::display_url(&u),
            Err(_) => planner_base::mask::mask(&self.host).into_owned(),
        }
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

/// When something last moved between planner and the engine.
pub(crate) struct Activity {
    start: std::time::Instant,
    /// Milliseconds since `start`.
    last: std::sync::atomic::AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity {
            start: std::time::Instant::now(),
            last: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub(crate) fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last
            .fetch_max(now, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(std::sync::atomic::Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An engine at a socket that never answers (in `dir`), calls bounded by `limit`.
    fn engine_with_limit(dir: &std::path::Path, limit: Duration) -> Engine {
        let socket = dir.join("docker.sock");
        if !socket.exists() {
            std::mem::forget(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        }
        let host = format!("unix://{}", socket.display());
        let endpoint = Endpoint::parse(&host, "DOCKER_HOST is a test's", None).unwrap();
        let docker = Docker::connect_with_unix(&host, 1, bollard::API_DEFAULT_VERSION).unwrap();
        let settings = EngineSettings {
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
}
