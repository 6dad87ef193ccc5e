//! A real git smart-HTTP host for integration tests: `git http-backend` (CGI) behind a small
//! std-only HTTP/1.1 server on 127.0.0.1, one thread per connection, `Connection: close`.
//!
//! It owns the bare repositories (`<root>/<repo>.git`, HEAD on `main`), the helpers that commit
//! into them through a scratch worktree, per-repo token protection (HTTP Basic, any user),
//! forced failures, and a log of every request with its protocol version and git command.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;

/// Cap on the request line plus headers.
const MAX_HEAD: usize = 64 * 1024;
/// Cap on a request body (after de-chunking).
const MAX_BODY: usize = 256 * 1024 * 1024;
/// Cap on one chunk-size line of a chunked body.
const MAX_CHUNK_LINE: u64 = 1024;
/// Socket read/write timeout, so a stuck client cannot hold a thread forever.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// How long, and how much, to drain from a client after answering.
const LINGER: Duration = Duration::from_secs(2);
const MAX_DRAIN: u64 = 1024 * 1024;
const REALM: &str = "planner-test";

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct RequestLog {
    pub method: String,
    /// The request path, e.g. `/tpl/info/refs`.
    pub path: String,
    pub query: String,
    /// The `Git-Protocol` header, e.g. `version=2`.
    pub git_protocol: Option<String>,
    /// `ls-refs` / `fetch` (protocol v2 `command=`), `upload-pack` for v0 POSTs; `None` for
    /// GETs and for git's auth probe (a POST of a lone flush before a chunked body).
    pub command: Option<String>,
    pub status: u16,
    /// The request passed the auth check: the repo needs no token, or the token matched.
    pub authorized: bool,
}

/// A git smart-HTTP server on 127.0.0.1; stops accepting when dropped.
pub struct GitServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    // Dropped after `Drop::drop` stopped the accept loop.
    _root: tempfile::TempDir,
    scratch: tempfile::TempDir,
}

/// State shared with the connection threads.
struct Shared {
    root: PathBuf,
    home: PathBuf,
    stop: AtomicBool,
    tokens: Mutex<HashMap<String, String>>,
    fail: Mutex<HashMap<String, u16>>,
    /// Per (repo, method): a forced status, or a redirect to another base URL.
    by_method: Mutex<HashMap<(String, String), Forced>>,
    log: Mutex<Vec<RequestLog>>,
}

