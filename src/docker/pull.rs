//! Pulling an image by digest through the engine (`POST /images/create`).
//!
//! bollard sends `X-Registry-Auth` in standard base64, but the engine decodes base64url and,
//! for a pull, treats an undecodable header as no credentials at all: a private image would
//! then be pulled anonymously and fail with a misleading "not found" (or worse, a public
//! image of the same name would be pulled). So this one call goes over the engine's socket
//! with hyper directly, with the header exactly as [`crate::registry::engine_auth`] encodes
//! it. Progress is bounded by the engine's idle limit like a build's.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyStream, Empty};
use hyper_util::rt::TokioIo;

use super::engine::{Activity, DockerError, Engine, api};
use crate::registry::ImageRef;

/// Cap of one line of the engine's progress stream (a hostile engine cannot make planner
/// buffer without bound).
const MAX_LINE: usize = 64 * 1024;
/// Time to connect and get the response head.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// One message of the engine's pull progress stream.
#[derive(Debug, serde::Deserialize)]
struct Progress {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    error: Option<String>,
    /// The error body of a non-2xx answer (`{"message": …}`).
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "progressDetail")]
    progress_detail: Option<serde_json::Value>,
}

impl Engine {
    /// Pulls `image` at `digest` for `platform`, sending `auth` (an `X-Registry-Auth` value)
    /// when given. `on_line` receives the engine's status lines (not the byte counters).
    pub async fn pull(
        &self,
        image: &ImageRef,
        digest: &str,
        platform: &str,
        auth: Option<&str>,
        mut on_line: impl FnMut(&str) + Send,
    ) -> Result<(), DockerError> {
        let reference = image.with_digest(digest);
        let fail = |detail: String| pull_failed(&reference, &detail);
        let request = self
            .pull_request(image, digest, platform, auth)
            .map_err(&fail)?;
        let send = self.send(request);
        let response = match tokio::time::timeout(CONNECT_TIMEOUT, send).await {
            Err(_) => return Err(api("pull", &reference, "the engine did not answer")),
            Ok(r) => r.map_err(|e| api("pull", &reference, &e))?,
        };
        let status = response.status();
        let mut body = BodyStream::new(response.into_body());
        let activity = Activity::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut error = None;
        let what = format!("the pull of {reference}");
        while let Some(frame) = self.next_or_idle(&mut body, &activity, &what).await? {
            let frame = frame.map_err(|e| fail(format!("reading the engine's answer: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                if let Some(e) = handle_line(&line, &mut on_line) {
                    error.get_or_insert(e);
                }
            }
            if pending.len() > MAX_LINE {
                return Err(fail("the engine sent an over-long progress line".into()));
            }
        }
        if let Some(e) = handle_line(&pending, &mut on_line) {
            error.get_or_insert(e);
        }
        match (status.is_success(), error) {
            (true, None) => Ok(()),
            (_, Some(e)) => Err(fail(e)),
            (false, None) => Err(fail(format!("the engine answered {status}"))),
        }
    }

    fn pull_request(
        &self,
        image: &ImageRef,
        digest: &str,
        platform: &str,
        auth: Option<&str>,
    ) -> Result<hyper::Request<Empty<Bytes>>, String> {
        let version = self.docker.client_version();
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair(
                "fromImage",
                &format!("{}/{}", image.registry, image.repository),
            )
            .append_pair("tag", digest)
            .append_pair("platform", platform)
            .finish();
        let path = format!(
            "/v{}.{}/images/create?{query}",
            version.major_version, version.minor_version
        );
        let mut request = hyper::Request::post(path).header("Host", "docker");
        if let Some(auth) = auth {
            request = request.header("X-Registry-Auth", auth);
        }
        request.body(Empty::new()).map_err(|e| e.to_string())
    }

    /// Sends `request` over a fresh connection to the engine (unix socket or TCP).
    pub(super) async fn send(
        &self,
        request: hyper::Request<Empty<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let host = self.host.as_str();
        if let Some(path) = host.strip_prefix("unix://") {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| format!("connecting to {host}: {e}"))?;
            return handshake_and_send(TokioIo::new(stream), request).await;
        }
        let address = host
            .strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("http://"))
            .ok_or_else(|| {
                format!(
                    "pulling through an engine at {} is not supported (unix:// or tcp:// without TLS)",
                    self.shown_host()
                )
            })?;
        let stream = tokio::net::TcpStream::connect(address.trim_end_matches('/'))
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.shown_host()))?;
        handshake_and_send(TokioIo::new(stream), request).await
    }
}

async fn handshake_and_send<T>(
    io: T,
    request: hyper::Request<Empty<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake with the engine: {e}"))?;
    // The connection task ends with the response body (or when the future is dropped).
    tokio::spawn(connection);
    sender
        .send_request(request)
        .await
        .map_err(|e| format!("sending the pull request: {e}"))
}

/// Passes a status line on; returns the engine's error message, if the line carries one.
fn handle_line(line: &[u8], on_line: &mut impl FnMut(&str)) -> Option<String> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let Ok(p) = serde_json::from_str::<Progress>(text) else {
        return Some(format!(
            "unexpected answer from the engine: {:?}",
            text.chars().take(200).collect::<String>()
        ));
    };
    if let Some(e) = p.error.or(p.message) {
        return Some(e);
    }
    let counting = p
        .progress_detail
        .as_ref()
        .is_some_and(|d| d.get("current").is_some());
    if let (Some(status), false) = (p.status, counting) {
        match p.id {
            Some(id) => on_line(&format!("{id}: {status}")),
            None => on_line(&status),
        }
    }
    None
}

fn pull_failed(reference: &str, detail: &str) -> DockerError {
    let help = if detail.contains("unauthorized") || detail.contains("denied") {
        "\n  help: log in to the registry (`docker login`, or credentials in ~/.docker/config.json / DOCKER_CONFIG) with an account that may pull it"
    } else if detail.contains("not found") || detail.contains("manifest unknown") {
        "\n  help: the registry no longer holds this digest (the tag moved and the old image was deleted?); run again to resolve the tag anew"
    } else {
        ""
    };
    DockerError::Api {
        what: format!("pull {reference}"),
        detail: format!("{detail}{help}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_pass_and_errors_are_returned() {
        let mut seen = Vec::new();
        let mut on = |l: &str| seen.push(l.to_owned());
        assert_eq!(
            handle_line(br#"{"status":"Pulling fs layer","id":"abc"}"#, &mut on),
            None
        );
        assert_eq!(
            handle_line(
                br#"{"status":"Downloading","id":"abc","progressDetail":{"current":1,"total":2}}"#,
                &mut on
            ),
            None
        );
        assert_eq!(
            handle_line(
                br#"{"errorDetail":{"message":"x"},"error":"denied"}"#,
                &mut on
            )
            .as_deref(),
            Some("denied")
        );
        assert_eq!(
            handle_line(br#"{"message":"pull access denied"}"#, &mut on).as_deref(),
            Some("pull access denied")
        );
        assert!(handle_line(b"\xff not json", &mut on).is_some());
        assert_eq!(seen, ["abc: Pulling fs layer"]);
    }
}
