//! End to end: the `smoke` step (issue 20 §2) with the real `planner` binary, the real
//! Docker engine and the test git server. A passing smoke test is recorded and never run
//! again for the same image (counted in the engine's own events); a failing one leaves
//! `:latest` where it was, exits 1 and names the runtime, the command, the exit code and the
//! last lines of output (inert); a hang ends at `smoke_timeout`; a rebuild smokes again;
//! SIGTERM kills and removes the container; a bad `smoke` is refused with file:line:column.
//! No container is ever left behind. Run through scripts/test.sh.

// A test shows what it checks in its output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use planner_test_support as support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::harness::{BASE_IMAGE, Env, Run, docker};

const LABEL: &str = "dev.planner.smoke";

/// A template whose image holds `/hello` (its content makes each commit's image its own).
fn template(env: &Env, repo: &str, hello: &str) -> String {
    let files = files(env, repo, hello);
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    env.git.create_repo(repo, &refs)
}

fn files(env: &Env, repo: &str, hello: &str) -> Vec<(&'static str, Vec<u8>)> {
    let dockerfile = format!("FROM {BASE_IMAGE}\nCOPY . /src\nRUN cp /src/hello.txt /hello\n");
    let id = format!("{}{repo} {} {hello}\n", env.prefix, std::process::id());
    vec![
        ("Dockerfile", dockerfile.into_bytes()),
        ("hello.txt", format!("{hello}\n").into_bytes()),
        ("test-id.txt", id.into_bytes()),
    ]
}

fn commit(env: &Env, repo: &str, hello: &str) -> String {
    let files = files(env, repo, hello);
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    env.git.commit(repo, "main", &refs)
}

/// `[runtimes.NAME]` with `extra` keys (`smoke = [...]`).
fn runtime(env: &Env, name: &str, repo: &str, extra: &str) -> String {
    format!("{}{extra}\n", env.runtime(name, repo))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// How many smoke containers the engine created for `image` between `since` and now: its
/// own event log, not planner's word.
fn smokes_of(image: &str, since: u64) -> usize {
    let out = docker(&[
        "events",
        "--since",
        &since.saturating_sub(1).to_string(),
        "--until",
        &(now() + 1).to_string(),
        "--filter",
        "type=container",
        "--filter",
        "event=create",
        "--filter",
        &format!("label={LABEL}"),
        "--format",
        "{{.Actor.Attributes.image}}",
    ]);
    out.lines().filter(|l| *l == image).count()
}

/// Smoke containers of `image` that exist (running or not).
fn containers_of(image: &str) -> Vec<String> {
    let out = docker(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("label={LABEL}"),
        "--format",
        "{{.ID}} {{.Image}}",
    ]);
    out.lines()
        .filter(|l| l.ends_with(image))
        .map(str::to_owned)
        .collect()
}

fn ok(run: &Run) {
    assert_eq!(run.code, 0, "{}", run.all());
}

