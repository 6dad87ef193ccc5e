//! The git CLI through `tokio::process`: `ls-remote` for non-HTTP transports and the
//! one-commit checkout. Never prompts; the token travels in git's environment
//! (`http.<origin>.extraHeader`), scoped to the repository's origin, never in argv.

use std::path::Path;
use std::process::Stdio;

use tokio::process::Command;
use url::Url;

use super::env::GitEnv;
use super::{GitAuth, GitError, pktline, trust};
use crate::mask::{display_url, mask};

/// A `git` command that cannot prompt, runs in the isolated [`GitEnv`], and carries the
/// token (if any) for `url`'s origin only.
fn git(url: &Url, auth: &GitAuth, genv: &GitEnv) -> Command {
    let mut cmd = Command::new("git");
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "")
        .env("SSH_ASKPASS", "")
        .env("GCM_INTERACTIVE", "never")
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut extra = Vec::new();
    if let (Some(token), "http" | "https") = (&auth.token, url.scheme()) {
        let origin = url.origin().ascii_serialization();
        extra.push((
            format!("http.{origin}/.extraHeader"),
            format!("Authorization: Basic {}", super::basic_credential(token)),
        ));
    }
    genv.apply(&mut cmd, &extra);
    cmd
}

/// Runs a prepared git command; stdout on success, a classified error otherwise.
async fn run(mut cmd: Command, what: &str, url: &Url, auth: &GitAuth) -> Result<String, GitError> {
    let out = cmd.output().await.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => GitError::GitMissing {
            detail: e.to_string(),
        },
        _ => GitError::Command {
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
        Some(oid) if pktline::is_object_id(&oid) => Ok(oid),
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

/// Whether the checkout at `dir` still holds exactly its commit's tree: `Ok(None)` when it
/// does, `Ok(Some(first changed paths))` when files were changed, added or removed since the
/// checkout, `Err` when git could not tell (missing, not a repository). Writes nothing: no
/// index refresh (`GIT_OPTIONAL_LOCKS=0`), so `planner plan` stays read-only. Runs nothing the
/// checkout names: the caller checked it with [`trust::unusable`] first, git's ownership check
/// stays on, and the [`GitEnv`] pins turn hooks, fsmonitor and global attributes off.
pub async fn modified_paths(dir: &Path) -> Result<Option<String>, GitError> {
    let mut cmd = Command::new("git");
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
        .kill_on_drop(true);
    let out = cmd.output().await.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => GitError::GitMissing {
            detail: e.to_string(),
        },
        _ => GitError::Protocol {
            url: dir.display().to_string(),
            detail: format!("git status: {e}"),
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
    Ok(match changed.len() {
        0 => None,
        n if n <= 3 => Some(changed.join(", ")),
        n => Some(format!("{} and {} more", changed[..3].join(", "), n - 3)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_redirect_is_recognised() {
        let stderr = "fatal: unable to access 'http://h/x/': the requested url returned error: 302";
        assert_eq!(redirect_status(stderr), Some(302));
        assert_eq!(redirect_status("returned error: 404"), None);
        assert_eq!(redirect_status("returned error: 3"), None);
    }
}
