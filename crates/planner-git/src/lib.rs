//! Git transport: resolving a branch HEAD (smart-HTTP with reqwest, or `git ls-remote` for
//! `file://` and `ssh://`) and checking out one commit with the git CLI.
//!
//! Credentials: the token is sent as HTTP basic auth only to the repository's own origin (a
//! redirect to another origin is not followed but is [`GitError::CrossOriginRedirect`]:
//! [`planner_http`]'s rule), is passed to git through its environment (never on a command
//! line), and is masked in errors.
pub mod auth;
pub mod cli;
pub mod env;
pub mod error;
pub mod pktline;
pub mod smart_http;
pub mod trust;

pub use auth::{GitAuth, basic_credential};
pub use error::GitError;

use url::Url;

/// Resolves `branch` of `url` to a commit id, choosing the transport by scheme.
pub async fn resolve_head(
    http: &reqwest::Client,
    url: &Url,
    branch: &str,
    runtime: &str,
    auth: &GitAuth,
) -> Result<String, GitError> {
    match url.scheme() {
        "http" | "https" => smart_http::resolve_head(http, url, branch, runtime, auth).await,
        _ => cli::ls_remote(url, branch, auth).await,
    }
}
