use std::time::Duration;

use url::Url;

use crate::credentials::{Credentials, parse_npmrc};
use crate::{Ecosystem, Index, IndexError, Package, npm, pypi};
use planner_test_support::scripted_http::{Response, Server};

fn pkg(ecosystem: Ecosystem, index: &str, name: &str, pre: bool) -> Package {
    Package {
        ecosystem,
        index: Url::parse(index).unwrap(),
        name: name.into(),
        pre,
    }
}

fn index() -> Index {
    Index::with_credentials(Duration::from_secs(5), Credentials::default())
}

const HTML: &str = r#"<!DOCTYPE html><html><body>
<a href="/f/my_pkg-1.0.tar.gz#sha256=00">my_pkg-1.0.tar.gz</a>
<a href="/f/my_pkg-1.10-py3-none-any.whl">my_pkg-1.10-py3-none-any.whl</a>
<a href="/f/my_pkg-1.9.tar.gz">my_pkg-1.9.tar.gz</a>
<a href="/f/my_pkg-2.0.tar.gz" data-yanked="">my_pkg-2.0.tar.gz</a>
<a href="/f/my_pkg-1.11rc1.tar.gz">my_pkg-1.11rc1.tar.gz</a>
<a href="/f/my_pkg_extra-9.0.tar.gz">my_pkg_extra-9.0.tar.gz</a>
</body></html>"#;

#[test]
fn html_versions_are_ordered_by_pep_440_without_yanked_or_pre_releases() {
    let files = pypi::files_from_html(HTML);
    assert_eq!(files.len(), 6);
    assert!(files[3].yanked && !files[0].yanked);
    // 1.10 > 1.9 (not a string order); 2.0 is yanked; 1.11rc1 a pre-release; my-pkg-extra another project.
    assert_eq!(pypi::pick(&files, "My.Pkg", false).unwrap(), "1.10");
    assert_eq!(pypi::pick(&files, "my-pkg", true).unwrap(), "1.11rc1");
}

#[test]
fn json_yanked_is_true_or_a_reason() {
    let body = br#"{"meta":{"api-version":"1.0"},"name":"p","files":[
        {"filename":"p-1.0.tar.gz","url":"x","hashes":{}},
        {"filename":"p-1.1.tar.gz","url":"x","hashes":{},"yanked":"broken"},
        {"filename":"p-1.2.tar.gz","url":"x","hashes":{},"yanked":true},
        {"filename":"p-0.9.tar.gz","url":"x","hashes":{},"yanked":false}]}"#;
    let files = pypi::files_from_json(body).unwrap();
    assert_eq!(pypi::pick(&files, "p", false).unwrap(), "1.0");
}

#[test]
fn no_release_says_why() {
    let files = vec![pypi::File {
        filename: "p-1.0a1.tar.gz".into(),
        yanked: false,
    }];
    assert!(
        pypi::pick(&files, "p", false)
            .unwrap_err()
            .contains("pre = true")
    );
    assert!(
        pypi::pick(&[], "p", false)
            .unwrap_err()
            .contains("no sdist")
    );
}

#[test]
fn names_and_urls() {
    assert_eq!(
        pypi::normalize("Molecule_AI..Runtime"),
        "molecule-ai-runtime"
    );
    let base = Url::parse("https://h.example/simple").unwrap();
    assert_eq!(
        pypi::project_url(&base, "A_b").as_str(),
        "https://h.example/simple/a-b/"
    );
    let reg = Url::parse("https://r.example/npm/").unwrap();
    assert_eq!(
        npm::package_url(&reg, "@openai/codex").as_str(),
        "https://r.example/npm/@openai%2fcodex"
    );
}

