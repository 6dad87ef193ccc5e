//! A real OCI registry for the registry-mode tests: Debian's `docker-registry` (distribution
//! 2.8) started as a child on 127.0.0.1 with filesystem storage in a tempdir, deletes enabled
//! and its access log on; killed when dropped. Auth: none, htpasswd Basic, or `auth: token`
//! in front of a [`TokenIssuer`] (the real Bearer flow).
//!
//! Images are pushed through the test engine with the docker CLI ([`TestRegistry::push_image`])
//! and then removed from the engine, so a test starts cold; indexes are PUT directly
//! ([`TestRegistry::push_index`]). [`TestRegistry::requests`] parses the registry's own access
//! log, so tests count HEAD/GET of manifests and blobs *at the registry*.
//!
//! The engine reaches `127.0.0.1:PORT` over plain HTTP with no setting (loopback registries
//! are insecure-allowed; the test dockerd shares the host network).
//!
//! The child gets `PR_SET_PDEATHSIG(SIGKILL)`, so a test process killed mid-test leaves no
//! registry behind; that signal fires when the *thread* that started it exits, so keep a
//! registry on the thread that started it (each test's own thread, as usual).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::token_issuer::{self, TokenIssuer};

/// The image [`TestRegistry::push_image`] builds FROM: the one scripts/test-env.sh imports
/// (`harness::BASE_IMAGE`; repeated so the benchmark tool can use this module without harness).
pub const BASE_IMAGE: &str = "planner-test/busybox:latest";

pub const REGISTRY_BIN: &str = "docker-registry";
use crate::http::try_http;
pub use crate::http::{HttpResponse, SUPPORT_UA, http_request};
/// Where [`TestRegistry::push_image`] puts the marker file in the image.
pub const MARKER_PATH: &str = "/planner-marker";
/// The htpasswd realm of Basic mode.
pub const BASIC_REALM: &str = "planner-test-registry";

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The four manifest media types, as one `Accept` value.
pub const ACCEPT_ALL: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How the registry authenticates clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    None,
    /// htpasswd (bcrypt) with one user.
    Basic {
        user: String,
        pass: String,
    },
    /// `auth: token` with a [`TokenIssuer`] that accepts this user.
    Token {
        user: String,
        pass: String,
    },
}

impl RegistryAuth {
    pub fn basic(user: &str, pass: &str) -> RegistryAuth {
        RegistryAuth::Basic {
            user: user.to_owned(),
            pass: pass.to_owned(),
        }
    }

    pub fn token(user: &str, pass: &str) -> RegistryAuth {
        RegistryAuth::Token {
            user: user.to_owned(),
            pass: pass.to_owned(),
        }
    }

    /// `(user, pass)`, `None` for an open registry.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match self {
            RegistryAuth::None => None,
            RegistryAuth::Basic { user, pass } | RegistryAuth::Token { user, pass } => {
                Some((user, pass))
            }
        }
    }
}

/// One line of the registry's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRequest {
    pub method: String,
    /// The path without the query, e.g. `/v2/a/b/manifests/latest`.
    pub path: String,
    pub status: u16,
    /// The engine's is `docker/20.10…`; this module's is [`SUPPORT_UA`].
    pub user_agent: String,
}

impl RegistryRequest {
    /// Sent by the Docker engine (a pull or push), by its User-Agent `docker/…`.
    pub fn by_engine(&self) -> bool {
        self.user_agent.starts_with("docker/")
    }

    /// Sent by this module's own helpers ([`SUPPORT_UA`]).
    pub fn by_support(&self) -> bool {
        self.user_agent == SUPPORT_UA
    }

    /// `/v2/<repo>/manifests/<ref>`: the repository.
    pub fn manifest_of(&self) -> Option<&str> {
        self.repo_before("/manifests/")
    }

    /// `/v2/<repo>/blobs/<digest>` (not uploads): the repository.
    pub fn blob_of(&self) -> Option<&str> {
        self.repo_before("/blobs/")
            .filter(|_| !self.path.contains("/blobs/uploads"))
    }

