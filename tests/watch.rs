//! End to end: `planner watch` against the real engine and git smart-HTTP server. Ticks
//! ensure, a pushed commit is picked up within an interval and announced to the hook once,
//! the state survives restarts (no repeat, nothing missed), a failing hook is retried,
//! signals end it (SIGTERM 0, SIGINT 130) with the state intact, the run lock is free
//! between ticks, and a failing runtime backs its host off without stalling the others.
//! Run through scripts/test.sh.

use planner_test_support as support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::git_server::GitServer;
use support::harness::{BASE_IMAGE, Env};
use support::watcher::Watcher;

const FAST: [&str; 4] = ["--interval", "1s", "--jitter", "0s"];

/// A hook appending its `PLANNER_*` environment to `log`, one block per run.
fn recording_hook(log: &Path) -> String {
    let log = log.display();
    format!("env | grep '^PLANNER_' | sort >> '{log}'; echo --- >> '{log}'")
}

/// The hook runs recorded in `log`: one map of `PLANNER_*` variables per run.
fn hook_runs(log: &Path) -> Vec<BTreeMap<String, String>> {
    let Ok(text) = std::fs::read_to_string(log) else {
        return Vec::new();
    };
    text.split("---\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            block
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

fn assert_run(run: &BTreeMap<String, String>, env: &Env, old: &str, new: &str) {
    assert_eq!(run["PLANNER_RUNTIME"], "alpha", "{run:?}");
    assert_eq!(run["PLANNER_IMAGE"], env.latest("alpha"), "{run:?}");
    assert_eq!(run["PLANNER_OLD_ID"], old, "{run:?}");
    assert_eq!(run["PLANNER_NEW_ID"], new, "{run:?}");
    assert!(
        !run.contains_key("PLANNER_GIT_TOKEN"),
        "the hook must not see the git token: {run:?}"
    );
}

/// The watcher's state file, parsed (it must always be valid JSON).
fn state(env: &Env) -> Value {
    let path = env.cache_path().join("watch/state.json");
    let text = std::fs::read_to_string(&path).expect("the state file exists");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("state is not JSON ({e}): {text}"))
}

fn latest_id(env: &Env) -> String {
    env.image_id(&env.latest("alpha")).expect(":latest exists")
}

#[test]
fn a_pushed_commit_is_picked_up_and_the_hook_runs_once_even_across_a_restart() {
    let env = Env::new("watchpick");
    env.template("tpl");
    env.config(&env.runtime("alpha", "tpl"));
    let log = env.dir.path().join("hooks.log");
    let hook = recording_hook(&log);
    let mut args = vec!["alpha", "--on-change", &hook];
    args.extend(FAST);
    let mut w = Watcher::spawn(&env, &args);

    // The first tick ensures; a :latest that did not exist replaces nothing: no hook.
    let t1 = w.tick_finished(1);
    assert_eq!(
        (t1["ensured"].as_u64(), t1["failed"].as_u64()),
        (Some(1), Some(0))
    );
    let first = latest_id(&env);
    let baseline = &w.events("baseline")[0];
    assert_eq!(
        (&baseline["id"], &baseline["appeared"]),
        (&Value::from(first.clone()), &Value::from(true))
    );
    assert!(hook_runs(&log).is_empty());

    // A new commit is built by a later tick and announced once, with both ids.
    let sha = env.git.commit("tpl", "main", &[("hello.txt", b"v2\n")]);
    let done = w.wait_event("hook_finished", Some("alpha"));
    let second = latest_id(&env);
    assert_ne!(first, second);
    assert_eq!(
        env.image_id(&env.image("alpha", &sha)),
        Some(second.clone())
    );
    assert_eq!(
        (&done["old_id"], &done["new_id"]),
        (&Value::from(first.clone()), &Value::from(second.clone()))
    );
    w.tick_finished(done["tick"].as_u64().unwrap() + 2);
    let runs = hook_runs(&log);
    assert_eq!(runs.len(), 1, "{}", w.dump());
    assert_run(&runs[0], &env, &first, &second);

    // SIGTERM: exit 0, said so, the state names the new id.
    w.signal("TERM");
    assert_eq!(
        w.exit_code_within(Duration::from_secs(30)),
        Some(0),
        "{}",
        w.dump()
    );
    assert_eq!(w.seen.last().unwrap()["event"], "watch_stopped");
    assert_eq!(state(&env)["runtimes"]["alpha"]["id"], second.as_str());

    // A restarted watcher does not run the hook again: it sees nothing new at all.
    let again = env.planner(&["watch", "alpha", "--once", "--json", "--on-change", &hook]);
    assert_eq!(again.code, 0, "{}", again.all());
    let events: Vec<Value> = again
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        names,
        ["watch_started", "tick_started", "tick_finished"],
        "{}",
        again.all()
    );
    assert_eq!(hook_runs(&log).len(), 1, "{}", again.all());
}

