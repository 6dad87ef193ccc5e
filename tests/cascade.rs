//! The origin's cascade end to end (issue 20): a release upstream → exactly the affected
//! images rebuilt, smoke-tested, published, and pulled by the fleet. Real parts throughout:
//! a PyPI-compatible index (simple-repository-server), a registry (Debian's docker-registry),
//! the git server, machine A (the suite's engine: `build-and-publish`) and machine B (a second
//! private dockerd, its own cache dir: registry mode from the same mirror). Pushes and pulls
//! are counted at the registry, not taken from planner's word. docs/registry-mode.md
//! ("The cascade") shows the same setup. Run through scripts/test.sh.

use planner_test_support as support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::harness::{BASE_IMAGE, Env, Run};
use support::index_proc::unique_name;
use support::pypi_index::PypiIndex;
use support::registry::{RegistryAuth, TestRegistry};
use support::tls_engine::TlsEngine;

/// The runtimes: `ra` and `rb` read the package into `RUNTIME_VERSION`, `rc` does not.
const RUNTIMES: [&str; 3] = ["ra", "rb", "rc"];

/// A template that writes its `RUNTIME_VERSION` into `/v` (the origin's templates pin the
/// runtime package with it).
fn template(env: &Env, repo: &str) -> String {
    let dockerfile = format!(
        "FROM {BASE_IMAGE}\nCOPY test-id.txt /id\nARG RUNTIME_VERSION\nRUN echo \"$RUNTIME_VERSION\" > /v\n"
    );
    let id = format!("{}{repo} {}\n", env.prefix, std::process::id());
    env.git.create_repo(
        repo,
        &[
            ("Dockerfile", dockerfile.as_bytes()),
            ("test-id.txt", id.as_bytes()),
        ],
    )
}

/// Machine A's runtimes.toml. The smoke commands stand in for the origin's
/// `python3 -c "import molecule_runtime"`: each reader checks the version made it into the
/// image, and `ra`'s runtime does not start with release 1.2.
fn config_a(env: &Env, index: &PypiIndex, reg: &TestRegistry, package: &str) {
    let reads = format!("build_args = {{ RUNTIME_VERSION = {{ pypi = \"{package}\" }} }}\n");
    let config = [
        format!(
            "[indexes]\npypi = \"{}\"\n\n[publish]\nregistry = \"{}/mirror\"\n\n",
            index.simple_url(),
            reg.host()
        ),
        env.runtime("ra", "ra"),
        format!("plan = \"build-and-publish\"\n{reads}"),
        "smoke = [\"sh\", \"-c\", \"v=$(cat /v) && test -n \\\"$v\\\" && test \\\"$v\\\" != 1.2\"]\n\n".into(),
        env.runtime("rb", "rb"),
        format!("plan = \"build-and-publish\"\n{reads}"),
        "smoke = [\"sh\", \"-c\", \"test -n \\\"$(cat /v)\\\"\"]\n\n".into(),
        env.runtime("rc", "rc"),
        "plan = \"build-and-publish\"\nsmoke = [\"sh\", \"-c\", \"test -f /id\"]\n".into(),
    ]
    .concat();
    env.config(&config);
}

/// Machine B's runtimes.toml in `dir`: the three runtimes in registry mode from the mirror.
fn config_b(dir: &Path, image_prefix: &str, reg: &TestRegistry) -> PathBuf {
    let config = dir.join("runtimes.toml");
    let mut text = format!(
        "[defaults]\nsource = \"registry\"\nregistry = \"{}/mirror\"\nimage_prefix = \"{image_prefix}\"\n",
        reg.host(),
    );
    for rt in RUNTIMES {
        text.push_str(&format!("\n[runtimes.{rt}]\n"));
    }
    std::fs::write(&config, text).unwrap();
    config
}

/// planner on machine A with `DOCKER_CONFIG=docker_config` (the user's own never counts).
fn on_a(env: &Env, docker_config: &Path, args: &[&str]) -> Run {
    let mut cmd = env.command(args);
    cmd.env("DOCKER_CONFIG", docker_config);
    Run::from_output(cmd.output().unwrap())
}

/// planner on machine B: the second engine, its own cache dir and config.
fn on_b(b: &Path, config: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_planner"))
        .arg("--config")
        .arg(config)
        .arg("--cache-dir")
        .arg(b.join("cache"))
        .args(args)
        .env("DOCKER_HOST", TlsEngine::shared().unix())
        .env("DOCKER_CONFIG", b)
        .env_remove("PLANNER_CONFIG")
        .env_remove("PLANNER_CACHE_DIR")
        .env_remove("PLANNER_REPO_PREFIX")
        .env_remove("PLANNER_REGISTRY")
        .output()
        .unwrap();
    Run::from_output(out)
}

