//! Base images as key inputs, end to end: the real `planner` binary, the real Docker engine,
//! the test git server and a real registry (Debian's docker-registry on 127.0.0.1). A base
//! pushed again under the same tag rebuilds exactly the runtimes built on it, naming the
//! move; the build is made from the digest the key names; a registry that is down builds on
//! the engine's copy and says so; `base_images = "local"` keys on the engine's image; a wiped
//! cache dir still decides from the labels. Run through scripts/test.sh.

use planner_test_support as support;

use support::harness::{BASE_IMAGE, Env, Run, docker, file_in_image, label};
use support::registry::{MARKER_PATH, PushedImage, RegistryAuth, TestRegistry};

const BASES_LABEL: &str = "dev.planner.bases";

/// A template repo whose Dockerfile is `dockerfile` plus a per-test file.
fn template(env: &Env, repo: &str, dockerfile: &str) -> String {
    let id = format!("{}{repo} {}\n", env.prefix, std::process::id());
    env.git.create_repo(
        repo,
        &[
            ("Dockerfile", dockerfile.as_bytes()),
            ("test-id.txt", id.as_bytes()),
        ],
    )
}

/// A new commit on `repo` (its Dockerfile unchanged): a new test-id.
fn touch(env: &Env, repo: &str, what: &str) -> String {
    let id = format!("{}{repo} {what} {}\n", env.prefix, std::process::id());
    env.git
        .commit(repo, "main", &[("test-id.txt", id.as_bytes())])
}

fn on_base(reference: &str) -> String {
    format!("FROM {reference}\nCOPY test-id.txt /id\n")
}

fn marker_in(reference: &str) -> String {
    String::from_utf8(file_in_image(reference, MARKER_PATH)).unwrap()
}

fn started(run: &Run, rt: &str, step: &str) -> Vec<String> {
    run.lines(step, "started")
        .into_iter()
        .filter(|l| l.split_whitespace().next() == Some(rt))
        .collect()
}

fn assert_nothing_ran(run: &Run) {
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        !run.stderr.contains(" started "),
        "nothing runs\n{}",
        run.all()
    );
}

/// `sha256:` and the first 12 hex digits, as reasons show a digest.
fn shown(digest: &str) -> String {
    format!("sha256:{}…", &digest[7..19])
}

/// Builds `reference` in the engine only (no registry names it): `BASE_IMAGE` plus a file
/// [`MARKER_PATH`] holding `marker`.
fn build_local_base(reference: &str, marker: &str) {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("marker"), marker).unwrap();
    let dockerfile = format!("FROM {BASE_IMAGE}\nCOPY marker {MARKER_PATH}\n");
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    let out = std::process::Command::new("docker")
        .args(["build", "-q", "-t", reference])
        .arg(ctx.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
}

fn push(reg: &TestRegistry, env: &Env, what: &str) -> PushedImage {
    let marker = format!("{}{what} {}", env.prefix, std::process::id());
    reg.push_image("base", "1", &marker)
}

