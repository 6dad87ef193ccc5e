//! Records and values read back are input: garbled, forged or misplaced records, and foreign
//! images under planner's tags, end to end against the real engine and git server.
//! Run through scripts/test.sh.

use planner_test_support as support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::harness::{self, BASE_IMAGE, Env, Run, docker, label};

/// Every `records/*.json` regular file that parses, with its JSON.
fn records(env: &Env) -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(env.cache_path().join("records"))
        .unwrap()
        .flatten()
    {
        if !e.file_type().unwrap().is_file() {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            out.push((e.path(), v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The path and JSON of the one record of `kind`.
fn record_of(env: &Env, kind: &str) -> (PathBuf, Value) {
    let mut found: Vec<_> = records(env)
        .into_iter()
        .filter(|(_, v)| v["kind"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} record");
    found.remove(0)
}

fn rewrite(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// Runs planner, failing the test (and killing planner) if it has not ended within 60 s.
fn planner_bounded(env: &Env, args: &[&str]) -> Run {
    let mut child = env
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("planner {args:?} blocked\n{}", Run::from_output(out).all());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Run::from_output(child.wait_with_output().unwrap())
}

fn assert_no_panic(run: &Run, what: &str) {
    assert_ne!(run.code, 101, "{what} panicked\n{}", run.all());
    assert!(!run.stderr.contains("panicked"), "{what}\n{}", run.all());
}

/// A non-ASCII text whose 12th byte falls inside a character (`a` then 2-byte `é`s).
fn garbled(len_chars: usize) -> String {
    std::iter::once('a')
        .chain(std::iter::repeat_n('é', len_chars - 1))
        .collect()
}

#[test]
fn garbled_records_are_warned_about_and_gc_removes_them() {
    let env = Env::new("rec-garbled");
    env.template("tpl");
    env.config(&env.runtime("g", "tpl"));
    assert_eq!(env.planner(&["ensure", "g"]).code, 0);
    for (path, _) in records(&env) {
        rewrite(&path, |v| {
            v["commit"] = garbled(40).into();
            if v.get("dockerfile_blake3").is_some() {
                v["dockerfile_blake3"] = garbled(64).into();
            }
        });
    }
    for args in [
        &["plan", "g", "--offline"][..],
        &["status"],
        &["status", "--json"],
        &["ensure", "g"],
    ] {
        let run = env.planner(args);
        assert_no_panic(&run, &format!("{args:?}"));
        assert!(
            run.stderr.contains("ignoring record"),
            "{args:?} warns\n{}",
            run.all()
        );
    }
    let gc = env.planner(&["gc"]);
    assert_no_panic(&gc, "gc");
    assert_eq!(gc.code, 0, "{}", gc.all());
    for (path, v) in records(&env) {
        let commit = v["commit"].as_str().unwrap_or_default();
        assert!(commit.is_ascii(), "gc left {}: {v}", path.display());
    }
    let warm = env.planner(&["ensure", "g"]);
    assert_eq!(warm.code, 0, "{}", warm.all());
    assert!(!warm.stderr.contains("ignoring record"), "{}", warm.all());
}

#[test]
fn a_foreign_latest_with_a_non_ascii_revision_label_is_no_panic() {
    let env = Env::new("rec-foreign");
    env.template("tpl");
    env.config(&env.runtime("f", "tpl"));
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {BASE_IMAGE}\nLABEL foreign=yes\n"),
    )
    .unwrap();
    let revision = format!("org.opencontainers.image.revision={}", garbled(40));
    let latest = env.latest("f");
    docker(&[
        "build",
        "-q",
        "--label",
        &revision,
        "--label",
        "dev.planner.key=not-a-key",
        "-t",
        &latest,
        ctx.path().to_str().unwrap(),
    ]);
    for args in [&["plan", "f"][..], &["status"], &["gc", "--dry-run"]] {
        let run = env.planner(args);
        assert_no_panic(&run, &format!("{args:?}"));
        assert_eq!(run.code, 0, "{args:?}\n{}", run.all());
    }
    let run = env.planner(&["ensure", "f"]);
    assert_no_panic(&run, "ensure");
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.count("build", "started"), 1, "{}", run.all());
}

#[test]
fn a_forged_verify_record_for_another_commit_is_not_trusted() {
    let env = Env::new("rec-forged");
    let sha = env.template("tpl");
    env.config(&env.runtime("v", "tpl"));
    assert_eq!(env.planner(&["ensure", "v"]).code, 0);
    docker(&["image", "rm", "-f", &env.image("v", &sha), &env.latest("v")]);
    let (path, _) = record_of(&env, "verify-dockerfile");
    rewrite(&path, |v| {
        v["commit"] = "1".repeat(40).into();
        v["dockerfile_blake3"] = "FORGED-0000000000".into();
    });

    let plan = env.planner(&["plan", "v"]);
    assert!(
        plan.stdout.contains("not verified in this checkout yet"),
        "{}",
        plan.all()
    );
    let run = env.planner(&["ensure", "v"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        run.count("verify-dockerfile", "started"),
        1,
        "{}",
        run.all()
    );
    assert_eq!(
        label(&env.image("v", &sha), "dev.planner.dockerfile-blake3"),
        blake3::hash(harness::dockerfile().as_bytes())
            .to_hex()
            .to_string()
    );
}

#[test]
fn an_offline_plan_refuses_a_recorded_commit_that_is_not_a_commit() {
    let env = Env::new("rec-offline");
    env.template("tpl");
    env.config(&env.runtime("o", "tpl"));
    assert_eq!(env.planner(&["ensure", "o"]).code, 0);
    let (path, _) = record_of(&env, "resolve-head");
    for bad in ["../../etc", "not-hex-not-hex-not-hex-not-hex-not-hex!"] {
        rewrite(&path, |v| v["commit"] = bad.into());
        let plan = env.planner(&["plan", "o", "--offline", "--format", "json"]);
        assert_no_panic(&plan, "plan --offline");
        assert!(
            plan.stderr.contains("ignoring record") && plan.stderr.contains("commit"),
            "{}",
            plan.all()
        );
        assert!(
            plan.stdout.contains("no recorded answer") && !plan.stdout.contains(bad),
            "{}",
            plan.all()
        );
    }
}

#[test]
fn fifos_directories_and_temp_files_in_records_never_block_and_gc_removes_them() {
    let env = Env::new("rec-fifo");
    env.template("tpl");
    env.config(&env.runtime("p", "tpl"));
    assert_eq!(env.planner(&["ensure", "p"]).code, 0);
    let (resolve, _) = record_of(&env, "resolve-head");
    let (build, _) = record_of(&env, "build");
    let mkfifo = |p: &Path| {
        std::fs::remove_file(p).unwrap();
        let ok = std::process::Command::new("mkfifo")
            .arg(p)
            .status()
            .unwrap();
        assert!(ok.success());
    };

    mkfifo(&resolve);
    for args in [
        &["plan", "p", "--offline"][..],
        &["status"],
        &["ensure", "p"],
    ] {
        let run = planner_bounded(&env, args);
        assert_no_panic(&run, &format!("{args:?}"));
        assert!(
            run.stderr.contains("not a regular file"),
            "{args:?}\n{}",
            run.all()
        );
    }

    std::fs::remove_file(&resolve).unwrap();
    std::fs::create_dir_all(resolve.join("inside")).unwrap();
    mkfifo(&build);
    let tmp = env.cache_path().join("records/.tmpAbC123");
    std::fs::write(&tmp, b"{\"half\":").unwrap();
    for _ in 0..2 {
        let run = planner_bounded(&env, &["ensure", "p"]);
        assert_eq!(
            run.code,
            0,
            "a directory in the way fails nothing\n{}",
            run.all()
        );
        assert!(
            run.stderr.contains("directory is in the way"),
            "{}",
            run.all()
        );
    }
    let gc = planner_bounded(&env, &["gc"]);
    assert_eq!(gc.code, 0, "{}", gc.all());
    for p in [&resolve, &build, &tmp] {
        assert!(
            std::fs::symlink_metadata(p).is_err(),
            "gc removed {}",
            p.display()
        );
    }
    let run = planner_bounded(&env, &["ensure", "p"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(resolve.is_file(), "the record is written again");
}

#[test]
fn a_retag_needs_no_clone_and_no_build() {
    let env = Env::new("rec-retag");
    let sha = env.template("tpl");
    env.config(&env.runtime("r", "tpl"));
    assert_eq!(env.planner(&["ensure", "r"]).code, 0);
    let pinned = env.image("r", &sha);
    let id = env.image_id(&pinned).unwrap();
    std::fs::remove_dir_all(env.cache_path()).unwrap();
    docker(&["image", "rm", &pinned]);
    assert_eq!(env.image_id(&env.latest("r")), Some(id.clone()));

    let plan = env.planner(&["plan", "r", "--format", "json"]);
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
    let status = |step: &str| {
        let s = doc["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == step)
            .unwrap();
        (
            s["status"].as_str().unwrap().to_owned(),
            s["reason"].to_string(),
        )
    };
    assert_eq!(status("clone").0, "skip", "{}", plan.all());
    assert_eq!(status("verify-dockerfile").0, "skip", "{}", plan.all());
    let (build, reason) = status("build");
    assert!(
        build == "run" && reason.contains("only tagging"),
        "{}",
        plan.all()
    );

    let run = env.planner(&["ensure", "r"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(env.git.fetch_count("tpl"), 1, "no fetch\n{}", run.all());
    assert_eq!(run.count("clone", "started"), 0, "{}", run.all());
    assert_eq!(
        run.count("verify-dockerfile", "started"),
        0,
        "{}",
        run.all()
    );
    assert_eq!(
        env.image_id(&pinned),
        Some(id),
        "the same image, tagged again"
    );
}

#[test]
fn after_a_reclone_verify_runs_again_honestly() {
    let env = Env::new("rec-reclone");
    let sha = env.template("tpl");
    env.config(&env.runtime("c", "tpl"));
    assert_eq!(env.planner(&["ensure", "c"]).code, 0);
    docker(&["image", "rm", "-f", &env.image("c", &sha), &env.latest("c")]);
    std::fs::write(
        harness::checkout_dir(env.cache_path(), &sha).join("hello.txt"),
        "edited\n",
    )
    .unwrap();

    let run = env.planner(&["ensure", "c"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.count("clone", "started"), 1, "{}", run.all());
    assert_eq!(
        run.count("verify-dockerfile", "started"),
        1,
        "verify runs on the new checkout\n{}",
        run.all()
    );
    assert!(!run.stderr.contains("done meanwhile"), "{}", run.all());
}

#[test]
fn the_all_zero_commit_from_a_git_host_is_refused() {
    let env = Env::new("rec-zero");
    let mut body = Vec::new();
    let line = format!("{} refs/heads/main\n", "0".repeat(40));
    body.extend_from_slice(format!("{:04x}{line}", line.len() + 4).as_bytes());
    body.extend_from_slice(b"0000");
    let host =
        support::canned_http::CannedHttp::start(200, "application/x-git-upload-pack-result", body);
    env.config(&format!("[runtimes.z]\nrepo = \"{}\"\n", host.url("zero")));
    let run = env.planner(&["ensure", "z"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("malformed commit id"), "{}", run.all());
    assert_eq!(run.count("clone", "started"), 0, "{}", run.all());
}

#[test]
fn a_checkout_without_an_id_is_verified_once_and_then_trusted() {
    let env = Env::new("rec-noid");
    let sha = env.template("tpl");
    env.config(&env.runtime("n", "tpl"));
    assert_eq!(env.planner(&["ensure", "n"]).code, 0);
    let id_file = harness::checkout_dir(env.cache_path(), &sha).join(".git/planner-checkout-id");
    std::fs::remove_file(&id_file).unwrap();
    let ok = std::process::Command::new("mkfifo")
        .arg(&id_file)
        .status()
        .unwrap();
    assert!(ok.success());
    for (round, verifies) in [("no id yet", 1), ("id given by the verify", 0)] {
        docker(&["image", "rm", "-f", &env.image("n", &sha), &env.latest("n")]);
        let run = planner_bounded(&env, &["ensure", "n"]);
        assert_eq!(run.code, 0, "{round}\n{}", run.all());
        assert_eq!(run.count("clone", "started"), 0, "{round}\n{}", run.all());
        assert_eq!(
            run.count("verify-dockerfile", "started"),
            verifies,
            "{round}\n{}",
            run.all()
        );
    }
}
