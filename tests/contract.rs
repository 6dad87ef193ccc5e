//! The provisioner's contract end to end (docs/json.md): what a program parsing
//! `planner ensure X --json` relies on. Each runtime's summary entry names the image the run
//! left (`image_id`, `pinned`), a failed runtime names none, and every exit with `--json`
//! ends in one last NDJSON line (`summary` or `error`) carrying the exit code.
//! Real engine, real git server.

// A test shows what it checks in its output (the warm run's time, not asserted).
#![allow(clippy::print_stderr)]

use planner_test_support as support;

use serde_json::Value;
use support::harness::{BASE_IMAGE, Env, Run};

/// The published JSON Schema of the NDJSON lines (docs/schema), compiled.
fn schema() -> jsonschema::Validator {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/schema/ndjson-v1.schema.json"
    );
    let text = std::fs::read_to_string(path).unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

/// Checks every stdout line of `run` against the published schema.
fn check_schema(run: &Run) {
    let schema = schema();
    for line in run.stdout.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let errors: Vec<String> = schema.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{line}\ndoes not follow the schema: {errors:#?}"
        );
    }
}

/// The last stdout line, parsed (a caller reads only this).
fn last_line(run: &Run) -> Value {
    let line = run
        .stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no stdout: {}", run.all()));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

fn row<'a>(summary: &'a Value, runtime: &str) -> &'a Value {
    summary["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["runtime"] == runtime)
        .unwrap_or_else(|| panic!("{runtime} in {summary}"))
}

#[test]
fn the_summary_names_the_image_by_id_and_a_failed_runtime_names_none() {
    let env = Env::new("contract-ids");
    let sha = env.template("tpl");
    let broken = format!("FROM {BASE_IMAGE}\nCOPY no-such-file /x\n");
    let bad_sha = env
        .git
        .create_repo("bad", &[("Dockerfile", broken.as_bytes())]);
    env.config(&(env.runtime("a", "tpl") + &env.runtime("bad", "bad")));

    // Cold with -v (build output lines too), warm quiet.
    for (pass, flag) in [("cold", "-v"), ("warm", "-q")] {
        let run = env.planner(&["ensure", "--all", "--json", flag]);
        assert_eq!(run.code, 1, "{pass}: {}", run.all());
        check_schema(&run);
        let summary = last_line(&run);
        assert_eq!(summary["event"], "summary", "{pass}: {summary}");
        let a = row(&summary, "a");
        let id = env.image_id(&env.image("a", &sha)).expect("a's image");
        assert!(id.starts_with("sha256:"), "{id}");
        assert_eq!(a["image_id"], id.as_str(), "{pass}: {a}");
        assert_eq!(a["pinned"], id.as_str(), "{pass}: {a}");
        assert_eq!(a["image"], env.image("a", &sha).as_str(), "{pass}: {a}");
        assert_eq!(a["digest"], Value::Null, "{pass}: no registry: {a}");
        let bad = row(&summary, "bad");
        assert_eq!(bad["status"], "failed", "{pass}: {bad}");
        assert_eq!(bad["commit"], bad_sha.as_str(), "{pass}: {bad}");
        for field in ["image", "image_id", "pinned", "digest", "published"] {
            assert_eq!(bad[field], Value::Null, "{pass}: {field} of {bad}");
        }
    }

    let status = env.planner(&["status", "--json", "a"]);
    assert_eq!(status.code, 0, "{}", status.all());
    let doc: Value = serde_json::from_str(&status.stdout).unwrap();
    let id = env.image_id(&env.image("a", &sha)).unwrap();
    assert_eq!(doc["runtimes"][0]["image_id"], id.as_str(), "{doc}");
    assert_eq!(doc["runtimes"][0]["pinned"], id.as_str(), "{doc}");
    assert_eq!(doc["runtimes"][0]["digest"], Value::Null, "{doc}");
}