#[test]
fn a_change_made_while_the_watcher_was_down_fires_on_the_next_start() {
    let env = Env::new("watchdown");
    env.template("tpl");
    env.config(&env.runtime("alpha", "tpl"));
    let log = env.dir.path().join("hooks.log");
    let hook = recording_hook(&log);
    let once = |what: &str| {
        let run = env.planner(&["watch", "alpha", "--once", "--on-change", &hook]);
        assert_eq!(run.code, 0, "{what}: {}", run.all());
        run
    };
    let first_run = once("first start");
    assert!(
        first_run.stderr.contains("no hook: nothing to replace"),
        "{}",
        first_run.all()
    );
    let first = latest_id(&env);

    // Someone else's ensure moves :latest while no watcher runs.
    env.git.commit("tpl", "main", &[("hello.txt", b"v2\n")]);
    let ensure = env.planner(&["ensure", "alpha"]);
    assert_eq!(ensure.code, 0, "{}", ensure.all());
    let second = latest_id(&env);
    assert_ne!(first, second);
    assert!(hook_runs(&log).is_empty());

    let caught = once("next start");
    assert!(caught.stderr.contains("hook done"), "{}", caught.all());
    let runs = hook_runs(&log);
    assert_eq!(runs.len(), 1, "{}", caught.all());
    assert_run(&runs[0], &env, &first, &second);
    once("third start");
    assert_eq!(hook_runs(&log).len(), 1);
}

#[test]
fn a_failing_hook_is_retried_on_the_next_tick_until_it_succeeds() {
    let env = Env::new("watchretry");
    env.template("tpl");
    env.config(&env.runtime("alpha", "tpl"));
    let count = env.dir.path().join("attempts");
    let done = env.dir.path().join("done");
    let hook = format!(
        "n=$(cat '{c}' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{c}'; \
         if [ $n -lt 2 ]; then echo \"refusing, attempt $n\" >&2; exit 3; fi; \
         echo \"$PLANNER_OLD_ID $PLANNER_NEW_ID\" >> '{d}'",
        c = count.display(),
        d = done.display()
    );
    let mut args = vec!["alpha", "--on-change", &hook];
    args.extend(FAST);
    let mut w = Watcher::spawn(&env, &args);
    w.tick_finished(1);
    let first = latest_id(&env);
    env.git.commit("tpl", "main", &[("hello.txt", b"v2\n")]);

    let failed = w.wait_event("hook_failed", Some("alpha"));
    assert_eq!(failed["error"], "exit 3", "{}", w.dump());
    // The seen id is rolled back: the state still names the old one.
    assert_eq!(state(&env)["runtimes"]["alpha"]["id"], first.as_str());
    let ok = w.wait_event("hook_finished", Some("alpha"));
    assert!(ok["tick"].as_u64() > failed["tick"].as_u64());
    let second = latest_id(&env);
    assert_eq!(ok["new_id"], second.as_str());
    assert!(
        w.events("hook_output")
            .iter()
            .any(|e| e["line"] == "refusing, attempt 1"),
        "{}",
        w.dump()
    );
    w.tick_finished(ok["tick"].as_u64().unwrap() + 2);
    assert_eq!(std::fs::read_to_string(&count).unwrap().trim(), "2");
    assert_eq!(
        std::fs::read_to_string(&done).unwrap(),
        format!("{first} {second}\n")
    );
    assert_eq!(state(&env)["runtimes"]["alpha"]["id"], second.as_str());
    w.signal("TERM");
    assert_eq!(w.exit_code_within(Duration::from_secs(30)), Some(0));
}

