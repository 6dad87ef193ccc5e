//! Smoke tests of the registry test infrastructure against the real `docker-registry`
//! (distribution 2.8) and the real engine: pushes and HEADs with no auth, Basic and the token
//! flow (and identity tokens); an index with chosen platforms; request counting from the access
//! log; the 429 relay; a relay that drops Docker-Content-Digest; a registry that is down,
//! restarted or frozen; and the credential-helper script, also as the docker CLI uses it.

use planner_test_support as support;

use std::io::Write as _;
use std::process::{Command, Stdio};

use support::cred_helper::{CredHelper, HelperMode};
use support::harness::{self, require_engine};
use support::rate_limit_proxy::RateLimitProxy;
use support::registry::{
    ACCEPT_ALL, DOCKER_MANIFEST, IndexKind, MARKER_PATH, OCI_INDEX, RegistryAuth, TestRegistry,
    down_host, http_request,
};
use support::rewrite_proxy::RewriteProxy;
use support::token_issuer::SERVICE;

const USER: &str = "smoke-user";
const PASS: &str = "smoke-pass-71c2";

/// A marker unique to this test process and call site.
fn marker(what: &str) -> String {
    format!(
        "{what} {} {:?}",
        std::process::id(),
        std::time::SystemTime::now()
    )
}

fn head(url: &str, auth: Option<&str>) -> support::registry::HttpResponse {
    let mut headers = vec![("accept", ACCEPT_ALL), ("user-agent", "smoke-client")];
    if let Some(auth) = auth {
        headers.push(("authorization", auth));
    }
    http_request("HEAD", url, &headers, None)
}

/// `docker --config dir ARGS` on the test engine; (success, stdout+stderr).
fn docker_with_config(
    dir: &std::path::Path,
    args: &[&str],
    path: Option<&std::ffi::OsStr>,
) -> (bool, String) {
    let mut cmd = Command::new("docker");
    cmd.arg("--config").arg(dir).args(args);
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    let out = cmd.output().expect("docker CLI");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn anonymous_push_head_index_counting_and_delete() {
    require_engine();
    let registry = TestRegistry::start(RegistryAuth::None);
    let image = registry.push_image("smoke/anon", "latest", &marker("anon"));
    assert_eq!(image.media_type, DOCKER_MANIFEST);
    assert!(image.digest.starts_with("sha256:") && image.image_id.starts_with("sha256:"));
    assert_eq!(
        harness::image_id(&image.reference),
        None,
        "push_image leaves the engine cold"
    );
    let pushes: Vec<_> = registry
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.manifest_of() == Some("smoke/anon"))
        .collect();
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert!(pushes[0].user_agent.starts_with("docker/"), "{pushes:?}");

    registry.clear_requests();
    let url = format!("{}/v2/smoke/anon/manifests/latest", registry.base_url());
    for _ in 0..2 {
        let answer = head(&url, None);
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(
            answer.header("docker-content-digest"),
            Some(image.digest.as_str())
        );
    }
    assert_eq!(registry.count_manifest("HEAD", "smoke/anon"), 2);
    assert_eq!(registry.count_manifest("GET", "smoke/anon"), 0);
    assert_eq!(registry.count_blob("GET", "smoke/anon"), 0);
    let seen = registry.client_requests();
    assert!(
        seen.iter()
            .all(|r| r.user_agent == "smoke-client" && r.status == 200),
        "{seen:?}"
    );

    // An index offering only linux/arm64 (the test's choice) over the amd64 manifest.
    let index = registry.push_index(
        "smoke/anon",
        "arm-only",
        IndexKind::Oci,
        &[(&image.digest, "linux/arm64/v8")],
    );
    let url = format!("{}/v2/smoke/anon/manifests/arm-only", registry.base_url());
    let answer = head(&url, None);
    assert_eq!(answer.header("docker-content-digest"), Some(index.as_str()));
    assert_eq!(answer.header("content-type"), Some(OCI_INDEX));
    let body = http_request("GET", &url, &[("accept", ACCEPT_ALL)], None).body;
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["manifests"][0]["platform"]["architecture"], "arm64");
    assert_eq!(body["manifests"][0]["platform"]["variant"], "v8");
    assert_eq!(body["manifests"][0]["digest"], image.digest.as_str());
    let list = registry.push_index(
        "smoke/anon",
        "list",
        IndexKind::DockerList,
        &[(&image.digest, "linux/amd64")],
    );
    assert!(list.starts_with("sha256:") && list != index);

    // A registry that omits Docker-Content-Digest (the client must GET and hash).
    let bare = RewriteProxy::start(&registry.host(), &["Docker-Content-Digest"]);
    let url = format!("http://{}/v2/smoke/anon/manifests/latest", bare.host());
    let answer = head(&url, None);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("docker-content-digest"), None, "{answer:?}");
    let got = http_request("GET", &url, &[("accept", ACCEPT_ALL)], None);
    assert_eq!(
        (got.status, got.body.len() as u64),
        (200, image.size),
        "{got:?}"
    );
    assert_eq!(got.header("docker-content-digest"), None);
    let relayed: Vec<_> = bare
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.status))
        .collect();
    assert_eq!(relayed, [("HEAD".to_owned(), 200), ("GET".to_owned(), 200)]);

    registry.delete_manifest("smoke/anon", &image.digest);
    let gone = head(
        &format!("{}/v2/smoke/anon/manifests/latest", registry.base_url()),
        None,
    );
    assert_eq!(gone.status, 404, "{gone:?}");
}

