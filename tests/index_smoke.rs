//! Smoke tests of the package-index test infrastructure (for `resolve-version`): the real
//! pypiserver and verdaccio start on 127.0.0.1, the helpers add releases, pre-releases and
//! wheels, publish and move `dist-tags.latest`, and what each server answers is pinned down
//! here (content types, redirects, auth, no caching) so a change of version shows. Start-up
//! and request times are printed (`--nocapture`), never asserted.

// A test shows what it checks in its output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use planner_test_support as support;

use std::process::Command;
use std::time::{Duration, Instant};

use sha2::Digest as _;
use support::index_proc::{probe, unique_name};
use support::npm_registry::{ABBREVIATED, NpmAuth, NpmRegistry, encode_name};
use support::pypi_index::{BASIC_REALM, PEP691_JSON, PypiIndex, anchors, dist_name, normalize};
use support::registry::HttpResponse;

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    println!("{what}: {:?}", start.elapsed());
    out
}

fn header<'a>(response: &'a HttpResponse, name: &str) -> &'a str {
    response.header(name).unwrap_or_default()
}

#[test]
fn pypiserver_lists_releases_pre_releases_and_wheels() {
    let index = timed("pypiserver start", PypiIndex::start);
    println!("pypiserver answered after {:?}", index.startup());
    let project = unique_name("Demo_Pkg");
    let files = [
        index.add(&project, "1.0"),
        index.add(&project, "1.1"),
        index.add_wheel(&project, "1.1"),
        index.add_pre(&project, "2.0rc1"),
    ];
    let name = dist_name(&project);
    assert_eq!(files[0], format!("{name}-1.0.tar.gz"));
    assert_eq!(files[2], format!("{name}-1.1-py3-none-any.whl"));

    let page = timed("GET simple page", || {
        index.get(&format!("/simple/{}/", normalize(&project)), &[])
    });
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(header(&page, "content-type"), "text/html; charset=UTF-8");
    let html = String::from_utf8(page.body.clone()).unwrap();
    let links = anchors(&html);
    let mut listed: Vec<&str> = links.iter().map(|(_, text)| text.as_str()).collect();
    listed.sort();
    let mut expected: Vec<&str> = files.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(listed, expected, "{html}");
    // Each href is an absolute path to the file with the sha256 of its bytes.
    for (href, text) in &links {
        let bytes = std::fs::read(index.file_path(&project, text)).unwrap();
        let digest: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(href, &format!("/packages/{text}#sha256={digest}"));
    }
    // The files are real archives: gzip and zip magic.
    let sdist = std::fs::read(index.file_path(&project, &files[0])).unwrap();
    assert_eq!(&sdist[..2], &[0x1f, 0x8b]);
    let wheel = std::fs::read(index.file_path(&project, &files[2])).unwrap();
    assert_eq!(&wheel[..4], b"PK\x03\x04");
    println!("pypiserver simple page:\n{html}");
}

#[test]
fn pypiserver_sees_added_and_removed_files_at_once() {
    let index = PypiIndex::shared();
    let project = unique_name("live");
    assert_eq!(index.listed(&project), Vec::<String>::new());
    let first = index.add(&project, "1.0");
    assert_eq!(index.listed(&project), vec![first.clone()]);
    let second = index.add(&project, "1.1");
    assert_eq!(
        timed("list after adding 1.1", || index.listed(&project)),
        vec![first.clone(), second.clone()]
    );
    index.remove_file(&project, &second);
    assert_eq!(index.listed(&project), vec![first]);
}

