//! Operator UX end to end: the three renderers (NDJSON, plain, live TTY), quiet mode, the run
//! lock between processes, and shell completions. Real engine, real git server.

use planner_test_support as support;

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::harness::{BASE_IMAGE, Env, Run, docker};

/// Required keys per event, exactly as the README documents them.
fn schema(event: &str) -> Option<&'static [&'static str]> {
    Some(match event {
        "step_skipped" | "step_started" | "step_blocked" | "step_waiting" => {
            &["event", "runtime", "step", "key", "reason"]
        }
        "step_finished" => &["event", "runtime", "step", "key", "duration_ms"],
        "step_failed" => &["event", "runtime", "step", "key", "duration_ms", "error"],
        "step_output" => &["event", "runtime", "step", "key", "line"],
        "summary" => &[
            "event",
            "schema_version",
            "exit_code",
            "ensured",
            "failed",
            "skipped_steps",
            "ran_steps",
            "duration_ms",
            "runtimes",
        ],
        _ => return None,
    })
}

/// Parses NDJSON stdout, checking every line against the schema; returns the objects.
fn events(run: &Run) -> Vec<Value> {
    let objs: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for o in &objs {
        let name = o["event"].as_str().expect("event field");
        let keys = schema(name).unwrap_or_else(|| panic!("unknown event {name}"));
        let mut have: Vec<&str> = o.as_object().unwrap().keys().map(String::as_str).collect();
        have.sort();
        let mut want = keys.to_vec();
        want.sort();
        assert_eq!(have, want, "fields of {o}");
    }
    let last = objs.last().expect("at least the summary");
    assert_eq!(last["event"], "summary", "summary is the last line");
    assert_eq!(
        objs.iter().filter(|o| o["event"] == "summary").count(),
        1,
        "one summary"
    );
    objs
}

fn distinct(objs: &[Value], event: &str) -> HashSet<(String, String)> {
    objs.iter()
        .filter(|o| o["event"] == event && o["step"] != "resolve-head")
        .map(|o| (o["step"].to_string(), o["key"].to_string()))
        .collect()
}

#[test]
fn json_events_follow_the_schema_and_the_summary_counts_them() {
    let env = Env::new("uxjson");
    let sha = env.template("tpl");
    env.config(&(env.runtime("a", "tpl") + &env.runtime("b", "tpl")));

    let cold = env.planner(&["ensure", "--all", "--json", "--progress", "none"]);
    assert_eq!(cold.code, 0, "{}", cold.all());
    let objs = events(&cold);
    let summary = objs.last().unwrap();
    assert_eq!(summary["ensured"], 2);
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["schema_version"], 1);
    // a and b share clone, verify and build (one repo); each has its own tag-latest.
    assert_eq!(summary["ran_steps"], 5, "{}", cold.stdout);
    assert_eq!(distinct(&objs, "step_finished").len(), 5);
    let started = objs.iter().filter(|o| o["event"] == "step_started").count();
    let finished = objs
        .iter()
        .filter(|o| o["event"] == "step_finished" && o["step"] != "resolve-head")
        .count();
    assert_eq!(started, finished, "every started step finished");
    let rts = summary["runtimes"].as_array().unwrap();
    assert_eq!(rts[0]["runtime"], "a");
    assert_eq!(rts[0]["status"], "ensured");
    assert_eq!(rts[0]["commit"], sha.as_str());
    assert_eq!(rts[0]["image"], env.image("a", &sha).as_str());
    assert_eq!(rts[1]["error"], Value::Null);
    assert!(
        cold.stderr.trim().is_empty(),
        "--progress none: {}",
        cold.stderr
    );

    let warm = env.planner(&["ensure", "--all", "--json", "-q"]);
    assert_eq!(warm.code, 0, "{}", warm.all());
    let objs = events(&warm);
    let summary = objs.last().unwrap();
    assert_eq!(summary["ran_steps"], 0, "{}", warm.stdout);
    assert_eq!(summary["skipped_steps"], 6, "five steps and the smoke");
    // ... and the resolve-version root, skipped too (no release to ask).
    assert_eq!(distinct(&objs, "step_skipped").len(), 7);

    // --dry-run --json is the plan's JSON (one object), and agrees: nothing but resolves to run.
    let dry = env.planner(&["ensure", "--all", "--dry-run", "--json"]);
    assert_eq!(dry.code, 0, "{}", dry.all());
    let plan: Value = serde_json::from_str(&dry.stdout).expect("one JSON object");
    let to_run: Vec<&Value> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "run" && s["step"] != "resolve-head")
        .collect();
    assert!(to_run.is_empty(), "{}", dry.stdout);
}