/// A forced answer to one method of one repo.
#[derive(Clone, Debug)]
pub enum Forced {
    Status(u16),
    /// `302 Found` to `<base><path>?<query>` (base without trailing slash).
    RedirectTo(String),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl GitServer {
    /// Binds 127.0.0.1:0 and serves until dropped.
    pub fn start() -> GitServer {
        let root = tempfile::tempdir().expect("tempdir for the git root");
        let scratch = tempfile::tempdir().expect("tempdir for HOME and worktrees");
        let home = scratch.path().join("home");
        std::fs::create_dir(&home).expect("create HOME");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            root: root.path().to_path_buf(),
            home,
            stop: AtomicBool::new(false),
            tokens: Mutex::default(),
            fail: Mutex::default(),
            by_method: Mutex::default(),
            log: Mutex::default(),
        });
        let for_loop = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("git-server-accept".into())
            .spawn(move || accept_loop(&listener, &for_loop))
            .expect("spawn the accept loop");
        GitServer {
            addr,
            shared,
            accept: Some(accept),
            _root: root,
            scratch,
        }
    }

    /// `http://127.0.0.1:PORT/`
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The clone URL of `repo` (served from `<root>/<repo>.git`).
    pub fn url(&self, repo: &str) -> String {
        format!("{}{repo}", self.base_url())
    }

    /// `GIT_PROJECT_ROOT`.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// Requests for `repo` need HTTP Basic auth whose password is `token` (any user).
    pub fn require_token(&self, repo: &str, token: &str) {
        lock(&self.shared.tokens).insert(repo.to_owned(), token.to_owned());
    }

    /// Forces `status` for every request of `repo`; `None` serves it normally again.
    pub fn set_fail(&self, repo: &str, status: Option<u16>) {
        let mut fail = lock(&self.shared.fail);
        match status {
            Some(s) => fail.insert(repo.to_owned(), s),
            None => fail.remove(repo),
        };
    }

    /// Forces the answer to `method` requests (`GET`, `POST`) of `repo`; `None` clears it.
    pub fn force_method(&self, repo: &str, method: &str, forced: Option<Forced>) {
        let key = (repo.to_owned(), method.to_owned());
        let mut map = lock(&self.shared.by_method);
        match forced {
            Some(f) => map.insert(key, f),
            None => map.remove(&key),
        };
    }

    pub fn requests(&self) -> Vec<RequestLog> {
        lock(&self.shared.log).clone()
    }

    pub fn clear_log(&self) {
        lock(&self.shared.log).clear();
    }

    /// Requests for `repo` that fetched objects (v2 `fetch` or a v0 upload-pack POST).
    pub fn fetch_count(&self, repo: &str) -> usize {
        let log = lock(&self.shared.log);
        log.iter()
            .filter(|r| repo_of(&r.path) == repo)
            .filter(|r| matches!(r.command.as_deref(), Some("fetch" | "upload-pack")))
            .count()
    }

    /// Creates the bare repo `repo` with one commit of `files` on `main`; returns its sha.
    pub fn create_repo(&self, repo: &str, files: &[(&str, &[u8])]) -> String {
        let bare = self.bare(repo);
        if let Some(parent) = bare.parent() {
            std::fs::create_dir_all(parent).expect("create the repo's parent directory");
        }
        let bare_arg = bare.to_str().expect("utf-8 temp path");
        self.git(
            &self.shared.root,
            &["init", "-q", "--bare", "--initial-branch=main", bare_arg],
        );
        self.commit(repo, "main", files)
    }

    /// Commits `files` (written or overwritten) on top of `branch`, creating the branch from
    /// `main` when missing; returns the new commit's sha.
    pub fn commit(&self, repo: &str, branch: &str, files: &[(&str, &[u8])]) -> String {
        self.edit(repo, branch, |work| {
            for (path, bytes) in files {
                let file = prepare_path(work, path);
                std::fs::write(&file, bytes).expect("write a file into the worktree");
            }
        })
    }

    /// Commits a symlink `path` -> `target` on top of `branch`; returns the new commit's sha.
    pub fn add_symlink(&self, repo: &str, branch: &str, path: &str, target: &str) -> String {
        self.edit(repo, branch, |work| {
            let link = prepare_path(work, path);
            std::os::unix::fs::symlink(target, link).expect("create a symlink in the worktree");
        })
    }

    fn bare(&self, repo: &str) -> PathBuf {
        self.shared.root.join(format!("{repo}.git"))
    }

    /// Checks out `branch` (or `main`, or nothing) in a fresh worktree, lets `change` edit it,
    /// commits everything and pushes the commit to `branch` of the bare repo.
    fn edit(&self, repo: &str, branch: &str, change: impl FnOnce(&Path)) -> String {
        let bare = self.bare(repo);
        let bare = bare.to_str().expect("utf-8 temp path");
        let work = tempfile::tempdir_in(self.scratch.path()).expect("worktree tempdir");
        let work = work.path();
        self.git(work, &["init", "-q", &format!("--initial-branch={branch}")]);
        if let Some(base) = [branch, "main"]
            .into_iter()
            .find(|b| self.has_branch(bare, b))
        {
            self.git(work, &["fetch", "-q", bare, &format!("refs/heads/{base}")]);
            self.git(work, &["reset", "-q", "--hard", "FETCH_HEAD"]);
        }
        change(work);
        self.git(work, &["add", "-A"]);
        self.git(
            work,
            &[
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                &format!("test commit on {branch}"),
            ],
        );
        self.git(
            work,
            &["push", "-q", bare, &format!("HEAD:refs/heads/{branch}")],
        );
        self.git(work, &["rev-parse", "HEAD"]).trim().to_owned()
    }

    fn has_branch(&self, bare: &str, branch: &str) -> bool {
        let refname = format!("refs/heads/{branch}");
        let args = ["--git-dir", bare, "rev-parse", "--verify", "-q", &refname];
        self.git_command(&self.shared.root, &args)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Runs git in `dir`; panics with its stderr on failure; returns its stdout.
    fn git(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.git_command(dir, args).output().expect("run git");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "git {args:?} in {}: {stderr}",
            dir.display()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// git with an isolated configuration (no system/global config, no inherited `GIT_*`).
    fn git_command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("git");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("GIT_") {
                cmd.env_remove(key);
            }
        }
        cmd.current_dir(dir)
            .env("HOME", &self.shared.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .args([
                "-c",
                "user.name=planner-test",
                "-c",
                "user.email=test@planner.invalid",
            ])
            .args([
                "-c",
                "commit.gpgsign=false",
                "-c",
                "core.autocrlf=false",
                "-c",
                "core.symlinks=true",
            ])
            .args(args)
            .stdin(Stdio::null());
        cmd
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept(); join only if the wake-up connection went through.
        if TcpStream::connect(self.addr).is_ok()
            && let Some(handle) = self.accept.take()
        {
            let _ = handle.join();
        }
    }
}

