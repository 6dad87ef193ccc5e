//! The Docker engine through bollard: connection (honouring `DOCKER_HOST`, API version
//! negotiated), image inspection, tagging, and builds from a streamed context.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{BuildImageOptions, TagImageOptions};
use futures_util::StreamExt;

/// Labels planner puts on every image it builds, so the image describes itself.
pub const LABEL_KEY: &str = "dev.planner.key";
pub const LABEL_KEY_FORMAT: &str = "dev.planner.key-format";
pub const LABEL_REPO: &str = "dev.planner.repo";
pub const LABEL_DOCKERFILE: &str = "dev.planner.dockerfile";
pub const LABEL_DOCKERFILE_BLAKE3: &str = "dev.planner.dockerfile-blake3";
pub const LABEL_PLATFORM: &str = "dev.planner.platform";
pub const LABEL_PARAMS: &str = "dev.planner.params";
pub const LABEL_REVISION: &str = "org.opencontainers.image.revision";
pub const LABEL_SOURCE: &str = "org.opencontainers.image.source";

/// How long to wait for the engine to answer a ping before calling it unreachable.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Per-call timeout for quick calls (inspect, tag).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Builds may take long; cancellation (Ctrl-C, --fail-fast) ends them sooner.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, thiserror::Error)]
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
    /// For errors: where the Dockerfile came from.
    pub repo: String,
    pub commit: String,
}

/// A connected engine.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    host: String,
}

/// The engine address planner uses, as the user would name it.
pub fn docker_host() -> (String, String) {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => (h.clone(), format!("DOCKER_HOST is {h}")),
        _ => (
            "unix:///var/run/docker.sock".into(),
            "DOCKER_HOST is unset".into(),
        ),
    }
}

impl Engine {
    /// Connects, pings within [`PING_TIMEOUT`] and negotiates the API version.
    pub async fn connect() -> Result<Engine, DockerError> {
        let (host, env) = docker_host();
        let unreachable = |detail: String| DockerError::Unreachable {
            host: host.clone(),
            detail,
            env: env.clone(),
        };
        let docker = Docker::connect_with_defaults().map_err(|e| unreachable(e.to_string()))?;
        let docker = docker.with_timeout(BUILD_TIMEOUT);
        match tokio::time::timeout(PING_TIMEOUT, docker.ping()).await {
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer within {}s",
                    PING_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Ok(Ok(_)) => {}
        }
        let docker = tokio::time::timeout(PING_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(|_| unreachable("version negotiation timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Engine { docker, host })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Inspects an image reference or ID; `None` when the engine has no such image.
    pub async fn inspect(&self, reference: &str) -> Result<Option<ImageInfo>, DockerError> {
        let call = self.docker.inspect_image(reference);
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Err(_) => Err(api("inspect", reference, "timed out")),
            Ok(Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            })) => Ok(None),
            Ok(Err(e)) => Err(api("inspect", reference, &e.to_string())),
            Ok(Ok(image)) => Ok(Some(ImageInfo {
                id: image.id.unwrap_or_default(),
                labels: image.config.and_then(|c| c.labels).unwrap_or_default(),
            })),
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
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Err(_) => Err(api("tag", reference, "timed out")),
            Ok(Err(e)) => Err(api("tag", reference, &e.to_string())),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Builds with the classic builder from a streamed context; returns the image ID.
    /// `on_line` receives every output line of the build.
    pub async fn build(
        &self,
        req: &BuildRequest,
        mut on_line: impl FnMut(&str) + Send,
    ) -> Result<String, DockerError> {
        let (body, producer) = super::context::stream(&req.context_dir, &req.dockerfile);
        let options = BuildImageOptions {
            dockerfile: req.dockerfile.clone(),
            t: Some(req.tag.clone()),
            rm: true,
            forcerm: true,
            platform: req.platform.clone(),
            target: req.target.clone().unwrap_or_default(),
            labels: Some(req.labels.clone()),
            ..Default::default()
        };
        let mut stream =
            self.docker
                .build_image(options, None, Some(bollard::body_try_stream(body)));
        let mut tail = Tail::default();
        let mut image_id = None;
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| build_failed(req, e.to_string(), &tail))?;
            if let Some(text) = &info.stream {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    tail.push(line);
                    on_line(line);
                }
            }
            if let Some(err) = info.error_detail.and_then(|d| d.message).or(info.error) {
                return Err(build_failed(req, err, &tail));
            }
            if let Some(id) = info.aux.and_then(|a| a.id) {
                image_id = Some(id);
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

/// The last lines of build output, for errors.
#[derive(Default)]
struct Tail(std::collections::VecDeque<String>);

impl Tail {
    const LINES: usize = 12;
    fn push(&mut self, line: &str) {
        if self.0.len() == Self::LINES {
            self.0.pop_front();
        }
        self.0.push_back(line.to_owned());
    }
}

fn build_failed(req: &BuildRequest, detail: String, tail: &Tail) -> DockerError {
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

fn api(what: &str, reference: &str, detail: &str) -> DockerError {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
