//! The BuildKit `POST /build` call, made without bollard: bollard starts its own session for
//! every BuildKit build, and planner serves its own ([`super::session`]). The query is
//! bollard's (`BuildImageOptions`, serialized as bollard does), the body what the caller
//! streams (empty for planner's BuildKit builds, whose context goes over the session), and the
//! answer is decoded as bollard decodes it: one `BuildInfo` per JSON line, a line with
//! `error` (or a non-2xx answer's `message`) as `DockerStreamError`. Each line is bounded by
//! [`MAX_LINE`].

use std::collections::VecDeque;

use bollard::errors::Error as BollardError;
use bollard::models::BuildInfo;
use bollard::query_parameters::BuildImageOptions;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body_util::{BodyStream, StreamBody};
use hyper::body::{Frame, Incoming};

use super::engine::Engine;

/// The longest line of the build's answer (BuildKit's status messages carry base64 protobuf).
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// One item of the build's answer, as bollard's `build_image` yields it.
pub type BuildItem = Result<BuildInfo, BollardError>;

impl Engine {
    /// Sends `POST /build` with `options` and `context` as the body; the engine's answer as a
    /// stream of [`BuildItem`]s (a failure to send is its one error item).
    pub(super) fn build_stream(
        &self,
        options: &BuildImageOptions,
        context: impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    ) -> impl Stream<Item = BuildItem> + Send + Unpin + '_ {
        let request = build_request(self, options, context);
        let answer = async move {
            let request = request.map_err(stream_error)?;
            self.send(request).await.map_err(stream_error)
        };
        Box::pin(
            futures_util::stream::once(answer)
                .map(|answer| match answer {
                    Ok(response) => lines(response).left_stream(),
                    Err(e) => futures_util::stream::iter([Err(e)]).right_stream(),
                })
                .flatten(),
        )
    }
}

fn build_request(
    engine: &Engine,
    options: &BuildImageOptions,
    context: impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
) -> Result<
    hyper::Request<impl hyper::body::Body<Data = Bytes, Error = std::io::Error> + Send + 'static>,
    String,
> {
    let query = serde_urlencoded::to_string(options).map_err(|e| e.to_string())?;
    let v = engine.docker.client_version();
    let path = format!("/v{}.{}/build?{query}", v.major_version, v.minor_version);
    let body = StreamBody::new(context.map(|chunk| chunk.map(Frame::data)));
    hyper::Request::post(path)
        .header("Host", "docker")
        .header("Content-Type", "application/x-tar")
        .body(body)
        .map_err(|e| e.to_string())
}

fn stream_error(error: String) -> BollardError {
    BollardError::DockerStreamError { error }
}

/// The answer's lines, decoded.
fn lines(response: hyper::Response<Incoming>) -> impl Stream<Item = BuildItem> + Send {
    let state = Lines {
        ok: response.status().is_success(),
        status: response.status(),
        body: BodyStream::new(response.into_body()),
        pending: Vec::new(),
        ready: VecDeque::new(),
        done: false,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.ready.pop_front() {
                return Some((item, state));
            }
            if state.done {
                return None;
            }
            state.read().await;
        }
    })
}

struct Lines {
    ok: bool,
    status: hyper::StatusCode,
    body: BodyStream<Incoming>,
    pending: Vec<u8>,
    ready: VecDeque<BuildItem>,
    done: bool,
}

impl Lines {
    /// Reads the next frame, queueing every whole line it completes.
    async fn read(&mut self) {
        match self.body.next().await {
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else { return };
                self.pending.extend_from_slice(&data);
                while let Some(nl) = self.pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = self.pending.drain(..=nl).collect();
                    self.line(&line);
                }
                if self.pending.len() > MAX_LINE {
                    self.fail(format!(
                        "the engine sent a line longer than {MAX_LINE} bytes"
                    ));
                }
            }
            Some(Err(e)) => self.fail(format!("reading the engine's answer: {e}")),
            None => {
                let rest = std::mem::take(&mut self.pending);
                self.line(&rest);
                if !self.ok && self.ready.is_empty() {
                    self.fail(format!("the engine answered {}", self.status));
                }
                self.done = true;
            }
        }
    }

    fn fail(&mut self, error: String) {
        self.ready.push_back(Err(stream_error(error)));
        self.done = true;
    }

    /// Queues what one line says: a `BuildInfo`, or the error it (or a non-2xx answer) holds.
    fn line(&mut self, line: &[u8]) {
        if self.done || line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        if !self.ok {
            #[derive(serde::Deserialize)]
            struct Message {
                message: String,
            }
            let error = serde_json::from_slice::<Message>(line)
                .map(|m| m.message)
                .unwrap_or_else(|_| format!("the engine answered {}", self.status));
            return self.fail(error);
        }
        match serde_json::from_slice::<BuildInfo>(line) {
            Ok(BuildInfo {
                error: Some(error), ..
            }) => self.fail(error),
            Ok(info) => self.ready.push_back(Ok(info)),
            Err(e) => {
                let shown: String = String::from_utf8_lossy(line).chars().take(200).collect();
                self.fail(format!(
                    "unexpected answer from the engine ({e}): {shown:?}"
                ));
            }
        }
    }
}
