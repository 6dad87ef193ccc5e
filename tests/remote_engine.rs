//! Remote engines, end to end: a second private dockerd on 127.0.0.1 with `--tlsverify` and
//! certificates made by the test (support::tls_engine), a plain-HTTP relay to it,
//! Docker contexts, `--engine`, and an engine over ssh (support::sshd).

use planner_test_support as support;

use support::harness::{Env, Run};
use support::tls_engine::{PlainRelay, TlsEngine};

/// `planner ARGS` against the TLS engine with the client certificates in `certs`.
fn over_tls(env: &Env, certs: &std::path::Path, args: &[&str]) -> Run {
    let engine = TlsEngine::shared();
    let mut cmd = env.command(args);
    cmd.env("DOCKER_HOST", engine.tcp())
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", certs);
    Run::from_output(cmd.output().unwrap())
}

fn one_runtime(env: &Env, name: &str) {
    env.template(name);
    env.config(&env.runtime(name, name));
}

#[test]
fn tls_engine_with_the_right_client_certificate_works() {
    let engine = TlsEngine::shared();
    let env = Env::new("tls-good");
    one_runtime(&env, "alpha");
    let status = over_tls(&env, &engine.good_certs(), &["status"]);
    assert_eq!(status.code, 0, "{}", status.all());
    let run = over_tls(&env, &engine.good_certs(), &["ensure", "alpha"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let latest = env.latest("alpha");
    let there = engine.docker(&["image", "inspect", &latest]);
    assert!(
        there.status.success(),
        "built in the TLS engine: {}",
        run.all()
    );
    assert!(env.image_id(&latest).is_none(), "not in the suite's engine");
}

fn assert_clear_failure(run: &Run, wants: &[&str]) {
    let engine = TlsEngine::shared();
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains(&engine.tcp()),
        "names the engine: {}",
        run.all()
    );
    assert!(run.stderr.contains("help: "), "says the fix: {}", run.all());
    for want in wants {
        assert!(run.stderr.contains(want), "{want:?}: {}", run.all());
    }
    assert!(
        !run.stderr.contains("BEGIN"),
        "no key material: {}",
        run.all()
    );
}

#[test]
fn tls_engine_without_a_client_certificate_fails_clearly() {
    let engine = TlsEngine::shared();
    let env = Env::new("tls-none");
    one_runtime(&env, "alpha");
    for cmd in [&["status"][..], &["ensure", "alpha"]] {
        let run = over_tls(&env, &engine.no_client_certs(), cmd);
        assert_clear_failure(&run, &["cert.pem", "cannot be read", "DOCKER_CERT_PATH"]);
    }
}

#[test]
fn tls_engine_refuses_a_client_certificate_of_another_ca() {
    let engine = TlsEngine::shared();
    let env = Env::new("tls-wrong");
    one_runtime(&env, "alpha");
    for cmd in [&["status"][..], &["ensure", "alpha"]] {
        let run = over_tls(&env, &engine.wrong_client_certs(), cmd);
        assert_clear_failure(
            &run,
            &["refused planner's TLS client certificate", "cert.pem"],
        );
    }
}

#[test]
fn tls_engine_whose_certificate_the_ca_did_not_sign_fails_verification() {
    let engine = TlsEngine::shared();
    let env = Env::new("tls-ca");
    one_runtime(&env, "alpha");
    let run = over_tls(&env, &engine.wrong_ca_certs(), &["status"]);
    assert_clear_failure(&run, &["failed TLS verification", "ca.pem"]);
}

#[test]
fn tls_verify_against_a_plain_http_engine_never_sends_plain_text() {
    let engine = TlsEngine::shared();
    let relay = PlainRelay::start(&engine.dir.join("docker.sock"));
    let env = Env::new("tls-plain");
    one_runtime(&env, "alpha");
    for cmd in [&["status"][..], &["ensure", "alpha"]] {
        let run = Run::from_output(
            env.command(cmd)
                .env("DOCKER_HOST", relay.tcp())
                .env("DOCKER_TLS_VERIFY", "1")
                .env("DOCKER_CERT_PATH", engine.good_certs())
                .output()
                .unwrap(),
        );
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(run.stderr.contains(&relay.tcp()), "{}", run.all());
        assert!(run.stderr.contains("does not speak TLS"), "{}", run.all());
        assert!(
            run.stderr.contains("never falls back to plain HTTP"),
            "{}",
            run.all()
        );
    }
    assert!(
        !relay.firsts.lock().unwrap().is_empty(),
        "planner did connect"
    );
    assert!(!relay.saw_plain_http(), "a plain-text request went out");
    // The same relay without TLS asked for is a working plain-HTTP engine.
    let run = Run::from_output(
        env.command(&["status"])
            .env("DOCKER_HOST", relay.tcp())
            .env_remove("DOCKER_TLS_VERIFY")
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 0, "{}", run.all());
}

#[test]
fn plain_http_to_the_tls_port_says_to_turn_tls_on() {
    let engine = TlsEngine::shared();
    let env = Env::new("tls-off");
    one_runtime(&env, "alpha");
    let run = Run::from_output(
        env.command(&["status"])
            .env("DOCKER_HOST", engine.tcp())
            .env_remove("DOCKER_TLS_VERIFY")
            .output()
            .unwrap(),
    );
    assert_clear_failure(&run, &["expects TLS", "DOCKER_TLS_VERIFY=1"]);
}

#[test]
fn the_engine_flag_overrides_docker_host_for_one_run() {
    let engine = TlsEngine::shared();
    let env = Env::new("engine-flag");
    one_runtime(&env, "alpha");
    let tcp = engine.tcp();
    let mut cmd = env.command(&["--engine", &tcp, "ensure", "alpha"]);
    cmd.env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", engine.good_certs());
    let run = Run::from_output(cmd.output().unwrap());
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        engine
            .docker(&["image", "inspect", &env.latest("alpha")])
            .status
            .success()
    );
    for command in ["plan", "status", "gc", "watch"] {
        let mut args = vec!["--engine", "unix:///nonexistent/planner.sock", command];
        match command {
            "watch" => args.extend(["--once", "alpha"]),
            "plan" => args.push("alpha"),
            _ => {}
        }
        let run = env.planner(&args);
        assert_eq!(run.code, 1, "{command}: {}", run.all());
        assert!(
            run.stderr.contains("unix:///nonexistent/planner.sock"),
            "{command} uses --engine: {}",
            run.all()
        );
    }
    let run = env.planner(&["--engine", "127.0.0.1:2376", "status"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("no scheme") && run.stderr.contains("tcp://HOST:PORT"),
        "{}",
        run.all()
    );
}

/// A docker config dir with context `name` whose endpoint is `host`, with `tls` (a
/// `DOCKER_CERT_PATH`-style dir) stored as the context's TLS material.
fn context_config(name: &str, host: &str, tls: Option<&std::path::Path>) -> tempfile::TempDir {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let id: String = sha2::Sha256::digest(name.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let meta = dir.path().join("contexts/meta").join(&id);
    std::fs::create_dir_all(&meta).unwrap();
    let text = format!(
        r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
    );
    std::fs::write(meta.join("meta.json"), text).unwrap();
    if let Some(certs) = tls {
        let to = dir.path().join("contexts/tls").join(&id).join("docker");
        std::fs::create_dir_all(&to).unwrap();
        for file in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::copy(certs.join(file), to.join(file)).unwrap();
        }
    }
    dir
}

fn with_context(env: &Env, config: &tempfile::TempDir, args: &[&str]) -> std::process::Command {
    let mut cmd = env.command(args);
    cmd.env("DOCKER_CONFIG", config.path())
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH");
    cmd
}

#[test]
fn a_docker_context_is_used_and_docker_host_wins_over_it() {
    let engine = TlsEngine::shared();
    let env = Env::new("context-unix");
    one_runtime(&env, "alpha");
    let config = context_config("private", &engine.unix(), None);
    // DOCKER_CONTEXT names it.
    let mut cmd = with_context(&env, &config, &["ensure", "alpha"]);
    let run = Run::from_output(cmd.env("DOCKER_CONTEXT", "private").output().unwrap());
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        engine
            .docker(&["image", "inspect", &env.latest("alpha")])
            .status
            .success()
    );
    assert!(
        env.image_id(&env.latest("alpha")).is_none(),
        "not in the suite's engine"
    );
    // currentContext in config.json names it.
    std::fs::write(
        config.path().join("config.json"),
        r#"{"currentContext":"private"}"#,
    )
    .unwrap();
    let run = Run::from_output(
        with_context(&env, &config, &["status", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("\"latest\""), "{}", run.all());
    // DOCKER_HOST wins over both, as with the docker CLI.
    let mut cmd = with_context(&env, &config, &["status"]);
    cmd.env("DOCKER_CONTEXT", "private")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    let run = Run::from_output(cmd.output().unwrap());
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("unix:///nonexistent/docker.sock"),
        "{}",
        run.all()
    );
    // An unknown context is named, with the fix.
    let mut cmd = with_context(&env, &config, &["status"]);
    let run = Run::from_output(cmd.env("DOCKER_CONTEXT", "nosuch").output().unwrap());
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr
            .contains("Docker context \"nosuch\" (from DOCKER_CONTEXT)"),
        "{}",
        run.all()
    );
    assert!(
        run.stderr.contains("help: `docker context ls`"),
        "{}",
        run.all()
    );
}

