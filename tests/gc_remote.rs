//! `planner gc --remote --keep N` against a real registry (Debian's docker-registry on
//! 127.0.0.1) and the suite's engine: three commits of one runtime built through the shared
//! cache; a plain `gc` leaves the cache alone; the dry run predicts the real run; the entry
//! the runtime's current `s-` pointer names stays; a registry with deletes disabled is a
//! clear error. Run through scripts/test.sh.

use planner_test_support as support;

use std::process::Command;

use support::cache_registry::{disable_deletes, tags};
use support::harness::{BASE_IMAGE, Env};
use support::registry::{RegistryAuth, TestRegistry};
use support::rewrite_proxy::RewriteProxy;

/// A template whose build takes a RUN; `marker` makes each commit's content its own.
fn files(env: &Env, marker: &str) -> Vec<(&'static str, Vec<u8>)> {
    let dockerfile = format!("FROM {BASE_IMAGE}\nCOPY test-id.txt /id\nRUN cat /id > /copied\n");
    let id = format!("{}{marker} {}\n", env.prefix, std::process::id());
    vec![
        ("Dockerfile", dockerfile.into_bytes()),
        ("test-id.txt", id.into_bytes()),
    ]
}

fn borrowed<'a>(files: &'a [(&'static str, Vec<u8>)]) -> Vec<(&'static str, &'a [u8])> {
    files.iter().map(|(p, b)| (*p, b.as_slice())).collect()
}

/// runtimes.toml for runtime `name` (repo of the same name) with `[cache] registry = cache`.
fn config(env: &Env, name: &str, cache: &str) {
    let text = format!(
        "{}\n[cache]\nregistry = \"{cache}\"\n",
        env.runtime(name, name)
    );
    env.config(&text);
}

/// The build key planner shows for runtime `rt` at its branch head.
fn build_key(env: &Env, rt: &str) -> String {
    let plan = env.planner(&["plan", rt, "--format", "json"]);
    let json: serde_json::Value =
        serde_json::from_str(&plan.stdout).unwrap_or_else(|_| panic!("{}", plan.all()));
    let steps = json["steps"].as_array().expect("steps");
    let build = steps
        .iter()
        .find(|s| s["step"] == "build")
        .expect("a build step");
    build["key"].as_str().expect("a build key").to_owned()
}

/// Commits of `repo` built through the cache, one `ensure` each: (sha, k- tag) of each,
/// oldest first.
fn build_commits(env: &Env, repo: &str, n: usize) -> Vec<(String, String)> {
    let mut built = Vec::new();
    for i in 0..n {
        let f = files(env, &format!("{repo}-{i}"));
        let sha = match i {
            0 => env.git.create_repo(repo, &borrowed(&f)),
            _ => env.git.commit(repo, "main", &borrowed(&f)),
        };
        let run = env.planner(&["ensure", repo]);
        assert_eq!(run.code, 0, "{}", run.all());
        built.push((sha, format!("k-{}", build_key(env, repo))));
    }
    built
}

/// The k- tags of `tags`.
fn entries(tags: &[String]) -> Vec<String> {
    tags.iter()
        .filter(|t| t.starts_with("k-"))
        .cloned()
        .collect()
}

/// The `remote` object of a `gc --json` report: (reference, status) of each item.
fn remote_items(stdout: &str) -> Vec<(String, String)> {
    let doc: serde_json::Value =
        serde_json::from_str(stdout).unwrap_or_else(|_| panic!("{stdout}"));
    doc["remote"]["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a remote report\n{stdout}"))
        .iter()
        .map(|i| {
            let reference = i["reference"].as_str().unwrap().to_owned();
            (reference, i["status"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[test]
fn gc_remote_keeps_the_newest_n_and_the_current_pointers_entry() {
    let env = Env::new("gcremote");
    let reg = TestRegistry::start(RegistryAuth::None);
    let cache = format!("{}/planner-cache", reg.host());
    let name = "planner-cache/g1";
    config(&env, "g1", &cache);
    let commits = build_commits(&env, "g1", 3);
    let built = tags(&reg, name);
    let mut keys: Vec<String> = commits.iter().map(|(_, k)| k.clone()).collect();
    keys.sort();
    assert_eq!(entries(&built), keys, "one entry per commit: {built:?}");
    let shas: Vec<&String> = commits.iter().map(|(sha, _)| sha).collect();

    // The branch goes back to the second commit: its build is current, not the newest.
    let bare = env.git.root().join("g1.git");
    let moved = Command::new("git")
        .arg("-C")
        .arg(&bare)
        .args(["update-ref", "refs/heads/main", shas[1]])
        .status()
        .unwrap();
    assert!(moved.success());
    let back = env.planner(&["ensure", "g1"]);
    assert_eq!(back.code, 0, "{}", back.all());
    let current = env.image_id(&env.latest("g1"));
    assert_eq!(current, env.image_id(&env.image("g1", shas[1])));

    // A plain gc leaves the shared cache alone.
    let plain = env.planner(&["gc", "--keep", "1"]);
    assert_eq!(plain.code, 0, "{}", plain.all());
    assert_eq!(tags(&reg, name), built, "plain gc touched the cache");
    assert_eq!(reg.count_manifest("DELETE", name), 0);
    assert!(!plain.stdout.contains("remote:"), "{}", plain.all());

    // The dry run predicts what the real run removes, and removes nothing.
    let dry = env.planner(&["gc", "--remote", "--keep", "1", "--dry-run", "--json"]);
    assert_eq!(dry.code, 0, "{}", dry.all());
    let predicted = remote_items(&dry.stdout);
    assert_eq!(predicted.len(), 1, "only the oldest goes\n{}", dry.all());
    assert!(
        predicted.iter().all(|(_, s)| s == "would-remove"),
        "{predicted:?}"
    );
    assert_eq!(tags(&reg, name), built, "the dry run removed nothing");

    let run = env.planner(&["gc", "--remote", "--keep", "1", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let removed = remote_items(&run.stdout);
    let as_predicted: Vec<_> = predicted
        .iter()
        .map(|(r, _)| (r.clone(), "removed".to_owned()))
        .collect();
    assert_eq!(removed, as_predicted, "{}", run.all());
    let left = tags(&reg, name);
    let left_entries = entries(&left);
    assert_eq!(
        left_entries.len(),
        2,
        "the newest entry and the current pointer's: {left:?}"
    );
    let gone = removed[0].0.rsplit_once(':').unwrap().1.to_owned();
    assert_eq!(gone, commits[0].1, "the oldest build went");
    let mut kept = vec![commits[1].1.clone(), commits[2].1.clone()];
    kept.sort();
    assert_eq!(
        left_entries, kept,
        "the newest and the current pointer's stay"
    );
    assert_eq!(
        left.iter().filter(|t| t.starts_with("s-")).count(),
        2,
        "the removed build's pointer went with it: {left:?}"
    );

    // Text output says what went; a second run has nothing left to remove.
    let again = env.planner(&["gc", "--remote", "--keep", "1"]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(
        again
            .stdout
            .contains(&format!("shared cache {cache}: removed 0 entries, kept 2")),
        "{}",
        again.all()
    );
    assert_eq!(tags(&reg, name), left);
}

#[test]
fn gc_remote_on_a_registry_without_deletes_is_a_clear_error() {
    let env = Env::new("gcremoteno");
    let mut reg = TestRegistry::start(RegistryAuth::None);
    let cache = format!("{}/planner-cache", reg.host());
    config(&env, "n1", &cache);
    build_commits(&env, "n1", 2);
    let built = tags(&reg, "planner-cache/n1");
    disable_deletes(&mut reg);

    let run = env.planner(&["gc", "--remote", "--keep", "1"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let all = run.all();
    assert!(
        all.contains(&format!("registry {} does not allow deleting", reg.host())),
        "{all}"
    );
    assert!(all.contains("storage: delete: enabled: true"), "{all}");
    assert_eq!(tags(&reg, "planner-cache/n1"), built, "nothing removed");
}

#[test]
fn gc_remote_without_a_shared_cache_says_how_to_configure_one() {
    let env = Env::new("gcremotenone");
    env.config(&env.runtime("x1", "x1"));
    let run = env.planner(&["gc", "--remote", "--dry-run"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.all().contains("no shared cache ([cache] registry)"),
        "{}",
        run.all()
    );
    assert!(
        run.all().contains("help: add [cache] registry"),
        "{}",
        run.all()
    );
}

/// The manifest `name:reference` as the registry serves it: (content type, bytes).
fn get_manifest(reg: &TestRegistry, name: &str, reference: &str) -> (String, Vec<u8>) {
    let url = format!("{}/v2/{name}/manifests/{reference}", reg.base_url());
    let headers = [("accept", support::registry::ACCEPT_ALL)];
    let response = support::registry::http_request("GET", &url, &headers, None);
    assert_eq!(response.status, 200, "GET {url}: {response:?}");
    let content_type = response.header("content-type").unwrap().to_owned();
    (content_type, response.body)
}

#[test]
fn gc_remote_never_deletes_a_digest_a_kept_tag_names() {
    let env = Env::new("gcremoteshared");
    let reg = TestRegistry::start(RegistryAuth::None);
    let cache = format!("{}/planner-cache", reg.host());
    let name = "planner-cache/h1";
    config(&env, "h1", &cache);
    let commits = build_commits(&env, "h1", 2);
    let (old, newest) = (&commits[0].1, &commits[1].1);
    // A second k- tag on the old build's manifest: it ranks by its tag among equals, so
    // with --keep 2 it is kept while the old build's own tag is not.
    let twin = format!("k-{}", "f".repeat(64));
    let (content_type, body) = get_manifest(&reg, name, old);
    let put = reg.put_manifest(name, &twin, &content_type, body);
    assert_eq!(put.status, 201, "{put:?}");
    let before = tags(&reg, name);
    let digest = |tag: &str| {
        let head = reg.head_manifest(name, tag);
        head.header("docker-content-digest").unwrap().to_owned()
    };
    assert_eq!(digest(old), digest(&twin));

    let dry = env.planner(&["gc", "--remote", "--keep", "2", "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.all());
    assert!(
        dry.stdout
            .contains(&format!("also named by kept tag {cache}/h1:{twin}")),
        "the dry run says why the old entry stays\n{}",
        dry.all()
    );
    assert!(
        !dry.stdout.contains("remote: would remove"),
        "{}",
        dry.all()
    );
    let json = env.planner(&["gc", "--remote", "--keep", "2", "--dry-run", "--json"]);
    assert_eq!(remote_items(&json.stdout), [], "{}", json.all());
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let kept = doc["remote"]["kept"].as_array().unwrap();
    let spared = kept
        .iter()
        .find(|k| k["reference"] == format!("{cache}/h1:{old}"))
        .unwrap_or_else(|| panic!("the old entry is kept\n{}", json.stdout));
    let reason = spared["reason"].as_str().unwrap();
    assert!(reason.contains("also named by kept tag"), "{reason}");

    let run = env.planner(&["gc", "--remote", "--keep", "2"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(reg.count_manifest("DELETE", name), 0, "{}", run.all());
    assert_eq!(tags(&reg, name), before, "every tag stays");
    assert_eq!(reg.head_manifest(name, newest).status, 200);
}

/// Tag names no registry may list: a path out of the repository, a terminal escape, one too
/// long for the grammar.
fn hostile_tags() -> Vec<String> {
    vec![
        "k-/../../../other/repo".to_owned(),
        "k-\u{1b}]0;pwned\u{7}\u{1b}[2J".to_owned(),
        format!("k-{}", "a".repeat(200)),
    ]
}

#[test]
fn gc_remote_skips_tags_outside_the_tag_grammar_and_collects_the_rest() {
    let env = Env::new("gcremotehostile");
    let reg = TestRegistry::start(RegistryAuth::None);
    let name = "planner-cache/v1";
    config(&env, "v1", &format!("{}/planner-cache", reg.host()));
    let commits = build_commits(&env, "v1", 2);
    // The registry as a hostile one lists it: its tags, and names no registry may list.
    let proxy = RewriteProxy::rewriting(
        &reg.host(),
        Box::new(|target: &str, body: &[u8]| {
            if !target.contains("/tags/list") {
                return None;
            }
            let mut doc: serde_json::Value = serde_json::from_slice(body).ok()?;
            let tags = doc["tags"].as_array_mut()?;
            tags.extend(hostile_tags().into_iter().map(serde_json::Value::from));
            Some(serde_json::to_vec(&doc).unwrap())
        }),
    );
    let cache = format!("{}/planner-cache", proxy.host());
    config(&env, "v1", &cache);

    let run = env.planner(&["gc", "--remote", "--keep", "1"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let listed = proxy.requests();
    assert!(
        listed.iter().any(|r| r.target.contains("/tags/list")),
        "the listing went through the hostile server: {listed:?}"
    );
    let outside: Vec<_> = listed
        .iter()
        .filter(|r| !r.target.starts_with(&format!("/v2/{name}/")))
        .collect();
    assert_eq!(outside, Vec::<&_>::new(), "no request left the repository");
    let warnings = run.stderr.matches("not valid tag names").count();
    assert_eq!(warnings, 1, "one warning per listing\n{}", run.all());
    assert!(
        run.stderr.contains("k-/../../../other/repo"),
        "the warning names them\n{}",
        run.all()
    );
    assert!(
        !run.all().contains("\u{1b}]0;pwned") && !run.all().contains("\u{1b}[2J"),
        "printed inert\n{}",
        run.all()
    );
    let left = entries(&tags(&reg, name));
    assert_eq!(left, [commits[1].1.clone()], "the old entry was collected");
}
