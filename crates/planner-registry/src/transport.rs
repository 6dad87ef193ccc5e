//! The registry client's state ([`Registry`]: one per run, its tokens and credentials shared
//! by clones) and its requests: one request sent, authenticated on a 401 and retried once,
//! 429/503 waited out within bounds, statuses turned into errors, every body capped.
//!
//! Redirects ([`planner_http`]): at most [`MAX_REDIRECTS`], followed with the credential only
//! within the origin ([`planner_http::redirect_policy`]); a registry answer redirected to
//! another origin (a blob handed to a CDN) is fetched there without any credential and never
//! from HTTPS to plain HTTP (`Registry::without_credentials`).
//!
//! Upward call, on purpose: a 401 is answered by `Registry::authenticate`, defined in `token`
//! (which sends its own requests through this module); a method call, no import.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};
use tokio::sync::OnceCell;
use url::Url;

use super::auth::{Credentials, DockerConfig};
use super::challenge::{self};
use super::error::Missing;
use super::index::{self};
use crate::error::RegistryError;
use planner_base::mask::display_url;
use planner_base::reference::ImageRef;
use planner_base::settings::RegistrySettings;

/// Cap on an error body (read to tell a missing tag from a missing repository).
pub const ERROR_BODY_CAP: usize = 64 * 1024;

/// Retries after 429/503 before giving up.
pub const MAX_RATE_RETRIES: u32 = 3;

/// The longest single wait for `Retry-After`.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

pub const MAX_REDIRECTS: usize = 5;

/// The first wait after a 429/503 without `Retry-After` (doubled each time).
pub(crate) const BACKOFF: Duration = Duration::from_secs(1);

/// The registry client: one per run, cheap to clone (tokens and credentials are shared).
#[derive(Clone)]
pub struct Registry {
    pub(crate) inner: Arc<Inner>,
}

/// One lookup, shared by the resolves that ask while it runs.
pub(crate) type CredsCell = Arc<OnceCell<(Result<Option<Credentials>, RegistryError>, Instant)>>;

pub(crate) struct Inner {
    /// Built on first use: a run with only git runtimes never pays for it.
    pub(crate) http: std::sync::OnceLock<reqwest::Client>,
    pub(crate) settings: RegistrySettings,
    pub(crate) config: DockerConfig,
    /// Per registry auth key: the last lookup (reused for [`CREDENTIALS_TTL`]; a failed
    /// one only by the resolves that waited for it).
    pub(crate) creds: Mutex<HashMap<String, CredsCell>>,
    /// Per (registry, scope): a bearer token and when to stop using it.
    pub(crate) tokens: Mutex<HashMap<(String, String), (String, Instant)>>,
    /// Per registry that asked for Basic: the header value.
    pub(crate) basic: Mutex<HashMap<String, String>>,
    pub(crate) backoff: Duration,
}

/// One resolve's registry, image and scope.
pub(crate) struct Target<'a> {
    pub(crate) image: &'a ImageRef,
    pub(crate) base: Url,
    pub(crate) scope: String,
}

impl Target<'_> {
    /// The reference errors name (`registry/repository` when no tag applies: a session token).
    pub(crate) fn reference(&self) -> String {
        match self.image.tag.is_empty() {
            true => format!("{}/{}", self.image.registry, self.image.repository),
            false => self.image.to_string(),
        }
    }

    pub(crate) fn host(&self) -> String {
        self.image.registry.clone()
    }

    pub(crate) fn manifest_url(&self, reference: &str) -> Url {
        let path = format!("v2/{}/manifests/{reference}", self.image.repository);
        self.base.join(&path).unwrap_or_else(|_| self.base.clone())
    }

    pub(crate) fn token_key(&self) -> (String, String) {
        (self.host(), self.scope.clone())
    }
}

impl Registry {
    /// The HTTP client, built on first use.
    pub(crate) fn http(&self) -> &reqwest::Client {
        self.inner
            .http
            .get_or_init(|| http_client(self.inner.settings.timeout))
    }

    /// Sends one request, authenticating on a 401 (then retrying once) and waiting out
    /// 429/503 (bounded). Other statuses are the caller's.
    pub(crate) async fn send(
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
        while let Some(target) = planner_http::cross_origin_redirect(&resp) {
            let from = resp.url().clone();
            if hops == MAX_REDIRECTS {
                let why = format!("redirect refused: more than {MAX_REDIRECTS} redirects");
                return Err(protocol(t, &from, why));
            }
            if from.scheme() == "https" && target.scheme() != "https" {
                let why = format!(
                    "redirect refused: from HTTPS to {}",
                    planner_http::shown_origin(&target)
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
    pub(crate) async fn wait_out(
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

    pub(crate) async fn status_error(
        &self,
        t: &Target<'_>,
        url: &Url,
        status: StatusCode,
    ) -> RegistryError {
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

    pub(crate) fn transport_error(
        &self,
        t: &Target<'_>,
        url: &Url,
        e: reqwest::Error,
    ) -> RegistryError {
        if e.is_timeout() {
            return RegistryError::TimedOut {
                reference: t.reference(),
                url: display_url(url),
                limit: humantime::format_duration(self.inner.settings.timeout).to_string(),
            };
        }
        let raw = error_chain(&e);
        let plain_http = url.scheme() == "https" && speaks_plain_http(&raw);
        let detail = planner_base::mask::mask(&raw).into_owned();
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
/// ([`planner_http::redirect_policy`]).
pub(crate) fn http_client(timeout: Duration) -> reqwest::Client {
    planner_http::client(timeout, MAX_REDIRECTS)
}

/// A reference to `registry` (and `repository`) with no tag: what errors about the registry
/// itself name.
pub(crate) fn registry_only(registry: &str, repository: String) -> ImageRef {
    ImageRef {
        registry: registry.to_owned(),
        repository,
        tag: String::new(),
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn protocol(t: &Target<'_>, url: &Url, detail: String) -> RegistryError {
    RegistryError::Protocol {
        reference: t.reference(),
        url: display_url(url),
        detail,
    }
}

pub(crate) fn rate_error(
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

pub(crate) fn header_text(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Whether a TLS failure says the server answered in plain HTTP.
pub(crate) fn speaks_plain_http(detail: &str) -> bool {
    [
        "InvalidContentType",
        "corrupt message",
        "wrong version number",
        "HTTP request to an HTTPS",
    ]
    .iter()
    .any(|sign| detail.contains(sign))
}

/// What went wrong under a reqwest error: its sources' messages (reqwest's own only names
/// the URL, which the error names already), joined.
pub(crate) fn error_chain(e: &reqwest::Error) -> String {
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

/// A body, at most `cap` bytes.
pub(crate) async fn read_capped(
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
                    planner_base::mask::mask(&error_chain(&e))
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

/// The registry's API base URL for `image` ([`ImageRef::api_base`]), a host that does not
/// form a URL being a protocol error on the reference.
pub(crate) fn api_base(image: &ImageRef, insecure: &[String]) -> Result<Url, RegistryError> {
    image
        .api_base(insecure)
        .map_err(|e| RegistryError::Protocol {
            reference: image.to_string(),
            url: image.registry.clone(),
            detail: format!("the registry host does not form a URL: {e}"),
        })
}