    fn repo_before(&self, marker: &str) -> Option<&str> {
        let rest = self.path.strip_prefix("/v2/")?;
        rest.rfind(marker).map(|i| &rest[..i])
    }
}

/// An image [`TestRegistry::push_image`] pushed.
#[derive(Debug, Clone)]
pub struct PushedImage {
    /// `127.0.0.1:PORT/name:tag`
    pub reference: String,
    pub name: String,
    pub tag: String,
    /// The manifest digest the registry holds (`sha256:…`), as `docker push` printed it.
    pub digest: String,
    /// The engine's image id (`sha256:…` of the config), equal to the id after a pull.
    pub image_id: String,
    /// The manifest's size in bytes and media type (for index entries).
    pub size: u64,
    pub media_type: String,
}

impl PushedImage {
    /// `127.0.0.1:PORT/name@sha256:…`
    pub fn pinned(&self) -> String {
        let host = self.reference.split('/').next().unwrap_or_default();
        format!("{host}/{}@{}", self.name, self.digest)
    }
}

/// The kind of index [`TestRegistry::push_index`] PUTs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    Oci,
    DockerList,
}

impl IndexKind {
    pub fn media_type(self) -> &'static str {
        match self {
            IndexKind::Oci => OCI_INDEX,
            IndexKind::DockerList => DOCKER_LIST,
        }
    }
}

/// The registry; killed when dropped.
pub struct TestRegistry {
    port: u16,
    auth: RegistryAuth,
    issuer: Option<TokenIssuer>,
    child: Child,
    dir: tempfile::TempDir,
    /// The docker CLI config (`docker --config`) used to push; logged in once, lazily.
    cli_config: tempfile::TempDir,
    logged_in: Mutex<bool>,
    /// Access-log lines before this index are hidden by [`TestRegistry::clear_requests`].
    skip: AtomicUsize,
}

impl TestRegistry {
    /// Starts `docker-registry serve` on a free loopback port and waits until `/v2/` answers.
    pub fn start(auth: RegistryAuth) -> TestRegistry {
        TestRegistry::start_with_realm_host(auth, None)
    }

