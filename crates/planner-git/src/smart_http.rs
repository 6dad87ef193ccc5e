//! Resolving a branch HEAD over git smart-HTTP with reqwest.
//!
//! First try: one round trip, a protocol v2 `ls-refs` restricted to `refs/heads/<branch>`
//! (POST to `git-upload-pack`, answer capped at 64 KiB). Servers that do not speak v2 get the
//! v0 advertisement (`GET info/refs?service=git-upload-pack`, capped at 8 MiB).

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{StatusCode, header};
use url::Url;

use crate::auth::GitAuth;
use crate::error::GitError;
use crate::pktline;
use planner_base::mask::display_url;

/// Cap on a v2 `ls-refs` answer (one ref is ~60 bytes).
pub const LS_REFS_CAP: usize = 64 * 1024;
/// Cap on a v0 ref advertisement (all refs of the repository).
pub const ADVERTISEMENT_CAP: usize = 8 * 1024 * 1024;
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects followed within the repository's origin.
pub const MAX_REDIRECTS: usize = 5;

/// The HTTP client for git hosts: timeouts set, redirects only within the same origin
/// ([`planner_http::redirect_policy`]: the token never follows a redirect to another origin).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TOTAL_TIMEOUT)
        .redirect(planner_http::redirect_policy(MAX_REDIRECTS))
        .user_agent(concat!("git/2.0 planner/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("static client configuration is valid")
}

/// Resolves `refs/heads/<branch>` of `url` to a commit id.
pub async fn resolve_head(
    http: &reqwest::Client,
    url: &Url,
    branch: &str,
    runtime: &str,
    auth: &GitAuth,
) -> Result<String, GitError> {
    let wanted = format!("refs/heads/{branch}");
    let refs = match ls_refs_v2(http, url, &wanted, runtime, auth).await? {
        Some(refs) => refs,
        None => advertisement_v0(http, url, runtime, auth).await?,
    };
    pick_ref(url, branch, &wanted, &refs)
}

fn pick_ref(
    url: &Url,
    branch: &str,
    wanted: &str,
    refs: &[(String, String)],
) -> Result<String, GitError> {
    let (_, oid) = refs
        .iter()
        .find(|(name, _)| name == wanted)
        .ok_or_else(|| GitError::BranchMissing {
            url: display_url(url),
            branch: branch.to_owned(),
        })?;
    if !planner_base::ids::is_commit(oid) {
        return Err(GitError::Protocol {
            url: display_url(url),
            detail: format!("malformed commit id {oid:?} for {wanted}"),
        });
    }
    Ok(oid.clone())
}

fn endpoint(url: &Url, suffix: &str) -> String {
    format!("{}/{suffix}", url.as_str().trim_end_matches('/'))
}

fn authorize(req: reqwest::RequestBuilder, auth: &GitAuth) -> reqwest::RequestBuilder {
    match &auth.token {
        Some(token) => req.basic_auth("oauth2", Some(token)),
        None => req,
    }
}

/// v2 `ls-refs`; `Ok(None)` when the server does not answer in protocol v2.
async fn ls_refs_v2(
    http: &reqwest::Client,
    url: &Url,
    wanted: &str,
    runtime: &str,
    auth: &GitAuth,
) -> Result<Option<Vec<(String, String)>>, GitError> {
    let req = http
        .post(endpoint(url, "git-upload-pack"))
        .header(
            header::CONTENT_TYPE,
            "application/x-git-upload-pack-request",
        )
        .header(header::ACCEPT, "application/x-git-upload-pack-result")
        .header("Git-Protocol", "version=2")
        .body(pktline::ls_refs_request(wanted));
    let resp = authorize(req, auth)
        .send()
        .await
        .map_err(|e| transport_error(url, e))?;
    refuse_redirect(url, &resp)?;
    match resp.status() {
        StatusCode::OK => {}
        // Ambiguous on POST (some servers only route GET): let the v0 path decide.
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::BAD_REQUEST => {
            return Ok(None);
        }
        status => return Err(status_error(url, status, runtime, auth)),
    }
    if !content_type_is(&resp, "application/x-git-upload-pack-result") {
        return Ok(None);
    }
    let body = read_capped(url, resp, LS_REFS_CAP).await?;
    Ok(pktline::parse_ls_refs(&body).ok())
}

/// The v0 ref advertisement.
async fn advertisement_v0(
    http: &reqwest::Client,
    url: &Url,
    runtime: &str,
    auth: &GitAuth,
) -> Result<Vec<(String, String)>, GitError> {
    let req = http.get(endpoint(url, "info/refs?service=git-upload-pack"));
    let resp = authorize(req, auth)
        .send()
        .await
        .map_err(|e| transport_error(url, e))?;
    refuse_redirect(url, &resp)?;
    if resp.status() != StatusCode::OK {
        return Err(status_error(url, resp.status(), runtime, auth));
    }
    if !content_type_is(&resp, "application/x-git-upload-pack-advertisement") {
        return Err(GitError::Protocol {
            url: display_url(url),
            detail:
                "not a git smart-HTTP server (no upload-pack advertisement); check the repo URL"
                    .into(),
        });
    }
    let body = read_capped(url, resp, ADVERTISEMENT_CAP).await?;
    pktline::parse_advertisement(&body).map_err(|e| GitError::Protocol {
        url: display_url(url),
        detail: e.to_string(),
    })
}

/// A redirect the client policy did not follow (it leaves the origin): named, with its target.
fn refuse_redirect(url: &Url, resp: &reqwest::Response) -> Result<(), GitError> {
    match planner_http::cross_origin_redirect(resp) {
        Some(target) => Err(GitError::CrossOriginRedirect {
            url: display_url(url),
            target: repo_url_of(&target),
        }),
        None => Ok(()),
    }
}

/// The repository URL a redirect target names: credentials, query and the smart-HTTP
/// endpoint removed.
fn repo_url_of(target: &Url) -> String {
    let mut repo = target.clone();
    repo.set_query(None);
    repo.set_fragment(None);
    let path = repo.path().to_owned();
    let trimmed = ["/info/refs", "/git-upload-pack"]
        .iter()
        .find_map(|suffix| path.strip_suffix(suffix))
        .unwrap_or(&path)
        .to_owned();
    repo.set_path(&trimmed);
    display_url(&repo)
}

fn content_type_is(resp: &reqwest::Response, expected: &str) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(expected))
}