#[test]
fn a_passing_smoke_test_is_recorded_runs_once_per_image_and_a_rebuild_smokes_again() {
    let env = Env::new("smokepass");
    let sha = template(&env, "tpl", "one");
    env.config(&runtime(
        &env,
        "a",
        "tpl",
        "smoke = [\"sh\", \"-c\", \"grep -q one /hello\"]",
    ));
    let plan = env.planner(&["plan", "a"]);
    ok(&plan);
    assert!(plan.stdout.contains("smoke"), "{}", plan.all());

    let t0 = now();
    let cold = env.planner(&["ensure", "a"]);
    ok(&cold);
    assert_eq!(cold.count("smoke", "started"), 1, "{}", cold.all());
    let image = env.image_id(&env.image("a", &sha)).unwrap();
    assert_eq!(env.image_id(&env.latest("a")), Some(image.clone()));
    assert_eq!(
        smokes_of(&image, t0),
        1,
        "one container, in the engine's log"
    );
    assert!(
        containers_of(&image).is_empty(),
        "{:?}",
        containers_of(&image)
    );

    // Warm: the pass is recorded for this image and command; nothing runs.
    let warm = env.planner(&["ensure", "a"]);
    ok(&warm);
    assert!(!warm.stderr.contains(" started "), "{}", warm.all());
    // :latest moved away and back: the recorded pass lets it move without a second test.
    docker(&["tag", BASE_IMAGE, &env.latest("a")]);
    let again = env.planner(&["ensure", "a"]);
    ok(&again);
    assert_eq!(again.count("tag-latest", "started"), 1, "{}", again.all());
    assert_eq!(again.count("smoke", "started"), 0, "{}", again.all());
    assert!(
        again.stderr.contains("passed in"),
        "the reason says the pass is recorded: {}",
        again.all()
    );
    assert_eq!(smokes_of(&image, t0), 1, "never twice for one image");

    // A new commit is a new image: it is smoke-tested before :latest moves to it.
    let sha2 = commit(&env, "tpl", "one two");
    let rebuilt = env.planner(&["ensure", "a"]);
    ok(&rebuilt);
    let image2 = env.image_id(&env.image("a", &sha2)).unwrap();
    assert_ne!(image2, image);
    assert_eq!(smokes_of(&image2, t0), 1);
    assert_eq!(env.image_id(&env.latest("a")), Some(image2.clone()));
    assert!(containers_of(&image2).is_empty());
}

#[test]
fn a_failing_smoke_test_leaves_latest_where_it_was_and_says_why() {
    let env = Env::new("smokefail");
    template(&env, "tpl", "one");
    env.config(&runtime(&env, "a", "tpl", "smoke = [\"true\"]"));
    ok(&env.planner(&["ensure", "a"]));
    let before = env.image_id(&env.latest("a")).unwrap();

    let sha2 = commit(&env, "tpl", "two");
    let script = r#"echo first line; printf 'evil \033[2J screen\n' >&2; exit 3"#;
    env.config(&runtime(
        &env,
        "a",
        "tpl",
        &format!("smoke = [\"sh\", \"-c\", {script:?}]"),
    ));
    let t0 = now();
    let failed = env.planner(&["ensure", "a"]);
    assert_eq!(failed.code, 1, "{}", failed.all());
    let image2 = env.image_id(&env.image("a", &sha2)).expect("the build ran");
    assert_eq!(
        env.image_id(&env.latest("a")),
        Some(before),
        ":latest unmoved"
    );
    assert_eq!(failed.count("tag-latest", "started"), 0, "{}", failed.all());
    for needle in [
        "smoke test of runtime a failed",
        "[\"sh\", \"-c\", \"echo first line;",
        "exited with code 3",
        ":latest stays where it was",
        "    | first line",
        "evil \\u{1b}[2J screen",
    ] {
        assert!(
            failed.stderr.contains(needle),
            "{needle:?} in {}",
            failed.all()
        );
    }
    assert!(!failed.stderr.contains('\u{1b}'), "printed inert");
    assert!(
        containers_of(&image2).is_empty(),
        "{:?}",
        containers_of(&image2)
    );

    // Nothing recorded: the next run tests again (and fails again).
    let again = env.planner(&["ensure", "a"]);
    assert_eq!(again.code, 1, "{}", again.all());
    assert_eq!(smokes_of(&image2, t0), 2);
}

#[test]
fn a_smoke_command_missing_from_the_image_is_a_failed_smoke_test_naming_it() {
    let env = Env::new("smokemissing");
    let sha = template(&env, "tpl", "one");
    env.config(&runtime(
        &env,
        "a",
        "tpl",
        "smoke = [\"no-such-program\", \"--version\"]",
    ));
    let failed = env.planner(&["ensure", "a"]);
    assert_eq!(failed.code, 1, "{}", failed.all());
    assert!(
        env.image_id(&env.latest("a")).is_none(),
        ":latest never set"
    );
    for needle in [
        "smoke test of runtime a failed",
        "[\"no-such-program\", \"--version\"]",
        "could not start",
        "help: the command must exist in the image",
    ] {
        assert!(
            failed.stderr.contains(needle),
            "{needle:?} in {}",
            failed.all()
        );
    }
    let image = env.image_id(&env.image("a", &sha)).expect("the build ran");
    assert!(
        containers_of(&image).is_empty(),
        "{:?}",
        containers_of(&image)
    );
}