    /// Token mode whose challenges name the issuer by `realm_host` instead of 127.0.0.1
    /// (`http://REALM_HOST:PORT/token`): a realm clients reach on loopback but do not see as
    /// loopback by its name (e.g. `[::ffff:127.0.0.1]`, which planner's literal rule does not
    /// count as loopback).
    pub fn start_with_realm_host(auth: RegistryAuth, realm_host: Option<&str>) -> TestRegistry {
        assert!(
            which(REGISTRY_BIN),
            "{REGISTRY_BIN} missing: run the suite through scripts/test.sh, which installs Debian's docker-registry"
        );
        let dir = tempfile::tempdir().unwrap();
        let issuer = match &auth {
            RegistryAuth::Token { user, pass } => Some(TokenIssuer::start(user, pass)),
            _ => None,
        };
        if let RegistryAuth::Basic { user, pass } = &auth {
            write_htpasswd(&dir.path().join("htpasswd"), user, pass);
        }
        // A port picked here can be taken before the registry binds it: retry with another.
        let mut last_log = String::new();
        for _ in 0..3 {
            let port = unused_port();
            let realm = issuer
                .as_ref()
                .map(|i| realm_host.map_or_else(|| i.realm(), |h| i.realm_at(h)));
            let config = config_yml(dir.path(), port, &auth, issuer.as_ref(), realm.as_deref());
            std::fs::write(dir.path().join("config.yml"), config).unwrap();
            match start_child(dir.path(), port) {
                Ok(child) => {
                    return TestRegistry {
                        port,
                        auth,
                        issuer,
                        child,
                        dir,
                        cli_config: tempfile::tempdir().unwrap(),
                        logged_in: Mutex::new(false),
                        skip: AtomicUsize::new(0),
                    };
                }
                Err(log) => last_log = log,
            }
        }
        panic!("docker-registry did not start; its log:\n{last_log}")
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// `127.0.0.1:PORT/name:tag`
    pub fn reference(&self, name: &str, tag: &str) -> String {
        format!("{}/{name}:{tag}", self.host())
    }

    pub fn auth(&self) -> &RegistryAuth {
        &self.auth
    }

    /// The token issuer of a Token-mode registry.
    pub fn issuer(&self) -> Option<&TokenIssuer> {
        self.issuer.as_ref()
    }

    /// The registry's data directory (filesystem storage).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Kills the registry: its port refuses connections (a registry that went down) until
    /// [`Self::restart`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the registry again on the same port with the same storage and auth (after
    /// [`Self::stop`]); the access log continues.
    pub fn restart(&mut self) {
        self.stop();
        self.child = start_child(self.dir.path(), self.port)
            .unwrap_or_else(|log| panic!("docker-registry did not restart; its log:\n{log}"));
    }

    /// Stops the registry process (SIGSTOP): connections are accepted by the kernel but never
    /// answered (a hung registry, for timeouts) until [`Self::thaw`].
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
        // kill(2) returns before every thread has stopped: a thread running on another CPU
        // may still answer a request. Wait until the kernel reports the process stopped.
        let stat = format!("/proc/{}/stat", self.child.id());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            let text = std::fs::read_to_string(&stat).unwrap_or_default();
            let state = text
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next());
            if state == Some('T') {
                // Every thread: the main one may be stopped before the others.
                std::thread::sleep(Duration::from_millis(50));
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// Every request in the access log since start (or the last [`Self::clear_requests`]),
    /// oldest first. Waits until the log stops growing (a line is written just after its
    /// answer, so one read right after a client exits could miss the last requests).
    pub fn requests(&self) -> Vec<RegistryRequest> {
        let lines = settled_lines(&self.dir.path().join("access.log"));
        let skip = self.skip.load(Ordering::SeqCst);
        lines
            .iter()
            .skip(skip)
            .filter_map(|l| parse_access(l))
            .collect()
    }

    /// Hides the requests so far from [`Self::requests`].
    pub fn clear_requests(&self) {
        let lines = settled_lines(&self.dir.path().join("access.log"));
        self.skip.store(lines.len(), Ordering::SeqCst);
    }

    /// Requests other than this module's own ([`SUPPORT_UA`]): the engine's and planner's.
    pub fn client_requests(&self) -> Vec<RegistryRequest> {
        let mut all = self.requests();
        all.retain(|r| !r.by_support());
        all
    }

    /// Requests neither from this module nor from the engine: planner's own (resolve).
    pub fn planner_requests(&self) -> Vec<RegistryRequest> {
        let mut all = self.requests();
        all.retain(|r| !r.by_support() && !r.by_engine());
        all
    }

    /// `(method, manifest requests of repo name)` count among [`Self::client_requests`].
    pub fn count_manifest(&self, method: &str, name: &str) -> usize {
        self.client_requests()
            .iter()
            .filter(|r| r.method == method && r.manifest_of() == Some(name))
            .count()
    }

    /// Blob requests (GET or HEAD, not uploads) of repo `name` among [`Self::client_requests`].
    pub fn count_blob(&self, method: &str, name: &str) -> usize {
        self.client_requests()
            .iter()
            .filter(|r| r.method == method && r.blob_of() == Some(name))
            .count()
    }

    /// Writes `dir/config.json` with `auths[host]` = base64 `user:pass` (empty `auths` for an
    /// open registry), for `DOCKER_CONFIG=dir`. Returns the file's path.
    pub fn docker_config(&self, dir: &Path) -> PathBuf {
        let auths = match self.auth.credentials() {
            Some((u, p)) => serde_json::json!({ self.host(): { "auth": basic_b64(u, p) } }),
            None => serde_json::json!({}),
        };
        write_json(
            &dir.join("config.json"),
            &serde_json::json!({ "auths": auths }),
        )
    }

    /// Token mode: writes `dir/config.json` with `auths[host]` = the issuer's refresh token as
    /// `identitytoken` (and `auth` = base64 `user:`, as `docker login` stores it), so clients
    /// must use the OAuth2 POST refresh flow. Returns the file's path.
    pub fn docker_config_identity_token(&self, dir: &Path) -> PathBuf {
        let issuer = self
            .issuer
            .as_ref()
            .expect("identity tokens need a Token-mode registry");
        let (user, _) = self.auth.credentials().expect("Token mode has credentials");
        let entry = serde_json::json!({
            "auth": STANDARD.encode(format!("{user}:")),
            "identitytoken": issuer.refresh_token(),
        });
        let config = serde_json::json!({ "auths": { self.host(): entry } });
        write_json(&dir.join("config.json"), &config)
    }

    /// The `Authorization` value this module uses for `scope`
    /// (`repository:NAME:pull,push`): Basic, a Bearer token from the issuer, or none.
    pub fn authorization(&self, scope: &str) -> Option<String> {
        let (user, pass) = self.auth.credentials()?;
        match &self.issuer {
            Some(issuer) => Some(format!(
                "Bearer {}",
                issuer.fetch_token(scope, Some((user, pass)))
            )),
            None => Some(format!("Basic {}", basic_b64(user, pass))),
        }
    }

    /// Builds `FROM planner-test/busybox` + a file [`MARKER_PATH`] holding `marker` (make it
    /// unique per test and push: tests share one engine), pushes it as `HOST/name:tag`
    /// through the engine (after `docker login` in auth modes), then removes it from the
    /// engine. Pushing again to the same tag moves the tag.
    pub fn push_image(&self, name: &str, tag: &str, marker: &str) -> PushedImage {
        let reference = self.reference(name, tag);
        let ctx = tempfile::tempdir().unwrap();
        std::fs::write(ctx.path().join("marker"), marker).unwrap();
        let dockerfile = format!("FROM {BASE_IMAGE}\nCOPY marker {MARKER_PATH}\n");
        std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
        docker_cli(&["build", "-q", "-t", &reference], Some(ctx.path()), None);
        // Removed from the engine when this function returns or panics (a test starts cold).
        let _local = RemoveOnDrop(reference.clone());
        let image_id = docker_cli(
            &["image", "inspect", "-f", "{{.Id}}", &reference],
            None,
            None,
        )
        .trim()
        .to_owned();
        self.login();
        let pushed = docker_cli(&self.with_config(&["push", &reference]), None, None);
        let digest = push_digest(&pushed)
            .unwrap_or_else(|| panic!("no digest in the output of docker push:\n{pushed}"));
        let head = self.head_manifest(name, &digest);
        assert_eq!(head.status, 200, "HEAD {name}@{digest}: {head:?}");
        PushedImage {
            reference,
            name: name.to_owned(),
            tag: tag.to_owned(),
            size: head.content_length(),
            media_type: head.header("content-type").unwrap_or_default().to_owned(),
            digest,
            image_id,
        }
    }

    /// PUTs an index of `kind` at `name:tag` whose entries are `(manifest digest, platform)`,
    /// platform `os/arch[/variant]`. Each digest must already be in repo `name` (the registry
    /// checks); the platform is what the test chooses (e.g. only `linux/arm64`, to test a
    /// missing platform). Returns the index digest.
    pub fn push_index(
        &self,
        name: &str,
        tag: &str,
        kind: IndexKind,
        entries: &[(&str, &str)],
    ) -> String {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .map(|(digest, platform)| self.index_entry(name, digest, platform))
            .collect();
        let body = serde_json::json!({
            "schemaVersion": 2, "mediaType": kind.media_type(), "manifests": manifests,
        })
        .to_string();
        let response = self.put_manifest(name, tag, kind.media_type(), body.into_bytes());
        assert_eq!(response.status, 201, "PUT index {name}:{tag}: {response:?}");
        response
            .header("docker-content-digest")
            .expect("Docker-Content-Digest on the PUT answer")
            .to_owned()
    }

    /// PUTs raw manifest bytes with `content_type` (for tests that need a hand-made manifest).
    pub fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> HttpResponse {
        let auth = self.authorization(&format!("repository:{name}:pull,push"));
        let mut headers = vec![("content-type", content_type)];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth));
        }
        let url = format!("{}/v2/{name}/manifests/{reference}", self.base_url());
        http_request("PUT", &url, &headers, Some(body))
    }

    /// `HEAD /v2/name/manifests/reference` with all four media types, authorized.
    pub fn head_manifest(&self, name: &str, reference: &str) -> HttpResponse {
        let auth = self.authorization(&format!("repository:{name}:pull"));
        let mut headers = vec![("accept", ACCEPT_ALL)];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth));
        }
        let url = format!("{}/v2/{name}/manifests/{reference}", self.base_url());
        http_request("HEAD", &url, &headers, None)
    }

    /// Deletes the manifest `digest` from repo `name` (every tag on it goes: the tag 404s).
    pub fn delete_manifest(&self, name: &str, digest: &str) {
        let auth = self.authorization(&format!("repository:{name}:delete"));
        let mut headers = Vec::new();
        if let Some(auth) = &auth {
            headers.push(("authorization", auth.as_str()));
        }
        let url = format!("{}/v2/{name}/manifests/{digest}", self.base_url());
        let response = http_request("DELETE", &url, &headers, None);
        assert_eq!(response.status, 202, "DELETE {name}@{digest}: {response:?}");
    }

    fn index_entry(&self, name: &str, digest: &str, platform: &str) -> serde_json::Value {
        let head = self.head_manifest(name, digest);
        assert_eq!(head.status, 200, "HEAD {name}@{digest}: {head:?}");
        let mut parts = platform.split('/');
        let (os, arch) = (parts.next().unwrap(), parts.next().expect("os/arch"));
        let mut platform = serde_json::json!({ "os": os, "architecture": arch });
        if let Some(variant) = parts.next() {
            platform["variant"] = variant.into();
        }
        serde_json::json!({
            "mediaType": head.header("content-type").unwrap_or(DOCKER_MANIFEST),
            "size": head.content_length(),
            "digest": digest,
            "platform": platform,
        })
    }

    /// `docker --config <cli_config> login` once, in auth modes.
    fn login(&self) {
        let Some((user, pass)) = self.auth.credentials() else {
            return;
        };
        let mut done = self.logged_in.lock().unwrap_or_else(|p| p.into_inner());
        if *done {
            return;
        }
        let host = self.host();
        let args = self.with_config(&["login", "-u", user, "--password-stdin", &host]);
        docker_cli(&args, None, Some(pass));
        *done = true;
    }

    fn with_config<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let dir = self.cli_config.path().to_str().expect("utf-8 tempdir");
        [&["--config", dir][..], args].concat()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        // SIGKILL ends a frozen (SIGSTOPped) process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `docker rmi` of a reference when dropped.
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A loopback port nothing listens on (just closed): a registry that is down.
pub fn unused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