/// Creates the parent directories of `path` in `work` and removes what is there already.
fn prepare_path(work: &Path, path: &str) -> PathBuf {
    let full = work.join(path);
    if let Some(parent) = full.parent() {
        std::fs::create_dir_all(parent).expect("create directories in the worktree");
    }
    if full.symlink_metadata().is_ok() {
        std::fs::remove_file(&full).expect("replace a file in the worktree");
    }
    full
}

/// The repo a request path belongs to: `/org/tpl.git/info/refs` -> `org/tpl`.
pub fn repo_of(path: &str) -> &str {
    let path = path.trim_start_matches('/');
    let path = [
        "/info/refs",
        "/git-upload-pack",
        "/git-receive-pack",
        "/HEAD",
    ]
    .iter()
    .find_map(|suffix| path.strip_suffix(suffix))
    .or_else(|| path.find("/objects/").map(|i| &path[..i]))
    .unwrap_or(path);
    path.strip_suffix(".git").unwrap_or(path)
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let shared = Arc::clone(shared);
        // A failed spawn drops (closes) the connection; the loop goes on.
        let _ = std::thread::Builder::new()
            .name("git-server-conn".into())
            .spawn(move || serve_connection(stream, &shared));
    }
}

// ---- HTTP ----------------------------------------------------------------------------------

/// A parsed HTTP request.
struct Request {
    method: String,
    path: String,
    query: String,
    /// Lower-case names.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request could not be read.
enum ReadError {
    /// Malformed: answer 400.
    Bad(String),
    /// Head over 64 KiB or body over the cap.
    TooLarge(u16),
    /// The connection failed or closed: answer nothing.
    Io,
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> Self {
        ReadError::Io
    }
}

/// A response to send.
struct Response {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            reason: reason(status).to_owned(),
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: body.as_bytes().to_vec(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let peer = stream
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".into());
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    let response = match read_request(&mut reader, &mut writer) {
        Ok(req) => handle(shared, &req, &peer),
        Err(ReadError::Bad(why)) => Response::text(400, &format!("bad request: {why}\n")),
        Err(ReadError::TooLarge(status)) => Response::text(status, "request too large\n"),
        Err(ReadError::Io) => return,
    };
    let _ = write_response(&mut writer, &response);
    linger(&mut reader, &writer);
}

/// Closes our side, then drains what the client still sends (bounded, briefly), so that
/// closing with unread input does not reset the connection before the client read the answer.
fn linger(reader: &mut BufReader<TcpStream>, writer: &TcpStream) {
    let _ = writer.shutdown(std::net::Shutdown::Write);
    let _ = writer.set_read_timeout(Some(LINGER));
    let _ = io::copy(&mut reader.by_ref().take(MAX_DRAIN), &mut io::sink());
}

fn write_response(out: &mut TcpStream, resp: &Response) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, resp.reason);
    for (name, value) in &resp.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        resp.body.len()
    ));
    out.write_all(head.as_bytes())?;
    out.write_all(&resp.body)?;
    out.flush()
}