#[test]
fn a_moved_base_rebuilds_exactly_the_runtimes_built_on_it_from_the_new_digest() {
    let env = Env::new("basemove");
    let reg = TestRegistry::start(RegistryAuth::None);
    let base = reg.reference("base", "1");
    let first = push(&reg, &env, "first");
    let sha_on = template(&env, "on", &on_base(&base));
    let sha_off = template(&env, "off", &on_base(BASE_IMAGE));
    env.config(&format!(
        "{}{}",
        env.runtime("on", "on"),
        env.runtime("off", "off")
    ));
    let cold = env.planner(&["ensure", "on", "off"]);
    assert_eq!(cold.code, 0, "{}", cold.all());
    let (pinned_on, pinned_off) = (env.image("on", &sha_on), env.image("off", &sha_off));
    assert!(marker_in(&pinned_on).starts_with(&env.prefix));
    assert!(
        label(&pinned_on, BASES_LABEL).contains(&first.digest),
        "the image states the digest it was keyed on"
    );
    let off_id = env.image_id(&pinned_off).unwrap();
    assert_nothing_ran(&env.planner(&["ensure", "on", "off"]));
    // Offline: the bases are keyed on what the engine holds; no registry is asked.
    reg.clear_requests();
    let offline = env.planner(&["plan", "--offline", "on", "off"]);
    assert_eq!(offline.code, 0, "{}", offline.all());
    assert!(offline.stdout.contains("0 to run"), "{}", offline.all());
    assert!(
        reg.planner_requests().is_empty(),
        "{:?}",
        reg.planner_requests()
    );
    // A wiped cache dir decides from the labels: the bases are read back and asked again.
    std::fs::remove_dir_all(env.cache_path()).unwrap();
    assert_nothing_ran(&env.planner(&["ensure", "on", "off"]));

    let first_id = env.image_id(&pinned_on).unwrap();
    let second = push(&reg, &env, "second");
    assert_ne!(first.digest, second.digest);
    // The engine's tag still names the first image: the build must not build on it.
    docker(&["tag", &first.image_id, &base]);
    let why = format!(
        "base {base} moved {} → {}",
        shown(&first.digest),
        shown(&second.digest)
    );
    let plan = env.planner(&["plan", "on", "off"]);
    assert!(plan.stdout.contains(&why), "{}", plan.all());
    let warm = env.planner(&["ensure", "on", "off"]);
    assert_eq!(warm.code, 0, "{}", warm.all());
    let rebuilt = started(&warm, "on", "build");
    assert!(
        rebuilt.len() == 1 && rebuilt[0].contains(&why),
        "{}",
        warm.all()
    );
    assert!(started(&warm, "off", "build").is_empty(), "{}", warm.all());
    assert!(
        marker_in(&pinned_on).contains("second"),
        "built from the new digest"
    );
    assert!(label(&pinned_on, BASES_LABEL).contains(&second.digest));
    assert_eq!(env.image_id(&pinned_off), Some(off_id));
    assert_eq!(
        support::harness::image_id(&first_id),
        None,
        "the superseded image is removed, not left untagged"
    );
    assert_nothing_ran(&env.planner(&["ensure", "on", "off"]));
}

#[test]
fn a_registry_that_is_down_builds_on_the_engines_copy_and_says_so() {
    let env = Env::new("basedown");
    let mut reg = TestRegistry::start(RegistryAuth::None);
    let base = reg.reference("base", "1");
    let pushed = push(&reg, &env, "down");
    template(&env, "on", &on_base(&base));
    env.config(&env.runtime("on", "on"));
    let cold = env.planner(&["ensure", "on"]);
    assert_eq!(cold.code, 0, "{}", cold.all());

    reg.stop();
    let sha = touch(&env, "on", "second");
    let run = env.planner(&["ensure", "on"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr
            .contains(&format!("could not check base {base} for updates")),
        "{}",
        run.all()
    );
    assert!(label(&env.image("on", &sha), BASES_LABEL).contains(&pushed.digest));

    // Not held by the engine either: a per-runtime error naming the base and the fix.
    docker(&[
        "image",
        "rm",
        "-f",
        &base,
        &format!("{}@{}", base.trim_end_matches(":1"), pushed.digest),
    ]);
    touch(&env, "on", "third");
    let failed = env.planner(&["ensure", "on"]);
    assert_eq!(failed.code, 1, "{}", failed.all());
    let text = failed.all();
    assert!(
        text.contains(&format!("cannot check base image {base} of runtime \"on\""))
            && text.contains("docker pull"),
        "{text}"
    );
}

#[test]
fn local_mode_keys_on_the_image_the_engine_holds_and_never_asks_a_registry() {
    let env = Env::new("baselocal");
    // A base only this engine has, under a name that looks like a registry's: "local" mode
    // must not ask 127.0.0.1:9 (nothing listens there).
    let base = "127.0.0.1:9/planner-e2e/baselocal-base:1";
    let make_base = |marker: &str| {
        build_local_base(base, marker);
        env.image_id(base).unwrap()
    };
    let _cleanup = RemoveOnDrop(base.to_owned());
    let old_id = make_base("one");
    let sha = template(&env, "loc", &on_base(base));
    env.config(&format!(
        "{}base_images = \"local\"\n",
        env.runtime("loc", "loc")
    ));
    let cold = env.planner(&["ensure", "loc"]);
    assert_eq!(cold.code, 0, "{}", cold.all());
    let pinned = env.image("loc", &sha);
    assert_eq!(marker_in(&pinned), "one");
    assert!(label(&pinned, BASES_LABEL).contains(&old_id));
    assert_nothing_ran(&env.planner(&["ensure", "loc"]));

    let new_id = make_base("two");
    let plan = env.planner(&["plan", "loc"]);
    let why = format!("base {base} moved {} → {}", shown(&old_id), shown(&new_id));
    assert!(plan.stdout.contains(&why), "{}", plan.all());
    let run = env.planner(&["ensure", "loc"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(marker_in(&pinned), "two");

    docker(&["image", "rm", "-f", base]);
    let gone = env.planner(&["plan", "loc"]);
    assert_eq!(gone.code, 1, "{}", gone.all());
    assert!(
        gone.all()
            .contains("is not in the engine, and base_images = \"local\""),
        "{}",
        gone.all()
    );
}

/// Removes an image reference when dropped (the test's own base).
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["image", "rm", "-f", &self.0])
            .output();
    }
}

