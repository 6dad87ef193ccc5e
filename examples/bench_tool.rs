//! Helpers for the benchmarks in `bench/` (run them with `bench/run.sh`; see BENCHMARKS.md).
//!
//! ```text
//! bench_tool serve
//!     Starts the test git smart-HTTP server (planner-test-support's git_server.rs: `git
//!     http-backend` behind a std-only HTTP server on 127.0.0.1) and prints
//!     `root <GIT_PROJECT_ROOT>` and `url <base URL>`. Bare repos created under the root (`<root>/<name>.git`) are served at
//!     `<url><name>`. Then reads commands on stdin, one per line:
//!       log    prints `req <method> <path> <git command or -> <status>` per request since the
//!              last `clear`, then `end`
//!       clear  forgets the requests seen so far
//!     and stops (removing the root) at end of input.
//! bench_tool seed-records <runtimes.toml> <cache-dir> <commit>
//!     Writes, for every runtime of the config, the resolve-head record an `ensure` would have
//!     left (branch HEAD = <commit>), so that `plan --offline` has an answer for each. Records
//!     are written without fsync (it is a fixture, not planner's store). Any plan name is
//!     accepted (the benchmark's own plans are passed to planner with --plans).
//! bench_tool registry <image-prefix> [<runtime>...]
//!     Starts a real registry (planner-test-support's registry.rs: Debian's docker-registry on
//!     127.0.0.1, no auth), pushes a distinct tiny image `<host>/<image-prefix><runtime>:latest`
//!     for each runtime through the engine (then removed from the engine; no runtime: an empty
//!     registry, e.g. a shared cache for planner to fill), and prints
//!     `host <127.0.0.1:PORT>`, one `image <runtime> <reference> <digest>` per runtime, and
//!     `ready`. Then reads `log` (prints `req <method> <path> <status> <engine|client>` per
//!     request since the last `clear`, then `end`) and `clear` on stdin; stops at end of input.
//! ```

// A command-line tool of the benchmarks: it prints its answers.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use planner::config::{self, EnvOverrides};
use planner::steps;
use planner::steps::record::RecordFields;
use planner::store::{RECORD_SCHEMA, Record, now_secs};
use planner_test_support::{git_server, registry};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["serve"] => serve(),
        ["seed-records", cfg, cache, commit] => seed(Path::new(cfg), Path::new(cache), commit),
        ["registry", prefix, runtimes @ ..] => serve_registry(prefix, runtimes),
        _ => {
            eprintln!(
                "usage: bench_tool serve | bench_tool seed-records <runtimes.toml> <cache-dir> <commit>\n       bench_tool registry <image-prefix> [<runtime>...]"
            );
            ExitCode::from(2)
        }
    }
}

fn serve() -> ExitCode {
    let server = git_server::GitServer::start();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "root {}", server.root().display());
    let _ = writeln!(out, "url {}", server.base_url());
    let _ = out.flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "log" => {
                for r in server.requests() {
                    let _ = writeln!(
                        out,
                        "req {} {} {} {}",
                        r.method,
                        r.path,
                        r.command.as_deref().unwrap_or("-"),
                        r.status
                    );
                }
                let _ = writeln!(out, "end");
            }
            "clear" => {
                server.clear_log();
                let _ = writeln!(out, "end");
            }
            "" => {}
            other => {
                let _ = writeln!(out, "error unknown command {other:?}");
            }
        }
        let _ = out.flush();
    }
    ExitCode::SUCCESS
}

fn serve_registry(prefix: &str, runtimes: &[&str]) -> ExitCode {
    let server = registry::TestRegistry::start(registry::RegistryAuth::None);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "host {}", server.host());
    for rt in runtimes {
        let marker = format!(
            "bench {rt} {} {:?}",
            std::process::id(),
            std::time::SystemTime::now()
        );
        let image = server.push_image(&format!("{prefix}{rt}"), "latest", &marker);
        let _ = writeln!(out, "image {rt} {} {}", image.reference, image.digest);
    }
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "log" => {
                for r in server.client_requests() {
                    let who = if r.by_engine() { "engine" } else { "client" };
                    let _ = writeln!(out, "req {} {} {} {who}", r.method, r.path, r.status);
                }
                let _ = writeln!(out, "end");
            }
            "clear" => {
                server.clear_requests();
                let _ = writeln!(out, "end");
            }
            "" => {}
            other => {
                let _ = writeln!(out, "error unknown command {other:?}");
            }
        }
        let _ = out.flush();
    }
    ExitCode::SUCCESS
}

fn seed(cfg: &Path, cache: &Path, commit: &str) -> ExitCode {
    // Records do not depend on the plans: accept any plan name (those of a --plans DIR too).
    let exists = |_: &str| Some(planner::config::SourceKind::Git);
    let config = match config::load(cfg, &EnvOverrides::default(), &exists) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench_tool: {e}");
            return ExitCode::FAILURE;
        }
    };
    let records = cache.join("records");
    if let Err(e) = std::fs::create_dir_all(&records) {
        eprintln!("bench_tool: create {}: {e}", records.display());
        return ExitCode::FAILURE;
    }
    for rt in config.runtimes.values() {
        let repo = rt.repo_identity();
        let rec = Record {
            schema: RECORD_SCHEMA,
            kind: "resolve-head".into(),
            key: steps::resolve_head::key(&repo, &rt.branch),
            runtimes: vec![rt.name.clone()],
            repo,
            fields: RecordFields {
                branch: Some(rt.branch.clone()),
                commit: Some(commit.to_owned()),
                ..Default::default()
            }
            .into_map(),
            finished_at: now_secs(),
        };
        let path = records.join(format!("{}.json", rec.key));
        let bytes = serde_json::to_vec_pretty(&rec).expect("records serialize");
        if let Err(e) = std::fs::write(&path, bytes) {
            eprintln!("bench_tool: write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    println!("seeded {}", config.runtimes.len());
    ExitCode::SUCCESS
}
