//! Which Docker engine planner talks to, and how, resolved as the docker CLI does it:
//! `--engine URL` (one run, [`set_override`]) > `DOCKER_HOST` > `DOCKER_CONTEXT` > the
//! `currentContext` of `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`) >
//! `unix:///var/run/docker.sock`.
//!
//! An address given by flag or `DOCKER_HOST` uses TLS when `DOCKER_TLS_VERIFY` is set to
//! anything non-empty (docker's rule), with `ca.pem`, `cert.pem` and `key.pem` from
//! `DOCKER_CERT_PATH`, else the docker config dir. A context uses the TLS material the CLI
//! stored for it (`contexts/tls/<sha256 of name>/docker/`). TLS without verification
//! (`DOCKER_TLS` alone, a context's `SkipTLSVerify`) is refused, never downgraded.
//! The fixed limits of waiting on the engine are here too ([`PING_TIMEOUT`],
//! [`BUILD_TIMEOUT`]; the configurable ones, `[engine] timeout` and `idle_timeout`, are the
//! [`crate::engine::Engine`]'s). Connecting is [`super::remote`]'s job.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// How long to wait for the engine to answer a ping before calling it unreachable.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// bollard's own per-request limit, above every limit planner sets itself (builds may take
/// long; the idle limit and cancellation end them sooner).
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// The engine when nothing names one.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// docker's default ports: plain HTTP and TLS.
const PLAIN_PORT: u16 = 2375;
const TLS_PORT: u16 = 2376;
/// The docker files planner reads (config.json, a context's meta.json) are small.
const MAX_META_BYTES: u64 = 1 << 20;

const ADDRESS_HELP: &str = "use unix:///PATH/docker.sock, tcp://HOST:PORT (TLS: also DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH) or ssh://USER@HOST[:PORT]";

static OVERRIDE: OnceLock<String> = OnceLock::new();

/// Makes `url` the engine of every connection this process makes (the `--engine` flag);
/// the first call wins.
pub fn set_override(url: &str) {
    let _ = OVERRIDE.set(url.to_owned());
}

/// An engine address, where it came from, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The address as written (errors mask any userinfo).
    pub host: String,
    /// Where the address came from, for errors: `DOCKER_HOST is tcp://…`, `--engine …`, …
    pub source: String,
    pub transport: Transport,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Unix(PathBuf),
    /// `host:port` over plain HTTP, or TLS with client certificates.
    Tcp {
        authority: String,
        tls: Option<Tls>,
    },
    Ssh(SshTarget),
}

/// The TLS files of an engine: the CA that signs its certificate, and planner's client pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub dir: PathBuf,
    /// Why TLS, and why this directory (`DOCKER_TLS_VERIFY is set; DOCKER_CERT_PATH is …`).
    pub why: String,
}

impl Tls {
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
}

/// `ssh://[user@]host[:port]`: the engine is reached through `ssh … docker system dial-stdio`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum EndpointError {
    #[error(
        "{origin}: {host:?} is not an engine address planner can use: {why}\n  help: {ADDRESS_HELP}"
    )]
    BadAddress {
        origin: String,
        host: String,
        why: String,
    },
    #[error("Docker context {name:?} ({chosen}) cannot be used: {detail}\n  help: {help}")]
    Context {
        name: String,
        chosen: String,
        detail: String,
        help: String,
    },
    #[error(
        "TLS to the Docker engine at {host} was asked for ({why}), but {detail}\n  help: {help}"
    )]
    TlsSetup {
        host: String,
        why: String,
        detail: String,
        help: String,
    },
    #[error(
        "the Docker engine at {host} failed TLS verification: {detail}\n  help: the engine's certificate must be signed by {ca} and name the host planner connects to ({hostname}); fix DOCKER_CERT_PATH ({why}) or the engine's --tlscert"
    )]
    TlsVerify {
        host: String,
        detail: String,
        ca: String,
        hostname: String,
        why: String,
    },
    #[error(
        "the Docker engine at {host} refused planner's TLS client certificate {cert}: {detail}\n  help: put a client certificate signed by the CA the engine trusts (its --tlscacert) in {dir} as cert.pem and key.pem ({why})"
    )]
    ClientCert {
        host: String,
        cert: String,
        detail: String,
        dir: String,
        why: String,
    },
    #[error(
        "the Docker engine at {host} does not speak TLS, but TLS was asked for ({why}); planner never falls back to plain HTTP\n  help: start the engine with --tlsverify and its certificates, or unset DOCKER_TLS_VERIFY if this engine is meant to be reached over plain HTTP"
    )]
    NotTls { host: String, why: String },
    #[error(
        "the Docker engine at {host} expects TLS, but no TLS was asked for ({source_desc}): {detail}\n  help: set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH to a directory holding ca.pem, cert.pem and key.pem"
    )]
    ExpectsTls {
        host: String,
        source_desc: String,
        detail: String,
    },
    #[error(
        "the Docker engine at {host} speaks API {version}, older than the {min} planner needs\n  help: upgrade the engine (Docker 20.10 or newer), or point --engine/DOCKER_HOST at another one"
    )]
    ApiTooOld {
        host: String,
        version: String,
        min: String,
    },
    #[error(
        "cannot reach the Docker engine at {host} over ssh: {detail}\n  help: `ssh {dest} docker system dial-stdio` must work non-interactively (key in ssh-agent or ~/.ssh/config, host key known, docker on the remote PATH); PLANNER_ENGINE_SSH_COMMAND replaces `ssh`"
    )]
    Ssh {
        host: String,
        dest: String,
        detail: String,
    },
}

