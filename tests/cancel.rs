//! End to end: cancellation and waiting. SIGINT and SIGTERM end planner within moments
//! whatever it waits for (the run lock, another process's key lock, a build), with exit 130
//! or 143, no temp dir, image or build container left; `plan` exits 1 when a step failed; an
//! engine that stops answering (mid-build, or to everything but pings) ends the run with an
//! error naming it and the `[engine]` key to raise.
//! Run through scripts/test.sh.

// A test shows what it checks in its output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use planner_test_support as support;

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::harness::{self, Env, docker};

/// `child`'s stderr, read as it comes by a thread.
struct Stderr {
    rx: std::sync::mpsc::Receiver<String>,
    seen: String,
}

impl Stderr {
    fn of(child: &mut Child) -> Stderr {
        let mut err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0
                    || tx
                        .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                        .is_err()
                {
                    break;
                }
            }
        });
        Stderr {
            rx,
            seen: String::new(),
        }
    }

    /// Reads until `needle` was seen (at most 60 s).
    fn wait_for(&mut self, needle: &str) {
        let started = Instant::now();
        while !self.seen.contains(needle) {
            match self.rx.recv_timeout(Duration::from_secs(1)) {
                Ok(more) => self.seen.push_str(&more),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                    if started.elapsed() < Duration::from_secs(60) => {}
                Err(_) => panic!("never saw {needle:?} in:\n{}", self.seen),
            }
        }
    }

    /// Everything, once the child has exited.
    fn rest(mut self) -> String {
        while let Ok(more) = self.rx.recv_timeout(Duration::from_secs(5)) {
            self.seen.push_str(&more);
        }
        self.seen
    }
}

/// Sends `signal` (`INT`, `TERM`) to `child`.
fn signal(child: &Child, signal: &str) {
    let pid = child.id().to_string();
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Waits at most `limit` for `child`; kills it and fails the test if it is still running.
fn exit_code_within(child: &mut Child, limit: Duration, what: &str) -> Option<i32> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("{what}: planner still running after {limit:?}");
}