#[test]
fn pypiserver_answers_html_only_and_redirects_to_the_normalized_name() {
    let index = PypiIndex::shared();
    let project = unique_name("redir");
    index.add(&project, "1.0");
    let normalized = normalize(&project);

    // No PEP 691: a JSON Accept still gets HTML (and no PEP 592 attribute exists to see).
    let page = index.get(
        &format!("/simple/{normalized}/"),
        &[("accept", &format!("{PEP691_JSON}, text/html;q=0.01"))],
    );
    assert_eq!(page.status, 200);
    assert_eq!(header(&page, "content-type"), "text/html; charset=UTF-8");
    let html = String::from_utf8_lossy(&page.body);
    assert!(!html.contains("data-yanked") && !html.contains("pypi:repository-version"));

    // Not normalized: 301 to the full normalized URL.
    let upper = project.to_uppercase().replace('-', "_");
    let moved = index.get(&format!("/simple/{upper}/"), &[]);
    assert_eq!(moved.status, 301, "{moved:?}");
    assert_eq!(header(&moved, "location"), index.project_url(&project));
    // No trailing slash: 301 to the same spelling with one.
    let slash = index.get(&format!("/simple/{normalized}"), &[]);
    assert_eq!(slash.status, 301);
    assert_eq!(header(&slash, "location"), index.project_url(&project));
    // Unknown project: 404 (no fallback redirect to pypi.org).
    let missing = index.get(&format!("/simple/{}/", unique_name("absent")), &[]);
    assert_eq!(missing.status, 404);
    assert!(missing.header("location").is_none());
}

#[test]
fn pypiserver_with_basic_auth_wants_credentials() {
    let index = PypiIndex::start_with_basic_auth("reader", "s3cret-pw");
    let project = unique_name("private");
    index.add(&project, "1.0");
    let url = index.project_url(&project);
    let none = support::registry::http_request("GET", &url, &[], None);
    assert_eq!(none.status, 401);
    assert_eq!(
        header(&none, "www-authenticate"),
        format!("Basic realm=\"{BASIC_REALM}\"")
    );
    let wrong = support::registry::http_request(
        "GET",
        &url,
        &[("authorization", "Basic cmVhZGVyOndyb25n")],
        None,
    );
    assert_eq!(wrong.status, 403);
    assert_eq!(index.listed(&project).len(), 1);
    assert!(
        index
            .simple_url_with_credentials()
            .starts_with("http://reader:s3cret-pw@127.0.0.1:")
    );
}

#[test]
#[should_panic(expected = "pypiserver cannot yank")]
fn pypiserver_cannot_yank() {
    let index = PypiIndex::shared();
    let project = unique_name("noyank");
    let file = index.add(&project, "1.0");
    index.yank(&project, &file, "broken");
}

