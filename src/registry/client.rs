//! The registry client: resolves a tag to the platform manifest's digest with HEAD requests,
//! authenticating as the docker CLI does, bounded in time, size and retries.
//!
//! Requests go out anonymously first; a 401 names the scheme (`WWW-Authenticate`). Bearer:
//! a token for `repository:<name>:pull` from the challenge's realm (GET with `service` and
//! `scope`, with Basic credentials when there are any; with an identity token, a POST of the
//! OAuth2 `refresh_token` grant, as the docker CLI does), cached per (registry, scope) until
//! `expires_in` (default 60 s) minus [`TOKEN_MARGIN`]. Basic: the credentials themselves,
//! remembered per registry. After authenticating a request is retried once; a second 401 is
//! [`RegistryError::Unauthorized`]. Credentials go to the registry and to the token realm it
//! names, as docker sends them; a realm is only reached over HTTPS, or over plain HTTP where
//! the registry itself may be (loopback, `[registry] insecure`). Redirects ([`crate::origin`]):
//! at most [`MAX_REDIRECTS`], followed with the credential only within the origin; a registry
//! answer redirected to another origin (a blob handed to a CDN) is fetched there without any
//! credential and never from HTTPS to HTTP; a token endpoint redirecting to another origin is
//! [`RegistryError::TokenRedirect`] (its request carries the credential in its body). The
//! session tokens BuildKit asks planner for ([`Registry::session_token`]) follow the same
//! rules. 429 and 503: wait `Retry-After` (or 1 s, 2 s, 4 s) up to [`MAX_RATE_RETRIES`] times,
//! each wait at most [`MAX_WAIT`] (a longer one fails at once, naming it). Every request is
//! bounded by `[registry] timeout`, every body by a cap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use url::Url;

use super::RegistryError;
use super::auth::{Credentials, DockerConfig};
use super::challenge::{self, Challenge};
use super::error::Missing;
use super::index::{self, Kind, Platform};
use super::reference::{ImageRef, plain_http_allowed, shown};
use crate::mask::{display_url, register_secret};

/// Cap on a manifest or index body.
pub const MANIFEST_CAP: usize = 4 * 1024 * 1024;
/// Cap on an image config blob (labels are read from it).
pub const CONFIG_CAP: usize = 4 * 1024 * 1024;
/// Cap on a token endpoint's answer.
pub const TOKEN_CAP: usize = 1024 * 1024;
/// Cap on an error body (read to tell a missing tag from a missing repository).
pub const ERROR_BODY_CAP: usize = 64 * 1024;
/// Retries after 429/503 before giving up.
pub const MAX_RATE_RETRIES: u32 = 3;
/// The longest single wait for `Retry-After`.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// A token is not reused this close to its expiry.
pub const TOKEN_MARGIN: Duration = Duration::from_secs(10);
/// Token lifetime when the answer gives none (distribution's default).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
pub const MAX_REDIRECTS: usize = 5;
/// How long credentials looked up are reused.
pub const CREDENTIALS_TTL: Duration = Duration::from_secs(60);
/// The first wait after a 429/503 without `Retry-After` (doubled each time).
const BACKOFF: Duration = Duration::from_secs(1);
/// The OAuth2 client id sent with the refresh-token grant (the docker CLI's is `docker`).
const CLIENT_ID: &str = "planner";

/// `[registry]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySettings {
    /// Non-loopback registries reached over plain HTTP (`host` or `host:port`).
    pub insecure: Vec<String>,
    /// The bound on each request, body included.
    pub timeout: Duration,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            insecure: Vec::new(),
            timeout: Duration::from_secs(60),
        }
    }
}

/// What a tag resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The platform manifest's digest (`sha256:…`): what the engine pulls and the key input.
    pub digest: String,
    /// The index (manifest list) digest, when the tag named one.
    pub index_digest: Option<String>,
    /// The platform manifest's media type.
    pub media_type: String,
    /// How long planner waited on 429/503 `Retry-After` before the answer, if at all.
    pub rate_limited: Option<Duration>,
}

/// The registry client: one per run, cheap to clone (tokens and credentials are shared).
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

/// One lookup, shared by the resolves that ask while it runs.
type CredsCell = Arc<OnceCell<(Result<Option<Credentials>, RegistryError>, Instant)>>;

