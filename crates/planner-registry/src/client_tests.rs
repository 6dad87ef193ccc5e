//! The client against a scripted registry on 127.0.0.1 (planner-test-support's `scripted_http`).

use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;

use super::*;
use crate::error::Missing;
use crate::index::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::token::{DEFAULT_TOKEN_LIFETIME, parse_token};
use planner_test_support::scripted_http::{Request, Response, Server};
use std::time::SystemTime;
use url::Url;

const AMD64: &str = "linux/amd64";

fn manifest(n: u32) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"digest":"sha256:{n:064}"}},"layers":[]}}"#
    )
    .into_bytes()
}

fn index_of(entries: &[(&str, &str)]) -> Vec<u8> {
    let manifests: Vec<serde_json::Value> = entries
        .iter()
        .map(|(platform, digest)| {
            let mut parts = platform.split('/');
            let mut p = serde_json::json!({"os": parts.next(), "architecture": parts.next()});
            if let Some(v) = parts.next() {
                p["variant"] = v.into();
            }
            serde_json::json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": 1, "platform": p})
        })
        .collect();
    serde_json::to_vec(
        &serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}),
    )
    .unwrap()
}

#[derive(Clone, Default)]
enum Auth {
    #[default]
    Anonymous,
    Basic(&'static str, &'static str),
    /// Token endpoint at /token; `Some` creds are required there.
    Bearer(Option<(&'static str, &'static str)>),
}

const TOKEN: &str = "tok-7f3a9c-registry-bearer";

