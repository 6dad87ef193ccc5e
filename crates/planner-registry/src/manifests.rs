//! Manifests: a tag resolved to the platform manifest's digest (one HEAD in the common case,
//! an index fetched and its platform entry picked), manifests fetched and checked against the
//! digest that names them.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};
use url::Url;

use super::error::Missing;
use super::index::{self, Kind, Platform};
use crate::error::RegistryError;
use planner_base::reference::shown;

use crate::transport::*;

/// Cap on a manifest or index body.
pub const MANIFEST_CAP: usize = 4 * 1024 * 1024;

/// Cap on an image config blob (labels are read from it).
pub const CONFIG_CAP: usize = 4 * 1024 * 1024;

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

/// An image manifest as far as labels need it.
#[derive(serde::Deserialize)]
pub(crate) struct ManifestBody {
    pub(crate) config: Descriptor,
}

#[derive(serde::Deserialize)]
pub(crate) struct Descriptor {
    pub(crate) digest: String,
}

/// An image config as far as labels need it.
#[derive(serde::Deserialize)]
pub(crate) struct ConfigBody {
    #[serde(default)]
    pub(crate) config: ConfigInner,
    /// When the image was built (RFC 3339), as the builder wrote it.
    #[serde(default)]
    pub(crate) created: Option<String>,
}

#[derive(Default, serde::Deserialize)]
pub(crate) struct ConfigInner {
    #[serde(rename = "Labels", default)]
    pub(crate) labels: Option<HashMap<String, String>>,
}

/// A manifest body and what it hashes to.
pub(crate) struct Fetched {
    pub(crate) body: Vec<u8>,
    pub(crate) digest: String,
    pub(crate) media_type: String,
}

impl Registry {
    pub(crate) async fn resolve_in(
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
    pub(crate) async fn resolve_by_get(
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
    pub(crate) async fn get_manifest(
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
}

/// `Docker-Content-Digest`, validated; `None` when absent.
pub(crate) fn header_digest(
    t: &Target<'_>,
    url: &Url,
    headers: &HeaderMap,
) -> Result<Option<String>, RegistryError> {
    let Some(value) = headers.get("docker-content-digest") else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let text = text.trim();
    if planner_base::ids::is_manifest_digest(text) {
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
pub(crate) fn manifest_type(fetched: &Fetched) -> String {
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
pub(crate) fn from_index(
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
    if !planner_base::ids::is_manifest_digest(&entry.digest) {
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
pub(crate) fn sha256_digest(body: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(body))
}

/// What a 404 body's distribution error codes say is missing.
pub(crate) fn missing_of(body: &[u8]) -> Missing {
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
