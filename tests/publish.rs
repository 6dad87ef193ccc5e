//! `publish` end to end: machine A (the suite's engine) builds locally and publishes to a
//! real registry (Debian's docker-registry on 127.0.0.1); machine B (a second private dockerd,
//! its own cache dir) runs registry mode against the same registry and ends with the same
//! digest. A warm publish pushes nothing (counted at the registry); a rebuild of the same
//! commit on a moved base republishes; credentials come from a `config.json` the test writes,
//! and wrong ones fail naming the registry and the fix, masked. Run through scripts/test.sh.

use planner_test_support as support;

use std::path::Path;
use std::process::Command;

use support::harness::{BASE_IMAGE, Env, Run};
use support::registry::{RegistryAuth, TestRegistry};
use support::tls_engine::TlsEngine;
use support::watcher::Watcher;

/// A template built `FROM base`, its layers its own (tests share one engine).
fn template(env: &Env, repo: &str, base: &str) -> String {
    let dockerfile = format!("FROM {base}\nCOPY test-id.txt /id\n");
    let id = format!("{}{repo} {}\n", env.prefix, std::process::id());
    env.git.create_repo(
        repo,
        &[
            ("Dockerfile", dockerfile.as_bytes()),
            ("test-id.txt", id.as_bytes()),
        ],
    )
}

/// Machine A's runtimes.toml: `rt` on plan build-and-publish, publishing to `reg`'s `mirror/`.
fn config_a(env: &Env, rt: &str, reg: &TestRegistry) {
    env.config(&format!(
        "{}plan = \"build-and-publish\"\n\n[publish]\nregistry = \"{}/mirror\"\n",
        env.runtime(rt, rt),
        reg.host()
    ));
}

/// planner on machine A with `DOCKER_CONFIG=docker_config` (the user's own never counts).
fn on_a(env: &Env, docker_config: &Path, args: &[&str]) -> Run {
    let mut cmd = env.command(args);
    cmd.env("DOCKER_CONFIG", docker_config);
    Run::from_output(cmd.output().unwrap())
}

