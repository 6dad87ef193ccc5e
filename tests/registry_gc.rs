//! End to end, `planner gc` of registry runtimes: the real binary against a real OCI registry
//! (Debian's docker-registry on 127.0.0.1, open) and the real Docker engine. Run through
//! scripts/test.sh.

// A test shows the reports it checks in its output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use planner_test_support as support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::harness::{BASE_IMAGE, Env, Run, docker, image_id};
use support::registry::{PushedImage, RegistryAuth, TestRegistry};

/// A test's world: the git server and cache dir of [`Env`] and an open registry.
struct RegEnv {
    env: Env,
    reg: TestRegistry,
    docker_config: tempfile::TempDir,
}

impl RegEnv {
    fn new(test: &str) -> RegEnv {
        RegEnv {
            env: Env::new(test),
            reg: TestRegistry::start(RegistryAuth::None),
            docker_config: tempfile::tempdir().unwrap(),
        }
    }

    /// Pushes runtime `rt`'s image at `:latest` with a fresh marker.
    fn push(&self, rt: &str, what: &str) -> PushedImage {
        let marker = format!("{}{what} {}", self.env.prefix, std::process::id());
        self.reg
            .push_image(&format!("workspace-template-{rt}"), "latest", &marker)
    }

    /// Writes runtimes.toml: registry mode from the test registry, plus `extra`.
    fn config(&self, extra: &str) -> PathBuf {
        let text = format!(
            "[defaults]\nimage_prefix = \"{}\"\nplatform = \"linux/amd64\"\nbuilder = \"classic\"\nsource = \"registry\"\nregistry = \"{}\"\nrepo_prefix = \"{}\"\n\n[git]\ntoken_env = \"PLANNER_GIT_TOKEN\"\nallow_insecure_http = true\n\n{extra}",
            self.env.prefix,
            self.reg.host(),
            self.env.git.base_url(),
        );
        let path = self.env.dir.path().join("runtimes.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn planner(&self, args: &[&str]) -> Run {
        let mut cmd = self.env.command(args);
        cmd.env("DOCKER_CONFIG", self.docker_config.path())
            .env_remove("PLANNER_REGISTRY");
        Run::from_output(cmd.output().unwrap())
    }

    /// `planner ensure` that must succeed.
    fn ensure(&self, rt: &str) {
        let run = self.planner(&["ensure", rt]);
        assert_eq!(run.code, 0, "{}", run.all());
    }

    fn pinned(&self, rt: &str, digest: &str) -> String {
        let hex = digest.strip_prefix("sha256:").unwrap();
        format!("{}{rt}:{}", self.env.prefix, &hex[..12])
    }

    fn registry_ref(&self, rt: &str) -> String {
        format!("{}/workspace-template-{rt}:latest", self.reg.host())
    }

    /// The digests of the cache dir's records of `kind`.
    fn record_digests(&self, kind: &str) -> Vec<String> {
        let mut out: Vec<String> = records(self.env.cache_path())
            .into_iter()
            .filter(|r| r["kind"] == kind)
            .filter_map(|r| r["digest"].as_str().map(str::to_owned))
            .collect();
        out.sort();
        out
    }
}

impl Drop for RegEnv {
    fn drop(&mut self) {
        // Pulled images carry the registry reference too; untag those (the env removes its own).
        let out = docker(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
        let prefix = format!("{}/", self.reg.host());
        let mine: Vec<&str> = out.lines().filter(|l| l.starts_with(&prefix)).collect();
        if !mine.is_empty() {
            let mut args = vec!["image", "rm", "-f"];
            args.extend(mine);
            let _ = std::process::Command::new("docker").args(&args).output();
        }
    }
}

/// Every record in the cache dir, parsed.
fn records(cache: &Path) -> Vec<Value> {
    let Ok(rd) = std::fs::read_dir(cache.join("records")) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect()
}

/// Whether the engine holds an image with this ID (under any name or none).
fn engine_has(id: &str) -> bool {
    std::process::Command::new("docker")
        .args(["image", "inspect", id])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn json(run: &Run) -> Value {
    assert_eq!(run.code, 0, "{}", run.all());
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{}", run.all()))
}

/// The image items of a gc JSON document whose tags include `tag`.
fn items_tagged<'a>(doc: &'a Value, tag: &str) -> Vec<&'a Value> {
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "image")
        .filter(|i| i["tags"].as_array().unwrap().iter().any(|t| t == tag))
        .collect()
}

