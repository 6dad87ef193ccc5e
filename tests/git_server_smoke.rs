//! Smoke tests of the test git host (`support::git_server`) with the real git CLI and
//! raw HTTP: clone, ls-remote, token protection, request logging, forced failures, shallow
//! fetch of an older commit over protocol v2, and robustness against malformed requests.

use planner_test_support as support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use planner::git::pktline;
use support::git_server::GitServer;

const TOKEN: &str = "smoke-token-5d1e";

/// git with an isolated config, no prompts, protocol v2, and `extra` config pairs via env.
fn git(home: &Path, dir: &Path, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("git");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_COUNT", extra.len().to_string());
    for (i, (key, value)) in extra.iter().enumerate() {
        cmd.env(format!("GIT_CONFIG_KEY_{i}"), key)
            .env(format!("GIT_CONFIG_VALUE_{i}"), value);
    }
    cmd.args(["-c", "protocol.version=2"])
        .args(args)
        .output()
        .expect("run git")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "git failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn auth_header(token: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("x:{token}"));
    format!("Authorization: Basic {b64}")
}

/// Sends raw bytes, returns (status, head, body) of the answer.
fn raw_http(server: &GitServer, request: &[u8]) -> (u16, String, Vec<u8>) {
    let addr = server
        .base_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&answer[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, head, answer[end + 4..].to_vec())
}

fn post(path: &str, extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-git-upload-pack-request\r\n\
         Git-Protocol: version=2\r\nContent-Length: {}\r\n{extra_headers}\r\n",
        body.len()
    );
    [head.as_bytes(), body].concat()
}

#[test]
fn ls_remote_and_clone_work_over_protocol_v2() {
    let server = GitServer::start();
    let home = tempfile::tempdir().unwrap();
    let sha = server.create_repo(
        "tpl",
        &[("Dockerfile", b"FROM scratch\n"), ("src/a.txt", b"a\n")],
    );
    assert!(pktline::is_object_id(&sha), "{sha}");
    assert!(server.root().join("tpl.git").is_dir());

    let refs = ok(&git(
        home.path(),
        home.path(),
        &["ls-remote", &server.url("tpl")],
        &[],
    ));
    assert!(refs.contains(&format!("{sha}\tHEAD")), "{refs}");
    assert!(refs.contains(&format!("{sha}\trefs/heads/main")), "{refs}");
    assert_eq!(server.fetch_count("tpl"), 0, "ls-remote fetches nothing");

    ok(&git(
        home.path(),
        home.path(),
        &["clone", "-q", &server.url("tpl"), "out"],
        &[],
    ));
    let checkout = home.path().join("out");
    assert_eq!(std::fs::read(checkout.join("src/a.txt")).unwrap(), b"a\n");
    assert_eq!(server.fetch_count("tpl"), 1);

    let log = server.requests();
    let get = &log[0];
    assert_eq!(
        (get.method.as_str(), get.path.as_str()),
        ("GET", "/tpl/info/refs")
    );
    assert_eq!(get.query, "service=git-upload-pack");
    assert_eq!(get.git_protocol.as_deref(), Some("version=2"));
    let commands: Vec<_> = log.iter().filter_map(|r| r.command.as_deref()).collect();
    assert!(
        commands.contains(&"ls-refs") && commands.contains(&"fetch"),
        "{log:?}"
    );
    assert!(
        log.iter().all(|r| r.status == 200 && r.authorized),
        "{log:?}"
    );
    server.clear_log();
    assert!(server.requests().is_empty());
}

#[test]
fn commits_branches_and_symlinks_land_in_the_bare_repo() {
    let server = GitServer::start();
    let home = tempfile::tempdir().unwrap();
    let first = server.create_repo("tpl", &[("hello.txt", b"one\n")]);
    let second = server.commit("tpl", "main", &[("hello.txt", b"two\n")]);
    let feature = server.commit("tpl", "feature", &[("extra.txt", b"x\n")]);
    let link = server.add_symlink("tpl", "main", "link", "hello.txt");
    assert_eq!([&first, &second, &feature, &link].map(|s| s.len()), [40; 4]);

    let refs = ok(&git(
        home.path(),
        home.path(),
        &["ls-remote", &server.url("tpl")],
        &[],
    ));
    assert!(refs.contains(&format!("{link}\trefs/heads/main")), "{refs}");
    assert!(
        refs.contains(&format!("{feature}\trefs/heads/feature")),
        "{refs}"
    );

    ok(&git(
        home.path(),
        home.path(),
        &["clone", "-q", &server.url("tpl"), "out"],
        &[],
    ));
    let out = home.path().join("out");
    assert_eq!(std::fs::read(out.join("hello.txt")).unwrap(), b"two\n");
    assert_eq!(
        std::fs::read_link(out.join("link")).unwrap(),
        Path::new("hello.txt")
    );
    assert!(
        !out.join("extra.txt").exists(),
        "feature commit stays on its branch"
    );
    let parent = ok(&git(
        home.path(),
        &out,
        &["rev-parse", &format!("{feature}^")],
        &[],
    ));
    assert_eq!(parent.trim(), second, "a new branch starts from main");
}

