//! A real npm registry for the `resolve-version` tests: verdaccio (pinned by
//! scripts/test-env.sh) on 127.0.0.1 with its storage in a temp dir, no uplinks (a package it
//! does not have is `404`, never fetched from outside) and JWT API tokens.
//!
//! Two modes ([`NpmAuth`]): `Open` reads anonymously, `Token` needs a token for reads too
//! (`Authorization: Bearer …`, what planner sends from an `.npmrc` `//host/:_authToken=`);
//! publishing always needs one. At start the support code registers a publisher
//! (`PUT /-/user/org.couchdb.user:<name>`, which answers `201 {"token": …}`), and
//! [`NpmRegistry::publish`] PUTs the package document with the tarball attached, as
//! `npm publish` does (verdaccio checks `dist.shasum` against the tarball).
//!
//! What verdaccio 6.8.0 answers (seen in tests/index_smoke.rs):
//! - `GET /<name>` and `GET /@scope%2fname` (also `%2F`, and an unencoded `/@scope/name`) with
//!   `Accept: application/vnd.npm.install-v1+json`: `200`, `Content-Type:
//!   application/vnd.npm.install-v1+json; charset=utf-8`, a strong `ETag` (`If-None-Match`
//!   gives `304`), body `{"name", "dist-tags": {"latest": …}, "versions": {v: {"name",
//!   "version", "dist": {"shasum", "integrity", "tarball"}, "hasInstallScript"}},
//!   "modified", "time"}`; without that Accept the full document (`application/json`).
//!   Tarball URLs are rewritten to the host the request came to.
//! - Unknown package: `404 {"error": "no such package available"}`. Token mode without a
//!   token, or with a wrong one: `401 {"error": "authorization required to access package …"}`.
//! - Publishing a version moves the tag it is published under (`dist-tags` of the document;
//!   `latest` by default), even to a lower version; [`NpmRegistry::set_tag`] is
//!   `npm dist-tag add` (`PUT /-/package/<name>/dist-tags/<tag>` with a JSON string body).
//!   Republishing a version is `409`. Changes show at once (no cache to wait for).
//! - Every request is logged (JSON lines, authorization shown as `<Classified>`):
//!   [`NpmRegistry::requests`] reads them, to count requests at the registry.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::Digest as _;

use super::index_proc::{self, ServerProcess};
use super::registry::{HttpResponse, http_request};

pub const VERDACCIO_ENV: &str = "PLANNER_TEST_VERDACCIO";
/// The abbreviated-metadata media type (what npm's installer asks for).
pub const ABBREVIATED: &str = "application/vnd.npm.install-v1+json";
/// The User-Agent of this module's own requests (to tell them apart in [`NpmRegistry::requests`]).
pub const SUPPORT_UA: &str = "planner-test-support";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpmAuth {
    /// Anonymous reads; publishing needs a token.
    Open,
    /// Reads need a token as well.
    Token,
}

/// One request as verdaccio logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpmRequest {
    pub method: String,
    /// As sent, e.g. `/@scope%2fname`.
    pub url: String,
    pub user_agent: String,
    pub accept: String,
    /// Whether an `Authorization` header came (verdaccio logs no value).
    pub authorized: bool,
}

pub struct NpmRegistry {
    port: u16,
    auth: NpmAuth,
    /// The publisher's token (valid for reads too).
    token: String,
    startup: Duration,
    process: ServerProcess,
}

static SHARED_OPEN: OnceLock<NpmRegistry> = OnceLock::new();
static SHARED_TOKEN: OnceLock<NpmRegistry> = OnceLock::new();

const PUBLISHER: &str = "planner-publisher";

impl NpmRegistry {
    /// A registry of this test's own.
    pub fn start(auth: NpmAuth) -> NpmRegistry {
        let program = index_proc::tool(VERDACCIO_ENV, "verdaccio");
        let mut failures = Vec::new();
        // A port picked here can be taken before verdaccio binds it: retry with another.
        for _ in 0..3 {
            let dir = index_proc::server_dir("pl-npm-");
            std::fs::write(dir.join("config.yaml"), config_yaml(&dir, auth)).unwrap();
            let port = index_proc::free_port();
            let args = [
                "--config".to_owned(),
                dir.join("config.yaml").display().to_string(),
                "--listen".to_owned(),
                format!("127.0.0.1:{port}"),
            ];
            let process = ServerProcess::spawn(&dir, "verdaccio.log", &program, &args);
            let ping = format!("http://127.0.0.1:{port}/-/ping");
            // Ours when it answers and its own log says it listens on that port.
            let listening = format!("http://127.0.0.1:{port}/");
            let ready = process.wait_ready(|| {
                index_proc::probe(&ping) == Some(200)
                    && std::fs::read_to_string(dir.join("verdaccio.log"))
                        .is_ok_and(|log| log.contains(&listening))
            });
            match ready {
                Ok(startup) => {
                    let mut registry = NpmRegistry {
                        port,
                        auth,
                        token: String::new(),
                        startup,
                        process,
                    };
                    registry.token = registry.add_user(PUBLISHER, &random_password());
                    return registry;
                }
                Err(why) => failures.push(why),
            }
        }
        panic!(
            "verdaccio did not start on 127.0.0.1:\n{}",
            failures.join("\n---\n")
        )
    }

