//! Remote engines, end to end: a second private dockerd on 127.0.0.1 with `--tlsverify` and
//! certificates made by the test (tests/support/tls_engine.rs), a plain-HTTP relay to it,
//! Docker contexts, `--engine`, and an engine over ssh (tests/support/sshd.rs).

mod support;

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
