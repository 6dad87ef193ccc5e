//! End-to-end harness: a per-test git server, cache dir, config and image namespace, and
//! helpers to run the real `planner` binary and the real Docker CLI.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::git_server::GitServer;

pub const BASE_IMAGE: &str = "planner-test/busybox:latest";
pub const TOKEN: &str = "tok-9f3c1e77a2b4d5e6";

/// The `planner` binary under test: `CARGO_BIN_EXE_planner` as cargo sets it when it runs an
/// integration test, else `planner` beside the test binary's `deps/` directory (a test binary
/// run by hand). Not `env!`: cargo sets that at compile time only for the package's own tests,
/// and this crate is a dependency of them.
pub fn planner_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_planner") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("path of the test binary");
    let dir = exe.parent().expect("the test binary's directory");
    let dir = if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    dir.join("planner")
}

/// Fails the test early with the fix when no engine is configured.
pub fn require_engine() {
    let ok = Command::new("docker")
        .args(["image", "inspect", BASE_IMAGE])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "no Docker engine with {BASE_IMAGE}: run the suite through scripts/test.sh, which starts one"
    );
}

/// A Dockerfile that uses a RUN step and copies the context.
pub fn dockerfile() -> String {
    format!("FROM {BASE_IMAGE}\nCOPY . /src\nRUN cat /src/hello.txt > /hello\n")
}

/// One test's world.
pub struct Env {
    pub git: GitServer,
    pub cache: tempfile::TempDir,
    pub dir: tempfile::TempDir,
    /// Image prefix unique to this test, e.g. `planner-e2e/warm-`.
    pub prefix: String,
}

/// The result of running planner.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Plain progress lines `<runtimes>  <step>  <what>` whose step and first word match.
    pub fn lines(&self, step: &str, what: &str) -> Vec<String> {
        self.stderr
            .lines()
            .filter(|l| {
                let mut cols = l.split_whitespace();
                let (_rt, s, w) = (cols.next(), cols.next(), cols.next());
                s == Some(step) && w == Some(what)
            })
            .map(str::to_owned)
            .collect()
    }

    pub fn count(&self, step: &str, what: &str) -> usize {
        self.lines(step, what).len()
    }

    pub fn all(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Env {
    pub fn new(test: &str) -> Env {
        require_engine();
        let env = Env {
            git: GitServer::start(),
            cache: tempfile::tempdir().unwrap(),
            dir: tempfile::tempdir().unwrap(),
            prefix: format!("planner-e2e/{test}-"),
        };
        env.remove_images();
        env
    }

    /// Creates a template repo with a Dockerfile and a hello.txt naming it.
    ///
    /// A `test-id.txt` unique to this test run makes its build layers its own: tests run in
    /// parallel against one engine, and a layer shared with another test's image can vanish
    /// mid-build when that test removes its images ("failed to get digest …").
    pub fn template(&self, repo: &str) -> String {
        let hello = format!("hello from {repo}\n");
        let id = format!(
            "{}{repo} {} {:?}\n",
            self.prefix,
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)
        );
        self.git.create_repo(
            repo,
            &[
                ("Dockerfile", dockerfile().as_bytes()),
                ("hello.txt", hello.as_bytes()),
                ("test-id.txt", id.as_bytes()),
            ],
        )
    }

    /// `[runtimes.NAME]` pointing at the test server's repo `repo`.
    pub fn runtime(&self, name: &str, repo: &str) -> String {
        format!("[runtimes.{name}]\nrepo = \"{}\"\n", self.git.url(repo))
    }

    /// Writes runtimes.toml with the test's repo prefix and image prefix, plus `extra`.
    /// Runtimes build with the classic builder unless their table says otherwise (the test
    /// engine has no bridge, so BuildKit's RUN needs `build_network`: see support::buildkit).
    pub fn config(&self, extra: &str) -> PathBuf {
        let text = format!(
            "[defaults]\nrepo_prefix = \"{}\"\nimage_prefix = \"{}\"\nplatform = \"linux/amd64\"\nbuilder = \"classic\"\n\n[git]\ntoken_env = \"PLANNER_GIT_TOKEN\"\nallow_insecure_http = true\n\n{extra}",
            self.git.base_url(),
            self.prefix
        );
        let path = self.dir.path().join("runtimes.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(planner_bin());
        cmd.arg("--config")
            .arg(self.dir.path().join("runtimes.toml"))
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(args)
            .env_remove("PLANNER_CONFIG")
            .env_remove("PLANNER_CACHE_DIR")
            .env_remove("PLANNER_REPO_PREFIX")
            .env("PLANNER_GIT_TOKEN", TOKEN)
            .current_dir(self.dir.path());
        cmd
    }

    pub fn planner(&self, args: &[&str]) -> Run {
        Run::from_output(self.command(args).output().unwrap())
    }

    pub fn image_id(&self, reference: &str) -> Option<String> {
        image_id(reference)
    }

    pub fn image(&self, runtime: &str, commit: &str) -> String {
        format!("{}{runtime}:{}", self.prefix, &commit[..12])
    }

    pub fn latest(&self, runtime: &str) -> String {
        format!("{}{runtime}:latest", self.prefix)
    }

    /// Removes every image tagged under this test's prefix.
    pub fn remove_images(&self) {
        let out = docker(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
        let mine: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with(&self.prefix))
            .collect();
        if !mine.is_empty() {
            let mut args = vec!["image", "rm", "-f"];
            args.extend(mine);
            docker(&args);
        }
    }

    pub fn cache_path(&self) -> &Path {
        self.cache.path()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.remove_images();
    }
}

/// Runs the docker CLI; panics with its stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn image_id(reference: &str) -> Option<String> {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", reference])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub fn label(reference: &str, label: &str) -> String {
    docker(&[
        "image",
        "inspect",
        "--format",
        &format!("{{{{index .Config.Labels \"{label}\"}}}}"),
        reference,
    ])
    .trim()
    .to_owned()
}

/// The only checkout in the cache dir `cache` (that of commit `sha`).
pub fn checkout_dir(cache: &Path, sha: &str) -> PathBuf {
    let repo_dir = std::fs::read_dir(cache.join("checkouts"))
        .unwrap()
        .next()
        .expect("a checkout")
        .unwrap()
        .path();
    repo_dir.join(sha)
}

/// The bytes of the file `path` inside an image, without running it.
pub fn file_in_image(reference: &str, path: &str) -> Vec<u8> {
    let id = docker(&["create", "--network", "none", reference, "true"])
        .trim()
        .to_owned();
    let out = Command::new("docker")
        .args(["cp", &format!("{id}:{path}"), "-"])
        .output()
        .unwrap();
    docker(&["rm", &id]);
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let mut entry = archive
        .entries()
        .unwrap()
        .next()
        .expect("one file")
        .unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
    bytes
}
/// Lists files under `dir` inside an image without running it (create + cp).
pub fn files_in_image(reference: &str, dir: &str) -> Vec<String> {
    let id = docker(&["create", "--network", "none", reference, "true"])
        .trim()
        .to_owned();
    let out = Command::new("docker")
        .args(["cp", &format!("{id}:{dir}"), "-"])
        .output()
        .unwrap();
    docker(&["rm", &id]);
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let mut names: Vec<String> = archive
        .entries()
        .unwrap()
        .filter_map(|e| {
            e.ok()
                .and_then(|e| e.path().ok().map(|p| p.to_string_lossy().into_owned()))
        })
        .collect();
    names.sort();
    names
}

/// Every file below `dir`, relative, sorted (to compare cache dirs before and after).
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}
