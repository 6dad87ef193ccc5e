//! A Docker token issuer (the `realm` of a registry's `auth: token`) on 127.0.0.1, for the
//! Bearer flow tests: `GET /token?service=…&scope=…` with optional HTTP Basic credentials.
//!
//! - Right credentials: a token granting every requested action (`pull`, `push`, `delete`, `*`).
//! - No credentials: a token with no access, as real issuers answer anonymous clients of a
//!   private repository ([`TokenIssuer::set_anonymous_pull`]: `pull` only, a public one).
//! - Wrong credentials: `401`. A `service` other than [`SERVICE`]: `400`.
//!
//! Also the OAuth2 form POST docker uses with an identity token (`grant_type=refresh_token`
//! with [`TokenIssuer::refresh_token`], or `grant_type=password`).
//!
//! The answer is `{"token","access_token","expires_in","issued_at"}` (+ `refresh_token`, see
//! [`TokenIssuer::set_offer_refresh_tokens`]). The token is a JWT
//! distribution 2.8 accepts (`registry/auth/token/token.go`): RS256, the signing certificate
//! in the header's `x5c` (verified against `rootcertbundle`), claims `iss` = [`ISSUER`],
//! `sub`, `aud` = [`SERVICE`], `exp`, `nbf`, `iat`, `jti`, `access`. The RSA key and its
//! self-signed certificate are made with the `openssl` CLI at start; tokens are signed with
//! `openssl dgst`. Every request is logged, so tests can assert a client caches its token.
//!
//! Hostile mode ([`TokenIssuer::set_redirect`]): every request is answered with a redirect
//! (307/308) to another origin, as a token endpoint that tries to move a client's POST body
//! (its refresh token) elsewhere.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// The registry's `auth.token.service` and the tokens' audience.
pub const SERVICE: &str = "planner-test-registry";
/// The registry's `auth.token.issuer` and the tokens' `iss`.
pub const ISSUER: &str = "planner-test-issuer";
const MAX_HEAD: u64 = 64 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// One request to the issuer.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub method: String,
    /// The request path (without the query), `/token` for a well-formed request.
    pub path: String,
    /// The `service` query parameter, if any.
    pub service: Option<String>,
    /// Every `scope` parameter (each may hold several space-separated scopes).
    pub scopes: Vec<String>,
    /// POST (OAuth2) only: `password` or `refresh_token`.
    pub grant_type: Option<String>,
    /// The user asking (Basic `Authorization` on GET; `username` or a valid refresh token on
    /// POST); `None` for anonymous requests.
    pub user: Option<String>,
    pub user_agent: String,
    pub status: u16,
    /// The `access` claim granted, e.g. `["repository:a/b:pull,push"]`; empty when denied.
    pub granted: Vec<String>,
}

/// The issuer; stops accepting when dropped.
pub struct TokenIssuer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _dir: tempfile::TempDir,
}

