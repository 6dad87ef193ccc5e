//! An engine over ssh, the way the docker CLI reaches `ssh://user@host`: each connection is
//! one `ssh [-l user] [-p port] -- host docker system dial-stdio` child, whose stdin and
//! stdout carry HTTP to the remote engine. The system `ssh` is used (not bollard's `ssh`
//! feature, which needs the `openssh` crate and its control-master sockets), so
//! `~/.ssh/config`, ssh-agent and known hosts behave as for `docker`; `BatchMode=yes` makes
//! a missing key or unknown host key fail instead of prompting. `PLANNER_ENGINE_SSH_COMMAND`
//! (split on whitespace) replaces `ssh`. Connections are pooled by hyper's client.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bollard::{ClientVersion, Docker};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::endpoint::{Endpoint, EndpointError, SshTarget};
use crate::error::{DockerError, endpoint_error, shown};

/// The body type of bollard's requests.
type BollardBody = <bollard::BollardRequest as RequestBody>::Body;

/// Names a request's body type.
trait RequestBody {
    type Body;
}
impl<B> RequestBody for hyper::Request<B> {
    type Body = B;
}

/// Replaces `ssh` (split on whitespace), e.g. to pass `-i KEY -o UserKnownHostsFile=…`.
pub const SSH_COMMAND_ENV: &str = "PLANNER_ENGINE_SSH_COMMAND";

/// A bollard client whose connections are ssh children.
pub fn client(
    target: &SshTarget,
    log: &SshLog,
    timeout: u64,
    version: &ClientVersion,
) -> Result<Docker, bollard::errors::Error> {
    let connector = SshConnector {
        argv: argv(target, std::env::var(SSH_COMMAND_ENV).ok().as_deref()),
        log: log.clone(),
    };
    let client: Client<SshConnector, BollardBody> =
        Client::builder(TokioExecutor::new()).build(connector);
    let transport = move |request: bollard::BollardRequest| {
        let client = client.clone();
        async move {
            client
                .request(request)
                .await
                .map_err(|e| bollard::errors::Error::from(io::Error::other(e)))
        }
    };
    Docker::connect_with_custom_transport(transport, Some("http://docker"), timeout, version)
}

/// The child's command line.
fn argv(target: &SshTarget, command: Option<&str>) -> Vec<String> {
    let mut argv: Vec<String> = match command.map(str::split_whitespace) {
        Some(words) if command.is_some_and(|c| !c.trim().is_empty()) => {
            words.map(str::to_owned).collect()
        }
        _ => vec!["ssh".into()],
    };
    argv.extend(["-o".into(), "BatchMode=yes".into()]);
    if let Some(user) = &target.user {
        argv.extend(["-l".into(), user.clone()]);
    }
    if let Some(port) = target.port {
        argv.extend(["-p".into(), port.to_string()]);
    }
    argv.extend(["--".into(), target.host.clone()]);
    argv.extend(["docker", "system", "dial-stdio"].map(String::from));
    argv
}

/// One connection to the engine over ssh (its stderr goes nowhere).
pub async fn open(
    target: &SshTarget,
) -> io::Result<impl hyper::rt::Read + hyper::rt::Write + Unpin + Send + use<>> {
    let argv = argv(target, std::env::var(SSH_COMMAND_ENV).ok().as_deref());
    SshStream::spawn(&argv, &SshLog::default()).await
}

/// What a failed first call over ssh means, with what ssh said on stderr.
pub async fn failure(
    endpoint: &Endpoint,
    target: &SshTarget,
    detail: &str,
    log: &SshLog,
) -> DockerError {
    let said = log.text().await;
    let detail = if said.is_empty() {
        detail.to_owned()
    } else {
        format!("{detail}; ssh said: {said}")
    };
    endpoint_error(EndpointError::Ssh {
        host: shown(endpoint),
        dest: match target.port {
            Some(port) => format!("-p {port} {}", target.host),
            None => target.host.clone(),
        },
        detail,
    })
}

#[derive(Clone)]
struct SshConnector {
    argv: Vec<String>,
    log: SshLog,
}

impl tower_service::Service<hyper::Uri> for SshConnector {
    type Response = SshStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<SshStream>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: hyper::Uri) -> Self::Future {
        let (argv, log) = (self.argv.clone(), self.log.clone());
        Box::pin(async move { SshStream::spawn(&argv, &log).await })
    }
}

/// One ssh child: its stdout is read, its stdin written; killed when dropped. Its stderr
/// goes to the connector's [`SshLog`].
struct SshStream {
    _child: Child,
    stdin: TokioIo<ChildStdin>,
    stdout: TokioIo<ChildStdout>,
}

/// The last lines ssh children wrote on stderr (why a login failed), at most [`LOG_BYTES`].
#[derive(Clone, Default)]
pub struct SshLog(Arc<Mutex<String>>);

const LOG_BYTES: usize = 4096;

impl SshLog {
    /// What ssh said, once its children had a moment to say it.
    pub async fn text(&self) -> String {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let text = self.0.lock().unwrap_or_else(|e| e.into_inner());
        text.trim().to_owned()
    }

    fn keep(&self, chunk: &[u8]) {
        let mut text = self.0.lock().unwrap_or_else(|e| e.into_inner());
        text.push_str(&String::from_utf8_lossy(chunk));
        if text.len() > LOG_BYTES {
            let cut = text.len() - LOG_BYTES;
            let cut = (cut..text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            text.drain(..cut);
        }
    }

    /// Copies a child's stderr into the log until it closes.
    fn drain(&self, mut stderr: tokio::process::ChildStderr) {
        let log = self.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 1024];
            while let Ok(n @ 1..) = stderr.read(&mut buf).await {
                log.keep(&buf[..n]);
            }
        });
    }
}

impl SshStream {
    async fn spawn(argv: &[String], log: &SshLog) -> io::Result<SshStream> {
        let (program, args) = argv.split_first().ok_or(io::ErrorKind::InvalidInput)?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run {program}: {e}")))?;
        let pipe = || io::Error::other("ssh child without pipes");
        let stdin = child.stdin.take().ok_or_else(pipe)?;
        let stdout = child.stdout.take().ok_or_else(pipe)?;
        if let Some(stderr) = child.stderr.take() {
            log.drain(stderr);
        }
        Ok(SshStream {
            _child: child,
            stdin: TokioIo::new(stdin),
            stdout: TokioIo::new(stdout),
        })
    }
}

impl hyper::rt::Read for SshStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdout).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for SshStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stdin).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_shutdown(cx)
    }
}

impl Connection for SshStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_the_docker_cli_s_with_batch_mode() {
        let t = SshTarget {
            user: Some("ci".into()),
            host: "build-1".into(),
            port: Some(2222),
        };
        assert_eq!(
            argv(&t, None).join(" "),
            "ssh -o BatchMode=yes -l ci -p 2222 -- build-1 docker system dial-stdio"
        );
        let t = SshTarget {
            user: None,
            host: "h".into(),
            port: None,
        };
        assert_eq!(
            argv(&t, Some("ssh -F /dev/null -i k")).join(" "),
            "ssh -F /dev/null -i k -o BatchMode=yes -- h docker system dial-stdio"
        );
    }
}