#[test]
fn a_hanging_smoke_test_ends_at_its_timeout_and_leaves_no_container() {
    let env = Env::new("smokehang");
    let sha = template(&env, "tpl", "one");
    env.config(&runtime(
        &env,
        "a",
        "tpl",
        "smoke = [\"sleep\", \"600\"]\nsmoke_timeout = \"2s\"",
    ));
    let started = Instant::now();
    let hung = env.planner(&["ensure", "a"]);
    assert_eq!(hung.code, 1, "{}", hung.all());
    assert!(started.elapsed() < Duration::from_secs(120), "bounded");
    for needle in [
        "smoke test of runtime a failed: [\"sleep\", \"600\"] was still running after 2s (smoke_timeout); its container was killed and removed",
        "help: raise smoke_timeout",
    ] {
        assert!(hung.stderr.contains(needle), "{needle:?} in {}", hung.all());
    }
    let image = env.image_id(&env.image("a", &sha)).unwrap();
    assert_eq!(env.image_id(&env.latest("a")), None, "no :latest");
    assert!(
        containers_of(&image).is_empty(),
        "{:?}",
        containers_of(&image)
    );
}

#[test]
fn sigterm_during_a_smoke_test_kills_and_removes_its_container() {
    let env = Env::new("smoketerm");
    let sha = template(&env, "tpl", "one");
    env.config(&runtime(&env, "a", "tpl", "smoke = [\"sleep\", \"600\"]"));
    let mut child = env
        .command(&["ensure", "a", "--progress", "plain"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let image = loop {
        if let Some(id) = env.image_id(&env.image("a", &sha))
            && !containers_of(&id).is_empty()
        {
            break id;
        }
        assert!(child.try_wait().unwrap().is_none(), "planner ended early");
        std::thread::sleep(Duration::from_millis(100));
    };
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        assert!(Instant::now() < deadline, "planner did not end");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(143));
    // Removed before planner exited: no waiting here.
    assert!(
        containers_of(&image).is_empty(),
        "{:?}",
        containers_of(&image)
    );
    assert_eq!(env.image_id(&env.latest("a")), None);
}

#[test]
fn a_bad_smoke_is_refused_with_its_place_in_the_file() {
    let env = Env::new("smokeconf");
    template(&env, "tpl", "one");
    let path = env.config(&runtime(&env, "a", "tpl", "smoke = []"));
    let run = env.planner(&["plan", "a"]);
    assert_ne!(run.code, 0, "{}", run.all());
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text.lines().position(|l| l == "smoke = []").unwrap() + 1;
    let at = format!("runtimes.toml:{line}:9: runtime \"a\": smoke is empty");
    assert!(run.stderr.contains(&at), "{at:?} in {}", run.all());
}

#[test]
fn a_container_a_killed_planner_left_is_removed_before_the_test_runs_again() {
    let env = Env::new("smokeleft");
    let sha = template(&env, "tpl", "one");
    // The image first, without the smoke step.
    env.config(&runtime(&env, "a", "tpl", "plan = \"build-only\""));
    ok(&env.planner(&["ensure", "a"]));
    let image = env.image_id(&env.image("a", &sha)).unwrap();
    // What a planner killed with SIGKILL mid-test leaves: a container labelled with the key.
    let argv = vec!["true".to_owned()];
    let key = planner::steps::smoke::key(&image, &argv, "none");
    let label = format!("{LABEL}={key}");
    docker(&["create", "--label", &label, &image, "sleep", "600"]);
    let left = || docker(&["ps", "-aq", "--filter", &format!("label={label}")]);
    assert!(!left().trim().is_empty());

    env.config(&runtime(&env, "a", "tpl", "smoke = [\"true\"]"));
    let run = env.planner(&["ensure", "a"]);
    ok(&run);
    assert_eq!(run.count("smoke", "started"), 1, "{}", run.all());
    assert_eq!(left().trim(), "", "the leftover was removed");
    assert!(
        containers_of(&image).is_empty(),
        "{:?}",
        containers_of(&image)
    );
}