    /// One registry per test binary and mode, started on first use (verdaccio takes a second
    /// or two to start); use [`index_proc::unique_name`] for package names.
    pub fn shared(auth: NpmAuth) -> &'static NpmRegistry {
        let cell = match auth {
            NpmAuth::Open => &SHARED_OPEN,
            NpmAuth::Token => &SHARED_TOKEN,
        };
        cell.get_or_init(|| NpmRegistry::start(auth))
    }

    /// `http://127.0.0.1:PORT/`, the registry URL (as `.npmrc` `registry=` names it).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn auth(&self) -> NpmAuth {
        self.auth
    }

    /// A token valid for reads (and publishing) in either mode.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// How long the server took to answer after it was started.
    pub fn startup(&self) -> Duration {
        self.startup
    }

    /// An `.npmrc` that points at this registry with `token` (`None`: no credentials).
    pub fn npmrc(&self, token: Option<&str>) -> String {
        let mut text = format!("registry={}\n", self.url());
        if let Some(token) = token {
            text.push_str(&format!("//127.0.0.1:{}/:_authToken={token}\n", self.port));
        }
        text
    }

    /// The server's output (startup lines and one JSON line per request).
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Registers a user and returns its token (`201`; `409` if the name is taken).
    pub fn add_user(&self, name: &str, password: &str) -> String {
        let body = serde_json::json!({ "name": name, "password": password });
        let response = self.request(
            "PUT",
            &format!("/-/user/org.couchdb.user:{name}"),
            None,
            &[("content-type", "application/json")],
            Some(body.to_string().into_bytes()),
        );
        assert_eq!(response.status, 201, "add user {name}: {}", text(&response));
        let doc: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        doc["token"].as_str().expect("a token").to_owned()
    }

    /// Publishes `version` of `name` (`pkg` or `@scope/pkg`) under the tag `latest`.
    pub fn publish(&self, name: &str, version: &str) {
        self.publish_tagged(name, version, "latest");
    }

    /// Publishes `version` of `name` under `tag` (e.g. `next` for a pre-release, which leaves
    /// `latest` where it is).
    pub fn publish_tagged(&self, name: &str, version: &str, tag: &str) {
        let response = self.try_publish(name, version, tag);
        assert_eq!(
            response.status,
            201,
            "publish {name}@{version}: {}",
            text(&response)
        );
    }

    /// The PUT of [`NpmRegistry::publish_tagged`], whatever the answer (`409` for a version
    /// that exists).
    pub fn try_publish(&self, name: &str, version: &str, tag: &str) -> HttpResponse {
        let document = publish_document(&self.url(), name, version, tag);
        self.request(
            "PUT",
            &format!("/{}", encode_name(name)),
            Some(&self.token),
            &[("content-type", "application/json")],
            Some(document.to_string().into_bytes()),
        )
    }

    /// Points `tag` of `name` at a published `version` (`npm dist-tag add name@version tag`).
    pub fn set_tag(&self, name: &str, tag: &str, version: &str) {
        let response = self.request(
            "PUT",
            &format!("/-/package/{}/dist-tags/{tag}", encode_name(name)),
            Some(&self.token),
            &[("content-type", "application/json")],
            Some(serde_json::Value::from(version).to_string().into_bytes()),
        );
        assert_eq!(
            response.status,
            201,
            "set {name} {tag} -> {version}: {}",
            text(&response)
        );
    }

    /// The abbreviated document of `name` (`GET /<name>` with [`ABBREVIATED`]); `None` on 404.
    pub fn abbreviated(&self, name: &str) -> Option<serde_json::Value> {
        let response = self.request(
            "GET",
            &format!("/{}", encode_name(name)),
            Some(&self.token),
            &[("accept", ABBREVIATED)],
            None,
        );
        if response.status == 404 {
            return None;
        }
        assert_eq!(response.status, 200, "GET {name}: {}", text(&response));
        Some(serde_json::from_slice(&response.body).expect("a JSON document"))
    }

    /// `dist-tags.latest` of `name`, as the registry answers now.
    pub fn latest(&self, name: &str) -> Option<String> {
        let doc = self.abbreviated(name)?;
        doc["dist-tags"]["latest"].as_str().map(str::to_owned)
    }

    /// An HTTP request to `path` (redirects not followed), with `Bearer token` when given and
    /// the User-Agent [`SUPPORT_UA`] unless `headers` set one.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> HttpResponse {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = vec![("user-agent", SUPPORT_UA)];
        all.retain(|(n, _)| !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(n)));
        all.extend_from_slice(headers);
        if let Some(bearer) = &bearer {
            all.push(("authorization", bearer));
        }
        http_request(method, &url, &all, body)
    }

    /// Every request verdaccio logged so far, in order (this module's own included: filter
    /// on `user_agent != SUPPORT_UA`).
    pub fn requests(&self) -> Vec<NpmRequest> {
        let log =
            std::fs::read_to_string(self.process.dir().join("verdaccio.log")).unwrap_or_default();
        log.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|v| v["level"] == 30 && v["req"].is_object())
            .map(|v| {
                let req = &v["req"];
                let header = |n: &str| req["headers"][n].as_str().unwrap_or_default().to_owned();
                NpmRequest {
                    method: req["method"].as_str().unwrap_or_default().to_owned(),
                    url: req["url"].as_str().unwrap_or_default().to_owned(),
                    user_agent: header("user-agent"),
                    accept: header("accept"),
                    authorized: req["headers"]["authorization"].is_string(),
                }
            })
            .collect()
    }
}

