//! PyPI's Simple API: the project page `{index}/{normalized name}/` (PEP 503 names), asked
//! for PEP 691 JSON first (`Accept`), read as PEP 503 HTML when the index answers HTML. The
//! versions are those of the page's files (sdist `name-ver.tar.gz`/`.zip`, wheel
//! `name-ver-…whl`) whose name is the project's, parsed and ordered by PEP 440 (`pep440_rs`);
//! yanked files (PEP 592: `data-yanked` in HTML, `yanked` in JSON) are ignored, and
//! pre-releases and development releases unless the package asks for them.

use std::str::FromStr;
use std::sync::LazyLock;

use pep440_rs::Version;
use regex::Regex;
use url::Url;

use crate::IndexError;
use crate::transport::Cx;

/// PEP 691's `Accept`: JSON preferred, HTML accepted.
pub const ACCEPT: &str = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";
const JSON_TYPE: &str = "application/vnd.pypi.simple.v1+json";

/// The latest qualifying version of the package at its index.
pub(crate) async fn latest(cx: &Cx<'_>) -> Result<String, IndexError> {
    let url = project_url(&cx.base, &cx.package.name);
    let answer = cx.get(&url, ACCEPT).await?;
    let files = if answer.content_type.starts_with(JSON_TYPE) {
        files_from_json(&answer.body).map_err(|e| cx.protocol(format!("PEP 691 JSON: {e}")))?
    } else if answer.content_type.contains("html") {
        files_from_html(&String::from_utf8_lossy(&answer.body))
    } else {
        let shown = planner_base::text::inert(&answer.content_type).into_owned();
        return Err(cx.protocol(format!(
            "unexpected content type {shown:?} (want PEP 691 JSON or HTML)"
        )));
    };
    pick(&files, &cx.package.name, cx.package.pre).map_err(|why| cx.no_release(why))
}

/// The project page of `name` under `base` (`…/simple/` + normalized name + `/`).
pub fn project_url(base: &Url, name: &str) -> Url {
    let mut url = base.clone();
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.join(&format!("{}/", normalize(name)))
        .expect("a normalized name is a valid path segment")
}

/// PEP 503's normalized name: runs of `-`, `_`, `.` as one `-`, lowercase.
pub fn normalize(name: &str) -> String {
    static RUNS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[-_.]+").unwrap());
    RUNS.replace_all(name, "-").to_ascii_lowercase()
}

/// A file a project page lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub filename: String,
    pub yanked: bool,
}

/// The files of a PEP 691 JSON page.
pub fn files_from_json(body: &[u8]) -> Result<Vec<File>, String> {
    #[derive(serde::Deserialize)]
    struct Page {
        files: Vec<JsonFile>,
    }
    #[derive(serde::Deserialize)]
    struct JsonFile {
        filename: String,
        #[serde(default)]
        yanked: serde_json::Value,
    }
    let page: Page = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(page
        .files
        .into_iter()
        .map(|f| File {
            filename: f.filename,
            // PEP 691: false, true, or a reason string (yanked).
            yanked: match f.yanked {
                serde_json::Value::Bool(b) => b,
                serde_json::Value::String(_) => true,
                _ => false,
            },
        })
        .collect())
}

/// The files of a PEP 503 HTML page: each anchor's text is its file name; `data-yanked`
/// marks a yanked one (PEP 592).
pub fn files_from_html(html: &str) -> Vec<File> {
    static ANCHOR: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?is)<a(\s[^>]*)?>(.*?)</a\s*>").unwrap());
    static YANKED: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)(^|\s)data-yanked(\s|=|$)").unwrap());
    ANCHOR
        .captures_iter(html)
        .map(|c| {
            let attrs = c.get(1).map_or("", |m| m.as_str());
            File {
                filename: unescape(c[2].trim()),
                yanked: YANKED.is_match(attrs),
            }
        })
        .collect()
}

/// The few HTML entities a file name can hold.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The version a file of project `project` (normalized) is of; `None` for another project's
/// file, a kind of file that is no sdist or wheel, or a version PEP 440 cannot read.
pub fn version_of(filename: &str, project: &str) -> Option<Version> {
    let (name, version) = if let Some(stem) = filename.strip_suffix(".whl") {
        let mut parts = stem.split('-');
        (parts.next()?, parts.next()?)
    } else {
        let stem = [".tar.gz", ".zip", ".tar.bz2", ".tar.xz", ".tgz"]
            .iter()
            .find_map(|ext| filename.strip_suffix(ext))?;
        stem.rsplit_once('-')?
    };
    if normalize(name) != project {
        return None;
    }
    Version::from_str(version).ok()
}

/// The greatest version among `files` of `name`, yanked ones left out, pre-releases only
/// when `pre`; `Err`: why none qualifies.
pub fn pick(files: &[File], name: &str, pre: bool) -> Result<String, String> {
    let project = normalize(name);
    let versions: Vec<(Version, bool)> = files
        .iter()
        .filter_map(|f| Some((version_of(&f.filename, &project)?, f.yanked)))
        .collect();
    if versions.is_empty() {
        return Err("the index lists no sdist or wheel of it".into());
    }
    let best = versions
        .iter()
        .filter(|(v, yanked)| !yanked && (pre || !v.any_prerelease()))
        .map(|(v, _)| v)
        .max();
    match best {
        Some(v) => Ok(v.to_string()),
        None => {
            let all_yanked = versions.iter().all(|(_, y)| *y);
            Err(if all_yanked {
                "every release is yanked".into()
            } else {
                "only pre-releases or yanked files\n  help: add pre = true to the build arg to take pre-releases".into()
            })
        }
    }
}