struct Inner {
    /// Built on first use: a run with only git runtimes never pays for it.
    http: std::sync::OnceLock<reqwest::Client>,
    settings: RegistrySettings,
    config: DockerConfig,
    /// Per registry auth key: the last lookup (reused for [`CREDENTIALS_TTL`]; a failed
    /// one only by the resolves that waited for it).
    creds: Mutex<HashMap<String, CredsCell>>,
    /// Per (registry, scope): a bearer token and when to stop using it.
    tokens: Mutex<HashMap<(String, String), (String, Instant)>>,
    /// Per registry that asked for Basic: the header value.
    basic: Mutex<HashMap<String, String>>,
    backoff: Duration,
}

/// One resolve's registry, image and scope.
struct Target<'a> {
    image: &'a ImageRef,
    base: Url,
    scope: String,
}

impl Target<'_> {
    /// The reference errors name (`registry/repository` when no tag applies: a session token).
    fn reference(&self) -> String {
        match self.image.tag.is_empty() {
            true => format!("{}/{}", self.image.registry, self.image.repository),
            false => self.image.to_string(),
        }
    }

    fn host(&self) -> String {
        self.image.registry.clone()
    }

    fn manifest_url(&self, reference: &str) -> Url {
        let path = format!("v2/{}/manifests/{reference}", self.image.repository);
        self.base.join(&path).unwrap_or_else(|_| self.base.clone())
    }

    fn token_key(&self) -> (String, String) {
        (self.host(), self.scope.clone())
    }
}

/// An image manifest as far as labels need it.
#[derive(serde::Deserialize)]
struct ManifestBody {
    config: Descriptor,
}

#[derive(serde::Deserialize)]
struct Descriptor {
    digest: String,
}

/// An image config as far as labels need it.
#[derive(serde::Deserialize)]
struct ConfigBody {
    #[serde(default)]
    config: ConfigInner,
    /// When the image was built (RFC 3339), as the builder wrote it.
    #[serde(default)]
    created: Option<String>,
}

#[derive(Default, serde::Deserialize)]
struct ConfigInner {
    #[serde(rename = "Labels", default)]
    labels: Option<HashMap<String, String>>,
}

/// What an image config says, as far as planner reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub labels: HashMap<String, String>,
    /// `created` (RFC 3339), when the config has one.
    pub created: Option<String>,
}

/// A manifest body and what it hashes to.
struct Fetched {
    body: Vec<u8>,
    digest: String,
    media_type: String,
}

impl Registry {
    /// A client reading credentials as the docker CLI does ([`DockerConfig::from_env`]).
    pub fn new(settings: RegistrySettings) -> Registry {
        Registry::with_config(settings, DockerConfig::from_env())
    }

    /// A client reading credentials from `config`.
    pub fn with_config(settings: RegistrySettings, config: DockerConfig) -> Registry {
        Registry {
            inner: Arc::new(Inner {
                http: std::sync::OnceLock::new(),
                settings,
                config,
                creds: Mutex::default(),
                tokens: Mutex::default(),
                basic: Mutex::default(),
                backoff: BACKOFF,
            }),
        }
    }

    /// The HTTP client, built on first use.
    fn http(&self) -> &reqwest::Client {
        self.inner
            .http
            .get_or_init(|| http_client(self.inner.settings.timeout))
    }

    #[cfg(test)]
    fn with_backoff(mut self, backoff: Duration) -> Registry {
        Arc::get_mut(&mut self.inner)
            .expect("not shared yet")
            .backoff = backoff;
        self
    }

    /// The credentials for `image`'s registry. Concurrent callers share one lookup (one
    /// helper run); its answer is reused for [`CREDENTIALS_TTL`], so a long-lived client (the
    /// watcher) sees a new `docker login`, and a failed lookup is retried by the next caller.
    pub async fn credentials(
        &self,
        image: &ImageRef,
    ) -> Result<Option<Credentials>, RegistryError> {
        let key = image.auth_key();
        let cell = {
            let mut cells = lock(&self.inner.creds);
            let cell = cells.entry(key.clone()).or_default();
            let stale = cell
                .get()
                .is_some_and(|(found, at)| found.is_err() || at.elapsed() > CREDENTIALS_TTL);
            if stale {
                *cell = CredsCell::default();
            }
            cell.clone()
        };
        let (found, _) = cell
            .get_or_init(|| async { (self.inner.config.lookup(&key).await, Instant::now()) })
            .await;
        found.clone()
    }

    /// The `X-Registry-Auth` value the engine needs to pull or push `image`, from the same
    /// credentials ([`Registry::credentials`]); `None` when there are none.
    pub async fn engine_auth(&self, image: &ImageRef) -> Result<Option<String>, RegistryError> {
        let creds = self.credentials(image).await?;
        Ok(creds.map(|c| super::engine_auth(&c, &image.auth_key())))
    }

