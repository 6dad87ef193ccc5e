//! End to end: the build context planner sends is the one each builder's own client sends.
//! Each tree below is committed to the test git server and built by planner twice, once per
//! builder (`classic`, `buildkit`), and, from a checkout of the same commit (umask 022, `.git`
//! removed), by the docker CLI with the classic builder (`DOCKER_BUILDKIT=0 docker build`);
//! `COPY . /ctx` in all, and `/ctx` is listed from every image (name, type, mode, size, link
//! target). planner's classic image must list what `docker build`'s does. Its BuildKit image
//! must list what `docker buildx build` would send: there is no buildx on the test machine,
//! so that is `docker build`'s listing wherever the two builders agree, and each tree states
//! where they do not ([`Case::buildkit_only`], [`Case::classic_only`]): BuildKit's client
//! (fsutil's filter) walks into an excluded directory whenever an exception has a wildcard,
//! never forces the Dockerfile or `.dockerignore` in (the classic daemon removes them after
//! reading, but an excluded directory they sat in stays), and reads `<Dockerfile>.dockerignore`
//! before `.dockerignore`. All trees are built in one planner run against one engine. Run
//! through scripts/test.sh (real engine, real git smart-HTTP server on 127.0.0.1).

use planner_test_support as support;

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use support::harness::Env;
use support::trees::{self, Item, Item::*};

const COPY: &str = "FROM planner-test/busybox:latest\nCOPY . /ctx\n";

/// One tree: its `.dockerignore` (if any), its other entries, where its Dockerfile is and
/// what it says, whether the build must fail (with both builders and `docker build`), and the
/// listing lines only BuildKit's image has, or only the classic one (where the classic
/// daemon has them: some depend on its version).
struct Case {
    name: &'static str,
    ignore: Option<&'static str>,
    items: Vec<Item>,
    dockerfile: &'static str,
    copy: &'static str,
    fails: bool,
    buildkit_only: &'static [&'static str],
    classic_only: &'static [&'static str],
}

fn case(name: &'static str, ignore: &'static str, items: Vec<Item>) -> Case {
    Case {
        name,
        ignore: Some(ignore),
        items,
        dockerfile: "Dockerfile",
        copy: COPY,
        fails: false,
        buildkit_only: &[],
        classic_only: &[],
    }
}