#[test]
fn an_image_of_the_previous_key_format_is_rebuilt_once_saying_why_without_a_fetch() {
    let env = Env::new("baseupgrade");
    let sha = template(&env, "up", &on_base(BASE_IMAGE));
    env.config(&env.runtime("up", "up"));
    assert_eq!(env.planner(&["ensure", "up"]).code, 0);
    // What planner-key/1 left: the same image, its key-format label the old one, no bases.
    // (Its verify record is of this format, so the bases are read from the checkout; after a
    // real upgrade they are not known until it is verified again: the reason is the same.)
    // (Its verify record is of this format, so the bases are read from the checkout; after a
    // real upgrade they are not known until it is verified again: the reason is the same.)
    let pinned = env.image("up", &sha);
    let ctx = tempfile::tempdir().unwrap();
    let old =
        format!("FROM {pinned}\nLABEL dev.planner.key-format=planner-key/1 dev.planner.bases=\n");
    std::fs::write(ctx.path().join("Dockerfile"), old).unwrap();
    let out = std::process::Command::new("docker")
        .args(["build", "-q", "-t", &pinned, "-t", &env.latest("up")])
        .arg(ctx.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let run = env.planner(&["ensure", "up"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let build = started(&run, "up", "build");
    assert!(
        build.len() == 1
            && build[0].contains("is stale: key format changed (planner-key/1 -> planner-key/2)"),
        "{}",
        run.all()
    );
    assert_eq!(env.git.fetch_count("up"), 1, "the checkout is reused");
    assert_eq!(label(&pinned, "dev.planner.key-format"), "planner-key/2");
    assert_nothing_ran(&env.planner(&["ensure", "up"]));
}

#[test]
fn bases_named_through_args_and_stages_follow_the_declared_build_args() {
    let env = Env::new("baseargs");
    let make = |tag: &str, marker: &str| {
        let reference = format!("{}base:{tag}", env.prefix);
        build_local_base(&reference, marker);
        reference
    };
    let (one, two) = (make("1", "one"), make("2", "two"));
    // The origin's shapes: an ARG before FROM, a named stage built on, comments and a
    // continued RUN.
    let dockerfile = format!(
        "# syntax check: comments and continuations\nARG V=1\nFROM {}base:${{V}} AS build\nRUN echo a \\\n  # a comment inside\n  && echo b > /ab\nFROM build\nCOPY test-id.txt /id\n",
        env.prefix
    );
    let sha = template(&env, "args", &dockerfile);
    let table = env.runtime("args", "args");
    env.config(&format!("{table}build_args = {{ V = \"2\" }}\n"));
    let run = env.planner(&["ensure", "args"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let pinned = env.image("args", &sha);
    assert_eq!(marker_in(&pinned), "two");
    let bases = label(&pinned, BASES_LABEL);
    assert!(bases.contains(&two) && !bases.contains(&one), "{bases}");
    assert!(
        !bases.contains("\"build\""),
        "a stage is not a base: {bases}"
    );
    // Rebuilding the base the default names changes nothing: the build arg picked the other.
    make("1", "one again");
    assert_nothing_ran(&env.planner(&["ensure", "args"]));
}