    /// The credentials for `registry` itself (`host[:port]`, `docker.io` for Docker Hub), as
    /// [`Self::credentials`] finds them.
    pub async fn registry_credentials(
        &self,
        registry: &str,
    ) -> Result<Option<Credentials>, RegistryError> {
        self.credentials(&registry_only(registry, String::new()))
            .await
    }

    /// A bearer token a build's BuildKit asked for through its session (`FetchToken`): from
    /// `realm` for `scopes` on `registry` (`host[:port]`, `docker.io` for Docker Hub), with
    /// the credentials `docker login` left for it, under the rules of every token planner
    /// fetches (the realm over HTTPS unless loopback or `[registry] insecure`, no redirect to
    /// another origin). The secret stays in planner; only the token goes to the engine.
    /// Returns the token and how long it may be used.
    pub async fn session_token(
        &self,
        registry: &str,
        realm: &str,
        service: &str,
        scopes: &[String],
    ) -> Result<(String, Duration), RegistryError> {
        let repository = scopes
            .iter()
            .find_map(|s| s.strip_prefix("repository:")?.rsplit_once(':'))
            .map(|(name, _)| name.to_owned())
            .unwrap_or_default();
        let image = registry_only(registry, repository);
        let t = Target {
            image: &image,
            base: image.api_base(&self.inner.settings.insecure)?,
            scope: scopes.join(" "),
        };
        let realm = self.realm(&t, Some(realm))?;
        let creds = self.credentials(&image).await?;
        let mut waited = Duration::ZERO;
        self.request_token(&t, &realm, service, scopes, creds.as_ref(), &mut waited)
            .await
    }

    /// Resolves `image`'s tag to the manifest digest for `platform` (`os/arch[/variant]`).
    ///
    /// One `HEAD /v2/<name>/manifests/<tag>` sending the OCI index, OCI manifest, Docker list
    /// and Docker manifest types, reading `Docker-Content-Digest`. A manifest: done. An index:
    /// `GET` it by that digest (checking the body hashes to it) and pick `platform`'s entry.
    /// Only when the header is absent (or the HEAD not answered) is the tag fetched and hashed.
    /// Never pulls.
    pub async fn resolve(
        &self,
        image: &ImageRef,
        platform: &str,
    ) -> Result<Resolution, RegistryError> {
        let target = Target {
            image,
            base: image.api_base(&self.inner.settings.insecure)?,
            scope: image.pull_scope(),
        };
        let mut waited = Duration::ZERO;
        let mut resolution = self.resolve_in(&target, platform, &mut waited).await?;
        resolution.rate_limited = (!waited.is_zero()).then_some(waited);
        Ok(resolution)
    }

