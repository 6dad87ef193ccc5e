//! End to end: planner's git is safe against hostile hosts and caches and deaf to the
//! machine's git config: no token to another origin, nothing run from a cached checkout,
//! no credential in traces, and the bytes built are the commit's bytes. Real `planner`
//! binary, real Docker engine, real git smart-HTTP servers on 127.0.0.1; run through
//! scripts/test.sh.

use planner_test_support as support;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use support::git_server::{Forced, GitServer};
use support::harness::{Env, Run, TOKEN, checkout_dir, docker, file_in_image, tree};
use support::logging_proxy::LoggingProxy;

const HELLO: &[u8] = b"hello from tpl\n";

fn basic(token: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("oauth2:{token}"))
}

/// planner with its own cache dir and HOME, no proxy variables, and no git variables.
fn planner_with(env: &Env, cache: &Path, home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_planner"));
    cmd.arg("--config")
        .arg(env.dir.path().join("runtimes.toml"))
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .env_remove("PLANNER_CONFIG")
        .env_remove("PLANNER_CACHE_DIR")
        .env_remove("PLANNER_REPO_PREFIX")
        .env("PLANNER_GIT_TOKEN", TOKEN)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .current_dir(env.dir.path());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().to_string();
        if name.starts_with("GIT_") || name.to_ascii_lowercase().ends_with("_proxy") {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn home_with_gitconfig(text: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join(".gitconfig"), text).unwrap();
    home
}

#[test]
fn a_clone_redirected_to_another_origin_is_refused_and_gets_no_token() {
    let env = Env::new("redirect-clone");
    env.template("private");
    env.git.require_token("private", TOKEN);
    let other = GitServer::start();
    other.create_repo("private", &[("Dockerfile", b"FROM scratch\n")]);
    let elsewhere = LoggingProxy::start(&other.base_url());
    let target = elsewhere.base_url().trim_end_matches('/').to_owned();
    // ls-refs (POST, reqwest) is answered; git's `GET info/refs` is sent elsewhere.
    env.git
        .force_method("private", "GET", Some(Forced::RedirectTo(target)));
    env.config(&env.runtime("p", "private"));

    let run = env.planner(&["ensure", "p"]);
    let seen = elsewhere.requests();
    assert!(
        !seen.iter().any(|r| r.header("authorization").is_some()),
        "credentials reached another origin: {seen:?}"
    );
    assert!(seen.is_empty(), "git followed the redirect: {seen:?}");
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr
            .contains("answered the clone with a redirect (HTTP 302)")
            && run.stderr.contains("point `repo`"),
        "{}",
        run.all()
    );
}

#[test]
fn a_cross_origin_redirect_during_resolve_names_the_target() {
    let env = Env::new("redirect-resolve");
    env.template("tpl");
    let elsewhere = LoggingProxy::start(&env.git.base_url());
    let target = elsewhere
        .base_url()
        .replace("http://", "http://user:pw-in-location@")
        .trim_end_matches('/')
        .to_owned();
    for method in ["GET", "POST"] {
        let forced = Forced::RedirectTo(target.clone());
        env.git.force_method("tpl", method, Some(forced));
    }
    env.config(&env.runtime("t", "tpl"));

    let run = env.planner(&["plan", "t"]);
    let all = run.all();
    let expected = format!("redirected to another origin ({}tpl)", elsewhere.base_url());
    assert!(all.contains(&expected), "{all}");
    assert!(all.contains("point `repo`"), "{all}");
    assert!(
        !all.contains("may be down") && !all.contains("pw-in-location"),
        "{all}"
    );
    assert!(
        elsewhere.requests().is_empty(),
        "{:?}",
        elsewhere.requests()
    );
}

/// Builds `t` once, removes its images, and returns (env, commit, checkout dir).
fn built_then_pruned(test: &str) -> (Env, String, PathBuf) {
    let env = Env::new(test);
    let sha = env.template("tpl");
    env.config(&env.runtime("t", "tpl"));
    let first = env.planner(&["ensure", "t"]);
    assert_eq!(first.code, 0, "{}", first.all());
    docker(&["image", "rm", "-f", &env.image("t", &sha), &env.latest("t")]);
    let checkout = checkout_dir(env.cache_path(), &sha);
    (env, sha, checkout)
}

