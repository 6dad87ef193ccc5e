//! End to end, registry mode: the real `planner` binary against a real OCI registry
//! (Debian's docker-registry, distribution 2.8, on 127.0.0.1; open, htpasswd Basic, or token
//! auth with a real Bearer flow) and the real Docker engine. Run through scripts/test.sh.

use planner_test_support as support;

use std::path::{Path, PathBuf};

use support::canned_http::CannedHttp;
use support::cred_helper::CredHelper;
use support::harness::{Env, Run, docker, image_id};
use support::rate_limit_proxy::RateLimitProxy;
use support::registry::{IndexKind, PushedImage, RegistryAuth, TestRegistry, down_host};

/// The registry image name of runtime `rt` (the default `registry_image` prefix).
fn repo_name(rt: &str) -> String {
    format!("workspace-template-{rt}")
}

/// A test's world: the git server and cache dir of [`Env`], a registry, and a
/// `DOCKER_CONFIG` dir of its own (empty unless the test writes one).
struct RegEnv {
    env: Env,
    reg: TestRegistry,
    docker_config: tempfile::TempDir,
    /// The registry host runtimes pull from (the registry, or a proxy in front of it).
    host: String,
    /// Extra environment of every planner run.
    vars: Vec<(String, std::ffi::OsString)>,
}

impl RegEnv {
    fn new(test: &str, auth: RegistryAuth) -> RegEnv {
        let env = Env::new(test);
        let reg = TestRegistry::start(auth);
        let host = reg.host();
        RegEnv {
            env,
            reg,
            docker_config: tempfile::tempdir().unwrap(),
            host,
            vars: Vec::new(),
        }
    }

    /// A unique marker for pushed images (tests share one engine).
    fn marker(&self, what: &str) -> String {
        format!("{}{what} {}", self.env.prefix, std::process::id())
    }

    /// Pushes runtime `rt`'s image at `:latest` with a fresh marker.
    fn push(&self, rt: &str, what: &str) -> PushedImage {
        self.reg
            .push_image(&repo_name(rt), "latest", &self.marker(what))
    }