/// Reads one environment variable; empty counts as unset.
type Vars<'a> = &'a dyn Fn(&str) -> Option<String>;

fn process_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Endpoint {
    /// The engine this process uses (see the module doc for the order).
    pub fn resolve() -> Result<Endpoint, EndpointError> {
        resolve_with(OVERRIDE.get().map(String::as_str), &process_var)
    }

    /// The address a context or variable names, parsed; `tls` applies to `tcp://` only.
    pub fn parse(host: &str, source: &str, tls: Option<Tls>) -> Result<Endpoint, EndpointError> {
        let transport = parse_transport(host, source, tls)?;
        Ok(Endpoint {
            host: host.to_owned(),
            source: source.to_owned(),
            transport,
        })
    }
}

/// Checks an `--engine` value before anything runs (a usage error otherwise).
pub fn check_address(url: &str) -> Result<(), String> {
    parse_transport(url, "--engine", None)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn resolve_with(flag: Option<&str>, vars: Vars) -> Result<Endpoint, EndpointError> {
    if let Some(url) = flag {
        return with_env_tls(url, &format!("--engine is {}", masked(url)), vars);
    }
    if let Some(host) = vars("DOCKER_HOST") {
        return with_env_tls(&host, &format!("DOCKER_HOST is {}", masked(&host)), vars);
    }
    let config_dir = config_dir(vars);
    match context_name(vars, config_dir.as_deref()) {
        Some((name, chosen)) if name != "default" => {
            from_context(&name, &chosen, config_dir.as_deref())
        }
        _ => Endpoint::parse(DEFAULT_HOST, "DOCKER_HOST is unset", None),
    }
}

fn masked(host: &str) -> String {
    planner_base::mask::mask(host).into_owned()
}

/// `DOCKER_CONFIG`, else `$HOME/.docker`.
fn config_dir(vars: Vars) -> Option<PathBuf> {
    vars("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| vars("HOME").map(|h| Path::new(&h).join(".docker")))
}

/// An address from the flag or `DOCKER_HOST`, with TLS as `DOCKER_TLS_VERIFY` says (for
/// `tcp://` only: a unix socket or ssh has no TLS to turn on).
fn with_env_tls(host: &str, source: &str, vars: Vars) -> Result<Endpoint, EndpointError> {
    if !host.starts_with("tcp://") {
        return Endpoint::parse(host, source, None);
    }
    let tls = match (vars("DOCKER_TLS_VERIFY"), vars("DOCKER_TLS")) {
        (Some(_), _) => {
            let (dir, which) = match vars("DOCKER_CERT_PATH") {
                Some(dir) => (PathBuf::from(&dir), format!("DOCKER_CERT_PATH is {dir}")),
                None => {
                    let dir = config_dir(vars).unwrap_or_else(|| PathBuf::from(".docker"));
                    let which = format!("DOCKER_CERT_PATH is unset, so {}", dir.display());
                    (dir, which)
                }
            };
            let why = format!("DOCKER_TLS_VERIFY is set; {which}");
            Some(Tls { dir, why })
        }
        (None, Some(_)) => {
            return Err(EndpointError::TlsSetup {
                host: masked(host),
                why: "DOCKER_TLS is set".into(),
                detail: "TLS without verifying the engine's certificate is not supported".into(),
                help: "set DOCKER_TLS_VERIFY=1 and put the engine's CA in DOCKER_CERT_PATH as ca.pem (with cert.pem and key.pem)".into(),
            });
        }
        (None, None) => None,
    };
    Endpoint::parse(host, source, tls)
}

fn parse_transport(host: &str, source: &str, tls: Option<Tls>) -> Result<Transport, EndpointError> {
    let bad = |why: &str| EndpointError::BadAddress {
        origin: source.to_owned(),
        host: masked(host),
        why: why.to_owned(),
    };
    let (scheme, rest) = host
        .split_once("://")
        .ok_or_else(|| bad("it has no scheme"))?;
    match scheme {
        "unix" if rest.starts_with('/') => Ok(Transport::Unix(PathBuf::from(rest))),
        "unix" => Err(bad("a unix socket path must be absolute")),
        "tcp" | "ssh" => {
            let url = url::Url::parse(host).map_err(|e| bad(&e.to_string()))?;
            let extra = !matches!(url.path(), "" | "/")
                || url.query().is_some()
                || url.fragment().is_some();
            if extra {
                return Err(bad("nothing may follow HOST:PORT"));
            }
            let name = url
                .host_str()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| bad("it names no host"))?;
            if scheme == "ssh" {
                return ssh_target(&url, name).map_err(&bad);
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(bad("tcp:// takes no user or password"));
            }
            let port = url
                .port()
                .unwrap_or(if tls.is_some() { TLS_PORT } else { PLAIN_PORT });
            let authority = format!("{name}:{port}");
            Ok(Transport::Tcp { authority, tls })
        }
        "npipe" => Err(bad("Windows named pipes are not supported")),
        "fd" => Err(bad(
            "fd:// is for the daemon's own sockets, not for a client",
        )),
        _ => Err(bad(&format!("unknown scheme {scheme:?}"))),
    }
}

fn ssh_target(url: &url::Url, host: &str) -> Result<Transport, &'static str> {
    if url.password().is_some() {
        return Err("ssh:// takes no password (use a key, ssh-agent or ~/.ssh/config)");
    }
    if host.starts_with('-') || url.username().starts_with('-') {
        return Err("a host or user may not start with '-'");
    }
    Ok(Transport::Ssh(SshTarget {
        user: Some(url.username().to_owned()).filter(|u| !u.is_empty()),
        host: host.to_owned(),
        port: url.port(),
    }))
}