#[test]
fn basic_auth_401_without_credentials_and_engine_pull_with_config_json() {
    require_engine();
    let registry = TestRegistry::start(RegistryAuth::basic(USER, PASS));
    let image = registry.push_image("smoke/basic", "v1", &marker("basic"));
    let url = format!("{}/v2/smoke/basic/manifests/v1", registry.base_url());
    let denied = head(&url, None);
    assert_eq!(denied.status, 401, "{denied:?}");
    let challenge = denied.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Basic realm="), "{challenge}");
    let auth = registry
        .authorization("repository:smoke/basic:pull")
        .unwrap();
    let allowed = head(&url, Some(&auth));
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(
        allowed.header("docker-content-digest"),
        Some(image.digest.as_str())
    );

    let config = tempfile::tempdir().unwrap();
    let (ok, text) = docker_with_config(config.path(), &["pull", &image.pinned()], None);
    assert!(!ok, "anonymous pull must fail: {text}");
    registry.docker_config(config.path());
    let (ok, text) = docker_with_config(config.path(), &["pull", &image.pinned()], None);
    assert!(ok, "pull with config.json auths: {text}");
    assert_eq!(
        harness::image_id(&image.pinned()).as_deref(),
        Some(image.image_id.as_str())
    );
    harness::docker(&["rmi", &image.pinned()]);
}

/// `Bearer realm="…",service="…",scope="…"` -> the value of `key`.
fn challenge_param(challenge: &str, key: &str) -> Option<String> {
    let start = challenge.find(&format!("{key}=\""))? + key.len() + 2;
    let len = challenge[start..].find('"')?;
    Some(challenge[start..start + len].to_owned())
}

#[test]
fn token_auth_bearer_flow_and_engine_pull() {
    require_engine();
    let registry = TestRegistry::start(RegistryAuth::token(USER, PASS));
    let issuer = registry.issuer().unwrap();
    let token_marker = marker("token");
    let image = registry.push_image("smoke/token", "latest", &token_marker);
    let url = format!("{}/v2/smoke/token/manifests/latest", registry.base_url());
    let denied = head(&url, None);
    assert_eq!(denied.status, 401, "{denied:?}");
    let challenge = denied
        .header("www-authenticate")
        .unwrap_or_default()
        .to_owned();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert_eq!(challenge_param(&challenge, "realm"), Some(issuer.realm()));
    assert_eq!(
        challenge_param(&challenge, "service").as_deref(),
        Some(SERVICE)
    );
    let scope = challenge_param(&challenge, "scope").unwrap();
    assert_eq!(scope, "repository:smoke/token:pull");

    issuer.clear_requests();
    let anonymous = issuer.fetch_token(&scope, None);
    let no_access = head(&url, Some(&format!("Bearer {anonymous}")));
    assert_eq!(
        no_access.status, 401,
        "an anonymous token grants nothing: {no_access:?}"
    );
    let token = issuer.fetch_token(&scope, Some((USER, PASS)));
    let allowed = head(&url, Some(&format!("Bearer {token}")));
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(
        allowed.header("docker-content-digest"),
        Some(image.digest.as_str())
    );
    // The registry really checks the signature: a token with its last signature byte changed fails.
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let rejected = head(&url, Some(&format!("Bearer {tampered}")));
    assert_eq!(rejected.status, 401, "{rejected:?}");
    assert!(
        rejected
            .header("www-authenticate")
            .unwrap_or_default()
            .contains("invalid_token"),
        "{rejected:?}"
    );
    let asked = issuer.requests();
    assert_eq!(asked.len(), 2, "{asked:?}");
    issuer.set_anonymous_pull(true);
    let public = issuer.fetch_token(&scope, None);
    assert_eq!(head(&url, Some(&format!("Bearer {public}"))).status, 200);
    issuer.set_anonymous_pull(false);
    assert_eq!(asked[0].user, None);
    assert!(asked[0].granted.is_empty());
    assert_eq!(asked[1].user.as_deref(), Some(USER));
    assert_eq!(
        asked[1].granted,
        vec!["repository:smoke/token:pull".to_owned()]
    );
    let wrong = http_request(
        "GET",
        &format!("{}?service={SERVICE}&scope={scope}", issuer.realm()),
        &[("authorization", "Basic d3Jvbmc6d3Jvbmc=")],
        None,
    );
    assert_eq!(wrong.status, 401, "{wrong:?}");

    // The engine through the token flow, with the credentials from config.json.
    issuer.clear_requests();
    let config = tempfile::tempdir().unwrap();
    registry.docker_config(config.path());
    let (ok, text) = docker_with_config(config.path(), &["pull", &image.pinned()], None);
    assert!(ok, "engine pull through the token flow: {text}");
    assert_eq!(
        harness::image_id(&image.pinned()).as_deref(),
        Some(image.image_id.as_str())
    );
    assert_eq!(
        harness::file_in_image(&image.pinned(), MARKER_PATH),
        token_marker.as_bytes()
    );
    let engine_asks = issuer.requests();
    assert!(
        engine_asks
            .iter()
            .any(|r| r.user.as_deref() == Some(USER) && r.user_agent.starts_with("docker/")),
        "{engine_asks:?}"
    );
    harness::docker(&["rmi", &image.pinned()]);

    // An identity token (config.json `identitytoken`): the engine uses the OAuth2 POST.
    issuer.clear_requests();
    let config = tempfile::tempdir().unwrap();
    registry.docker_config_identity_token(config.path());
    let (ok, text) = docker_with_config(config.path(), &["pull", &image.pinned()], None);
    assert!(ok, "engine pull with an identity token: {text}");
    let posts = issuer.requests();
    assert!(
        posts.iter().any(|r| r.method == "POST"
            && r.grant_type.as_deref() == Some("refresh_token")
            && r.status == 200
            && !r.granted.is_empty()),
        "{posts:?}"
    );
    harness::docker(&["rmi", &image.pinned()]);
}

