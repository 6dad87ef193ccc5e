//! The README's quickstart works verbatim: its `sh` blocks and the `$ ` commands of its
//! `console` blocks run in order, as written, in a fresh directory (with `planner` on `PATH`,
//! against the suite's engine), and each command prints what the README shows.
//!
//! Only what differs from run to run is set aside when comparing: hex ids (commits, keys,
//! image ids), durations, sizes and runs of spaces (a column widens with a longer duration);
//! a `...` line in the README stands for any number of lines (the progress lines). The test's
//! own cache dir and git identity come from the environment, never from edits to the commands.

use planner_test_support as support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::harness::require_engine;

const BEGIN: &str = "<!-- quickstart:begin -->";
const END: &str = "<!-- quickstart:end -->";

/// One fenced block of the quickstart.
enum Block {
    /// A shell script, run as is.
    Sh(String),
    /// `$ command` lines, each followed by the output the README shows.
    Console(Vec<(String, Vec<String>)>),
}

fn quickstart_blocks(readme: &str) -> Vec<Block> {
    let start = readme
        .find(BEGIN)
        .expect("README has the quickstart:begin marker");
    let end = readme
        .find(END)
        .expect("README has the quickstart:end marker");
    let mut blocks = Vec::new();
    let mut lines = readme[start..end].lines();
    while let Some(line) = lines.next() {
        let Some(lang) = line.strip_prefix("```") else {
            continue;
        };
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        match lang {
            "sh" => blocks.push(Block::Sh(body.join("\n") + "\n")),
            "console" => blocks.push(Block::Console(console_steps(&body))),
            other => panic!("quickstart block of unexpected language {other:?}"),
        }
    }
    blocks
}

fn console_steps(body: &[&str]) -> Vec<(String, Vec<String>)> {
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    for line in body {
        match line.strip_prefix("$ ") {
            Some(cmd) => steps.push((cmd.to_owned(), Vec::new())),
            None => steps
                .last_mut()
                .expect("a console block starts with `$ `")
                .1
                .push((*line).to_owned()),
        }
    }
    steps
}

/// Runs `script` with bash in `cwd`; returns its output (stdout then stderr interleaved as
/// written: both go to one pipe) and the directory it ended in.
fn run(script: &str, cwd: &Path, env: &QuickstartEnv) -> (i32, String, PathBuf) {
    let where_file = env.root.path().join(".cwd");
    let wrapped = format!("exec 2>&1\n{script}\npwd > '{}'\n", where_file.display());
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &wrapped])
        .current_dir(cwd)
        .env("PATH", &env.path)
        .env("PLANNER_CACHE_DIR", env.cache.path())
        .env_remove("PLANNER_CONFIG")
        .env_remove("PLANNER_REPO_PREFIX")
        .env_remove("PLANNER_REGISTRY")
        .envs([
            ("GIT_AUTHOR_NAME", "quickstart"),
            ("GIT_AUTHOR_EMAIL", "quickstart@example.invalid"),
            ("GIT_COMMITTER_NAME", "quickstart"),
            ("GIT_COMMITTER_EMAIL", "quickstart@example.invalid"),
            ("GIT_CONFIG_NOSYSTEM", "1"),
            ("GIT_CONFIG_GLOBAL", "/dev/null"),
        ])
        .output()
        .expect("bash runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let cwd = std::fs::read_to_string(&where_file)
        .map(|s| PathBuf::from(s.trim_end()))
        .unwrap_or_else(|_| cwd.to_owned());
    (out.status.code().unwrap_or(-1), text, cwd)
}