/// Removes the images under `prefix` (and the mirror's names) from machine B's engine.
fn clean_b(prefixes: &[&str]) {
    let out = TlsEngine::shared().docker(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mine: Vec<&str> = text
        .lines()
        .filter(|l| prefixes.iter().any(|p| l.starts_with(p)))
        .collect();
    if !mine.is_empty() {
        let mut args = vec!["image", "rm", "-f"];
        args.extend(mine);
        TlsEngine::shared().docker(&args);
    }
}

/// `ensure --json`'s summary row of `rt`.
fn row(run: &Run, rt: &str) -> serde_json::Value {
    let last = run.stdout.lines().last().unwrap_or_default();
    let json: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|_| panic!("{}", run.all()));
    let rows = json["runtimes"].as_array().cloned().unwrap_or_default();
    let found = rows.into_iter().find(|r| r["runtime"] == rt);
    found.unwrap_or_else(|| panic!("no row for {rt}\n{}", run.all()))
}

/// The digest A's summary says it published for `rt` (`host/repo@sha256:…`).
fn published(run: &Run, rt: &str) -> String {
    let at = row(run, rt)["published"].as_str().map(str::to_owned);
    let at = at.unwrap_or_else(|| panic!("{rt} published nothing\n{}", run.all()));
    at.rsplit_once('@').unwrap().1.to_owned()
}