fn spawn(env: &Env, args: &[&str]) -> Child {
    env.command(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

fn temp_entries(env: &Env) -> Vec<String> {
    match std::fs::read_dir(env.cache_path().join("tmp")) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Locks `path` exclusively as another planner process would.
fn hold_lock(path: &std::path::Path) -> File {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = File::create(path).unwrap();
    f.lock().unwrap();
    f
}

/// The key of `runtime`'s `step`, from `plan --format json`.
fn step_key(env: &Env, runtime: &str, step: &str) -> String {
    let plan = env.planner(&["plan", runtime, "--format", "json"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == step && s["runtime"] == runtime)
        .and_then(|s| s["key"].as_str())
        .unwrap_or_else(|| panic!("no {step} key in the plan"))
        .to_owned()
}

const SIGNALS: [(&str, i32, &str); 2] = [
    ("INT", 130, "planner: interrupted; running steps cancelled"),
    (
        "TERM",
        143,
        "planner: terminated (SIGTERM); running steps cancelled",
    ),
];

#[test]
fn a_signal_ends_the_wait_for_the_run_lock_at_once() {
    let env = Env::new("sigrunlock");
    env.template("tpl");
    env.config(&env.runtime("a", "tpl"));
    let _held = hold_lock(&env.cache_path().join("locks/run.lock"));
    for (sig, code, message) in SIGNALS {
        let mut child = spawn(&env, &["ensure", "--all"]);
        let mut err = Stderr::of(&mut child);
        err.wait_for("waiting for another planner run");
        std::thread::sleep(Duration::from_millis(200));
        signal(&child, sig);
        let got = exit_code_within(&mut child, Duration::from_secs(3), sig);
        let stderr = err.rest();
        assert_eq!(got, Some(code), "SIG{sig}: {stderr}");
        assert!(stderr.contains(message), "SIG{sig}: {stderr}");
        assert!(temp_entries(&env).is_empty(), "{:?}", temp_entries(&env));
        assert_eq!(env.git.fetch_count("tpl"), 0, "nothing done while waiting");
    }
}

/// With `--json`, a signal still ends stdout with a last line: an `error` with 130 or 143.
#[test]
fn a_signal_with_json_ends_stdout_with_an_error_line() {
    let env = Env::new("sigjson");
    env.template("tpl");
    env.config(&env.runtime("a", "tpl"));
    let _held = hold_lock(&env.cache_path().join("locks/run.lock"));
    for (sig, code, _) in SIGNALS {
        let mut child = env
            .command(&["ensure", "--all", "--json"])
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = Stderr::of(&mut child);
        err.wait_for("waiting for another planner run");
        signal(&child, sig);
        assert_eq!(
            exit_code_within(&mut child, Duration::from_secs(3), sig),
            Some(code)
        );
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
        let last: serde_json::Value = serde_json::from_str(
            out.lines()
                .last()
                .unwrap_or_else(|| panic!("SIG{sig}: no stdout; stderr: {}", err.rest())),
        )
        .unwrap();
        assert_eq!(last["event"], "error", "SIG{sig}: {out}");
        assert_eq!(last["exit_code"], code, "SIG{sig}: {out}");
        assert!(
            last["message"].as_str().unwrap().contains("cancelled"),
            "{out}"
        );
    }
}

#[test]
fn a_signal_ends_the_wait_for_another_process_key_lock_at_once() {
    let env = Env::new("sigkeylock");
    env.template("tpl");
    env.config(&env.runtime("k", "tpl"));
    let key = step_key(&env, "k", "clone");
    let _held = hold_lock(&env.cache_path().join(format!("locks/{key}.lock")));
    for (sig, code, message) in SIGNALS {
        let mut child = spawn(&env, &["ensure", "k", "--progress", "plain"]);
        let mut err = Stderr::of(&mut child);
        err.wait_for("waiting (another planner process holds this step's lock)");
        std::thread::sleep(Duration::from_millis(200));
        signal(&child, sig);
        let got = exit_code_within(&mut child, Duration::from_secs(3), sig);
        let stderr = err.rest();
        assert_eq!(got, Some(code), "SIG{sig}: {stderr}");
        assert!(stderr.contains(message), "SIG{sig}: {stderr}");
        assert!(temp_entries(&env).is_empty(), "{:?}", temp_entries(&env));
        assert_eq!(
            env.git.fetch_count("tpl"),
            0,
            "no clone while the lock is held"
        );
    }
}

#[test]
fn sigterm_cancels_the_build_cleans_up_and_exits_143() {
    let env = Env::new("sigterm");
    let marker = format!("planner-sigterm-{}", std::process::id());
    let slow = format!(
        "FROM {}\nCOPY . /src\nRUN sleep 20 && echo {marker} > /hello\n",
        harness::BASE_IMAGE
    );
    let sha = env.git.create_repo(
        "tpl",
        &[("Dockerfile", slow.as_bytes()), ("hello.txt", b"hi\n")],
    );
    env.config(&env.runtime("s", "tpl"));
    let mut child = spawn(&env, &["ensure", "s", "--progress", "plain"]);
    let mut err = Stderr::of(&mut child);
    err.wait_for("build              started");
    // Let the RUN container start.
    let building = Instant::now();
    while !build_containers(&marker) && building.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        build_containers(&marker),
        "the RUN step started: {}",
        err.seen
    );
    signal(&child, "TERM");
    let got = exit_code_within(&mut child, Duration::from_secs(10), "TERM");
    let seen = err.rest();
    assert_eq!(got, Some(143), "{seen}");
    assert!(
        seen.contains("planner: terminated (SIGTERM); running steps cancelled"),
        "{seen}"
    );
    assert_eq!(
        env.image_id(&env.image("s", &sha)),
        None,
        "no image from a cancelled build"
    );
    assert!(temp_entries(&env).is_empty(), "{:?}", temp_entries(&env));
    // The engine removes the build's container once the client has gone.
    let gone = Instant::now();
    while build_containers(&marker) && gone.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!build_containers(&marker), "no build container left");
}

/// Whether a container running the RUN step that names `marker` exists (running or not).
fn build_containers(marker: &str) -> bool {
    docker(&["ps", "-a", "--no-trunc", "--format", "{{.Command}}"]).contains(marker)
}

#[test]
fn plan_exits_1_when_a_step_failed_after_printing_the_plan() {
    let env = Env::new("planfail");
    env.template("tpl");
    env.config(&format!(
        "{}{}",
        env.runtime("good", "tpl"),
        env.runtime("gone", "no-such-repo")
    ));
    let plan = env.planner(&["plan", "--all"]);
    assert_eq!(plan.code, 1, "{}", plan.all());
    assert!(
        plan.stdout.contains("good") && plan.stdout.contains("gone"),
        "the plan is printed: {}",
        plan.all()
    );
    let json = env.planner(&["plan", "gone", "--format", "json"]);
    assert_eq!(json.code, 1, "{}", json.all());
    serde_json::from_str::<serde_json::Value>(&json.stdout).expect("the plan's JSON");
    let good = env.planner(&["plan", "good"]);
    assert_eq!(good.code, 0, "{}", good.all());
}

#[test]
fn an_engine_that_stops_answering_mid_build_fails_after_the_idle_timeout() {
    let env = Env::new("engineidle");
    // Content of its own: the image the engine may still finish shares no layer with others.
    let hello = format!("stalled build {}\n", std::process::id());
    env.git.create_repo(
        "tpl",
        &[
            ("Dockerfile", harness::dockerfile().as_bytes()),
            ("hello.txt", hello.as_bytes()),
        ],
    );
    env.config(&format!(
        "[engine]\nidle_timeout = \"2s\"\n\n{}",
        env.runtime("i", "tpl")
    ));
    let upstream = std::env::var("DOCKER_HOST").unwrap_or_default();
    let upstream = upstream
        .strip_prefix("unix://")
        .expect("scripts/test.sh sets DOCKER_HOST to the private engine's unix socket");
    let proxy = support::stall_proxy::StallProxy::start(std::path::Path::new(upstream));
    let started = Instant::now();
    let mut child = env
        .command(&["ensure", "i", "--progress", "plain"])
        .env("DOCKER_HOST", proxy.docker_host())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let err = Stderr::of(&mut child);
    let got = exit_code_within(&mut child, Duration::from_secs(90), "stalled build");
    let stderr = err.rest();
    assert_eq!(got, Some(1), "{stderr}");
    assert!(
        proxy.stalled() >= 1,
        "the build's answer was stalled: {stderr}"
    );
    for needle in [
        "build              FAILED",
        &format!(
            "the Docker engine at {} stopped answering",
            proxy.docker_host()
        ),
        "nothing moved for 2s during the build of",
        "idle_timeout",
    ] {
        assert!(stderr.contains(needle), "{needle:?} in:\n{stderr}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "failed within a bounded time"
    );
    drop(proxy);
    env.remove_images();
}

/// Runs planner with `args` against the engine at `docker_host`; its exit code and stderr
/// (a run still going after 60 s is killed and fails the test: a hang).
fn run_against(env: &Env, docker_host: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut child = env
        .command(args)
        .env("DOCKER_HOST", docker_host)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let err = Stderr::of(&mut child);
    let got = exit_code_within(&mut child, Duration::from_secs(60), &args.join(" "));
    (got, err.rest())
}

#[test]
fn an_engine_that_answers_only_pings_ends_the_run_at_the_first_stall_naming_the_engine_and_key() {
    let env = Env::new("halfengine");
    env.template("tpl");
    env.config(&format!(
        "[engine]\ntimeout = \"2s\"\n\n{}",
        env.runtime("h", "tpl")
    ));
    let upstream = std::env::var("DOCKER_HOST").unwrap_or_default();
    let upstream = upstream
        .strip_prefix("unix://")
        .expect("scripts/test.sh sets DOCKER_HOST to the private engine's unix socket");
    let proxy = support::stall_proxy::StallProxy::half_answering(std::path::Path::new(upstream));
    let host = proxy.docker_host();
    let named = format!("the Docker engine at {host} stopped answering");
    let key = "raise `timeout` in the [engine] table of runtimes.toml";

    let (code, stderr) = run_against(&env, &host, &["ensure", "h", "--progress", "plain"]);
    eprintln!("--- ensure against an engine answering only pings\n{stderr}");
    assert_eq!(code, Some(1), "{stderr}");
    for needle in [&named, "got no answer within 2s", key] {
        assert!(stderr.contains(needle), "{needle:?} in:\n{stderr}");
    }
    // Deciding asks about `:latest`, then the pinned tag, then each again live: the first
    // stall ends the run for the engine, so nothing after it reaches the engine.
    assert_eq!(
        proxy.stalled(),
        1,
        "one call stalled, no other was made:\n{stderr}"
    );

    for args in [&["gc", "--dry-run"][..], &["status"]] {
        let before = proxy.stalled();
        let (code, stderr) = run_against(&env, &host, args);
        eprintln!("--- {args:?}\n{stderr}");
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        for needle in [&named, "got no answer within 2s", key] {
            assert!(
                stderr.contains(needle),
                "{args:?}: {needle:?} in:\n{stderr}"
            );
        }
        assert_eq!(proxy.stalled(), before + 1, "{args:?}: one call stalled");
    }
    drop(proxy);
}

#[test]
fn a_stalled_json_reader_does_not_stop_the_run() {
    let env = Env::new("jsonstall");
    // 3,000 output lines: with -v, about 600 KB of NDJSON, far over a pipe's buffer.
    let noisy = format!(
        "FROM {}\nCOPY . /src\nRUN for i in $(seq 1 3000); do echo \"line $i {}\"; done\n",
        harness::BASE_IMAGE,
        "x".repeat(100)
    );
    env.git.create_repo(
        "tpl",
        &[("Dockerfile", noisy.as_bytes()), ("hello.txt", b"hi\n")],
    );
    env.config(&env.runtime("j", "tpl"));
    let mut child = env
        .command(&["ensure", "j", "--json", "-v", "--progress", "plain"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut err = Stderr::of(&mut child);
    // Nobody reads stdout: the run still goes to its end.
    err.wait_for("tag-latest         done");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
    let got = exit_code_within(&mut child, Duration::from_secs(30), "after the drain");
    assert_eq!(got, Some(0), "{}", err.rest());
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 3_000, "every output line: {}", lines.len());
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["event"], "summary", "the summary comes last");
    assert_eq!(last["ensured"], 1);
    let outputs = lines
        .iter()
        .filter(|l| l.contains("\"event\":\"step_output\""))
        .count();
    assert!(outputs >= 3_000, "{outputs} output lines");
    env.remove_images();
}