/// The path segment of a package name: `@scope/pkg` → `@scope%2fpkg` (as npm sends it).
pub fn encode_name(name: &str) -> String {
    name.replacen('/', "%2f", 1)
}

fn text(response: &HttpResponse) -> String {
    format!(
        "{} {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    )
}

fn random_password() -> String {
    format!("pw-{:016x}", fastrand::u64(..))
}

fn config_yaml(dir: &Path, auth: NpmAuth) -> String {
    let access = match auth {
        NpmAuth::Open => "$all",
        NpmAuth::Token => "$authenticated",
    };
    let d = dir.display();
    format!(
        "storage: {d}/storage\n\
         auth:\n  htpasswd:\n    file: {d}/htpasswd\n    max_users: 1000\n\
         uplinks: {{}}\n\
         packages:\n  '@*/*':\n    access: {access}\n    publish: $authenticated\n    unpublish: $authenticated\n\
         \x20 '**':\n    access: {access}\n    publish: $authenticated\n    unpublish: $authenticated\n\
         security:\n  api:\n    jwt:\n      sign:\n        expiresIn: 7d\n\
         web:\n  enable: false\n\
         log: {{ type: stdout, format: json, level: http }}\n"
    )
}

/// The document `npm publish` PUTs: one version, its tag, the tarball as an attachment.
fn publish_document(base: &str, name: &str, version: &str, tag: &str) -> serde_json::Value {
    let tarball = npm_tarball(name, version);
    let short = name.rsplit('/').next().unwrap_or(name);
    let file = format!("{short}-{version}.tgz");
    let shasum = sha1_smol::Sha1::from(&tarball).digest().to_string();
    let integrity = format!("sha512-{}", STANDARD.encode(sha2::Sha512::digest(&tarball)));
    serde_json::json!({
        "_id": name,
        "name": name,
        "description": "a planner test package",
        "dist-tags": { tag: version },
        "versions": {
            version: {
                "_id": format!("{name}@{version}"),
                "name": name,
                "version": version,
                "description": "a planner test package",
                "dist": {
                    "shasum": shasum,
                    "integrity": integrity,
                    "tarball": format!("{base}{name}/-/{file}"),
                },
            }
        },
        "access": null,
        "_attachments": {
            file: {
                "content_type": "application/octet-stream",
                "data": STANDARD.encode(&tarball),
                "length": tarball.len(),
            }
        },
    })
}

/// A minimal npm package tarball: `package/package.json`, gzipped.
fn npm_tarball(name: &str, version: &str) -> Vec<u8> {
    let manifest = serde_json::json!({ "name": name, "version": version }).to_string();
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_size(manifest.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "package/package.json", manifest.as_bytes())
        .unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}
