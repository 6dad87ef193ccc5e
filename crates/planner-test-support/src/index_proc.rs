//! The process side of the package-index test servers ([`super::pypi_index`] and
//! [`super::npm_registry`]): where their programs are, a free loopback port, and a server run
//! under a small `sh` that holds its directory.
//!
//! scripts/test-env.sh (`install_index_servers`, called by scripts/test.sh) installs pinned
//! pypiserver, simple-repository-server and verdaccio under `$PLANNER_TOOLS_DIR` (default
//! `~/.cache/planner-test-tools`) and exports `PLANNER_TEST_PYPISERVER`,
//! `PLANNER_TEST_PYPI_JSON_PYTHON` and `PLANNER_TEST_VERDACCIO`; without those variables the
//! programs are looked up in `$PLANNER_TOOLS_DIR/bin/`, so `cargo test` alone works once the
//! script has run.
//!
//! Lifetime: the server runs under `sh`, which waits on a pipe this process holds open. When
//! the [`ServerProcess`] is dropped, or the test process exits however it exits (a panic, an
//! abort, SIGKILL), the pipe closes and the shell kills the server (SIGKILL), waits for it and
//! removes the server's directory. So a server shared by a test binary (a `static`, never
//! dropped) dies with the binary too, which `PR_SET_PDEATHSIG` cannot do for a server started
//! on a test's thread.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to answer after it was started (verdaccio takes 1.5 s idle).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The program `name` (`pypi-server`, `verdaccio`): `$env_var` if set, else
/// `$PLANNER_TOOLS_DIR/bin/name`. Panics with the fix when it is not there.
pub fn tool(env_var: &str, name: &str) -> PathBuf {
    let path = match std::env::var_os(env_var) {
        Some(path) => PathBuf::from(path),
        None => tools_dir().join("bin").join(name),
    };
    assert!(
        path.exists(),
        "{name} not found at {} ({env_var} unset or wrong): run the suite through scripts/test.sh, \
         which installs it (or `source scripts/test-env.sh && install_index_servers`)",
        path.display()
    );
    path
}

fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PLANNER_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    cache.join("planner-test-tools")
}

/// A loopback port nothing listened on a moment ago (a server may still take it first: the
/// servers here retry with another port when they fail to start).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

/// A name unique to this test process and call, for tests that share one server:
/// `{prefix}-{pid}-{n}` (lower case, digits and hyphens: valid on PyPI and npm alike).
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// A fresh directory for one server (kept: the shell removes it when the server stops).
pub fn server_dir(prefix: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a temp dir")
        .keep()
}

/// `GET url` with a 5 s timeout, no redirects followed: the status, or `None` when nothing
/// answers (a server still starting). On its own thread and runtime, like
/// `registry::http_request`, so it works from sync and async tests alike.
pub fn probe(url: &str) -> Option<u16> {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        runtime.block_on(async {
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(5))
                .build()
                .ok()?;
            let response = client.get(&url).send().await.ok()?;
            Some(response.status().as_u16())
        })
    })
    .join()
    .ok()
    .flatten()
}

/// One server program under its guarding shell; see the module docs.
pub struct ServerProcess {
    dir: PathBuf,
    log: PathBuf,
    /// The shell whose stdin this process holds open.
    shell: Mutex<Child>,
}

impl ServerProcess {
    /// Starts `program args` with stdout and stderr appended to `dir/log_name`; `dir` is
    /// removed when the server stops.
    pub fn spawn(dir: &Path, log_name: &str, program: &Path, args: &[String]) -> ServerProcess {
        const SCRIPT: &str = r#"dir=$1 log=$2; shift 2
"$@" </dev/null >>"$log" 2>&1 &
pid=$!
echo "$pid" >"$dir/server.pid"
read -r _ || true
kill -KILL "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$dir"
"#;
        let log = dir.join(log_name);
        let shell = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("sh")
            .arg(dir)
            .arg(&log)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sh");
        ServerProcess {
            dir: dir.to_owned(),
            log,
            shell: Mutex::new(shell),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's output so far (its last 40 lines).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Whether the server process is still running (not exited, not a zombie).
    pub fn running(&self) -> bool {
        let Ok(pid) = std::fs::read_to_string(self.dir.join("server.pid")) else {
            // The shell has not written it yet: the server is being started.
            return true;
        };
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
        // `pid (comm) S ...`: the state follows the last ')'.
        stat.is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
        })
    }

    /// Polls `ready` every 50 ms until it is true; `Err(log tail)` when the server exits or
    /// [`START_TIMEOUT`] passes first.
    pub fn wait_ready(&self, mut ready: impl FnMut() -> bool) -> Result<Duration, String> {
        let start = Instant::now();
        while start.elapsed() < START_TIMEOUT {
            if ready() {
                return Ok(start.elapsed());
            }
            if !self.running() {
                return Err(format!("it exited; its log:\n{}", self.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "no answer after {START_TIMEOUT:?}; its log:\n{}",
            self.log_tail()
        ))
    }

    /// Stops the server now (as dropping does) and waits until it is gone.
    pub fn stop(&self) {
        let mut shell = self.shell.lock().unwrap_or_else(|e| e.into_inner());
        drop(shell.stdin.take());
        let _ = shell.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