async fn read_capped(url: &Url, resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, GitError> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(GitError::TooLarge {
            url: display_url(url),
            cap,
        });
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| transport_error(url, e))?;
        if body.len() + chunk.len() > cap {
            return Err(GitError::TooLarge {
                url: display_url(url),
                cap,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn status_error(url: &Url, status: StatusCode, runtime: &str, auth: &GitAuth) -> GitError {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => auth.auth_refused(url, status.as_u16()),
        StatusCode::NOT_FOUND => GitError::NotFound {
            url: display_url(url),
            runtime: runtime.to_owned(),
        },
        _ => GitError::HttpStatus {
            url: display_url(url),
            status: status.as_u16(),
        },
    }
}

fn transport_error(url: &Url, e: reqwest::Error) -> GitError {
    if e.is_timeout() {
        return GitError::Timeout {
            url: display_url(url),
            secs: TOTAL_TIMEOUT.as_secs(),
        };
    }
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    GitError::Unreachable {
        url: display_url(url),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_target_is_shown_as_a_repo_url_without_credentials() {
        let target =
            Url::parse("https://u:pw@other.example/org/x/info/refs?service=git-upload-pack")
                .unwrap();
        assert_eq!(repo_url_of(&target), "https://other.example/org/x");
        let post = Url::parse("https://other.example/org/x/git-upload-pack").unwrap();
        assert_eq!(repo_url_of(&post), "https://other.example/org/x");
    }
}