/// What differs between runs, replaced by placeholders; spaces collapsed.
fn normalize(line: &str) -> String {
    let hex = regex::Regex::new(r"\b[0-9a-f]{12,64}\b").unwrap();
    let size = regex::Regex::new(r"\b\d+(\.\d+)? (B|KiB|MiB|GiB)\b").unwrap();
    let time = regex::Regex::new(r"\b\d+(\.\d+)?(ms|s)\b").unwrap();
    let line = hex.replace_all(line, "<hex>");
    let line = size.replace_all(&line, "<size>");
    let line = time.replace_all(&line, "<time>");
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `expected` lines match `actual` lines, a `...` line matching any number of lines.
fn matches(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((e, rest)) if e == "..." => (0..=actual.len()).any(|n| matches(rest, &actual[n..])),
        Some((e, rest)) => actual
            .split_first()
            .is_some_and(|(a, more)| a == e && matches(rest, more)),
    }
}

struct QuickstartEnv {
    root: tempfile::TempDir,
    cache: tempfile::TempDir,
    path: std::ffi::OsString,
}

impl Drop for QuickstartEnv {
    /// Removes the images this run built (by the commits of its repository), nothing else.
    fn drop(&mut self) {
        let repo = self.root.path().join("planner-quickstart/hello");
        let Ok(out) = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["rev-list", "--all"])
            .output()
        else {
            return;
        };
        let ours: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|sha| format!("quickstart/hello:{}", &sha[..12.min(sha.len())]))
            .collect();
        let ids: Vec<String> = ours
            .iter()
            .filter_map(|r| support::harness::image_id(r))
            .collect();
        let latest = support::harness::image_id("quickstart/hello:latest");
        let mut refs = ours;
        if latest.is_some_and(|id| ids.contains(&id)) {
            refs.push("quickstart/hello:latest".to_owned());
        }
        let _ = Command::new("docker").arg("rmi").args(&refs).output();
    }
}

#[test]
fn readme_quickstart_works_verbatim() {
    require_engine();
    let readme = std::fs::read_to_string("README.md").expect("README.md");
    let blocks = quickstart_blocks(&readme);
    assert!(
        blocks.iter().any(|b| matches!(b, Block::Console(_))),
        "the quickstart shows no console block"
    );
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_planner")).parent().unwrap();
    let path = std::env::join_paths(std::iter::once(bin_dir.to_owned()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let env = QuickstartEnv {
        root: tempfile::tempdir().unwrap(),
        cache: tempfile::tempdir().unwrap(),
        path,
    };
    let mut cwd = env.root.path().to_owned();
    for block in &blocks {
        match block {
            Block::Sh(script) => {
                let (code, out, now) = run(script, &cwd, &env);
                assert_eq!(
                    code, 0,
                    "quickstart block failed:\n{script}\n--- output\n{out}"
                );
                cwd = now;
            }
            Block::Console(steps) => {
                for (cmd, shown) in steps {
                    let (code, out, _) = run(cmd, &cwd, &env);
                    assert_eq!(code, 0, "`{cmd}` failed:\n{out}");
                    let actual: Vec<String> = out.lines().map(normalize).collect();
                    let expected: Vec<String> = shown.iter().map(|l| normalize(l)).collect();
                    assert!(
                        matches(&expected, &actual),
                        "`{cmd}` printed what the README does not show (an image quickstart/hello:latest an \
                         earlier run left in the engine changes the first plan)\n--- README\n{}\n--- printed\n{out}",
                        shown.join("\n")
                    );
                }
            }
        }
    }
}

#[test]
fn the_matcher_needs_every_shown_line() {
    let lines = |s: &str| s.lines().map(normalize).collect::<Vec<_>>();
    let printed = lines("a 0.6s\nb 1c2aac36aade\nc 104.0 KiB");
    assert!(matches(&lines("a 12.5s\nb 0123456789ab\nc 1 B"), &printed));
    assert!(matches(&lines("...\nc 3 MiB"), &printed));
    assert!(matches(&lines("a 1s\n...\n"), &printed));
    assert!(!matches(&lines("a 1s\nc 1 B"), &printed));
    assert!(!matches(&lines("a 1s\nb x\nc 1 B"), &printed));
    assert!(!matches(&lines("...\nb 0123456789ab"), &printed));
}
