//! A unix-socket proxy in front of the Docker engine that plays an engine which stops
//! answering. [`StallProxy::start`]: mid-build; it forwards everything, but on a connection
//! that sent `POST …/build` it forwards only the first bytes of the answer, then swallows the
//! rest while keeping the connection open (nothing moves for the client).
//! [`StallProxy::half_answering`]: it forwards `GET /_ping` and `GET /version` (the engine
//! looks alive) and holds every other request unanswered, its connection open.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// How many bytes of a build's answer get through before the stall.
const LET_THROUGH: usize = 256;

pub struct StallProxy {
    dir: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    stalled: Arc<AtomicUsize>,
}

/// What the proxy stalls.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    BuildAnswers,
    AllButPing,
}

impl StallProxy {
    /// Listens on a fresh socket, forwarding to the engine socket `upstream`; stalls builds.
    pub fn start(upstream: &Path) -> StallProxy {
        StallProxy::with_mode(upstream, Mode::BuildAnswers)
    }

    /// Listens on a fresh socket, forwarding pings and version requests to the engine socket
    /// `upstream`, and leaving every other request unanswered.
    pub fn half_answering(upstream: &Path) -> StallProxy {
        StallProxy::with_mode(upstream, Mode::AllButPing)
    }

    fn with_mode(upstream: &Path, mode: Mode) -> StallProxy {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("docker.sock")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stalled = Arc::new(AtomicUsize::new(0));
        let (upstream, s, n) = (upstream.to_owned(), stop.clone(), stalled.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(engine) = UnixStream::connect(&upstream) else {
                    continue;
                };
                match mode {
                    Mode::BuildAnswers => relay(client, engine, n.clone()),
                    Mode::AllButPing => {
                        let n = n.clone();
                        std::thread::spawn(move || relay_pings(client, engine, &n));
                    }
                }
            }
        });
        StallProxy { dir, stop, stalled }
    }

    /// The proxy's socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    /// `DOCKER_HOST` for clients of the proxy.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// How many build answers (or, half answering, requests) were stalled.
    pub fn stalled(&self) -> usize {
        self.stalled.load(Ordering::SeqCst)
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(self.socket());
    }
}

/// Copies client → engine (noting a build request) and engine → client (stalling after a
/// build request's first bytes), each in its own thread.
fn relay(client: UnixStream, engine: UnixStream, stalled: Arc<AtomicUsize>) {
    let building = Arc::new(AtomicBool::new(false));
    let (mut from_client, mut to_engine) =
        (client.try_clone().unwrap(), engine.try_clone().unwrap());
    let b = building.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from_client.read(&mut buf) {
            if n == 0 {
                break;
            }
            let head = String::from_utf8_lossy(&buf[..n.min(200)]);
            if head.starts_with("POST ")
                && head
                    .split(' ')
                    .nth(1)
                    .is_some_and(|p| p.split('?').next().unwrap_or("").ends_with("/build"))
            {
                b.store(true, Ordering::SeqCst);
            }
            if to_engine.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to_engine.shutdown(std::net::Shutdown::Write);
    });
    let (mut from_engine, mut to_client) = (engine, client);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut let_through = None::<usize>;
        while let Ok(n) = from_engine.read(&mut buf) {
            if n == 0 {
                break;
            }
            if building.load(Ordering::SeqCst) && let_through.is_none() {
                let_through = Some(LET_THROUGH);
                stalled.fetch_add(1, Ordering::SeqCst);
            }
            let send = let_through.map_or(n, |left| left.min(n));
            if send > 0 && to_client.write_all(&buf[..send]).is_err() {
                break;
            }
            if let Some(left) = &mut let_through {
                *left -= send;
            }
        }
        if let_through.is_none() {
            let _ = to_client.shutdown(std::net::Shutdown::Both);
        }
        // A stalled connection stays open (the client→engine thread holds it) until the
        // client hangs up.
    });
}

/// The path of a request whose head starts `head`, without an API version prefix (`/_ping`
/// for `GET /v1.41/_ping`); `None` when `head` starts no request.
fn request_path(head: &[u8]) -> Option<String> {
    let head = String::from_utf8_lossy(&head[..head.len().min(200)]);
    let mut words = head.split(' ');
    let method = words.next()?;
    let path = words.next()?.split('?').next()?;
    if !["GET", "HEAD", "POST", "PUT", "DELETE"].contains(&method) || !path.starts_with('/') {
        return None;
    }
    let rest = path.strip_prefix("/v").and_then(|p| p.split_once('/'));
    Some(match rest {
        Some((version, rest)) if version.chars().all(|c| c.is_ascii_digit() || c == '.') => {
            format!("/{rest}")
        }
        _ => path.to_owned(),
    })
}

/// Half answering: forwards a connection's requests while they are pings or version requests;
/// from the first other request on, forwards nothing more and holds the connection open.
fn relay_pings(client: UnixStream, engine: UnixStream, stalled: &AtomicUsize) {
    let (mut from_client, mut to_engine) =
        (client.try_clone().unwrap(), engine.try_clone().unwrap());
    let (mut from_engine, mut to_client) = (engine, client);
    let holding = Arc::new(AtomicBool::new(false));
    let held = holding.clone();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_engine, &mut to_client);
        // An engine closing its side does not end a held connection for the client.
        if !held.load(Ordering::SeqCst) {
            let _ = to_client.shutdown(std::net::Shutdown::Write);
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from_client.read(&mut buf) {
        if n == 0 {
            break;
        }
        if !holding.load(Ordering::SeqCst)
            && let Some(path) = request_path(&buf[..n])
            && path != "/_ping"
            && path != "/version"
        {
            holding.store(true, Ordering::SeqCst);
            stalled.fetch_add(1, Ordering::SeqCst);
        }
        if !holding.load(Ordering::SeqCst) && to_engine.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to_engine.shutdown(std::net::Shutdown::Write);
}
