//! `resolve-version` end to end: the real `planner` binary, the real engine and git server, a
//! real PyPI-compatible index (simple-repository-server: PEP 691 JSON, PEP 592 yanks, behind
//! a logging relay that counts the requests) and a real npm registry (verdaccio). A release
//! is a build arg's value: built, keyed and labelled; a warm run asks each package once and
//! builds nothing; a new release rebuilds exactly the runtimes that read the package, and
//! the plan says why; pre-releases only when asked; yanked files ignored; errors name the
//! package and the index and build nothing.

use planner_test_support as support;

use support::harness::{BASE_IMAGE, Env, Run, file_in_image, label};
use support::index_proc::unique_name;
use support::logging_proxy::LoggingProxy;
use support::npm_registry::{NpmAuth, NpmRegistry};
use support::pypi_index::{PypiIndex, normalize};

/// A template whose Dockerfile writes `ARG RUNTIME_VERSION` into `/v`.
fn template(env: &Env, repo: &str) -> String {
    let dockerfile = format!(
        "FROM {BASE_IMAGE}\nCOPY test-id.txt /id\nARG RUNTIME_VERSION\nRUN echo \"v=$RUNTIME_VERSION\" > /v\n"
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

fn runtime(env: &Env, name: &str, repo: &str, arg: &str) -> String {
    let mut table = env.runtime(name, repo);
    if !arg.is_empty() {
        table.push_str(&format!("build_args = {{ RUNTIME_VERSION = {arg} }}\n"));
    }
    table
}

fn v_in(reference: &str) -> String {
    String::from_utf8(file_in_image(reference, "/v")).unwrap()
}

/// The GETs of `project`'s simple page the relay saw.
fn asked(proxy: &LoggingProxy, project: &str) -> usize {
    let page = format!("/simple/{}/", normalize(project));
    proxy
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.target == page)
        .count()
}

fn ok(run: &Run) {
    assert_eq!(run.code, 0, "{}", run.all());
}

#[test]
fn a_pypi_release_is_built_asked_once_per_run_and_a_new_one_rebuilds_exactly_its_readers() {
    let index = PypiIndex::shared_json();
    let proxy = LoggingProxy::start(&format!("{}/", index.base_url()));
    let (p, q) = (unique_name("Molecule_Runtime"), unique_name("other"));
    index.add(&p, "1.0");
    index.add(&p, "0.9");
    index.add_pre(&p, "1.1rc1");
    index.add(&q, "5.0");
    let env = Env::new("rver");
    let shas: Vec<String> = ["ta", "tb", "tc", "td", "te"]
        .iter()
        .map(|r| template(&env, r))
        .collect();
    let pkg = |name: &str, pre: bool| {
        let pre = if pre { ", pre = true" } else { "" };
        format!("{{ pypi = \"{name}\"{pre} }}")
    };
    // a and b read p (b spelled otherwise: one PEP 503 project), c reads q, d nothing, e
    // takes p's pre-releases too.
    let config = [
        format!("[indexes]\npypi = \"{}simple/\"\n", proxy.base_url()),
        runtime(&env, "a", "ta", &pkg(&p, false)),
        runtime(
            &env,
            "b",
            "tb",
            &pkg(&p.to_uppercase().replace('_', "."), false),
        ),
        runtime(&env, "c", "tc", &pkg(&q, false)),
        runtime(&env, "d", "td", ""),
        runtime(&env, "e", "te", &pkg(&p, true)),
    ]
    .concat();
    env.config(&config);
    let image = |rt: &str, i: usize| env.image(rt, &shas[i]);
    let all = ["ensure", "a", "b", "c", "d", "e"];

    let cold = env.planner(&all);
    ok(&cold);
    assert_eq!(
        v_in(&image("a", 0)),
        "v=1.0\n",
        "the latest release, not 1.1rc1"
    );
    assert_eq!(v_in(&image("b", 1)), "v=1.0\n");
    assert_eq!(v_in(&image("c", 2)), "v=5.0\n");
    assert_eq!(v_in(&image("d", 3)), "v=\n");
    assert_eq!(
        v_in(&image("e", 4)),
        "v=1.1rc1\n",
        "pre = true takes pre-releases"
    );
    assert_eq!(
        label(&image("a", 0), "dev.planner.build-args"),
        r#"{"RUNTIME_VERSION":"1.0"}"#
    );
    assert_eq!(
        asked(&proxy, &p),
        2,
        "p (for a and b) and p with pre-releases, once each"
    );
    assert_eq!(asked(&proxy, &q), 1);

    let warm = env.planner(&all);
    ok(&warm);
    assert_eq!(warm.count("build", "started"), 0, "{}", warm.all());
    assert_eq!(
        (asked(&proxy, &p), asked(&proxy, &q)),
        (4, 2),
        "once per package per run"
    );

    // A yanked release is not the latest.
    let yanked = index.add(&p, "3.0");
    index.yank(&p, &yanked, "broken");
    index.add(&p, "1.1");
    let why = format!("RUNTIME_VERSION 1.0 → 1.1 (pypi {p})");
    let plan = env.planner(&["plan", "a", "b", "c", "d", "e"]);
    ok(&plan);
    assert!(plan.stdout.contains(&why), "{}", plan.all());
    let ids: Vec<_> = (0..5)
        .map(|i| env.image_id(&image(["a", "b", "c", "d", "e"][i], i)))
        .collect();
    let changed = env.planner(&all);
    ok(&changed);
    let started = changed.lines("build", "started");
    assert_eq!(started.len(), 3, "a, b and e rebuild\n{}", changed.all());
    assert!(
        started
            .iter()
            .any(|l| l.starts_with("a ") && l.contains(&why)),
        "{}",
        changed.all()
    );
    assert_eq!(v_in(&image("a", 0)), "v=1.1\n");
    assert_eq!(v_in(&image("b", 1)), "v=1.1\n");
    assert_eq!(v_in(&image("e", 4)), "v=1.1\n", "1.1 > 1.1rc1");
    assert_eq!(
        env.image_id(&image("c", 2)),
        ids[2],
        "c reads another package"
    );
    assert_eq!(env.image_id(&image("d", 3)), ids[3], "d reads none");

    // Offline: the last recorded answers, no request, nothing to do.
    let before = asked(&proxy, &p);
    let offline = env.planner(&["plan", "--offline", "a", "b", "c", "d", "e"]);
    ok(&offline);
    assert!(
        offline
            .stdout
            .contains(&format!("offline: last recorded pypi {p} 1.1")),
        "{}",
        offline.all()
    );
    assert!(!offline.stdout.contains(&why), "{}", offline.all());
    assert_eq!(asked(&proxy, &p), before);
}

#[test]
fn an_npm_release_is_dist_tags_latest() {
    let registry = NpmRegistry::shared(NpmAuth::Open);
    let name = format!("@planner/{}", unique_name("codex"));
    registry.publish(&name, "1.0.0");
    registry.publish_tagged(&name, "2.0.0-rc.1", "next");
    let env = Env::new("rvernpm");
    let sha = template(&env, "tn");
    env.config(
        &[
            format!("[indexes]\nnpm = \"{}\"\n", registry.url()),
            runtime(&env, "n", "tn", &format!("{{ npm = \"{name}\" }}")),
        ]
        .concat(),
    );
    let image = env.image("n", &sha);
    let gets = || {
        let path = format!("/{}", name.replacen('/', "%2f", 1));
        registry
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.url == path && r.user_agent.starts_with("planner/"))
            .map(|r| r.accept.clone())
            .collect::<Vec<_>>()
    };
    ok(&env.planner(&["ensure", "n"]));
    assert_eq!(v_in(&image), "v=1.0.0\n", "latest, not next");
    let asked = gets();
    assert_eq!(asked.len(), 1);
    assert!(
        asked[0].starts_with("application/vnd.npm.install-v1+json"),
        "{asked:?}"
    );

    registry.publish(&name, "1.1.0");
    let run = env.planner(&["ensure", "n"]);
    ok(&run);
    let started = run.lines("build", "started");
    let why = format!("RUNTIME_VERSION 1.0.0 → 1.1.0 (npm {name})");
    assert!(
        started.len() == 1 && started[0].contains(&why),
        "{}",
        run.all()
    );
    assert_eq!(v_in(&image), "v=1.1.0\n");
    assert_eq!(gets().len(), 2);
}

