//! What fails when planner talks to the engine ([`DockerError`]), and the helpers that
//! build those errors; every variant names the engine, the call or the image, and the fix.

use crate::endpoint::{Endpoint, EndpointError};

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
    Endpoint(Box<EndpointError>),
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

/// An image ID the engine answered, checked before planner uses it (`sha256:` + 64 hex).
pub(crate) fn checked_id(id: String, what: &str) -> Result<String, Box<DockerError>> {
    if planner_base::ids::is_image_id(&id) {
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

pub(crate) fn api(what: &str, reference: &str, detail: &str) -> DockerError {
    DockerError::Api {
        what: format!("{what} {reference}"),
        detail: detail.to_owned(),
    }
}

/// The engine at `endpoint` does not answer.
pub(crate) fn unreachable(endpoint: &Endpoint, detail: String) -> DockerError {
    DockerError::Unreachable {
        host: shown(endpoint),
        detail,
        env: endpoint.source.clone(),
    }
}

pub(crate) fn endpoint_error(e: EndpointError) -> DockerError {
    DockerError::Endpoint(Box::new(e))
}

/// The address as errors show it: userinfo masked.
pub(crate) fn shown(endpoint: &Endpoint) -> String {
    planner_base::mask::mask(&endpoint.host).into_owned()
}

/// An error and its sources, `: `-joined, each once.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
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
}
