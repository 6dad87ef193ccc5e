//! Declared build args end to end: the real `planner` binary against the real Docker engine
//! and the test git server. `build_args` reach the image, are keyed and labelled, show in the
//! plan, a changed value rebuilds naming the arg, a wiped cache dir still decides from the
//! labels, gc recognises the images, and nothing comes from the environment.

use planner_test_support as support;

use support::harness::{BASE_IMAGE, Env, Run, file_in_image, label};

const LABEL: &str = "dev.planner.build-args";

/// A template whose Dockerfile reads `ARG RUNTIME_VERSION` into `/v`.
fn template(env: &Env, repo: &str, marker: &str) -> String {
    let dockerfile = format!(
        "FROM {BASE_IMAGE}\nCOPY test-id.txt /id\nARG RUNTIME_VERSION\nRUN echo \"v=$RUNTIME_VERSION\" > /v\n"
    );
    let id = format!("{}{repo} {marker} {}\n", env.prefix, std::process::id());
    env.git.create_repo(
        repo,
        &[
            ("Dockerfile", dockerfile.as_bytes()),
            ("test-id.txt", id.as_bytes()),
        ],
    )
}

fn runtime_with(env: &Env, name: &str, repo: &str, version: Option<&str>) -> String {
    let mut table = env.runtime(name, repo);
    if let Some(v) = version {
        table.push_str(&format!("build_args = {{ RUNTIME_VERSION = \"{v}\" }}\n"));
    }
    table
}

/// planner with a hostile environment: the arg's own name, and what a docker CLI user
/// might expect to leak in.
fn planner(env: &Env, args: &[&str]) -> Run {
    let out = env
        .command(args)
        .env("RUNTIME_VERSION", "evil")
        .env("DOCKER_BUILD_ARGS", "RUNTIME_VERSION=evil")
        .output()
        .unwrap();
    Run::from_output(out)
}

fn v_in(reference: &str) -> String {
    String::from_utf8(file_in_image(reference, "/v")).unwrap()
}

fn assert_nothing_ran(run: &Run) {
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        !run.stderr.contains(" started "),
        "nothing runs\n{}",
        run.all()
    );
}

#[test]
fn a_declared_build_arg_is_built_keyed_labelled_and_a_change_rebuilds_naming_it() {
    let env = Env::new("bargs");
    let sha = template(&env, "tpl", "one");
    env.config(&runtime_with(&env, "a", "tpl", Some("1.4.2")));
    let pinned = env.image("a", &sha);

    let plan = planner(&env, &["plan", "a", "--format", "json"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let doc: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let build = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "build")
        .unwrap()
        .clone();
    assert!(
        build["reason"]
            .as_str()
            .unwrap()
            .ends_with("(build args: RUNTIME_VERSION=1.4.2)"),
        "{build}"
    );

    let cold = planner(&env, &["ensure", "a"]);
    assert_eq!(cold.code, 0, "{}", cold.all());
    assert_eq!(
        v_in(&pinned),
        "v=1.4.2\n",
        "the declared value, not the env's"
    );
    assert_eq!(label(&pinned, LABEL), r#"{"RUNTIME_VERSION":"1.4.2"}"#);
    let id = env.image_id(&pinned).unwrap();

    let warm = planner(&env, &["ensure", "a"]);
    assert_nothing_ran(&warm);
    assert!(
        warm.stderr
            .contains("present, key matches (build args: RUNTIME_VERSION=1.4.2)"),
        "{}",
        warm.all()
    );
    let text = planner(&env, &["plan", "a"]);
    assert!(
        text.stdout.contains("build args: RUNTIME_VERSION=1.4.2"),
        "{}",
        text.all()
    );

    std::fs::remove_dir_all(env.cache_path()).unwrap();
    assert_nothing_ran(&planner(&env, &["ensure", "a"]));
    assert_eq!(env.image_id(&pinned), Some(id.clone()));

    env.config(&runtime_with(&env, "a", "tpl", Some("1.4.3")));
    let why = "build arg RUNTIME_VERSION changed: 1.4.2 → 1.4.3";
    let plan = planner(&env, &["plan", "a"]);
    assert!(plan.stdout.contains(why), "{}", plan.all());
    let changed = planner(&env, &["ensure", "a"]);
    assert_eq!(changed.code, 0, "{}", changed.all());
    let started = changed.lines("build", "started");
    assert!(
        started.len() == 1 && started[0].contains(why),
        "{}",
        changed.all()
    );
    assert_eq!(v_in(&pinned), "v=1.4.3\n");
    assert_ne!(env.image_id(&pinned), Some(id));
    // Cold, then the rebuild: the wiped cache dir had lost the checkout.
    assert_eq!(env.git.fetch_count("tpl"), 2);

    std::fs::remove_dir_all(env.cache_path()).unwrap();
    assert_nothing_ran(&planner(&env, &["ensure", "a"]));
}

#[test]
fn build_args_never_come_from_the_environment() {
    let env = Env::new("bargsenv");
    let sha = template(&env, "tpl", "env");
    // Two runtimes on one repo: one declares the arg, one does not (and so builds apart).
    let config = format!(
        "{}{}",
        runtime_with(&env, "declared", "tpl", Some("1.4.2")),
        runtime_with(&env, "bare", "tpl", None)
    );
    env.config(&config);
    let run = planner(&env, &["ensure", "declared", "bare"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.count("build", "done"), 2, "{}", run.all());
    assert_eq!(v_in(&env.image("declared", &sha)), "v=1.4.2\n");
    let bare = env.image("bare", &sha);
    assert_eq!(v_in(&bare), "v=\n", "an undeclared arg stays unset");
    assert_eq!(label(&bare, LABEL), "", "no label without declared args");
    assert_nothing_ran(&planner(&env, &["ensure", "declared", "bare"]));
}

#[test]
fn gc_recognises_images_built_with_build_args() {
    let env = Env::new("bargsgc");
    let old = template(&env, "tpl", "gc");
    env.config(&runtime_with(&env, "a", "tpl", Some("1.4.2")));
    assert_eq!(planner(&env, &["ensure", "a"]).code, 0);
    let new = env.git.commit("tpl", "main", &[("more.txt", b"more\n")]);
    assert_eq!(planner(&env, &["ensure", "a"]).code, 0);

    let gc = planner(&env, &["gc", "--keep", "1"]);
    assert_eq!(gc.code, 0, "{}", gc.all());
    assert_eq!(env.image_id(&env.image("a", &old)), None, "{}", gc.all());
    assert!(env.image_id(&env.image("a", &new)).is_some());
    assert_nothing_ran(&planner(&env, &["ensure", "a"]));
}