#[test]
fn protected_repo_needs_the_token() {
    let server = GitServer::start();
    let home = tempfile::tempdir().unwrap();
    let sha = server.create_repo("private", &[("a", b"a")]);
    server.require_token("private", TOKEN);
    let url = server.url("private");

    let refused = git(home.path(), home.path(), &["ls-remote", &url], &[]);
    assert!(!refused.status.success());
    let last = server.requests().pop().unwrap();
    assert_eq!((last.status, last.authorized), (401, false), "{last:?}");
    let (status, head, _) = raw_http(
        &server,
        b"GET /private/info/refs?service=git-upload-pack HTTP/1.1\r\n\r\n",
    );
    assert_eq!(status, 401);
    assert!(
        head.contains("WWW-Authenticate: Basic realm=\"planner-test\""),
        "{head}"
    );

    let wrong = auth_header("nope");
    let denied = git(
        home.path(),
        home.path(),
        &["ls-remote", &url],
        &[("http.extraHeader", &wrong)],
    );
    assert!(!denied.status.success());

    let header = auth_header(TOKEN);
    let extra = [("http.extraHeader", header.as_str())];
    let refs = ok(&git(home.path(), home.path(), &["ls-remote", &url], &extra));
    assert!(refs.contains(&format!("{sha}\trefs/heads/main")), "{refs}");
    ok(&git(
        home.path(),
        home.path(),
        &["clone", "-q", &url, "out"],
        &extra,
    ));
    assert_eq!(server.fetch_count("private"), 1);
    let last = server.requests().pop().unwrap();
    assert_eq!((last.status, last.authorized), (200, true), "{last:?}");
}

#[test]
fn raw_v2_posts_are_logged_with_their_command() {
    let server = GitServer::start();
    let sha = server.create_repo("tpl", &[("a", b"a")]);

    let (status, head, body) = raw_http(
        &server,
        &post(
            "/tpl/git-upload-pack",
            "",
            &pktline::ls_refs_request("refs/heads/main"),
        ),
    );
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("Content-Type: application/x-git-upload-pack-result"),
        "{head}"
    );
    assert_eq!(
        pktline::parse_ls_refs(&body).unwrap(),
        [("refs/heads/main".to_owned(), sha.clone())]
    );

    let mut fetch = pktline::encode(b"command=fetch\n");
    fetch.extend_from_slice(b"0001");
    fetch.extend(pktline::encode(format!("want {sha}\n").as_bytes()));
    fetch.extend(pktline::encode(b"done\n"));
    fetch.extend_from_slice(b"0000");
    let (status, _, body) = raw_http(&server, &post("/tpl/git-upload-pack", "", &fetch));
    assert_eq!(status, 200);
    assert!(
        body.windows(4).any(|w| w == b"PACK"),
        "a packfile came back"
    );

    // The same fetch, chunked.
    let chunked = format!("{:x}\r\n", fetch.len()).into_bytes();
    let chunked = [&chunked[..], &fetch, b"\r\n0\r\n\r\n"].concat();
    let head = "POST /tpl/git-upload-pack HTTP/1.1\r\nGit-Protocol: version=2\r\nTransfer-Encoding: chunked\r\n\
                Content-Type: application/x-git-upload-pack-request\r\n\r\n";
    let (status, _, _) = raw_http(&server, &[head.as_bytes(), &chunked].concat());
    assert_eq!(status, 200);

    let commands: Vec<_> = server.requests().into_iter().map(|r| r.command).collect();
    let expected = [Some("ls-refs"), Some("fetch"), Some("fetch")].map(|c| c.map(str::to_owned));
    assert_eq!(commands, expected);
    assert_eq!(server.fetch_count("tpl"), 2);
}

#[test]
fn set_fail_forces_the_status_until_cleared() {
    let server = GitServer::start();
    let home = tempfile::tempdir().unwrap();
    server.create_repo("tpl", &[("a", b"a")]);
    server.set_fail("tpl", Some(500));
    let (status, _, _) = raw_http(
        &server,
        b"GET /tpl/info/refs?service=git-upload-pack HTTP/1.1\r\n\r\n",
    );
    assert_eq!(status, 500);
    assert!(
        !git(
            home.path(),
            home.path(),
            &["ls-remote", &server.url("tpl")],
            &[]
        )
        .status
        .success()
    );
    assert!(server.requests().iter().all(|r| r.status == 500));
    server.set_fail("tpl", None);
    ok(&git(
        home.path(),
        home.path(),
        &["ls-remote", &server.url("tpl")],
        &[],
    ));
}