/// `127.0.0.1:PORT` of a registry that is down.
pub fn down_host() -> String {
    format!("127.0.0.1:{}", unused_port())
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Spawns the registry and polls `/v2/` until it answers (any status) *and* the probe shows
/// in its own access log (so a foreign server that took the port is not mistaken for it); on
/// exit or timeout, kills it and returns the tail of its log.
fn start_child(dir: &Path, port: u16) -> Result<Child, String> {
    let mut child = spawn(dir);
    let deadline = Instant::now() + START_TIMEOUT;
    let nonce = format!("planner-probe-{}-{port}", std::process::id());
    let url = format!("http://127.0.0.1:{port}/v2/?{nonce}");
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        if try_http("GET", &url).is_some() {
            if logged(&dir.join("access.log"), &nonce) {
                return Ok(child);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    Err(lines[lines.len().saturating_sub(30)..].join("\n"))
}

/// Whether `needle` appears in the file within about a second.
fn logged(path: &Path, needle: &str) -> bool {
    for _ in 0..50 {
        if std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn spawn(dir: &Path) -> Child {
    use std::os::unix::process::CommandExt as _;
    let append = |name: &str| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .unwrap()
    };
    let mut cmd = Command::new(REGISTRY_BIN);
    // SAFETY: prctl(2) only, between fork and exec: async-signal-safe, no allocation.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (access, log) = (append("access.log"), append("registry.log"));
    cmd.arg("serve")
        .arg(dir.join("config.yml"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(access)
        .stderr(log)
        .spawn()
        .expect("start docker-registry")
}

fn config_yml(
    dir: &Path,
    port: u16,
    auth: &RegistryAuth,
    issuer: Option<&TokenIssuer>,
    realm: Option<&str>,
) -> String {
    let auth_section = match (auth, issuer) {
        (RegistryAuth::Basic { .. }, _) => format!(
            "auth:\n  htpasswd:\n    realm: {BASIC_REALM}\n    path: {}\n",
            dir.join("htpasswd").display()
        ),
        (RegistryAuth::Token { .. }, Some(issuer)) => format!(
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            realm.map_or_else(|| issuer.realm(), str::to_owned),
            token_issuer::SERVICE,
            token_issuer::ISSUER,
            issuer.root_cert_bundle().display()
        ),
        _ => String::new(),
    };
    format!(
        "version: 0.1\nlog:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: planner-test-secret\n{auth_section}",
        dir.join("data").display()
    )
}

fn write_htpasswd(path: &Path, user: &str, pass: &str) {
    let out = Command::new("htpasswd")
        .args(["-nbB", user, pass])
        .output()
        .expect(
            "run htpasswd: run the suite through scripts/test.sh, which installs apache2-utils",
        );
    assert!(
        out.status.success(),
        "htpasswd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(path, out.stdout).unwrap();
}

fn basic_b64(user: &str, pass: &str) -> String {
    STANDARD.encode(format!("{user}:{pass}"))
}

fn write_json(path: &Path, value: &serde_json::Value) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    path.to_owned()
}

/// Runs the docker CLI (DOCKER_HOST from the environment: the test engine); panics with its
/// stderr on failure; returns stdout.
fn docker_cli(args: &[&str], dir: Option<&Path>, stdin: Option<&str>) -> String {
    let mut cmd = Command::new("docker");
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = dir {
        cmd.arg(dir);
    }
    let mut child = cmd.spawn().expect("docker CLI");
    if let Some(input) = stdin {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `TAG: digest: sha256:… size: N` in `docker push` output.
fn push_digest(output: &str) -> Option<String> {
    output.lines().find_map(|l| {
        let rest = l.split("digest: ").nth(1)?;
        let digest = rest.split_whitespace().next()?;
        digest.starts_with("sha256:").then(|| digest.to_owned())
    })
}

/// The file's lines once two reads 30 ms apart agree (at most ~1 s).
fn settled_lines(path: &Path) -> Vec<String> {
    let read = || std::fs::read_to_string(path).unwrap_or_default();
    let mut last = read();
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(30));
        let now = read();
        if now == last {
            break;
        }
        last = now;
    }
    last.lines().map(str::to_owned).collect()
}

/// `IP - USER [date] "METHOD URI PROTO" STATUS SIZE "referer" "agent"` (combined log format).
fn parse_access(line: &str) -> Option<RegistryRequest> {
    let mut quoted = line.split('"');
    let _prefix = quoted.next()?;
    let request = quoted.next()?;
    let after = quoted.next()?;
    let _referer = quoted.next()?;
    let _between = quoted.next()?;
    let agent: String = quoted.collect::<Vec<_>>().join("\"");
    let mut parts = request.split(' ');
    let (method, uri) = (parts.next()?, parts.next()?);
    let status = after.split_whitespace().next()?.parse().ok()?;
    Some(RegistryRequest {
        method: method.to_owned(),
        path: uri.split('?').next().unwrap_or(uri).to_owned(),
        status,
        user_agent: agent.trim_end_matches('"').to_owned(),
    })
}