/// A registry serving one repository `app`.
#[derive(Clone, Default)]
struct Fake {
    manifests: Vec<(String, String, Vec<u8>)>,
    digest_header: bool,
    auth: Auth,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            digest_header: true,
            ..Fake::default()
        }
    }

    fn tag(mut self, tag: &str, media_type: &str, body: Vec<u8>) -> Fake {
        let digest = sha256_digest(&body);
        self.manifests
            .push((tag.into(), media_type.into(), body.clone()));
        self.manifests.push((digest, media_type.into(), body));
        self
    }

    fn blob(mut self, digest: &str, media_type: &str, body: Vec<u8>) -> Fake {
        self.manifests
            .push((digest.into(), media_type.into(), body));
        self
    }

    fn serve(&self, req: &Request) -> Response {
        if req.path() == "/token" {
            return self.token(req);
        }
        if let Some(denied) = self.check_auth(req) {
            return denied;
        }
        let Some(rest) = req.path().strip_prefix("/v2/") else {
            return Response::new(404);
        };
        let Some((repo, reference)) = rest.split_once("/manifests/") else {
            return Response::new(404);
        };
        if repo != "app" {
            return Response::new(404).body(r#"{"errors":[{"code":"NAME_UNKNOWN"}]}"#);
        }
        let Some((_, media_type, body)) = self.manifests.iter().find(|(r, ..)| r == reference)
        else {
            return Response::new(404).body(r#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#);
        };
        let mut resp = Response::new(200)
            .header("Content-Type", media_type)
            .body(body.clone());
        if self.digest_header {
            resp = resp.header("Docker-Content-Digest", &sha256_digest(body));
        }
        resp
    }

    fn check_auth(&self, req: &Request) -> Option<Response> {
        let given = req.header("authorization");
        match &self.auth {
            Auth::Anonymous => None,
            Auth::Basic(user, pass) => (given != Some(&basic(user, pass))).then(|| {
                Response::new(401).header("WWW-Authenticate", r#"Basic realm="Registry Realm""#)
            }),
            Auth::Bearer(_) => (given != Some(&format!("Bearer {TOKEN}"))).then(|| {
                let host = req.header("host").unwrap_or_default();
                let challenge = format!(
                    r#"Bearer realm="http://{host}/token",service="fake-registry",scope="repository:app:pull""#
                );
                Response::new(401).header("WWW-Authenticate", &challenge)
            }),
        }
    }

    fn token(&self, req: &Request) -> Response {
        let Auth::Bearer(required) = &self.auth else {
            return Response::new(404);
        };
        if let Some((user, pass)) = required {
            let by_basic = req.header("authorization") == Some(&basic(user, pass));
            let by_refresh = String::from_utf8_lossy(&req.body).contains("refresh_token=");
            if !by_basic && !by_refresh {
                return Response::new(401);
            }
        }
        Response::new(200)
            .header("Content-Type", "application/json")
            .body(format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#))
    }
}

fn basic(user: &str, pass: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {encoded}")
}

async fn start(fake: Fake) -> Server {
    Server::start(move |req| fake.serve(req)).await
}

/// A client whose docker config is `config_json` (none when `None`) in a fresh directory.
fn client(config_json: Option<&str>) -> (Registry, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    if let Some(json) = config_json {
        std::fs::write(&path, json).unwrap();
    }
    let settings = RegistrySettings {
        insecure: Vec::new(),
        timeout: Duration::from_secs(10),
    };
    let config = DockerConfig::at(path).with_helper_path(dir.path().as_os_str());
    (
        Registry::with_config(settings, config).with_backoff(Duration::from_millis(10)),
        dir,
    )
}

/// A config.json with an `auths` entry for `server`.
fn creds_json(server: &Server, user: &str, pass: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!(
        r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
        server.host()
    )
}

fn image(server: &Server, repo_tag: &str) -> ImageRef {
    ImageRef::parse(&format!("{}/{repo_tag}", server.host())).unwrap()
}

#[tokio::test]
async fn a_manifest_resolves_with_one_head_reading_the_digest_header() {
    let body = manifest(1);
    let server = start(Fake::new().tag("latest", OCI_MANIFEST, body.clone())).await;
    let (registry, _dir) = client(None);
    let got = registry
        .resolve(&image(&server, "app:latest"), AMD64)
        .await
        .unwrap();
    assert_eq!(
        got,
        Resolution {
            digest: sha256_digest(&body),
            index_digest: None,
            media_type: OCI_MANIFEST.into(),
            rate_limited: None,
        }
    );
    assert_eq!(server.lines(), ["HEAD /v2/app/manifests/latest"]);
    let accept = server.requests()[0].header("accept").unwrap().to_owned();
    for media_type in [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST] {
        assert!(accept.contains(media_type), "{accept}");
    }
}

#[tokio::test]
async fn without_the_digest_header_the_manifest_is_fetched_and_hashed() {
    let body = manifest(2);
    let mut fake = Fake::new().tag("v1", DOCKER_MANIFEST, body.clone());
    fake.digest_header = false;
    let server = start(fake).await;
    let (registry, _dir) = client(None);
    let got = registry
        .resolve(&image(&server, "app:v1"), AMD64)
        .await
        .unwrap();
    assert_eq!(got.digest, sha256_digest(&body));
    assert_eq!(got.media_type, DOCKER_MANIFEST);
    assert_eq!(
        server.lines(),
        ["HEAD /v2/app/manifests/v1", "GET /v2/app/manifests/v1"]
    );
}

fn d(n: u32) -> String {
    format!("sha256:{n:064}")
}

#[tokio::test]
async fn an_index_resolves_to_the_platform_manifest() {
    let index = index_of(&[
        ("unknown/unknown", &d(9)),
        ("linux/amd64", &d(1)),
        ("linux/arm64/v8", &d(2)),
    ]);
    let index_digest = sha256_digest(&index);
    let server = start(Fake::new().tag("latest", OCI_INDEX, index)).await;
    let (registry, _dir) = client(None);
    let img = image(&server, "app");
    let got = registry.resolve(&img, "linux/amd64").await.unwrap();
    assert_eq!(got.digest, d(1));
    assert_eq!(got.index_digest.as_deref(), Some(index_digest.as_str()));
    assert_eq!(got.media_type, OCI_MANIFEST);
    assert_eq!(
        server.lines(),
        [
            "HEAD /v2/app/manifests/latest".to_owned(),
            format!("GET /v2/app/manifests/{index_digest}")
        ]
    );
    assert_eq!(
        registry.resolve(&img, "linux/arm64").await.unwrap().digest,
        d(2)
    );
    assert_eq!(
        registry
            .resolve(&img, "linux/aarch64")
            .await
            .unwrap()
            .digest,
        d(2)
    );
}

#[tokio::test]
async fn an_index_without_the_digest_header_is_hashed_once() {
    let index = index_of(&[("linux/amd64", &d(1))]);
    let mut fake = Fake::new().tag("latest", DOCKER_LIST, index.clone());
    fake.digest_header = false;
    let server = start(fake).await;
    let (registry, _dir) = client(None);
    let got = registry
        .resolve(&image(&server, "app"), AMD64)
        .await
        .unwrap();
    assert_eq!(
        (got.digest, got.index_digest),
        (d(1), Some(sha256_digest(&index)))
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_missing_platform_lists_the_available_ones() {
    let index = index_of(&[
        ("unknown/unknown", &d(9)),
        ("linux/arm64", &d(2)),
        ("linux/arm/v7", &d(3)),
    ]);
    let server = start(Fake::new().tag("latest", OCI_INDEX, index)).await;
    let (registry, _dir) = client(None);
    let err = registry
        .resolve(&image(&server, "app"), AMD64)
        .await
        .unwrap_err();
    let RegistryError::NoPlatform { available, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(available, &["linux/arm64", "linux/arm/v7"]);
    let text = err.to_string();
    assert!(
        text.contains("/app:latest has no image for platform linux/amd64"),
        "{text}"
    );
    assert!(
        text.contains("linux/arm64, linux/arm/v7") && text.contains("help:"),
        "{text}"
    );
    assert!(!text.contains("unknown"), "{text}");
    let err = registry
        .resolve(&image(&server, "app"), "garbage")
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::NoPlatform { .. }), "{err}");
}

#[tokio::test]
async fn an_index_whose_body_is_not_its_digest_is_refused() {
    let index = index_of(&[("linux/amd64", &d(1))]);
    let forged = index_of(&[("linux/amd64", &d(6))]);
    let digest = sha256_digest(&index);
    let fake = Fake::new()
        .blob("latest", OCI_INDEX, index.clone())
        .blob(&digest, OCI_INDEX, forged);
    let server = Server::start(move |req| {
        let mut resp = fake.serve(req);
        // The HEAD names the real index; the body served by that digest is another.
        resp.headers.retain(|(n, _)| n != "Docker-Content-Digest");
        match req.method.as_str() {
            "HEAD" => resp.header("Docker-Content-Digest", &digest),
            _ => resp,
        }
    })
    .await;
    let (registry, _dir) = client(None);
    let err = registry
        .resolve(&image(&server, "app"), AMD64)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Protocol { .. }), "{err}");
    assert!(
        err.to_string().contains("the index body hashes to"),
        "{err}"
    );
}

#[tokio::test]
async fn bearer_tokens_are_fetched_with_credentials_and_cached() {
    let fake = Fake {
        auth: Auth::Bearer(Some(("alice", "pw-bearer-alice"))),
        ..Fake::new().tag("latest", OCI_MANIFEST, manifest(3))
    };
    let server = start(fake).await;
    let (registry, _dir) = client(Some(&creds_json(&server, "alice", "pw-bearer-alice")));
    let img = image(&server, "app");
    registry.resolve(&img, AMD64).await.unwrap();
    let lines = server.lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], "HEAD /v2/app/manifests/latest");
    assert!(lines[1].starts_with("GET /token?"), "{lines:?}");
    for part in [
        "service=fake-registry",
        "scope=repository%3Aapp%3Apull",
        "account=alice",
    ] {
        assert!(lines[1].contains(part), "{lines:?}");
    }
    assert_eq!(
        server.requests()[1].header("authorization"),
        Some(basic("alice", "pw-bearer-alice").as_str())
    );
    assert_eq!(lines[2], "HEAD /v2/app/manifests/latest");
    // The second resolve reuses the token: one HEAD, no token request.
    registry.resolve(&img, AMD64).await.unwrap();
    let lines = server.lines();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(
        server.requests()[3].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(planner_base::mask::mask(TOKEN), "***");
}

#[tokio::test]
async fn anonymous_bearer_tokens_need_no_credentials() {
    let fake = Fake {
        auth: Auth::Bearer(None),
        ..Fake::new().tag("latest", OCI_MANIFEST, manifest(4))
    };
    let server = start(fake).await;
    let (registry, _dir) = client(None);
    registry
        .resolve(&image(&server, "app"), AMD64)
        .await
        .unwrap();
    let token_request = &server.requests()[1];
    assert_eq!(token_request.path(), "/token");
    assert_eq!(token_request.header("authorization"), None);
    assert!(!token_request.target.contains("account="));
}

#[tokio::test]
async fn an_identity_token_is_exchanged_by_the_oauth2_refresh_grant() {
    let fake = Fake {
        auth: Auth::Bearer(Some(("x", "unused"))),
        ..Fake::new().tag("latest", OCI_MANIFEST, manifest(5))
    };
    let server = start(fake).await;
    let json = format!(
        r#"{{"auths": {{"{}": {{"identitytoken": "refresh-me-123"}}}}}}"#,
        server.host()
    );
    let (registry, _dir) = client(Some(&json));
    registry
        .resolve(&image(&server, "app"), AMD64)
        .await
        .unwrap();
    let token_request = &server.requests()[1];
    assert_eq!(token_request.method, "POST");
    let form = String::from_utf8_lossy(&token_request.body).into_owned();
    for part in [
        "grant_type=refresh_token",
        "refresh_token=refresh-me-123",
        "service=fake-registry",
        "scope=repository%3Aapp%3Apull",
        "client_id=planner",
    ] {
        assert!(form.contains(part), "{form}");
    }
    assert_eq!(token_request.header("authorization"), None);
}

#[tokio::test]
async fn basic_auth_is_answered_and_then_sent_up_front() {
    let fake = Fake {
        auth: Auth::Basic("bob", "pw-basic-bob"),
        ..Fake::new().tag("latest", OCI_MANIFEST, manifest(6))
    };
    let server = start(fake).await;
    let (registry, _dir) = client(Some(&creds_json(&server, "bob", "pw-basic-bob")));
    let img = image(&server, "app");
    registry.resolve(&img, AMD64).await.unwrap();
    assert_eq!(server.requests().len(), 2);
    registry.resolve(&img, AMD64).await.unwrap();
    assert_eq!(server.requests().len(), 3, "{:?}", server.lines());
    assert_eq!(
        server.requests()[2].header("authorization"),
        Some(basic("bob", "pw-basic-bob").as_str())
    );
    assert_eq!(planner_base::mask::mask("pw-basic-bob"), "***");
}

#[tokio::test]
async fn a_credential_helper_supplies_the_credentials() {
    use std::os::unix::fs::PermissionsExt;
    let fake = Fake {
        auth: Auth::Basic("carol", "pw-helper-carol"),
        ..Fake::new().tag("latest", OCI_MANIFEST, manifest(7))
    };
    let server = start(fake).await;
    let json = format!(r#"{{"credHelpers": {{"{}": "fake"}}}}"#, server.host());
    let (registry, dir) = client(Some(&json));
    let script = dir.path().join("docker-credential-fake");
    std::fs::write(
        &script,
        "#!/bin/sh\nread s\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"carol\",\"Secret\":\"pw-helper-carol\"}' \"$s\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let img = image(&server, "app");
    registry.resolve(&img, AMD64).await.unwrap();
    let creds = registry.credentials(&img).await.unwrap().unwrap();
    assert!(creds.source.contains("docker-credential-fake"), "{creds:?}");
}

#[tokio::test]
async fn a_401_without_credentials_says_how_to_log_in() {
    let fake = Fake {
        auth: Auth::Basic("bob", "pw"),
        ..Fake::new().tag("latest", OCI_MANIFEST, manifest(8))
    };
    let server = start(fake).await;
    let (registry, dir) = client(None);
    let err = registry
        .resolve(&image(&server, "app"), AMD64)
        .await
        .unwrap_err();
    let RegistryError::Unauthorized { logged_in, .. } = &err else {
        panic!("{err}");
    };
    assert!(!logged_in);
    let text = err.to_string();
    assert!(
        text.contains(&format!("docker login {}", server.host())),
        "{text}"
    );
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    assert!(text.contains("/app:latest"), "{text}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn refused_credentials_are_retried_once_then_unauthorized() {
    let fake = Fake {
        auth: Auth::Basic("bob", "right"),
        ..Fake::new().tag("latest", OCI_MANIFEST, manifest(8))
    };
    let server = start(fake).await;
    let (registry, _dir) = client(Some(&creds_json(&server, "bob", "pw-wrong-bob")));
    let err = registry
        .resolve(&image(&server, "app"), AMD64)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Unauthorized {
                logged_in: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("refused the credentials"), "{err}");
    assert!(!err.to_string().contains("pw-wrong-bob"), "{err}");
    assert_eq!(server.requests().len(), 2, "{:?}", server.lines());
    // A refused bearer token request is unauthorized too.
    let fake = Fake {
        auth: Auth::Bearer(Some(("bob", "right"))),
        ..Fake::new().tag("latest", OCI_MANIFEST, manifest(8))
    };
    let server = start(fake).await;
    let (registry, _dir) = client(Some(&creds_json(&server, "bob", "pw-wrong-bob")));
    let err = registry
        .resolve(&image(&server, "app"), AMD64)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Unauthorized {
                logged_in: true,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn not_found_says_tag_or_repository() {
    let server = start(Fake::new().tag("latest", OCI_MANIFEST, manifest(1))).await;
    let (registry, _dir) = client(None);
    let err = registry
        .resolve(&image(&server, "app:nope"), AMD64)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::NotFound {
                missing: Missing::Tag,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("tag not found"), "{err}");
    assert_eq!(
        server.lines()[..2],
        ["HEAD /v2/app/manifests/nope", "GET /v2/app/manifests/nope"]
    );
    let err = registry
        .resolve(&image(&server, "other/x"), AMD64)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::NotFound {
                missing: Missing::Repository,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("repository not found"), "{err}");
    let bare = Server::start(|_| Response::new(404).body("<html>nope</html>")).await;
    let err = registry
        .resolve(&image(&bare, "app"), AMD64)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::NotFound {
                missing: Missing::Unknown,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn forbidden_and_other_statuses() {
    let server = Server::start(|_| Response::new(403)).await;
    let (registry, _dir) = client(None);
    let err = registry
        .resolve(&image(&server, "app"), AMD64)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Forbidden { .. }), "{err}");
    assert!(err.to_string().contains("HTTP 403"), "{err}");
    let server = Server::start(|_| Response::new(500)).await;
    let err = registry
        .resolve(&image(&server, "app"), AMD64)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Status { status: 500, .. }),
        "{err}"
    );
}

/// Answers `limited` times with `status` and `Retry-After: retry_after`, then serves `fake`.
async fn limited(
    fake: Fake,
    times: usize,
    status: u16,
    retry_after: Option<&'static str>,
) -> Server {
    let count = AtomicUsize::new(0);
    Server::start(move |req| {
        if count.fetch_add(1, Ordering::SeqCst) < times {
            let resp = Response::new(status);
            return match retry_after {
                Some(after) => resp.header("Retry-After", after),
                None => resp,
            };
        }
        fake.serve(req)
    })
    .await
}

#[tokio::test]
async fn rate_limits_are_waited_out_and_reported() {
    let fake = Fake::new().tag("latest", OCI_MANIFEST, manifest(1));
    let server = limited(fake, 1, 429, Some("1")).await;
    let (registry, _dir) = client(None);
    let started = Instant::now();
    let got = registry
        .resolve(&image(&server, "app"), AMD64)
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(got.rate_limited, Some(Duration::from_secs(1)));
    assert_eq!(server.requests().len(), 2);
    // 503 without Retry-After: the backoff.
    let fake = Fake::new().tag("latest", OCI_MANIFEST, manifest(1));
    let server = limited(fake, 2, 503, None).await;
    let got = registry
        .resolve(&image(&server, "app"), AMD64)
        .await
        .unwrap();
    assert_eq!(got.rate_limited, Some(Duration::from_millis(30)));
}

#[tokio::test]
async fn a_rate_limited_token_endpoint_is_waited_out_too() {
    let fake = Fake {
        auth: Auth::Bearer(Some(("alice", "pw-token-429-alice"))),
        ..Fake::new().tag("latest", OCI_MANIFEST, manifest(5))
    };
    let limited_once = AtomicUsize::new(0);
    let server = Server::start(move |req| {
        if req.path() == "/token" && limited_once.fetch_add(1, Ordering::SeqCst) == 0 {
            return Response::new(429).header("Retry-After", "1");
        }
        fake.serve(req)
    })
    .await;
    let (registry, _dir) = client(Some(&creds_json(&server, "alice", "pw-token-429-alice")));
    let got = registry
        .resolve(&image(&server, "app"), AMD64)
        .await
        .unwrap();
    assert_eq!(got.rate_limited, Some(Duration::from_secs(1)));
    let tokens = server
        .lines()
        .iter()
        .filter(|l| l.starts_with("GET /token?"))
        .count();
    assert_eq!(tokens, 2, "{:?}", server.lines());
}

#[tokio::test]
async fn rate_limits_are_bounded() {
    let fake = Fake::new().tag("latest", OCI_MANIFEST, manifest(1));
    let server = limited(fake.clone(), 100, 429, Some("0")).await;
    let (registry, _dir) = client(None);
    let err = registry
        .resolve(&image(&server, "app"), AMD64)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::RateLimited { .. }), "{err}");
    assert_eq!(server.requests().len(), 1 + MAX_RATE_RETRIES as usize);
    assert!(
        err.to_string().contains("HTTP 429") && err.to_string().contains("help:"),
        "{err}"
    );
    // A wait longer than MAX_WAIT is not attempted; the error names it.
    let server = limited(fake.clone(), 100, 429, Some("3600")).await;
    let err = registry
        .resolve(&image(&server, "app"), AMD64)
        .await
        .unwrap_err();
    let RegistryError::RateLimited {
        retry_after,
        waited,
        ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(
        (*retry_after, *waited),
        (Some(Duration::from_secs(3600)), Duration::ZERO)
    );
    assert!(err.to_string().contains("retry after 1h"), "{err}");
    assert_eq!(server.requests().len(), 1);
    let server = limited(fake, 100, 503, Some("0")).await;
    let err = registry
        .resolve(&image(&server, "app"), AMD64)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Status { status: 503, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_registry_is_named() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (registry, _dir) = client(None);
    let img = ImageRef::parse(&format!("127.0.0.1:{port}/app:latest")).unwrap();
    let err = registry.resolve(&img, AMD64).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("http://127.0.0.1:{port}/v2/app/manifests/latest")),
        "{text}"
    );
    assert!(text.contains("never falls back"), "{text}");
}

#[tokio::test]
async fn a_stalled_registry_times_out() {
    let server = Server::start(|_| Response {
        delay: Some(Duration::from_secs(30)),
        ..Response::new(200)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let settings = RegistrySettings {
        insecure: Vec::new(),
        timeout: Duration::from_millis(300),
    };
    let registry = Registry::with_config(settings, DockerConfig::at(dir.path().join("c.json")));
    let started = Instant::now();
    let err = registry
        .resolve(&image(&server, "app"), AMD64)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(err, RegistryError::TimedOut { .. }), "{err}");
    assert!(err.to_string().contains("[registry] timeout"), "{err}");
}

#[tokio::test]
async fn hostile_answers_are_protocol_errors() {
    let (registry, _dir) = client(None);
    let cases: Vec<(Response, &str)> = vec![
        (
            Response::new(200)
                .header("Content-Type", OCI_MANIFEST)
                .header("Docker-Content-Digest", "sha256:NOT-HEX"),
            "is not sha256",
        ),
        (
            Response::new(200)
                .header("Content-Type", OCI_MANIFEST)
                .header(
                    "Docker-Content-Digest",
                    &format!("sha512:{}", "a".repeat(128)),
                ),
            "is not sha256",
        ),
        (
            Response::new(200)
                .header("Content-Type", OCI_INDEX)
                .body("{not json"),
            "not valid JSON",
        ),
        (
            Response::new(200)
                .header("Content-Type", OCI_INDEX)
                .body(index_of(&[("linux/amd64", "sha256:short")])),
            "index entry",
        ),
        (
            Response::new(200)
                .header("Content-Type", OCI_MANIFEST)
                .body(vec![b' '; MANIFEST_CAP + 1]),
            "larger than",
        ),
        (
            Response::new(200)
                .header(
                    "Content-Type",
                    "application/vnd.docker.distribution.manifest.v1+prettyjws",
                )
                .body("{}"),
            "schema 1",
        ),
        (
            Response::new(200)
                .header("Content-Type", OCI_MANIFEST)
                .header("Docker-Content-Digest", &d(1))
                .body(manifest(1)),
            // HEAD names d(1) for an index-less manifest: accepted as the registry's word;
            // on the GET path a mismatch is refused (next case).
            "",
        ),
        (
            Response::new(200)
                .header("Docker-Content-Digest", &d(1))
                .body(manifest(1)),
            "but the body hashes to",
        ),
    ];
    for (answer, why) in cases {
        let server = Server::start(move |_| answer.clone()).await;
        let result = registry.resolve(&image(&server, "app"), AMD64).await;
        match why {
            "" => assert!(result.is_ok(), "{result:?}"),
            why => {
                let err = result.unwrap_err();
                assert!(
                    matches!(err, RegistryError::Protocol { .. }),
                    "{why}: {err}"
                );
                assert!(err.to_string().contains(why), "{why}: {err}");
                assert!(err.to_string().len() < 1000, "{err}");
            }
        }
    }
}

#[tokio::test]
async fn huge_headers_and_bad_tokens_never_panic() {
    let (registry, _dir) = client(None);
    let huge = "x".repeat(512 * 1024);
    let server = Server::start(move |_| Response::new(200).header("X-Huge", &huge)).await;
    let err = registry
        .resolve(&image(&server, "app"), AMD64)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Protocol { .. }), "{err}");
    assert!(err.to_string().len() < 2000, "{err}");
    let challenge = format!("Bearer realm=\"{}\"", "r".repeat(64 * 1024));
    let server =
        Server::start(move |_| Response::new(401).header("WWW-Authenticate", &challenge)).await;
    let err = registry
        .resolve(&image(&server, "app"), AMD64)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    for token_answer in ["{not json", r#"{"token": ""}"#, r#"{"token": "a b"}"#, "[]"] {
        let server = Server::start(move |req| match req.path() {
            "/token" => Response::new(200).body(token_answer),
            _ => {
                let host = req.header("host").unwrap_or_default();
                Response::new(401).header(
                    "WWW-Authenticate",
                    &format!(r#"Bearer realm="http://{host}/token""#),
                )
            }
        })
        .await;
        let err = registry
            .resolve(&image(&server, "app"), AMD64)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::Protocol { .. }),
            "{token_answer}: {err}"
        );
        assert!(err.to_string().contains("token endpoint"), "{err}");
    }
}

