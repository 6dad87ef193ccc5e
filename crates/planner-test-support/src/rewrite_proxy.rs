//! A rewriting relay on 127.0.0.1 in front of a [`super::registry::TestRegistry`], for
//! registries that answer differently from distribution: it forwards each request (one per
//! connection, `Connection: close` both ways) and drops the named response headers, e.g.
//! `Docker-Content-Digest` for a registry that omits it (the client must GET and hash), or
//! rewrites the bodies of chosen answers (e.g. a `tags/list` with hostile tag names added).
//! Every request is logged with the backend's status.
//!
//! Request bodies are read by `Content-Length` only (a chunked request body gets `501`): it is
//! a relay for a resolving client, not for pushes (push through the registry itself).

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use super::relay;

const MAX_BODY: u64 = 16 * 1024 * 1024;

/// One request as the relay saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayedRequest {
    pub method: String,
    pub target: String,
    /// The backend's status (0 when the backend could not be reached or answered garbage).
    pub status: u16,
}

pub struct RewriteProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

/// Rewrites an answer's body given the request target; `None` leaves it as it is.
pub type BodyRewrite = Box<dyn Fn(&str, &[u8]) -> Option<Vec<u8>> + Send + Sync>;

struct Shared {
    backend: SocketAddr,
    /// Lower-case response header names to drop.
    strip: Vec<String>,
    rewrite: Option<BodyRewrite>,
    stop: AtomicBool,
    log: Mutex<Vec<RelayedRequest>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RewriteProxy {
    /// Relays to `backend_host` (`127.0.0.1:PORT`), dropping the response headers `strip`
    /// (any case).
    pub fn start(backend_host: &str, strip: &[&str]) -> RewriteProxy {
        RewriteProxy::start_with(backend_host, strip, None)
    }

    /// Relays to `backend_host`, replacing the body of each answer `rewrite` rewrites (its
    /// `Content-Length` follows; a chunked answer is left alone).
    pub fn rewriting(backend_host: &str, rewrite: BodyRewrite) -> RewriteProxy {
        RewriteProxy::start_with(backend_host, &[], Some(rewrite))
    }

    fn start_with(
        backend_host: &str,
        strip: &[&str],
        rewrite: Option<BodyRewrite>,
    ) -> RewriteProxy {
        let backend = backend_host
            .parse::<SocketAddr>()
            .expect("backend host is IP:PORT");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            backend,
            strip: strip.iter().map(|h| h.to_ascii_lowercase()).collect(),
            rewrite,
            stop: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
        });
        relay::accept_loop(listener, Arc::clone(&shared), |s| &s.stop, handle);
        RewriteProxy { addr, shared }
    }

    /// `127.0.0.1:PORT` of the relay: the registry part of references that go through it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn requests(&self) -> Vec<RelayedRequest> {
        lock(&self.shared.log).clone()
    }
}

impl Drop for RewriteProxy {
    fn drop(&mut self) {
        relay::wake(&self.shared.stop, self.addr);
    }
}

fn handle(mut client: TcpStream, shared: &Shared) {
    let Some(mut reader) = relay::client_reader(&client) else {
        return;
    };
    let Some(head) = relay::read_head(&mut reader) else {
        return;
    };
    let mut first = head[0].split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let target = first.next().unwrap_or_default().to_owned();
    let answer = match read_body(&mut reader, &head) {
        Some(body) => forward(shared, &head, &body),
        None => Some(
            b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .to_vec(),
        ),
    };
    let answer = answer.map(|a| strip_headers(&a, &shared.strip));
    let answer = match (&shared.rewrite, answer) {
        (Some(rewrite), Some(a)) => Some(rewrite_body(&a, |body| rewrite(&target, body))),
        (_, a) => a,
    };
    let status = answer.as_deref().map(status_of).unwrap_or(0);
    lock(&shared.log).push(RelayedRequest {
        method,
        target,
        status,
    });
    let answer = answer.unwrap_or_else(|| {
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
    });
    let _ = client.write_all(&answer);
    let _ = client.shutdown(Shutdown::Both);
}

/// The request body by `Content-Length` (empty when absent); `None` for a chunked body.
fn read_body(reader: &mut BufReader<TcpStream>, head: &[String]) -> Option<Vec<u8>> {
    if header(head, "transfer-encoding").is_some() {
        return None;
    }
    let len: u64 = header(head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = Vec::new();
    reader.take(len.min(MAX_BODY)).read_to_end(&mut body).ok()?;
    Some(body)
}

/// Sends the request with `Connection: close` and reads the whole answer (until EOF).
fn forward(shared: &Shared, head: &[String], body: &[u8]) -> Option<Vec<u8>> {
    let mut upstream = TcpStream::connect(shared.backend).ok()?;
    let _ = upstream.set_read_timeout(Some(relay::IO_TIMEOUT));
    let mut request: Vec<String> = vec![head[0].clone()];
    request.extend(
        head[1..]
            .iter()
            .filter(|l| !is_header(l, "connection"))
            .cloned(),
    );
    request.push("Connection: close".to_owned());
    let mut bytes = request.join("\r\n").into_bytes();
    bytes.extend_from_slice(b"\r\n\r\n");
    bytes.extend_from_slice(body);
    upstream.write_all(&bytes).ok()?;
    let mut answer = Vec::new();
    upstream.take(MAX_BODY).read_to_end(&mut answer).ok()?;
    (!answer.is_empty()).then_some(answer)
}

/// The answer without the headers in `strip` and with `Connection: close`.
fn strip_headers(answer: &[u8], strip: &[String]) -> Vec<u8> {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return answer.to_vec();
    };
    let head = String::from_utf8_lossy(&answer[..end]);
    let mut lines = head.split("\r\n");
    let mut out: Vec<String> = lines.next().map(str::to_owned).into_iter().collect();
    out.extend(
        lines
            .filter(|l| !is_header(l, "connection") && !strip.iter().any(|h| is_header(l, h)))
            .map(str::to_owned),
    );
    out.push("Connection: close".to_owned());
    let mut bytes = out.join("\r\n").into_bytes();
    bytes.extend_from_slice(&answer[end..]);
    bytes
}

/// The answer with the body `rewrite` gives (and its `Content-Length`), when it gives one and
/// the answer has a `Content-Length` body.
fn rewrite_body(answer: &[u8], rewrite: impl Fn(&[u8]) -> Option<Vec<u8>>) -> Vec<u8> {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return answer.to_vec();
    };
    let head = String::from_utf8_lossy(&answer[..end]);
    let lines: Vec<&str> = head.split("\r\n").collect();
    if !lines.iter().any(|l| is_header(l, "content-length")) {
        return answer.to_vec();
    }
    let Some(body) = rewrite(&answer[end + 4..]) else {
        return answer.to_vec();
    };
    let mut out: Vec<String> = lines
        .iter()
        .filter(|l| !is_header(l, "content-length"))
        .map(|l| (*l).to_owned())
        .collect();
    out.push(format!("Content-Length: {}", body.len()));
    let mut bytes = out.join("\r\n").into_bytes();
    bytes.extend_from_slice(b"\r\n\r\n");
    bytes.extend_from_slice(&body);
    bytes
}

fn status_of(answer: &[u8]) -> u16 {
    let line = answer.split(|b| *b == b'\r').next().unwrap_or_default();
    String::from_utf8_lossy(line)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn is_header(line: &str, name: &str) -> bool {
    line.split_once(':')
        .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
}

fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head[1..]
        .iter()
        .find(|l| is_header(l, name))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim())
}
