//! End to end: the real `planner` binary against a real Docker engine and a real git
//! smart-HTTP server (`git http-backend`) on 127.0.0.1. Run through scripts/test.sh.

use planner_test_support as support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::harness::{self, Env, TOKEN, docker, files_in_image, label, tree};

fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

#[test]
fn cold_ensure_builds_and_tags_then_warm_ensure_does_nothing() {
    let env = Env::new("coldwarm");
    let sha = env.template("tpl");
    env.config(&env.runtime("alpha", "tpl"));

    let cold = env.planner(&["ensure", "alpha"]);
    assert_eq!(cold.code, 0, "{}", cold.all());
    let pinned = env.image("alpha", &sha);
    let id = env.image_id(&pinned).expect("pinned image exists");
    assert_eq!(
        env.image_id(&env.latest("alpha")),
        Some(id.clone()),
        ":latest names the build"
    );
    assert_eq!(label(&pinned, "org.opencontainers.image.revision"), sha);
    assert_eq!(
        label(&pinned, "org.opencontainers.image.source"),
        env.git.url("tpl")
    );
    assert_eq!(
        label(&pinned, "dev.planner.dockerfile-blake3"),
        blake3_hex(harness::dockerfile().as_bytes())
    );
    assert_eq!(label(&pinned, "dev.planner.key").len(), 64);
    assert_eq!(env.git.fetch_count("tpl"), 1);
    for step in ["clone", "verify-dockerfile", "build", "tag-latest"] {
        assert_eq!(
            cold.count(step, "done"),
            1,
            "{step} ran once\n{}",
            cold.all()
        );
    }
    assert!(cold.stderr.contains("ensured, 0 failed"), "{}", cold.all());

    let warm = env.planner(&["ensure", "alpha"]);
    assert_eq!(warm.code, 0, "{}", warm.all());
    assert_eq!(env.git.fetch_count("tpl"), 1, "warm ensure fetches nothing");
    for step in ["clone", "verify-dockerfile", "build", "tag-latest"] {
        assert_eq!(
            warm.count(step, "started"),
            0,
            "{step} must not run when warm\n{}",
            warm.all()
        );
        assert_eq!(warm.count(step, "skipped"), 1, "{}", warm.all());
    }
    assert!(
        warm.stderr.contains("present, key matches"),
        "{}",
        warm.all()
    );
    assert_eq!(env.image_id(&pinned), Some(id));
}

