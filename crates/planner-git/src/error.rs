//! Git failures, each naming the URL (credentials masked) and what to do.

/// Why talking to a git repository failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error(
        "cannot reach git host for {url}: {detail}\n  help: check the network and the repo URL (runtimes.toml `repo`/`repo_prefix`, or PLANNER_REPO_PREFIX); planner never falls back to a registry"
    )]
    Unreachable { url: String, detail: String },
    #[error(
        "repository {url} not found (HTTP 404): runtime {runtime:?} may not be mirrored to this git host\n  help: mirror the template repository there, or point `repo` for {runtime:?} in runtimes.toml at where it lives"
    )]
    NotFound { url: String, runtime: String },
    #[error("git host refused access to {url} (HTTP {status}): {hint}")]
    AuthRefused {
        url: String,
        status: u16,
        hint: String,
    },
    #[error(
        "branch {branch:?} not found in {url}\n  help: set `branch` for this runtime in runtimes.toml to a branch that exists"
    )]
    BranchMissing { url: String, branch: String },
    #[error(
        "git host {url} answered HTTP {status}\n  help: the host may be down or misconfigured; try again later"
    )]
    HttpStatus { url: String, status: u16 },
    #[error(
        "git host {url} redirected to another origin ({target}); planner refuses cross-origin redirects so the token never leaves the configured host\n  help: point `repo` (or `repo_prefix`) in runtimes.toml at the final URL"
    )]
    CrossOriginRedirect { url: String, target: String },
    #[error(
        "git host {url} answered the clone with a redirect (HTTP {status}); planner runs git with redirects off so the token never leaves the configured host\n  help: point `repo` (or `repo_prefix`) in runtimes.toml at the final URL (curl -sI {url}/info/refs?service=git-upload-pack shows the Location)"
    )]
    CloneRedirected { url: String, status: u16 },
    #[error("unexpected answer from {url}: {detail}")]
    Protocol { url: String, detail: String },
    #[error(
        "answer from {url} exceeds {cap} bytes; refusing to read more\n  help: this is not a normal ref advertisement; check the repo URL"
    )]
    TooLarge { url: String, cap: usize },
    #[error(
        "git was not found on PATH: {detail}\n  help: install git (e.g. apt-get install git) or add it to PATH"
    )]
    GitMissing { detail: String },
    #[error("{what} failed for {url}: {stderr}")]
    Command {
        what: String,
        url: String,
        stderr: String,
    },
    #[error(
        "timed out after {secs}s talking to {url}\n  help: the git host is slow or unreachable; check the network"
    )]
    Timeout { url: String, secs: u64 },
    #[error(
        "{what} for {url} did not finish within {limit} ([git] timeout) and was stopped\n  help: the git host is stalled or very slow; raise [git] timeout in runtimes.toml (e.g. timeout = \"1h\") if the repository is that large"
    )]
    TimedOut {
        what: String,
        url: String,
        limit: String,
    },
    #[error(
        "{what} for {url} was aborted: the transfer stayed below {bytes} bytes/s for {limit} ([git] low_speed_limit, low_speed_time)\n  help: the git host is stalled or the network very slow; check them, or lower [git] low_speed_limit (0 turns it off) or raise low_speed_time in runtimes.toml"
    )]
    TooSlow {
        what: String,
        url: String,
        bytes: u32,
        limit: String,
    },
    #[error(
        "{what} for {url}: the ssh server did not answer within {limit} ([git] connect_timeout): {detail}\n  help: check that the host and port serve ssh and are reachable; raise [git] connect_timeout in runtimes.toml if the host is just slow"
    )]
    SshTimeout {
        what: String,
        url: String,
        limit: String,
        detail: String,
    },
}

/// The auth-refused hint: which env var to set or check.
pub fn auth_hint(token_env: Option<&str>, token_set: bool) -> String {
    match (token_env, token_set) {
        (Some(var), true) => format!("the token in {var} was refused\n  help: check that {var} holds a valid token with read access to this repository"),
        (Some(var), false) => format!("the repository needs credentials\n  help: set {var} to a token with read access (it is sent only to this repository's host)"),
        (None, _) => "the repository needs credentials\n  help: set [git] token_env in runtimes.toml to the name of an environment variable holding a token, and set that variable".to_owned(),
    }
}