/// planner on machine B: registry mode from `reg`'s `mirror/`, the second engine, its own
/// cache dir and config.
fn on_b(env: &Env, b: &Path, reg: &TestRegistry, rt: &str, args: &[&str]) -> Run {
    let config = config_b(b, &format!("{}b-", env.prefix), reg, rt);
    let out = Command::new(env!("CARGO_BIN_EXE_planner"))
        .arg("--config")
        .arg(&config)
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

/// Machine B's runtimes.toml in `dir`: `rt` in registry mode from `reg`'s `mirror/`.
fn config_b(dir: &Path, image_prefix: &str, reg: &TestRegistry, rt: &str) -> std::path::PathBuf {
    let config = dir.join("runtimes.toml");
    let text = format!(
        "[defaults]\nsource = \"registry\"\nregistry = \"{}/mirror\"\nimage_prefix = \"{image_prefix}\"\n\n[runtimes.{rt}]\n",
        reg.host(),
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// Removes the images under `prefix` from machine B's engine.
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

/// The summary row of `ensure --json`'s last line.
fn summary(run: &Run) -> serde_json::Value {
    let last = run.stdout.lines().last().unwrap_or_default();
    let json: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|_| panic!("{}", run.all()));
    json["runtimes"][0].clone()
}

/// Manifest uploads (PUT) and blob uploads to repo `name` since the log was cleared.
fn uploads(reg: &TestRegistry, name: &str) -> usize {
    reg.requests()
        .iter()
        .filter(|r| {
            let upload = r.path.starts_with(&format!("/v2/{name}/blobs/uploads"));
            let manifest = r.method == "PUT" && r.manifest_of() == Some(name);
            upload || manifest
        })
        .count()
}

/// The digest `reg` holds at `name:reference`.
fn digest_at(reg: &TestRegistry, name: &str, reference: &str) -> Option<String> {
    let head = reg.head_manifest(name, reference);
    head.header("docker-content-digest").map(str::to_owned)
}

fn started(run: &Run, step: &str) -> Vec<String> {
    run.lines(step, "started")
}

#[test]
fn a_published_build_is_what_registry_mode_pulls_and_a_warm_run_pushes_nothing() {
    let env = Env::new("publish");
    let reg = TestRegistry::start(RegistryAuth::None);
    let base = reg.reference("base", "1");
    let marker = |what: &str| format!("{}{what} {}", env.prefix, std::process::id());
    let first_base = reg.push_image("base", "1", &marker("first"));
    let sha = template(&env, "pub", &base);
    config_a(&env, "pub", &reg);
    let creds = tempfile::tempdir().unwrap();
    let repo = "mirror/workspace-template-pub";

    let cold = on_a(&env, creds.path(), &["ensure", "pub", "--json"]);
    assert_eq!(cold.code, 0, "{}", cold.all());
    assert_eq!(started(&cold, "publish").len(), 1, "{}", cold.all());
    let published = summary(&cold)["published"].as_str().unwrap().to_owned();
    let digest = published.rsplit_once('@').unwrap().1.to_owned();
    assert_eq!(published, format!("{}/{repo}@{digest}", reg.host()));
    assert_eq!(digest_at(&reg, repo, "latest").as_deref(), Some(&*digest));
    assert_eq!(digest_at(&reg, repo, &sha[..12]).as_deref(), Some(&*digest));
    assert!(
        env.image_id(&format!("{}/{repo}:latest", reg.host()))
            .is_none(),
        "the destination's names are not left in the engine"
    );

    // Warm: one look at the tag, nothing pushed.
    reg.clear_requests();
    let warm = on_a(&env, creds.path(), &["ensure", "pub", "--json"]);
    assert_eq!(warm.code, 0, "{}", warm.all());
    assert!(!warm.stderr.contains(" started "), "{}", warm.all());
    assert_eq!(uploads(&reg, repo), 0, "{:?}", reg.requests());
    assert_eq!(summary(&warm)["published"].as_str(), Some(&*published));
    // The provisioner's contract: the registry reference is the summary's digest too, and
    // the warm run (publish found it there, build not needed) still names the image by ID.
    for run in [&cold, &warm] {
        assert_eq!(summary(run)["digest"].as_str(), Some(&*published));
        let id = summary(run)["image_id"].as_str().map(str::to_owned);
        assert!(
            id.as_deref().is_some_and(|i| i.starts_with("sha256:")),
            "{}",
            run.stdout
        );
        assert_eq!(summary(run)["pinned"].as_str(), id.as_deref());
    }
    assert!(
        warm.stderr
            .contains(&format!("{}/{repo}:latest already at", reg.host())),
        "{}",
        warm.all()
    );

    // Machine B, registry mode: the same digest.
    let b = tempfile::tempdir().unwrap();
    clean_b(&format!("{}b-", env.prefix));
    let pulled = on_b(&env, b.path(), &reg, "pub", &["ensure", "pub", "--json"]);
    assert_eq!(pulled.code, 0, "{}", pulled.all());
    assert_eq!(summary(&pulled)["commit"].as_str(), Some(&*digest));
    let on_b_engine = TlsEngine::shared().docker(&["image", "inspect", &published]);
    assert!(on_b_engine.status.success(), "B holds {published}");

    // A moved base rebuilds the same commit: the mirror follows the new image.
    let second_base = reg.push_image("base", "1", &marker("second"));
    assert_ne!(first_base.digest, second_base.digest);
    let plan = on_a(&env, creds.path(), &["plan", "pub"]);
    let row = |step: &str| {
        let line = plan
            .stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(step));
        line.unwrap_or_default()
            .split_whitespace()
            .nth(2)
            .map(str::to_owned)
    };
    assert!(plan.stdout.contains("moved"), "{}", plan.all());
    assert_eq!(row("publish").as_deref(), Some("run"), "{}", plan.all());
    let rebuilt = on_a(&env, creds.path(), &["ensure", "pub", "--json"]);
    assert_eq!(rebuilt.code, 0, "{}", rebuilt.all());
    assert!(
        started(&rebuilt, "build")
            .first()
            .is_some_and(|l| l.contains("moved")),
        "{}",
        rebuilt.all()
    );
    assert_eq!(started(&rebuilt, "publish").len(), 1, "{}", rebuilt.all());
    let republished = summary(&rebuilt)["published"].as_str().unwrap().to_owned();
    let new_digest = republished.rsplit_once('@').unwrap().1.to_owned();
    assert_ne!(new_digest, digest, "{}", rebuilt.all());
    assert_eq!(
        digest_at(&reg, repo, "latest").as_deref(),
        Some(&*new_digest)
    );
    assert_eq!(
        digest_at(&reg, repo, &sha[..12]).as_deref(),
        Some(&*new_digest)
    );
    let again = on_b(&env, b.path(), &reg, "pub", &["ensure", "pub", "--json"]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(summary(&again)["commit"].as_str(), Some(&*new_digest));
}

#[test]
fn publishing_needs_the_registrys_credentials_and_wrong_ones_name_the_registry_masked() {
    let env = Env::new("publishauth");
    let secret = "pw-publish~7c1d";
    let reg = TestRegistry::start(RegistryAuth::basic("pia", secret));
    let sha = template(&env, "priv", BASE_IMAGE);
    config_a(&env, "priv", &reg);
    let repo = "mirror/workspace-template-priv";

    let wrong = tempfile::tempdir().unwrap();
    let bad = "pw-wrong~93ab";
    let auth = base64_basic("pia", bad);
    std::fs::write(
        wrong.path().join("config.json"),
        format!(
            "{{\"auths\":{{\"{}\":{{\"auth\":\"{auth}\"}}}}}}",
            reg.host()
        ),
    )
    .unwrap();
    let refused = on_a(&env, wrong.path(), &["ensure", "priv"]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    let host = reg.host();
    assert!(
        refused
            .stderr
            .contains(&format!("{host}/{repo}:{}", &sha[..12]))
            && refused.stderr.contains(&format!("docker login {host}")),
        "{}",
        refused.all()
    );
    assert!(
        !refused.all().contains(bad) && !refused.all().contains(&auth),
        "{}",
        refused.all()
    );
    assert_eq!(digest_at(&reg, repo, "latest"), None);

    let right = tempfile::tempdir().unwrap();
    reg.docker_config(right.path());
    let ok = on_a(&env, right.path(), &["ensure", "priv", "--json"]);
    assert_eq!(ok.code, 0, "{}", ok.all());
    let published = summary(&ok)["published"].as_str().unwrap().to_owned();
    let digest = published.rsplit_once('@').unwrap().1;
    assert_eq!(digest_at(&reg, repo, "latest").as_deref(), Some(digest));
    assert!(!ok.all().contains(secret), "{}", ok.all());
}

fn base64_basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

#[test]
fn machine_bs_watch_fires_its_hook_when_a_publishes_a_new_commit() {
    let env = Env::new("publishwatch");
    let reg = TestRegistry::start(RegistryAuth::None);
    template(&env, "w", BASE_IMAGE);
    config_a(&env, "w", &reg);
    let creds = tempfile::tempdir().unwrap();
    let first = on_a(&env, creds.path(), &["ensure", "w", "--json"]);
    assert_eq!(first.code, 0, "{}", first.all());

    // Machine B: its own Env (cache dir, config), the second engine, registry mode.
    let b = Env::new("publishwatchb");
    clean_b(&b.prefix);
    config_b(b.dir.path(), &b.prefix, &reg, "w");
    let log = b.dir.path().join("hooks.log");
    let hook = format!("printf '%s\\n' \"$PLANNER_NEW_ID\" >> '{}'", log.display());
    let args = [
        "w",
        "--on-change",
        &hook,
        "--interval",
        "1s",
        "--jitter",
        "0s",
    ];
    let mut w = Watcher::spawn_with(&b, &args, |cmd| {
        cmd.env("DOCKER_HOST", TlsEngine::shared().unix())
            .env("DOCKER_CONFIG", b.dir.path())
            .env_remove("PLANNER_REGISTRY");
    });
    let t1 = w.tick_finished(1);
    assert_eq!(t1["ensured"].as_u64(), Some(1), "{}", w.dump());

    // A publishes a new commit; B's next tick pulls it and runs the hook once.
    let id = format!("{}w second {}\n", env.prefix, std::process::id());
    env.git
        .commit("w", "main", &[("test-id.txt", id.as_bytes())]);
    let second = on_a(&env, creds.path(), &["ensure", "w", "--json"]);
    assert_eq!(second.code, 0, "{}", second.all());
    let published = summary(&second)["published"].as_str().unwrap().to_owned();
    let done = w.wait_event("hook_finished", Some("w"));
    let on_b_engine =
        TlsEngine::shared().docker(&["image", "inspect", "-f", "{{.Id}}", &published]);
    let new_id = String::from_utf8_lossy(&on_b_engine.stdout)
        .trim()
        .to_owned();
    assert!(on_b_engine.status.success(), "B holds {published}");
    assert_eq!(done["new_id"].as_str(), Some(&*new_id), "{}", w.dump());
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("{new_id}\n"),
        "{}",
        w.dump()
    );
    w.signal("TERM");
    assert_eq!(
        w.exit_code_within(std::time::Duration::from_secs(30)),
        Some(0),
        "{}",
        w.dump()
    );
    clean_b(&b.prefix);
}
