//! Trees of any shape committed to the test git server (modes, symlinks, submodule
//! placeholders that check out as empty directories), checkouts of them as a user would make
//! one, and listings of a directory inside an image, for comparing build contexts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::git_server::GitServer;

/// One entry of a tree.
#[derive(Debug, Clone)]
pub enum Item {
    File(&'static str, &'static str),
    Exec(&'static str, &'static str),
    Link(&'static str, &'static str),
    /// A submodule entry (gitlink): an empty directory in a checkout.
    Gitlink(&'static str),
}

/// git with an isolated configuration, in `dir`.
fn git(dir: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("git");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .args([
            "-c",
            "user.name=planner-test",
            "-c",
            "user.email=t@planner.invalid",
        ])
        .args(["-c", "commit.gpgsign=false", "-c", "core.symlinks=true"])
        .args([
            "-c",
            "core.autocrlf=false",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The bare repository of `repo` on `server`.
pub fn bare(server: &GitServer, repo: &str) -> PathBuf {
    server.root().join(format!("{repo}.git"))
}

/// Commits `items` as the only commit of the new repo `repo` (branch `main`); returns its sha.
pub fn commit_tree(server: &GitServer, repo: &str, items: &[Item]) -> String {
    let bare = bare(server, repo);
    let bare = bare.to_str().expect("utf-8 temp path");
    git(
        server.root(),
        &["init", "-q", "--bare", "--initial-branch=main", bare],
    );
    let work = tempfile::tempdir().expect("worktree");
    let work = work.path();
    git(work, &["init", "-q", "--initial-branch=main"]);
    for item in items {
        write_item(work, item);
    }
    git(work, &["add", "-A"]);
    for item in items {
        if let Item::Gitlink(path) = item {
            let info = format!("160000,{},{path}", "1".repeat(40));
            git(work, &["update-index", "--add", "--cacheinfo", &info]);
        }
    }
    git(work, &["commit", "-q", "--allow-empty", "-m", "tree"]);
    git(work, &["push", "-q", bare, "HEAD:refs/heads/main"]);
    git(work, &["rev-parse", "HEAD"]).trim().to_owned()
}

fn write_item(work: &Path, item: &Item) {
    use std::os::unix::fs::PermissionsExt;
    let (path, mode) = match item {
        Item::File(p, _) => (p, 0o644),
        Item::Exec(p, _) => (p, 0o755),
        Item::Link(p, target) => {
            let full = work.join(p);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, full).unwrap();
            return;
        }
        Item::Gitlink(_) => return,
    };
    let full = work.join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    let (Item::File(_, text) | Item::Exec(_, text)) = item else {
        unreachable!()
    };
    std::fs::write(&full, text).unwrap();
    std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A checkout of `repo`'s `main` in `dest` as a user makes one (umask 022), without its
/// `.git` unless `keep_git`.
pub fn checkout(server: &GitServer, repo: &str, dest: &Path, keep_git: bool) {
    checkout_with_umask(server, repo, dest, "022");
    if !keep_git {
        std::fs::remove_dir_all(dest.join(".git")).unwrap();
    }
}

/// A checkout of `repo`'s `main` in `dest` (with its `.git`), made under `umask`.
pub fn checkout_with_umask(server: &GitServer, repo: &str, dest: &Path, umask: &str) {
    let bare = bare(server, repo);
    let script = format!(
        "umask {umask} && git -c protocol.file.allow=always clone -q '{}' '{}'",
        bare.display(),
        dest.display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `name type mode size target` for every entry below `dir` in the image `reference`
/// (read with `docker create` + `docker cp`, without running it), sorted, `dir` itself left out.
pub fn listing(reference: &str, dir: &str) -> Vec<String> {
    let id = super::harness::docker(&["create", "--network", "none", reference, "true"])
        .trim()
        .to_owned();
    let out = Command::new("docker")
        .args(["cp", &format!("{id}:{dir}"), "-"])
        .output()
        .unwrap();
    super::harness::docker(&["rm", &id]);
    assert!(out.status.success(), "docker cp {reference}:{dir}");
    let base = dir.trim_start_matches('/');
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let mut lines = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = path.trim_end_matches('/');
        let Some(rel) = path.strip_prefix(base).and_then(|r| r.strip_prefix('/')) else {
            continue;
        };
        let kind = match header.entry_type() {
            tar::EntryType::Directory => "dir",
            tar::EntryType::Symlink => "link",
            tar::EntryType::Regular => "file",
            other => panic!("unexpected {other:?} at {rel}"),
        };
        let target = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let size = if kind == "file" {
            header.size().unwrap()
        } else {
            0
        };
        let mode = header.mode().unwrap() & 0o7777;
        lines.push(format!("{rel} {kind} {mode:o} {size} {target}"));
    }
    lines.sort();
    lines
}
