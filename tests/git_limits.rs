//! End to end: every git subprocess is bounded in time (`[git] timeout`, `low_speed_limit`/
//! `low_speed_time`, `connect_timeout`) and never outlives planner, against hosts that stall:
//! a smart-HTTP host that drips the pack one byte a second, and an ssh port that never speaks.
//! Run through scripts/test.sh (real Docker engine, real git server on 127.0.0.1).

use planner_test_support as support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::harness::{Env, Run};
use support::slow_git::{DripProxy, SilentListener, git_processes_gone_within, git_processes_in};

/// Writes runtimes.toml with one runtime `name` at `repo` and the given `[git]` keys.
fn config(env: &Env, name: &str, repo: &str, git_keys: &str) {
    let text = format!(
        "[defaults]\nimage_prefix = \"{}\"\nplatform = \"linux/amd64\"\nbuilder = \"classic\"\n\n[git]\ntoken_env = \"PLANNER_GIT_TOKEN\"\nallow_insecure_http = true\n{git_keys}\n\n[runtimes.{name}]\nrepo = \"{repo}\"\n",
        env.prefix
    );
    std::fs::write(env.dir.path().join("runtimes.toml"), text).unwrap();
}

/// A template repo served through a drip proxy; returns the proxy and the repo URL.
fn dripping_repo(env: &Env) -> (DripProxy, String) {
    proxied_repo(env, DripProxy::start)
}

fn proxied_repo(env: &Env, proxy: fn(std::net::SocketAddr) -> DripProxy) -> (DripProxy, String) {
    env.template("tpl");
    let upstream = env
        .git
        .base_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let proxy = proxy(upstream);
    let url = format!("{}tpl", proxy.base_url());
    (proxy, url)
}