struct Shared {
    user: String,
    pass: String,
    key: PathBuf,
    /// Base64 (standard) DER of the signing certificate, for `x5c`.
    cert_der: String,
    expires_in: AtomicU64,
    anonymous_pull: AtomicBool,
    offer_refresh: AtomicBool,
    stop: AtomicBool,
    serial: AtomicU64,
    /// `(status, Location)` every request is answered with, when set.
    redirect: Mutex<Option<(u16, String)>>,
    log: Mutex<Vec<TokenRequest>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TokenIssuer {
    /// Starts an issuer that accepts `user`/`pass`; tokens last 300 s.
    pub fn start(user: &str, pass: &str) -> TokenIssuer {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = make_key_and_cert(dir.path());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            user: user.to_owned(),
            pass: pass.to_owned(),
            key,
            cert_der: pem_body(&cert),
            expires_in: AtomicU64::new(300),
            anonymous_pull: AtomicBool::new(false),
            offer_refresh: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            serial: AtomicU64::new(0),
            redirect: Mutex::new(None),
            log: Mutex::new(Vec::new()),
        });
        let for_accept = Arc::clone(&shared);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if for_accept.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let shared = Arc::clone(&for_accept);
                std::thread::spawn(move || answer(stream, &shared));
            }
        });
        TokenIssuer {
            addr,
            shared,
            _dir: dir,
        }
    }

    /// The registry's `auth.token.realm`: `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The PEM certificate for the registry's `auth.token.rootcertbundle`.
    pub fn root_cert_bundle(&self) -> PathBuf {
        self._dir.path().join("cert.pem")
    }

    /// Sets the `expires_in` of tokens issued from now on (seconds; distribution adds 60 s
    /// leeway to `exp`, so a short value tests the client's cache, not the registry).
    pub fn set_expires_in(&self, seconds: u64) {
        self.shared.expires_in.store(seconds, Ordering::SeqCst);
    }

    /// Anonymous requests get `pull` on the repositories they ask for (a public registry like
    /// Docker Hub or ghcr.io for public images); default off (anonymous: no access).
    pub fn set_anonymous_pull(&self, on: bool) {
        self.shared.anonymous_pull.store(on, Ordering::SeqCst);
    }

    /// Answers a GET with `offline_token=true` (or a POST with `access_type=offline`) from the
    /// right user with a `refresh_token` too: `docker login` then stores it as the
    /// `identitytoken` of config.json. Default off (docker login stores `auth`).
    pub fn set_offer_refresh_tokens(&self, on: bool) {
        self.shared.offer_refresh.store(on, Ordering::SeqCst);
    }

    /// Answers every request from now on with `status` and `Location: location` (`None`:
    /// issue tokens again). Requests are still logged (with that status).
    pub fn set_redirect(&self, redirect: Option<(u16, &str)>) {
        *lock(&self.shared.redirect) = redirect.map(|(s, l)| (s, l.to_owned()));
    }

    /// The realm as a registry names it when reached by `host` (e.g. an IPv6 literal that
    /// reaches this issuer's 127.0.0.1 listener): `http://HOST:PORT/token`.
    pub fn realm_at(&self, host: &str) -> String {
        format!("http://{host}:{}/token", self.addr.port())
    }

    /// The refresh token (docker's identity token) this issuer accepts in an OAuth2 POST
    /// (`grant_type=refresh_token`), for a config.json `identitytoken`.
    pub fn refresh_token(&self) -> String {
        self.shared.refresh_token()
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        lock(&self.shared.log).clone()
    }

    /// Requests other than this module's own (user agent [`crate::http::SUPPORT_UA`]):
    /// the engine's (`docker/…`) and planner's.
    pub fn client_requests(&self) -> Vec<TokenRequest> {
        let mut all = self.requests();
        all.retain(|r| r.user_agent != crate::http::SUPPORT_UA);
        all
    }

    /// Requests that were answered with a token (status 200).
    pub fn tokens_issued(&self) -> usize {
        self.requests().iter().filter(|r| r.status == 200).count()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    /// Asks this issuer for a token as a client would (`None` credentials: anonymous);
    /// returns the raw token. Logged like any request (user agent [`crate::http::SUPPORT_UA`]).
    pub fn fetch_token(&self, scope: &str, creds: Option<(&str, &str)>) -> String {
        let url = format!(
            "{}?service={SERVICE}&scope={}",
            self.realm(),
            url::form_urlencoded::byte_serialize(scope.as_bytes()).collect::<String>()
        );
        let auth = creds.map(|(u, p)| format!("Basic {}", STANDARD.encode(format!("{u}:{p}"))));
        let mut headers = Vec::new();
        if let Some(auth) = &auth {
            headers.push(("authorization", auth.as_str()));
        }
        let response = crate::http::http_request("GET", &url, &headers, None);
        assert_eq!(response.status, 200, "token for {scope}: {response:?}");
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        body["token"].as_str().expect("token in answer").to_owned()
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl: run the suite through scripts/test.sh, which installs it");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `key.pem` (RSA 2048) and a self-signed `cert.pem` for it, valid for two days.
fn make_key_and_cert(dir: &Path) -> (PathBuf, String) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=planner-test-issuer",
        ],
        dir,
    );
    let cert = std::fs::read_to_string(dir.join("cert.pem")).unwrap();
    (dir.join("key.pem"), cert)
}