fn read_request(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
) -> Result<Request, ReadError> {
    let lines = read_head(reader)?;
    let (request_line, header_lines) = lines.split_first().ok_or(ReadError::Io)?;
    let (method, target) = parse_request_line(request_line)?;
    let headers = header_lines
        .iter()
        .map(|l| parse_header(l))
        .collect::<Result<Vec<_>, _>>()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut req = Request {
        method: method.to_owned(),
        path: percent_decode(path)?,
        query: query.to_owned(),
        headers,
        body: Vec::new(),
    };
    if req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    req.body = read_body(reader, &req)?;
    Ok(req)
}

/// Reads the request line and headers (without the blank line), at most `MAX_HEAD` bytes.
fn read_head(reader: &mut BufReader<TcpStream>) -> Result<Vec<String>, ReadError> {
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = Vec::new();
        let limit = (MAX_HEAD - total) as u64;
        let n = reader.by_ref().take(limit).read_until(b'\n', &mut line)?;
        total += n;
        if !line.ends_with(b"\n") {
            return Err(if n == 0 && total == 0 {
                ReadError::Io
            } else {
                too_large_or_cut(total)
            });
        }
        let text =
            String::from_utf8(line).map_err(|_| ReadError::Bad("non UTF-8 header".into()))?;
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            return Ok(lines);
        }
        lines.push(text.to_owned());
    }
}

fn too_large_or_cut(total: usize) -> ReadError {
    if total >= MAX_HEAD {
        ReadError::TooLarge(431)
    } else {
        ReadError::Bad("truncated request head".into())
    }
}

fn parse_request_line(line: &str) -> Result<(&str, &str), ReadError> {
    let bad = || ReadError::Bad(format!("malformed request line {line:?}"));
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let method_ok = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase());
    if !method_ok || !target.starts_with('/') || !version.starts_with("HTTP/1.") {
        return Err(bad());
    }
    Ok((method, target))
}

fn parse_header(line: &str) -> Result<(String, String), ReadError> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| ReadError::Bad(format!("malformed header {line:?}")))?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(ReadError::Bad(format!("malformed header name {name:?}")));
    }
    Ok((name.to_ascii_lowercase(), value.trim().to_owned()))
}

