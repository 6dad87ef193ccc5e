//! End to end: a repository's build context as hostile input. A `.dockerignore` that planner
//! cannot use (a bad pattern, a symlink out of the repository, a file or pattern beyond its
//! bounds) fails that runtime's build with an error naming the file, the runtime and commit,
//! and the fix — never the HTTP client's "SendRequest", never a hang or an abort — with either
//! builder (for BuildKit, planner checks the ignore file BuildKit would read, rather than let it
//! build without it). Run through scripts/test.sh (real engine, real git smart-HTTP server on
//! 127.0.0.1).

use planner_test_support as support;

use support::buildkit as bk;
use support::harness::{self, Env};

/// The template's files plus `extra`.
fn template_with(env: &Env, repo: &str, extra: &[(&str, &[u8])]) -> String {
    let dockerfile = harness::dockerfile();
    let mut files: Vec<(&str, &[u8])> = vec![
        ("Dockerfile", dockerfile.as_bytes()),
        ("hello.txt", b"hello\n"),
    ];
    files.extend_from_slice(extra);
    env.git.create_repo(repo, &files)
}

/// The runtime's `FAILED` line of the build step, with its continuation lines.
fn build_failure(run: &harness::Run, runtime: &str) -> String {
    let mut lines = run.stderr.lines().skip_while(|l| {
        let mut cols = l.split_whitespace();
        !(cols.next() == Some(runtime)
            && cols.next() == Some("build")
            && cols.next() == Some("FAILED"))
    });
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("no build failure for {runtime}"));
    let rest = lines.take_while(|l| l.starts_with(' '));
    std::iter::once(first)
        .chain(rest)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts that `runtime`'s build failed naming the ignore file, the commit and a fix.
fn assert_named(run: &harness::Run, runtime: &str, commit: &str, cause: &str, fix: &str) {
    let failure = build_failure(run, runtime);
    let all = run.all();
    assert!(failure.contains(".dockerignore"), "{failure}\n{all}");
    assert!(failure.contains(cause), "{failure}\n{all}");
    assert!(
        failure.contains(&format!("help: {fix}")),
        "{failure}\n{all}"
    );
    assert!(
        failure.contains(&format!("at commit {commit}")),
        "{failure}\n{all}"
    );
    assert!(!failure.contains("SendRequest"), "{failure}");
    assert!(!failure.contains("hyper"), "{failure}");
}

#[test]
fn build_context_errors_name_the_dockerignore_the_commit_and_the_fix() {
    let env = Env::new("ctxerr");
    let bad = template_with(&env, "badpattern", &[(".dockerignore", b"*.log\n[\n")]);
    template_with(&env, "outside", &[]);
    let outside = env
        .git
        .add_symlink("outside", "main", ".dockerignore", "/etc/passwd");
    template_with(&env, "fine", &[(".dockerignore", b"*.log\n")]);
    // BuildKit reads `<Dockerfile>.dockerignore` first: that is the file checked.
    let specific = template_with(
        &env,
        "specific",
        &[
            (".dockerignore", b"*.log\n"),
            ("Dockerfile.dockerignore", b"[\n"),
        ],
    );
    let bk = |name: &str, repo: &str| bk::runtime(&env, name, repo, "buildkit");
    let config = env.runtime("bad", "badpattern")
        + &env.runtime("escape", "outside")
        + &env.runtime("fine", "fine")
        + &bk("badbk", "badpattern")
        + &bk("escapebk", "outside")
        + &bk("specificbk", "specific");
    env.config(&config);

    let run = env.planner(&["ensure", "--all"]);
    assert_eq!(run.code, 1, "{}", run.all());
    for rt in ["bad", "badbk"] {
        assert_named(
            &run,
            rt,
            &bad,
            "line 2: bad pattern \"[\"",
            "fix or remove line 2 of .dockerignore in the repository",
        );
    }
    for rt in ["escape", "escapebk"] {
        assert_named(
            &run,
            rt,
            &outside,
            "it is a symlink to /etc/passwd, outside the build context",
            "make .dockerignore a regular file in the repository",
        );
    }
    assert_named(
        &run,
        "specificbk",
        &specific,
        "Dockerfile.dockerignore: line 1: bad pattern \"[\"",
        "fix or remove line 1 of .dockerignore in the repository",
    );
    assert!(run.stderr.contains("1 ensured, 5 failed"), "{}", run.all());
    assert!(env.image_id(&env.latest("fine")).is_some());
}

#[test]
fn hostile_dockerignore_is_refused_without_taking_planner_down() {
    let env = Env::new("ctxbig");
    // Over the 1 MiB cap: never read into memory whole, refused with the limit named.
    let huge = "node_modules\n".repeat(90_000);
    let big = template_with(&env, "big", &[(".dockerignore", huge.as_bytes())]);
    // 8,000 stars: each `**` was a capture group, and this line aborted the process.
    let stars = format!("{}\n", "*".repeat(8_000));
    let star = template_with(&env, "stars", &[(".dockerignore", stars.as_bytes())]);
    // Within the bounds, 4,000 stars is an ordinary pattern: it excludes everything.
    let copy = format!("FROM {}\nCOPY . /ctx\n", harness::BASE_IMAGE);
    let all_stars = "*".repeat(4_000);
    let fine = env.git.create_repo(
        "fine",
        &[
            ("Dockerfile", copy.as_bytes()),
            (".dockerignore", all_stars.as_bytes()),
            ("other.txt", b"left out"),
        ],
    );
    let bk = |name: &str, repo: &str| bk::runtime(&env, name, repo, "buildkit");
    let config = env.runtime("big", "big")
        + &env.runtime("stars", "stars")
        + &env.runtime("fine", "fine")
        + &bk("bigbk", "big")
        + &bk("starsbk", "stars")
        + &bk("finebk", "fine");
    env.config(&config);

    let run = env.planner(&["ensure", "--all"]);
    assert_eq!(run.code, 1, "{}", run.all());
    for rt in ["big", "bigbk"] {
        assert_named(
            &run,
            rt,
            &big,
            &format!(
                "the file is {} bytes, over the limit of 1048576 bytes",
                huge.len()
            ),
            "planner reads a .dockerignore of at most 1048576 bytes",
        );
    }
    for rt in ["stars", "starsbk"] {
        assert_named(
            &run,
            rt,
            &star,
            "line 1: pattern \"****",
            "fix or remove line 1 of .dockerignore in the repository",
        );
        assert!(
            build_failure(&run, rt).contains("is 8000 bytes long, over the limit of 4096 bytes"),
            "{}",
            run.all()
        );
    }
    // Everything is left out; the classic engine then drops the Dockerfile and .dockerignore
    // that the context must carry too, as it does for `docker build` when .dockerignore
    // excludes them; BuildKit never has them in the context.
    for rt in ["fine", "finebk"] {
        let copied = harness::files_in_image(&env.image(rt, &fine), "/ctx");
        let copied: Vec<&str> = copied.iter().map(|p| p.trim_end_matches('/')).collect();
        assert_eq!(copied, ["ctx"], "{rt}");
    }
    assert!(run.stderr.contains("2 ensured, 4 failed"), "{}", run.all());
}
