//! Whether git may be run in a cached checkout at all.
//!
//! A checkout is inspected (`git status`) only when it belongs to this user and its `.git`
//! is exactly what planner created: the `.git/config` planner wrote at clone time
//! ([`CHECKOUT_CONFIG`], so no fsmonitor, hooks path, filter driver, include or worktree
//! setting can have been added), a real `.git` directory, and no `.git/info/attributes`,
//! alternates or common-dir redirection. Anything else makes the checkout unusable: it is
//! cloned again, never trusted, and git's own ownership check (`safe.directory`) is left on.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The `.git/config` of every checkout planner makes (written right after `git init`).
pub const CHECKOUT_CONFIG: &str = "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n";

/// Files whose presence in `.git` changes what git reads or runs.
const FORBIDDEN: &[&str] = &["info/attributes", "objects/info/alternates", "commondir"];

/// Writes planner's own `.git/config` into a fresh repository at `dest`.
pub async fn write_config(dest: &Path) -> std::io::Result<()> {
    tokio::fs::write(dest.join(".git").join("config"), CHECKOUT_CONFIG).await
}

/// Why git must not run in the checkout at `dir`; `None` when it may.
pub fn unusable(dir: &Path) -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let git = dir.join(".git");
    let config = git.join("config");
    for (path, want_dir) in [
        (dir, true),
        (git.as_path(), true),
        (config.as_path(), false),
    ] {
        if let Some(why) = foreign(path, want_dir, euid) {
            return Some(why);
        }
    }
    // Compared by length first, so an enormous file is never read.
    let same_len =
        fs::symlink_metadata(&config).is_ok_and(|m| m.len() == CHECKOUT_CONFIG.len() as u64);
    if !same_len || fs::read(&config).ok().as_deref() != Some(CHECKOUT_CONFIG.as_bytes()) {
        return Some(".git/config is not the one planner wrote (altered by hand?)".into());
    }
    FORBIDDEN
        .iter()
        .find(|rel| git.join(rel).symlink_metadata().is_ok())
        .map(|rel| format!(".git/{rel} exists; planner never writes it"))
}

/// A reason when `path` is missing, a symlink, of the wrong kind, or owned by another user.
fn foreign(path: &Path, want_dir: bool, euid: u32) -> Option<String> {
    let shown = path.display();
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) => return Some(format!("cannot read {shown}: {e}")),
    };
    let kind_ok = if want_dir {
        meta.is_dir()
    } else {
        meta.is_file()
    };
    if !kind_ok {
        let want = if want_dir {
            "directory"
        } else {
            "regular file"
        };
        return Some(format!("{shown} is not a {want}"));
    }
    (meta.uid() != euid).then(|| {
        format!(
            "{shown} is owned by uid {}, not by this user (uid {euid})",
            meta.uid()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkout() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join(".git")).unwrap();
        fs::write(dir.path().join(".git/config"), CHECKOUT_CONFIG).unwrap();
        dir
    }

    #[test]
    fn planners_own_checkout_is_usable() {
        assert_eq!(unusable(checkout().path()), None);
    }

    #[test]
    fn altered_config_or_attributes_make_it_unusable() {
        let dir = checkout();
        let config = format!("{CHECKOUT_CONFIG}\tfsmonitor = touch /tmp/x\n");
        fs::write(dir.path().join(".git/config"), config).unwrap();
        assert!(unusable(dir.path()).unwrap().contains(".git/config"));

        let dir = checkout();
        fs::create_dir(dir.path().join(".git/info")).unwrap();
        fs::write(dir.path().join(".git/info/attributes"), "* filter=x\n").unwrap();
        assert!(unusable(dir.path()).unwrap().contains("info/attributes"));
    }

    #[test]
    fn a_gitfile_is_unusable() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".git"), "gitdir: /elsewhere\n").unwrap();
        assert!(unusable(dir.path()).unwrap().contains("not a directory"));
    }
}