    /// Writes runtimes.toml: registry mode from `self.host`, plus `extra`.
    fn config(&self, extra: &str) -> PathBuf {
        let text = format!(
            "[defaults]\nimage_prefix = \"{}\"\nplatform = \"linux/amd64\"\nbuilder = \"classic\"\nsource = \"registry\"\nregistry = \"{}\"\nrepo_prefix = \"{}\"\n\n[git]\ntoken_env = \"PLANNER_GIT_TOKEN\"\nallow_insecure_http = true\n\n{extra}",
            self.env.prefix,
            self.host,
            self.env.git.base_url(),
        );
        let path = self.env.dir.path().join("runtimes.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn planner(&self, args: &[&str]) -> Run {
        let mut cmd = self.env.command(args);
        cmd.env("DOCKER_CONFIG", self.docker_config.path())
            .env_remove("PLANNER_REGISTRY");
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        Run::from_output(cmd.output().unwrap())
    }

    fn pinned(&self, rt: &str, digest: &str) -> String {
        let hex = digest.strip_prefix("sha256:").unwrap();
        format!("{}{rt}:{}", self.env.prefix, &hex[..12])
    }

    fn registry_ref(&self, rt: &str) -> String {
        format!("{}/{}:latest", self.host, repo_name(rt))
    }

    /// Manifest and blob requests planner and the engine made since the last clear.
    fn traffic(&self, rt: &str) -> (usize, usize, usize) {
        let name = repo_name(rt);
        (
            self.reg.count_manifest("HEAD", &name),
            self.reg.count_manifest("GET", &name),
            self.reg.count_blob("GET", &name),
        )
    }
}

impl Drop for RegEnv {
    fn drop(&mut self) {
        // Pulled images carry the registry reference too; untag those (the env removes its own).
        let out = docker(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
        let prefix = format!("{}/", self.host);
        let mine: Vec<&str> = out.lines().filter(|l| l.starts_with(&prefix)).collect();
        if !mine.is_empty() {
            let mut args = vec!["image", "rm", "-f"];
            args.extend(mine);
            let _ = std::process::Command::new("docker").args(&args).output();
        }
    }
}

fn repo_digests(reference: &str) -> String {
    docker(&["image", "inspect", "-f", "{{json .RepoDigests}}", reference])
}

fn all_files_text(dir: &Path) -> String {
    let mut out = String::new();
    for entry in walk(dir) {
        if let Ok(bytes) = std::fs::read(&entry) {
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(walk(&p)),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
    out
}

#[test]
fn cold_ensure_pulls_by_digest_and_warm_ensure_only_asks_with_head() {
    let r = RegEnv::new("reg-coldwarm", RegistryAuth::None);
    let pushed = r.push("alpha", "v1");
    r.config("[runtimes.alpha]\n");

    let cold = r.planner(&["ensure", "alpha"]);
    assert_eq!(cold.code, 0, "{}", cold.all());
    assert_eq!(cold.count("pull", "done"), 1, "{}", cold.all());
    let pinned = r.pinned("alpha", &pushed.digest);
    assert_eq!(image_id(&pinned).as_deref(), Some(pushed.image_id.as_str()));
    assert_eq!(
        image_id(&r.env.latest("alpha")).as_deref(),
        Some(pushed.image_id.as_str()),
        ":latest names the pulled image"
    );
    assert_eq!(
        image_id(&r.registry_ref("alpha")).as_deref(),
        Some(pushed.image_id.as_str()),
        "the registry reference is tagged too"
    );
    assert!(
        repo_digests(&pinned).contains(&pushed.digest),
        "pulled by digest: {}",
        repo_digests(&pinned)
    );

    r.reg.clear_requests();
    let warm = r.planner(&["ensure", "alpha"]);
    assert_eq!(warm.code, 0, "{}", warm.all());
    assert_eq!(warm.count("pull", "skipped"), 1, "{}", warm.all());
    assert_eq!(warm.count("tag-latest", "skipped"), 1, "{}", warm.all());
    let (heads, gets, blobs) = r.traffic("alpha");
    assert_eq!(
        (heads, gets, blobs),
        (1, 0, 0),
        "warm: one HEAD, nothing else"
    );
    assert!(
        r.reg.client_requests().iter().all(|q| !q.by_engine()),
        "the engine pulled nothing: {:?}",
        r.reg.client_requests()
    );
}

#[test]
fn a_new_push_is_picked_up_and_the_dry_run_predicts_it() {
    let r = RegEnv::new("reg-move", RegistryAuth::None);
    let v1 = r.push("alpha", "v1");
    r.config("[runtimes.alpha]\n");
    assert_eq!(r.planner(&["ensure", "alpha"]).code, 0);

    let v2 = r.push("alpha", "v2");
    assert_ne!(v1.digest, v2.digest);
    let plan = r.planner(&["plan", "alpha", "--format", "json"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let doc: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let statuses: Vec<(String, String)> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        statuses.contains(&("pull".into(), "run".into()))
            && statuses.contains(&("tag-latest".into(), "run".into())),
        "{statuses:?}"
    );
    assert!(plan.stdout.contains("new digest"), "{}", plan.stdout);

    let run = r.planner(&["ensure", "alpha"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.count("pull", "done"), 1, "{}", run.all());
    assert_eq!(
        image_id(&r.env.latest("alpha")).as_deref(),
        Some(v2.image_id.as_str())
    );
    assert_eq!(
        image_id(&r.pinned("alpha", &v1.digest)).as_deref(),
        Some(v1.image_id.as_str()),
        "the old pinned image stays until gc"
    );
}

#[test]
fn basic_auth_401_without_credentials_then_config_json_and_a_credential_helper() {
    let r = RegEnv::new(
        "reg-basic",
        RegistryAuth::basic("alice", "s3cr3t>>>???~~~basic"),
    );
    let pushed = r.push("alpha", "v1");
    r.config("[runtimes.alpha]\n");

    let denied = r.planner(&["ensure", "alpha"]);
    assert_eq!(denied.code, 1, "{}", denied.all());
    let text = denied.all();
    assert!(
        text.contains(&r.registry_ref("alpha")) && text.contains("docker login"),
        "names the reference and how to log in: {text}"
    );

    r.reg.docker_config(r.docker_config.path());
    let ok = r.planner(&["ensure", "alpha", "-v"]);
    assert_eq!(ok.code, 0, "{}", ok.all());
    assert_eq!(
        image_id(&r.env.latest("alpha")).as_deref(),
        Some(pushed.image_id.as_str())
    );
    for run in [&denied, &ok] {
        assert!(!run.all().contains("s3cr3t>>>???~~~basic"), "{}", run.all());
    }
    assert!(!all_files_text(r.env.cache_path()).contains("s3cr3t>>>???~~~basic"));

    // A credential helper on PATH, named by credHelpers, answers instead of auths.
    docker(&["image", "rm", "-f", &r.env.latest("alpha")]);
    docker(&["image", "rm", "-f", &r.pinned("alpha", &pushed.digest)]);
    docker(&["image", "rm", "-f", &r.registry_ref("alpha")]);
    let helper = CredHelper::new("plannertest", &[(&r.host, "alice", "s3cr3t>>>???~~~basic")]);
    helper.write_cred_helpers_config(r.docker_config.path(), &r.host);
    let mut r = r;
    r.vars.push(("PATH".into(), helper.path_env()));
    let via_helper = r.planner(&["ensure", "alpha", "--json"]);
    assert_eq!(via_helper.code, 0, "{}", via_helper.all());
    assert!(
        helper
            .calls()
            .iter()
            .any(|(verb, input)| verb == "get" && input.contains(&r.host)),
        "{:?}",
        helper.calls()
    );
    assert!(!via_helper.all().contains("s3cr3t>>>???~~~basic"));
}

#[test]
fn token_auth_runs_the_bearer_flow_and_pulls_with_the_users_credentials() {
    let r = RegEnv::new("reg-token", RegistryAuth::token("bob", "t0ken>>>???~~~bob"));
    let pushed = r.push("alpha", "v1");
    r.config("[runtimes.alpha]\n");
    r.reg.docker_config(r.docker_config.path());
    let issuer = r.reg.issuer().unwrap();
    let before = issuer.requests().len();

    let run = r.planner(&["ensure", "alpha", "-v"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        image_id(&r.env.latest("alpha")).as_deref(),
        Some(pushed.image_id.as_str())
    );
    let tokens: Vec<_> = issuer.requests().into_iter().skip(before).collect();
    assert!(
        tokens
            .iter()
            .any(|t| t.user.as_deref() == Some("bob") && t.status == 200),
        "planner asked the issuer with the user's credentials: {tokens:?}"
    );
    assert!(!run.all().contains("t0ken>>>???~~~bob"), "{}", run.all());
    assert!(!all_files_text(r.env.cache_path()).contains("t0ken>>>???~~~bob"));
}

/// A token endpoint that answers the identity token's refresh POST with a 307 or 308 to
/// another origin (plain HTTP on a host that is not loopback: `http://auth.example`, reached
/// through an `http_proxy` that logs what it gets): an error naming both origins, and the
/// other origin gets nothing, as the same URL named directly as a realm gets nothing.
#[test]
fn an_identity_token_never_follows_a_token_endpoint_redirect_to_another_origin() {
    let secret = "pw-carol-redirect";
    let mut r = RegEnv::new("reg-token-redirect", RegistryAuth::token("carol", secret));
    r.push("alpha", "v1");
    r.config("[runtimes.alpha]\n");
    r.reg.docker_config_identity_token(r.docker_config.path());
    let issuer = r.reg.issuer().unwrap();
    let refresh = issuer.refresh_token();
    let elsewhere = CannedHttp::start(200, "application/json", br#"{"token":"x"}"#.to_vec());
    r.vars.push(("http_proxy".into(), elsewhere.url("").into()));
    r.vars
        .push(("NO_PROXY".into(), "127.0.0.1,localhost".into()));
    let realm_origin = issuer.realm().trim_end_matches("/token").to_owned();
    for status in [307, 308] {
        issuer.set_redirect(Some((status, "http://auth.example/token")));
        let run = r.planner(&["ensure", "alpha"]);
        assert!(
            elsewhere.requests().is_empty(),
            "HTTP {status} from the token endpoint was followed: {:?}",
            elsewhere.requests()
        );
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(
            run.stderr.contains(&realm_origin) && run.stderr.contains("http://auth.example"),
            "names both origins: {}",
            run.all()
        );
        assert!(
            issuer.requests().iter().any(|t| t.status == status),
            "planner asked the token endpoint: {:?}",
            issuer.requests()
        );
        for leaked in [secret, refresh.as_str()] {
            assert!(!run.all().contains(leaked), "{}", run.all());
        }
    }
}

#[test]
fn missing_tag_unreachable_registry_and_missing_platform_fail_closed() {
    let mut r = RegEnv::new("reg-errors", RegistryAuth::None);
    r.config("[runtimes.ghost]\n");
    let missing = r.planner(&["ensure", "ghost"]);
    assert_eq!(missing.code, 1, "{}", missing.all());
    assert!(
        missing.all().contains(&r.registry_ref("ghost")) && missing.all().contains("not found"),
        "{}",
        missing.all()
    );

    // An index with only linux/arm64: amd64 is refused, naming what there is.
    let arm = r.push("armonly", "arm");
    r.reg.push_index(
        &repo_name("armonly"),
        "latest",
        IndexKind::Oci,
        &[(&arm.digest, "linux/arm64")],
    );
    r.config("[runtimes.armonly]\n");
    let platform = r.planner(&["ensure", "armonly"]);
    assert_eq!(platform.code, 1, "{}", platform.all());
    assert!(
        platform.all().contains("linux/amd64") && platform.all().contains("linux/arm64"),
        "{}",
        platform.all()
    );

    r.host = down_host();
    r.config("[runtimes.alpha]\n");
    let down = r.planner(&["ensure", "alpha"]);
    assert_eq!(down.code, 1, "{}", down.all());
    assert!(down.all().contains(&r.host), "{}", down.all());
    assert_eq!(
        image_id(&r.env.latest("alpha")),
        None,
        "never a fallback to a git build"
    );
}

/// An index of `n` entries, all naming the image `entry` (so the registry accepts it), each
/// with a platform of its own that is not linux/amd64 and tries to take over the terminal.
fn hostile_index(entry: serde_json::Value, n: usize) -> Vec<u8> {
    let manifests: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let mut e = entry.clone();
            e["platform"] = serde_json::json!({
                "os": "linux",
                "architecture": format!("arm\x1b[2J\x1b]0;pwned\x07\r1 ensured, 0 failed\u{9b}{i}"),
            });
            e
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": IndexKind::Oci.media_type(), "manifests": manifests,
    }))
    .unwrap()
}

#[test]
fn an_index_of_thousands_of_hostile_platforms_gives_a_short_inert_error() {
    let r = RegEnv::new("reg-hostile", RegistryAuth::None);
    let arm = r.push("hostile", "arm");
    let name = repo_name("hostile");
    let head = r.reg.head_manifest(&name, &arm.digest);
    let entry = serde_json::json!({
        "mediaType": head.header("content-type").unwrap(),
        "size": head.content_length(),
        "digest": arm.digest,
    });
    let put = r.reg.put_manifest(
        &name,
        "latest",
        IndexKind::Oci.media_type(),
        hostile_index(entry, 5000),
    );
    assert_eq!(put.status, 201, "{put:?}");
    r.config("[runtimes.hostile]\n");
    for args in [&["plan", "hostile"][..], &["ensure", "hostile"]] {
        let run = r.planner(args);
        assert_eq!(run.code, 1, "{args:?}: {}", run.all());
        let all = run.all();
        assert!(
            all.contains("has no image for platform linux/amd64") && all.contains(" and 4992 more"),
            "{args:?}: {all}"
        );
        assert!(all.len() < 8 * 1024, "{args:?}: {} bytes\n{all}", all.len());
        let raw: Vec<char> = all
            .chars()
            .filter(|&c| c.is_control() && c != '\n')
            .collect();
        assert!(raw.is_empty(), "{args:?}: raw {raw:?} in {all:?}");
        assert!(all.contains(r"arm\u{1b}[2J\u{1b}]0;pwned\u{7}"), "{all}");
    }
}

#[test]
fn rate_limited_resolve_waits_for_retry_after_and_says_so() {
    let mut r = RegEnv::new("reg-429", RegistryAuth::None);
    let pushed = r.push("alpha", "v1");
    let proxy = RateLimitProxy::start(&r.reg.host(), 1);
    r.host = proxy.host();
    r.config("[runtimes.alpha]\n");
    let run = r.planner(&["ensure", "alpha"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(proxy.limited() >= 1);
    assert!(run.all().contains("rate-limited"), "{}", run.all());
    let pinned = r.pinned("alpha", &pushed.digest);
    assert_eq!(image_id(&pinned).as_deref(), Some(pushed.image_id.as_str()));
}

#[test]
fn one_config_mixes_git_and_registry_runtimes() {
    let r = RegEnv::new("reg-mixed", RegistryAuth::None);
    let pushed = r.push("alpha", "v1");
    let sha = r.env.template("tpl");
    r.config(&format!(
        "[runtimes.alpha]\n[runtimes.beta]\nsource = \"git\"\nrepo = \"{}\"\n",
        r.env.git.url("tpl")
    ));
    let run = r.planner(&["ensure", "--all"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        image_id(&r.env.latest("alpha")).as_deref(),
        Some(pushed.image_id.as_str())
    );
    assert!(
        image_id(&r.env.image("beta", &sha)).is_some(),
        "{}",
        run.all()
    );
    let status = r.planner(&["status", "--json"]);
    assert_eq!(status.code, 0, "{}", status.all());
    let doc: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let rows = doc["runtimes"].as_array().unwrap();
    assert_eq!(rows[0]["source"], "registry");
    assert_eq!(rows[0]["commit"], pushed.digest.as_str());
    assert_eq!(rows[1]["source"], "git");
    assert_eq!(rows[1]["commit"], sha.as_str());
}

#[test]
fn planner_registry_switches_the_shipped_style_config_to_registry_mode() {
    let mut r = RegEnv::new("reg-env", RegistryAuth::None);
    let pushed = r.push("alpha", "v1");
    // A git config (source unset): PLANNER_REGISTRY puts it in registry mode.
    let text = format!(
        "[defaults]\nimage_prefix = \"{}\"\nrepo_prefix = \"https://git.invalid/x-\"\n[runtimes.alpha]\n",
        r.env.prefix
    );
    std::fs::write(r.env.dir.path().join("runtimes.toml"), text).unwrap();
    r.vars
        .push(("PLANNER_REGISTRY".into(), r.host.clone().into()));
    let run = r.planner(&["ensure", "alpha"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        image_id(&r.env.latest("alpha")).as_deref(),
        Some(pushed.image_id.as_str())
    );
    // Empty is unset: back to git mode, which fails on the unreachable git host.
    r.vars.retain(|(k, _)| k != "PLANNER_REGISTRY");
    r.vars.push(("PLANNER_REGISTRY".into(), "".into()));
    let git = r.planner(&["plan", "alpha"]);
    assert!(git.all().contains("resolve-head"), "{}", git.all());
}

#[test]
fn offline_plan_uses_the_recorded_digest_and_needs_no_registry() {
    let mut r = RegEnv::new("reg-offline", RegistryAuth::None);
    let pushed = r.push("alpha", "v1");
    r.config("[runtimes.alpha]\n");
    assert_eq!(r.planner(&["ensure", "alpha"]).code, 0);
    r.reg.stop();
    let plan = r.planner(&["plan", "alpha", "--offline"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let short = &pushed.digest["sha256:".len()..][..12];
    assert!(
        plan.stdout.contains("offline: last recorded") && plan.stdout.contains(short),
        "{}",
        plan.stdout
    );
    let online = r.planner(&["plan", "alpha"]);
    assert_eq!(online.code, 1, "the registry is down: {}", online.all());
}

#[test]
fn watch_picks_up_a_new_push_within_an_interval_and_runs_the_hook_once() {
    use support::watcher::Watcher;
    let r = RegEnv::new("reg-watch", RegistryAuth::None);
    let v1 = r.push("alpha", "v1");
    r.config("[runtimes.alpha]\n");
    let log = r.env.dir.path().join("hooks.log");
    let hook = format!(
        "echo \"$PLANNER_RUNTIME $PLANNER_IMAGE $PLANNER_OLD_ID $PLANNER_NEW_ID\" >> '{}'",
        log.display()
    );
    let args = [
        "alpha",
        "--interval",
        "1s",
        "--jitter",
        "0s",
        "--on-change",
        &hook,
    ];
    let config = r.docker_config.path().to_owned();
    let mut w = Watcher::spawn_with(&r.env, &args, |cmd| {
        cmd.env("DOCKER_CONFIG", &config);
    });
    w.tick_finished(1);
    assert_eq!(
        image_id(&r.env.latest("alpha")).as_deref(),
        Some(v1.image_id.as_str()),
        "{}",
        w.dump()
    );
    let v2 = r.push("alpha", "v2");
    let done = w.wait_event("hook_finished", Some("alpha"));
    w.tick_finished(done["tick"].as_u64().unwrap() + 2);
    w.signal("TERM");
    assert_eq!(
        w.exit_code_within(std::time::Duration::from_secs(30)),
        Some(0)
    );
    let runs = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        runs,
        format!(
            "alpha {} {} {}\n",
            r.env.latest("alpha"),
            v1.image_id,
            v2.image_id
        ),
        "{}",
        w.dump()
    );
}

/// The provisioner's contract for a registry runtime: the summary and `status --json` carry
/// the engine's image ID, a pinned reference and the pulled digest (`repo@sha256:…`).
#[test]
fn a_registry_runtime_summary_and_status_carry_image_id_pinned_and_digest() {
    let r = RegEnv::new("reg-contract", RegistryAuth::None);
    let pushed = r.push("alpha", "v1");
    r.config("[runtimes.alpha]\n");
    let want_digest = format!("{}/{}@{}", r.host, repo_name("alpha"), pushed.digest);
    for args in [
        &["ensure", "alpha", "--json"][..],
        &["ensure", "alpha", "--json"],
    ] {
        let run = r.planner(args);
        assert_eq!(run.code, 0, "{}", run.all());
        let last: serde_json::Value =
            serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
        let row = &last["runtimes"][0];
        assert_eq!(row["image_id"], pushed.image_id.as_str(), "{last}");
        assert_eq!(row["pinned"], pushed.image_id.as_str(), "{last}");
        assert_eq!(row["digest"], want_digest.as_str(), "{last}");
        assert_eq!(row["commit"], pushed.digest.as_str(), "{last}");
    }
    let status = r.planner(&["status", "--json"]);
    assert_eq!(status.code, 0, "{}", status.all());
    let doc: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let row = &doc["runtimes"][0];
    assert_eq!(row["image_id"], pushed.image_id.as_str(), "{doc}");
    assert_eq!(row["pinned"], pushed.image_id.as_str(), "{doc}");
    assert_eq!(row["digest"], want_digest.as_str(), "{doc}");
}
