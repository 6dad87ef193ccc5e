//! `--shard K/N` through the real binary: the shards of a selection cover it exactly once,
//! a new runtime moves no other, `auto/N` reads JOB_COMPLETION_INDEX, bad values exit 2.

use planner_test_support as support;

use std::collections::BTreeSet;

use support::harness::{Env, Run};

const NAMES: [&str; 9] = [
    "ada", "bash", "c", "dart", "elm", "fsharp", "go", "haskell", "io",
];

fn config(env: &Env, names: &[&str]) {
    let text: String = names.iter().map(|n| env.runtime(n, n)).collect();
    env.config(&text);
}

/// The runtimes `plan --offline` lists for `args` (its exit code may say heads are unknown).
fn planned(run: &Run) -> BTreeSet<String> {
    assert!(run.code == 0 || run.code == 1, "{}", run.all());
    let rows: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.all()));
    let rows = rows
        .get("steps")
        .unwrap_or(&rows)
        .as_array()
        .cloned()
        .unwrap_or_default();
    rows.iter()
        .filter_map(|r| r["runtime"].as_str().map(str::to_owned))
        .collect()
}

fn shard(env: &Env, spec: &str) -> BTreeSet<String> {
    planned(&env.planner(&[
        "plan",
        "--all",
        "--offline",
        "--format",
        "json",
        "--shard",
        spec,
    ]))
}

#[test]
fn shards_cover_every_runtime_once_and_a_new_runtime_moves_no_other() {
    let env = Env::new("shard-cover");
    config(&env, &NAMES);
    let shards: Vec<BTreeSet<String>> = (1..=3).map(|k| shard(&env, &format!("{k}/3"))).collect();
    let mut seen = BTreeSet::new();
    for s in &shards {
        for name in s {
            assert!(
                seen.insert(name.clone()),
                "{name} in two shards: {shards:?}"
            );
        }
    }
    let all: BTreeSet<String> = NAMES.iter().map(|n| (*n).to_owned()).collect();
    assert_eq!(seen, all);
    // A tenth runtime: every old one stays where it was.
    let mut more = NAMES.to_vec();
    more.push("julia");
    config(&env, &more);
    for (k, before) in shards.iter().enumerate() {
        let after = shard(&env, &format!("{}/3", k + 1));
        let kept: BTreeSet<String> = after.iter().filter(|n| *n != "julia").cloned().collect();
        assert_eq!(&kept, before, "shard {}", k + 1);
    }
    // auto/3 with JOB_COMPLETION_INDEX=1 is shard 2/3.
    let run = Run::from_output(
        env.command(&[
            "plan",
            "--all",
            "--offline",
            "--format",
            "json",
            "--shard",
            "auto/3",
        ])
        .env("JOB_COMPLETION_INDEX", "1")
        .output()
        .unwrap(),
    );
    assert_eq!(planned(&run), shard(&env, "2/3"));
}

#[test]
fn bad_shards_are_usage_errors_that_name_the_fix() {
    let env = Env::new("shard-bad");
    config(&env, &NAMES[..2]);
    for (spec, want) in [
        ("4/3", "counts from 1"),
        ("3", "is not K/N"),
        ("auto/3", "JOB_COMPLETION_INDEX"),
    ] {
        let run = Run::from_output(
            env.command(&["ensure", "--all", "--shard", spec])
                .env_remove("JOB_COMPLETION_INDEX")
                .output()
                .unwrap(),
        );
        assert_eq!(run.code, 2, "{spec}: {}", run.all());
        assert!(
            run.stderr.contains(want) && run.stderr.contains("help: "),
            "{spec}: {}",
            run.all()
        );
    }
}

#[test]
fn an_empty_shard_does_nothing_and_says_so() {
    let env = Env::new("shard-empty");
    config(&env, &["ada"]);
    let runs: Vec<Run> = (1..=2)
        .map(|k| env.planner(&["ensure", "--all", "--dry-run", "--shard", &format!("{k}/2")]))
        .collect();
    let empty: Vec<&Run> = runs
        .iter()
        .filter(|r| r.stderr.contains("holds none"))
        .collect();
    assert_eq!(empty.len(), 1, "{}\n{}", runs[0].all(), runs[1].all());
    assert_eq!(empty[0].code, 0, "{}", empty[0].all());
    assert!(
        empty[0].stderr.contains("nothing to do"),
        "{}",
        empty[0].all()
    );
}

/// The Indexed Job example: completions, parallelism and --shard auto/N agree, and its
/// arguments run as written for its last index.
#[test]
fn the_indexed_job_example_is_consistent_and_runs_as_written() {
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/fleet/k8s-indexed-job.yaml"
    ))
    .unwrap();
    let value = |key: &str| -> u32 {
        let line = yaml
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap();
        line.split(':')
            .nth(1)
            .unwrap()
            .split('#')
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (completions, parallelism) = (value("completions:"), value("parallelism:"));
    let args_line = yaml
        .lines()
        .find(|l| l.trim_start().starts_with("args:"))
        .unwrap();
    let args: Vec<String> = args_line
        .split_once('[')
        .unwrap()
        .1
        .trim_end_matches(']')
        .split(',')
        .map(|a| a.trim().trim_matches('"').to_owned())
        .collect();
    let shard = &args[args.iter().position(|a| a == "--shard").unwrap() + 1];
    assert_eq!(shard, &format!("auto/{completions}"));
    assert_eq!(completions, parallelism);
    let env = Env::new("shard-example");
    config(&env, &NAMES);
    let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
    argv.push("--dry-run");
    let run = Run::from_output(
        env.command(&argv)
            .env("JOB_COMPLETION_INDEX", (completions - 1).to_string())
            .output()
            .unwrap(),
    );
    assert!(run.code == 0 || run.code == 1, "{}", run.all());
    assert!(
        !run.stdout.is_empty() || run.stderr.contains("holds none"),
        "{}",
        run.all()
    );
}