/// Runs planner with `args` and checks the contract of its stdout: NDJSON lines, the last one
/// the only `summary` or `error` line, carrying the exit code. Returns that line.
fn ends_in_one_last_line(env: &Env, args: &[&str]) -> Value {
    let run = env.planner(args);
    check_schema(&run);
    assert!(
        !run.stdout.chars().any(|c| c.is_control() && c != '\n'),
        "{args:?}: stdout inert: {:?}",
        run.stdout
    );
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {l}"))
        })
        .collect();
    let last = lines
        .last()
        .unwrap_or_else(|| panic!("{args:?}: no stdout: {}", run.all()));
    let ends = |o: &&Value| o["event"] == "summary" || o["event"] == "error";
    assert_eq!(
        lines.iter().filter(ends).count(),
        1,
        "{args:?}: {}",
        run.stdout
    );
    assert!(ends(&last), "{args:?}: {last}");
    assert_eq!(last["exit_code"], run.code, "{args:?}: {}", run.all());
    assert_eq!(last["schema_version"], 1, "{last}");
    last.clone()
}

#[test]
fn every_exit_with_json_ends_in_a_last_line_with_the_exit_code() {
    let env = Env::new("contract-exits");
    env.template("tpl");
    env.config(&env.runtime("a", "tpl"));

    let ok = ends_in_one_last_line(&env, &["ensure", "a", "--json", "-q"]);
    assert_eq!(
        (ok["event"].as_str(), ok["exit_code"].as_u64()),
        (Some("summary"), Some(0))
    );

    // Usage errors (exit 2): clap's, an unknown runtime, a bad config.
    let clap = ends_in_one_last_line(&env, &["ensure", "a", "--json", "--jobs", "0"]);
    assert_eq!(clap["event"], "error", "{clap}");
    assert_eq!(clap["exit_code"], 2, "{clap}");
    assert!(
        clap["message"].as_str().unwrap().contains("--jobs"),
        "{clap}"
    );
    let unknown = ends_in_one_last_line(&env, &["ensure", "nope", "--json"]);
    assert_eq!(
        (unknown["event"].as_str(), unknown["exit_code"].as_u64()),
        (Some("error"), Some(2))
    );
    assert!(
        unknown["message"]
            .as_str()
            .unwrap()
            .contains("unknown runtime \"nope\""),
        "{unknown}"
    );

    // An unreachable engine (exit 1).
    let gone = ends_in_one_last_line(
        &env,
        &[
            "--engine",
            "unix:///nonexistent/planner.sock",
            "ensure",
            "a",
            "--json",
        ],
    );
    assert_eq!(
        (gone["event"].as_str(), gone["exit_code"].as_u64()),
        (Some("error"), Some(1))
    );
    assert!(
        gone["message"].as_str().unwrap().contains("unreachable"),
        "{gone}"
    );

    // A failed runtime (exit 1): the summary says so.
    env.config(&(env.runtime("a", "tpl") + &env.runtime("missing", "no-such-repo")));
    let failed = ends_in_one_last_line(&env, &["ensure", "--all", "--json", "-q"]);
    assert_eq!(
        (failed["event"].as_str(), failed["exit_code"].as_u64()),
        (Some("summary"), Some(1))
    );

    // A config planner cannot read (exit 2); the message is inert.
    env.config(&(env.runtime("a", "tpl") + "\"bogus\\u001b[2J\" = 1\n"));
    let bad = ends_in_one_last_line(&env, &["ensure", "a", "--json"]);
    assert_eq!(
        (bad["event"].as_str(), bad["exit_code"].as_u64()),
        (Some("error"), Some(2))
    );
    assert!(
        bad["message"].as_str().unwrap().contains("bogus\u{1b}[2J"),
        "{bad}"
    );
}

/// The schema is strict enough to fail: it rejects what planner must not write.
#[test]
fn the_schema_rejects_a_summary_without_exit_code_and_a_failed_runtime_with_an_image() {
    let schema = schema();
    let ok = serde_json::json!({
        "event": "summary", "schema_version": 1, "exit_code": 1, "ensured": 0, "failed": 1,
        "skipped_steps": 0, "ran_steps": 0, "duration_ms": 5,
        "runtimes": [{"runtime": "a", "status": "failed", "commit": null, "image": null,
            "image_id": null, "pinned": null, "digest": null, "published": null,
            "error": "resolve-head: not found"}],
    });
    assert!(schema.is_valid(&ok), "{ok}");
    let mut no_code = ok.clone();
    no_code.as_object_mut().unwrap().remove("exit_code");
    assert!(!schema.is_valid(&no_code));
    let mut imaged = ok.clone();
    imaged["runtimes"][0]["image"] = "p/a:0123456789ab".into();
    assert!(!schema.is_valid(&imaged));
    let unknown = serde_json::json!({"event": "nope", "schema_version": 1});
    assert!(!schema.is_valid(&unknown));
}