#[test]
fn npm_latest_is_checked() {
    assert_eq!(
        npm::latest_of(br#"{"dist-tags":{"latest":"0.4.3"}}"#).unwrap(),
        "0.4.3"
    );
    assert_eq!(npm::latest_of(br#"{"name":"x"}"#), Err(npm::Why::NoLatest));
    assert!(matches!(
        npm::latest_of(br#"{"dist-tags":{"latest":"1.0\n; rm -rf"}}"#),
        Err(npm::Why::Bad(_))
    ));
}

#[test]
fn npmrc_tokens_match_the_longest_prefix() {
    let creds = Credentials {
        pip_index_url: None,
        npm_tokens: parse_npmrc(
            "registry=https://x/\n//r.example/:_authToken=short\n//r.example/npm/:_authToken=\"long\"\n",
        ),
    };
    let p = pkg(Ecosystem::Npm, "https://r.example/npm/", "x", false);
    assert_eq!(creds.authorization(&p).as_deref(), Some("Bearer long"));
    let other = pkg(Ecosystem::Npm, "https://other.example/", "x", false);
    assert_eq!(creds.authorization(&other), None);
}

#[tokio::test]
async fn json_is_asked_for_and_each_package_once() {
    let server = Server::start(|req| {
        assert!(
            req.header("accept")
                .unwrap()
                .starts_with("application/vnd.pypi.simple.v1+json")
        );
        Response::new(200)
            .header("Content-Type", "application/vnd.pypi.simple.v1+json")
            .body(
                r#"{"files":[{"filename":"p-1.0.tar.gz"},{"filename":"p-1.1-py3-none-any.whl"}]}"#,
            )
    })
    .await;
    let index = index();
    let p = pkg(
        Ecosystem::Pypi,
        &format!("http://{}/simple/", server.host()),
        "P",
        false,
    );
    assert_eq!(index.latest(&p).await.unwrap(), "1.1");
    assert_eq!(index.clone().latest(&p).await.unwrap(), "1.1");
    assert_eq!(server.lines(), vec!["GET /simple/p/"]);
}

#[tokio::test]
async fn basic_auth_from_the_url_and_errors_name_package_and_index() {
    let server = Server::start(|req| match (req.path(), req.header("authorization")) {
        ("/simple/p/", Some("Basic dTpzM2NyZXQ=")) => Response::new(200)
            .header("Content-Type", "text/html")
            .body("<a href='x'>p-2.0.tar.gz</a>"),
        ("/simple/p/", _) => Response::new(401),
        ("/simple/gone/", _) => Response::new(404),
        _ => Response::new(503),
    })
    .await;
    let index = index();
    let at = |auth: &str, name: &str| {
        pkg(
            Ecosystem::Pypi,
            &format!("http://{auth}{}/simple/", server.host()),
            name,
            false,
        )
    };
    assert_eq!(index.latest(&at("u:s3cret@", "p")).await.unwrap(), "2.0");
    let denied = index.latest(&at("", "p")).await.unwrap_err();
    assert!(
        matches!(denied, IndexError::Denied { status: 401, .. }),
        "{denied}"
    );
    let gone = index.latest(&at("", "gone")).await.unwrap_err().to_string();
    assert!(
        gone.contains("\"gone\"") && gone.contains(&server.host()),
        "{gone}"
    );
    let down = index.latest(&at("", "down")).await.unwrap_err().to_string();
    assert!(
        down.contains("unavailable") && down.contains("HTTP 503"),
        "{down}"
    );
    let text = format!("{denied}");
    assert!(!text.contains("s3cret"));
}

#[tokio::test]
async fn a_credential_never_follows_a_redirect_to_another_origin() {
    let other = Server::start(|_| {
        Response::new(200)
            .header("Content-Type", "text/html")
            .body("<a>p-1.0.tar.gz</a>")
    })
    .await;
    let target = format!(
        "http://localhost:{}/simple/p/",
        other.host().rsplit(':').next().unwrap()
    );
    let server = Server::start(move |_| Response::new(302).header("Location", &target)).await;
    let p = pkg(
        Ecosystem::Pypi,
        &format!("http://u:pw@{}/simple/", server.host()),
        "p",
        false,
    );
    let err = index().latest(&p).await.unwrap_err();
    assert!(matches!(err, IndexError::Protocol { .. }), "{err}");
    assert!(other.requests().is_empty());
}

#[tokio::test]
async fn plain_http_only_to_loopback_and_a_dead_index_is_unavailable() {
    let p = pkg(Ecosystem::Npm, "http://registry.example/", "x", false);
    assert!(matches!(
        index().latest(&p).await,
        Err(IndexError::Insecure { .. })
    ));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let p = pkg(
        Ecosystem::Npm,
        &format!("http://127.0.0.1:{port}/"),
        "x",
        false,
    );
    let err = index().latest(&p).await.unwrap_err();
    assert!(matches!(err, IndexError::Unavailable { .. }), "{err}");
}

#[tokio::test]
async fn npm_asks_the_abbreviated_document_with_the_token() {
    let server = Server::start(|req| {
        assert!(
            req.header("accept")
                .unwrap()
                .starts_with("application/vnd.npm.install-v1+json")
        );
        assert_eq!(req.header("authorization"), Some("Bearer tok"));
        Response::new(200)
            .header("Content-Type", "application/vnd.npm.install-v1+json")
            .body(r#"{"name":"@s/p","dist-tags":{"latest":"3.1.4","next":"4.0.0-rc.1"}}"#)
    })
    .await;
    let creds = Credentials {
        pip_index_url: None,
        npm_tokens: vec![(format!("//{}/", server.host()), "tok".into())],
    };
    let index = Index::with_credentials(Duration::from_secs(5), creds);
    let p = pkg(
        Ecosystem::Npm,
        &format!("http://{}/", server.host()),
        "@s/p",
        false,
    );
    assert_eq!(index.latest(&p).await.unwrap(), "3.1.4");
    assert_eq!(server.lines(), vec!["GET /@s%2fp"]);
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused() {
    let server = Server::start(|_| {
        Response::new(200)
            .header("Content-Type", "text/html")
            .body(vec![b'a'; crate::transport::BODY_CAP + 1])
    })
    .await;
    let p = pkg(
        Ecosystem::Pypi,
        &format!("http://{}/", server.host()),
        "p",
        false,
    );
    let err = index().latest(&p).await.unwrap_err().to_string();
    assert!(err.contains("larger than"), "{err}");
}
