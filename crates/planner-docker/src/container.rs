//! Running an image once ([`Engine::run_once`]): a container made from an argv (the
//! image's ENTRYPOINT and CMD replaced, no shell), with no host mounts, no published ports,
//! network mode `none` unless the caller asks for the host's, and a label the caller
//! chooses; started, waited for at most a time limit, its last lines of output read
//! (bounded), then killed and removed. Nothing outlives the call: a run cancelled (its
//! future dropped: Ctrl-C, SIGTERM, `--fail-fast`) kills and removes its container before
//! the drop returns ([`Removal`]), and a container a killed process left behind carries the
//! label, by which the next run under the same label removes it first
//! ([`Engine::remove_labelled`]).
//!
//! Every engine call is bounded by `[engine] timeout` ([`Engine::bounded`]); the wait for
//! the container to exit by the caller's limit.

use std::collections::HashMap;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StartContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;

use crate::engine::Engine;
use crate::error::{DockerError, api};

/// Most lines of output kept for an error.
pub const TAIL_LINES: usize = 20;
/// Most bytes of output read back from the engine.
const TAIL_BYTES: usize = 64 * 1024;
/// Longest line kept, in characters (the rest is cut with `…`).
const LINE_CHARS: usize = 300;
/// The longest a dropped run waits for its container's removal.
const DROP_REMOVAL_LIMIT: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Debug, Clone)]
pub struct RunSpec<'a> {
    /// The image, by ID.
    pub image: &'a str,
    /// The command: the container's entrypoint, no shell (`argv[0]` is looked up in the
    /// image's `PATH`).
    pub argv: &'a [String],
    /// The network mode: `"none"` or `"host"`.
    pub network: &'a str,
    /// The label the container carries (name, value): a container left with it is a
    /// leftover the caller may remove ([`Engine::remove_labelled`]).
    pub label: (&'a str, &'a str),
    /// How long the command may run.
    pub timeout: Duration,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    /// The exit code; `None` when the command was still running at the time limit (the
    /// container was then killed).
    pub exit_code: Option<i64>,
    /// The last lines of its output (stdout and stderr), at most [`TAIL_LINES`], each
    /// bounded, as the engine sent them (not yet made inert).
    pub tail: Vec<String>,
}

impl Engine {
    /// Runs `spec` once and removes its container (see the module doc). An error when the
    /// engine refuses the container (no such image, a bad argv) or stops answering.
    pub async fn run_once(&self, spec: &RunSpec<'_>) -> Result<Ran, DockerError> {
        let created = self.create(spec).await?;
        let mut removal = Removal {
            engine: self.clone(),
            id: Some(created.clone()),
        };
        let call = self
            .docker
            .start_container(&created, None::<StartContainerOptions>);
        self.bounded(&format!("the start of a container of {}", spec.image), call)
            .await?
            .map_err(|e| api("start container of", spec.image, &e.to_string()))?;
        let exit_code = self.wait(&created, spec.timeout).await?;
        if exit_code.is_none() {
            let call = self
                .docker
                .kill_container(&created, None::<KillContainerOptions>);
            // Already gone or exited meanwhile: the removal below settles it.
            let _ = self.bounded("the kill of a container", call).await;
        }
        let tail = self.tail(&created).await.unwrap_or_default();
        self.remove_container(&created).await?;
        removal.id = None;
        Ok(Ran { exit_code, tail })
    }

