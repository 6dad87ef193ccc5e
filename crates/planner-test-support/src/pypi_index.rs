//! Real PyPI-compatible indexes for the `resolve-version` tests, on 127.0.0.1 over a
//! directory of package files the test writes (pinned by scripts/test-env.sh):
//! - [`PypiFlavor::Pypiserver`] ([`PypiIndex::start`]): pypiserver, PEP 503 HTML only; the
//!   one with Basic auth.
//! - [`PypiFlavor::SimpleRepository`] ([`PypiIndex::start_json`]): simple-repository-server's
//!   library behind pypi_json_index.py (beside this file): PEP 691 JSON by content
//!   negotiation and PEP 592 yanking ([`PypiIndex::yank`]), neither of which any pypiserver
//!   release has (pypiserver issues #508 and #555, open).
//!
//! What pypiserver 2.4.2 answers (pinned down in tests/index_smoke.rs; read in its `_app.py`):
//! - `GET /simple/<name>/`: `200 text/html; charset=UTF-8` whatever the `Accept`; no PEP 629
//!   `pypi:repository-version` meta. One `<a href="/packages/<file>#sha256=<hex>">file</a><br>`
//!   per file, sorted by version; hrefs are absolute paths. No `data-yanked`, no
//!   `data-requires-python`. HTTP/1.0, `Server: WSGIServer/0.2`, one request at a time.
//! - A name that is not normalized (`Demo_Pkg`, `demo.pkg`) answers `301` to the full URL
//!   `http://127.0.0.1:PORT/simple/demo-pkg/`; a missing trailing slash `301`s to the same
//!   spelling with one. An unknown project is `404` (`--disable-fallback`; pypiserver's
//!   default would redirect it to pypi.org).
//! - `/<name>/json` is pypiserver's own `{"info": {"version": …}, "releases": …}`: its
//!   `info.version` counts pre-releases. Not a standard API; do not use it.
//! - New and removed files show at once: without the `watchdog` extra pypiserver caches no
//!   listing (`--backend auto` picks the uncached one), and it reads each file to hash it.
//! - With Basic auth ([`PypiIndex::start_with_basic_auth`]) listing and downloads need it (an
//!   htpasswd file, apr1-md5): no credentials answer `401` with `WWW-Authenticate: Basic
//!   realm="pypi"`, wrong ones `403`.
//!
//! What simple-repository-server 0.10.0 (simple-repository 0.11.1) answers:
//! - `GET /simple/<name>/` with `Accept: application/vnd.pypi.simple.v1+json`: `200` of that
//!   content type, `{"meta": {"api-version": "1.1"}, "name", "files": [{"filename", "url",
//!   "hashes": {}, "size", "upload-time", "yanked": "<reason>"?}], "versions": [...]}`
//!   (`versions` unsorted); otherwise `text/html; charset=utf-8` with the PEP 629 meta,
//!   relative hrefs `../../resources/<name>/<file>` and `data-yanked="<reason>"`.
//! - Not normalized: `301` with a *relative* `Location: ../<normalized>/`; no trailing slash:
//!   `307` to the full URL with one; unknown: `404`. HTTP/1.1, uvicorn.
//! - Files and yanks show at once (the directory and the SQLite file are read per request).
//!
//! Files: both servers only parse file names (`name-version.tar.gz`, wheels) and hash or size
//! the bytes; the files written here are real minimal ones all the same (an sdist with
//! `PKG-INFO`, a wheel with `METADATA`, `WHEEL` and `RECORD`), named as PEP 625 and the wheel
//! spec say.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::index_proc::{self, ServerProcess};
use super::registry::{HttpResponse, http_request};

pub const PYPISERVER_ENV: &str = "PLANNER_TEST_PYPISERVER";
/// The python of the simple-repository-server venv.
pub const PYPI_JSON_PYTHON_ENV: &str = "PLANNER_TEST_PYPI_JSON_PYTHON";
/// The PEP 691 media type.
pub const PEP691_JSON: &str = "application/vnd.pypi.simple.v1+json";

/// The simple-repository-server venv's python under `$PLANNER_TOOLS_DIR/bin/` (a link to the
/// venv, so that python finds it).
const JSON_PYTHON: &str = "pypi-json-venv/bin/python";

/// pypiserver's realm in `WWW-Authenticate`.
pub const BASIC_REALM: &str = "pypi";

/// Which server: see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PypiFlavor {
    /// pypiserver: PEP 503 HTML, Basic auth possible, no yanking.
    Pypiserver,
    /// simple-repository-server: PEP 503 HTML and PEP 691 JSON, PEP 592 yanking, no auth.
    SimpleRepository,
}

pub struct PypiIndex {
    flavor: PypiFlavor,
    port: u16,
    packages: PathBuf,
    credentials: Option<(String, String)>,
    startup: Duration,
    process: ServerProcess,
}