#[test]
fn json_failure_events_carry_the_masked_error_and_exit_1() {
    let env = Env::new("uxjsonfail");
    env.template("tpl");
    env.git.require_token("secret-tpl", support::harness::TOKEN);
    env.template("secret-tpl");
    let config = env.runtime("ok", "tpl")
        + &env.runtime("gone", "not-there")
        + &env.runtime("locked", "secret-tpl");
    env.config(&config);
    let mut cmd = env.command(&["ensure", "--all", "--json"]);
    cmd.env("PLANNER_GIT_TOKEN", "wrong-token-77d1");
    let run = Run::from_output(cmd.output().unwrap());
    assert_eq!(run.code, 1, "{}", run.all());
    let objs = events(&run);
    let failed: Vec<&Value> = objs
        .iter()
        .filter(|o| o["event"] == "step_failed")
        .collect();
    assert_eq!(failed.len(), 2, "{}", run.stdout);
    let gone = failed.iter().find(|o| o["runtime"] == "gone").unwrap();
    let text = gone["error"].as_str().unwrap();
    assert!(text.contains("not found"), "{text}");
    assert!(
        run.stderr.contains(text.lines().next().unwrap()),
        "same text on stderr"
    );
    let summary = objs.last().unwrap();
    assert_eq!(summary["ensured"], 1);
    assert_eq!(summary["failed"], 2);
    let locked = summary["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["runtime"] == "locked")
        .unwrap();
    assert_eq!(locked["status"], "failed");
    assert!(
        locked["error"]
            .as_str()
            .unwrap()
            .contains("PLANNER_GIT_TOKEN"),
        "{locked}"
    );
    assert!(!run.stdout.contains("wrong-token-77d1") && !run.stderr.contains("wrong-token-77d1"));
}

#[test]
fn plain_output_has_no_escape_codes_and_quiet_prints_nothing_on_success() {
    let env = Env::new("uxplain");
    env.template("tpl");
    env.config(&env.runtime("a", "tpl"));
    // stderr is a pipe here, so the default is plain.
    let run = env.planner(&["ensure", "a"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        !run.stderr.contains('\x1b') && !run.stderr.contains('\r'),
        "{:?}",
        run.stderr
    );
    assert_eq!(run.count("build", "started"), 1, "{}", run.all());
    assert!(
        run.lines("build", "done")[0].contains("s ("),
        "duration shown"
    );
    assert!(
        run.stderr.contains("RUNTIME") && run.stderr.contains("TIME"),
        "summary table"
    );

    env.git.commit("tpl", "main", &[("hello.txt", b"v2\n")]);
    let quiet = env.planner(&["-q", "ensure", "a"]);
    assert_eq!(quiet.code, 0, "{}", quiet.all());
    assert_eq!(quiet.stderr, "", "-q prints only errors");
}

/// Runs planner under `script` (a pseudo-terminal), returning what the terminal received.
fn under_pty(env: &Env, args: &str, envs: &[(&str, &str)]) -> String {
    let exe = env!("CARGO_BIN_EXE_planner");
    let cmdline = format!(
        "{exe} --config {} --cache-dir {} {args}",
        env.dir.path().join("runtimes.toml").display(),
        env.cache.path().display()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-qefc", &cmdline, "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("`script` (util-linux) runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_terminal_gets_a_live_display_that_respects_no_color_and_dumb() {
    let env = Env::new("uxtty");
    env.template("tpl");
    env.config(&(env.runtime("alpha", "tpl") + &env.runtime("beta", "tpl")));
    let screen = under_pty(&env, "ensure --all", &[]);
    assert!(
        screen.contains("\x1b[1A") || screen.contains("\x1b[2K"),
        "redraws lines: {screen:?}"
    );
    assert!(screen.contains("\x1b[36m"), "coloured spinner");
    assert!(screen.contains("build: "), "current step shown: {screen:?}");
    assert!(
        screen.contains("ensured in ") && screen.contains("s: ran clone"),
        "final line per runtime: {screen:?}"
    );
    assert!(screen.contains("RUNTIME"), "summary table");

    let no_color = under_pty(&env, "ensure --all", &[("NO_COLOR", "1")]);
    assert!(
        !no_color.contains("\x1b[36m") && !no_color.contains("\x1b[1m"),
        "{no_color:?}"
    );
    assert!(no_color.contains("ensured: nothing to do"), "{no_color:?}");

    let dumb = under_pty(&env, "ensure --all", &[("TERM", "dumb")]);
    assert!(
        !dumb.contains('\x1b'),
        "TERM=dumb gets plain lines: {dumb:?}"
    );
    assert!(dumb.contains("tag-latest         skipped"), "{dumb:?}");
}

/// Holds the cache dir's run lock as another planner process would.
fn hold_run_lock(env: &Env) -> File {
    let dir = env.cache.path().join("locks");
    std::fs::create_dir_all(&dir).unwrap();
    let f = File::create(dir.join("run.lock")).unwrap();
    f.lock().unwrap();
    f
}

#[test]
fn the_run_lock_makes_whole_runs_wait_or_exit_75() {
    let env = Env::new("uxlock");
    env.template("tpl");
    env.config(&env.runtime("a", "tpl"));
    let held = hold_run_lock(&env);

    let busy = env.planner(&["ensure", "--all", "--no-wait"]);
    assert_eq!(busy.code, 75, "{}", busy.all());
    assert!(busy.stderr.contains("run.lock"), "{}", busy.stderr);
    assert_eq!(env.git.fetch_count("tpl"), 0, "nothing done while busy");

    let mut waiting = env
        .command(&["ensure", "--all"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = waiting.stderr.take().unwrap();
    let mut first = [0u8; 40];
    err.read_exact(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("planner: waiting for another"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "still waiting while the lock is held"
    );
    drop(held);
    let started = Instant::now();
    let status = waiting.wait().unwrap();
    assert!(status.success());
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(env.git.fetch_count("tpl"), 1);
}

#[test]
fn a_killed_holder_releases_the_run_lock() {
    let env = Env::new("uxlockkill");
    env.template("tpl");
    env.config(&env.runtime("a", "tpl"));
    // A process that takes the lock like planner does, then is killed.
    let lock = env.cache.path().join("locks/run.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    // -o: the lock stays with flock itself, not with its `sleep` child.
    let mut holder = Command::new("flock")
        .arg("-o")
        .arg(&lock)
        .args(["sleep", "30"])
        .spawn()
        .expect("flock (util-linux)");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(env.planner(&["ensure", "--all", "--no-wait"]).code, 75);
    holder.kill().unwrap();
    holder.wait().unwrap();
    let run = env.planner(&["ensure", "--all", "--no-wait"]);
    assert_eq!(run.code, 0, "{}", run.all());
}

#[test]
fn completions_are_printed_for_each_shell() {
    let exe = env!("CARGO_BIN_EXE_planner");
    for (shell, marker) in [
        ("bash", "_planner()"),
        ("zsh", "#compdef planner"),
        ("fish", "__fish_planner_"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = Command::new(exe)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker), "{shell}: {text}");
        assert!(
            text.contains("ensure") && text.contains("dry-run"),
            "{shell}"
        );
    }
    let bad = Command::new(exe)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn the_nightly_wrapper_keeps_the_ndjson_log_and_alerts_on_failures() {
    let env = Env::new("uxnightly");
    env.template("tpl");
    env.config(&(env.runtime("ok", "tpl") + &env.runtime("gone", "not-there")));
    let logs = tempfile::tempdir().unwrap();
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_planner"))
        .parent()
        .unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/nightly/prewarm.sh");
    let out = Command::new("bash")
        .arg(script)
        .env("PATH", path)
        .env("PLANNER_CONFIG", env.dir.path().join("runtimes.toml"))
        .env("PLANNER_CACHE_DIR", env.cache.path())
        .env("PLANNER_LOG_DIR", logs.path())
        .output()
        .unwrap();
    let run = Run::from_output(out);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("1 runtime(s) failed"), "{}", run.stderr);
    assert!(
        run.stderr.contains("  gone: "),
        "names the runtime: {}",
        run.stderr
    );
    let log = std::fs::read_dir(logs.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(log).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "summary");
    assert_eq!(last["ensured"], 1);
}

/// Control characters (but `\n`) that reached `text` raw.
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| (c.is_control() && c != '\n') || ('\u{202a}'..='\u{202e}').contains(&c))
        .collect()
}

/// What a hostile label or build output tries: clear the screen, set the title, overwrite the
/// line with a forged summary, reverse what follows.
const HOSTILE: &str = "\x1b[2J\x1b]0;pwned\x07\r1 ensured, 0 failed\u{202e}gnp";

#[test]
fn a_hostile_label_and_build_output_reach_the_terminal_inert() {
    let env = Env::new("uxinert");
    let sha = env.template("tpl");
    env.config(&env.runtime("a", "tpl"));
    assert_eq!(env.planner(&["ensure", "a"]).code, 0);

    // The pinned tag now names an image whose labels say anything (the engine answers them).
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {BASE_IMAGE}\n"),
    )
    .unwrap();
    docker(&[
        "build",
        "-q",
        "--label",
        &format!("dev.planner.repo={HOSTILE}"),
        "--label",
        "dev.planner.key=not-a-key",
        "-t",
        &env.image("a", &sha),
        ctx.path().to_str().unwrap(),
    ]);
    let shown = r"\u{1b}[2J\u{1b}]0;pwned\u{7}\r1 ensured, 0 failed\u{202e}gnp";
    let plan = env.planner(&["plan", "a"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(
        plan.stdout.contains(shown),
        "the label is shown, escaped\n{}",
        plan.stdout
    );
    assert!(
        raw_controls(&plan.all()).is_empty(),
        "plan: {:?}",
        plan.all()
    );
    let json = env.planner(&["plan", "a", "--format", "json"]);
    assert!(raw_controls(&json.stdout).is_empty(), "{:?}", json.stdout);
    let doc: Value = serde_json::from_str(&json.stdout).expect("still JSON");
    let reasons: Vec<&str> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["reason"].as_str())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains(HOSTILE)),
        "and says the same: {reasons:?}"
    );
    let run = env.planner(&["ensure", "a", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    // (Plain lines drop carriage returns.)
    assert!(
        run.stderr
            .contains(r"repo \u{1b}[2J\u{1b}]0;pwned\u{7}1 ensured"),
        "{}",
        run.stderr
    );
    assert!(
        raw_controls(&run.all()).is_empty(),
        "ensure: {:?}",
        run.all()
    );

    // Build output from the template repo (the git host's bytes), shown with -v and in the
    // error of the failed build, in the plain lines, the summary table and NDJSON.
    let dockerfile = format!(
        "FROM {BASE_IMAGE}\nRUN printf 'x\\033]0;pwned\\007\\033[2J\\r1 ensured, 0 failed\\n' && exit 3\n"
    );
    env.git
        .commit("tpl", "main", &[("Dockerfile", dockerfile.as_bytes())]);
    let failed = env.planner(&["-v", "ensure", "a", "--json"]);
    assert_eq!(failed.code, 1, "{}", failed.all());
    assert!(
        failed.stderr.contains(r"x\u{1b}]0;pwned\u{7}\u{1b}[2J"),
        "{}",
        failed.stderr
    );
    assert!(
        raw_controls(&failed.all()).is_empty(),
        "failed: {:?}",
        failed.all()
    );
    for line in failed.stdout.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
}

/// Rewrites every record of the cache dir so that reading it warns (its commit is garbage).
fn spoil_records(env: &Env) {
    for e in std::fs::read_dir(env.cache_path().join("records"))
        .unwrap()
        .flatten()
    {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        if let Ok(mut v) = serde_json::from_str::<Value>(&text) {
            v["commit"] = format!("{HOSTILE}zz").into();
            std::fs::write(e.path(), serde_json::to_vec(&v).unwrap()).unwrap();
        }
    }
}

#[test]
fn warnings_are_coloured_only_on_a_terminal_without_no_color() {
    let env = Env::new("uxwarn");
    env.template("tpl");
    env.config(&env.runtime("a", "tpl"));
    assert_eq!(env.planner(&["ensure", "a"]).code, 0);
    spoil_records(&env);

    // stderr is a pipe: the warning is plain text, whatever is in the record.
    let piped = env.planner(&["plan", "a"]);
    assert!(piped.stderr.contains("ignoring record"), "{}", piped.all());
    assert!(
        !piped.all().contains('\x1b'),
        "no escape codes on a pipe: {:?}",
        piped.all()
    );
    assert!(raw_controls(&piped.all()).is_empty(), "{:?}", piped.all());

    // A terminal gets colours, unless NO_COLOR says otherwise.
    let coloured = under_pty(&env, "plan a", &[]);
    assert!(coloured.contains("ignoring record"), "{coloured:?}");
    assert!(
        coloured.contains("\x1b[33m"),
        "a yellow WARN on a terminal: {coloured:?}"
    );
    let no_color = under_pty(&env, "plan a", &[("NO_COLOR", "1")]);
    assert!(no_color.contains("ignoring record"), "{no_color:?}");
    assert!(!no_color.contains('\x1b'), "NO_COLOR: {no_color:?}");
}
