//! The shared cache end to end: two "machines" on one box (the suite's engine and a second
//! private dockerd, each with its own cache dir) and one real registry (Debian's
//! docker-registry on 127.0.0.1). Machine A builds and publishes; machine B, with an empty
//! cache dir and none of the images, pulls everything and builds nothing; a cache that is
//! down or lies is a miss, said once. Run through scripts/test.sh.

use planner_test_support as support;

use std::path::Path;
use std::process::Command;

use support::harness::{BASE_IMAGE, Env, Run, docker};
use support::registry::{RegistryAuth, TestRegistry, down_host};
use support::tls_engine::TlsEngine;

/// A template whose build takes a RUN.
fn template(env: &Env, repo: &str) -> String {
    let dockerfile = format!("FROM {BASE_IMAGE}\nCOPY test-id.txt /id\nRUN cat /id > /copied\n");
    let id = format!("{}{repo} {}\n", env.prefix, std::process::id());
    env.git.create_repo(
        repo,
        &[
            ("Dockerfile", dockerfile.as_bytes()),
            ("test-id.txt", id.as_bytes()),
        ],
    )
}

/// runtimes.toml for runtimes `names` (one repo each) with `[cache] registry = cache`.
fn config(env: &Env, names: &[&str], cache: &str) {
    let mut text = String::new();
    for n in names {
        text.push_str(&env.runtime(n, n));
    }
    text.push_str(&format!("\n[cache]\nregistry = \"{cache}\"\n"));
    env.config(&text);
}

/// planner on machine B: the second engine, its own cache dir.
fn on_b(env: &Env, cache_dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_planner"))
        .arg("--config")
        .arg(env.dir.path().join("runtimes.toml"))
        .arg("--cache-dir")
        .arg(cache_dir)
        .args(args)
        .env("DOCKER_HOST", TlsEngine::shared().unix())
        .env_remove("PLANNER_CONFIG")
        .env_remove("PLANNER_CACHE_DIR")
        .env_remove("PLANNER_REPO_PREFIX")
        .output()
        .unwrap();
    Run::from_output(out)
}

