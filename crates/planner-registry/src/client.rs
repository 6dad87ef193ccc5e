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
//! the registry itself may be (loopback, `[registry] insecure`). Redirects ([`planner_http`]):
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
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};

use super::auth::{Credentials, DockerConfig};
use crate::error::RegistryError;
use planner_base::reference::ImageRef;
use planner_base::settings::RegistrySettings;

pub use crate::manifests::Resolution;
use crate::manifests::*;
pub use crate::transport::Registry;
use crate::transport::*;

/// How long credentials looked up are reused.
pub const CREDENTIALS_TTL: Duration = Duration::from_secs(60);

/// What an image config says, as far as planner reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub labels: HashMap<String, String>,
    /// `created` (RFC 3339), when the config has one.
    pub created: Option<String>,
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
        Ok(creds.map(|c| super::auth::engine_auth(&c, &image.auth_key())))
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
            base: api_base(&image, &self.inner.settings.insecure)?,
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
            base: api_base(image, &self.inner.settings.insecure)?,
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
            base: api_base(image, &self.inner.settings.insecure)?,
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
            .filter(|d| planner_base::ids::is_manifest_digest(d))
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
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