#[test]
fn gc_keeps_the_newest_pulled_digests_and_latest_and_removes_the_older_ones() {
    let r = RegEnv::new("rgc-keep");
    r.config("[runtimes.alpha]\n");
    let pushed: Vec<PushedImage> = ["v1", "v2", "v3"]
        .iter()
        .map(|v| {
            let p = r.push("alpha", v);
            r.ensure("alpha");
            p
        })
        .collect();
    let pinned: Vec<String> = pushed
        .iter()
        .map(|p| r.pinned("alpha", &p.digest))
        .collect();
    for (p, tag) in pushed.iter().zip(&pinned) {
        assert_eq!(image_id(tag).as_deref(), Some(p.image_id.as_str()));
    }
    // The user's own image under a tag that looks pinned, with no record: never planner's.
    let fake = format!("{}alpha:abcdef012345", r.env.prefix);
    docker(&["tag", BASE_IMAGE, &fake]);
    let base_id = image_id(BASE_IMAGE).unwrap();

    let dry = json(&r.planner(&["gc", "--keep", "1", "--dry-run", "--json"]));
    let kept = dry["kept"].as_array().unwrap();
    assert_eq!(kept.len(), 1, "{dry:#}");
    assert_eq!(kept[0]["digest"], pushed[2].digest.as_str(), "{dry:#}");
    assert_eq!(
        (&kept[0]["newest"], &kept[0]["latest"]),
        (&1.into(), &true.into())
    );
    for (p, tag) in pushed.iter().zip(&pinned).take(2) {
        let items = items_tagged(&dry, tag);
        assert_eq!(items.len(), 1, "{tag}: {dry:#}");
        assert_eq!(items[0]["status"], "would-remove", "{dry:#}");
        assert_eq!(items[0]["digest"], p.digest.as_str(), "{dry:#}");
        assert_eq!(items[0]["deletes_image"], true, "{dry:#}");
    }
    assert!(items_tagged(&dry, &pinned[2]).is_empty(), "{dry:#}");
    assert!(items_tagged(&dry, &fake).is_empty(), "{dry:#}");
    assert!(
        pinned.iter().all(|t| image_id(t).is_some()),
        "dry run removed nothing"
    );

    let text = r.planner(&["gc", "--keep", "1"]);
    assert_eq!(text.code, 0, "{}", text.all());
    eprintln!("--- gc --keep 1\n{}", text.stdout);
    for (p, tag) in pushed.iter().zip(&pinned).take(2) {
        assert!(image_id(tag).is_none(), "{tag} removed\n{}", text.all());
        assert!(
            !engine_has(&p.image_id),
            "image of {tag} deleted\n{}",
            text.all()
        );
    }
    let newest = pushed[2].image_id.as_str();
    assert_eq!(image_id(&pinned[2]).as_deref(), Some(newest));
    assert_eq!(image_id(&r.env.latest("alpha")).as_deref(), Some(newest));
    assert_eq!(image_id(&r.registry_ref("alpha")).as_deref(), Some(newest));
    assert_eq!(
        image_id(&fake).as_deref(),
        Some(base_id.as_str()),
        "not planner's"
    );
    assert_eq!(
        r.record_digests("pull"),
        [pushed[2].digest.clone()],
        "the pull records of removed images go"
    );
    assert_eq!(
        r.record_digests("resolve-digest"),
        [pushed[2].digest.clone()]
    );
    assert_eq!(
        r.record_digests("tag-latest"),
        [pushed[2].digest.clone()],
        "the kept image's tag-latest record stays"
    );

    let again = json(&r.planner(&["gc", "--keep", "1", "--json"]));
    assert_eq!(again["removed"]["images"], 0, "{again:#}");
    assert_eq!(again["removed"]["records"], 0, "{again:#}");
    assert_eq!(image_id(&fake).as_deref(), Some(base_id.as_str()));
    let warm = r.planner(&["ensure", "alpha"]);
    assert_eq!(warm.code, 0, "{}", warm.all());
    assert_eq!(
        warm.count("pull", "skipped"),
        1,
        "still warm: {}",
        warm.all()
    );
}

#[test]
fn a_container_on_an_old_pulled_image_blocks_its_removal_in_a_mixed_config() {
    let r = RegEnv::new("rgc-busy");
    let sha1 = r.env.template("tpl");
    r.config(&format!(
        "[runtimes.alpha]\n[runtimes.beta]\nsource = \"git\"\nrepo = \"{}\"\n",
        r.env.git.url("tpl")
    ));
    let v1 = r.push("alpha", "v1");
    let all = r.planner(&["ensure", "--all"]);
    assert_eq!(all.code, 0, "{}", all.all());
    let v2 = r.push("alpha", "v2");
    let sha2 = r
        .env
        .git
        .commit("tpl", "main", &[("hello.txt", b"two\n".as_slice())]);
    let all = r.planner(&["ensure", "--all"]);
    assert_eq!(all.code, 0, "{}", all.all());
    let old = r.pinned("alpha", &v1.digest);
    let container = docker(&["create", "--network", "none", &old, "true"])
        .trim()
        .to_owned();
    let name = docker(&["inspect", "-f", "{{.Name}}", &container]);
    let name = name.trim().trim_start_matches('/');

    let run = r.planner(&["gc", "--keep", "1"]);
    assert_eq!(run.code, 0, "{}", run.all());
    eprintln!(
        "--- gc --keep 1 (container on the old pull)\n{}",
        run.stdout
    );
    assert_eq!(
        image_id(&old).as_deref(),
        Some(v1.image_id.as_str()),
        "in use: kept"
    );
    assert!(
        run.stdout.lines().any(|l| l.starts_with("skip")
            && l.contains(&old)
            && l.contains(&format!("container {name}"))),
        "{}",
        run.all()
    );
    assert!(
        r.record_digests("pull").contains(&v1.digest),
        "its record stays"
    );
    assert!(
        image_id(&r.env.image("beta", &sha1)).is_none(),
        "git runtime gc'ed too"
    );
    assert!(image_id(&r.env.image("beta", &sha2)).is_some());
    assert_eq!(
        image_id(&r.pinned("alpha", &v2.digest)).as_deref(),
        Some(v2.image_id.as_str())
    );

    docker(&["rm", &container]);
    let doc = json(&r.planner(&["gc", "--keep", "1", "--json"]));
    assert_eq!(doc["removed"]["images"], 1, "{doc:#}");
    assert!(image_id(&old).is_none() && !engine_has(&v1.image_id));
    assert_eq!(r.record_digests("pull"), [v2.digest.as_str()]);
}