#[tokio::test]
async fn credentials_go_to_plain_http_realms_only_where_the_registry_may_be() {
    let server = Server::start(|_| {
        Response::new(401).header(
            "WWW-Authenticate",
            r#"Bearer realm="http://auth.example/token""#,
        )
    })
    .await;
    let (registry, _dir) = client(Some(&creds_json(&server, "realm-user", "pw-realm-user")));
    let err = registry
        .resolve(&image(&server, "app"), AMD64)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::InsecureRealm { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("not HTTPS") && text.contains("http://auth.example/token"),
        "{text}"
    );
    assert!(
        text.contains("add \"auth.example\" to [registry] insecure"),
        "{text}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn https_to_a_plain_http_registry_suggests_insecure() {
    let server = start(Fake::new().tag("latest", OCI_MANIFEST, manifest(1))).await;
    let (registry, _dir) = client(None);
    let img = ImageRef::parse("myreg.internal:5000/app:latest").unwrap();
    let t = Target {
        image: &img,
        base: Url::parse(&format!("https://{}/", server.host())).unwrap(),
        scope: img.pull_scope(),
    };
    let mut waited = Duration::ZERO;
    let err = registry
        .resolve_in(&t, AMD64, &mut waited)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Insecure { .. }), "{err}");
    assert!(err.to_string().contains("[registry] insecure"), "{err}");
}