    /// The labels of the image `image`'s repository holds at manifest `digest`: the
    /// manifest (checked against the digest), then its config blob (capped at
    /// [`CONFIG_CAP`], checked against the manifest's descriptor). Nothing is pulled.
    pub async fn image_labels(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<HashMap<String, String>, RegistryError> {
        Ok(self.image_config(image, digest).await?.labels)
    }

    /// The labels and creation time of the image `image`'s repository holds at manifest
    /// `digest`, read and checked as [`Self::image_labels`] does.
    pub async fn image_config(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<ImageConfig, RegistryError> {
        let t = Target {
            image,
            base: image.api_base(&self.inner.settings.insecure)?,
            scope: image.pull_scope(),
        };
        let mut waited = Duration::ZERO;
        let url = t.manifest_url(digest);
        let manifest = self.get_manifest(&t, &url, &mut waited).await?;
        if manifest.digest != digest {
            let why = format!("the manifest hashes to {} instead", manifest.digest);
            return Err(protocol(&t, &url, why));
        }
        let config = serde_json::from_slice::<ManifestBody>(&manifest.body)
            .ok()
            .map(|m| m.config.digest)
            .filter(|d| crate::ids::is_manifest_digest(d))
            .ok_or_else(|| protocol(&t, &url, "the manifest names no image config".into()))?;
        let path = format!("v2/{}/blobs/{config}", image.repository);
        let blob_url = t.base.join(&path).unwrap_or_else(|_| t.base.clone());
        let resp = self.send(&t, Method::GET, &blob_url, &mut waited).await?;
        if resp.status() != StatusCode::OK {
            return Err(self.status_error(&t, &blob_url, resp.status()).await);
        }
        let body =
            read_capped(&t, &blob_url, resp, CONFIG_CAP, self.inner.settings.timeout).await?;
        if sha256_digest(&body) != config {
            let why = format!("the image config does not hash to {config}");
            return Err(protocol(&t, &blob_url, why));
        }
        let parsed: ConfigBody = serde_json::from_slice(&body)
            .map_err(|e| protocol(&t, &blob_url, format!("the image config is not JSON: {e}")))?;
        Ok(ImageConfig {
            labels: parsed.config.labels.unwrap_or_default(),
            created: parsed.created,
        })
    }

    async fn resolve_in(
        &self,
        t: &Target<'_>,
        platform: &str,
        waited: &mut Duration,
    ) -> Result<Resolution, RegistryError> {
        let url = t.manifest_url(&t.image.tag);
        let head = self.send(t, Method::HEAD, &url, waited).await?;
        match head.status() {
            StatusCode::OK => {}
            // A HEAD carries no error body (nor do some registries answer HEAD at all): the
            // GET says which of tag or repository is missing.
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
                return self.resolve_by_get(t, &url, platform, waited).await;
            }
            status => return Err(self.status_error(t, &url, status).await),
        }
        let digest = header_digest(t, &url, head.headers())?;
        let media_type = index::essence(&header_text(head.headers(), header::CONTENT_TYPE));
        match (digest, index::kind(&media_type)) {
            (Some(digest), Kind::Manifest) => Ok(Resolution {
                digest,
                index_digest: None,
                media_type,
                rate_limited: None,
            }),
            (Some(digest), Kind::Index) => {
                let fetched = self
                    .get_manifest(t, &t.manifest_url(&digest), waited)
                    .await?;
                if fetched.digest != digest {
                    return Err(protocol(
                        t,
                        &url,
                        format!(
                            "the index body hashes to {} but the registry named it {digest}",
                            fetched.digest
                        ),
                    ));
                }
                from_index(t, &url, &fetched, platform)
            }
            _ => self.resolve_by_get(t, &url, platform, waited).await,
        }
    }

    /// GET the tag's manifest and hash it (no usable `Docker-Content-Digest` on the HEAD).
    async fn resolve_by_get(
        &self,
        t: &Target<'_>,
        url: &Url,
        platform: &str,
        waited: &mut Duration,
    ) -> Result<Resolution, RegistryError> {
        let fetched = self.get_manifest(t, url, waited).await?;
        let body_kind = || {
            serde_json::from_slice::<index::Body>(&fetched.body)
                .map(|b| b.kind())
                .unwrap_or(Kind::Other)
        };
        let kind = match index::kind(&fetched.media_type) {
            Kind::Other => body_kind(),
            known => known,
        };
        match kind {
            Kind::Manifest => Ok(Resolution {
                digest: fetched.digest.clone(),
                index_digest: None,
                media_type: manifest_type(&fetched),
                rate_limited: None,
            }),
            Kind::Index => from_index(t, url, &fetched, platform),
            Kind::Other => Err(protocol(
                t,
                url,
                format!(
                    "the manifest has media type {}, which planner does not read (it reads OCI and Docker v2 manifests and indexes; Docker schema 1 is not supported)",
                    shown(&fetched.media_type)
                ),
            )),
        }
    }

    /// GET a manifest (capped at [`MANIFEST_CAP`]); a 404 says what is missing.
    async fn get_manifest(
        &self,
        t: &Target<'_>,
        url: &Url,
        waited: &mut Duration,
    ) -> Result<Fetched, RegistryError> {
        let resp = self.send(t, Method::GET, url, waited).await?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                let body = read_capped(t, url, resp, ERROR_BODY_CAP, self.inner.settings.timeout)
                    .await
                    .ok();
                return Err(RegistryError::NotFound {
                    reference: t.reference(),
                    host: t.host(),
                    missing: body.as_deref().map_or(Missing::Unknown, missing_of),
                });
            }
            status => return Err(self.status_error(t, url, status).await),
        }
        let named = header_digest(t, url, resp.headers())?;
        let media_type = index::essence(&header_text(resp.headers(), header::CONTENT_TYPE));
        let body = read_capped(t, url, resp, MANIFEST_CAP, self.inner.settings.timeout).await?;
        let digest = sha256_digest(&body);
        if let Some(named) = named.filter(|named| *named != digest) {
            return Err(protocol(
                t,
                url,
                format!("Docker-Content-Digest is {named} but the body hashes to {digest}"),
            ));
        }
        Ok(Fetched {
            body,
            digest,
            media_type,
        })
    }

    /// Sends one request, authenticating on a 401 (then retrying once) and waiting out
    /// 429/503 (bounded). Other statuses are the caller's.
    async fn send(
        &self,
        t: &Target<'_>,
        method: Method,
        url: &Url,
        waited: &mut Duration,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut authorization = self.cached_authorization(t);
        let mut authenticated = false;
        let mut rate_retries = 0;
        loop {
            let mut req = self
                .http()
                .request(method.clone(), url.clone())
                .header(header::ACCEPT, index::accept());
            if let Some(value) = &authorization {
                req = req.header(header::AUTHORIZATION, value);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| self.transport_error(t, url, e))?;
            let status = resp.status();
            match status {
                StatusCode::UNAUTHORIZED if !authenticated => {
                    authorization = Some(self.authenticate(t, resp.headers(), waited).await?);
                    authenticated = true;
                }
                StatusCode::UNAUTHORIZED => return Err(self.unauthorized(t).await),
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                    self.wait_out(t, url, &resp, rate_retries, waited).await?;
                    rate_retries += 1;
                }
                _ => return self.without_credentials(t, &method, resp).await,
            }
        }
    }

    /// Follows a redirect to another origin (a registry handing a blob to a CDN) as docker's
    /// client does: without any credential, at most [`MAX_REDIRECTS`] times, never from HTTPS
    /// to plain HTTP. Any other answer is returned as it is.
    async fn without_credentials(
        &self,
        t: &Target<'_>,
        method: &Method,
        mut resp: reqwest::Response,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut hops = 0;
        while let Some(target) = crate::origin::cross_origin_redirect(&resp) {
            let from = resp.url().clone();
            if hops == MAX_REDIRECTS {
                let why = format!("redirect refused: more than {MAX_REDIRECTS} redirects");
                return Err(protocol(t, &from, why));
            }
            if from.scheme() == "https" && target.scheme() != "https" {
                let why = format!(
                    "redirect refused: from HTTPS to {}",
                    crate::origin::shown_origin(&target)
                );
                return Err(protocol(t, &from, why));
            }
            hops += 1;
            resp = self
                .http()
                .request(method.clone(), target.clone())
                .header(header::ACCEPT, index::accept())
                .send()
                .await
                .map_err(|e| self.transport_error(t, &target, e))?;
        }
        Ok(resp)
    }

    /// Waits out a 429/503 answer (its `Retry-After`, else the backoff for `retries` so far),
    /// adding the wait to `waited`; the error once retries are spent or the wait is too long.
    async fn wait_out(
        &self,
        t: &Target<'_>,
        url: &Url,
        resp: &reqwest::Response,
        retries: u32,
        waited: &mut Duration,
    ) -> Result<(), RegistryError> {
        let asked = challenge::retry_after(
            resp.headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            SystemTime::now(),
        );
        let wait = asked.unwrap_or(self.inner.backoff * 2u32.pow(retries));
        if retries >= MAX_RATE_RETRIES || wait > MAX_WAIT {
            return Err(rate_error(t, url, resp.status(), asked, *waited));
        }
        tokio::time::sleep(wait).await;
        *waited += wait;
        Ok(())
    }

    /// The `Authorization` value remembered for this registry and scope, if any.
    fn cached_authorization(&self, t: &Target<'_>) -> Option<String> {
        let token = lock(&self.inner.tokens)
            .get(&t.token_key())
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(token, _)| format!("Bearer {token}"));
        token.or_else(|| lock(&self.inner.basic).get(&t.host()).cloned())
    }

    /// Answers a 401's challenge: the `Authorization` value to retry with.
    async fn authenticate(
        &self,
        t: &Target<'_>,
        headers: &HeaderMap,
        waited: &mut Duration,
    ) -> Result<String, RegistryError> {
        lock(&self.inner.tokens).remove(&t.token_key());
        let values = headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let challenges = challenge::parse_challenges(values);
        match challenge::pick(&challenges) {
            Some(bearer) if bearer.scheme == "bearer" => {
                let creds = self.credentials(t.image).await?;
                let token = self.fetch_token(t, bearer, creds.as_ref(), waited).await?;
                Ok(format!("Bearer {token}"))
            }
            // Basic, or a 401 naming no scheme planner knows: credentials, if there are any.
            _ => {
                let creds = self.credentials(t.image).await?;
                let Some(value) = creds.as_ref().and_then(Credentials::basic_header) else {
                    return Err(self.unauthorized(t).await);
                };
                lock(&self.inner.basic).insert(t.host(), value.clone());
                Ok(value)
            }
        }
    }

    /// A token for `t`'s scope from the challenge's realm, cached until it expires.
    async fn fetch_token(
        &self,
        t: &Target<'_>,
        bearer: &Challenge,
        creds: Option<&Credentials>,
        waited: &mut Duration,
    ) -> Result<String, RegistryError> {
        let realm = self.realm(t, bearer.param("realm"))?;
        let service = bearer.param("service").unwrap_or_default();
        let scopes = std::slice::from_ref(&t.scope);
        let (token, lifetime) = self
            .request_token(t, &realm, service, scopes, creds, waited)
            .await?;
        let until = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        lock(&self.inner.tokens).insert(t.token_key(), (token.clone(), until));
        Ok(token)
    }

    /// A token for `scopes` from `realm` (already checked by [`Self::realm`]) and how long it
    /// may be used: GET with Basic credentials, or the OAuth2 refresh-token POST for an
    /// identity token. A rate limit at the token endpoint is waited out like one at the
    /// registry; a redirect to another origin is [`RegistryError::TokenRedirect`].
    async fn request_token(
        &self,
        t: &Target<'_>,
        realm: &Url,
        service: &str,
        scopes: &[String],
        creds: Option<&Credentials>,
        waited: &mut Duration,
    ) -> Result<(String, Duration), RegistryError> {
        let req = self.token_request(realm, service, scopes, creds);
        let mut retries = 0;
        let resp = loop {
            let attempt = req
                .try_clone()
                .ok_or_else(|| protocol(t, realm, "token request not repeatable".into()))?;
            let resp = attempt
                .send()
                .await
                .map_err(|e| self.transport_error(t, realm, e))?;
            match resp.status() {
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                    self.wait_out(t, realm, &resp, retries, waited).await?;
                    retries += 1;
                }
                _ => break resp,
            }
        };
        if let Some(target) = crate::origin::cross_origin_redirect(&resp) {
            return Err(RegistryError::TokenRedirect {
                reference: t.reference(),
                host: t.host(),
                realm: crate::origin::shown_origin(realm),
                target: crate::origin::shown_origin(&target),
            });
        }
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(self.unauthorized(t).await);
            }
            status => return Err(self.status_error(t, realm, status).await),
        }
        let body = read_capped(t, realm, resp, TOKEN_CAP, self.inner.settings.timeout).await?;
        let (token, lifetime) = parse_token(&body, SystemTime::now())
            .map_err(|detail| protocol(t, realm, format!("token endpoint: {detail}")))?;
        register_secret(&token);
        Ok((token, lifetime))
    }

    /// The token request, as the docker CLI sends it: the OAuth2 `refresh_token` POST (scopes
    /// joined by spaces) for an identity token, else a GET with `service`, one `scope` per
    /// scope and `account`, with Basic credentials when there are any.
    fn token_request(
        &self,
        realm: &Url,
        service: &str,
        scopes: &[String],
        creds: Option<&Credentials>,
    ) -> reqwest::RequestBuilder {
        if let Some(c) = creds.filter(|c| c.identity_token) {
            let form = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "refresh_token")
                .append_pair("refresh_token", &c.secret)
                .append_pair("service", service)
                .append_pair("scope", &scopes.join(" "))
                .append_pair("client_id", CLIENT_ID)
                .finish();
            return self
                .http()
                .post(realm.clone())
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form);
        }
        let mut url = realm.clone();
        {
            let mut query = url.query_pairs_mut();
            if !service.is_empty() {
                query.append_pair("service", service);
            }
            for scope in scopes {
                query.append_pair("scope", scope);
            }
            if let Some(c) = creds {
                query.append_pair("account", &c.username);
            }
        }
        let req = self.http().get(url);
        match creds.and_then(Credentials::basic_header) {
            Some(value) => req.header(header::AUTHORIZATION, value),
            None => req,
        }
    }

    /// The challenge's realm, if planner may send credentials there.
    fn realm(&self, t: &Target<'_>, realm: Option<&str>) -> Result<Url, RegistryError> {
        let base = &t.base;
        let Some(realm) = realm.filter(|r| !r.is_empty()) else {
            return Err(protocol(
                t,
                base,
                "a Bearer challenge without a realm".into(),
            ));
        };
        let url = Url::parse(realm).map_err(|e| {
            protocol(
                t,
                base,
                format!("the token realm {} is not a URL: {e}", shown(realm)),
            )
        })?;
        let authority = url.host_str().map(|host| match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        });
        let plain_ok = authority
            .as_deref()
            .is_some_and(|a| plain_http_allowed(a, &self.inner.settings.insecure));
        match url.scheme() {
            "https" => Ok(url),
            "http" if plain_ok => Ok(url),
            _ => Err(RegistryError::InsecureRealm {
                reference: t.reference(),
                host: t.host(),
                realm: shown(&display_url(&url)),
                realm_host: authority.unwrap_or_default(),
            }),
        }
    }

    /// Unauthorized, saying whether credentials were found and where planner looked.
    async fn unauthorized(&self, t: &Target<'_>) -> RegistryError {
        let creds = self.credentials(t.image).await.ok().flatten();
        RegistryError::Unauthorized {
            reference: t.reference(),
            host: t.host(),
            logged_in: creds.is_some(),
            creds_from: self.creds_from(t, creds.as_ref()),
        }
    }

    fn creds_from(&self, t: &Target<'_>, creds: Option<&Credentials>) -> String {
        match creds {
            Some(c) => format!("credentials from {}", c.source),
            None => format!(
                "no credentials for {} in {}",
                t.image.auth_key(),
                self.inner.config.describe()
            ),
        }
    }

    async fn status_error(&self, t: &Target<'_>, url: &Url, status: StatusCode) -> RegistryError {
        match status {
            StatusCode::FORBIDDEN => {
                let creds = self.credentials(t.image).await.ok().flatten();
                RegistryError::Forbidden {
                    reference: t.reference(),
                    host: t.host(),
                    creds_from: self.creds_from(t, creds.as_ref()),
                }
            }
            StatusCode::NOT_FOUND => RegistryError::NotFound {
                reference: t.reference(),
                host: t.host(),
                missing: Missing::Unknown,
            },
            _ => RegistryError::Status {
                reference: t.reference(),
                url: display_url(url),
                status: status.as_u16(),
            },
        }
    }

    fn transport_error(&self, t: &Target<'_>, url: &Url, e: reqwest::Error) -> RegistryError {
        if e.is_timeout() {
            return RegistryError::TimedOut {
                reference: t.reference(),
                url: display_url(url),
                limit: humantime::format_duration(self.inner.settings.timeout).to_string(),
            };
        }
        let raw = error_chain(&e);
        let plain_http = url.scheme() == "https" && speaks_plain_http(&raw);
        let detail = crate::mask::mask(&raw).into_owned();
        if plain_http {
            return RegistryError::Insecure {
                reference: t.reference(),
                host: t.host(),
                detail,
            };
        }
        if e.is_redirect() {
            return protocol(t, url, format!("redirect refused: {detail}"));
        }
        if !e.is_connect() && (detail.contains("parse") || detail.contains("too large")) {
            return protocol(t, url, detail);
        }
        RegistryError::Unreachable {
            reference: t.reference(),
            host: t.host(),
            url: display_url(url),
            detail,
        }
    }
}