static SHARED: OnceLock<PypiIndex> = OnceLock::new();
static SHARED_JSON: OnceLock<PypiIndex> = OnceLock::new();

impl PypiIndex {
    /// An open pypiserver of this test's own.
    pub fn start() -> PypiIndex {
        PypiIndex::launch(PypiFlavor::Pypiserver, None)
    }

    /// A pypiserver whose listing and downloads need Basic auth as `user:pass`.
    pub fn start_with_basic_auth(user: &str, pass: &str) -> PypiIndex {
        let credentials = Some((user.to_owned(), pass.to_owned()));
        PypiIndex::launch(PypiFlavor::Pypiserver, credentials)
    }

    /// A simple-repository-server of this test's own (PEP 691 JSON, yanking).
    pub fn start_json() -> PypiIndex {
        PypiIndex::launch(PypiFlavor::SimpleRepository, None)
    }

    /// One open pypiserver for the whole test binary, started on first use; use
    /// [`index_proc::unique_name`] for project names so tests do not see each other's files.
    pub fn shared() -> &'static PypiIndex {
        SHARED.get_or_init(PypiIndex::start)
    }

    /// [`PypiIndex::shared`] for the simple-repository-server flavor.
    pub fn shared_json() -> &'static PypiIndex {
        SHARED_JSON.get_or_init(PypiIndex::start_json)
    }

    fn launch(flavor: PypiFlavor, credentials: Option<(String, String)>) -> PypiIndex {
        let mut failures = Vec::new();
        // A port picked here can be taken before the server binds it: retry with another.
        for _ in 0..3 {
            let dir = index_proc::server_dir("pl-pypi-");
            let packages = dir.join("packages");
            std::fs::create_dir(&packages).unwrap();
            let port = index_proc::free_port();
            let started = match flavor {
                PypiFlavor::Pypiserver => spawn_pypiserver(&dir, port, credentials.as_ref()),
                PypiFlavor::SimpleRepository => spawn_simple_repository(&dir, port),
            };
            match started {
                Ok((process, startup)) => {
                    return PypiIndex {
                        flavor,
                        port,
                        packages,
                        credentials,
                        startup,
                        process,
                    };
                }
                Err(why) => failures.push(why),
            }
        }
        panic!(
            "{flavor:?} did not start on 127.0.0.1:\n{}",
            failures.join("\n---\n")
        )
    }

    pub fn flavor(&self) -> PypiFlavor {
        self.flavor
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT/simple/`, the index URL (as `PIP_INDEX_URL` names it).
    pub fn simple_url(&self) -> String {
        format!("{}/simple/", self.base_url())
    }

    /// `http://user:pass@127.0.0.1:PORT/simple/` for an index with Basic auth (the
    /// `PIP_INDEX_URL` form with userinfo); the plain URL for an open one.
    pub fn simple_url_with_credentials(&self) -> String {
        match &self.credentials {
            Some((user, pass)) => format!("http://{user}:{pass}@127.0.0.1:{}/simple/", self.port),
            None => self.simple_url(),
        }
    }

    /// `http://127.0.0.1:PORT/simple/<normalized>/`
    pub fn project_url(&self, project: &str) -> String {
        format!("{}{}/", self.simple_url(), normalize(project))
    }

    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// How long the server took to answer after it was started.
    pub fn startup(&self) -> Duration {
        self.startup
    }

    /// Where the file `file` of `project` is (pypiserver: one flat directory;
    /// simple-repository: a directory per normalized project).
    pub fn file_path(&self, project: &str, file: &str) -> PathBuf {
        match self.flavor {
            PypiFlavor::Pypiserver => self.packages.join(file),
            PypiFlavor::SimpleRepository => self.packages.join(normalize(project)).join(file),
        }
    }

    /// The server's output (startup lines, errors; simple-repository's access lines).
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Releases `version` of `project` as an sdist `{name}-{version}.tar.gz` (PEP 625 name:
    /// normalized, `_` for runs of `-_.`); returns the file name.
    pub fn add(&self, project: &str, version: &str) -> String {
        let file = format!("{}-{version}.tar.gz", dist_name(project));
        self.add_file(project, &file, &sdist(project, version));
        file
    }

    /// [`PypiIndex::add`] for a PEP 440 pre-release (`2.0rc1`, `1.1a2`, `3.0.dev1`, `2.0b1`);
    /// panics on a final version, so a test says which one it means.
    pub fn add_pre(&self, project: &str, version: &str) -> String {
        assert!(
            is_pre_release(version),
            "add_pre({project:?}, {version:?}): not a PEP 440 pre-release or dev release"
        );
        self.add(project, version)
    }

    /// Releases `version` of `project` as a wheel `{name}-{version}-py3-none-any.whl`;
    /// returns the file name.
    pub fn add_wheel(&self, project: &str, version: &str) -> String {
        let file = format!("{}-{version}-py3-none-any.whl", dist_name(project));
        self.add_file(project, &file, &wheel(project, version));
        file
    }

    /// Writes any file of `project` (a legacy or odd file name, hostile bytes), atomically (a
    /// listing never sees half a file).
    pub fn add_file(&self, project: &str, file: &str, bytes: &[u8]) {
        assert!(
            !file.contains('/') && !file.starts_with('.'),
            "add_file({file:?}): a plain file name (the servers skip dot files)"
        );
        let path = self.file_path(project, file);
        let dir = path.parent().unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let tmp = dir.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }

    /// Removes a file of `project` that [`PypiIndex::add`] (or its siblings) wrote.
    pub fn remove_file(&self, project: &str, file: &str) {
        std::fs::remove_file(self.file_path(project, file))
            .unwrap_or_else(|e| panic!("remove {file}: {e}"));
    }

    /// Yanks one file of `project` (PEP 592) with a reason, which must not be empty (the
    /// server ignores an empty one). simple-repository flavor only: pypiserver cannot yank.
    pub fn yank(&self, project: &str, file: &str, reason: &str) {
        self.record_yank("yanked_releases", "file_name", project, file, reason);
    }

    /// Yanks every file of one version of `project` (the way PyPI yanks a release).
    pub fn yank_version(&self, project: &str, version: &str, reason: &str) {
        self.record_yank("yanked_versions", "version", project, version, reason);
    }

    fn record_yank(&self, table: &str, column: &str, project: &str, what: &str, reason: &str) {
        assert_eq!(
            self.flavor,
            PypiFlavor::SimpleRepository,
            "pypiserver cannot yank (no PEP 592 in any release): use PypiIndex::start_json()"
        );
        assert!(!reason.is_empty(), "yank {what}: give a reason");
        let sql = format!(
            "INSERT OR REPLACE INTO {table} (project_name, {column}, reason) VALUES (?, ?, ?)"
        );
        let script = "import sqlite3, sys\n\
                      c = sqlite3.connect(sys.argv[1])\n\
                      c.execute(sys.argv[2], sys.argv[3:6])\n\
                      c.commit()\n";
        let out = Command::new(index_proc::tool(PYPI_JSON_PYTHON_ENV, JSON_PYTHON))
            .arg("-c")
            .arg(script)
            .arg(self.process.dir().join("yanks.sqlite"))
            .args([sql.as_str(), &normalize(project), what, reason])
            .output()
            .expect("run python for sqlite3");
        assert!(out.status.success(), "yank {what}: {out:?}");
    }

    /// `GET` of a path (`/simple/…`) with these headers, Basic credentials added when the
    /// index has them; redirects are not followed.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        let url = format!("{}{path}", self.base_url());
        let auth = self.credentials.as_ref().map(|(u, p)| basic(u, p));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(auth) = &auth {
            all.push(("authorization", auth));
        }
        http_request("GET", &url, &all, None)
    }

    /// The file names the index lists for `project` (the anchors' text of its simple page),
    /// in the server's order; empty for a project it does not have.
    pub fn listed(&self, project: &str) -> Vec<String> {
        let response = self.get(&format!("/simple/{}/", normalize(project)), &[]);
        if response.status == 404 {
            return Vec::new();
        }
        assert_eq!(
            response.status, 200,
            "simple page of {project}: {response:?}"
        );
        anchors(&String::from_utf8_lossy(&response.body))
            .into_iter()
            .map(|(_, text)| text)
            .collect()
    }
}