/// Decodes `%XX` escapes of a request path.
fn percent_decode(path: &str) -> Result<String, ReadError> {
    let bad = || ReadError::Bad(format!("bad escape in path {path:?}"));
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = path.get(i + 1..i + 3).ok_or_else(bad)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

fn read_body(reader: &mut BufReader<TcpStream>, req: &Request) -> Result<Vec<u8>, ReadError> {
    if let Some(te) = req.header("transfer-encoding") {
        if !te.eq_ignore_ascii_case("chunked") {
            return Err(ReadError::Bad(format!(
                "unsupported Transfer-Encoding {te:?}"
            )));
        }
        return read_chunked(reader);
    }
    let Some(len) = req.header("content-length") else {
        return Ok(Vec::new());
    };
    let len: usize = len
        .parse()
        .map_err(|_| ReadError::Bad(format!("bad Content-Length {len:?}")))?;
    if len > MAX_BODY {
        return Err(ReadError::TooLarge(413));
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(body)
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let line = read_short_line(reader)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| ReadError::Bad(format!("bad chunk size {size:?}")))?;
        if size == 0 {
            // Trailers, up to the blank line.
            while !read_short_line(reader)?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(ReadError::TooLarge(413));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        if !read_short_line(reader)?.is_empty() {
            return Err(ReadError::Bad("chunk not followed by CRLF".into()));
        }
    }
}

/// One line of at most `MAX_CHUNK_LINE` bytes, without its line ending.
fn read_short_line(reader: &mut BufReader<TcpStream>) -> Result<String, ReadError> {
    let mut line = Vec::new();
    reader
        .by_ref()
        .take(MAX_CHUNK_LINE)
        .read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") {
        return Err(ReadError::Bad("truncated or overlong chunk line".into()));
    }
    let text =
        String::from_utf8(line).map_err(|_| ReadError::Bad("non UTF-8 chunk line".into()))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

// ---- routing, auth, logging ------------------------------------------------------------------

/// Answers one request (forced failure, auth, or the CGI) and logs it.
fn handle(shared: &Shared, req: &Request, peer: &str) -> Response {
    let repo = repo_of(&req.path).to_owned();
    let token = lock(&shared.tokens).get(&repo).cloned();
    let user = match &token {
        Some(token) => basic_user(req, token),
        None => None,
    };
    let authorized = token.is_none() || user.is_some();
    let forced = lock(&shared.fail).get(&repo).copied();
    let by_method = lock(&shared.by_method)
        .get(&(repo.clone(), req.method.clone()))
        .cloned();
    let response = if let Some(status) = forced {
        Response::text(status, "forced failure\n")
    } else if let Some(forced) = by_method {
        forced_response(&forced, req)
    } else if !authorized {
        let mut resp = Response::text(401, "authentication required\n");
        resp.headers.push((
            "WWW-Authenticate".into(),
            format!("Basic realm=\"{REALM}\""),
        ));
        resp
    } else {
        run_cgi(shared, req, peer, user.as_deref())
    };
    lock(&shared.log).push(RequestLog {
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        git_protocol: req.header("git-protocol").map(str::to_owned),
        command: command_of(req, &response),
        status: response.status,
        authorized,
    });
    response
}

fn forced_response(forced: &Forced, req: &Request) -> Response {
    match forced {
        Forced::Status(status) => Response::text(*status, "forced failure\n"),
        Forced::RedirectTo(base) => {
            let mut resp = Response::text(302, "moved\n");
            resp.reason = "Found".into();
            let query = if req.query.is_empty() {
                String::new()
            } else {
                format!("?{}", req.query)
            };
            resp.headers
                .push(("Location".into(), format!("{base}{}{query}", req.path)));
            resp
        }
    }
}

/// The Basic-auth user name when the request's password equals `token`.
fn basic_user(req: &Request, token: &str) -> Option<String> {
    let value = req.header("authorization")?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    (password == token).then(|| {
        if user.is_empty() {
            "anonymous".to_owned()
        } else {
            user.to_owned()
        }
    })
}

/// The git command of a POST to `git-upload-pack`/`git-receive-pack`.
///
/// Protocol v2 bodies start with the pkt-line `command=<name>`; anything else is v0/v1
/// (`upload-pack`), except git's probe (a lone flush), which is no command. A gzip-encoded v2 body cannot be peeked with std alone: an `ls-refs`
/// answer starts with a ref line, anything else is taken as a `fetch`.
fn command_of(req: &Request, resp: &Response) -> Option<String> {
    let service = req.path.rsplit('/').next()?.strip_prefix("git-")?;
    if req.method != "POST" || !matches!(service, "upload-pack" | "receive-pack") {
        return None;
    }
    if req.body.is_empty() || req.body == b"0000" {
        return None; // git's auth probe before a chunked POST
    }
    let gzip = req
        .header("content-encoding")
        .is_some_and(|e| e.contains("gzip"));
    let v2 = req
        .header("git-protocol")
        .is_some_and(|p| p.split(':').any(|kv| kv == "version=2"));
    let peeked = if gzip { None } else { first_pkt(&req.body) };
    match peeked
        .as_deref()
        .and_then(|line| line.strip_prefix("command="))
    {
        Some(command) => Some(command.to_owned()),
        None if gzip && v2 && resp.status == 200 => Some(v2_command_from_answer(&resp.body).into()),
        None => Some(service.to_owned()),
    }
}

fn v2_command_from_answer(body: &[u8]) -> &'static str {
    let first = first_pkt(body).unwrap_or_default();
    let looks_like_ref = first
        .split(' ')
        .next()
        .is_some_and(|oid| oid.len() >= 40 && oid.bytes().all(|b| b.is_ascii_hexdigit()));
    if looks_like_ref { "ls-refs" } else { "fetch" }
}