fn temp_dirs(cache: &Path) -> Vec<String> {
    std::fs::read_dir(cache.join("tmp"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn timed(env: &Env, args: &[&str]) -> (Run, Duration) {
    let start = Instant::now();
    let run = env.planner(args);
    (run, start.elapsed())
}

#[test]
fn a_dripped_pack_is_aborted_by_the_low_speed_limit() {
    let env = Env::new("drip-slow");
    let (proxy, url) = dripping_repo(&env);
    config(
        &env,
        "d",
        &url,
        "low_speed_limit = 1000\nlow_speed_time = \"2s\"",
    );
    let (run, took) = timed(&env, &["ensure", "d"]);
    assert!(proxy.drips() > 0, "the fetch went through the drip proxy");
    assert_ne!(run.code, 0, "{}", run.all());
    assert!(
        took < Duration::from_secs(60),
        "took {took:?}\n{}",
        run.all()
    );
    assert!(run.stderr.contains(&url), "names the URL\n{}", run.all());
    assert!(
        run.stderr.contains("below 1000 bytes/s for 2s")
            && run.stderr.contains("[git] low_speed_limit"),
        "names the limit\n{}",
        run.all()
    );
    assert_eq!(temp_dirs(env.cache_path()), Vec::<String>::new());
    let left = git_processes_gone_within(env.cache_path(), Duration::from_secs(2));
    assert!(left.is_empty(), "git processes left: {left:?}");
}

#[test]
fn a_dripped_pack_is_stopped_by_the_total_timeout() {
    let env = Env::new("drip-total");
    let (proxy, url) = dripping_repo(&env);
    config(&env, "d", &url, "low_speed_limit = 0\ntimeout = \"3s\"");
    let (run, took) = timed(&env, &["ensure", "d"]);
    assert!(proxy.drips() > 0, "the fetch went through the drip proxy");
    assert_ne!(run.code, 0, "{}", run.all());
    assert!(
        took < Duration::from_secs(60),
        "took {took:?}\n{}",
        run.all()
    );
    assert!(
        run.stderr.contains(&url)
            && run
                .stderr
                .contains("did not finish within 3s ([git] timeout)")
            && run.stderr.contains("raise [git] timeout"),
        "names the URL, the limit and what to do\n{}",
        run.all()
    );
    assert_eq!(temp_dirs(env.cache_path()), Vec::<String>::new());
    // The whole process group was killed, git-remote-http included, not only `git fetch`.
    let left = git_processes_in(env.cache_path());
    assert!(left.is_empty(), "git processes left: {left:?}");
}

#[test]
fn an_ssh_host_that_never_sends_a_banner_fails_within_connect_timeout() {
    let env = Env::new("ssh-silent");
    let silent = SilentListener::start();
    let url = format!("ssh://git@127.0.0.1:{}/org/tpl.git", silent.port());
    config(&env, "s", &url, "connect_timeout = \"2s\"");
    let (run, took) = timed(&env, &["plan", "s"]);
    assert_eq!(
        run.code,
        1,
        "a failed resolve fails the plan\n{}",
        run.all()
    );
    assert!(
        took < Duration::from_secs(30),
        "took {took:?}\n{}",
        run.all()
    );
    let shown = format!("ssh://127.0.0.1:{}/org/tpl.git", silent.port());
    let all = run.all();
    assert!(
        all.contains("resolve-head       failed")
            && all.contains(&shown)
            && all.contains("within 2s ([git] connect_timeout)")
            && !all.contains("carries credentials"),
        "names the URL and the limit\n{}",
        run.all()
    );
}

/// Starts `ensure` on a repo whose pack never comes (no byte wakes a git helper up, no limit
/// fires) and returns once the clone is in progress.
fn clone_in_progress(env: &Env) -> (DripProxy, Child) {
    let (proxy, url) = proxied_repo(env, DripProxy::stalling);
    config(env, "d", &url, "low_speed_limit = 0");
    let child = env
        .command(&["ensure", "d"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    proxy.wait_for_drip();
    std::thread::sleep(Duration::from_millis(500));
    let busy = git_processes_in(env.cache_path());
    assert!(!busy.is_empty(), "a git fetch runs in the cache dir");
    (proxy, child)
}

fn signal(child: &Child, sig: &str) {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args([sig, &pid]).status().unwrap();
    assert!(sent.success());
}

#[test]
fn kill_9_during_a_clone_leaves_no_git_process() {
    let env = Env::new("drip-kill9");
    let (_proxy, mut child) = clone_in_progress(&env);
    signal(&child, "-KILL");
    let _ = child.wait();

    let left = git_processes_gone_within(env.cache_path(), Duration::from_secs(2));
    assert!(left.is_empty(), "git processes outlived planner: {left:?}");
}

#[test]
fn sigterm_during_a_clone_exits_143_and_leaves_nothing() {
    let env = Env::new("drip-term");
    let (_proxy, mut child) = clone_in_progress(&env);
    let sent = Instant::now();
    signal(&child, "-TERM");
    let status = child.wait().unwrap();
    assert!(sent.elapsed() < Duration::from_secs(10), "exits promptly");
    let left = git_processes_gone_within(env.cache_path(), Duration::from_secs(2));
    assert!(left.is_empty(), "git processes outlived planner: {left:?}");
    assert_eq!(temp_dirs(env.cache_path()), Vec::<String>::new());
    assert_eq!(status.code(), Some(143), "{status:?}");
}

#[test]
fn an_ssh_url_with_a_user_resolves_clones_and_builds() {
    let env = Env::new("ssh-ok");
    let sshd = support::sshd::Sshd::start();
    let sha = env.template("tpl");
    let bare = env.git.root().join("tpl.git");
    let url = format!(
        "ssh://{}@127.0.0.1:{}{}",
        support::sshd::Sshd::user(),
        sshd.port(),
        bare.display()
    );
    config(&env, "s", &url, "connect_timeout = \"10s\"");
    // The user's own ssh command (key, known hosts): planner appends its options to it.
    let run = |args: &[&str]| {
        Run::from_output(
            env.command(args)
                .env("GIT_SSH_COMMAND", sshd.ssh_command())
                .output()
                .unwrap(),
        )
    };
    let plan = run(&["plan", "s"]);
    assert!(
        plan.code == 0
            && plan.all().contains(&sha[..12])
            && !plan.all().contains("resolve-head       failed"),
        "{}",
        plan.all()
    );
    let ensure = run(&["ensure", "s"]);
    assert_eq!(ensure.code, 0, "{}", ensure.all());
    let pinned = env.image("s", &sha);
    assert_eq!(
        support::harness::label(&pinned, "org.opencontainers.image.revision"),
        sha
    );
}
