//! The git CLI through `tokio::process`: `ls-remote` for non-HTTP transports and the
//! one-commit checkout. Never prompts; the token travels in git's environment
//! (`http.<origin>.extraHeader`), scoped to the repository's origin, never in argv.
//!
//! Every command is bounded ([`GitLimits`]: a total timeout, git's HTTP low-speed limit, ssh
//! connect and keep-alive timeouts) and tied to planner's lifetime: it runs in its own process
//! group, which is killed when the command is dropped (timeout, cancellation), under a `sh`
//! that gets `PR_SET_PDEATHSIG(SIGTERM)` and then kills that group, so git and its helpers
//! die with planner even on `kill -9`.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::Command;
use url::Url;

use super::env::GitEnv;
use crate::auth::GitAuth;
use crate::error::GitError;
use crate::trust;
use planner_base::mask::{display_url, mask};
use planner_base::settings::GitLimits;

/// A `git` command that cannot prompt, runs in the isolated [`GitEnv`] under planner's
/// supervisor, and carries the token (if any) for `url`'s origin only.
fn git(url: &Url, auth: &GitAuth, genv: &GitEnv) -> Command {
    let mut cmd = supervised_git();
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "")
        .env("SSH_ASKPASS", "")
        .env("GCM_INTERACTIVE", "never")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut extra = Vec::new();
    if let (Some(token), "http" | "https") = (&auth.token, url.scheme()) {
        let origin = url.origin().ascii_serialization();
        extra.push((
            format!("http.{origin}/.extraHeader"),
            format!(
                "Authorization: Basic {}",
                crate::auth::basic_credential(token)
            ),
        ));
    }
    genv.apply(&mut cmd, &extra);
    cmd
}