#[test]
fn rate_limit_proxy_answers_429_then_relays_and_down_host_refuses() {
    let registry = TestRegistry::start(RegistryAuth::None);
    let proxy = RateLimitProxy::start(&registry.host(), 2);
    let url = format!("http://{}/v2/", proxy.host());
    for _ in 0..2 {
        let limited = http_request("GET", &url, &[], None);
        assert_eq!(limited.status, 429, "{limited:?}");
        assert_eq!(limited.header("retry-after"), Some("1"));
    }
    assert_eq!(http_request("GET", &url, &[], None).status, 200);
    assert_eq!(proxy.limited(), 2);
    proxy.set_retry_after(None);
    proxy.limit_next(1);
    let limited = http_request("GET", &url, &[], None);
    assert_eq!((limited.status, limited.header("retry-after")), (429, None));
    assert_eq!(http_request("GET", &url, &[], None).status, 200);
    let at_registry: Vec<_> = registry
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v2/")
        .collect();
    // The readiness probe, then the two relayed requests.
    assert_eq!(at_registry.len(), 3, "{at_registry:?}");

    let down = down_host();
    let refused = std::net::TcpStream::connect(&down);
    assert!(refused.is_err(), "{down} should refuse connections");
}

fn run_helper(helper: &CredHelper, verb: &str, input: &str) -> (bool, String) {
    let mut child = Command::new(helper.program())
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn cred_helper_script_answers_and_the_docker_cli_uses_it() {
    require_engine();
    let registry = TestRegistry::start(RegistryAuth::basic(USER, PASS));
    let host = registry.host();
    let helper = CredHelper::new("planner-smoke", &[(&host, USER, PASS)]);
    let (ok, out) = run_helper(&helper, "get", &host);
    assert!(ok, "{out}");
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (answer["Username"].as_str(), answer["Secret"].as_str()),
        (Some(USER), Some(PASS))
    );
    let (ok, out) = run_helper(&helper, "get", "other.example:5000");
    assert!(!ok && out.contains("credentials not found"), "{out}");
    assert_eq!(
        helper.calls(),
        vec![
            ("get".to_owned(), host.clone()),
            ("get".to_owned(), "other.example:5000".to_owned())
        ]
    );
    let broken = CredHelper::with_mode(
        "planner-broken",
        &[],
        HelperMode::Fail("helper exploded".into()),
    );
    let (ok, out) = run_helper(&broken, "get", &host);
    assert!(!ok && out.contains("helper exploded"), "{out}");

    // The docker CLI finds the helper on PATH through credHelpers and pulls with it.
    let image = registry.push_image("smoke/helper", "latest", &marker("helper"));
    let config = tempfile::tempdir().unwrap();
    helper.write_cred_helpers_config(config.path(), &host);
    let path = helper.path_env();
    let (ok, text) = docker_with_config(config.path(), &["pull", &image.pinned()], Some(&path));
    assert!(ok, "pull with the credential helper: {text}");
    assert!(helper.calls().len() > 2, "{:?}", helper.calls());
    harness::docker(&["rmi", &image.pinned()]);
}

#[test]
fn registry_stop_restart_freeze_and_thaw() {
    let mut registry = TestRegistry::start(RegistryAuth::None);
    let url = format!("{}/v2/", registry.base_url());
    registry.stop();
    assert!(
        std::net::TcpStream::connect(registry.host()).is_err(),
        "stopped: refused"
    );
    registry.restart();
    assert_eq!(http_request("GET", &url, &[], None).status, 200);
    registry.freeze();
    let mut stream = std::net::TcpStream::connect(registry.host()).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    stream
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 64];
    let read = std::io::Read::read(&mut stream, &mut buf);
    assert!(read.is_err(), "a frozen registry answers nothing: {read:?}");
    registry.thaw();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let n = std::io::Read::read(&mut stream, &mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
}
