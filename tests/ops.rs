//! `planner status` and `planner gc` end to end: the real binary against the real engine and
//! the test git server. Run through scripts/test.sh (or with DOCKER_HOST set to its engine).

// A test shows the reports it checks in its output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use planner_test_support as support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use planner::key::Key;
use planner::store::{RunLockMode, Store};
use serde_json::Value;
use support::harness::{self, BASE_IMAGE, Env, Run, docker, tree};

fn json(run: &Run) -> Value {
    assert_eq!(run.code, 0, "{}", run.all());
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{}", run.all()))
}

fn checkout_dir(env: &Env, commit: &str) -> PathBuf {
    let repo = env.git.url("tpl");
    env.cache_path()
        .join("checkouts")
        .join(planner::store::repo_dir_name(&repo))
        .join(commit)
}

/// Record files in the cache dir whose record names `commit`.
fn records_of(cache: &Path, commit: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(cache.join("records")).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        if let Ok(v) = serde_json::from_str::<Value>(&text)
            && v["commit"] == commit
        {
            out.push(v["kind"].as_str().unwrap_or("?").to_owned());
        }
    }
    out.sort();
    out
}

fn fake_key(seed: &str) -> Key {
    Key::parse(&blake3::hash(seed.as_bytes()).to_hex()).unwrap()
}

#[test]
fn status_shows_missing_before_ensure_and_present_after_without_network() {
    let env = Env::new("ops-status");
    let sha = env.template("tpl");
    env.config(&(env.runtime("alpha", "tpl") + &env.runtime("beta", "tpl-b")));

    let before = env.planner(&["status", "--json", "alpha"]);
    let doc = json(&before);
    assert_eq!(doc["schema_version"], 2);
    let a = &doc["runtimes"][0];
    assert_eq!(a["runtime"], "alpha");
    assert_eq!(a["branch"], "main");
    assert_eq!(a["repo"], env.git.url("tpl"));
    assert!(a["commit"].is_null() && a["resolved_at"].is_null(), "{a}");
    assert_eq!(a["image"]["present"], false);
    assert!(a["image"]["tag"].is_null());
    assert_eq!(a["latest"]["tag"], env.latest("alpha"));
    assert_eq!(a["latest"]["present"], false);
    assert!(a["latest"]["matches_commit"].is_null());
    assert_eq!(a["checkout"]["present"], false);
    let text = env.planner(&["status"]);
    assert_eq!(text.code, 0, "{}", text.all());
    assert!(
        text.stdout.lines().next().unwrap().starts_with("RUNTIME"),
        "{}",
        text.all()
    );
    assert!(text.stdout.contains("never resolved"), "{}", text.all());
    assert!(env.git.requests().is_empty(), "status asks no git host");
    assert!(tree(env.cache_path()).is_empty(), "status writes nothing");

    let ensure = env.planner(&["ensure", "alpha"]);
    assert_eq!(ensure.code, 0, "{}", ensure.all());
    env.git.clear_log();
    let cache_before = tree(env.cache_path());

    let doc = json(&env.planner(&["status", "--json"]));
    let rts = doc["runtimes"].as_array().unwrap();
    assert_eq!(rts.len(), 2, "no names: every runtime");
    let a = &rts[0];
    let id = env.image_id(&env.image("alpha", &sha)).unwrap();
    assert_eq!(a["commit"], sha);
    assert!(a["resolved_at"].as_u64().is_some());
    assert_eq!(a["image"]["tag"], env.image("alpha", &sha));
    assert_eq!(a["image"]["present"], true);
    assert_eq!(a["image"]["id"], id);
    assert_eq!(a["latest"]["present"], true);
    assert_eq!(a["latest"]["id"], id);
    assert_eq!(a["latest"]["matches_commit"], true);
    assert_eq!(a["checkout"]["present"], true);
    assert_eq!(
        a["checkout"]["path"],
        checkout_dir(&env, &sha).to_str().unwrap()
    );
    assert!(a["checkout"]["bytes"].as_u64().unwrap() > 0);
    assert!(rts[1]["commit"].is_null(), "beta was never ensured");

    let text = env.planner(&["status"]);
    assert_eq!(text.code, 0, "{}", text.all());
    eprintln!("--- status after ensure alpha\n{}", text.stdout);
    let row = text.stdout.lines().nth(1).unwrap();
    for part in [&sha[..12], "present", "(pinned)", "present "] {
        assert!(row.contains(part), "{part:?} in {row}\n{}", text.all());
    }
    assert!(env.git.requests().is_empty(), "status asks no git host");
    assert_eq!(
        tree(env.cache_path()),
        cache_before,
        "status writes nothing"
    );

    // A new commit upstream: status still shows the recorded one; --refresh asks (read only).
    let sha2 = env.git.commit("tpl", "main", &[("hello.txt", b"two\n")]);
    let doc = json(&env.planner(&["status", "--json", "alpha"]));
    assert_eq!(doc["runtimes"][0]["commit"], sha);
    assert!(env.git.requests().is_empty());
    let doc = json(&env.planner(&["status", "--json", "--refresh", "alpha"]));
    let a = &doc["runtimes"][0];
    assert_eq!(a["commit"], sha2);
    assert_eq!(a["image"]["present"], false);
    assert_eq!(a["latest"]["matches_commit"], false);
    assert_eq!(a["latest"]["commit"], sha);
    assert_eq!(a["checkout"]["present"], false);
    assert!(
        !env.git.requests().is_empty(),
        "--refresh asks the git host"
    );
    assert_eq!(env.git.fetch_count("tpl"), 0, "but fetches nothing");
    assert_eq!(
        tree(env.cache_path()),
        cache_before,
        "--refresh records nothing"
    );

    // Pruned image, and usage errors.
    docker(&["image", "rm", &env.image("alpha", &sha)]);
    let doc = json(&env.planner(&["status", "--json", "alpha"]));
    assert_eq!(doc["runtimes"][0]["image"]["present"], false);
    assert_eq!(
        doc["runtimes"][0]["latest"]["matches_commit"], true,
        ":latest still holds it"
    );
    let unknown = env.planner(&["status", "nope"]);
    assert_eq!(unknown.code, 2, "{}", unknown.all());
    assert!(unknown.stderr.contains("alpha, beta"), "{}", unknown.all());
}