#[test]
fn a_docker_context_with_tls_material_connects_over_tls() {
    let engine = TlsEngine::shared();
    let env = Env::new("context-tls");
    one_runtime(&env, "alpha");
    let good = context_config("remote", &engine.tcp(), Some(&engine.good_certs()));
    let mut cmd = with_context(&env, &good, &["status"]);
    let run = Run::from_output(cmd.env("DOCKER_CONTEXT", "remote").output().unwrap());
    assert_eq!(run.code, 0, "{}", run.all());
    let wrong = context_config("remote", &engine.tcp(), Some(&engine.wrong_client_certs()));
    let mut cmd = with_context(&env, &wrong, &["status"]);
    let run = Run::from_output(cmd.env("DOCKER_CONTEXT", "remote").output().unwrap());
    assert_clear_failure(&run, &["refused planner's TLS client certificate"]);
}

/// sshd that passes DOCKER_HOST on, so the remote `docker system dial-stdio` reaches the
/// test engine; the ssh command (key, known hosts) as PLANNER_ENGINE_SSH_COMMAND.
fn over_ssh(env: &Env, sshd: &support::sshd::Sshd, ssh: &str, args: &[&str]) -> Run {
    let engine = TlsEngine::shared();
    let host = format!(
        "ssh://{}@127.0.0.1:{}",
        support::sshd::Sshd::user(),
        sshd.port()
    );
    let mut cmd = env.command(&[&["--engine", &host][..], args].concat());
    cmd.env(
        "PLANNER_ENGINE_SSH_COMMAND",
        format!("{ssh} -o SetEnv=DOCKER_HOST={}", engine.unix()),
    )
    .env_remove("DOCKER_TLS_VERIFY");
    Run::from_output(cmd.output().unwrap())
}