/// The HTTP client: the timeout on every request, redirects followed only within the origin
/// ([`crate::origin::redirect_policy`]).
fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .redirect(crate::origin::redirect_policy(MAX_REDIRECTS))
        .user_agent(concat!("planner/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("static client configuration is valid")
}

/// A reference to `registry` (and `repository`) with no tag: what errors about the registry
/// itself name.
fn registry_only(registry: &str, repository: String) -> ImageRef {
    ImageRef {
        registry: registry.to_owned(),
        repository,
        tag: String::new(),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn protocol(t: &Target<'_>, url: &Url, detail: String) -> RegistryError {
    RegistryError::Protocol {
        reference: t.reference(),
        url: display_url(url),
        detail,
    }
}

fn rate_error(
    t: &Target<'_>,
    url: &Url,
    status: StatusCode,
    asked: Option<Duration>,
    waited: Duration,
) -> RegistryError {
    match status {
        StatusCode::TOO_MANY_REQUESTS => RegistryError::RateLimited {
            reference: t.reference(),
            host: t.host(),
            retry_after: asked,
            waited,
        },
        _ => RegistryError::Status {
            reference: t.reference(),
            url: display_url(url),
            status: status.as_u16(),
        },
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// `Docker-Content-Digest`, validated; `None` when absent.
fn header_digest(
    t: &Target<'_>,
    url: &Url,
    headers: &HeaderMap,
) -> Result<Option<String>, RegistryError> {
    let Some(value) = headers.get("docker-content-digest") else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let text = text.trim();
    if crate::ids::is_manifest_digest(text) {
        return Ok(Some(text.to_owned()));
    }
    Err(protocol(
        t,
        url,
        format!(
            "Docker-Content-Digest {} is not sha256: and 64 lowercase hex digits",
            shown(text)
        ),
    ))
}

/// The media type of a fetched manifest: its `Content-Type`, else its body's `mediaType`,
/// else OCI's (the only format that may omit it).
fn manifest_type(fetched: &Fetched) -> String {
    if index::kind(&fetched.media_type) == Kind::Manifest {
        return fetched.media_type.clone();
    }
    serde_json::from_slice::<index::Body>(&fetched.body)
        .ok()
        .and_then(|b| b.media_type)
        .map(|m| index::essence(&m))
        .filter(|m| index::kind(m) == Kind::Manifest)
        .unwrap_or_else(|| index::OCI_MANIFEST.to_owned())
}

/// Picks `platform` out of an index body.
fn from_index(
    t: &Target<'_>,
    url: &Url,
    fetched: &Fetched,
    platform: &str,
) -> Result<Resolution, RegistryError> {
    let body: index::Body = serde_json::from_slice(&fetched.body)
        .map_err(|e| protocol(t, url, format!("the index is not valid JSON: {e}")))?;
    let manifests = body.manifests.unwrap_or_default();
    let no_platform = |available| RegistryError::NoPlatform {
        reference: t.reference(),
        platform: platform.to_owned(),
        available,
    };
    let wanted =
        Platform::parse(platform).ok_or_else(|| no_platform(index::available(&manifests)))?;
    let entry = index::pick(&manifests, &wanted).map_err(no_platform)?;
    if !crate::ids::is_manifest_digest(&entry.digest) {
        return Err(protocol(
            t,
            url,
            format!(
                "the index entry for {platform} has digest {}, not sha256: and 64 lowercase hex digits",
                shown(&entry.digest)
            ),
        ));
    }
    Ok(Resolution {
        digest: entry.digest.clone(),
        index_digest: Some(fetched.digest.clone()),
        media_type: index::essence(&entry.media_type),
        rate_limited: None,
    })
}

/// `sha256:<hex>` of `body`.
fn sha256_digest(body: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(body))
}

/// What a 404 body's distribution error codes say is missing.
fn missing_of(body: &[u8]) -> Missing {
    #[derive(serde::Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<Code>,
    }
    #[derive(serde::Deserialize)]
    struct Code {
        #[serde(default)]
        code: String,
    }
    let codes = serde_json::from_slice::<Errors>(body)
        .map(|e| e.errors)
        .unwrap_or_default();
    let has = |code: &str| codes.iter().any(|c| c.code == code);
    if has("NAME_UNKNOWN") {
        Missing::Repository
    } else if has("MANIFEST_UNKNOWN") || has("TAG_UNKNOWN") {
        Missing::Tag
    } else {
        Missing::Unknown
    }
}

/// A token answer: `token` or `access_token`, and how long it may be used from now
/// (`expires_in`, default 60 s, minus the time since `issued_at`).
fn parse_token(body: &[u8], now: SystemTime) -> Result<(String, Duration), String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
        #[serde(default)]
        expires_in: Option<f64>,
        #[serde(default)]
        issued_at: Option<String>,
    }
    let answer: Answer =
        serde_json::from_slice(body).map_err(|e| format!("not a token answer ({e})"))?;
    let token = [answer.access_token, answer.token]
        .into_iter()
        .flatten()
        .find(|t| !t.is_empty())
        .ok_or("the answer holds no token")?;
    if token.chars().any(|c| c.is_control() || c == ' ') {
        return Err("the token has characters no header can carry".into());
    }
    let lifetime = match answer.expires_in {
        Some(secs) if secs >= 1.0 => Duration::from_secs(secs.min(86_400.0) as u64),
        _ => DEFAULT_TOKEN_LIFETIME,
    };
    let age = answer
        .issued_at
        .and_then(|at| at.parse::<jiff::Timestamp>().ok())
        .and_then(|at| now.duration_since(SystemTime::from(at)).ok())
        .unwrap_or_default();
    Ok((token, lifetime.saturating_sub(age)))
}

/// What went wrong under a reqwest error: its sources' messages (reqwest's own only names
/// the URL, which the error names already), joined.
fn error_chain(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    match parts.is_empty() {
        true => e.to_string(),
        false => parts.join(": "),
    }
}

/// Whether a TLS failure says the server answered in plain HTTP.
fn speaks_plain_http(detail: &str) -> bool {
    [
        "InvalidContentType",
        "corrupt message",
        "wrong version number",
        "HTTP request to an HTTPS",
    ]
    .iter()
    .any(|sign| detail.contains(sign))
}

/// A body, at most `cap` bytes.
async fn read_capped(
    t: &Target<'_>,
    url: &Url,
    resp: reqwest::Response,
    cap: usize,
    limit: Duration,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || protocol(t, url, format!("the answer is larger than {cap} bytes"));
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| match e.is_timeout() {
            true => RegistryError::TimedOut {
                reference: t.reference(),
                url: display_url(url),
                limit: humantime::format_duration(limit).to_string(),
            },
            false => protocol(
                t,
                url,
                format!(
                    "reading the answer: {}",
                    crate::mask::mask(&error_chain(&e))
                ),
            ),
        })?;
        if body.len() + chunk.len() > cap {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[path = "manage.rs"]
mod manage;

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