#[test]
fn gc_keeps_the_newest_commits_and_latest_and_only_touches_planner_images() {
    let env = Env::new("ops-gc");
    // Content no other test (or earlier run) builds: an image whose layers another image
    // shares has a unique size of 0, and this test checks gc reports the bytes it frees.
    let nonce = format!(
        "{} {:?}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)
    );
    let hello = |n: &str| format!("{n} {nonce}\n").into_bytes();
    let sha1 = env.git.create_repo(
        "tpl",
        &[
            ("Dockerfile", harness::dockerfile().as_bytes()),
            ("hello.txt", &hello("one")),
        ],
    );
    env.config(&env.runtime("alpha", "tpl"));
    assert_eq!(env.planner(&["ensure", "alpha"]).code, 0);
    let sha2 = env
        .git
        .commit("tpl", "main", &[("hello.txt", &hello("two"))]);
    assert_eq!(env.planner(&["ensure", "alpha"]).code, 0);
    let sha3 = env
        .git
        .commit("tpl", "main", &[("hello.txt", &hello("three"))]);
    let third = env.planner(&["ensure", "alpha"]);
    assert_eq!(third.code, 0, "{}", third.all());
    let [img1, img2, img3] = [&sha1, &sha2, &sha3].map(|s| env.image("alpha", s));
    let id1 = env.image_id(&img1).unwrap();
    let id3 = env.image_id(&img3).unwrap();
    assert_eq!(env.image_id(&env.latest("alpha")), Some(id3.clone()));

    // Foreign images under the same repository name: no planner labels, one with a tag that
    // looks pinned. gc must never touch them.
    let foreign = [
        format!("{}alpha:foreign", env.prefix),
        format!("{}alpha:0123456789ab", env.prefix),
    ];
    for f in &foreign {
        docker(&["tag", BASE_IMAGE, f]);
    }
    // A stale temp dir, one a live process is working in, and a malformed record.
    let store = Store::open(env.cache_path()).unwrap();
    let stale = env
        .cache_path()
        .join("tmp")
        .join(format!("{}.stale1", fake_key("stale")));
    std::fs::create_dir_all(stale.join("sub")).unwrap();
    std::fs::write(stale.join("sub/f"), b"partial").unwrap();
    let busy_key = fake_key("busy");
    let busy = env
        .cache_path()
        .join("tmp")
        .join(format!("{busy_key}.live1"));
    std::fs::create_dir_all(&busy).unwrap();
    let held = store.try_lock(&busy_key).unwrap().expect("lock is free");
    let bad_record = env
        .cache_path()
        .join("records")
        .join(format!("{}.json", fake_key("bad")));
    std::fs::write(&bad_record, b"{not json").unwrap();

    // Dry run: the report, and nothing removed or written.
    let before = tree(env.cache_path());
    let dry = env.planner(&["gc", "--keep", "1", "--dry-run", "--json"]);
    let doc = json(&dry);
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["dry_run"], true);
    let kept: Vec<&str> = doc["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["commit"].as_str().unwrap())
        .collect();
    assert_eq!(kept, [sha3.as_str()], "{}", dry.stdout);
    assert_eq!(doc["kept"][0]["latest"], true);
    assert_eq!(doc["kept"][0]["newest"], 1);
    let items = doc["items"].as_array().unwrap();
    let of_kind =
        |kind: &str| -> Vec<&Value> { items.iter().filter(|i| i["kind"] == kind).collect() };
    let mut tags: Vec<&str> = of_kind("image")
        .iter()
        .map(|i| i["tags"][0].as_str().unwrap())
        .collect();
    tags.sort();
    let mut want = vec![img1.as_str(), img2.as_str()];
    want.sort();
    assert_eq!(tags, want, "{}", dry.stdout);
    assert!(
        of_kind("image")
            .iter()
            .all(|i| i["status"] == "would-remove" && i["bytes"].as_u64().unwrap() > 0)
    );
    let mut co: Vec<&str> = of_kind("checkout")
        .iter()
        .map(|i| i["commit"].as_str().unwrap())
        .collect();
    co.sort();
    let mut want = vec![sha1.as_str(), sha2.as_str()];
    want.sort();
    assert_eq!(co, want);
    let temps = of_kind("temp-dir");
    assert_eq!(temps.len(), 2, "{}", dry.stdout);
    let status_of = |p: &Path| {
        temps
            .iter()
            .find(|t| t["path"] == p.to_str().unwrap())
            .map(|t| t["status"].as_str().unwrap().to_owned())
    };
    assert_eq!(status_of(&stale).as_deref(), Some("would-remove"));
    assert_eq!(status_of(&busy).as_deref(), Some("skipped"));
    let recs = of_kind("record");
    assert!(
        recs.iter()
            .any(|r| r["path"] == bad_record.to_str().unwrap())
    );
    assert!(
        recs.iter().all(|r| r["commit"] != sha3.as_str()),
        "the kept commit's records stay"
    );
    assert!(doc["freed_bytes"].as_u64().unwrap() > 0);
    let text = env.planner(&["gc", "--keep", "1", "--dry-run"]);
    assert_eq!(text.code, 0, "{}", text.all());
    assert!(
        text.stdout.contains("would free") && text.stdout.contains("dry run"),
        "{}",
        text.all()
    );
    assert!(
        text.stdout.contains(&img1) && text.stdout.contains(&img2),
        "{}",
        text.all()
    );
    eprintln!("--- gc --keep 1 --dry-run\n{}", text.stdout);
    assert_eq!(tree(env.cache_path()), before, "the dry run writes nothing");
    for img in [&img1, &img2, &img3] {
        assert!(env.image_id(img).is_some(), "dry run removed {img}");
    }

    // :latest moved back to commit 1, and a (stopped) container on commit 2's image: keep 1
    // keeps the newest (3) and what :latest names (1); image 2 is in use, so it is skipped,
    // while its checkout goes.
    docker(&["tag", &id1, &env.latest("alpha")]);
    let container = docker(&["create", "--network", "none", &img2, "true"])
        .trim()
        .to_owned();
    let run = env.planner(&["gc", "--keep", "1"]);
    docker(&["rm", &container]);
    assert_eq!(run.code, 0, "{}", run.all());
    eprintln!(
        "--- gc --keep 1 (latest on commit 1, container on commit 2)\n{}",
        run.stdout
    );
    assert!(
        env.image_id(&img1).is_some(),
        ":latest's image is kept\n{}",
        run.all()
    );
    assert!(
        checkout_dir(&env, &sha1).is_dir(),
        ":latest's checkout is kept"
    );
    assert!(env.image_id(&img3).is_some() && checkout_dir(&env, &sha3).is_dir());
    assert!(
        env.image_id(&img2).is_some(),
        "in use: skipped\n{}",
        run.all()
    );
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("skip") && l.contains(&img2) && l.contains("container")),
        "{}",
        run.all()
    );
    assert!(!checkout_dir(&env, &sha2).exists(), "{}", run.all());
    assert_eq!(
        records_of(env.cache_path(), &sha2),
        ["build", "tag-latest"],
        "records of the kept image stay, those of the removed checkout go"
    );
    assert!(!stale.exists(), "stale temp dir removed");
    assert!(busy.is_dir(), "a locked temp dir is left alone");
    assert!(!bad_record.exists(), "malformed record removed");
    for f in &foreign {
        assert!(env.image_id(f).is_some(), "foreign image {f} untouched");
    }
    drop(held);

    // Back to normal: ensure moves :latest to commit 3; keep 1 removes commits 1 and 2.
    let ensure = env.planner(&["ensure", "alpha"]);
    assert_eq!(ensure.code, 0, "{}", ensure.all());
    let run = env.planner(&["gc", "--keep", "1", "--json"]);
    let doc = json(&run);
    assert_eq!(doc["dry_run"], false);
    assert_eq!(doc["failed"], 0);
    assert_eq!(doc["removed"]["images"], 2, "{}", run.stdout);
    assert!(doc["freed_bytes"].as_u64().unwrap() > 0);
    assert!(env.image_id(&img1).is_none() && env.image_id(&img2).is_none());
    assert_eq!(env.image_id(&img3), Some(id3.clone()));
    assert_eq!(env.image_id(&env.latest("alpha")), Some(id3));
    assert!(!checkout_dir(&env, &sha1).exists() && checkout_dir(&env, &sha3).is_dir());
    assert!(!busy.exists(), "no longer locked: removed");
    assert!(records_of(env.cache_path(), &sha1).is_empty());
    assert!(records_of(env.cache_path(), &sha2).is_empty());
    assert_eq!(
        records_of(env.cache_path(), &sha3),
        [
            "build",
            "clone",
            "resolve-head",
            "tag-latest",
            "verify-dockerfile"
        ]
    );
    for f in &foreign {
        assert!(env.image_id(f).is_some(), "foreign image {f} untouched");
    }

    // Nothing left to do, and what stays is still warm.
    let again = env.planner(&["gc", "--keep", "1"]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(again.stdout.contains("freed 0 B"), "{}", again.all());
    let warm = env.planner(&["ensure", "alpha"]);
    assert_eq!(warm.code, 0, "{}", warm.all());
    assert!(!warm.stderr.contains(" started "), "{}", warm.all());
    assert_eq!(
        env.git.fetch_count("tpl"),
        3,
        "one fetch per commit, none after gc"
    );
}