/// The digest B's summary says it holds for `rt` (registry mode's `commit`).
fn pulled(run: &Run, rt: &str) -> String {
    row(run, rt)["commit"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The NDJSON events of `step` that ran (`step_started`) on `run`'s stdout, by runtime.
fn ran(run: &Run, step: &str) -> Vec<String> {
    let mut rts: Vec<String> = run
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step_started" && e["step"] == step)
        .filter_map(|e| e["runtime"].as_str().map(str::to_owned))
        .collect();
    rts.sort();
    rts
}

fn repo(rt: &str) -> String {
    format!("mirror/workspace-template-{rt}")
}

/// Manifest and blob uploads to `rt`'s mirror repository since the log was cleared.
fn pushes(reg: &TestRegistry, rt: &str) -> usize {
    let name = repo(rt);
    reg.requests()
        .iter()
        .filter(|r| {
            let upload = r.path.starts_with(&format!("/v2/{name}/blobs/uploads"));
            let manifest = r.method == "PUT" && r.manifest_of() == Some(&*name);
            upload || manifest
        })
        .count()
}

/// Manifest GETs the engine sent for `rt`'s mirror repository (a pull).
fn pulls(reg: &TestRegistry, rt: &str) -> usize {
    let name = repo(rt);
    reg.requests()
        .iter()
        .filter(|r| r.by_engine() && r.method == "GET" && r.manifest_of() == Some(&*name))
        .count()
}

fn latest_at(reg: &TestRegistry, rt: &str) -> Option<String> {
    let head = reg.head_manifest(&repo(rt), "latest");
    head.header("docker-content-digest").map(str::to_owned)
}

fn ok(run: &Run) {
    assert_eq!(run.code, 0, "{}", run.all());
}

#[test]
fn a_release_rebuilds_smokes_publishes_and_the_fleet_pulls_exactly_its_readers() {
    let index = PypiIndex::shared_json();
    let package = unique_name("molecule-ai-workspace-runtime");
    index.add(&package, "1.0");
    let reg = TestRegistry::start(RegistryAuth::None);
    let env = Env::new("cascade");
    for rt in RUNTIMES {
        template(&env, rt);
    }
    config_a(&env, index, &reg, &package);
    let creds = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let b_prefix = format!("{}b-", env.prefix);
    let mirror = format!("{}/mirror/", reg.host());
    clean_b(&[&b_prefix, &mirror]);
    let b_config = config_b(b.path(), &b_prefix, &reg);
    let all_a = ["ensure", "ra", "rb", "rc", "--json"];
    let all_b = ["ensure", "ra", "rb", "rc", "--json"];

    // Release 1.0: A builds, smokes and publishes all three; B pulls those digests.
    let first = on_a(&env, creds.path(), &all_a);
    ok(&first);
    assert_eq!(ran(&first, "smoke"), RUNTIMES, "{}", first.all());
    assert_eq!(ran(&first, "publish"), RUNTIMES, "{}", first.all());
    let v1: Vec<String> = RUNTIMES.iter().map(|rt| published(&first, rt)).collect();
    for (rt, digest) in RUNTIMES.iter().zip(&v1) {
        assert_eq!(latest_at(&reg, rt).as_ref(), Some(digest), "{rt}");
    }
    let fleet = on_b(b.path(), &b_config, &all_b);
    ok(&fleet);
    for (rt, digest) in RUNTIMES.iter().zip(&v1) {
        assert_eq!(&pulled(&fleet, rt), digest, "{rt}\n{}", fleet.all());
    }

    // Release 1.1: the plan names it for exactly the two readers.
    index.add(&package, "1.1");
    let why = format!("RUNTIME_VERSION 1.0 → 1.1 (pypi {package})");
    let plan = on_a(&env, creds.path(), &["plan", "ra", "rb", "rc"]);
    ok(&plan);
    let builds: Vec<&str> = plan
        .stdout
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("build"))
        .collect();
    let mut named: Vec<&str> = builds
        .iter()
        .filter(|l| l.contains(&why))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    named.sort();
    assert_eq!(named, ["ra", "rb"], "{}", plan.all());

    // A rebuilds, smokes and republishes exactly those two; nothing is pushed for rc.
    reg.clear_requests();
    let rc_latest = env.image_id(&env.latest("rc"));
    let second = on_a(&env, creds.path(), &all_a);
    ok(&second);
    assert_eq!(ran(&second, "build"), ["ra", "rb"], "{}", second.all());
    assert_eq!(ran(&second, "smoke"), ["ra", "rb"], "{}", second.all());
    assert_eq!(ran(&second, "publish"), ["ra", "rb"], "{}", second.all());
    assert_eq!(pushes(&reg, "rc"), 0, "{:?}", reg.requests());
    assert!(pushes(&reg, "ra") > 0 && pushes(&reg, "rb") > 0);
    assert_eq!(env.image_id(&env.latest("rc")), rc_latest);
    let v2: Vec<String> = RUNTIMES.iter().map(|rt| published(&second, rt)).collect();
    assert!(v2[0] != v1[0] && v2[1] != v1[1], "{}", second.all());
    assert_eq!(v2[2], v1[2], "rc's mirror is where it was");
    for (rt, digest) in RUNTIMES.iter().zip(&v2) {
        assert_eq!(latest_at(&reg, rt).as_ref(), Some(digest), "{rt}");
    }

    // B pulls exactly the two new digests.
    reg.clear_requests();
    let fleet = on_b(b.path(), &b_config, &all_b);
    ok(&fleet);
    for (rt, digest) in RUNTIMES.iter().zip(&v2) {
        assert_eq!(&pulled(&fleet, rt), digest, "{rt}\n{}", fleet.all());
    }
    assert!(
        pulls(&reg, "ra") > 0 && pulls(&reg, "rb") > 0,
        "{:?}",
        reg.requests()
    );
    assert_eq!(pulls(&reg, "rc"), 0, "{:?}", reg.requests());

    // Release 1.2 breaks ra: its smoke fails, nothing of it is published and :latest stays;
    // rb passes and is published; the run exits 1.
    index.add(&package, "1.2");
    reg.clear_requests();
    let ra_latest = env.image_id(&env.latest("ra"));
    let third = on_a(&env, creds.path(), &all_a);
    assert_eq!(third.code, 1, "{}", third.all());
    assert_eq!(ran(&third, "smoke"), ["ra", "rb"], "{}", third.all());
    assert_eq!(ran(&third, "publish"), ["rb"], "{}", third.all());
    for needle in ["smoke test of runtime ra failed", "exited with code 1"] {
        assert!(
            third.stderr.contains(needle),
            "{needle:?} in {}",
            third.all()
        );
    }
    assert_eq!(row(&third, "ra")["status"], "failed", "{}", third.all());
    assert_eq!(pushes(&reg, "ra"), 0, "{:?}", reg.requests());
    assert_eq!(pushes(&reg, "rc"), 0, "{:?}", reg.requests());
    assert_eq!(
        env.image_id(&env.latest("ra")),
        ra_latest,
        ":latest unmoved"
    );
    assert_eq!(latest_at(&reg, "ra").as_ref(), Some(&v2[0]));
    let rb_v3 = published(&third, "rb");
    assert_ne!(rb_v3, v2[1]);

    // B keeps ra's 1.1 digest and pulls rb's 1.2.
    let fleet = on_b(b.path(), &b_config, &all_b);
    ok(&fleet);
    assert_eq!(pulled(&fleet, "ra"), v2[0], "{}", fleet.all());
    assert_eq!(pulled(&fleet, "rb"), rb_v3, "{}", fleet.all());
    assert_eq!(pulled(&fleet, "rc"), v1[2], "{}", fleet.all());
    clean_b(&[&b_prefix, &mirror]);
}