fn files(paths: &[&'static str]) -> Vec<Item> {
    paths.iter().map(|p| File(p, "x\n")).collect()
}

fn cases() -> Vec<Case> {
    let keep = || files(&["keep.txt", "a/keep.txt", "a/other", "b/c/keep.txt", "top"]);
    vec![
        // An exception with a wildcard: BuildKit's client walks into every excluded
        // directory, the classic one only into those an exception's text starts with.
        Case {
            buildkit_only: &["a dir 755 0 ", "a/keep.txt file 644 2 "],
            ..case("star-then-star-slash-keep", "*\n!*/keep.txt\n", keep())
        },
        Case {
            buildkit_only: &[
                "a dir 755 0 ",
                "a/keep.txt file 644 2 ",
                "b dir 755 0 ",
                "b/c dir 755 0 ",
                "b/c/keep.txt file 644 2 ",
            ],
            ..case(
                "star-then-doublestar-keep",
                "*\n!**/keep.txt\n!keep.txt\n",
                keep(),
            )
        },
        Case {
            buildkit_only: &["build/sub dir 755 0 ", "build/sub/keep.txt file 644 2 "],
            ..case(
                "build-then-deep-keep",
                "build\n!build/**/keep.txt\n",
                files(&["build/keep.txt", "build/sub/keep.txt", "build/x", "src/a"]),
            )
        },
        case(
            "docs-readme-docs-parent-results",
            "docs\n!docs/README.md\ndocs\n",
            files(&["docs/README.md", "docs/x.md", "docs/sub/y"]),
        ),
        case(
            "go-regexp-digit",
            "a\\d\n",
            files(&["a1", "a9", "ad", "a", "b/a2"]),
        ),
        case("go-regexp-caret", "x^*\n", files(&["x", "x^", "x^a", "xa"])),
        case(
            "go-regexp-bracket-in-class",
            "y[.*\\]]\n",
            files(&["y]]", "y.]]", "y.", "y]", "y*", "yz"]),
        ),
        case(
            "go-regexp-posix-class",
            "[[:alpha:]]x\n",
            files(&["ax", "Bx", "1x", "_x", "aax"]),
        ),
        // The classic daemon of Docker 20.10 keeps the excluded Dockerfile and .dockerignore
        // here (its matcher compiles every pattern, fails on `[z-a]` and removes nothing);
        // later ones remove them.
        Case {
            classic_only: &[".dockerignore file 644 15 ", "Dockerfile file 644 45 "],
            ..case(
                "malformed-pattern-never-reached",
                "*\n[z-a]\n!keep*\n",
                files(&["keep.txt", "keepdir/a", "other"]),
            )
        },
        case(
            "nested-exceptions",
            "a\n!a/b\na/b/c\n!a/b/c/d\n",
            files(&["a/x", "a/b/y", "a/b/c/z", "a/b/c/d/w", "a/b/c/d/e/f"]),
        ),
        case(
            "dirs-and-files-trailing-slash",
            "foo/\nbar/baz/\n",
            files(&["foo", "x/foo", "bar/baz/a", "bar/bazz", "bar/q"]),
        ),
        case(
            "symlinks",
            "dirlink\n*.lnk\n",
            vec![
                File("target.txt", "t\n"),
                File("dir/inner", "i\n"),
                Link("link", "target.txt"),
                Link("dirlink", "dir"),
                Link("dir/up", "../target.txt"),
                Link("dangling", "missing/nowhere"),
                Link("abs", "/etc/hostname"),
                Link("x.lnk", "target.txt"),
            ],
        ),
        case("empty-dirs", "sub/*\n", {
            let mut items = files(&["sub/a", "sub/b/c", "other/x"]);
            items.push(Gitlink("module"));
            items.push(Gitlink("deep/module"));
            items
        }),
        case(
            "dotfiles",
            ".*\n!.keep\n",
            files(&[".env", ".keep", ".hidden/x", "a/.env", "a/.keep"]),
        ),
        case(
            "doublestar-suffix",
            "**/*.log\n",
            files(&["a.log", "x/y/b.log", "c.txt", "x/logs/c.txt"]),
        ),
        case(
            "trailing-doublestar",
            "dist/**\n",
            files(&["dist/a", "dist/b/c", "distx", "x/dist/a"]),
        ),
        case(
            "leading-doublestar-no-slash",
            "**foo\n",
            files(&["foo", "barfoo", "a/barfoo", "foobar", "a/foo/x"]),
        ),
        case(
            "re-include-a-directory",
            "*\n!src\n",
            files(&["src/a", "src/b/c", "README", "docs/x"]),
        ),
        case(
            "comments-and-blank-lines",
            "# comment\n\n   \n  #x\n*.tmp\n\t\n#*.keep\n",
            files(&["#x", "a.tmp", "b", "c.keep", "# comment"]),
        ),
        case(
            "dockerfile-and-dockerignore-excluded",
            "Dockerfile\n.dockerignore\nx\n",
            files(&["x", "y"]),
        ),
        // The classic daemon removes the Dockerfile the CLI forced in, not its directory.
        Case {
            dockerfile: "docker/Dockerfile",
            classic_only: &["docker dir 755 0 "],
            ..case(
                "dockerfile-in-an-excluded-dir",
                "docker\n",
                files(&["docker/other", "docker/sub/a", "app"]),
            )
        },
        // `<Dockerfile>.dockerignore`, next to the Dockerfile, before `.dockerignore`:
        // BuildKit only.
        Case {
            dockerfile: "docker/app.Dockerfile",
            buildkit_only: &["other file 644 2 "],
            classic_only: &["secret file 644 2 "],
            ..case("dockerfile-specific-ignore-first", "other\n", {
                let mut items = files(&["secret", "other", "keep", "docker/x"]);
                items.push(File("docker/app.Dockerfile.dockerignore", "secret\n"));
                items
            })
        },
        Case {
            buildkit_only: &[".dockerignore file 644 16 ", "b file 644 2 "],
            classic_only: &["a file 644 2 "],
            ..case(
                "dockerfile-specific-ignore-at-the-root",
                "b\n.dockerignore\n",
                {
                    let mut items = files(&["a", "b", "c"]);
                    items.push(File("Dockerfile.dockerignore", "a\n"));
                    items
                },
            )
        },
        Case {
            ignore: None,
            dockerfile: "docker/app.Dockerfile",
            classic_only: &[
                "docker dir 755 0 ",
                "docker/app.Dockerfile file 644 45 ",
                "docker/app.Dockerfile.dockerignore file 644 7 ",
            ],
            ..case("dockerfile-specific-ignore-excludes-its-dir", "", {
                let mut items = files(&["a"]);
                items.push(File("docker/app.Dockerfile.dockerignore", "docker\n"));
                items
            })
        },
        Case {
            buildkit_only: &["b file 644 2 "],
            classic_only: &["a file 644 2 "],
            ..case("dockerfile-specific-ignore-symlinked", "b\n", {
                let mut items = files(&["a", "b", "ignores/for-dockerfile"]);
                items[2] = File("ignores/for-dockerfile", "a\n");
                items.push(Link("Dockerfile.dockerignore", "ignores/for-dockerfile"));
                items
            })
        },
        Case {
            ignore: None,
            ..case("another-dockerfiles-ignore-is-not-read", "", {
                let mut items = files(&["a"]);
                items.push(File("other.Dockerfile.dockerignore", "*\n"));
                items
            })
        },
        // Named sources: BuildKit asks for the paths COPY names (and symlinks on the way
        // resolved), the excludes still apply.
        Case {
            copy: "FROM planner-test/busybox:latest\nCOPY link.txt sub /ctx/\n",
            ..case("named-sources-through-symlinks", "sub/x\n", {
                let mut items = files(&["a", "real/target.txt", "sub/x", "sub/y", "sub/z/w"]);
                items[1] = File("real/target.txt", "target\n");
                items.push(Link("link.txt", "real/target.txt"));
                items.push(Link("sub/l", "../a"));
                items
            })
        },
        case("modes", "*.md\n", {
            let mut items = files(&["README.md", "data"]);
            items.push(Exec("run.sh", "#!/bin/sh\n"));
            items.push(Exec("bin/tool", "#!/bin/sh\n"));
            items
        }),
        case(
            "question-mark-and-classes",
            "file?.txt\nlog[0-9]\n!log5\n[^a-m]*.c\n",
            files(&[
                "file1.txt",
                "file12.txt",
                "log1",
                "log5",
                "loga",
                "x.c",
                "b.c",
            ]),
        ),
        case(
            "leading-slash-and-cleaning",
            "/foo\n./bar\nbaz/../qux\nsub//deep/\n",
            files(&["foo", "bar", "qux", "baz/x", "sub/deep/a", "x/foo"]),
        ),
        case(
            "later-pattern-re-excludes",
            "*.md\n!README*.md\nREADME-secret.md\n",
            files(&[
                "README.md",
                "README-secret.md",
                "README-public.md",
                "CHANGES.md",
            ]),
        ),
        case("escaped-star", "\\*.txt\n", files(&["*.txt", "a.txt", "b"])),
        case(
            "children-of-a-dir",
            "a/*\n!a/keep\n",
            files(&["a/keep", "a/x", "a/sub/y", "b"]),
        ),
        case(
            "doublestar-everything-but-keep",
            "**\n!keep\n",
            files(&["keep", "a/keep", "x"]),
        ),
        Case {
            ignore: None,
            ..case(
                "dockerignore-symlinked-inside",
                "",
                vec![
                    Link(".dockerignore", "ignore.txt"),
                    File("ignore.txt", "*.log\n"),
                    File("a.log", "l\n"),
                    File("b", "b\n"),
                ],
            )
        },
        case(
            "exception-reopens-parent-of-deep-file",
            "a\n!a/b/c/keep\n",
            files(&["a/b/c/keep", "a/b/c/x", "a/b/y", "a/z"]),
        ),
        Case {
            fails: true,
            ..case("malformed-pattern-reached", "[z-a]\n", files(&["a"]))
        },
    ]
}

fn repo(i: usize) -> String {
    format!("tree{i:02}")
}

/// The runtime building tree `i` with `builder`.
fn runtime(builder: &str, i: usize) -> String {
    format!("{}{i:02}", &builder[..1])
}

const BUILDERS: [&str; 2] = ["classic", "buildkit"];

/// Builds `cases[i]` from a fresh checkout with the docker CLI's classic builder; the tag, or
/// the CLI's error.
fn docker_build(env: &Env, work: &std::path::Path, i: usize, c: &Case) -> Result<String, String> {
    let dir = work.join(repo(i));
    trees::checkout(&env.git, &repo(i), &dir, false);
    let tag = format!("{}cli-{i:02}:latest", env.prefix);
    let out = Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "--no-cache", "-q", "-t", &tag, "-f"])
        .arg(dir.join(c.dockerfile))
        .arg(&dir)
        .output()
        .expect("docker CLI");
    if out.status.success() {
        Ok(tag)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Lines only in `a` (`-`) and only in `b` (`+`).
fn diff(a: &[String], b: &[String]) -> String {
    let only = |x: &[String], y: &[String], sign: char| {
        x.iter()
            .filter(|l| !y.contains(l))
            .map(|l| format!("    {sign} {l}\n"))
            .collect::<String>()
    };
    format!("{}{}", only(a, b, '-'), only(b, a, '+'))
}

/// What planner's image built with `builder` must list, given `docker build`'s listing.
fn expected(c: &Case, builder: &str, classic: &[String]) -> Vec<String> {
    if builder == "classic" {
        return classic.to_vec();
    }
    let mut want: Vec<String> = classic
        .iter()
        .filter(|l| !c.classic_only.contains(&l.as_str()))
        .cloned()
        .chain(c.buildkit_only.iter().map(|l| (*l).to_owned()))
        .collect();
    want.sort();
    want
}

#[test]
fn build_context_is_what_each_builders_client_sends_for_every_tree() {
    let env = Env::new("ctxdiff");
    let cases = cases();
    assert!(cases.len() >= 30);
    let mut config = String::new();
    let mut commits = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let mut items = c.items.clone();
        items.push(File(c.dockerfile, c.copy));
        if let Some(ignore) = c.ignore {
            items.push(File(".dockerignore", ignore));
        }
        commits.push(trees::commit_tree(&env.git, &repo(i), &items));
        for builder in BUILDERS {
            config += &support::buildkit::runtime(&env, &runtime(builder, i), &repo(i), builder);
            config += &format!("dockerfile = \"{}\"\n", c.dockerfile);
        }
    }
    env.config(&config);

    let work = tempfile::tempdir().unwrap();
    let next = AtomicUsize::new(0);
    let mut cli: Vec<Option<Result<String, String>>> = (0..cases.len()).map(|_| None).collect();
    let run = std::thread::scope(|s| {
        let workers: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(c) = cases.get(i) else { break done };
                        done.push((i, docker_build(&env, work.path(), i, c)));
                    }
                })
            })
            .collect();
        let run = env.planner(&["ensure", "--all"]);
        for worker in workers {
            for (i, built) in worker.join().unwrap() {
                cli[i] = Some(built);
            }
        }
        run
    });

    let failing = cases.iter().filter(|c| c.fails).count();
    let mut mismatches = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let built = cli[i].take().unwrap();
        if c.fails {
            assert!(built.is_err(), "{}: docker build succeeded", c.name);
            for builder in BUILDERS {
                let failed = run.stderr.lines().any(|l| {
                    l.starts_with(&format!("{} ", runtime(builder, i))) && l.contains("FAILED")
                });
                assert!(failed, "{} with {builder}: {}", c.name, run.all());
            }
            continue;
        }
        let tag = built.unwrap_or_else(|e| panic!("{}: docker build failed: {e}", c.name));
        let theirs = trees::listing(&tag, "/ctx");
        for builder in BUILDERS {
            let rt = runtime(builder, i);
            let image = env.image(&rt, &commits[i]);
            if env.image_id(&image).is_none() {
                let why: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with(&rt)).collect();
                mismatches.push(format!(
                    "  {} with {builder}: planner built no image:\n    {}\n",
                    c.name,
                    why.join("\n    ")
                ));
                continue;
            }
            let ours = trees::listing(&image, "/ctx");
            let want = expected(c, builder, &theirs);
            if ours != want {
                mismatches.push(format!(
                    "  {} with {builder} (planner -, expected +):\n{}",
                    c.name,
                    diff(&ours, &want)
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} builds differ from what the builder's client sends:\n{}",
        mismatches.len(),
        2 * (cases.len() - failing),
        mismatches.concat()
    );
    assert_eq!(run.code, i32::from(failing > 0), "{}", run.all());
}