#[test]
fn the_run_lock_is_free_between_ticks_and_sigint_exits_130() {
    let env = Env::new("watchlock");
    env.template("tpl");
    env.config(&env.runtime("alpha", "tpl"));
    // --all: each tick takes the run lock exclusively, as `ensure --all` does.
    let mut w = Watcher::spawn(&env, &["--all", "--interval", "60s", "--jitter", "0s"]);
    w.tick_finished(1);
    // One watcher per cache dir: a second one exits 75 at once, naming the lock.
    let second = env.planner(&["watch", "--all", "--once"]);
    assert_eq!(second.code, 75, "{}", second.all());
    assert!(
        second.stderr.contains("another planner watch"),
        "{}",
        second.all()
    );
    let gc = env.planner(&["gc", "--no-wait"]);
    assert_eq!(gc.code, 0, "gc between ticks: {}\n{}", gc.all(), w.dump());
    let ensure = env.planner(&["ensure", "--all", "--no-wait"]);
    assert_eq!(ensure.code, 0, "ensure between ticks: {}", ensure.all());

    w.signal("INT");
    assert_eq!(
        w.exit_code_within(Duration::from_secs(30)),
        Some(130),
        "{}",
        w.dump()
    );
    assert_eq!(w.seen.last().unwrap()["signal"], "SIGINT");
    assert_eq!(
        state(&env)["runtimes"]["alpha"]["id"],
        latest_id(&env).as_str()
    );
}

