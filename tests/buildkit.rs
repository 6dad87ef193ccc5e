//! End to end: BuildKit builds through the engine API against the suite's private engine
//! (no bridge network, so runtimes set `build_network = "none"`): cache mounts that persist
//! across commits, multi-stage `target`, `COPY --from` and `--chmod`, step progress, errors
//! naming the failing step, `auto` detection (BuildKit here, classic behind a proxy that
//! answers 404 for `/session`), the classic builder's refusal explained, cancellation and
//! `gc --build-cache`. Run through scripts/test.sh.

use planner_test_support as support;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::buildkit::{self as bk, NoBuildkitProxy};
use support::harness::{BASE_IMAGE, Env, file_in_image};

/// A per-run id, so cache mounts and layers are this test run's own.
fn unique(env: &Env) -> String {
    format!(
        "{}{}-{}",
        env.prefix.replace(['/', ':'], "-"),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// The tests of this file run in parallel against one engine: each BuildKit build holds this
/// shared, and the test pruning the build cache holds it alone (a prune of the whole cache
/// during another test's build can fail that build's context upload, "context not found";
/// planner's own gc is kept apart from builds by the run lock of their shared cache dir).
static BUILD_CACHE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn building() -> std::sync::RwLockReadGuard<'static, ()> {
    BUILD_CACHE.read().unwrap_or_else(|p| p.into_inner())
}

fn pruning() -> std::sync::RwLockWriteGuard<'static, ()> {
    BUILD_CACHE.write().unwrap_or_else(|p| p.into_inner())
}

/// The image's file `path` as text.
fn text_in_image(reference: &str, path: &str) -> String {
    String::from_utf8_lossy(&file_in_image(reference, path)).into_owned()
}

#[test]
fn a_cache_mount_is_seen_by_the_next_commits_build() {
    let _cache = building();
    let env = Env::new("bk-cache");
    let id = unique(&env);
    let dockerfile = format!(
        "FROM {BASE_IMAGE}\nRUN echo prep-{id} > /prep\nCOPY stamp.txt /stamp.txt\n\
         RUN --mount=type=cache,id={id},target=/cache sh -c 'ls /cache > /seen; cp /stamp.txt /cache/$(cat /stamp.txt); echo listed-cache'\n"
    );
    env.git.create_repo(
        "cached",
        &[
            ("Dockerfile", dockerfile.as_bytes()),
            ("stamp.txt", b"first\n"),
        ],
    );
    env.config(&bk::runtime(&env, "cached", "cached", "buildkit"));
    let cold = env.planner(&["-v", "ensure", "cached"]);
    assert_eq!(cold.code, 0, "{}", cold.all());
    // Progress: step transitions in plain mode, RUN output with -v.
    assert!(
        cold.stderr.contains("build  ") && cold.stderr.contains("4/4] RUN --mount"),
        "{}",
        cold.all()
    );
    assert!(cold.stderr.contains("| listed-cache"), "{}", cold.all());
    let latest = env.latest("cached");
    assert_eq!(text_in_image(&latest, "/seen"), "");

    let second = env
        .git
        .commit("cached", "main", &[("stamp.txt", b"second\n")]);
    let warm = env.planner(&["ensure", "cached"]);
    assert_eq!(warm.code, 0, "{}", warm.all());
    assert_eq!(
        text_in_image(&env.image("cached", &second), "/seen"),
        "first\n"
    );
    assert!(
        warm.stderr
            .lines()
            .any(|l| l.contains(" cached [") && l.contains("2/4] RUN echo prep-")),
        "the unchanged RUN is marked cached:\n{}",
        warm.all()
    );
    assert!(
        !warm.stderr.contains("| listed-cache"),
        "RUN output only with -v"
    );
}

