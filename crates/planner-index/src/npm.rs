//! An npm registry: the package document `{registry}/{name}` (a scoped `@scope/name` as
//! `@scope%2fname`, as the npm CLI asks), abbreviated (`Accept:
//! application/vnd.npm.install-v1+json`), and its `dist-tags.latest`.

use std::sync::LazyLock;

use regex::Regex;
use url::Url;

use crate::IndexError;
use crate::transport::Cx;

/// The abbreviated metadata first, the full document accepted.
pub const ACCEPT: &str = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*";

/// Longest version accepted from a registry.
const MAX_VERSION: usize = 256;

/// `dist-tags.latest` of the package.
pub(crate) async fn latest(cx: &Cx<'_>) -> Result<String, IndexError> {
    let url = package_url(&cx.base, &cx.package.name);
    let answer = cx.get(&url, ACCEPT).await?;
    latest_of(&answer.body).map_err(|why| match why {
        Why::Bad(detail) => cx.protocol(detail),
        Why::NoLatest => cx.no_release("its document has no dist-tags.latest".into()),
    })
}

/// The document URL of `name` under the registry `base`.
pub fn package_url(base: &Url, name: &str) -> Url {
    let mut url = base.clone();
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.join(&name.replacen('/', "%2f", 1))
        .expect("a validated npm name is a valid path segment")
}

/// Why a document gives no version.
#[derive(Debug, PartialEq, Eq)]
pub enum Why {
    Bad(String),
    NoLatest,
}

/// `dist-tags.latest` of a package document, checked to be a version string.
pub fn latest_of(body: &[u8]) -> Result<String, Why> {
    static VERSION: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^v?[0-9][0-9A-Za-z.+-]*$").unwrap());
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| Why::Bad(format!("not JSON: {e}")))?;
    let latest = doc
        .get("dist-tags")
        .and_then(|t| t.get("latest"))
        .ok_or(Why::NoLatest)?;
    let Some(text) = latest.as_str() else {
        return Err(Why::Bad("dist-tags.latest is not a string".into()));
    };
    if text.len() > MAX_VERSION || !VERSION.is_match(text) {
        let shown: String = text.chars().take(80).collect();
        let shown = planner_base::text::inert(&shown).into_owned();
        return Err(Why::Bad(format!(
            "dist-tags.latest {shown:?} is not a version"
        )));
    }
    Ok(text.to_owned())
}