/// The first data pkt-line of `buf`, without its trailing newline.
fn first_pkt(buf: &[u8]) -> Option<String> {
    let len = usize::from_str_radix(std::str::from_utf8(buf.get(..4)?).ok()?, 16).ok()?;
    let data = buf.get(4..len)?;
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    Some(String::from_utf8_lossy(data).into_owned())
}

// ---- CGI ---------------------------------------------------------------------------------------

/// Runs `git http-backend` for `req` and turns its CGI output into a response.
#[allow(clippy::print_stderr)] // the backend's stderr, for the test's output
fn run_cgi(shared: &Shared, req: &Request, peer: &str, user: Option<&str>) -> Response {
    let output = match spawn_cgi(shared, req, peer, user) {
        Ok(out) => out,
        Err(e) => return Response::text(502, &format!("cannot run git http-backend: {e}\n")),
    };
    if !output.stderr.is_empty() {
        eprintln!(
            "git http-backend {}: {}",
            req.path,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    parse_cgi(&output.stdout)
        .unwrap_or_else(|| Response::text(502, "git http-backend gave no CGI headers\n"))
}

fn spawn_cgi(
    shared: &Shared,
    req: &Request,
    peer: &str,
    user: Option<&str>,
) -> io::Result<std::process::Output> {
    let mut cmd = cgi_command(shared, req, peer, user);
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let body = req.body.clone();
    // Feed the body concurrently: the backend may answer before reading all of it.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let output = child.wait_with_output();
    let _ = feeder.join();
    output
}

fn cgi_command(shared: &Shared, req: &Request, peer: &str, user: Option<&str>) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &shared.home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", &shared.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("REQUEST_METHOD", &req.method)
        .env("PATH_INFO", &req.path)
        .env("QUERY_STRING", &req.query)
        .env("CONTENT_LENGTH", req.body.len().to_string())
        .env("REMOTE_ADDR", peer)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let optional = [
        ("CONTENT_TYPE", req.header("content-type")),
        ("HTTP_GIT_PROTOCOL", req.header("git-protocol")),
        ("HTTP_CONTENT_ENCODING", req.header("content-encoding")),
        ("REMOTE_USER", user),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            cmd.env(key, value);
        }
    }
    cmd
}

/// Splits CGI output into `Status:`, the other headers, and the body.
fn parse_cgi(out: &[u8]) -> Option<Response> {
    let (head, body) = split_cgi(out)?;
    let head = String::from_utf8_lossy(head);
    let mut resp = Response {
        status: 200,
        reason: "OK".into(),
        headers: Vec::new(),
        body: body.to_vec(),
    };
    for line in head
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
    {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let (code, text) = value.split_once(' ').unwrap_or((value, ""));
            resp.status = code.parse().ok()?;
            resp.reason = if text.is_empty() {
                reason(resp.status).into()
            } else {
                text.into()
            };
        } else if !name.eq_ignore_ascii_case("content-length") {
            resp.headers.push((name.to_owned(), value.to_owned()));
        }
    }
    Some(resp)
}

/// The CGI header block and the body after the first blank line (CRLF or LF).
fn split_cgi(out: &[u8]) -> Option<(&[u8], &[u8])> {
    let crlf = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    let lf = out
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    let (end, start) = match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    Some((&out[..end], &out[start..]))
}