#[test]
fn multi_stage_target_copy_from_and_chmod_build() {
    let _cache = building();
    let env = Env::new("bk-stages");
    let id = unique(&env);
    let dockerfile = format!(
        "FROM {BASE_IMAGE} AS build\nRUN echo built-{id} > /artifact\n\
         FROM {BASE_IMAGE} AS app\nCOPY --from=build --chmod=0750 /artifact /artifact\n\
         COPY --chmod=0604 hello.txt /hello.txt\nRUN ls -l /artifact /hello.txt > /modes\n\
         FROM {BASE_IMAGE} AS other\nRUN echo other > /other\n"
    );
    env.git.create_repo(
        "stages",
        &[
            ("Dockerfile", dockerfile.as_bytes()),
            ("hello.txt", b"hello\n"),
        ],
    );
    let plans = tempfile::tempdir().unwrap();
    std::fs::write(
        plans.path().join("app-stage.toml"),
        "description = \"build the app stage\"\n\
         [[steps]]\nid = \"resolve-head\"\nkind = \"resolve-head\"\n\
         [[steps]]\nid = \"clone\"\nkind = \"clone\"\nneeds = [\"resolve-head\"]\n\
         [[steps]]\nid = \"verify-dockerfile\"\nkind = \"verify-dockerfile\"\nneeds = [\"clone\"]\n\
         [[steps]]\nid = \"build\"\nkind = \"build\"\nneeds = [\"verify-dockerfile\"]\nparams = { target = \"app\" }\n\
         [[steps]]\nid = \"tag-latest\"\nkind = \"tag-latest\"\nneeds = [\"build\"]\n",
    )
    .unwrap();
    let table = bk::runtime(&env, "stages", "stages", "buildkit") + "plan = \"app-stage\"\n";
    env.config(&table);
    let plans_dir = plans.path().to_str().unwrap();
    let run = env.planner(&["--plans", plans_dir, "ensure", "stages"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let latest = env.latest("stages");
    assert_eq!(text_in_image(&latest, "/artifact"), format!("built-{id}\n"));
    let modes = text_in_image(&latest, "/modes");
    assert!(modes.contains("-rwxr-x---"), "--chmod=0750: {modes}");
    assert!(modes.contains("-rw----r--"), "--chmod=0604: {modes}");
    let listing = std::process::Command::new("docker")
        .args(["create", "--network", "none", &latest, "true"])
        .output()
        .unwrap();
    let container = String::from_utf8_lossy(&listing.stdout).trim().to_owned();
    let other = std::process::Command::new("docker")
        .args(["cp", &format!("{container}:/other"), "-"])
        .output()
        .unwrap();
    support::harness::docker(&["rm", &container]);
    assert!(!other.status.success(), "the target stops at stage app");
}

#[test]
fn a_failing_run_names_the_step_its_exit_code_and_its_output() {
    let _cache = building();
    let env = Env::new("bk-fail");
    let id = unique(&env);
    let dockerfile = format!(
        "FROM {BASE_IMAGE}\nRUN echo fine-{id}\nRUN sh -c 'echo about to fail {id}; echo second line; exit 3'\n"
    );
    env.git
        .create_repo("failing", &[("Dockerfile", dockerfile.as_bytes())]);
    env.config(&bk::runtime(&env, "failing", "failing", "buildkit"));
    let run = env.planner(&["ensure", "failing"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let err = &run.stderr;
    assert!(
        err.contains("3/3] RUN sh -c 'echo about to fail"),
        "names the step:\n{err}"
    );
    assert!(err.contains("exit code 3"), "names the exit code:\n{err}");
    assert!(
        err.contains(&format!("| about to fail {id}")) && err.contains("| second line"),
        "shows the step's last output:\n{err}"
    );
    assert!(
        !err.contains(&format!("| fine-{id}")),
        "only the failing step's output:\n{err}"
    );
}

#[test]
fn auto_picks_buildkit_here_and_classic_where_the_engine_has_no_session() {
    let _cache = building();
    let env = Env::new("bk-auto");
    let id = unique(&env);
    let dockerfile = format!("FROM {BASE_IMAGE}\nRUN echo auto-{id} > /built\n");
    env.git
        .create_repo("auto", &[("Dockerfile", dockerfile.as_bytes())]);
    env.config(&bk::runtime(&env, "auto", "auto", "auto"));
    let here = env.planner(&["-v", "ensure", "auto"]);
    assert_eq!(here.code, 0, "{}", here.all());
    assert!(
        here.stderr.contains("2/2] RUN echo auto-"),
        "BuildKit step progress:\n{}",
        here.all()
    );
    assert!(!here.stderr.contains("| Step 1/"), "{}", here.all());

    env.remove_images();
    let proxy = NoBuildkitProxy::start();
    let behind = env.command(&["-v", "ensure", "auto"]);
    let mut behind = behind;
    behind.env("DOCKER_HOST", proxy.docker_host());
    let behind = support::harness::Run::from_output(behind.output().unwrap());
    assert_eq!(behind.code, 0, "{}", behind.all());
    assert!(
        behind.stderr.contains(" : RUN echo auto-") && behind.stderr.contains("| Step 2/"),
        "the classic builder's output:\n{}",
        behind.all()
    );
    assert!(
        proxy.refused.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "planner asked for /session"
    );
    assert_eq!(
        text_in_image(&env.latest("auto"), "/built"),
        format!("auto-{id}\n")
    );
}

#[test]
fn the_classic_builder_says_a_mount_needs_buildkit_and_how_to_fix_it() {
    let _cache = building();
    let env = Env::new("bk-classic");
    let dockerfile =
        format!("FROM {BASE_IMAGE}\nRUN --mount=type=cache,target=/cache echo hi > /hi\n");
    env.git
        .create_repo("old", &[("Dockerfile", dockerfile.as_bytes())]);
    env.config(&bk::runtime(&env, "old", "old", "classic"));
    let run = env.planner(&["ensure", "old"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("requires BuildKit")
            && run.stderr.contains("help: this Dockerfile needs BuildKit")
            && run.stderr.contains("builder = \"classic\"")
            && run.stderr.contains("set builder = \"auto\""),
        "{}",
        run.all()
    );
}

#[test]
fn the_classic_builder_still_builds_run_steps() {
    let _cache = building();
    let env = Env::new("bk-classic-ok");
    env.template("plain");
    env.config(&bk::runtime(&env, "plain", "plain", "classic"));
    let run = env.planner(&["-v", "ensure", "plain"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr.contains("| Step 3/") && run.stderr.contains(" : RUN cat"),
        "{}",
        run.all()
    );
    assert_eq!(
        text_in_image(&env.latest("plain"), "/hello"),
        "hello from plain\n"
    );
}

/// Waits at most `limit` for `child`'s exit code; kills it and fails when it runs on.
fn exit_within(child: &mut Child, limit: Duration) -> Option<i32> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("planner still running after {limit:?}");
}

/// Reads `child`'s stderr until `needle` shows (at most 120 s); the rest comes on the
/// receiver.
fn stderr_until(child: &mut Child, needle: &str) -> std::sync::mpsc::Receiver<Vec<u8>> {
    use std::io::Read;
    let mut err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let started = Instant::now();
    while !seen.contains(needle) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "never saw {needle:?} in:\n{seen}"
        );
        if let Ok(more) = rx.recv_timeout(Duration::from_secs(1)) {
            seen.push_str(&String::from_utf8_lossy(&more));
        }
    }
    rx
}

#[test]
fn sigint_and_sigterm_mid_buildkit_build_leave_no_build_running() {
    for (n, signal) in [(0, "INT"), (1, "TERM")] {
        let _cache = building();
        let env = Env::new(&format!("bk-cancel{n}"));
        // A sleep no other test runs, to look for in /proc.
        let secs = (600 + std::process::id() % 1000 * 2 + n).to_string();
        let dockerfile = format!("FROM {BASE_IMAGE}\nRUN sleep {secs}\n");
        env.git
            .create_repo("slow", &[("Dockerfile", dockerfile.as_bytes())]);
        env.config(&bk::runtime(&env, "slow", "slow", "buildkit"));
        let mut child = env
            .command(&["ensure", "slow"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let rest = stderr_until(&mut child, &format!("2/2] RUN sleep {secs}"));
        let started = Instant::now();
        while bk::processes_running(&["sleep", &secs]) == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the RUN never started"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let kill = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let code = exit_within(&mut child, Duration::from_secs(30));
        let mut after = String::new();
        while let Ok(more) = rest.recv_timeout(Duration::from_secs(2)) {
            after.push_str(&String::from_utf8_lossy(&more));
        }
        let want = if signal == "INT" { 130 } else { 143 };
        assert_eq!(code, Some(want), "after SIG{signal}:\n{after}");
        let started = Instant::now();
        while bk::processes_running(&["sleep", &secs]) > 0 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the build's RUN still runs in the engine after {signal}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(env.image_id(&env.latest("slow")).is_none());
    }
}

#[test]
fn a_run_without_a_bridge_network_says_to_set_build_network() {
    let _cache = building();
    let env = Env::new("bk-nonet");
    let id = unique(&env);
    let dockerfile = format!("FROM {BASE_IMAGE}\nRUN echo nonet-{id}\n");
    env.git
        .create_repo("nonet", &[("Dockerfile", dockerfile.as_bytes())]);
    env.config(&(env.runtime("nonet", "nonet") + "builder = \"buildkit\"\n"));
    let run = env.planner(&["ensure", "nonet"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr
            .contains("help: this engine has no bridge network")
            && run.stderr.contains("set build_network = \"none\""),
        "{}",
        run.all()
    );
}

#[test]
fn gc_build_cache_frees_the_bytes_buildkit_builds_filled() {
    let env = Env::new("bk-gc");
    let id = unique(&env);
    // Bytes of this run's own: a layer of the context's big file.
    let mut big = Vec::with_capacity(3 << 20);
    let mut seed = std::process::id() as u64 | 1;
    while big.len() < 3 << 20 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        big.extend_from_slice(&seed.to_le_bytes());
    }
    let dockerfile = format!("FROM {BASE_IMAGE}\nCOPY big.bin /big-{id}.bin\n");
    env.git.create_repo(
        "gc",
        &[("Dockerfile", dockerfile.as_bytes()), ("big.bin", &big)],
    );
    env.config(&bk::runtime(&env, "gc", "gc", "buildkit"));
    let _cache = pruning();
    let run = env.planner(&["ensure", "gc"]);
    assert_eq!(run.code, 0, "{}", run.all());
    env.remove_images();
    let freed = |args: &[&str]| {
        let run = env.planner(args);
        assert_eq!(run.code, 0, "{}", run.all());
        let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        doc["build_cache"]["freed_bytes"].as_u64().unwrap()
    };
    let old_only = freed(&[
        "gc",
        "--json",
        "--dry-run",
        "--build-cache",
        "--older-than",
        "30d",
    ]);
    assert_eq!(old_only, 0, "nothing in this engine's cache is 30 days old");
    let would = freed(&["gc", "--json", "--dry-run", "--build-cache"]);
    assert!(would >= 3 << 20, "the dry run counts the layer: {would}");
    let text = env.planner(&["gc", "--build-cache"]);
    assert_eq!(text.code, 0, "{}", text.all());
    let line = text
        .stdout
        .lines()
        .find(|l| l.starts_with("build cache: freed "))
        .unwrap_or_else(|| panic!("{}", text.all()))
        .to_owned();
    assert!(!line.starts_with("build cache: freed 0 B"), "{line}");
    let after = freed(&["gc", "--json", "--dry-run", "--build-cache"]);
    assert!(after < 3 << 20, "pruned: {after} bytes left");
}

#[test]
fn base_image_pulls_under_buildkit_authenticate_with_docker_login_credentials() {
    use support::registry::{MARKER_PATH, RegistryAuth, TestRegistry};
    let _cache = building();
    let env = Env::new("bk-auth");
    let id = unique(&env);
    let secret = "pw-bk>>>~~~session";
    let reg = TestRegistry::start(RegistryAuth::basic("bob", secret));
    let base = reg.push_image("bk-base", "v1", &format!("marker-{id}"));
    let dockerfile = format!("FROM {}\nRUN cat {MARKER_PATH} > /seen\n", base.reference);
    env.git
        .create_repo("authed", &[("Dockerfile", dockerfile.as_bytes())]);
    env.config(&bk::runtime(&env, "authed", "authed", "buildkit"));
    let config = tempfile::tempdir().unwrap();
    let run = |env: &Env| {
        let mut cmd = env.command(&["ensure", "authed"]);
        cmd.env("DOCKER_CONFIG", config.path());
        support::harness::Run::from_output(cmd.output().unwrap())
    };
    let denied = run(&env);
    assert_eq!(denied.code, 1, "{}", denied.all());
    assert!(
        denied.stderr.contains(&reg.host()) && denied.stderr.contains("help: log in"),
        "names the registry and what to do: {}",
        denied.all()
    );
    reg.docker_config(config.path());
    let ok = run(&env);
    assert_eq!(ok.code, 0, "{}", ok.all());
    assert_eq!(
        text_in_image(&env.latest("authed"), "/seen"),
        format!("marker-{id}")
    );
    for r in [&denied, &ok] {
        assert!(!r.all().contains(secret), "{}", r.all());
    }
}

/// The builder is part of the build key: switching it rebuilds, and the reason says why.
#[test]
fn switching_the_builder_rebuilds_with_the_reason() {
    let _cache = building();
    let env = Env::new("bk-switch");
    env.template("switch");
    env.config(&bk::runtime(&env, "switch", "switch", "classic"));
    let first = env.planner(&["ensure", "switch"]);
    assert_eq!(first.code, 0, "{}", first.all());
    let classic = env.image_id(&env.latest("switch")).unwrap();
    env.config(&bk::runtime(&env, "switch", "switch", "buildkit"));
    let second = env.planner(&["ensure", "switch"]);
    assert_eq!(second.code, 0, "{}", second.all());
    let started = second.lines("build", "started");
    assert!(
        started
            .iter()
            .any(|l| l.contains("builder changed: classic → buildkit")),
        "the build runs again and names the builder: {}",
        second.all()
    );
    assert_ne!(env.image_id(&env.latest("switch")).unwrap(), classic);
}

/// The build row of `planner plan --format json`.
fn build_row(run: &support::harness::Run) -> serde_json::Value {
    assert_eq!(run.code, 0, "{}", run.all());
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let steps = doc["steps"].as_array().unwrap();
    let build = steps.iter().find(|s| s["step"] == "build");
    build
        .unwrap_or_else(|| panic!("no build step: {}", run.stdout))
        .clone()
}

#[test]
fn the_plan_says_which_builder_auto_picked_cold_and_warm() {
    let _cache = building();
    let env = Env::new("bk-plan");
    let dockerfile = format!("FROM {BASE_IMAGE}\nCOPY Dockerfile /\n");
    env.git
        .create_repo("picked", &[("Dockerfile", dockerfile.as_bytes())]);
    env.config(&bk::runtime(&env, "picked", "picked", "auto"));
    let plan = |host: Option<String>| {
        let mut cmd = env.command(&["plan", "picked", "--format", "json"]);
        if let Some(host) = host {
            cmd.env("DOCKER_HOST", host);
        }
        build_row(&support::harness::Run::from_output(cmd.output().unwrap()))
    };

    // Cold: no checkout, no image.
    let cold = plan(None);
    assert_eq!(cold["status"], "run", "{cold}");
    let reason = cold["reason"].as_str().unwrap();
    assert!(reason.contains("(builder auto: buildkit)"), "{reason}");
    let proxy = NoBuildkitProxy::start();
    let classic = plan(Some(proxy.docker_host()));
    let reason = classic["reason"].as_str().unwrap();
    assert!(reason.contains("(builder auto: classic)"), "{reason}");

    // Warm: built.
    let ensure = env.planner(&["ensure", "picked"]);
    assert_eq!(ensure.code, 0, "{}", ensure.all());
    let warm = plan(None);
    assert_eq!(warm["status"], "skip", "{warm}");
    let reason = warm["reason"].as_str().unwrap();
    assert!(reason.contains("(builder auto: buildkit)"), "{reason}");
}

/// A BuildKit build whose `# syntax=` frontend is on `reg` and whose base is
/// `reg`'s `bk-<name>-base:v1`, tagged locally from the suite's busybox (so `base_images =
/// "local"` keys it without asking the registry, and only BuildKit's own frontend pull
/// meets the registry and its token endpoint). Runs `ensure` with `config` as
/// `DOCKER_CONFIG`; removes the local tag after.
fn build_with_frontend_on(
    env: &Env,
    reg: &support::registry::TestRegistry,
    name: &str,
    config: &std::path::Path,
) -> support::harness::Run {
    let base = reg.reference(&format!("bk-{name}-base"), "v1");
    support::harness::docker(&["tag", BASE_IMAGE, &base]);
    let dockerfile = format!(
        "# syntax={}\nFROM {base}\nRUN echo built > /built\n",
        reg.reference(&format!("bk-{name}-frontend"), "1")
    );
    env.git
        .create_repo(name, &[("Dockerfile", dockerfile.as_bytes())]);
    env.config(&format!(
        "{}base_images = \"local\"\n",
        bk::runtime(env, name, name, "buildkit")
    ));
    let mut cmd = env.command(&["ensure", name]);
    cmd.env("DOCKER_CONFIG", config);
    let run = support::harness::Run::from_output(cmd.output().unwrap());
    support::harness::docker(&["rmi", &base]);
    run
}

/// A token realm planner refuses (plain HTTP on a host it does not count as loopback: the
/// IPv4-mapped `[::ffff:127.0.0.1]`, which the engine still reaches) never gets a secret from
/// the engine: planner fetches BuildKit's tokens itself, under its own rules, and the build
/// fails with planner's reason.
#[test]
fn the_engine_never_gets_a_secret_for_a_token_realm_planner_refuses() {
    use support::registry::{RegistryAuth, TestRegistry};
    let _cache = building();
    let env = Env::new("bk-realm");
    let secret = "pw-bk-realm~~~refused";
    let reg = TestRegistry::start_with_realm_host(
        RegistryAuth::token("dana", secret),
        Some("[::ffff:127.0.0.1]"),
    );
    let config = tempfile::tempdir().unwrap();
    reg.docker_config(config.path());
    let issuer = reg.issuer().unwrap();
    issuer.clear_requests();
    let run = build_with_frontend_on(&env, &reg, "realm", config.path());
    let reached = issuer.client_requests();
    assert!(
        reached.iter().all(|t| t.user.is_none()),
        "a secret reached the refused realm: {reached:?}"
    );
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("is not HTTPS") && run.stderr.contains("[::ffff:"),
        "planner's reason, naming the realm: {}",
        run.all()
    );
    assert!(!run.all().contains(secret), "{}", run.all());
}

/// A registry the build does not name (a `# syntax=` frontend's; the line continuing a RUN
/// that reads like a FROM is no base) gets no credentials, even though config.json holds some
/// for it: its pull goes anonymous, and succeeds where the registry allows that.
#[test]
fn a_registry_the_build_does_not_name_gets_no_credentials() {
    use support::registry::{RegistryAuth, TestRegistry};
    let _cache = building();
    let env = Env::new("bk-unnamed");
    let id = unique(&env);
    let secret = "pw-bk-unnamed~~~frontend";
    let reg = TestRegistry::start(RegistryAuth::token("erin", secret));
    let frontend = reg.push_image("bk-unnamed-frontend", "1", &format!("frontend-{id}"));
    let issuer = reg.issuer().unwrap();
    issuer.set_anonymous_pull(true);
    let config = tempfile::tempdir().unwrap();
    reg.docker_config(config.path());
    issuer.clear_requests();
    reg.clear_requests();
    let dockerfile = format!(
        "# syntax={}\nFROM {BASE_IMAGE}\nRUN echo \\\nFROM {}\n",
        frontend.reference, frontend.reference
    );
    env.git
        .create_repo("unnamed", &[("Dockerfile", dockerfile.as_bytes())]);
    env.config(&bk::runtime(&env, "unnamed", "unnamed", "buildkit"));
    let mut cmd = env.command(&["ensure", "unnamed"]);
    cmd.env("DOCKER_CONFIG", config.path());
    let run = support::harness::Run::from_output(cmd.output().unwrap());
    let asked = issuer.client_requests();
    assert!(
        !asked.is_empty(),
        "the engine asked for a token: {}",
        run.all()
    );
    assert!(
        asked.iter().all(|t| t.user.is_none()),
        "credentials went to a registry the build does not name: {asked:?}"
    );
    assert!(
        reg.client_requests()
            .iter()
            .any(|r| r.manifest_of() == Some("bk-unnamed-frontend") && r.status == 200),
        "the frontend was pulled anonymously: {:?}\n{}",
        reg.client_requests(),
        run.all()
    );
    assert!(!run.all().contains(secret), "{}", run.all());
}

/// For a registry the build names, BuildKit's tokens come from planner (its identity token
/// exchanged by planner's own POST), never from the engine with the secret.
#[test]
fn buildkit_tokens_for_a_named_registry_are_fetched_by_planner() {
    use support::registry::{RegistryAuth, TestRegistry};
    let _cache = building();
    let env = Env::new("bk-token");
    let id = unique(&env);
    let reg = TestRegistry::start(RegistryAuth::token("faye", "pw-bk-token~~~named"));
    reg.push_image("bk-token-frontend", "1", &format!("frontend-{id}"));
    let config = tempfile::tempdir().unwrap();
    reg.docker_config_identity_token(config.path());
    let issuer = reg.issuer().unwrap();
    issuer.clear_requests();
    reg.clear_requests();
    let run = build_with_frontend_on(&env, &reg, "token", config.path());
    let asked = issuer.client_requests();
    assert!(
        asked.iter().any(|t| t.user_agent.starts_with("planner/")
            && t.grant_type.as_deref() == Some("refresh_token")
            && t.status == 200),
        "planner exchanged the identity token: {asked:?}\n{}",
        run.all()
    );
    assert!(
        asked
            .iter()
            .filter(|t| !t.user_agent.starts_with("planner/"))
            .all(|t| t.user.is_none() && t.grant_type.is_none()),
        "the engine used the secret itself: {asked:?}"
    );
    assert!(
        reg.client_requests()
            .iter()
            .any(|r| r.manifest_of() == Some("bk-token-frontend") && r.status == 200),
        "the engine pulled with planner's token: {:?}\n{}",
        reg.client_requests(),
        run.all()
    );
    assert!(
        !run.all().contains(&issuer.refresh_token()),
        "{}",
        run.all()
    );
}
