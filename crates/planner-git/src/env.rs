//! The environment every `git` child runs in ([`GitEnv`]).
//!
//! - Isolated from the machine's git config (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`,
//!   no system attributes, no templates), so the bytes checked out are the commit's bytes
//!   whatever `~/.gitconfig` says; the settings that decide them are pinned ([`PINS`]).
//! - Nothing a checkout's config names is run: hooks, fsmonitor and redirects off (pins given
//!   with `-c`, which wins over every other config source).
//! - No tracing: `GIT_TRACE*`, `GIT_CURL_VERBOSE` and friends are removed, since traces print
//!   request headers (the credential).
//! - What the user needs to reach the host is kept: an allowlist of their own system/global
//!   settings ([`is_passthrough`]), read once per process, and their own `GIT_CONFIG_COUNT`
//!   entries, which come after it (pins still win).

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::OnceCell;

/// Settings that decide the checked-out bytes or would run something: passed with `-c`.
pub const PINS: &[(&str, &str)] = &[
    ("core.autocrlf", "false"),
    ("core.eol", "lf"),
    ("core.safecrlf", "false"),
    ("core.symlinks", "true"),
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("core.untrackedCache", "false"),
    ("core.attributesFile", "/dev/null"),
    ("core.excludesFile", "/dev/null"),
    ("core.sparseCheckout", "false"),
    ("init.templateDir", ""),
    ("http.followRedirects", "false"),
    ("submodule.recurse", "false"),
    ("fetch.recurseSubmodules", "false"),
];

/// Environment variables that would redirect git to another repository, config or object
/// store, or change how objects are named: removed from the child's environment.
const REMOVED: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CONFIG",
    "GIT_CONFIG_SYSTEM",
    "GIT_TEMPLATE_DIR",
    "GIT_ATTR_SOURCE",
    "GIT_DEFAULT_HASH",
    "GIT_SHALLOW_FILE",
    "GIT_GRAFT_FILE",
    "GIT_REPLACE_REF_BASE",
];

/// Trace switches besides `GIT_TRACE*`: they print request headers (the credential).
const TRACES: &[&str] = &["GIT_CURL_VERBOSE", "GIT_REDACT_COOKIES", "GIT_SSL_KEYLOG"];

/// Whether a variable is one of git's trace switches (they print headers and arguments).
fn is_trace_var(name: &str) -> bool {
    name.starts_with("GIT_TRACE") || TRACES.contains(&name)
}

/// Whether a user's system/global setting (lower-case key as `git config --list` prints it)
/// is kept: what reaching the host needs, nothing that decides the bytes or runs in a checkout.
pub fn is_passthrough(key: &str) -> bool {
    const HTTP: &[&str] = &[
        "proxy",
        "proxyauthmethod",
        "proxysslcert",
        "proxysslkey",
        "proxysslcertpasswordprotected",
        "proxysslcainfo",
        "sslcainfo",
        "sslcapath",
        "sslcert",
        "sslkey",
        "sslcertpasswordprotected",
        "sslbackend",
        "sslverify",
        "sslversion",
        "pinnedpubkey",
        "emptyauth",
    ];
    let Some((section, rest)) = key.split_once('.') else {
        return false;
    };
    let last = rest.rsplit('.').next().unwrap_or(rest);
    match section {
        "credential" => true,
        "http" => HTTP.contains(&last),
        "url" => rest.contains('.') && last == "insteadof",
        "core" => rest == "sshcommand",
        "ssh" => rest == "variant",
        _ => false,
    }
}

/// How every git child is run: the user's allowlisted settings, loaded once per process.
#[derive(Clone, Debug, Default)]
pub struct GitEnv {
    passthrough: Vec<(String, String)>,
}

static LOADED: OnceCell<GitEnv> = OnceCell::const_new();

/// Bound on reading the user's config (a hung credential store or NFS home must not hang us).
const READ_TIMEOUT: Duration = Duration::from_secs(10);

impl GitEnv {
    /// The process-wide environment: the user's system and global config read once.
    pub async fn load() -> &'static GitEnv {
        LOADED
            .get_or_init(|| async {
                let mut passthrough = read_scope("--system").await;
                passthrough.extend(read_scope("--global").await);
                GitEnv { passthrough }
            })
            .await
    }

    /// The user's `core.sshCommand` (the last one set, their environment entries after their
    /// config files, as git reads them).
    pub fn ssh_command(&self) -> Option<String> {
        let env = users_env_entries();
        self.passthrough
            .iter()
            .chain(&env)
            .filter(|(key, _)| key.eq_ignore_ascii_case("core.sshcommand"))
            .map(|(_, value)| value.trim())
            .next_back()
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// No passthrough at all (for local commands such as `git status`).
    pub fn local() -> GitEnv {
        GitEnv::default()
    }

    /// Applies the isolation to `cmd` (a fresh `git` command, before its subcommand), with
    /// `extra` config entries (the credential header) appended last through the environment.
    pub fn apply(&self, cmd: &mut Command, extra: &[(String, String)]) {
        scrub_traces(cmd);
        for name in REMOVED.iter().chain(&["GIT_CONFIG_COUNT"]) {
            cmd.env_remove(name);
        }
        cmd.env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_ATTR_NOSYSTEM", "1")
            .env("GIT_NO_REPLACE_OBJECTS", "1");
        let mut entries = self.passthrough.clone();
        entries.extend(users_env_entries());
        entries.extend(extra.iter().cloned());
        set_config_env(cmd, &entries);
        for (key, value) in PINS {
            cmd.arg("-c").arg(format!("{key}={value}"));
        }
    }
}