#[test]
fn a_forged_pinned_tag_is_left_the_registry_reference_goes_with_its_image_a_user_tag_keeps_one() {
    let r = RegEnv::new("rgc-names");
    r.config("[runtimes.alpha]\n");
    let pushed: Vec<PushedImage> = ["v1", "v2", "v3", "v4"]
        .iter()
        .map(|v| {
            let p = r.push("alpha", v);
            r.ensure("alpha");
            p
        })
        .collect();
    let pinned: Vec<String> = pushed
        .iter()
        .map(|p| r.pinned("alpha", &p.digest))
        .collect();
    // v1: its pinned tag now names another image (its record still says v1's).
    docker(&["tag", BASE_IMAGE, &pinned[0]]);
    let base_id = image_id(BASE_IMAGE).unwrap();
    // v2: the registry reference moved back onto it.
    docker(&["tag", &pushed[1].image_id, &r.registry_ref("alpha")]);
    // v3: the user's own tag on it.
    let mine = format!("{}mine:keep", r.env.prefix);
    docker(&["tag", &pushed[2].image_id, &mine]);

    let dry = json(&r.planner(&["gc", "--keep", "1", "--dry-run", "--json"]));
    assert!(items_tagged(&dry, &pinned[0]).is_empty(), "{dry:#}");
    let v2 = items_tagged(&dry, &pinned[1]);
    let tags: Vec<&str> = v2[0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let v2_by_digest = pushed[1].pinned();
    assert_eq!(
        tags,
        [pinned[1].as_str(), &r.registry_ref("alpha"), &v2_by_digest],
        "{dry:#}"
    );
    assert_eq!(v2[0]["deletes_image"], true);
    let v3 = items_tagged(&dry, &pinned[2]);
    assert_eq!(v3[0]["tags"].as_array().unwrap().len(), 1, "{dry:#}");
    assert_eq!(v3[0]["deletes_image"], false, "{dry:#}");
    assert!(v3[0]["reason"].as_str().unwrap().contains(&mine), "{dry:#}");

    let run = r.planner(&["gc", "--keep", "1"]);
    assert_eq!(run.code, 0, "{}", run.all());
    eprintln!(
        "--- gc --keep 1 (forged, reference, user tag)\n{}",
        run.stdout
    );
    assert_eq!(
        image_id(&pinned[0]).as_deref(),
        Some(base_id.as_str()),
        "forged: left"
    );
    assert!(engine_has(&pushed[0].image_id), "v1 not proven: left");
    assert!(
        !engine_has(&pushed[1].image_id),
        "v2 deleted with its names"
    );
    assert!(image_id(&r.registry_ref("alpha")).is_none());
    assert!(image_id(&pinned[2]).is_none());
    assert_eq!(
        image_id(&mine).as_deref(),
        Some(pushed[2].image_id.as_str())
    );
    assert!(
        docker(&["image", "inspect", "-f", "{{json .RepoDigests}}", &mine])
            .contains(&pushed[2].digest),
        "the image the user keeps keeps its digest reference"
    );
    let mut left = vec![
        pushed[0].digest.clone(),
        pushed[2].digest.clone(),
        pushed[3].digest.clone(),
    ];
    left.sort();
    assert_eq!(
        r.record_digests("pull"),
        left,
        "records of images still there stay"
    );

    // The next ensure finds the kept image and puts the registry reference back on it.
    r.ensure("alpha");
    assert_eq!(
        image_id(&r.registry_ref("alpha")).as_deref(),
        Some(pushed[3].image_id.as_str())
    );
    let again = json(&r.planner(&["gc", "--keep", "1", "--json"]));
    assert_eq!(again["removed"]["images"], 0, "{again:#}");
}