/// `http://localhost:<port of server>`: another origin than `server.host()` (127.0.0.1), on
/// the same loopback listener.
fn other_origin(server: &Server) -> String {
    format!(
        "http://localhost:{}",
        server.host().rsplit(':').next().unwrap()
    )
}

#[tokio::test]
async fn a_registry_answer_redirected_to_another_origin_is_fetched_there_without_credentials() {
    let body = manifest(11);
    let digest = sha256_digest(&body);
    let cdn = Server::start({
        let (body, digest) = (body.clone(), digest.clone());
        move |_| {
            Response::new(200)
                .header("Content-Type", OCI_MANIFEST)
                .header("Docker-Content-Digest", &digest)
                .body(body.clone())
        }
    })
    .await;
    let away = format!("{}/cdn/manifest", other_origin(&cdn));
    let server = Server::start(move |req| match req.header("authorization") {
        None => Response::new(401).header("WWW-Authenticate", r#"Basic realm="r""#),
        // Within the origin first (the credential goes along), then to another origin.
        Some(_) if req.path() == "/v2/app/manifests/latest" => {
            Response::new(307).header("Location", "/v2/app/manifests/moved")
        }
        Some(_) => Response::new(307).header("Location", &away),
    })
    .await;
    let (registry, _dir) = client(Some(&creds_json(&server, "cdn-user", "pw-cdn-user")));
    let got = registry
        .resolve(&image(&server, "app"), AMD64)
        .await
        .unwrap();
    assert_eq!(got.digest, digest);
    let moved = server
        .requests()
        .into_iter()
        .find(|r| r.path() == "/v2/app/manifests/moved")
        .expect("the same-origin redirect was followed");
    assert_eq!(
        moved.header("authorization"),
        Some(basic("cdn-user", "pw-cdn-user").as_str())
    );
    let fetched = cdn.requests();
    assert!(!fetched.is_empty());
    for r in &fetched {
        assert_eq!(r.path(), "/cdn/manifest");
        assert_eq!(r.header("authorization"), None, "{r:?}");
    }
}

#[tokio::test]
async fn a_token_endpoint_redirecting_to_another_origin_is_an_error_and_sends_nothing_there() {
    for status in [307, 308] {
        let elsewhere = Server::start(|_| {
            Response::new(200)
                .header("Content-Type", "application/json")
                .body(format!(r#"{{"token":"{TOKEN}"}}"#))
        })
        .await;
        let target = format!("{}/token", other_origin(&elsewhere));
        let server = Server::start(move |req| match req.path() {
            "/token" => Response::new(status).header("Location", &target),
            _ => {
                let host = req.header("host").unwrap_or_default();
                let challenge = format!(r#"Bearer realm="http://{host}/token",service="s""#);
                Response::new(401).header("WWW-Authenticate", &challenge)
            }
        })
        .await;
        let identity = format!(
            r#"{{"auths": {{"{}": {{"identitytoken": "refresh-redirected-1"}}}}}}"#,
            server.host()
        );
        let basic = creds_json(&server, "redir-user", "pw-redirected-1");
        for json in [identity, basic] {
            let (registry, _dir) = client(Some(&json));
            let err = registry
                .resolve(&image(&server, "app"), AMD64)
                .await
                .unwrap_err();
            assert!(
                elsewhere.requests().is_empty(),
                "HTTP {status} was followed: {:?}",
                elsewhere.requests()
            );
            let text = err.to_string();
            assert!(matches!(err, RegistryError::TokenRedirect { .. }), "{text}");
            let from = format!("http://{}", server.host());
            assert!(
                text.contains(&from) && text.contains(&other_origin(&elsewhere)),
                "names both origins: {text}"
            );
            assert!(text.contains("help:"), "{text}");
        }
    }
}

#[tokio::test]
async fn a_token_endpoint_redirecting_within_its_origin_is_followed_with_the_body() {
    let server = Server::start(|req| match req.path() {
        "/token" => Response::new(308).header("Location", "/token/v2"),
        "/token/v2" => Response::new(200)
            .header("Content-Type", "application/json")
            .body(format!(r#"{{"token":"{TOKEN}"}}"#)),
        _ if req.header("authorization") == Some(&format!("Bearer {TOKEN}")) => Response::new(200)
            .header("Content-Type", OCI_MANIFEST)
            .header("Docker-Content-Digest", &sha256_digest(&manifest(12))),
        _ => {
            let host = req.header("host").unwrap_or_default();
            let challenge = format!(r#"Bearer realm="http://{host}/token",service="s""#);
            Response::new(401).header("WWW-Authenticate", &challenge)
        }
    })
    .await;
    let json = format!(
        r#"{{"auths": {{"{}": {{"identitytoken": "refresh-same-origin-1"}}}}}}"#,
        server.host()
    );
    let (registry, _dir) = client(Some(&json));
    let got = registry
        .resolve(&image(&server, "app"), AMD64)
        .await
        .unwrap();
    assert_eq!(got.digest, sha256_digest(&manifest(12)));
    let moved = server
        .requests()
        .into_iter()
        .find(|r| r.path() == "/token/v2")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&moved.body).contains("refresh_token=refresh-same-origin-1"),
        "{moved:?}"
    );
}

#[tokio::test]
async fn session_tokens_follow_the_same_rules() {
    let server = start(Fake {
        auth: Auth::Bearer(Some(("sess-user", "pw-session-1"))),
        ..Fake::new()
    })
    .await;
    let (registry, _dir) = client(Some(&creds_json(&server, "sess-user", "pw-session-1")));
    let realm = format!("http://{}/token", server.host());
    let scopes = ["repository:app:pull".to_owned()];
    let (token, lifetime) = registry
        .session_token(&server.host(), &realm, "fake-registry", &scopes)
        .await
        .unwrap();
    assert_eq!(token, TOKEN);
    assert_eq!(lifetime, Duration::from_secs(300));
    let asked = &server.requests()[0];
    assert_eq!(
        asked.header("authorization"),
        Some(basic("sess-user", "pw-session-1").as_str())
    );
    assert!(
        asked.target.contains("scope=repository%3Aapp%3Apull"),
        "{asked:?}"
    );
    // A plain-HTTP realm on a host that is not loopback (nor insecure) is refused before any
    // request, as a challenge naming it is.
    let err = registry
        .session_token(&server.host(), "http://auth.example/token", "s", &scopes)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not HTTPS"), "{err}");
    assert!(
        err.to_string().contains("/app"),
        "names the repository: {err}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn token_answers_and_lifetimes() {
    let now = SystemTime::from(jiff::Timestamp::from_second(1_700_000_100).unwrap());
    let parse = |body: &str| parse_token(body.as_bytes(), now);
    assert_eq!(
        parse(r#"{"token":"a"}"#).unwrap(),
        ("a".into(), DEFAULT_TOKEN_LIFETIME)
    );
    assert_eq!(
        parse(r#"{"token":"a","access_token":"b","expires_in":300}"#).unwrap(),
        ("b".into(), Duration::from_secs(300))
    );
    // issued 100 s ago (2023-11-14T22:13:20Z is 1_700_000_000).
    let aged = r#"{"token":"a","expires_in":300,"issued_at":"2023-11-14T22:13:20Z"}"#;
    assert_eq!(parse(aged).unwrap().1, Duration::from_secs(200));
    let stale = r#"{"token":"a","expires_in":60,"issued_at":"2023-11-14T22:13:20Z"}"#;
    assert_eq!(parse(stale).unwrap().1, Duration::ZERO);
    for odd in [
        r#"{"token":"a","expires_in":-5}"#,
        r#"{"token":"a","expires_in":1e300}"#,
        r#"{"token":"a","issued_at":"yesterday"}"#,
    ] {
        assert!(parse(odd).is_ok(), "{odd}");
    }
    assert!(parse(r#"{"token":"a","expires_in":"300"}"#).is_err());
}

#[tokio::test]
async fn credentials_are_looked_up_once_at_a_time_and_failures_retried() {
    use std::os::unix::fs::PermissionsExt;
    let (registry, dir) = client(Some(r#"{"credsStore": "counted"}"#));
    let count = dir.path().join("count");
    let script = dir.path().join("docker-credential-counted");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho run >> {count}\nsleep 0.2\n[ \"$(wc -l < {count})\" -gt 1 ] || {{ echo boom >&2; exit 1; }}\necho '{{\"Username\":\"dave\",\"Secret\":\"pw-counted-dave\"}}'\n",
            count = count.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let img = ImageRef::parse("reg.example/app").unwrap();
    let runs = || std::fs::read_to_string(&count).unwrap().lines().count();
    // Concurrent callers share the one (failing) run.
    let all = futures_util::future::join_all((0..5).map(|_| registry.credentials(&img))).await;
    assert!(all.iter().all(Result::is_err), "{all:?}");
    assert_eq!(runs(), 1);
    // The failure is not kept: the next caller runs the helper again; its answer is kept.
    let creds = registry.credentials(&img).await.unwrap().unwrap();
    assert_eq!(creds.username, "dave");
    registry.credentials(&img).await.unwrap();
    assert_eq!(runs(), 2);
}

#[tokio::test]
async fn tag_lists_follow_link_pages_and_an_unknown_repository_has_none() {
    let server = Server::start(|req| match (req.path(), req.target.contains("last=b")) {
        ("/v2/app/tags/list", false) => Response::new(200)
            .header("link", "</v2/app/tags/list?n=2&last=b>; rel=\"next\"")
            .body(r#"{"name":"app","tags":["a","b"]}"#),
        ("/v2/app/tags/list", true) => Response::new(200).body(r#"{"name":"app","tags":["c"]}"#),
        _ => Response::new(404).body(r#"{"errors":[{"code":"NAME_UNKNOWN"}]}"#),
    })
    .await;
    let (registry, _dir) = client(None);
    let tags = registry.list_tags(&image(&server, "app")).await.unwrap();
    assert_eq!(tags, ["a", "b", "c"]);
    let none = registry.list_tags(&image(&server, "other")).await.unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn names_outside_the_tag_grammar_are_dropped_from_a_tag_list() {
    let server = Server::start(|_| {
        let tags = serde_json::json!({"tags": [
            "k-1", "k-/../../../other/repo", "", ".hidden", "k-\u{1b}[2J", "t".repeat(129), "s-2",
        ]});
        Response::new(200).body(tags.to_string())
    })
    .await;
    let (registry, _dir) = client(None);
    let tags = registry.list_tags(&image(&server, "app")).await.unwrap();
    assert_eq!(tags, ["k-1", "s-2"]);
}

#[tokio::test]
async fn a_tag_list_page_on_another_host_is_refused() {
    let server = Server::start(|_| {
        Response::new(200)
            .header(
                "link",
                "<http://198.51.100.1/v2/app/tags/list?last=a>; rel=\"next\"",
            )
            .body(r#"{"tags":["a"]}"#)
    })
    .await;
    let (registry, _dir) = client(None);
    let err = registry
        .list_tags(&image(&server, "app"))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Protocol { .. }), "{err}");
    assert!(err.to_string().contains("another host"), "{err}");
}

#[tokio::test]
async fn deleting_asks_for_the_delete_scope_and_a_405_says_how_to_enable_deletes() {
    let digest = format!("sha256:{:064}", 7);
    let host = Arc::new(std::sync::OnceLock::<String>::new());
    let realm = host.clone();
    let server = Server::start(move |req| match (req.method.as_str(), req.path()) {
        ("GET", "/token") => Response::new(200).body(r#"{"token":"t0k"}"#),
        _ if req.header("authorization") != Some("Bearer t0k") => Response::new(401).header(
            "www-authenticate",
            &format!(
                "Bearer realm=\"http://{}/token\",service=\"reg\"",
                realm.get().unwrap()
            ),
        ),
        ("DELETE", p) if p.starts_with("/v2/ok/") => Response::new(202),
        _ => Response::new(405).body(r#"{"errors":[{"code":"UNSUPPORTED"}]}"#),
    })
    .await;
    host.set(server.host()).unwrap();
    let (registry, _dir) = client(None);
    registry
        .delete_manifest(&image(&server, "ok:k-1"), &digest)
        .await
        .unwrap();
    let token_asks: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path() == "/token")
        .map(|r| r.target)
        .collect();
    assert!(
        token_asks[0].contains("scope=repository%3Aok%3Apull%2Cdelete"),
        "{token_asks:?}"
    );
    assert!(
        server
            .lines()
            .contains(&format!("DELETE /v2/ok/manifests/{digest}"))
    );
    let err = registry
        .delete_manifest(&image(&server, "off:k-1"), &digest)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::DeleteDisabled { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&server.host()) && text.contains("storage: delete: enabled: true"),
        "{text}"
    );
}