#[test]
fn shallow_fetch_of_an_older_commit_works_over_v2() {
    let server = GitServer::start();
    let home = tempfile::tempdir().unwrap();
    let old = server.create_repo("tpl", &[("hello.txt", b"old\n")]);
    server.commit("tpl", "main", &[("hello.txt", b"new\n")]);
    let work = home.path().join("w");
    std::fs::create_dir(&work).unwrap();
    ok(&git(home.path(), &work, &["init", "-q"], &[]));
    ok(&git(
        home.path(),
        &work,
        &["fetch", "-q", "--depth=1", &server.url("tpl"), &old],
        &[],
    ));
    ok(&git(
        home.path(),
        &work,
        &["checkout", "-q", "--detach", &old],
        &[],
    ));
    assert_eq!(std::fs::read(work.join("hello.txt")).unwrap(), b"old\n");
    let fetches: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.command.as_deref() == Some("fetch"))
        .collect();
    assert_eq!(fetches.len(), 1);
    assert_eq!(fetches[0].git_protocol.as_deref(), Some("version=2"));
}

/// Adds `count` root commits, one per branch `bulk-<i>`, straight into the bare repo.
fn bulk_branches(server: &GitServer, repo: &str, count: usize) {
    let mut stream = String::new();
    for i in 0..count {
        let msg = format!("bulk {i}\n");
        stream.push_str(&format!(
            "commit refs/heads/bulk-{i}\ncommitter t <t@x> 0 +0000\ndata {}\n{msg}\n",
            msg.len()
        ));
    }
    let bare = server.root().join(format!("{repo}.git"));
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .env("GIT_DIR", &bare)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stream.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

fn fetch_all_branches(server: &GitServer, home: &Path, extra: &[(&str, &str)]) -> usize {
    let work = home.join("w");
    std::fs::create_dir(&work).unwrap();
    ok(&git(home, &work, &["init", "-q"], &[]));
    let spec = "+refs/heads/*:refs/remotes/o/*";
    ok(&git(
        home,
        &work,
        &["fetch", "-q", &server.url("tpl"), spec],
        extra,
    ));
    ok(&git(home, &work, &["branch", "-r"], &[]))
        .lines()
        .count()
}

#[test]
fn gzip_request_bodies_pass_through() {
    // 40 wants make git's `fetch` body exceed 1 KiB, which git sends gzip-encoded.
    let server = GitServer::start();
    let home = tempfile::tempdir().unwrap();
    server.create_repo("tpl", &[("a", b"a")]);
    bulk_branches(&server, "tpl", 40);
    assert_eq!(fetch_all_branches(&server, home.path(), &[]), 41);
    assert_eq!(server.fetch_count("tpl"), 1, "{:?}", server.requests());
}

#[test]
fn chunked_request_bodies_pass_through() {
    // 1500 wants (75 KB) exceed a 64 KiB post buffer: git streams the body chunked.
    let server = GitServer::start();
    let home = tempfile::tempdir().unwrap();
    server.create_repo("tpl", &[("a", b"a")]);
    bulk_branches(&server, "tpl", 1500);
    assert_eq!(
        fetch_all_branches(&server, home.path(), &[("http.postBuffer", "65536")]),
        1501
    );
    assert_eq!(server.fetch_count("tpl"), 1, "{:?}", server.requests());
    let probes = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.command.is_none())
        .count();
    assert!(
        probes > 0,
        "git probes before a chunked POST: {:?}",
        server.requests()
    );
}

#[test]
fn malformed_requests_get_400_and_the_server_keeps_serving() {
    let server = GitServer::start();
    server.create_repo("tpl", &[("a", b"a")]);
    for bad in [
        &b"garbage\r\n\r\n"[..],
        b"GET /tpl HTTP/1.1\r\nno colon\r\n\r\n",
        b"GET /%zz HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(
            raw_http(&server, bad).0,
            400,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let chunked =
        b"POST /tpl/git-upload-pack HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n";
    assert_eq!(raw_http(&server, chunked).0, 400);
    let huge = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(70 * 1024));
    assert_eq!(raw_http(&server, huge.as_bytes()).0, 431);
    // A client that connects and leaves must not disturb anything.
    drop(
        TcpStream::connect(
            server
                .base_url()
                .trim_start_matches("http://")
                .trim_end_matches('/'),
        )
        .unwrap(),
    );
    let (status, _, _) = raw_http(
        &server,
        b"GET /missing/info/refs?service=git-upload-pack HTTP/1.1\r\n\r\n",
    );
    assert_eq!(status, 404);
    let (status, _, _) = raw_http(
        &server,
        b"GET /tpl/info/refs?service=git-upload-pack HTTP/1.1\r\n\r\n",
    );
    assert_eq!(status, 200);
}

#[test]
fn dropping_the_server_stops_it() {
    let server = GitServer::start();
    server.create_repo("drop-probe", &[("a", b"a")]);
    let addr = server
        .base_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let root = server.root().to_path_buf();
    drop(server);
    assert!(!root.exists(), "the root tempdir is gone");
    // The port may already belong to a server of a parallel test, which has no such repo.
    if let Ok(mut stream) = TcpStream::connect(&addr) {
        let _ =
            stream.write_all(b"GET /drop-probe/info/refs?service=git-upload-pack HTTP/1.1\r\n\r\n");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        assert!(
            !answer.starts_with(b"HTTP/1.1 200"),
            "the dropped server still answers"
        );
    }
}