/// planner's deliberate difference: the checkout's top-level `.git` is never sent, where
/// `docker build` on a clone sends it (unless `.dockerignore` leaves it out).
#[test]
fn the_top_level_git_dir_is_never_sent_where_docker_build_sends_it() {
    let env = Env::new("ctxgit");
    let commit = trees::commit_tree(
        &env.git,
        "withgit",
        &[
            File("Dockerfile", COPY),
            File("a", "a\n"),
            File("sub/b", "b\n"),
        ],
    );
    env.config(&env.runtime("g", "withgit"));
    let run = env.planner(&["ensure", "--all"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("withgit");
    trees::checkout(&env.git, "withgit", &dir, true);
    let tag = format!("{}cli-git:latest", env.prefix);
    let out = Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "--no-cache", "-q", "-t", &tag])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = trees::listing(&env.image("g", &commit), "/ctx");
    let theirs = trees::listing(&tag, "/ctx");
    let is_git = |l: &&String| l.starts_with(".git ") || l.starts_with(".git/");
    assert!(!ours.iter().any(|l| is_git(&l)), "{ours:?}");
    assert!(theirs.iter().any(|l| is_git(&l)), "{theirs:?}");
    let without: Vec<String> = theirs.iter().filter(|l| !is_git(l)).cloned().collect();
    assert_eq!(ours, without);
}

