//! Pulling an image by digest (`POST /images/create`) and pushing a tag
//! (`POST /images/{name}/push`) through the engine.
//!
//! bollard sends `X-Registry-Auth` in standard base64, but the engine decodes base64url and,
//! for a pull, treats an undecodable header as no credentials at all: a private image would
//! then be pulled anonymously and fail with a misleading "not found" (or worse, a public
//! image of the same name would be pulled). So this one call goes over the engine's socket
//! with hyper directly (over the connection [`super::remote::open`] makes), with the header exactly as the caller
//! encodes it (`planner_registry::engine_auth`). The answer's head and its progress are bounded by the engine's idle limit like a
//! build's.

use bytes::Bytes;
use http_body_util::{BodyStream, Empty};

use crate::engine::{Activity, Engine, IDLE_KEY};
use crate::error::{DockerError, api};
use planner_base::ImageRef;

/// Cap of one line of the engine's progress stream (a hostile engine cannot make planner
/// buffer without bound).
const MAX_LINE: usize = 64 * 1024;

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
    /// A push's result (`{"Tag": …, "Digest": …, "Size": …}`).
    #[serde(default)]
    aux: Option<serde_json::Value>,
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
        let what = format!("the pull of {reference}");
        self.transfer("pull", &reference, &what, request, &mut on_line, &fail)
            .await
            .map(drop)
    }

    /// Pushes the image `id` as `image` (`registry/repository:tag`) with `auth`, through a tag
    /// dropped again afterwards whatever happened (the caller's own tags name the image);
    /// returns the manifest digest the registry stored.
    pub async fn push_as(
        &self,
        id: &str,
        image: &ImageRef,
        auth: Option<&str>,
    ) -> Result<String, DockerError> {
        let reference = image.to_string();
        self.tag(id, &reference).await?;
        let pushed = self.push(image, auth).await;
        let _ = self.remove_reference(&reference).await;
        pushed
    }

    /// Pushes `image` (`registry/repository:tag`, a tag the engine holds) with `auth`;
    /// returns the manifest digest the registry stored.
    pub async fn push(&self, image: &ImageRef, auth: Option<&str>) -> Result<String, DockerError> {
        let reference = image.to_string();
        let fail = |detail: String| push_failed(&reference, &detail);
        let request = self.push_request(image, auth).map_err(&fail)?;
        let what = format!("the push of {reference}");
        let aux = self
            .transfer("push", &reference, &what, request, &mut |_| {}, &fail)
            .await?;
        aux.into_iter()
            .filter_map(|a| a.get("Digest")?.as_str().map(str::to_owned))
            .find(|d| planner_base::ids::is_manifest_digest(d))
            .ok_or_else(|| fail("the engine named no pushed digest".into()))
    }

    /// Sends a pull or push and reads its progress stream to the end (bounded by the idle
    /// limit): the `aux` objects it carried, or the first error it reported.
    async fn transfer(
        &self,
        call: &str,
        reference: &str,
        what: &str,
        request: hyper::Request<Empty<Bytes>>,
        on_line: &mut (impl FnMut(&str) + Send),
        fail: &(impl Fn(String) -> DockerError + Sync),
    ) -> Result<Vec<serde_json::Value>, DockerError> {
        // The engine answers once the registry did (the head comes with the first progress):
        // a stream's wait, bounded by the idle limit.
        let send = self.send(request);
        let response = self
            .bounded_by(self.idle, IDLE_KEY, what, send)
            .await?
            .map_err(|e| api(call, reference, &e))?;
        let status = response.status();
        let mut body = BodyStream::new(response.into_body());
        let activity = Activity::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut stream = Stream::default();
        while let Some(frame) = self.next_or_idle(&mut body, &activity, what).await? {
            let frame = frame.map_err(|e| fail(format!("reading the engine's answer: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                stream.line(&line, on_line);
            }
            if pending.len() > MAX_LINE {
                return Err(fail("the engine sent an over-long progress line".into()));
            }
        }
        stream.line(&pending, on_line);
        match (status.is_success(), stream.error) {
            (true, None) => Ok(stream.aux),
            (_, Some(e)) => Err(fail(e)),
            (false, None) => Err(fail(format!("the engine answered {status}"))),
        }
    }

    fn push_request(
        &self,
        image: &ImageRef,
        auth: Option<&str>,
    ) -> Result<hyper::Request<Empty<Bytes>>, String> {
        let version = self.docker.client_version();
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("tag", &image.tag)
            .finish();
        let name = format!("{}/{}", image.registry, image.repository);
        let path = format!(
            "/v{}.{}/images/{name}/push?{query}",
            version.major_version, version.minor_version
        );
        let mut request = hyper::Request::post(path).header("Host", "docker");
        // The engine refuses a push without the header; `{}` is anonymous.
        request = request.header("X-Registry-Auth", auth.unwrap_or("e30="));
        request.body(Empty::new()).map_err(|e| e.to_string())
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

    /// Sends `request` over a fresh connection to the engine, the way bollard reaches it
    /// (unix socket, TCP, TLS with the client certificates, ssh).
    pub(super) async fn send<B>(
        &self,
        request: hyper::Request<B>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, String>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let io = super::remote::open(&self.endpoint).await?;
        handshake_and_send(io, request).await
    }
}

async fn handshake_and_send<T, B>(
    io: T,
    request: hyper::Request<B>,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake with the engine: {e}"))?;
    // The connection task ends with the response body (or when the future is dropped).
    tokio::spawn(connection);
    sender
        .send_request(request)
        .await
        .map_err(|e| format!("sending the request: {e}"))
}

/// What a progress stream said beyond its status lines.
#[derive(Default)]
struct Stream {
    error: Option<String>,
    aux: Vec<serde_json::Value>,
}

impl Stream {
    /// Passes a status line on, keeping its error (the first) or `aux` object.
    fn line(&mut self, line: &[u8], on_line: &mut impl FnMut(&str)) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let Ok(p) = serde_json::from_str::<Progress>(text) else {
            let shown: String = text.chars().take(200).collect();
            self.error
                .get_or_insert(format!("unexpected answer from the engine: {shown:?}"));
            return;
        };
        if let Some(e) = p.error.or(p.message) {
            self.error.get_or_insert(e);
            return;
        }
        if let Some(aux) = p.aux.filter(|_| self.aux.len() < 16) {
            self.aux.push(aux);
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
    }
}

fn push_failed(reference: &str, detail: &str) -> DockerError {
    let host = reference.split('/').next().unwrap_or_default();
    let help = if detail.contains("unauthorized") || detail.contains("denied") {
        format!(
            "\n  help: log in to {host} (`docker login {host}`) with an account that may push to it"
        )
    } else {
        "\n  help: check the registry in runtimes.toml ([cache] or [publish] registry) and that the engine can reach it".to_owned()
    };
    api("push", reference, &format!("{detail}{help}"))
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

    /// The error a stream holds after one line.
    fn error_of(line: &[u8], on: &mut impl FnMut(&str)) -> Option<String> {
        let mut stream = Stream::default();
        stream.line(line, on);
        stream.error
    }

    #[test]
    fn status_lines_pass_and_errors_are_returned() {
        let mut seen = Vec::new();
        let mut on = |l: &str| seen.push(l.to_owned());
        assert_eq!(
            error_of(br#"{"status":"Pulling fs layer","id":"abc"}"#, &mut on),
            None
        );
        assert_eq!(
            error_of(
                br#"{"status":"Downloading","id":"abc","progressDetail":{"current":1,"total":2}}"#,
                &mut on
            ),
            None
        );
        assert_eq!(
            error_of(
                br#"{"errorDetail":{"message":"x"},"error":"denied"}"#,
                &mut on
            )
            .as_deref(),
            Some("denied")
        );
        assert_eq!(
            error_of(br#"{"message":"pull access denied"}"#, &mut on).as_deref(),
            Some("pull access denied")
        );
        assert!(error_of(b"\xff not json", &mut on).is_some());
        assert_eq!(seen, ["abc: Pulling fs layer"]);
    }

    #[test]
    fn a_push_stream_keeps_its_aux_and_the_first_error() {
        let mut stream = Stream::default();
        let mut on = |_: &str| {};
        let digest = format!("sha256:{}", "a".repeat(64));
        let aux = format!(
            r#"{{"progressDetail":{{}},"aux":{{"Tag":"k-1","Digest":"{digest}","Size":528}}}}"#
        );
        stream.line(aux.as_bytes(), &mut on);
        stream.line(br#"{"error":"first"}"#, &mut on);
        stream.line(br#"{"error":"second"}"#, &mut on);
        assert_eq!(stream.aux[0]["Digest"], digest.as_str());
        assert_eq!(stream.error.as_deref(), Some("first"));
    }
}