#[test]
fn simple_repository_serves_json_and_yanked_files() {
    let index = timed("simple-repository-server start", PypiIndex::start_json);
    println!(
        "simple-repository-server answered after {:?}",
        index.startup()
    );
    let project = unique_name("Json.Pkg");
    let normalized = normalize(&project);
    let old = index.add(&project, "1.0");
    let yanked = index.add(&project, "1.1");
    let wheel = index.add_wheel(&project, "1.1");
    let pre = index.add_pre(&project, "2.0rc1");
    index.yank(&project, &yanked, "broken build");

    let page = timed("GET simple page as JSON", || {
        index.get(
            &format!("/simple/{normalized}/"),
            &[("accept", PEP691_JSON)],
        )
    });
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(header(&page, "content-type"), PEP691_JSON);
    let doc: serde_json::Value = serde_json::from_slice(&page.body).unwrap();
    println!(
        "PEP 691 page: {}",
        serde_json::to_string_pretty(&doc).unwrap()
    );
    assert_eq!(doc["meta"]["api-version"], "1.1");
    assert_eq!(doc["name"], normalized.as_str());
    let files: Vec<(String, Option<String>)> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let name = f["filename"].as_str().unwrap().to_owned();
            (name, f["yanked"].as_str().map(str::to_owned))
        })
        .collect();
    let mut expected = vec![
        (old.clone(), None),
        (yanked.clone(), Some("broken build".to_owned())),
        (wheel.clone(), None),
        (pre.clone(), None),
    ];
    expected.sort();
    let mut got = files.clone();
    got.sort();
    assert_eq!(got, expected);
    let mut versions: Vec<&str> = doc["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    versions.sort();
    assert_eq!(versions, ["1.0", "1.1", "2.0rc1"]);

    // HTML by default, with the PEP 592 attribute and the PEP 629 meta.
    let html_page = index.get(&format!("/simple/{normalized}/"), &[]);
    assert_eq!(
        header(&html_page, "content-type"),
        "text/html; charset=utf-8"
    );
    let html = String::from_utf8(html_page.body.clone()).unwrap();
    assert!(html.contains(r#"<meta name="pypi:repository-version" content="1.1">"#));
    let line = html
        .lines()
        .find(|l| l.contains(&format!(">{yanked}<")))
        .unwrap();
    assert!(line.contains(r#"data-yanked="broken build""#), "{line}");
    assert_eq!(html.matches("data-yanked").count(), 1, "{html}");
    println!("HTML page:\n{html}");

    // A whole version yanked: both of its files.
    index.yank_version(&project, "1.0", "superseded");
    let doc: serde_json::Value = serde_json::from_slice(
        &index
            .get(
                &format!("/simple/{normalized}/"),
                &[("accept", PEP691_JSON)],
            )
            .body,
    )
    .unwrap();
    let yanked_now = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["yanked"].is_string())
        .count();
    assert_eq!(yanked_now, 2);

    // Redirects and a missing project.
    let moved = index.get(&format!("/simple/{}/", project.to_uppercase()), &[]);
    assert_eq!(moved.status, 301, "{moved:?}");
    // A relative Location (resolve it against the request URL).
    assert_eq!(header(&moved, "location"), format!("../{normalized}/"));
    let slash = index.get(&format!("/simple/{normalized}"), &[]);
    assert_eq!(slash.status, 307);
    assert_eq!(header(&slash, "location"), index.project_url(&project));
    let missing = index.get(&format!("/simple/{}/", unique_name("absent")), &[]);
    assert_eq!(missing.status, 404);
    // A new file shows at once.
    let newer = index.add(&project, "1.2");
    assert!(index.listed(&project).contains(&newer));
}

#[test]
fn verdaccio_moves_latest_as_versions_are_published() {
    let registry = timed("verdaccio start (shared)", || {
        NpmRegistry::shared(NpmAuth::Open)
    });
    println!("verdaccio answered after {:?}", registry.startup());
    let name = format!("@planner-test/{}", unique_name("tool"));
    assert_eq!(registry.latest(&name), None);
    timed("publish 1.0.0", || registry.publish(&name, "1.0.0"));
    assert_eq!(registry.latest(&name).as_deref(), Some("1.0.0"));
    registry.publish(&name, "1.1.0");
    assert_eq!(registry.latest(&name).as_deref(), Some("1.1.0"));
    // A pre-release under another tag leaves latest alone.
    registry.publish_tagged(&name, "2.0.0-rc.1", "next");
    assert_eq!(registry.latest(&name).as_deref(), Some("1.1.0"));
    // latest can move back (npm dist-tag add).
    registry.set_tag(&name, "latest", "1.0.0");
    assert_eq!(registry.latest(&name).as_deref(), Some("1.0.0"));

    let path = format!("/{}", encode_name(&name));
    let response = timed("GET abbreviated", || {
        registry.request("GET", &path, None, &[("accept", ABBREVIATED)], None)
    });
    assert_eq!(response.status, 200);
    assert_eq!(
        header(&response, "content-type"),
        "application/vnd.npm.install-v1+json; charset=utf-8"
    );
    let doc: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(doc["name"], name.as_str());
    assert_eq!(doc["dist-tags"]["next"], "2.0.0-rc.1");
    let versions: Vec<&str> = doc["versions"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(versions, ["1.0.0", "1.1.0", "2.0.0-rc.1"]);
    println!(
        "abbreviated GET {path}: {:?}\n{}",
        response.headers,
        serde_json::to_string_pretty(&doc).unwrap()
    );
    // The ETag revalidates.
    let etag = header(&response, "etag").to_owned();
    assert!(etag.starts_with('"'), "a strong ETag: {etag}");
    let again = registry.request(
        "GET",
        &path,
        None,
        &[("accept", ABBREVIATED), ("if-none-match", &etag)],
        None,
    );
    assert_eq!(again.status, 304);
    // Upper-case %2F and an unencoded slash name the same package.
    for other in [name.replacen('/', "%2F", 1), name.clone()] {
        let r = registry.request(
            "GET",
            &format!("/{other}"),
            None,
            &[("accept", ABBREVIATED)],
            None,
        );
        assert_eq!(r.status, 200, "GET /{other}");
    }
    // Without the abbreviated Accept: the full document, as application/json.
    let full = registry.request("GET", &path, None, &[], None);
    assert_eq!(
        header(&full, "content-type"),
        "application/json; charset=utf-8"
    );
    // Republishing a version is refused.
    assert_eq!(registry.try_publish(&name, "1.1.0", "latest").status, 409);
    assert_eq!(registry.latest(&name).as_deref(), Some("1.0.0"));
    let missing = registry.request(
        "GET",
        &format!("/{}", encode_name(&unique_name("absent"))),
        None,
        &[("accept", ABBREVIATED)],
        None,
    );
    assert_eq!(missing.status, 404);
}

#[test]
fn verdaccio_token_mode_wants_a_token_to_read() {
    let registry = timed("verdaccio start (token mode)", || {
        NpmRegistry::shared(NpmAuth::Token)
    });
    let name = unique_name("secret-tool");
    registry.publish(&name, "3.1.4");
    let path = format!("/{}", encode_name(&name));
    let accept = [("accept", ABBREVIATED)];
    let anonymous = registry.request("GET", &path, None, &accept, None);
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    let wrong = registry.request("GET", &path, Some("not-a-token"), &accept, None);
    assert_eq!(wrong.status, 401);
    let reader = registry.add_user(&unique_name("reader"), "reader-pw-1");
    let ok = registry.request("GET", &path, Some(&reader), &accept, None);
    assert_eq!(ok.status, 200);
    let doc: serde_json::Value = serde_json::from_slice(&ok.body).unwrap();
    assert_eq!(doc["dist-tags"]["latest"], "3.1.4");
    let npmrc = registry.npmrc(Some(&reader));
    assert!(npmrc.contains(&format!(
        "//127.0.0.1:{}/:_authToken={reader}",
        registry.port()
    )));
    // The registry's log shows the request and that it carried credentials (no value).
    let seen: Vec<_> = registry
        .requests()
        .into_iter()
        .filter(|r| r.url == path && r.method == "GET")
        .collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(
        seen.iter().map(|r| r.authorized).collect::<Vec<_>>(),
        [false, true, true]
    );
    assert!(seen.iter().all(|r| r.accept == ABBREVIATED));
}

/// Not a test of its own: `servers_die_with_the_test_process` runs it in a child process,
/// which starts the shared servers, prints where they are and aborts.
#[test]
#[ignore = "run by servers_die_with_the_test_process"]
fn child_starts_servers_and_aborts() {
    if std::env::var_os("PLANNER_INDEX_SMOKE_CHILD").is_none() {
        return;
    }
    let pypi = PypiIndex::shared();
    let json = PypiIndex::shared_json();
    let npm = NpmRegistry::shared(NpmAuth::Open);
    println!(
        "PYPI {} JSON {} NPM {}",
        pypi.base_url(),
        json.base_url(),
        npm.url()
    );
    std::process::abort();
}

#[test]
fn servers_die_with_the_test_process() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_starts_servers_and_aborts",
            "--ignored",
            "--nocapture",
        ])
        .env("PLANNER_INDEX_SMOKE_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "the child aborts: {out:?}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("PYPI "))
        .unwrap_or_else(|| panic!("the child printed no ports: {out:?}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let (pypi, npm) = (
        format!("{}/simple/", words[1]),
        format!("{}-/ping", words[3]),
    );
    // The guarding shells kill both servers once the child's pipe closes.
    let start = Instant::now();
    while probe(&pypi).is_some() || probe(&npm).is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "a server outlived its aborted test process: {line}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "both servers gone {:?} after the child aborted",
        start.elapsed()
    );
}