/// The context of one commit is the same bytes from any checkout of it: two clones made a
/// second apart under different umasks (so their files differ in mtime and mode on disk).
#[test]
fn one_commit_gives_byte_identical_context_streams_from_two_checkouts() {
    use futures_util::StreamExt;
    let git = support::git_server::GitServer::start();
    let long = format!("{}/{}.txt", "d".repeat(70), "f".repeat(90));
    let leaked: &'static str = Box::leak(long.into_boxed_str());
    let commit = trees::commit_tree(
        &git,
        "repro",
        &[
            File("Dockerfile", COPY),
            File(".dockerignore", "*.log\nbuild\n!build/keep\n"),
            File("a/b/c.txt", "c\n"),
            File("x.log", "log\n"),
            File("build/keep", "k\n"),
            File("build/drop", "d\n"),
            File(leaked, "long\n"),
            Exec("run.sh", "#!/bin/sh\n"),
            Link("link", "a/b/c.txt"),
            Gitlink("module"),
        ],
    );
    let work = tempfile::tempdir().unwrap();
    let first = work.path().join("cache-one/checkout");
    let second = work.path().join("cache-two/elsewhere/checkout");
    trees::checkout(&git, "repro", &first, true);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    trees::checkout_with_umask(&git, "repro", &second, "002");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tar = |dir: std::path::PathBuf| {
        rt.block_on(async move {
            let (body, producer) = planner::docker::context::stream(&dir, "Dockerfile");
            let chunks: Vec<_> = body.map(|c| c.unwrap()).collect().await;
            producer.await.unwrap().unwrap();
            chunks.concat()
        })
    };
    let (one, two) = (tar(first), tar(second));
    assert_eq!(
        blake3::hash(&one),
        blake3::hash(&two),
        "same commit, same bytes"
    );

    let time: u64 = git_output(&git, "repro", &["show", "-s", "--format=%ct", &commit])
        .trim()
        .parse()
        .unwrap();
    let mut archive = tar::Archive::new(&one[..]);
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let h = entry.header();
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        assert_eq!(h.mtime().unwrap(), time, "{name}: the commit's time");
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0), "{name}");
        assert_eq!(h.username_bytes(), Some(&b""[..]), "{name}");
        assert_eq!(h.groupname_bytes(), Some(&b""[..]), "{name}");
        let want = match name.as_str() {
            "run.sh" | "build" | "module" | "a" | "a/b" => 0o755,
            "link" => 0o777,
            n if n.starts_with("ddd") && !n.ends_with(".txt") => 0o755,
            _ => 0o644,
        };
        assert_eq!(h.mode().unwrap(), want, "{name}");
        names.push(name);
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries in byte order");
    assert!(names.contains(&"build/keep".to_owned()) && !names.contains(&"x.log".to_owned()));
}

/// `git` run in the bare repository of `repo`.
fn git_output(git: &support::git_server::GitServer, repo: &str, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(trees::bare(git, repo))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}