/// Starts pypiserver over `dir/packages`; the process and how long it took to answer.
fn spawn_pypiserver(
    dir: &Path,
    port: u16,
    credentials: Option<&(String, String)>,
) -> Result<(ServerProcess, Duration), String> {
    let program = index_proc::tool(PYPISERVER_ENV, "pypi-server");
    // Only this server answers 200 on this path (a foreign one on the port would not).
    let health = format!("/health-{}", index_proc::unique_name("probe"));
    let port_text = port.to_string();
    let mut args: Vec<String> = [
        "run",
        "--host",
        "127.0.0.1",
        "--port",
        &port_text,
        "--disable-fallback",
        "--health-endpoint",
        &health,
    ]
    .map(str::to_owned)
    .to_vec();
    match credentials {
        Some((user, pass)) => {
            let htpasswd = dir.join("htpasswd");
            write_htpasswd(&htpasswd, user, pass);
            args.extend(["--authenticate".into(), "list,download,update".into()]);
            args.extend(["--passwords".into(), htpasswd.display().to_string()]);
        }
        None => args.extend(["--authenticate", ".", "--passwords", "."].map(String::from)),
    }
    args.push(dir.join("packages").display().to_string());
    let process = ServerProcess::spawn(dir, "server.log", &program, &args);
    let url = format!("http://127.0.0.1:{port}{health}");
    let startup = process.wait_ready(|| index_proc::probe(&url) == Some(200))?;
    Ok((process, startup))
}