/// An image's ID in machine B's engine.
fn id_on_b(reference: &str) -> Option<String> {
    let out = TlsEngine::shared().docker(&["image", "inspect", "-f", "{{.Id}}", reference]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Removes this test's images from machine B's engine.
fn clean_b(prefix: &str) {
    let out = TlsEngine::shared().docker(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mine: Vec<&str> = text.lines().filter(|l| l.starts_with(prefix)).collect();
    if !mine.is_empty() {
        let mut args = vec!["image", "rm", "-f"];
        args.extend(mine);
        TlsEngine::shared().docker(&args);
    }
}

/// The build key planner shows for runtime `rt`.
fn build_key(env: &Env, rt: &str) -> String {
    let plan = env.planner(&["plan", rt, "--format", "json"]);
    let json: serde_json::Value =
        serde_json::from_str(&plan.stdout).unwrap_or_else(|_| panic!("{}", plan.all()));
    json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "build")
        .and_then(|s| s["key"].as_str())
        .expect("a build key")
        .to_owned()
}

#[test]
fn machine_b_pulls_what_machine_a_built_and_clones_and_builds_nothing() {
    let env = Env::new("cacheab");
    clean_b(&env.prefix);
    let reg = TestRegistry::start(RegistryAuth::None);
    let cache = format!("{}/planner-cache", reg.host());
    let shas: Vec<String> = ["c1", "c2"].iter().map(|r| template(&env, r)).collect();
    config(&env, &["c1", "c2"], &cache);

    let a = env.planner(&["ensure", "c1", "c2"]);
    assert_eq!(a.code, 0, "{}", a.all());
    for rt in ["c1", "c2"] {
        let key = build_key(&env, rt);
        let head = reg.head_manifest(&format!("planner-cache/{rt}"), &format!("k-{key}"));
        assert_eq!(head.status, 200, "A published {rt}'s build under its key");
    }

    let b_cache = tempfile::tempdir().unwrap();
    let fetches = env.git.fetch_count("c1") + env.git.fetch_count("c2");
    let plan = on_b(&env, b_cache.path(), &["plan", "c1", "c2"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert_eq!(
        plan.stdout.matches("found in shared cache").count(),
        2,
        "{}",
        plan.all()
    );
    let b = on_b(&env, b_cache.path(), &["ensure", "c1", "c2"]);
    assert_eq!(b.code, 0, "{}", b.all());
    assert_eq!(b.count("clone", "started"), 0, "no clone on B\n{}", b.all());
    assert_eq!(b.count("verify-dockerfile", "started"), 0, "{}", b.all());
    let builds = b.lines("build", "started");
    assert!(
        builds.len() == 2 && builds.iter().all(|l| l.contains("found in shared cache")),
        "B's run does what its plan said\n{}",
        b.all()
    );
    assert!(
        !b.stderr.contains("Step 1/"),
        "B built nothing\n{}",
        b.all()
    );
    assert_eq!(
        env.git.fetch_count("c1") + env.git.fetch_count("c2"),
        fetches
    );
    for (rt, sha) in ["c1", "c2"].iter().zip(&shas) {
        let pinned = env.image(rt, sha);
        assert_eq!(
            id_on_b(&pinned),
            env.image_id(&pinned),
            "B holds A's image for {rt}"
        );
    }
    let again = on_b(&env, b_cache.path(), &["ensure", "c1", "c2"]);
    assert!(!again.stderr.contains(" started "), "{}", again.all());
    clean_b(&env.prefix);
}

#[test]
fn a_cache_that_is_down_is_a_miss_with_one_warning() {
    let env = Env::new("cachedown");
    template(&env, "d1");
    template(&env, "d2");
    config(
        &env,
        &["d1", "d2"],
        &format!("{}/planner-cache", down_host()),
    );
    let run = env.planner(&["ensure", "d1", "d2"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.count("build", "done"), 2, "{}", run.all());
    let warnings = run.stderr.matches("the shared cache").count();
    assert_eq!(warnings, 1, "one warning per run\n{}", run.all());
}

#[test]
fn a_tampered_entry_is_refused_and_rebuilt() {
    let env = Env::new("cachetamper");
    clean_b(&env.prefix);
    let reg = TestRegistry::start(RegistryAuth::None);
    let cache = format!("{}/planner-cache", reg.host());
    template(&env, "t1");
    config(&env, &["t1"], &cache);
    let a = env.planner(&["ensure", "t1"]);
    assert_eq!(a.code, 0, "{}", a.all());
    // Someone with push rights points the key tag at an image with other labels.
    let key = build_key(&env, "t1");
    let entry = format!("{cache}/t1:k-{key}");
    docker(&["tag", BASE_IMAGE, &entry]);
    docker(&["push", &entry]);
    docker(&["image", "rm", &entry]);

    let b_cache = tempfile::tempdir().unwrap();
    let b = on_b(&env, b_cache.path(), &["ensure", "t1"]);
    assert_eq!(b.code, 0, "{}", b.all());
    assert!(
        b.all()
            .contains(&format!("shared cache entry {entry} refused")),
        "{}",
        b.all()
    );
    assert_eq!(b.count("build", "done"), 1, "rebuilt on B\n{}", b.all());
    assert_eq!(b.count("clone", "done"), 1, "{}", b.all());
    clean_b(&env.prefix);
}

#[test]
fn two_machines_building_one_key_at_once_both_succeed_with_one_entry() {
    let env = Env::new("cacherace");
    clean_b(&env.prefix);
    let reg = TestRegistry::start(RegistryAuth::None);
    let cache = format!("{}/planner-cache", reg.host());
    template(&env, "r1");
    config(&env, &["r1"], &cache);
    let b_cache = tempfile::tempdir().unwrap();
    let a = std::thread::scope(|s| {
        let b = s.spawn(|| on_b(&env, b_cache.path(), &["ensure", "r1"]));
        let a = env.planner(&["ensure", "r1"]);
        let b = b.join().unwrap();
        assert_eq!(b.code, 0, "{}", b.all());
        a
    });
    assert_eq!(a.code, 0, "{}", a.all());
    let key = build_key(&env, "r1");
    let head = reg.head_manifest("planner-cache/r1", &format!("k-{key}"));
    assert_eq!(head.status, 200, "one entry under the key");
    // Both machines now agree with the cache: nothing runs on either.
    assert!(!env.planner(&["ensure", "r1"]).stderr.contains(" started "));
    assert!(
        !on_b(&env, b_cache.path(), &["ensure", "r1"])
            .stderr
            .contains(" started ")
    );
    clean_b(&env.prefix);
}

#[test]
fn a_cache_that_answers_500_is_a_miss_with_one_warning() {
    let env = Env::new("cache500");
    let broken = support::canned_http::CannedHttp::start(500, "text/plain", b"boom".to_vec());
    let host = broken
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    template(&env, "e1");
    template(&env, "e2");
    config(&env, &["e1", "e2"], &format!("{host}/planner-cache"));
    let run = env.planner(&["ensure", "e1", "e2"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.count("build", "done"), 2, "{}", run.all());
    let warnings = run.stderr.matches("the shared cache").count();
    assert_eq!(warnings, 1, "one warning per run\n{}", run.all());
    assert!(
        run.stderr.contains("500"),
        "the warning says what the cache answered\n{}",
        run.all()
    );
}

/// `(step, via)` of every step of runtime `rt` in a plan document.
fn vias(run: &Run, rt: &str) -> Vec<(String, serde_json::Value)> {
    assert_eq!(run.code, 0, "{}", run.all());
    let doc: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|_| panic!("{}", run.all()));
    doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["runtime"] == rt)
        .map(|s| (s["step"].as_str().unwrap().to_owned(), s["via"].clone()))
        .collect()
}

/// The `via` of runtime `rt`'s build step.
fn build_via(run: &Run, rt: &str) -> serde_json::Value {
    let all = vias(run, rt);
    let build = all.iter().find(|(step, _)| step == "build");
    build
        .unwrap_or_else(|| panic!("no build for {rt}: {}", run.all()))
        .1
        .clone()
}

#[test]
fn the_plan_json_says_whether_a_build_builds_pulls_from_the_cache_or_retags() {
    let env = Env::new("cachevia");
    clean_b(&env.prefix);
    let reg = TestRegistry::start(RegistryAuth::None);
    let cache = format!("{}/planner-cache", reg.host());
    let shas: Vec<String> = ["v1", "v2"].iter().map(|r| template(&env, r)).collect();
    config(&env, &["v1", "v2"], &cache);

    let cold = env.planner(&["plan", "v1", "v2", "--format", "json"]);
    for rt in ["v1", "v2"] {
        assert_eq!(build_via(&cold, rt), "build", "{}", cold.all());
        for (step, via) in vias(&cold, rt) {
            if step != "build" {
                assert!(via.is_null(), "{rt} {step}: one way only\n{}", cold.all());
            }
        }
    }
    let a = env.planner(&["ensure", "v1"]);
    assert_eq!(a.code, 0, "{}", a.all());

    // Machine B: v1 is in the shared cache, v2 is not; the dry run says the same.
    let b_cache = tempfile::tempdir().unwrap();
    for args in [
        &["plan", "v1", "v2", "--format", "json"][..],
        &["ensure", "--dry-run", "--json", "v1", "v2"][..],
    ] {
        let plan = on_b(&env, b_cache.path(), args);
        assert_eq!(build_via(&plan, "v1"), "shared-cache", "{}", plan.all());
        assert_eq!(build_via(&plan, "v2"), "build", "{}", plan.all());
    }

    // Machine A, its pinned tag gone but `:latest` still on the image: only tagged.
    docker(&["image", "rm", &env.image("v1", &shas[0])]);
    let retag = env.planner(&["plan", "v1", "--format", "json"]);
    assert_eq!(build_via(&retag, "v1"), "retag", "{}", retag.all());
    let warm = env.planner(&["ensure", "v1"]);
    assert_eq!(warm.code, 0, "{}", warm.all());
    let done = env.planner(&["plan", "v1", "--format", "json"]);
    assert!(build_via(&done, "v1").is_null(), "skipped\n{}", done.all());
    clean_b(&env.prefix);
}

/// A label of `reference` on machine B's engine.
fn label_on_b(reference: &str, label: &str) -> String {
    let format = format!("{{{{index .Config.Labels \"{label}\"}}}}");
    let out = TlsEngine::shared().docker(&["image", "inspect", "--format", &format, reference]);
    assert!(out.status.success(), "inspect {reference} on B");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The label `label` of the image the cache holds at `reference` (pulled into the suite's
/// engine for a moment).
fn cached_label(reference: &str, label: &str) -> String {
    docker(&["pull", "-q", reference]);
    let value = support::harness::label(reference, label);
    docker(&["image", "rm", reference]);
    value
}

#[test]
fn a_poisoned_pointer_never_keys_or_labels_a_local_build_and_is_replaced() {
    let env = Env::new("cachepoison");
    clean_b(&env.prefix);
    let reg = TestRegistry::start(RegistryAuth::None);
    let cache = format!("{}/planner-cache", reg.host());
    let sha = template(&env, "p1");
    config(&env, &["p1"], &cache);
    let a = env.planner(&["ensure", "p1"]);
    assert_eq!(a.code, 0, "{}", a.all());
    let key = build_key(&env, "p1");
    let pointers: Vec<String> = support::cache_registry::tags(&reg, "planner-cache/p1")
        .into_iter()
        .filter(|t| t.starts_with("s-"))
        .collect();
    assert_eq!(pointers.len(), 1, "A published one pointer: {pointers:?}");
    let pointer = format!("{cache}/p1:{}", pointers[0]);

    // Someone with push rights re-points it: A's build's labels, other bases.
    let other = reg.push_image("poison/base", "1", &format!("{} poison", env.prefix));
    let bases = serde_json::json!([{
        "reference": other.reference, "platform": "linux/amd64",
        "origin": "registry", "digest": other.digest,
    }]);
    let ctx = tempfile::tempdir().unwrap();
    let from = format!("FROM {}\n", env.image("p1", &sha));
    std::fs::write(ctx.path().join("Dockerfile"), from).unwrap();
    let label = format!("dev.planner.bases={bases}");
    let dir = ctx.path().to_str().unwrap();
    docker(&["build", "-q", "--label", &label, "-t", &pointer, dir]);
    docker(&["push", &pointer]);
    docker(&["image", "rm", &pointer]);

    // Machine B has never built the commit: the pointer may save a clone, but B clones
    // here (no entry under the pointer's key), so the Dockerfile decides.
    let b_cache = tempfile::tempdir().unwrap();
    let b = on_b(&env, b_cache.path(), &["ensure", "p1"]);
    assert_eq!(b.code, 0, "{}", b.all());
    assert_eq!(b.count("clone", "done"), 1, "{}", b.all());
    assert!(
        b.stderr.contains(&pointer) && b.stderr.contains("verified Dockerfile"),
        "a warning names the pointer\n{}",
        b.all()
    );
    let pinned = env.image("p1", &sha);
    let b_bases = label_on_b(&pinned, "dev.planner.bases");
    assert!(
        b_bases.contains(BASE_IMAGE) && !b_bases.contains(&other.reference),
        "B's image states the Dockerfile's base: {b_bases}\n{}",
        b.all()
    );
    assert_eq!(label_on_b(&pinned, "dev.planner.key"), key, "A's key");
    let entries: Vec<String> = support::cache_registry::tags(&reg, "planner-cache/p1")
        .into_iter()
        .filter(|t| t.starts_with("k-"))
        .collect();
    assert_eq!(
        entries,
        [format!("k-{key}")],
        "no entry under the pointer's key"
    );
    let repointed = cached_label(&pointer, "dev.planner.bases");
    assert!(
        repointed.contains(BASE_IMAGE) && !repointed.contains(&other.reference),
        "the pointer was replaced: {repointed}"
    );
    clean_b(&env.prefix);
}
