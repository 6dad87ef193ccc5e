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
