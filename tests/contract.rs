//! The provisioner's contract end to end (docs/json.md): what a program parsing
//! `planner ensure X --json` relies on. Each runtime's summary entry names the image the run
//! left (`image_id`, `pinned`), a failed runtime names none, and every exit with `--json`
//! ends in one last NDJSON line (`summary` or `error`) carrying the exit code.
//! Real engine, real git server.

use planner_test_support as support;

use serde_json::Value;
use support::harness::{BASE_IMAGE, Env, Run};

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

    for pass in ["cold", "warm"] {
        let run = env.planner(&["ensure", "--all", "--json", "-q"]);
        assert_eq!(run.code, 1, "{pass}: {}", run.all());
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