/// The context to use, and why: `DOCKER_CONTEXT`, else `currentContext` of config.json.
/// A config.json that is missing, not a regular file or not JSON names no context (the
/// registry client reports problems with it when it needs credentials).
fn context_name(vars: Vars, config_dir: Option<&Path>) -> Option<(String, String)> {
    if let Some(name) = vars("DOCKER_CONTEXT") {
        return Some((name, "from DOCKER_CONTEXT".into()));
    }
    let path = config_dir?.join("config.json");
    let text = read_small(&path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    let name = value.get("currentContext")?.as_str()?.to_owned();
    Some((name, format!("currentContext in {}", path.display()))).filter(|(n, _)| !n.is_empty())
}

/// A context's docker endpoint, from the CLI's store under `config_dir/contexts`.
fn from_context(
    name: &str,
    chosen: &str,
    config_dir: Option<&Path>,
) -> Result<Endpoint, EndpointError> {
    let err = |detail: String, help: &str| EndpointError::Context {
        name: name.to_owned(),
        chosen: chosen.to_owned(),
        detail,
        help: help.to_owned(),
    };
    let fix = "`docker context ls` lists the contexts; unset DOCKER_CONTEXT or run `docker context use default`, or set DOCKER_HOST";
    let dir = config_dir.ok_or_else(|| err("neither DOCKER_CONFIG nor HOME is set".into(), fix))?;
    let id = hex(&Sha256::digest(name.as_bytes()));
    let meta = dir.join("contexts/meta").join(&id).join("meta.json");
    let text = read_small(&meta).map_err(|e| err(format!("{}: {e}", meta.display()), fix))?;
    let (host, skip_verify) =
        parse_meta(&text).map_err(|e| err(format!("{}: {e}", meta.display()), fix))?;
    let tls_dir = dir.join("contexts/tls").join(&id).join("docker");
    let tls = tls_dir.is_dir().then(|| Tls {
        why: format!("context {name:?} has TLS material"),
        dir: tls_dir,
    });
    if skip_verify {
        return Err(err(
            "its endpoint sets SkipTLSVerify, and planner does not connect without verifying the engine".into(),
            "store the engine's CA in the context (`docker context update --docker host=…,ca=…,cert=…,key=…`)",
        ));
    }
    Endpoint::parse(&host, &format!("Docker context {name:?} ({chosen})"), tls)
}

/// `Endpoints.docker.Host` and `.SkipTLSVerify` of a context's meta.json.
fn parse_meta(text: &str) -> Result<(String, bool), String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let docker = value
        .pointer("/Endpoints/docker")
        .ok_or("it has no docker endpoint (Endpoints.docker)")?;
    let host = docker
        .get("Host")
        .and_then(serde_json::Value::as_str)
        .filter(|h| !h.is_empty())
        .ok_or("its docker endpoint has no Host")?;
    let skip = docker
        .get("SkipTLSVerify")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    Ok((host.to_owned(), skip))
}

/// Reads a small regular file without blocking on a FIFO or device in its place.
pub(super) fn read_small(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut text = String::new();
    file.take(MAX_META_BYTES).read_to_string(&mut text)?;
    Ok(text)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[path = "endpoint_tests.rs"]
mod tests;