/// Removes the trace switches, and the user's numbered config entries (re-added in order by
/// [`GitEnv::apply`]), inherited from planner's environment.
fn scrub_traces(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if is_trace_var(&name)
            || name.starts_with("GIT_CONFIG_KEY_")
            || name.starts_with("GIT_CONFIG_VALUE_")
        {
            cmd.env_remove(name.as_ref());
        }
    }
}

/// The user's own `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n` entries, in order
/// (an entry without its key is skipped; a count over 1000 is capped).
fn users_env_entries() -> Vec<(String, String)> {
    let count: usize = std::env::var("GIT_CONFIG_COUNT")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(0);
    (0..count.min(1000))
        .filter_map(|i| {
            let key = std::env::var(format!("GIT_CONFIG_KEY_{i}")).ok()?;
            let value = std::env::var(format!("GIT_CONFIG_VALUE_{i}")).unwrap_or_default();
            Some((key, value))
        })
        .collect()
}

fn set_config_env(cmd: &mut Command, entries: &[(String, String)]) {
    if entries.is_empty() {
        return;
    }
    cmd.env("GIT_CONFIG_COUNT", entries.len().to_string());
    for (i, (key, value)) in entries.iter().enumerate() {
        cmd.env(format!("GIT_CONFIG_KEY_{i}"), key)
            .env(format!("GIT_CONFIG_VALUE_{i}"), value);
    }
}

/// The allowlisted entries of one config scope (`--system`/`--global`); empty when git is
/// missing, the file does not exist, or reading fails or takes too long.
async fn read_scope(scope: &str) -> Vec<(String, String)> {
    let mut cmd = Command::new("git");
    scrub_traces(&mut cmd);
    cmd.env_remove("GIT_CONFIG_COUNT");
    cmd.args(["config", "--includes", "-z", "--list", scope])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let out = match tokio::time::timeout(READ_TIMEOUT, cmd.output()).await {
        Ok(Ok(out)) if out.status.success() => out.stdout,
        _ => return Vec::new(),
    };
    parse_list(&out)
}

/// Parses `git config -z --list` output (`key\nvalue\0`), keeping allowlisted keys.
fn parse_list(out: &[u8]) -> Vec<(String, String)> {
    out.split(|b| *b == 0)
        .filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            let (key, value) = entry.split_once('\n').unwrap_or((&entry, ""));
            is_passthrough(key).then(|| (key.to_owned(), value.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_command_is_the_last_core_sshcommand_read() {
        let genv = GitEnv {
            passthrough: vec![
                ("core.sshcommand".into(), "ssh -i /a".into()),
                ("credential.helper".into(), "store".into()),
                ("core.sshcommand".into(), "ssh -i /b ".into()),
            ],
        };
        assert_eq!(genv.ssh_command().as_deref(), Some("ssh -i /b"));
        assert_eq!(GitEnv::local().ssh_command(), None);
    }

    #[test]
    fn passthrough_keeps_reaching_the_host_only() {
        for key in [
            "credential.helper",
            "credential.https://h.example.username",
            "http.proxy",
            "http.https://h.example/.proxy",
            "http.sslcainfo",
            "url.https://mirror.example/.insteadof",
            "core.sshcommand",
        ] {
            assert!(is_passthrough(key), "{key}");
        }
        for key in [
            "core.autocrlf",
            "core.eol",
            "core.fsmonitor",
            "core.hookspath",
            "filter.lfs.smudge",
            "http.followredirects",
            "http.extraheader",
            "include.path",
            "url.x",
        ] {
            assert!(!is_passthrough(key), "{key}");
        }
    }

    #[test]
    fn parses_z_list_output() {
        let out = b"core.autocrlf\ntrue\0http.proxy\nhttp://p:3128\0credential.helper\nstore\0";
        assert_eq!(
            parse_list(out),
            vec![
                ("http.proxy".to_owned(), "http://p:3128".to_owned()),
                ("credential.helper".to_owned(), "store".to_owned()),
            ]
        );
    }

    #[test]
    fn trace_switches_are_removed() {
        for name in [
            "GIT_TRACE",
            "GIT_TRACE_CURL",
            "GIT_TRACE2_EVENT",
            "GIT_CURL_VERBOSE",
        ] {
            assert!(is_trace_var(name), "{name}");
        }
        assert!(!is_trace_var("GIT_SSH_COMMAND"));
    }
}
