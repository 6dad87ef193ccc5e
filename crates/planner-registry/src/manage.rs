//! Listing a repository's tags and deleting manifests: what `gc --remote` needs of the
//! registry. Listing is `GET /v2/<name>/tags/list` page by page, following `Link: <…>;
//! rel="next"` (on the registry's own origin only, at most [`MAX_TAG_PAGES`] pages, each
//! capped at [`TAGS_CAP`]). Deleting is `DELETE /v2/<name>/manifests/<digest>` with the
//! `repository:<name>:pull,delete` scope; a 405 means the registry has deletes disabled.
//!
//! A listed tag is used only if it is a tag by the reference grammar
//! ([`planner_base::reference::is_tag`]): a name such as `k-/../../other/repo` would otherwise reach
//! outside the repository once it is put into a URL. The others are skipped with one warning
//! per listing.

use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};
use url::Url;

use crate::error::Missing;
use crate::error::RegistryError;
use crate::manifests::missing_of;
use crate::transport::{ERROR_BODY_CAP, Registry, Target, api_base, protocol, read_capped};
use planner_base::reference::ImageRef;

/// The most pages of a tag list followed.
pub const MAX_TAG_PAGES: usize = 1000;
/// Cap on one page of a tag list.
pub const TAGS_CAP: usize = 4 * 1024 * 1024;
/// Tags asked for per page.
const PAGE_SIZE: usize = 1000;

/// One page of `tags/list`.
#[derive(serde::Deserialize)]
struct TagPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl Registry {
    /// Every valid tag of `image`'s repository (its tag is ignored); empty when the
    /// repository does not exist. Names outside the tag grammar are skipped, with one warning.
    pub async fn list_tags(&self, image: &ImageRef) -> Result<Vec<String>, RegistryError> {
        let listed = self.list_all_tags(image).await?;
        let (tags, invalid): (Vec<String>, Vec<String>) = listed
            .into_iter()
            .partition(|t| planner_base::reference::is_tag(t));
        if !invalid.is_empty() {
            warn_invalid(image, &invalid);
        }
        Ok(tags)
    }

    /// Every name `tags/list` gives, unchecked.
    async fn list_all_tags(&self, image: &ImageRef) -> Result<Vec<String>, RegistryError> {
        let t = Target {
            image,
            base: api_base(image, &self.inner.settings.insecure)?,
            scope: image.pull_scope(),
        };
        let mut waited = Duration::ZERO;
        let path = format!("v2/{}/tags/list?n={PAGE_SIZE}", image.repository);
        let mut next = Some(t.base.join(&path).unwrap_or_else(|_| t.base.clone()));
        let mut tags = Vec::new();
        for _ in 0..MAX_TAG_PAGES {
            let Some(url) = next.take() else {
                return Ok(tags);
            };
            let resp = self.send(&t, Method::GET, &url, &mut waited).await?;
            match resp.status() {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND => return self.missing_repository(&t, &url, resp).await,
                status => return Err(self.status_error(&t, &url, status).await),
            }
            next = next_page(&t, &url, resp.headers())?;
            let body = read_capped(&t, &url, resp, TAGS_CAP, self.inner.settings.timeout).await?;
            let page: TagPage = serde_json::from_slice(&body)
                .map_err(|e| protocol(&t, &url, format!("the tag list is not JSON: {e}")))?;
            tags.extend(page.tags.unwrap_or_default());
        }
        Err(protocol(
            &t,
            &t.base,
            format!("the tag list goes on for more than {MAX_TAG_PAGES} pages"),
        ))
    }

    /// A 404 on the tag list: no tags when the repository is unknown, else the error.
    async fn missing_repository(
        &self,
        t: &Target<'_>,
        url: &Url,
        resp: reqwest::Response,
    ) -> Result<Vec<String>, RegistryError> {
        let body = read_capped(t, url, resp, ERROR_BODY_CAP, self.inner.settings.timeout)
            .await
            .ok();
        match body.as_deref().map_or(Missing::Unknown, missing_of) {
            Missing::Repository => Ok(Vec::new()),
            missing => Err(RegistryError::NotFound {
                reference: t.reference(),
                host: t.host(),
                missing,
            }),
        }
    }

    /// Deletes the manifest `digest` from `image`'s repository: every tag naming it goes.
    /// A manifest already gone is not an error.
    pub async fn delete_manifest(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<(), RegistryError> {
        let t = Target {
            image,
            base: api_base(image, &self.inner.settings.insecure)?,
            scope: format!("repository:{}:pull,delete", image.repository),
        };
        let mut waited = Duration::ZERO;
        let url = t.manifest_url(digest);
        let resp = self.send(&t, Method::DELETE, &url, &mut waited).await?;
        match resp.status() {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NO_CONTENT => Ok(()),
            StatusCode::NOT_FOUND => Ok(()),
            StatusCode::METHOD_NOT_ALLOWED => Err(RegistryError::DeleteDisabled {
                reference: image.with_digest(digest),
                host: t.host(),
            }),
            status => Err(self.status_error(&t, &url, status).await),
        }
    }
}

/// Most invalid tag names one warning shows.
const INVALID_SHOWN: usize = 3;

/// Warns that a listing held names that are not tags (a few of them, escaped; then a count).
fn warn_invalid(image: &ImageRef, invalid: &[String]) {
    let shown: Vec<String> = invalid
        .iter()
        .map(|t| planner_base::reference::shown(t))
        .collect();
    tracing::warn!(
        "registry {} listed {} names in {} that are not valid tag names ({}): skipped\n  help: a registry never lists such names (distribution refuses them on push): check what answers at {}",
        image.registry,
        invalid.len(),
        image.repository,
        planner_base::text::list(&shown, INVALID_SHOWN),
        image.registry
    );
}

/// The next page a `Link` header names (`<url>; rel="next"`), on the registry's own origin.
fn next_page(t: &Target<'_>, url: &Url, headers: &HeaderMap) -> Result<Option<Url>, RegistryError> {
    let Some(target) = headers
        .get_all(header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(next_target)
    else {
        return Ok(None);
    };
    let next = url.join(target).map_err(|e| {
        protocol(
            t,
            url,
            format!("the Link header's next page is not a URL: {e}"),
        )
    })?;
    if next.origin() != t.base.origin() {
        let why = "the Link header's next page is on another host".to_owned();
        return Err(protocol(t, url, why));
    }
    Ok(Some(next))
}

/// The URL of one `Link` value when it is `rel="next"`.
fn next_target(link: &str) -> Option<&str> {
    let (target, params) = link.trim().split_once(';')?;
    let next = params.split(';').any(|p| {
        let p = p.trim().replace(' ', "");
        p == "rel=\"next\"" || p == "rel=next"
    });
    let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
    next.then_some(target)
}

#[cfg(test)]
mod tests {
    use super::next_target;

    #[test]
    fn link_headers_name_the_next_page() {
        let link = "</v2/a/tags/list?n=2&last=b>; rel=\"next\"";
        assert_eq!(next_target(link), Some("/v2/a/tags/list?n=2&last=b"));
        assert_eq!(next_target("</x>; rel=\"prev\""), None);
        assert_eq!(next_target("garbage"), None);
        assert_eq!(next_target("<unterminated; rel=next"), None);
    }
}
