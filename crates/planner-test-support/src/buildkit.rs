//! BuildKit test support: runtime tables that build with BuildKit on the test engine (it
//! has no bridge network, so RUN needs `build_network = "none"`), an engine proxy that hides
//! BuildKit (answers 404 for `/session`, as an engine without it does), and a look for
//! processes still running in the engine.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A `[runtimes.NAME]` table building `repo` of `env`'s git server with `builder`.
pub fn runtime(env: &super::harness::Env, name: &str, repo: &str, builder: &str) -> String {
    format!(
        "{}builder = \"{builder}\"\nbuild_network = \"none\"\n",
        env.runtime(name, repo)
    )
}

/// The engine socket `DOCKER_HOST` names (the private test engine).
pub fn engine_socket() -> PathBuf {
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    let path = host
        .strip_prefix("unix://")
        .unwrap_or("/var/run/docker.sock");
    PathBuf::from(path)
}

/// A proxy on a unix socket in front of the engine that answers 404 to `/session` (and
/// `/grpc`) and relays everything else, one request per connection.
pub struct NoBuildkitProxy {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    /// `/session` requests answered 404.
    pub refused: Arc<AtomicUsize>,
}

impl NoBuildkitProxy {
    pub fn start() -> NoBuildkitProxy {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("engine.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let backend = engine_socket();
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicUsize::new(0));
        let (stop2, refused2) = (stop.clone(), refused.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let (backend, refused) = (backend.clone(), refused2.clone());
                std::thread::spawn(move || handle(client, &backend, &refused));
            }
        });
        NoBuildkitProxy {
            _dir: dir,
            socket,
            stop,
            refused,
        }
    }

    /// The `DOCKER_HOST` value of the proxy.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

impl Drop for NoBuildkitProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.socket);
    }
}

fn handle(client: UnixStream, backend: &Path, refused: &AtomicUsize) {
    let _ = client.set_read_timeout(Some(std::time::Duration::from_secs(120)));
    let Ok(clone) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone);
    let Some(head) = read_head(&mut reader) else {
        return;
    };
    let target = head[0].split(' ').nth(1).unwrap_or("");
    let path = target.split('?').next().unwrap_or("");
    if path.ends_with("/session") || path.ends_with("/grpc") {
        refused.fetch_add(1, Ordering::SeqCst);
        let body = "{\"message\":\"page not found\"}";
        let answer = format!(
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut client = client;
        let _ = client.write_all(answer.as_bytes());
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    pipe(client, reader, &head, backend);
}

fn read_head(reader: &mut BufReader<UnixStream>) -> Option<Vec<String>> {
    let mut lines = Vec::new();
    let mut limited = reader.by_ref().take(64 * 1024);
    loop {
        let mut line = String::new();
        if limited.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return (!lines.is_empty()).then_some(lines);
        }
        lines.push(line.to_owned());
    }
}

/// Relays one request (made `Connection: close`, so the next comes on a new connection and
/// is looked at too) and its answer.
fn pipe(client: UnixStream, reader: BufReader<UnixStream>, head: &[String], backend: &Path) {
    let Ok(mut upstream) = UnixStream::connect(backend) else {
        return;
    };
    let mut lines: Vec<&str> = head
        .iter()
        .map(String::as_str)
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    let mut bytes = lines.join("\r\n").into_bytes();
    bytes.extend_from_slice(b"\r\n\r\n");
    bytes.extend_from_slice(reader.buffer());
    if upstream.write_all(&bytes).is_err() {
        return;
    }
    let (Ok(mut up_read), Ok(mut up_write)) = (upstream.try_clone(), upstream.try_clone()) else {
        return;
    };
    let mut client_read = reader.into_inner();
    std::thread::spawn(move || {
        let _ = io::copy(&mut client_read, &mut up_write);
        let _ = up_write.shutdown(Shutdown::Write);
    });
    let mut client_write = client;
    let _ = io::copy(&mut up_read, &mut client_write);
    let _ = client_write.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
}

/// Processes on this machine whose command line is exactly `argv` (a build's RUN process
/// shows in the host's /proc).
pub fn processes_running(argv: &[&str]) -> usize {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want))
                .count()
        })
        .unwrap_or(0)
}