/// Makes the checkout's config run `touch <marker>` from fsmonitor and a filter driver.
fn arm_checkout(checkout: &Path, marker: &Path) {
    let touch = format!("touch {}", marker.display());
    let config = checkout.join(".git/config");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[core]\n\tfsmonitor = {touch}\n[filter \"x\"]\n\tclean = {touch}\n\tsmudge = {touch}\n\trequired = true\n"
    ));
    std::fs::write(&config, text).unwrap();
    std::fs::create_dir_all(checkout.join(".git/info")).unwrap();
    std::fs::write(checkout.join(".git/info/attributes"), "* filter=x\n").unwrap();
    // A changed mtime makes git status re-read (and so clean-filter) the file.
    std::fs::write(checkout.join("hello.txt"), HELLO).unwrap();
}

#[test]
fn a_cached_checkouts_config_is_never_run() {
    let (env, sha, checkout) = built_then_pruned("armed-checkout");
    let marker = env.dir.path().join("ran");
    arm_checkout(&checkout, &marker);

    let plan = env.planner(&["plan", "t"]);
    assert!(
        !marker.exists(),
        "plan ran the checkout's config\n{}",
        plan.all()
    );
    assert!(
        plan.stdout.contains("cached checkout unusable")
            && plan
                .stdout
                .contains(".git/config is not the one planner wrote"),
        "{}",
        plan.all()
    );
    let run = env.planner(&["ensure", "t"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(!marker.exists(), "ensure ran the checkout's config");
    assert_eq!(run.count("clone", "started"), 1, "re-cloned\n{}", run.all());
    assert!(env.image_id(&env.image("t", &sha)).is_some());
    assert!(!checkout.join(".git/info/attributes").exists());
}

#[test]
fn a_checkout_owned_by_another_user_is_not_trusted() {
    let (env, sha, checkout) = built_then_pruned("foreign-checkout");
    let marker = env.dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    let config = checkout.join(".git/config");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}[core]\n\tfsmonitor = {touch}\n")).unwrap();
    std::fs::write(checkout.join("hello.txt"), HELLO).unwrap();
    for rel in tree(&checkout).iter().map(String::as_str).chain([""]) {
        let path = checkout.join(rel);
        std::os::unix::fs::lchown(&path, Some(4242), Some(4242)).unwrap();
    }

    let plan = env.planner(&["plan", "t"]);
    assert!(!marker.exists(), "plan ran a foreign checkout's config");
    assert!(
        plan.stdout
            .contains("is owned by uid 4242, not by this user"),
        "{}",
        plan.all()
    );
    let run = env.planner(&["ensure", "t"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(!marker.exists());
    assert_eq!(run.count("clone", "started"), 1, "{}", run.all());
    assert!(env.image_id(&env.image("t", &sha)).is_some());
}

#[test]
fn git_traces_in_the_environment_never_show_the_credential() {
    let env = Env::new("traced");
    env.template("private");
    env.git.require_token("private", TOKEN);
    // Resolving (POST ls-refs) works; the clone's `GET info/refs` fails.
    env.git
        .force_method("private", "GET", Some(Forced::Status(500)));
    env.config(&env.runtime("p", "private"));

    let out = env
        .command(&["ensure", "p", "-v"])
        .env("GIT_CURL_VERBOSE", "1")
        .env("GIT_TRACE", "1")
        .env("GIT_TRACE_CURL", "1")
        .env("GIT_TRACE_PACKET", "1")
        .env("GIT_TRACE_REDACT", "0")
        .output()
        .unwrap();
    let run = Run::from_output(out);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("HTTP 500") || run.stderr.contains("500"),
        "{}",
        run.all()
    );
    let secrets = [TOKEN.to_owned(), basic(TOKEN)];
    for secret in &secrets {
        assert!(
            !run.all().contains(secret.as_str()),
            "{secret} leaked:\n{}",
            run.all()
        );
    }
    for file in tree(env.cache_path()) {
        let path = env.cache_path().join(&file);
        if path.is_file() && !file.contains("/objects/") {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            assert!(
                !secrets.iter().any(|s| text.contains(s.as_str())),
                "secret in {file}"
            );
        }
    }
}

#[test]
fn user_gitconfig_cannot_change_the_bytes_but_its_proxy_is_used() {
    let env = Env::new("autocrlf");
    let sha = env.template("tpl");
    env.config(&env.runtime("t", "tpl"));
    let proxy = LoggingProxy::start(&env.git.base_url());
    let home = home_with_gitconfig(&format!(
        "[core]\n\tautocrlf = true\n\teol = crlf\n[http]\n\tproxy = {}\n",
        proxy.base_url()
    ));

    let out = planner_with(&env, env.cache_path(), home.path(), &["ensure", "t"])
        .output()
        .unwrap();
    let run = Run::from_output(out);
    assert_eq!(run.code, 0, "{}", run.all());
    let checkout = checkout_dir(env.cache_path(), &sha);
    assert_eq!(std::fs::read(checkout.join("hello.txt")).unwrap(), HELLO);
    assert_eq!(
        file_in_image(&env.image("t", &sha), "/src/hello.txt"),
        HELLO
    );
    let through_proxy = proxy.requests();
    assert!(
        through_proxy
            .iter()
            .any(|r| r.target.starts_with("http://")),
        "the user's http.proxy was not used: {through_proxy:?}"
    );
}

#[test]
fn two_processes_with_different_git_configs_build_one_key_identically() {
    let env = Env::new("two-configs");
    let sha = env.template("tpl");
    env.config(&env.runtime("t", "tpl"));
    let crlf_home = home_with_gitconfig("[core]\n\tautocrlf = true\n\teol = crlf\n");
    let plain_home = home_with_gitconfig("");
    let caches = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let homes = [crlf_home.path(), plain_home.path()];
    let children: Vec<_> = caches
        .iter()
        .zip(homes)
        .map(|(cache, home)| {
            planner_with(&env, cache.path(), home, &["ensure", "t"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let run = Run::from_output(child.wait_with_output().unwrap());
        assert_eq!(run.code, 0, "{}", run.all());
    }
    let keys: Vec<Vec<String>> = caches
        .iter()
        .map(|c| tree(&c.path().join("records")))
        .collect();
    assert_eq!(keys[0], keys[1], "one set of build keys");
    for cache in &caches {
        let checkout = checkout_dir(cache.path(), &sha);
        assert_eq!(std::fs::read(checkout.join("hello.txt")).unwrap(), HELLO);
    }
    assert_eq!(
        file_in_image(&env.image("t", &sha), "/src/hello.txt"),
        HELLO
    );
}

#[test]
fn users_git_config_count_survives_but_cannot_beat_the_pins() {
    let env = Env::new("config-count");
    let sha = env.template("private");
    env.git.require_token("private", TOKEN);
    env.config(&env.runtime("p", "private"));
    let proxy = LoggingProxy::start(&env.git.base_url());
    let home = home_with_gitconfig("");

    let out = planner_with(&env, env.cache_path(), home.path(), &["ensure", "p"])
        .env("GIT_CONFIG_COUNT", "2")
        .env("GIT_CONFIG_KEY_0", "http.proxy")
        .env("GIT_CONFIG_VALUE_0", proxy.base_url())
        .env("GIT_CONFIG_KEY_1", "core.autocrlf")
        .env("GIT_CONFIG_VALUE_1", "true")
        .output()
        .unwrap();
    let run = Run::from_output(out);
    assert_eq!(run.code, 0, "{}", run.all());
    let seen = proxy.requests();
    assert!(
        seen.iter().any(|r| r.target.starts_with("http://")),
        "the user's GIT_CONFIG_COUNT entry was dropped: {seen:?}"
    );
    let checkout = checkout_dir(env.cache_path(), &sha);
    let hello = std::fs::read(checkout.join("hello.txt")).unwrap();
    assert_eq!(hello, b"hello from private\n");
}