#[test]
fn an_engine_over_ssh_works_and_a_refused_login_is_named() {
    let engine = TlsEngine::shared();
    let sshd = support::sshd::Sshd::start_with("AcceptEnv DOCKER_HOST\n");
    let env = Env::new("engine-ssh");
    one_runtime(&env, "alpha");
    let run = over_ssh(&env, &sshd, &sshd.ssh_command(), &["ensure", "alpha"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        engine
            .docker(&["image", "inspect", &env.latest("alpha")])
            .status
            .success()
    );
    let run = over_ssh(&env, &sshd, &sshd.ssh_command(), &["status"]);
    assert_eq!(run.code, 0, "{}", run.all());
    // Another key: ssh's refusal is in the error, with the fix.
    let stranger = tempfile::tempdir().unwrap();
    let key = stranger.path().join("key");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let ssh = sshd
        .ssh_command()
        .replace("client_key", "NO_SUCH_KEY")
        .replace(
            "-i ",
            &format!("-i {} -o IdentityAgent=none -i ", key.display()),
        );
    let run = over_ssh(&env, &sshd, &ssh, &["status"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("over ssh"), "{}", run.all());
    assert!(run.stderr.contains("Permission denied"), "{}", run.all());
    assert!(run.stderr.contains("help: "), "{}", run.all());
}

#[test]
fn an_engine_that_is_too_old_or_not_there_is_named_with_the_fix() {
    let env = Env::new("engine-old");
    one_runtime(&env, "alpha");
    let version = br#"{"ApiVersion":"1.30","Version":"17.06.0","MinAPIVersion":"1.12"}"#.to_vec();
    let old = support::canned_http::CannedHttp::start(200, "application/json", version);
    let url = old.url("").replacen("http://", "tcp://", 1);
    let url = url.trim_end_matches('/');
    let run = env.planner(&["--engine", url, "status"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains(&format!(
            "the Docker engine at {url} speaks API 1.30, older than the 1.41"
        )),
        "{}",
        run.all()
    );
    assert!(
        run.stderr.contains("help: upgrade the engine"),
        "{}",
        run.all()
    );
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("tcp://127.0.0.1:{closed}");
    let run = env.planner(&["--engine", &url, "ensure", "alpha"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr
            .contains(&format!("Docker engine unreachable at {url}")),
        "{}",
        run.all()
    );
    assert!(
        run.stderr.contains(&format!("--engine is {url}")),
        "{}",
        run.all()
    );
}

/// Registry mode's pull is the one engine call made without bollard: it too goes over TLS
/// with the client certificates (it went out in plain HTTP before).
#[test]
fn a_registry_pull_goes_through_the_tls_engine() {
    use support::registry::{RegistryAuth, TestRegistry};
    let engine = TlsEngine::shared();
    let env = Env::new("tls-pull");
    let reg = TestRegistry::start(RegistryAuth::None);
    let marker = format!("{}pull {}", env.prefix, std::process::id());
    let pushed = reg.push_image("workspace-template-alpha", "latest", &marker);
    let text = format!(
        "[defaults]\nimage_prefix = \"{}\"\nplatform = \"linux/amd64\"\nsource = \"registry\"\nregistry = \"{}\"\n\n[runtimes.alpha]\n",
        env.prefix,
        reg.host()
    );
    std::fs::write(env.dir.path().join("runtimes.toml"), text).unwrap();
    let docker_config = tempfile::tempdir().unwrap();
    let mut cmd = env.command(&["ensure", "alpha"]);
    cmd.env("DOCKER_HOST", engine.tcp())
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", engine.good_certs())
        .env("DOCKER_CONFIG", docker_config.path())
        .env_remove("PLANNER_REGISTRY");
    let run = Run::from_output(cmd.output().unwrap());
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.count("pull", "done"), 1, "{}", run.all());
    let out = engine.docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        &env.latest("alpha"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), pushed.image_id);
}

#[test]
fn a_buildkit_build_over_tls_gets_its_context_through_the_session() {
    let engine = TlsEngine::shared();
    let env = Env::new("tls-bk");
    let dockerfile = support::harness::dockerfile();
    let commit = env.git.create_repo(
        "kit",
        &[
            ("Dockerfile", dockerfile.as_bytes()),
            ("hello.txt", b"hello\n"),
            ("secret.txt", b"not for the image\n"),
            (".dockerignore", b"secret.txt\nDockerfile\n"),
        ],
    );
    env.config(&support::buildkit::runtime(&env, "kit", "kit", "buildkit"));
    let run = over_tls(&env, &engine.good_certs(), &["ensure", "kit"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let latest = env.latest("kit");
    let listed = engine.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &latest,
        "ls",
        "-a",
        "/src",
    ]);
    assert!(listed.status.success(), "{}", run.all());
    let mut names: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    names.sort();
    // BuildKit never has the excluded Dockerfile in the context.
    assert_eq!(
        names,
        [".", "..", ".dockerignore", "hello.txt"],
        "{}",
        run.all()
    );
    let _ = engine.docker(&["image", "rm", "-f", &latest, &env.image("kit", &commit)]);
}