#[test]
fn an_unknown_package_or_a_dead_index_fails_closed_naming_both() {
    let index = PypiIndex::shared_json();
    let env = Env::new("rvererr");
    let sha = template(&env, "tx");
    let missing = unique_name("missing");
    env.config(
        &[
            format!("[indexes]\npypi = \"{}\"\n", index.simple_url()),
            runtime(&env, "x", "tx", &format!("{{ pypi = \"{missing}\" }}")),
        ]
        .concat(),
    );
    let run = env.planner(&["ensure", "x"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains(&format!(
            "pypi package \"{missing}\" was not found at {}",
            index.simple_url()
        )),
        "{}",
        run.all()
    );
    assert_eq!(run.count("build", "started"), 0, "{}", run.all());
    assert_eq!(env.image_id(&env.image("x", &sha)), None);

    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    env.config(
        &[
            format!("[indexes]\npypi = \"http://127.0.0.1:{port}/simple/\"\n"),
            runtime(&env, "x", "tx", "{ pypi = \"runtime-pkg\" }"),
        ]
        .concat(),
    );
    let run = env.planner(&["ensure", "x"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let want = format!(
        "pypi index http://127.0.0.1:{port}/simple/ is unavailable for package \"runtime-pkg\""
    );
    assert!(run.stderr.contains(&want), "{}", run.all());
    assert_eq!(run.count("build", "started"), 0, "{}", run.all());
    assert_eq!(env.image_id(&env.image("x", &sha)), None);
}

#[test]
fn watch_picks_up_a_release_and_runs_the_hook_once() {
    use support::watcher::Watcher;
    let index = PypiIndex::shared_json();
    let p = unique_name("watched");
    index.add(&p, "1.0");
    let env = Env::new("rverwatch");
    let sha = template(&env, "tw");
    env.config(
        &[
            format!("[indexes]\npypi = \"{}\"\n", index.simple_url()),
            runtime(&env, "alpha", "tw", &format!("{{ pypi = \"{p}\" }}")),
        ]
        .concat(),
    );
    let log = env.dir.path().join("hooks.log");
    let hook = format!("echo \"$PLANNER_NEW_ID\" >> '{}'", log.display());
    let args = [
        "alpha",
        "--on-change",
        &hook,
        "--interval",
        "1s",
        "--jitter",
        "0s",
    ];
    let mut w = Watcher::spawn(&env, &args);
    w.tick_finished(1);
    let first = env.image_id(&env.latest("alpha")).expect(":latest exists");
    assert!(!log.exists(), "a first :latest replaces nothing");

    index.add(&p, "1.1");
    let done = w.wait_event("hook_finished", Some("alpha"));
    let second = env.image_id(&env.latest("alpha")).unwrap();
    assert_ne!(first, second);
    assert_eq!(done["new_id"], second.as_str());
    assert_eq!(v_in(&env.image("alpha", &sha)), "v=1.1\n");
    w.tick_finished(done["tick"].as_u64().unwrap() + 2);
    let runs = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        runs.lines().collect::<Vec<_>>(),
        [second.as_str()],
        "{}",
        w.dump()
    );
    w.signal("TERM");
    assert_eq!(
        w.exit_code_within(std::time::Duration::from_secs(30)),
        Some(0)
    );
}