/// Starts pypi_json_index.py (beside this file) over `dir/packages` with yanks in
/// `dir/yanks.sqlite`.
fn spawn_simple_repository(dir: &Path, port: u16) -> Result<(ServerProcess, Duration), String> {
    let python = index_proc::tool(PYPI_JSON_PYTHON_ENV, JSON_PYTHON);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/pypi_json_index.py");
    let args = [
        script.display().to_string(),
        dir.join("packages").display().to_string(),
        dir.join("yanks.sqlite").display().to_string(),
        port.to_string(),
    ];
    let process = ServerProcess::spawn(dir, "server.log", &python, &args);
    let url = format!("http://127.0.0.1:{port}/simple/");
    // Ours when it answers and its own log names the port (uvicorn's "running on" line).
    let listening = format!("http://127.0.0.1:{port}");
    let log = dir.join("server.log");
    let startup = process.wait_ready(|| {
        index_proc::probe(&url) == Some(200)
            && std::fs::read_to_string(&log).is_ok_and(|text| text.contains(&listening))
    })?;
    Ok((process, startup))
}

/// PEP 503 normalization: runs of `-`, `_`, `.` become `-`, lower case.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The distribution-file spelling of a name (PEP 625, wheel spec): normalized, `_` for `-`.
pub fn dist_name(name: &str) -> String {
    normalize(name).replace('-', "_")
}

/// Whether a PEP 440 version has a pre-release (`a`, `b`, `rc`, `c`, `alpha`, `beta`, `pre`,
/// `preview`) or dev segment; enough for test data, not a version parser.
pub fn is_pre_release(version: &str) -> bool {
    let public = version
        .split('+')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let letters: Vec<String> = public
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    letters.iter().any(|w| {
        matches!(
            w.as_str(),
            "a" | "b" | "c" | "rc" | "alpha" | "beta" | "pre" | "preview" | "dev"
        )
    })
}

/// `(href, text)` of each `<a …>` of an HTML page (what pypiserver writes; not a general parser).
pub fn anchors(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<a ") {
        rest = &rest[start..];
        let Some(tag_end) = rest.find('>') else { break };
        let tag = &rest[..tag_end];
        let href = tag
            .split_once("href=\"")
            .and_then(|(_, h)| h.split_once('"'))
            .map(|(h, _)| h.to_owned())
            .unwrap_or_default();
        let after = &rest[tag_end + 1..];
        let Some(close) = after.find("</a>") else {
            break;
        };
        out.push((href, after[..close].trim().to_owned()));
        rest = &after[close..];
    }
    out
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {token}")
}

/// An htpasswd line with apr1-md5 (`htpasswd -m`), which passlib checks without a bcrypt
/// module (scripts/test-env.sh installs apache2-utils).
fn write_htpasswd(path: &Path, user: &str, pass: &str) {
    let out = std::process::Command::new("htpasswd")
        .args(["-nbm", user, pass])
        .output()
        .expect("htpasswd (apache2-utils; scripts/test-env.sh installs it)");
    assert!(out.status.success(), "htpasswd: {out:?}");
    std::fs::write(path, &out.stdout).unwrap();
}

fn metadata(project: &str, version: &str) -> String {
    format!("Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n")
}

/// A minimal sdist: `{name}-{version}/PKG-INFO` in a gzipped tar.
fn sdist(project: &str, version: &str) -> Vec<u8> {
    let root = format!("{}-{version}", dist_name(project));
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let pkg_info = metadata(project, version);
    let mut header = tar::Header::new_gnu();
    header.set_size(pkg_info.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, format!("{root}/PKG-INFO"), pkg_info.as_bytes())
        .unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

/// A minimal pure-Python wheel: `METADATA`, `WHEEL` and `RECORD` in `{name}-{version}.dist-info`.
fn wheel(project: &str, version: &str) -> Vec<u8> {
    let info = format!("{}-{version}.dist-info", dist_name(project));
    let files = [
        (format!("{info}/METADATA"), metadata(project, version)),
        (
            format!("{info}/WHEEL"),
            "Wheel-Version: 1.0\nGenerator: planner-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                .to_owned(),
        ),
        (format!("{info}/RECORD"), String::new()),
    ];
    let record: String = files[..2]
        .iter()
        .map(|(name, _)| format!("{name},,\n"))
        .chain([format!("{info}/RECORD,,\n")])
        .collect();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, body) in &files {
        let body = if name.ends_with("/RECORD") {
            &record
        } else {
            body
        };
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(body.as_bytes()).unwrap();
    }
    zip.finish().unwrap().into_inner()
}
