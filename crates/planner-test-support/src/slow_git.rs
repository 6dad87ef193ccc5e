//! Hostile-but-valid git hosts for the time-limit tests, and a scan for leftover git processes.
//!
//! [`DripProxy`] sits in front of a [`GitServer`](super::git_server::GitServer): it forwards
//! every request, answers ref listings (`ls-refs`, `info/refs`) at once, and drips the answer
//! to a `fetch` one byte a second, the way a stalled host does. [`SilentListener`] accepts TCP
//! connections and never sends a byte (an ssh host that never sends its banner).
//! [`git_processes_in`] lists the live git (and ssh) processes that work in or name a directory.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long to wait for a drip to begin before a test gives up.
const START_WAIT: Duration = Duration::from_secs(60);

/// A forwarding proxy on 127.0.0.1 that drips fetch answers; stops when dropped.
pub struct DripProxy {
    addr: SocketAddr,
    state: Arc<DripState>,
}

struct DripState {
    upstream: SocketAddr,
    /// Send nothing of a fetch answer's body at all (a host that went silent).
    stall: bool,
    stop: AtomicBool,
    /// Fetch answers whose dripping has begun.
    drips: AtomicUsize,
}

impl DripProxy {
    /// Proxies to `upstream` (e.g. the git server's address), dripping fetch answers.
    pub fn start(upstream: SocketAddr) -> DripProxy {
        DripProxy::spawn(upstream, false)
    }

    /// Like [`DripProxy::start`], but a fetch answer's body never comes: after its head the
    /// connection stays open and silent until the proxy is dropped.
    pub fn stalling(upstream: SocketAddr) -> DripProxy {
        DripProxy::spawn(upstream, true)
    }

    fn spawn(upstream: SocketAddr, stall: bool) -> DripProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(DripState {
            upstream,
            stall,
            stop: AtomicBool::new(false),
            drips: AtomicUsize::new(0),
        });
        let for_loop = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if for_loop.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let state = Arc::clone(&for_loop);
                std::thread::spawn(move || {
                    let _ = proxy_one(stream, &state);
                });
            }
        });
        DripProxy { addr, state }
    }

    /// `http://127.0.0.1:PORT/`
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// How many fetch answers have started dripping.
    pub fn drips(&self) -> usize {
        self.state.drips.load(Ordering::SeqCst)
    }

    /// Waits until a fetch answer is being dripped (a clone is in progress).
    pub fn wait_for_drip(&self) {
        let start = Instant::now();
        while self.drips() == 0 {
            assert!(
                start.elapsed() < START_WAIT,
                "no fetch reached the drip proxy"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for DripProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Forwards one request (the server closes after each answer) and relays or drips the answer.
fn proxy_one(client: TcpStream, state: &DripState) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let request = read_raw_request(&mut reader)?;
    let drip = is_fetch(&request);
    let mut upstream = TcpStream::connect(state.upstream)?;
    upstream.write_all(&request)?;
    let mut answer = Vec::new();
    upstream.read_to_end(&mut answer)?;
    let mut client = client;
    if !drip {
        return client.write_all(&answer);
    }
    state.drips.fetch_add(1, Ordering::SeqCst);
    let body_at = find(&answer, b"\r\n\r\n").map_or(0, |i| i + 4);
    client.write_all(&answer[..body_at])?;
    while state.stall && !state.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
    }
    for byte in &answer[body_at..] {
        if state.stop.load(Ordering::SeqCst) {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        client.write_all(std::slice::from_ref(byte))?;
    }
    Ok(())
}

/// A v2 `command=fetch` (or a v0 `want`) POST to upgrade-pack: the answer carries the pack.
fn is_fetch(request: &[u8]) -> bool {
    let head_end = find(request, b"\r\n\r\n").unwrap_or(request.len());
    let first_line = String::from_utf8_lossy(&request[..head_end]);
    first_line.starts_with("POST ")
        && first_line.contains("git-upload-pack")
        && (find(request, b"command=fetch").is_some() || find(request, b"want ").is_some())
}

/// The request's bytes as sent: head, then a `Content-Length` or chunked body.
fn read_raw_request(reader: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut length = 0usize;
    let mut chunked = false;
    loop {
        let n = reader.read_until(b'\n', &mut raw)?;
        let line_start = raw.len() - n;
        let line = String::from_utf8_lossy(&raw[line_start..]).to_ascii_lowercase();
        if n == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some(v) = line.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        chunked |= line.starts_with("transfer-encoding:") && line.contains("chunked");
    }
    if chunked {
        copy_chunked(reader, &mut raw)?;
    } else {
        let start = raw.len();
        raw.resize(start + length, 0);
        reader.read_exact(&mut raw[start..])?;
    }
    Ok(raw)
}

/// Copies a chunked body, framing included, up to and with its last (empty) chunk.
fn copy_chunked(reader: &mut BufReader<TcpStream>, raw: &mut Vec<u8>) -> io::Result<()> {
    loop {
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line)?;
        raw.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line);
        let size = usize::from_str_radix(text.trim().split(';').next().unwrap_or("0"), 16)
            .map_err(|_| io::Error::other("bad chunk size"))?;
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                let mut trailer = Vec::new();
                reader.read_until(b'\n', &mut trailer)?;
                raw.extend_from_slice(&trailer);
                if trailer.is_empty() || trailer == b"\r\n" || trailer == b"\n" {
                    return Ok(());
                }
            }
        }
        let start = raw.len();
        raw.resize(start + size + 2, 0);
        reader.read_exact(&mut raw[start..])?;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A TCP listener on 127.0.0.1 that accepts connections and never writes; stops when dropped.
pub struct SilentListener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl SilentListener {
    pub fn start() -> SilentListener {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let stop = Arc::new(AtomicBool::new(false));
        let for_loop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                if for_loop.load(Ordering::SeqCst) {
                    return;
                }
                // Held open, never written to, until the listener stops.
                held.extend(stream.ok());
            }
        });
        SilentListener { addr, stop }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Live (non-zombie) `git*` and `ssh` processes whose working directory, command line or
/// environment names `dir`, as `pid: command line` lines.
pub fn git_processes_in(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| describe_if_git_in(&e.path(), &needle))
        .collect()
}

fn describe_if_git_in(proc_dir: &Path, needle: &str) -> Option<String> {
    let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
    let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    let cmdline = std::fs::read(proc_dir.join("cmdline")).ok()?;
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let name = String::from_utf8_lossy(argv0);
    let name = name.rsplit('/').next().unwrap_or_default();
    if !(name.starts_with("git") || name == "ssh") {
        return None;
    }
    let cwd = std::fs::read_link(proc_dir.join("cwd")).unwrap_or_default();
    let environ = std::fs::read(proc_dir.join("environ")).unwrap_or_default();
    let names_dir = cwd.to_string_lossy().contains(needle)
        || String::from_utf8_lossy(&cmdline).contains(needle)
        || String::from_utf8_lossy(&environ).contains(needle);
    names_dir.then(|| {
        let shown = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        format!("{}: {shown}", proc_dir.display())
    })
}

/// Waits up to `limit` for every git process naming `dir` to be gone; returns those left.
pub fn git_processes_gone_within(dir: &Path, limit: Duration) -> Vec<String> {
    let start = Instant::now();
    loop {
        let left = git_processes_in(dir);
        if left.is_empty() || start.elapsed() > limit {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