    /// Removes (killing first) every container that carries `label` (name, value), as a
    /// caller that holds the label's lock does before running under it: any such container
    /// is a leftover of a process that was killed. Returns how many it removed.
    pub async fn remove_labelled(&self, label: (&str, &str)) -> Result<usize, DockerError> {
        let filter = format!("{}={}", label.0, label.1);
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_owned(), vec![filter.clone()])])),
            ..Default::default()
        };
        let call = self.docker.list_containers(Some(options));
        let listed = self
            .bounded(&format!("the list of containers labelled {filter}"), call)
            .await?
            .map_err(|e| api("list containers labelled", &filter, &e.to_string()))?;
        let mut removed = 0;
        for id in listed.into_iter().filter_map(|c| c.id) {
            self.remove_container(&id).await?;
            removed += 1;
        }
        Ok(removed)
    }

    async fn create(&self, spec: &RunSpec<'_>) -> Result<String, DockerError> {
        let body = ContainerCreateBody {
            image: Some(spec.image.to_owned()),
            entrypoint: Some(spec.argv.to_vec()),
            labels: Some(HashMap::from([(
                spec.label.0.to_owned(),
                spec.label.1.to_owned(),
            )])),
            attach_stdin: Some(false),
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            open_stdin: Some(false),
            tty: Some(false),
            host_config: Some(HostConfig {
                network_mode: Some(spec.network.to_owned()),
                auto_remove: Some(false),
                binds: None,
                mounts: None,
                publish_all_ports: Some(false),
                privileged: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        };
        let call = self
            .docker
            .create_container(None::<CreateContainerOptions>, body);
        let created = self
            .bounded(
                &format!("the creation of a container of {}", spec.image),
                call,
            )
            .await?
            .map_err(|e| api("create container of", spec.image, &e.to_string()))?;
        let id = created.id;
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            let shown: String = id.chars().take(80).collect();
            return Err(api(
                "create container of",
                spec.image,
                &format!("the engine answered an invalid container ID {shown:?}"),
            ));
        }
        Ok(id)
    }

    /// The container's exit code, or `None` when it still runs after `limit`.
    async fn wait(&self, id: &str, limit: Duration) -> Result<Option<i64>, DockerError> {
        if let Some(first) = self.earlier_stall() {
            return Err(first);
        }
        let mut stream = self.docker.wait_container(id, None::<WaitContainerOptions>);
        match tokio::time::timeout(limit, stream.next()).await {
            Err(_) => Ok(None),
            Ok(Some(Ok(answer))) => Ok(Some(answer.status_code)),
            Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => {
                Ok(Some(code))
            }
            Ok(Some(Err(e))) => Err(api("wait for container", id, &e.to_string())),
            Ok(None) => Err(api(
                "wait for container",
                id,
                "the engine closed the wait without an exit code",
            )),
        }
    }

    /// The last lines of the container's output, bounded in lines, bytes and time.
    async fn tail(&self, id: &str) -> Result<Vec<String>, DockerError> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: TAIL_LINES.to_string(),
            ..Default::default()
        };
        let read = async {
            let mut stream = self.docker.logs(id, Some(options));
            let mut bytes = Vec::new();
            while let Some(Ok(item)) = stream.next().await {
                let chunk = match item {
                    LogOutput::StdOut { message }
                    | LogOutput::StdErr { message }
                    | LogOutput::Console { message } => message,
                    LogOutput::StdIn { .. } => continue,
                };
                bytes.extend_from_slice(&chunk);
                if bytes.len() > TAIL_BYTES {
                    bytes.drain(..bytes.len() - TAIL_BYTES);
                }
            }
            bytes
        };
        let bytes = self.bounded("the output of a container", read).await?;
        Ok(last_lines(&String::from_utf8_lossy(&bytes)))
    }

    /// Kills and removes a container with its anonymous volumes; one already gone is fine.
    async fn remove_container(&self, id: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        let call = self.docker.remove_container(id, Some(options));
        match self.bounded("the removal of a container", call).await? {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(api("remove container", id, &e.to_string())),
        }
    }
}

/// The last [`TAIL_LINES`] non-empty lines of `text`, each at most [`LINE_CHARS`] characters.
pub(crate) fn last_lines(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..]
        .iter()
        .map(|l| match l.char_indices().nth(LINE_CHARS) {
            Some((cut, _)) => format!("{}…", &l[..cut]),
            None => (*l).to_owned(),
        })
        .collect()
}

/// A container to kill and remove if the run that made it is dropped before it did so
/// itself: the removal runs before the drop returns (on a multi-threaded runtime, as the
/// planner binary's; elsewhere it is spawned), bounded by [`DROP_REMOVAL_LIMIT`].
struct Removal {
    engine: Engine,
    id: Option<String>,
}

impl Drop for Removal {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let engine = self.engine.clone();
        let limit = DROP_REMOVAL_LIMIT.min(engine.limit);
        let remove = async move {
            let options = RemoveContainerOptions {
                force: true,
                v: true,
                link: false,
            };
            let call = engine.docker.remove_container(&id, Some(options));
            let _ = tokio::time::timeout(limit, call).await;
        };
        match handle.runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| handle.block_on(remove));
            }
            _ => {
                handle.spawn(remove);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_lines_each_bounded() {
        let text: String = (0..50).map(|i| format!("line {i}\r\n\n")).collect();
        let tail = last_lines(&text);
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail[0], "line 30");
        assert_eq!(tail[TAIL_LINES - 1], "line 49");
        let long = "é".repeat(1000);
        let tail = last_lines(&long);
        assert_eq!(tail[0].chars().count(), LINE_CHARS + 1);
        assert!(tail[0].ends_with('…'));
        assert!(last_lines("").is_empty());
    }
}