#[test]
fn new_commit_rebuilds_only_that_runtime() {
    let env = Env::new("newcommit");
    let sha_a = env.template("tpl-a");
    let sha_b = env.template("tpl-b");
    env.config(&(env.runtime("a", "tpl-a") + &env.runtime("b", "tpl-b")));
    assert_eq!(env.planner(&["ensure", "--all"]).code, 0);
    let old_b = env.image_id(&env.image("b", &sha_b)).unwrap();

    let new_a = env
        .git
        .commit("tpl-a", "main", &[("hello.txt", b"changed\n")]);
    let run = env.planner(&["ensure", "--all"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let builds = run.lines("build", "started");
    assert_eq!(builds.len(), 1, "{}", run.all());
    assert!(
        builds[0].starts_with("a ")
            && builds[0].contains(&format!(
                "new commit {} (was {})",
                &new_a[..12],
                &sha_a[..12]
            )),
        "{}",
        run.all()
    );
    assert_eq!(env.git.fetch_count("tpl-a"), 2);
    assert_eq!(env.git.fetch_count("tpl-b"), 1);
    assert_eq!(env.image_id(&env.image("b", &sha_b)), Some(old_b));
    let new_id = env.image_id(&env.image("a", &new_a)).expect("new image");
    assert_eq!(env.image_id(&env.latest("a")), Some(new_id));
}

#[test]
fn removed_image_is_rebuilt_from_the_cached_checkout_without_fetching() {
    let env = Env::new("pruned");
    let sha = env.template("tpl");
    env.config(&env.runtime("p", "tpl"));
    assert_eq!(env.planner(&["ensure", "p"]).code, 0);
    docker(&["image", "rm", "-f", &env.image("p", &sha), &env.latest("p")]);

    let run = env.planner(&["ensure", "p"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(env.git.fetch_count("tpl"), 1, "no second fetch");
    assert_eq!(run.count("clone", "skipped"), 1, "{}", run.all());
    let build = run.lines("build", "started");
    assert!(
        build.len() == 1 && build[0].contains("missing (pruned?)"),
        "{}",
        run.all()
    );
    assert!(env.image_id(&env.image("p", &sha)).is_some());
}

#[test]
fn a_modified_cached_checkout_is_not_trusted() {
    let env = Env::new("tampered");
    let sha = env.template("tpl");
    env.config(&env.runtime("t", "tpl"));
    assert_eq!(env.planner(&["ensure", "t"]).code, 0);
    docker(&["image", "rm", "-f", &env.image("t", &sha), &env.latest("t")]);
    let checkout = harness::checkout_dir(env.cache_path(), &sha);
    std::fs::write(checkout.join("stray.txt"), "not in the commit\n").unwrap();
    std::fs::write(checkout.join("hello.txt"), "edited by hand\n").unwrap();

    let plan = env.planner(&["plan", "t"]);
    assert!(
        plan.stdout
            .contains("files changed since checkout: hello.txt, stray.txt"),
        "{}",
        plan.all()
    );
    assert!(checkout.join("stray.txt").exists(), "plan changes nothing");
    let run = env.planner(&["ensure", "t"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        run.count("clone", "started"),
        1,
        "checked out again\n{}",
        run.all()
    );
    assert_eq!(env.git.fetch_count("tpl"), 2);
    let files = files_in_image(&env.image("t", &sha), "/src");
    assert!(!files.iter().any(|f| f.ends_with("stray.txt")), "{files:?}");
    assert!(!checkout.join("stray.txt").exists());
    assert_eq!(
        std::fs::read_to_string(checkout.join("hello.txt")).unwrap(),
        "hello from tpl\n"
    );
}

#[test]
fn wiped_cache_dir_with_images_kept_does_nothing() {
    let env = Env::new("wiped");
    let sha = env.template("tpl");
    env.config(&env.runtime("w", "tpl"));
    assert_eq!(env.planner(&["ensure", "w"]).code, 0);
    let id = env.image_id(&env.image("w", &sha)).unwrap();
    std::fs::remove_dir_all(env.cache_path()).unwrap();

    let run = env.planner(&["ensure", "w"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        !run.stderr.contains(" started "),
        "nothing runs\n{}",
        run.all()
    );
    assert_eq!(env.git.fetch_count("tpl"), 1);
    assert_eq!(env.image_id(&env.image("w", &sha)), Some(id));
    assert!(
        !env.cache_path()
            .join("checkouts")
            .read_dir()
            .unwrap()
            .any(|_| true),
        "no clone"
    );
}

/// (runtime, step, reason) triples the plan says will run.
fn planned_runs(env: &Env) -> BTreeSet<(String, String, String)> {
    let plan = env.planner(&["plan", "--all", "--format", "json"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let doc: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(doc["schema_version"], 1);
    doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "run" && s["step"] != "resolve-head")
        .map(|s| {
            (
                s["runtime"].as_str().unwrap().to_owned(),
                s["step"].as_str().unwrap().to_owned(),
                s["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// (runtime, step, reason) of every `started (reason)` line.
fn executed_runs(run: &harness::Run) -> BTreeSet<(String, String, String)> {
    run.stderr
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let (_, reason) = l.split_once(" started (")?;
            (cols.len() >= 3 && cols[2] == "started").then(|| {
                (
                    cols[0].split(',').next().unwrap().to_owned(),
                    cols[1].to_owned(),
                    reason.strip_suffix(')').unwrap_or(reason).to_owned(),
                )
            })
        })
        .collect()
}

#[test]
fn dry_run_predicts_exactly_what_the_run_does() {
    let env = Env::new("predict");
    let sha_a = env.template("tpl-a");
    env.template("tpl-b");
    env.config(&(env.runtime("a", "tpl-a") + &env.runtime("b", "tpl-b")));
    let check = |label: &str| {
        let before = tree(env.cache_path());
        let fetches = env.git.fetch_count("tpl-a") + env.git.fetch_count("tpl-b");
        let predicted = planned_runs(&env);
        assert_eq!(
            tree(env.cache_path()),
            before,
            "{label}: plan wrote nothing"
        );
        assert_eq!(
            env.git.fetch_count("tpl-a") + env.git.fetch_count("tpl-b"),
            fetches,
            "{label}: plan fetched nothing"
        );
        let run = env.planner(&["ensure", "--all"]);
        assert_eq!(run.code, 0, "{}", run.all());
        assert_eq!(executed_runs(&run), predicted, "{label}\n{}", run.all());
        predicted.len()
    };
    assert_eq!(check("cold"), 8);
    assert_eq!(check("warm"), 0);
    env.git.commit("tpl-b", "main", &[("hello.txt", b"b2\n")]);
    docker(&["image", "rm", "-f", &env.image("a", &sha_a)]);
    // Without b's :latest, only the record knows b's old commit: the run under the lock
    // must still say what the plan said ("new commit …", not "not built yet").
    docker(&["image", "rm", "-f", &env.latest("b")]);
    assert_eq!(check("new commit on b, pinned tag of a removed"), 6);
    docker(&["tag", &env.image("a", &sha_a), &env.latest("b")]);
    assert_eq!(check(":latest of b moved away"), 1);
}

#[test]
fn two_runtimes_on_one_repo_fetch_and_build_once() {
    let env = Env::new("shared");
    let sha = env.template("tpl");
    env.config(&(env.runtime("one", "tpl") + &env.runtime("two", "tpl")));
    let run = env.planner(&["ensure", "--all"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(env.git.fetch_count("tpl"), 1);
    assert_eq!(run.count("build", "done"), 1, "{}", run.all());
    assert_eq!(run.count("tag-latest", "done"), 2, "{}", run.all());
    let one = env.image_id(&env.image("one", &sha)).unwrap();
    assert_eq!(env.image_id(&env.image("two", &sha)), Some(one.clone()));
    assert_eq!(env.image_id(&env.latest("two")), Some(one));
}

#[test]
fn three_concurrent_processes_fetch_and_build_each_key_once() {
    let env = Env::new("concurrent");
    env.template("tpl-a");
    env.template("tpl-b");
    env.config(&(env.runtime("a", "tpl-a") + &env.runtime("b", "tpl-b")));
    let children: Vec<_> = (0..3)
        .map(|_| {
            env.command(&["ensure", "a", "b"])
                .stderr(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let mut builds = 0;
    for out in &outs {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        builds += stderr
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("build") && l.contains(" done "))
            .count();
    }
    assert_eq!(builds, 2, "each build key built once across processes");
    assert_eq!(env.git.fetch_count("tpl-a"), 1);
    assert_eq!(env.git.fetch_count("tpl-b"), 1);
}

#[test]
fn kill_9_at_any_moment_then_rerun_is_correct() {
    let env = Env::new("kill");
    let slow = format!(
        "FROM {}\nCOPY . /src\nRUN sleep 1 && cat /src/hello.txt > /hello\n",
        harness::BASE_IMAGE
    );
    let sha = env.git.create_repo(
        "tpl",
        &[("Dockerfile", slow.as_bytes()), ("hello.txt", b"hi\n")],
    );
    env.config(&env.runtime("k", "tpl"));
    for delay_ms in [30, 120, 300, 700, 1200, 2000] {
        env.remove_images();
        let _ = std::fs::remove_dir_all(env.cache_path());
        let mut child = env
            .command(&["ensure", "k"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let rerun = env.planner(&["ensure", "k"]);
        assert_eq!(
            rerun.code,
            0,
            "after kill at {delay_ms} ms\n{}",
            rerun.all()
        );
        let pinned = env.image("k", &sha);
        assert_eq!(
            label(&pinned, "org.opencontainers.image.revision"),
            sha,
            "after kill at {delay_ms} ms"
        );
        assert_eq!(env.image_id(&env.latest("k")), env.image_id(&pinned));
        let tmp: Vec<_> = std::fs::read_dir(env.cache_path().join("tmp"))
            .unwrap()
            .collect();
        assert!(
            tmp.is_empty(),
            "no temp dir left after the rerun (kill at {delay_ms} ms)"
        );
        let third = env.planner(&["ensure", "k"]);
        assert!(
            !third.stderr.contains(" started "),
            "third run is warm (kill at {delay_ms} ms)\n{}",
            third.all()
        );
    }
}

/// Reads `child`'s stderr until a line contains `needle`; returns everything read.
fn read_until(child: &mut std::process::Child, needle: &str) -> String {
    use std::io::{BufRead, BufReader};
    let err = child.stderr.take().unwrap();
    let mut reader = BufReader::new(err);
    let mut seen = String::new();
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        seen.push_str(&line);
        if line.contains(needle) {
            break;
        }
        line.clear();
    }
    // Keep draining in the background so the child never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    seen
}

#[test]
fn ctrl_c_cancels_the_build_cleans_up_and_exits_130() {
    let env = Env::new("sigint");
    let slow = format!(
        "FROM {}\nCOPY . /src\nRUN sleep 20 && cat /src/hello.txt > /hello\n",
        harness::BASE_IMAGE
    );
    let sha = env.git.create_repo(
        "tpl",
        &[("Dockerfile", slow.as_bytes()), ("hello.txt", b"hi\n")],
    );
    env.config(&env.runtime("s", "tpl"));
    let mut child = env
        .command(&["ensure", "s"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let seen = read_until(&mut child, "build              started");
    assert!(seen.contains("build              started"), "{seen}");
    std::thread::sleep(Duration::from_millis(500));
    let sent = Instant::now();
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "the 20 s build is abandoned, not awaited"
    );
    assert_eq!(
        env.image_id(&env.image("s", &sha)),
        None,
        "no image from a cancelled build"
    );
    let tmp: Vec<_> = std::fs::read_dir(env.cache_path().join("tmp"))
        .unwrap()
        .collect();
    assert!(tmp.is_empty(), "temp dirs removed: {tmp:?}");
    // The completed clone was kept: the rerun goes straight to the build.
    let fetches = env.git.fetch_count("tpl");
    let plan = env.planner(&["plan", "s"]);
    assert!(
        plan.stdout.contains("Dockerfile verified"),
        "{}",
        plan.all()
    );
    assert_eq!(env.git.fetch_count("tpl"), fetches);
}

#[test]
fn dockerignore_is_applied_with_docker_semantics() {
    let env = Env::new("ignore");
    let dockerfile = format!("FROM {}\nCOPY . /ctx\n", harness::BASE_IMAGE);
    let ignore = "# comment\n*.md\n!README.md\nsecret/\n**/*.tmp\ntemp?\n/build\n!build/keep.txt\n";
    let files: &[(&str, &[u8])] = &[
        ("Dockerfile", dockerfile.as_bytes()),
        (".dockerignore", ignore.as_bytes()),
        ("README.md", b"r"),
        ("NOTES.md", b"n"),
        ("secret/key", b"s"),
        ("src/a.tmp", b"t"),
        ("src/deep/b.tmp", b"t"),
        ("src/main.rs", b"m"),
        ("temp1", b"x"),
        ("temp12", b"x"),
        ("build/out.bin", b"o"),
        ("build/keep.txt", b"k"),
    ];
    env.git.create_repo("tpl", files);
    let sha = env.git.add_symlink("tpl", "main", "link", "src/main.rs");
    env.config(&env.runtime("i", "tpl"));
    let run = env.planner(&["ensure", "i"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let got = files_in_image(&env.image("i", &sha), "/ctx");
    let want = [
        "ctx",
        "ctx/.dockerignore",
        "ctx/Dockerfile",
        "ctx/README.md",
        "ctx/build",
        "ctx/build/keep.txt",
        "ctx/link",
        "ctx/src",
        "ctx/src/deep",
        "ctx/src/main.rs",
        "ctx/temp12",
    ];
    let got_set: BTreeSet<&str> = got.iter().map(|s| s.trim_end_matches('/')).collect();
    assert_eq!(got_set, want.into_iter().collect(), "{got:?}");
}

#[test]
fn plan_writes_nothing_and_renders_json_and_dot() {
    let env = Env::new("planonly");
    env.template("tpl");
    env.config(&env.runtime("x", "tpl"));
    let plan = env.planner(&["plan", "x", "--format", "json"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let doc: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let steps = doc["steps"].as_array().unwrap();
    // local-build's five steps, the smoke and the resolve-version root.
    assert_eq!(steps.len(), 7);
    for s in steps {
        for field in ["id", "runtime", "step", "key", "status", "reason", "needs"] {
            assert!(s.get(field).is_some(), "{field} in {s}");
        }
        assert!(["skip", "run", "blocked", "failed"].contains(&s["status"].as_str().unwrap()));
    }
    assert!(
        !env.cache_path().exists() || tree(env.cache_path()).is_empty(),
        "plan created nothing"
    );
    assert_eq!(env.git.fetch_count("tpl"), 0);
    assert!(env.image_id(&env.latest("x")).is_none());

    let dot = env.planner(&["plan", "x", "--format", "dot"]);
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("graphviz dot");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), dot.stdout.as_bytes()).unwrap();
    let svg = child.wait_with_output().unwrap();
    assert!(
        svg.status.success() && String::from_utf8_lossy(&svg.stdout).contains("<svg"),
        "{}",
        dot.stdout
    );

    let text = env.planner(&["ensure", "x", "--dry-run"]);
    assert!(
        text.stdout.contains("5 to run, 2 skipped"),
        "{}",
        text.all()
    );
}

#[test]
fn offline_plan_uses_recorded_heads() {
    let env = Env::new("offline");
    env.template("tpl");
    env.config(&env.runtime("o", "tpl"));
    let cold = env.planner(&["plan", "o", "--offline"]);
    // No recorded answer is a failed resolve-head: the plan is printed, and exit 1.
    assert_eq!(cold.code, 1, "{}", cold.all());
    assert!(cold.stdout.contains("no recorded answer"), "{}", cold.all());
    assert_eq!(env.planner(&["ensure", "o"]).code, 0);
    env.git.set_fail("tpl", Some(500));
    let plan = env.planner(&["plan", "o", "--offline"]);
    assert!(
        plan.stdout.contains("0 to run") && plan.stdout.contains("offline: last recorded"),
        "{}",
        plan.all()
    );
}

#[test]
fn failures_name_the_cause_and_exit_1_while_other_runtimes_finish() {
    let env = Env::new("errors");
    env.template("good");
    env.git.create_repo("nodockerfile", &[("README", b"x")]);
    env.git
        .create_repo("badsyntax", &[("Dockerfile", b"FROMM nothing\n")]);
    env.git.create_repo("escape", &[("README", b"x")]);
    env.git
        .add_symlink("escape", "main", "Dockerfile", "/etc/passwd");
    let config = env.runtime("good", "good")
        + &env.runtime("missing", "does-not-exist")
        + &env.runtime("nodf", "nodockerfile")
        + &env.runtime("bad", "badsyntax")
        + &env.runtime("esc", "escape")
        + "[runtimes.down]\nrepo = \"http://127.0.0.1:1/x\"\n"
        + &env.runtime("nobranch", "good")
        + "branch = \"nope\"\n";
    env.config(&config);
    let run = env.planner(&["ensure", "--all"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let err = &run.stderr;
    assert!(
        err.contains(&format!(
            "repository {} not found (HTTP 404)",
            env.git.url("does-not-exist")
        )),
        "{err}"
    );
    assert!(err.contains("\"missing\" may not be mirrored"), "{err}");
    assert!(
        err.contains(&format!(
            "Dockerfile Dockerfile not found in {}",
            env.git.url("nodockerfile")
        )),
        "{err}"
    );
    // Refused when its base images are read, before the engine sees it.
    assert!(
        err.contains("unknown instruction 'FROMM'") && err.contains(&env.git.url("badsyntax")),
        "{err}"
    );
    assert!(
        err.contains("symlink pointing outside the repository"),
        "{err}"
    );
    assert!(
        err.contains("cannot reach git host for http://127.0.0.1:1/x"),
        "{err}"
    );
    assert!(err.contains("branch \"nope\" not found"), "{err}");
    assert!(err.contains("1 ensured, 6 failed"), "{err}");
    assert!(
        env.image_id(&env.latest("good")).is_some(),
        "the good runtime finished"
    );

    let fast = env.planner(&["ensure", "missing", "good", "--fail-fast", "--jobs", "1"]);
    assert_eq!(fast.code, 1, "{}", fast.all());
}

#[test]
fn token_protected_repo_needs_the_token_and_never_shows_it() {
    let env = Env::new("auth");
    let sha = env.template("private");
    env.git.require_token("private", TOKEN);
    env.config(&env.runtime("p", "private"));

    let no_token = Run(env
        .command(&["ensure", "p"])
        .env_remove("PLANNER_GIT_TOKEN")
        .output()
        .unwrap());
    assert_eq!(no_token.code, 1, "{}", no_token.all());
    assert!(
        no_token.stderr.contains("set PLANNER_GIT_TOKEN"),
        "{}",
        no_token.all()
    );
    let wrong = Run(env
        .command(&["ensure", "p"])
        .env("PLANNER_GIT_TOKEN", "wrong-token-123")
        .output()
        .unwrap());
    assert!(
        wrong
            .stderr
            .contains("the token in PLANNER_GIT_TOKEN was refused"),
        "{}",
        wrong.all()
    );
    assert!(!wrong.stderr.contains("wrong-token-123"), "{}", wrong.all());

    let ok = env.planner(&["ensure", "p", "-v"]);
    assert_eq!(ok.code, 0, "{}", ok.all());
    let plan = env.planner(&["plan", "p", "--format", "json"]);
    let inspect = docker(&["image", "inspect", &env.image("p", &sha)]);
    for text in [&ok.stdout, &ok.stderr, &plan.stdout, &plan.stderr, &inspect] {
        assert!(!text.contains(TOKEN), "token leaked: {text}");
    }
    for file in tree(env.cache_path()) {
        let path = env.cache_path().join(&file);
        if path.is_file() && !file.contains("/objects/") {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(TOKEN),
                "token in {file}"
            );
        }
    }
}

#[allow(non_snake_case)]
fn Run(out: std::process::Output) -> harness::Run {
    harness::Run::from_output(out)
}

#[test]
fn engine_down_is_reported_within_seconds() {
    let env = Env::new("engine");
    env.template("tpl");
    env.config(&env.runtime("e", "tpl"));
    let started = Instant::now();
    let run = Run(env
        .command(&["ensure", "e"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap());
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        run.stderr
            .contains("Docker engine unreachable at unix:///nonexistent/docker.sock"),
        "{}",
        run.all()
    );
    assert!(run.stderr.contains("DOCKER_HOST"), "{}", run.all());
}

#[test]
fn git_missing_on_path_is_named() {
    let env = Env::new("nogit");
    env.template("tpl");
    env.config(&env.runtime("g", "tpl"));
    let run = Run(env
        .command(&["ensure", "g"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap());
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("git was not found on PATH"),
        "{}",
        run.all()
    );
}

#[test]
fn usage_and_config_errors_exit_2() {
    let env = Env::new("usage");
    env.config(&env.runtime("only", "tpl"));
    let unknown = env.planner(&["ensure", "nope"]);
    assert_eq!(unknown.code, 2, "{}", unknown.all());
    assert!(
        unknown.stderr.contains("unknown runtime \"nope\"")
            && unknown.stderr.contains("allowlisted runtimes: only"),
        "{}",
        unknown.all()
    );
    std::fs::write(
        env.dir.path().join("runtimes.toml"),
        "[runtimes.a]\nrepo = \"https://h/x\"\nbranhc = \"x\"\n",
    )
    .unwrap();
    let bad = env.planner(&["plan", "a"]);
    assert_eq!(bad.code, 2, "{}", bad.all());
    assert!(
        bad.stderr
            .contains("runtimes.toml:3:1: unknown field `branhc`"),
        "{}",
        bad.all()
    );
    let flag = env.planner(&["ensure", "--jobs", "0"]);
    assert_eq!(flag.code, 2, "{}", flag.all());
}