#[test]
fn gc_takes_the_run_lock_exclusively() {
    let env = Env::new("ops-gclock");
    env.template("tpl");
    env.config(&env.runtime("alpha", "tpl"));
    let store = Store::open(env.cache_path()).unwrap();
    let lock = store
        .try_run_lock(RunLockMode::Shared)
        .unwrap()
        .expect("free");

    let busy = env.planner(&["gc", "--no-wait"]);
    assert_eq!(busy.code, 75, "{}", busy.all());
    assert!(busy.stderr.contains("run.lock"), "{}", busy.all());
    let dry = env.planner(&["gc", "--dry-run", "--no-wait"]);
    assert_eq!(dry.code, 0, "the dry run takes no lock\n{}", dry.all());

    let child = env
        .command(&["gc"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    drop(lock);
    let waited = harness::Run::from_output(child.wait_with_output().unwrap());
    assert_eq!(waited.code, 0, "{}", waited.all());
    assert!(
        waited
            .stderr
            .contains("waiting for another planner run (lock ")
            && waited.stderr.contains("run.lock"),
        "{}",
        waited.all()
    );
}

#[test]
fn gc_on_two_runtimes_sharing_one_build_deletes_the_old_image_once() {
    let env = Env::new("ops-gcshared");
    let sha1 = env.template("tpl");
    env.config(&(env.runtime("a", "tpl") + &env.runtime("b", "tpl")));
    assert_eq!(env.planner(&["ensure", "--all"]).code, 0);
    let old = env.image_id(&env.image("a", &sha1)).unwrap();
    assert_eq!(
        env.image_id(&env.image("b", &sha1)),
        Some(old.clone()),
        "one build"
    );
    let sha2 = env.git.commit("tpl", "main", &[("hello.txt", b"two\n")]);
    assert_eq!(env.planner(&["ensure", "--all"]).code, 0);

    let run = env.planner(&["gc", "--keep", "1", "--json"]);
    let doc = json(&run);
    let images: Vec<&Value> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "image")
        .collect();
    assert_eq!(
        images.len(),
        1,
        "one item for the shared image\n{}",
        run.stdout
    );
    assert_eq!(images[0]["image_id"], old);
    assert_eq!(images[0]["deletes_image"], true);
    assert_eq!(images[0]["runtimes"], serde_json::json!(["a", "b"]));
    assert_eq!(images[0]["status"], "removed");
    assert!(env.image_id(&old).is_none(), "deleted with its last tag");
    assert!(!checkout_dir(&env, &sha1).exists());
    assert!(checkout_dir(&env, &sha2).is_dir());
    for rt in ["a", "b"] {
        assert!(env.image_id(&env.image(rt, &sha2)).is_some());
        assert!(env.image_id(&env.latest(rt)).is_some());
    }
    assert!(records_of(env.cache_path(), &sha1).is_empty());
    let status = json(&env.planner(&["status", "--json"]));
    for r in status["runtimes"].as_array().unwrap() {
        assert_eq!(r["commit"], sha2);
        assert_eq!(r["image"]["present"], true);
        assert_eq!(r["latest"]["matches_commit"], true);
        assert_eq!(r["checkout"]["present"], true);
    }
}

/// An env whose runtime `r` was built at two commits: `gc --keep 1` removes the first.
fn built_twice(test: &str) -> (Env, String, String) {
    let env = Env::new(test);
    let sha1 = env.template("tpl");
    env.config(&env.runtime("r", "tpl"));
    assert_eq!(env.planner(&["ensure", "r"]).code, 0);
    let sha2 = env.git.commit("tpl", "main", &[("hello.txt", b"two\n")]);
    let second = env.planner(&["ensure", "r"]);
    assert_eq!(second.code, 0, "{}", second.all());
    (env, sha1, sha2)
}

#[test]
fn gc_works_while_other_clients_ask_the_engine_for_its_disk_usage() {
    // Docker 20.10 answers 500 "a disk usage operation is already running" to a disk usage
    // request while another is under way: two gcs (one a dry run that also measures the build
    // cache) and other clients asking at once.
    let (a, a1, a2) = built_twice("ops-gcdu-a");
    let (b, b1, _) = built_twice("ops-gcdu-b");
    let socket = std::env::var("DOCKER_HOST").unwrap_or_default();
    let socket = socket
        .strip_prefix("unix://")
        .expect("scripts/test.sh sets DOCKER_HOST to the private engine's unix socket");
    let load = support::disk_usage::DiskUsageLoad::start(Path::new(socket), Duration::from_secs(6));
    load.wait_until_contended();
    let spawn = |env: &Env, args: &[&str]| {
        env.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let real = spawn(&a, &["gc", "--keep", "1", "--json"]);
    let dry = spawn(
        &b,
        &["gc", "--keep", "1", "--json", "--dry-run", "--build-cache"],
    );
    let real = Run::from_output(real.wait_with_output().unwrap());
    let dry = Run::from_output(dry.wait_with_output().unwrap());
    let busy = load.stop();
    eprintln!("--- {busy} disk usage answers said another was running");
    for run in [&real, &dry] {
        assert!(!run.all().contains("already running"), "{}", run.all());
    }
    let doc = json(&real);
    assert_eq!(doc["removed"]["images"], 1, "{doc:#}");
    assert!(a.image_id(&a.image("r", &a1)).is_none(), "{}", real.all());
    assert!(a.image_id(&a.image("r", &a2)).is_some(), "{}", real.all());
    let doc = json(&dry);
    let images: Vec<&Value> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "image")
        .collect();
    assert_eq!(images.len(), 1, "{doc:#}");
    assert_eq!(images[0]["status"], "would-remove", "{doc:#}");
    assert!(images[0]["bytes"].as_u64().unwrap() > 0, "{doc:#}");
    assert!(doc["build_cache"]["error"].is_null(), "{doc:#}");
    assert!(
        b.image_id(&b.image("r", &b1)).is_some(),
        "a dry run removes nothing"
    );
}