/// Runs a prepared git command within `[git]` limits; stdout on success, a classified error otherwise.
async fn run(mut cmd: Command, what: &str, url: &Url, auth: &GitAuth) -> Result<String, GitError> {
    let ssh = ssh_command(user_ssh_command().await.as_deref(), &auth.limits);
    cmd.env("GIT_SSH_COMMAND", ssh);
    apply_speed_limits(&mut cmd, &auth.limits);
    tie_to_planner(&mut cmd);
    let out = output_within(cmd, auth.limits.timeout)
        .await
        .map_err(|e| match e {
            Bounded::TimedOut => GitError::TimedOut {
                what: what.into(),
                url: display_url(url),
                limit: show_duration(auth.limits.timeout),
            },
            Bounded::Io(e) if e.kind() == std::io::ErrorKind::NotFound => GitError::GitMissing {
                detail: e.to_string(),
            },
            Bounded::GitMissing(detail) => GitError::GitMissing { detail },
            Bounded::Io(e) => GitError::Command {
                what: what.into(),
                url: display_url(url),
                stderr: e.to_string(),
            },
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = mask(String::from_utf8_lossy(&out.stderr).trim()).into_owned();
    Err(classify(what, url, auth, stderr))
}

fn classify(what: &str, url: &Url, auth: &GitAuth, stderr: String) -> GitError {
    if let Some(limit) = limit_error(what, url, &auth.limits, &stderr) {
        return limit;
    }
    let low = stderr.to_lowercase();
    let shown = display_url(url);
    if let Some(status) = redirect_status(&low) {
        return GitError::CloneRedirected {
            url: shown.trim_end_matches('/').to_owned(),
            status,
        };
    }
    if low.contains("authentication failed")
        || low.contains("returned error: 401")
        || low.contains("returned error: 403")
        || low.contains("permission denied")
    {
        return auth.auth_refused(url, if low.contains("403") { 403 } else { 401 });
    }
    if low.contains("not found")
        || low.contains("does not appear to be a git repository")
        || low.contains("returned error: 404")
        || low.contains("no such file")
    {
        return GitError::Command {
            what: what.into(),
            url: shown,
            stderr: format!(
                "{stderr}\n  help: the repository does not exist there; the runtime may not be mirrored, or `repo` in runtimes.toml is wrong"
            ),
        };
    }
    if low.contains("could not resolve host")
        || low.contains("connection refused")
        || low.contains("failed to connect")
        || low.contains("couldn't connect")
    {
        return GitError::Unreachable {
            url: shown,
            detail: stderr,
        };
    }
    GitError::Command {
        what: what.into(),
        url: shown,
        stderr,
    }
}

// ---- bounded time and lifetime of git children ----------------------------------------------

/// Why a bounded command produced no output.
enum Bounded {
    TimedOut,
    Io(std::io::Error),
    /// The supervising shell found no `git` on `PATH` (exit 127).
    GitMissing(String),
}

/// Runs git's arguments under a shell that, when planner dies, kills git's whole process
/// group: `PR_SET_PDEATHSIG` reaches only the direct child, and the signal is not inherited
/// by git's own children (`git-remote-https`, `ssh`, `index-pack`), which hold the token too.
/// The shell starts git only after its trap is set; git's exit status is the shell's.
const SUPERVISOR: &str = r#"trap 'kill -KILL 0' TERM; "$0" "$@" & wait $!"#;

/// `git` (arguments are added as usual) under [`SUPERVISOR`].
fn supervised_git() -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", SUPERVISOR, "git"]);
    cmd
}

/// Runs `cmd` (already in its own process group) for at most `limit`. On timeout, error or
/// cancellation the whole group is killed: git's helpers (`git-remote-https`, `ssh`,
/// `index-pack`) included, not only the `git` process.
async fn output_within(mut cmd: Command, limit: Duration) -> Result<Output, Bounded> {
    let child = cmd.spawn().map_err(Bounded::Io)?;
    let _group = planner_base::process::GroupKill::new(child.id());
    let out = match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => out.map_err(Bounded::Io)?,
        Err(_) => return Err(Bounded::TimedOut),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(127) && stderr.contains("git") && stderr.contains("not found") {
        return Err(Bounded::GitMissing(stderr.trim().to_owned()));
    }
    Ok(out)
}

/// Makes the child a process-group leader that gets SIGTERM when planner dies (the
/// [`SUPERVISOR`] shell's cue to kill the group).
///
/// `PR_SET_PDEATHSIG` fires when the spawning *thread* exits: git commands are spawned from
/// async tasks, i.e. on the runtime's worker threads, which live as long as planner's runtime.
/// The `getppid` check closes the race with planner dying before the `prctl`.
fn tie_to_planner(cmd: &mut Command) {
    let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
    cmd.process_group(0);
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (sigaction, sigprocmask, prctl, getppid), allocating nothing.
    unsafe {
        cmd.pre_exec(move || {
            // An ignored or blocked SIGTERM would survive exec and disarm the shell's trap.
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// git's HTTP low-speed limit (`http.lowSpeedLimit`/`lowSpeedTime`, through their environment
/// variables so that no `-c` or `GIT_CONFIG_*` slot is taken).
fn apply_speed_limits(cmd: &mut Command, limits: &GitLimits) {
    if limits.low_speed_limit > 0 {
        cmd.env(
            "GIT_HTTP_LOW_SPEED_LIMIT",
            limits.low_speed_limit.to_string(),
        )
        .env(
            "GIT_HTTP_LOW_SPEED_TIME",
            limits.low_speed_time.as_secs().to_string(),
        );
    }
}

/// The ssh command git runs: the user's own (`GIT_SSH_COMMAND`, `core.sshCommand`, `GIT_SSH`,
/// in git's order; else `ssh`) with planner's options appended. Options are appended only when
/// the command is a plain OpenSSH invocation; any other command (a wrapper script, plink, a
/// shell construct) is used as it is, bounded by `[git] timeout` alone. ssh takes the first
/// value of an option, so the user's own `-o ConnectTimeout=…` wins over planner's.
fn ssh_command(user: Option<&str>, limits: &GitLimits) -> String {
    let base = user.map_or("ssh", str::trim);
    if !is_plain_openssh(base) {
        return base.to_owned();
    }
    let connect = limits.connect_timeout.as_secs().max(1);
    format!(
        "{base} -o BatchMode=yes -o ConnectTimeout={connect} -o ServerAliveInterval={connect} -o ServerAliveCountMax=3"
    )
}

/// Whether `command` is `ssh` (or `/path/to/ssh`) with plain arguments, so that appending
/// `-o` options is sound: no shell operators, comments, redirections or substitutions.
fn is_plain_openssh(command: &str) -> bool {
    let program = command.split_whitespace().next().unwrap_or_default();
    let name = program.rsplit('/').next().unwrap_or_default();
    name == "ssh" && !command.contains([';', '|', '&', '#', '`', '(', ')', '<', '>', '\n', '\\'])
}

/// The user's ssh command as git would pick it: `GIT_SSH_COMMAND`, else `core.sshCommand`
/// (from the config [`GitEnv::load`] already read), else `GIT_SSH`.
async fn user_ssh_command() -> Option<String> {
    let from_env = |var| std::env::var(var).ok().filter(|v| !v.trim().is_empty());
    if let Some(cmd) = from_env("GIT_SSH_COMMAND") {
        return Some(cmd);
    }
    if let Some(cmd) = GitEnv::load().await.ssh_command() {
        return Some(cmd);
    }
    // GIT_SSH names a program (no shell): quote it so the shell sees one word.
    from_env("GIT_SSH").map(|p| format!("'{}'", p.replace('\'', r"'\''")))
}

/// A `[git]` limit that git itself enforced (low-speed abort, ssh connect or keep-alive
/// timeout), recognised from its stderr.
fn limit_error(what: &str, url: &Url, limits: &GitLimits, stderr: &str) -> Option<GitError> {
    let low = stderr.to_lowercase();
    if low.contains("operation too slow") {
        return Some(GitError::TooSlow {
            what: what.into(),
            url: display_url(url),
            bytes: limits.low_speed_limit,
            limit: show_duration(limits.low_speed_time),
        });
    }
    let ssh_silent = low.contains("banner exchange")
        || (low.contains("ssh:") && low.contains("timed out"))
        || (low.contains("timeout, server") && low.contains("not responding"));
    ssh_silent.then(|| GitError::SshTimeout {
        what: what.into(),
        url: display_url(url),
        limit: show_duration(limits.connect_timeout),
        detail: stderr.to_owned(),
    })
}

/// A limit as written in runtimes.toml, e.g. `30m`.
fn show_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The 3xx status of git's "The requested URL returned error: 30x" (redirects are off).
fn redirect_status(low_stderr: &str) -> Option<u16> {
    let (_, rest) = low_stderr.split_once("returned error: 3")?;
    let digits: String = rest.chars().take(2).collect();
    let status = 300 + digits.parse::<u16>().ok()?;
    (digits.len() == 2).then_some(status)
}

/// `git ls-remote` for one branch (file://, ssh://).
pub async fn ls_remote(url: &Url, branch: &str, auth: &GitAuth) -> Result<String, GitError> {
    let wanted = format!("refs/heads/{branch}");
    let mut cmd = git(url, auth, GitEnv::load().await);
    cmd.args(["ls-remote", "--", url.as_str(), &wanted]);
    let out = run(cmd, "git ls-remote", url, auth).await?;
    let oid = out
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .find(|(_, name)| *name == wanted)
        .map(|(oid, _)| oid.trim().to_owned());
    match oid {
        Some(oid) if planner_base::ids::is_commit(&oid) => Ok(oid),
        Some(oid) => Err(GitError::Protocol {
            url: display_url(url),
            detail: format!("malformed commit id {oid:?}"),
        }),
        None => Err(GitError::BranchMissing {
            url: display_url(url),
            branch: branch.to_owned(),
        }),
    }
}

/// Checks out exactly `commit` of `url` into the empty directory `dest` (shallow, detached).
pub async fn checkout(
    url: &Url,
    branch: &str,
    commit: &str,
    dest: &Path,
    auth: &GitAuth,
) -> Result<(), GitError> {
    let genv = GitEnv::load().await;
    let mut init = git(url, auth, genv);
    init.args(["init", "-q"]).arg(dest);
    run(init, "git init", url, auth).await?;
    trust::write_config(dest)
        .await
        .map_err(|e| GitError::Command {
            what: "writing .git/config".into(),
            url: display_url(url),
            stderr: format!("{}: {e}", dest.display()),
        })?;
    if let Err(by_sha) = fetch(url, commit, dest, auth, genv).await {
        // Servers that refuse unadvertised objects: fetch the branch and check it still points at the commit.
        fetch(url, &format!("refs/heads/{branch}"), dest, auth, genv)
            .await
            .map_err(|_| by_sha)?;
        let head = rev_parse(url, dest, "FETCH_HEAD", auth, genv).await?;
        if head != commit {
            return Err(GitError::Command {
                what: "git fetch".into(),
                url: display_url(url),
                stderr: format!(
                    "branch {branch:?} moved to {head} while fetching {commit}\n  help: run again to build the new HEAD"
                ),
            });
        }
    }
    let mut co = git(url, auth, genv);
    co.arg("-C").arg(dest).args([
        "-c",
        "advice.detachedHead=false",
        "checkout",
        "-q",
        "--detach",
        commit,
    ]);
    run(co, "git checkout", url, auth).await?;
    Ok(())
}

async fn fetch(
    url: &Url,
    what: &str,
    dest: &Path,
    auth: &GitAuth,
    genv: &GitEnv,
) -> Result<(), GitError> {
    let mut cmd = git(url, auth, genv);
    cmd.arg("-C").arg(dest).args([
        "fetch",
        "-q",
        "--depth=1",
        "--no-tags",
        "--",
        url.as_str(),
        what,
    ]);
    run(cmd, "git fetch", url, auth).await.map(|_| ())
}

async fn rev_parse(
    url: &Url,
    dest: &Path,
    rev: &str,
    auth: &GitAuth,
    genv: &GitEnv,
) -> Result<String, GitError> {
    let mut cmd = git(url, auth, genv);
    cmd.arg("-C").arg(dest).args(["rev-parse", rev]);
    Ok(run(cmd, "git rev-parse", url, auth)
        .await?
        .trim()
        .to_owned())
}

/// The committer time (Unix seconds) of the commit checked out at `dir`, read with `git
/// cat-file commit HEAD` under the same pins as [`modified_paths`] (the caller checked the
/// checkout first). The build context takes it as every file's mtime, as `git archive` does.
pub async fn commit_time(dir: &Path) -> Result<u64, GitError> {
    let failed = |detail: String| GitError::Protocol {
        url: dir.display().to_string(),
        detail: format!("git cat-file commit HEAD: {detail}"),
    };
    let out = local_git(dir, &["cat-file", "commit", "HEAD"])
        .await
        .map_err(|e| match e {
            Bounded::GitMissing(detail) => GitError::GitMissing { detail },
            Bounded::Io(e) => failed(e.to_string()),
            Bounded::TimedOut => failed("timed out".to_owned()),
        })?;
    if !out.status.success() {
        return Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix("committer "))
        .and_then(|l| l.rsplit(' ').nth(1))
        .and_then(|t| t.parse::<i64>().ok())
        .map(|t| t.max(0) as u64)
        .ok_or_else(|| failed("no committer time in the commit".to_owned()))
}

/// Runs a read-only local git command in `dir`, bounded by the default git timeout.
async fn local_git(dir: &Path, args: &[&str]) -> Result<Output, Bounded> {
    let mut cmd = supervised_git();
    GitEnv::local().apply(&mut cmd, &[]);
    cmd.env("GIT_OPTIONAL_LOCKS", "0")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    tie_to_planner(&mut cmd);
    output_within(cmd, GitLimits::default().timeout).await
}

/// Whether the checkout at `dir` still holds exactly its commit's tree: `Ok(None)` when it
/// does, `Ok(Some(first changed paths))` when files were changed, added or removed since the
/// checkout, `Err` when git could not tell (missing, not a repository). Writes nothing: no
/// index refresh (`GIT_OPTIONAL_LOCKS=0`), so `planner plan` stays read-only. Runs nothing the
/// checkout names: the caller checked it with [`trust::unusable`] first, git's ownership check
/// stays on, and the [`GitEnv`] pins turn hooks, fsmonitor and global attributes off.
pub async fn modified_paths(dir: &Path) -> Result<Option<String>, GitError> {
    let mut cmd = supervised_git();
    GitEnv::local().apply(&mut cmd, &[]);
    cmd.env("GIT_OPTIONAL_LOCKS", "0")
        .arg("-C")
        .arg(dir)
        .args([
            "status",
            "--porcelain=v1",
            "--untracked-files=all",
            "--ignored=matching",
            "--no-renames",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    tie_to_planner(&mut cmd);
    let limit = GitLimits::default().timeout;
    let out = output_within(cmd, limit).await.map_err(|e| match e {
        Bounded::GitMissing(detail) => GitError::GitMissing { detail },
        Bounded::Io(e) if e.kind() == std::io::ErrorKind::NotFound => GitError::GitMissing {
            detail: e.to_string(),
        },
        Bounded::Io(e) => GitError::Protocol {
            url: dir.display().to_string(),
            detail: format!("git status: {e}"),
        },
        Bounded::TimedOut => GitError::Protocol {
            url: dir.display().to_string(),
            detail: format!("git status took over {}", show_duration(limit)),
        },
    })?;
    if !out.status.success() {
        return Err(GitError::Protocol {
            url: dir.display().to_string(),
            detail: format!(
                "git status: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let changed: Vec<&str> = text.lines().map(|l| l.get(3..).unwrap_or(l)).collect();
    Ok((!changed.is_empty()).then(|| planner_base::text::list(&changed, 3)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> GitLimits {
        GitLimits {
            connect_timeout: Duration::from_secs(7),
            ..GitLimits::default()
        }
    }

    #[test]
    fn ssh_options_are_appended_to_plain_openssh_commands() {
        let opts = "-o BatchMode=yes -o ConnectTimeout=7 -o ServerAliveInterval=7 -o ServerAliveCountMax=3";
        assert_eq!(ssh_command(None, &limits()), format!("ssh {opts}"));
        assert_eq!(
            ssh_command(Some("/usr/bin/ssh -i /k/id -p 22 "), &limits()),
            format!("/usr/bin/ssh -i /k/id -p 22 {opts}")
        );
    }

    #[test]
    fn other_ssh_commands_are_left_alone() {
        for user in [
            "plink -batch",
            "my-ssh-wrapper",
            "ssh -i k; echo hi",
            "ssh -i k # comment",
            "f() { ssh \"$@\"; }; f",
            "'/opt/ssh'",
        ] {
            assert_eq!(ssh_command(Some(user), &limits()), user, "{user}");
        }
    }

    #[test]
    fn limit_errors_are_recognised_from_git_stderr() {
        let url = Url::parse("ssh://git@127.0.0.1:1/x.git").unwrap();
        let slow = "error: RPC failed; curl 28 Operation too slow. Less than 1000 bytes/sec transferred the last 2 seconds";
        let err = limit_error("git fetch", &url, &GitLimits::default(), slow).unwrap();
        let text = err.to_string();
        assert!(text.contains("below 1000 bytes/s for 1m"), "{text}");
        assert!(text.contains("ssh://127.0.0.1:1/x.git"), "{text}");
        let banner =
            "Connection timed out during banner exchange\nConnection to 127.0.0.1 port 1 timed out";
        let text = limit_error("git ls-remote", &url, &limits(), banner)
            .unwrap()
            .to_string();
        assert!(text.contains("within 7s ([git] connect_timeout)"), "{text}");
        assert!(limit_error("git fetch", &url, &limits(), "fatal: not found").is_none());
    }

    #[test]
    fn a_refused_redirect_is_recognised() {
        let stderr = "fatal: unable to access 'http://h/x/': the requested url returned error: 302";
        assert_eq!(redirect_status(stderr), Some(302));
        assert_eq!(redirect_status("returned error: 404"), None);
        assert_eq!(redirect_status("returned error: 3"), None);
    }
}