/// The example client (examples/provisioner/pinned.sh) gets the pinned reference in one call,
/// and it starts a container; a failure gives planner's code and the reason from the JSON.
#[test]
fn the_example_client_prints_a_pinned_reference_that_runs_or_the_error() {
    let env = Env::new("contract-client");
    let sha = env.template("tpl");
    env.config(&(env.runtime("a", "tpl") + &env.runtime("gone", "not-there")));
    let client = |runtime: &str| {
        let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_planner"))
            .parent()
            .unwrap();
        let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/provisioner/pinned.sh"
        );
        let out = std::process::Command::new("bash")
            .args([script, runtime])
            .env("PATH", path)
            .env("PLANNER_CONFIG", env.dir.path().join("runtimes.toml"))
            .env("PLANNER_CACHE_DIR", env.cache.path())
            .env("PLANNER_GIT_TOKEN", support::harness::TOKEN)
            .output()
            .unwrap();
        Run::from_output(out)
    };

    let ok = client("a");
    assert_eq!(ok.code, 0, "{}", ok.all());
    let reference = ok.stdout.trim();
    assert_eq!(
        Some(reference),
        env.image_id(&env.image("a", &sha)).as_deref()
    );
    let ran = support::harness::docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        reference,
        "cat",
        "/hello",
    ]);
    assert_eq!(ran, "hello from tpl\n");

    let failed = client("gone");
    assert_eq!(failed.code, 1, "{}", failed.all());
    assert!(failed.stdout.is_empty(), "{}", failed.all());
    assert!(
        failed.stderr.contains("planner: resolve-head: "),
        "{}",
        failed.stderr
    );

    let unknown = client("nope");
    assert_eq!(unknown.code, 2, "{}", unknown.all());
    assert!(
        unknown.stderr.contains("planner: unknown runtime \"nope\""),
        "{}",
        unknown.stderr
    );
}

/// Only gc runs alone: a warm `ensure X` while `ensure --all` builds (a 30 s build) does not
/// wait for the run lock (`--no-wait` would exit 75), while `gc` still does.
#[test]
fn a_warm_ensure_runs_beside_a_prewarm_and_only_gc_waits() {
    use std::io::BufRead;
    let env = Env::new("contract-beside");
    env.template("tpl");
    let slow = format!("FROM {BASE_IMAGE}\nCOPY . /src\nRUN sleep 30 && cat /src/hello.txt\n");
    env.git.create_repo(
        "slow",
        &[("Dockerfile", slow.as_bytes()), ("hello.txt", b"hi\n")],
    );
    env.config(&(env.runtime("a", "tpl") + &env.runtime("slow", "slow")));
    let first = env.planner(&["ensure", "a", "-q"]);
    assert_eq!(first.code, 0, "{}", first.all());

    let mut prewarm = env
        .command(&["ensure", "--all", "--json", "-q"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut events = std::io::BufReader::new(prewarm.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            events.read_line(&mut line).unwrap() > 0,
            "prewarm ended early"
        );
        let e: Value = serde_json::from_str(&line).unwrap();
        if e["event"] == "step_started" && e["runtime"] == "slow" && e["step"] == "build" {
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut events, &mut std::io::sink()));

    let started = std::time::Instant::now();
    let warm = env.planner(&["ensure", "a", "--json", "-q", "--no-wait"]);
    eprintln!("warm ensure a beside the prewarm: {:?}", started.elapsed());
    let gc = env.planner(&["gc", "--no-wait"]);
    let _ = std::process::Command::new("kill")
        .args(["-INT", &prewarm.id().to_string()])
        .status();
    let _ = prewarm.wait();
    assert_eq!(warm.code, 0, "{}", warm.all());
    let summary = last_line(&warm);
    assert_eq!(summary["ran_steps"], 0, "{summary}");
    assert_eq!(gc.code, 75, "gc waits for runs: {}", gc.all());
}