/// The base64 between the PEM armour lines: the DER, standard base64, as `x5c` wants it.
fn pem_body(pem: &str) -> String {
    pem.lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>()
}

/// Reads one request (head, and a form body for POST), answers it, closes.
fn answer(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let Some((method, target, headers)) = read_head(&mut reader) else {
        return;
    };
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let url = url::Url::parse(&format!("http://issuer{target}")).ok();
    let path = url
        .as_ref()
        .map(|u| u.path().to_owned())
        .unwrap_or_default();
    let mut pairs: Vec<(String, String)> = url
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default();
    if method == "POST" {
        let len: u64 = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = Vec::new();
        let _ = reader.take(len.min(MAX_HEAD)).read_to_end(&mut body);
        pairs.extend(url::form_urlencoded::parse(&body).into_owned());
    }
    let mut request = Incoming {
        pairs,
        basic: header("authorization").and_then(|h| decode_basic(&h)),
    };
    let mut entry = TokenRequest {
        method,
        path,
        service: request.param("service"),
        scopes: request.all("scope"),
        grant_type: request.param("grant_type"),
        user: None,
        user_agent: header("user-agent").unwrap_or_default(),
        status: 0,
        granted: Vec::new(),
    };
    let redirect = lock(&shared.redirect).clone();
    let (status, body, location) = match redirect {
        Some((status, location)) => {
            entry.user = request.basic.as_ref().map(|(u, _)| u.clone());
            (status, String::new(), format!("Location: {location}\r\n"))
        }
        None => {
            let (status, body) = decide(shared, &mut entry, &mut request);
            (status, body, String::new())
        }
    };
    entry.status = status;
    lock(&shared.log).push(entry);
    let head = format!(
        "HTTP/1.1 {status} X\r\n{location}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
}

/// The parameters (query, and form for POST) and Basic credentials of one request.
struct Incoming {
    pairs: Vec<(String, String)>,
    basic: Option<(String, String)>,
}

impl Incoming {
    fn param(&self, name: &str) -> Option<String> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// Who is asking: `Ok(Some(user))` for good credentials (Basic on GET; `password` or
/// `refresh_token` grant on POST), `Ok(None)` for anonymous, `Err` for bad ones.
fn identify(
    shared: &Shared,
    entry: &TokenRequest,
    request: &Incoming,
) -> Result<Option<String>, ()> {
    let good = |u: &str, p: &str| u == shared.user && p == shared.pass;
    if entry.method == "POST" {
        return match entry.grant_type.as_deref() {
            Some("refresh_token")
                if request.param("refresh_token").as_deref() == Some(&shared.refresh_token()) =>
            {
                Ok(Some(shared.user.clone()))
            }
            Some("password") => {
                let (u, p) = (request.param("username"), request.param("password"));
                match (u, p) {
                    (Some(u), Some(p)) if good(&u, &p) => Ok(Some(u)),
                    _ => Err(()),
                }
            }
            _ => Err(()),
        };
    }
    match &request.basic {
        Some((u, p)) if good(u, p) => Ok(Some(u.clone())),
        Some(_) => Err(()),
        None => Ok(None),
    }
}

/// The status and JSON body for one request; fills `entry.user` and `entry.granted`.
fn decide(shared: &Shared, entry: &mut TokenRequest, request: &mut Incoming) -> (u16, String) {
    if !entry.target_ok() {
        return (
            404,
            error_body("NOT_FOUND", "only GET and POST /token are served"),
        );
    }
    if entry.service.as_deref() != Some(SERVICE) {
        return (400, error_body("INVALID_REQUEST", "unknown service"));
    }
    entry.user = request
        .basic
        .as_ref()
        .map(|(u, _)| u.clone())
        .or_else(|| request.param("username"));
    let Ok(user) = identify(shared, entry, request) else {
        return (401, error_body("UNAUTHORIZED", "bad credentials"));
    };
    entry.user = user.clone().or(entry.user.take());
    let access = if user.is_some() {
        grant(&entry.scopes)
    } else if shared.anonymous_pull.load(Ordering::SeqCst) {
        pull_only(grant(&entry.scopes))
    } else {
        Vec::new()
    };
    entry.granted = access
        .iter()
        .map(|(t, n, a)| format!("{t}:{n}:{}", a.join(",")))
        .collect();
    // A refresh token (docker's identity token) when asked for offline access, if offered.
    let offline = request.param("offline_token").as_deref() == Some("true")
        || request.param("access_type").as_deref() == Some("offline");
    let refresh = (user.is_some() && offline && shared.offer_refresh.load(Ordering::SeqCst))
        .then(|| shared.refresh_token());
    let subject = user.as_deref().unwrap_or("");
    (
        200,
        token_body(shared, subject, &access, refresh.as_deref()),
    )
}

impl TokenRequest {
    fn target_ok(&self) -> bool {
        (self.method == "GET" || self.method == "POST") && self.path == "/token"
    }
}

impl Shared {
    /// The one refresh token this issuer hands out and accepts.
    fn refresh_token(&self) -> String {
        format!("planner-test-refresh-{}", self.user)
    }
}

/// `(type, name, actions)` for every well-formed requested scope, actions filtered to the
/// ones a registry knows.
fn grant(scopes: &[String]) -> Vec<(String, String, Vec<String>)> {
    scopes
        .iter()
        .flat_map(|s| s.split(' '))
        .filter_map(|scope| {
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            let actions: Vec<String> = actions
                .split(',')
                .filter(|a| matches!(*a, "pull" | "push" | "delete" | "*"))
                .map(str::to_owned)
                .collect();
            Some((kind.to_owned(), name.to_owned(), actions))
        })
        .collect()
}

/// Only `pull` on repositories, from a grant.
fn pull_only(access: Vec<(String, String, Vec<String>)>) -> Vec<(String, String, Vec<String>)> {
    access
        .into_iter()
        .filter(|(kind, _, actions)| kind == "repository" && actions.iter().any(|a| a == "pull"))
        .map(|(kind, name, _)| (kind, name, vec!["pull".to_owned()]))
        .collect()
}

fn token_body(
    shared: &Shared,
    subject: &str,
    access: &[(String, String, Vec<String>)],
    refresh: Option<&str>,
) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expires_in = shared.expires_in.load(Ordering::SeqCst);
    let serial = shared.serial.fetch_add(1, Ordering::SeqCst);
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [shared.cert_der]});
    let access: Vec<_> = access
        .iter()
        .map(|(t, n, a)| serde_json::json!({"type": t, "name": n, "actions": a}))
        .collect();
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": subject, "aud": SERVICE,
        "exp": now + expires_in, "nbf": now - 1, "iat": now,
        "jti": format!("planner-test-{now}-{serial}"), "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = sign(&shared.key, signing_input.as_bytes());
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature));
    let issued_at = jiff::Timestamp::from_second(now as i64)
        .unwrap()
        .to_string();
    let mut body = serde_json::json!({
        "token": token, "access_token": token, "expires_in": expires_in, "issued_at": issued_at,
    });
    if let Some(refresh) = refresh {
        body["refresh_token"] = refresh.into();
    }
    body.to_string()
}

/// RSASSA-PKCS1-v1_5 with SHA-256 (JWS `RS256`) of `data` with the PEM key at `key`.
fn sign(key: &Path, data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-binary", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl dgst");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl dgst -sign: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({"errors": [{"code": code, "message": message}]}).to_string()
}

/// `Basic base64(user:pass)` -> (user, pass).
fn decode_basic(value: &str) -> Option<(String, String)> {
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (u, p) = decoded.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// Method, target and lower-cased headers; `None` when cut or too big.
type Head = (String, String, Vec<(String, String)>);

fn read_head(reader: &mut BufReader<TcpStream>) -> Option<Head> {
    let mut limited = reader.by_ref().take(MAX_HEAD);
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if limited.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    let (first, rest) = lines.split_first()?;
    let mut parts = first.split(' ');
    let (method, target) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let headers = rest
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some((method, target, headers))
}