#[test]
fn sigterm_during_a_tick_cancels_it_and_exits_0() {
    let env = Env::new("watchterm");
    let dockerfile = format!("FROM {BASE_IMAGE}\nCOPY . /src\nRUN sleep 120\n");
    let id = format!("{} {}", env.prefix, std::process::id());
    env.git.create_repo(
        "slow",
        &[
            ("Dockerfile", dockerfile.as_bytes()),
            ("test-id.txt", id.as_bytes()),
        ],
    );
    env.config(&env.runtime("alpha", "slow"));
    let mut w = Watcher::spawn(&env, &["alpha", "--interval", "1s"]);
    w.wait_for("the build starting", |v| {
        v["event"] == "step_started" && v["step"] == "build"
    });
    w.signal("TERM");
    assert_eq!(
        w.exit_code_within(Duration::from_secs(60)),
        Some(0),
        "{}",
        w.dump()
    );
    assert_eq!(w.seen.last().unwrap()["signal"], "SIGTERM");
    assert!(env.image_id(&env.latest("alpha")).is_none());
    let temps: Vec<_> = std::fs::read_dir(env.cache_path().join("tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(temps.is_empty(), "temp dirs left: {temps:?}");
    // Nothing was acknowledged, and nothing half written.
    let path = env.cache_path().join("watch/state.json");
    assert!(!path.exists() || state(&env)["runtimes"].as_object().is_some());
}

#[test]
fn a_failing_runtime_does_not_stall_the_others_and_its_host_backs_off() {
    let env = Env::new("watchbackoff");
    env.template("tpl");
    let other = GitServer::start(); // another host (port): it has no repository at all
    let beta = format!("[runtimes.beta]\nrepo = \"{}\"\n", other.url("missing"));
    env.config(&(env.runtime("alpha", "tpl") + &beta));
    let host = other.base_url();
    let host = host.trim_start_matches("http://").trim_end_matches('/');
    let mut args = vec!["--all"];
    args.extend(FAST);
    let mut w = Watcher::spawn(&env, &args);

    let t1 = w.tick_finished(1);
    assert_eq!(
        (t1["ensured"].as_u64(), t1["failed"].as_u64()),
        (Some(1), Some(1)),
        "{}",
        w.dump()
    );
    assert!(env.image_id(&env.latest("alpha")).is_some());
    let failed = &w.events("runtime_failed")[0];
    assert_eq!(failed["runtime"], "beta");
    let backoffs = w.events("backoff");
    assert_eq!(backoffs[0]["scope"], host, "{}", w.dump());
    assert_eq!(
        (
            backoffs[0]["failures"].as_u64(),
            backoffs[0]["ticks"].as_u64()
        ),
        (Some(1), Some(1))
    );
    // Tick 2: beta's host sits out; alpha goes on.
    let t2 = w.wait_for("tick 2 starting", |v| {
        v["event"] == "tick_started" && v["tick"] == 2
    });
    assert_eq!(t2["runtimes"], serde_json::json!(["alpha"]));
    assert_eq!(t2["skipped"], serde_json::json!(["beta"]));
    // Tick 3 tries again and doubles the pause.
    let again = w.wait_for("a second backoff", |v| {
        v["event"] == "backoff" && v["failures"] == 2
    });
    assert_eq!(again["ticks"], 2);

    // Meanwhile a new commit of alpha is still picked up.
    let before = latest_id(&env);
    env.git.commit("tpl", "main", &[("hello.txt", b"v2\n")]);
    let moved = w.wait_event("latest_changed", Some("alpha"));
    assert_eq!(moved["old_id"], before.as_str());
    assert_ne!(latest_id(&env), before);
    w.signal("TERM");
    assert_eq!(w.exit_code_within(Duration::from_secs(30)), Some(0));
}

/// Whether process `pid` is gone (or a zombie: killed, waiting to be reaped) within `limit`.
fn dies_within(pid: &str, limit: Duration) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z')) =>
            {
                return true;
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    false
}

#[test]
fn a_hook_running_at_sigterm_is_killed_and_runs_again_on_the_next_start() {
    let env = Env::new("watchhookterm");
    env.template("tpl");
    env.config(&env.runtime("alpha", "tpl"));
    let pid_file = env.dir.path().join("hook.pid");
    let hook = format!(
        "sleep 300 & echo $! > '{}'; echo hook started; wait",
        pid_file.display()
    );
    let once = |hook: &str| env.planner(&["watch", "alpha", "--once", "--on-change", hook]);
    assert_eq!(once("true").code, 0);
    let first = latest_id(&env);
    env.git.commit("tpl", "main", &[("hello.txt", b"v2\n")]);

    let mut w = Watcher::spawn(&env, &["alpha", "--on-change", &hook]);
    w.wait_for("the hook's output", |v| {
        v["event"] == "hook_output" && v["line"] == "hook started"
    });
    w.signal("TERM");
    assert_eq!(
        w.exit_code_within(Duration::from_secs(30)),
        Some(0),
        "{}",
        w.dump()
    );
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    assert!(
        dies_within(pid.trim(), Duration::from_secs(10)),
        "the hook's child (pid {pid}) outlived the watcher"
    );
    // Not acknowledged: the next start announces the move again, and a failing hook
    // makes --once exit 1 (ensure's semantics), a succeeding one 0.
    assert_eq!(state(&env)["runtimes"]["alpha"]["id"], first.as_str());
    let failing = once("echo nope >&2; exit 4");
    assert_eq!(failing.code, 1, "{}", failing.all());
    assert!(failing.stderr.contains("hook FAILED"), "{}", failing.all());
    assert!(
        failing.stderr.contains("alpha: hook | nope"),
        "{}",
        failing.all()
    );
    let ok = once("true");
    assert_eq!(ok.code, 0, "{}", ok.all());
    assert!(ok.stderr.contains("hook done"), "{}", ok.all());
    assert_eq!(
        state(&env)["runtimes"]["alpha"]["id"],
        latest_id(&env).as_str()
    );
}

#[test]
fn a_garbage_state_file_is_set_aside_with_a_warning_and_runs_no_hook() {
    let env = Env::new("watchgarbage");
    env.template("tpl");
    env.config(&env.runtime("alpha", "tpl"));
    assert_eq!(env.planner(&["ensure", "alpha"]).code, 0);
    let dir = env.cache_path().join("watch");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("state.json"), b"\x00garbage{{{").unwrap();
    let log = env.dir.path().join("hooks.log");
    let run = env.planner(&[
        "watch",
        "alpha",
        "--once",
        "--on-change",
        &recording_hook(&log),
    ]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stderr.contains("warning: state"), "{}", run.all());
    assert!(run.stderr.contains("malformed"), "{}", run.all());
    assert!(dir.join("state.json.bad").exists());
    assert!(hook_runs(&log).is_empty(), "{}", run.all());
    assert_eq!(
        state(&env)["runtimes"]["alpha"]["id"],
        latest_id(&env).as_str()
    );
}

/// `ExecStart=` of the example unit, continuation lines joined, split into words.
fn example_exec_start() -> Vec<String> {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/watch/planner-watch.service"
    ))
    .unwrap();
    let joined = unit.replace("\\\n", " ");
    let line = joined
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart= in the example unit");
    line.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn the_example_service_command_and_hook_work_as_written() {
    let env = Env::new("watchexample");
    env.template("tpl");
    env.config(&env.runtime("alpha", "tpl"));
    let hook = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/watch/on-change.sh");
    let words = example_exec_start();
    assert!(
        words[0].ends_with("/planner") && words[1] == "watch",
        "{words:?}"
    );
    let mut args: Vec<&str> = words[1..]
        .iter()
        .map(|w| match w.as_str() {
            "/usr/local/lib/planner/on-change.sh" => hook,
            other => other,
        })
        .collect();
    args.push("--once");
    assert!(
        args.contains(&hook),
        "the unit names the example hook: {words:?}"
    );
    assert_eq!(env.planner(&args).code, 0);
    env.git.commit("tpl", "main", &[("hello.txt", b"v2\n")]);
    let run = env.planner(&args);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr.contains("alpha: hook | alpha: ") && run.stderr.contains(" moved "),
        "{}",
        run.all()
    );
    assert!(run.stderr.contains("hook done"), "{}", run.all());
}
