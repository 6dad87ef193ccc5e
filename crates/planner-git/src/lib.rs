//! Git transport: resolving a branch HEAD (smart-HTTP with reqwest, or `git ls-remote` for
//! `file://` and `ssh://`) and checking out one commit with the git CLI.
//!
//! Credentials: the token is sent as HTTP basic auth only to the repository's own origin (a
//! redirect to another origin is not followed but is [`GitError::CrossOriginRedirect`]:
//! [`planner_http`]'s rule), is passed to git through its environment (never on a command
//! line), and is masked in errors.
pub mod cli;
pub mod env;
pub mod error;
pub mod pktline;
pub mod smart_http;
pub mod trust;

pub use error::GitError;

// The shared helpers, named as before the split (`crate::mask`, `crate::ids`, ...).
use planner_base::{ids, mask, process};

use base64::Engine as _;
use url::Url;

/// The HTTP basic credential planner sends (to git as `extraHeader`, and through reqwest):
/// base64 of `oauth2:<token>`.
pub fn basic_credential(token: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("oauth2:{token}"))
}

/// Credentials for the git host, and where they came from (for error hints); also the
/// `[git]` time limits every git subprocess runs under.
#[derive(Clone, Default)]
pub struct GitAuth {
    pub token: Option<String>,
    pub token_env: Option<String>,
    pub limits: planner_base::settings::GitLimits,
}

impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitAuth")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("token_env", &self.token_env)
            .field("limits", &self.limits)
            .finish()
    }
}

impl GitAuth {
    /// Reads the token from the named environment variable and registers it, and every
    /// encoding planner sends it in, for masking.
    pub fn from_env(token_env: Option<&str>) -> GitAuth {
        let token = token_env
            .and_then(|var| std::env::var(var).ok())
            .filter(|t| !t.is_empty());
        if let Some(t) = &token {
            crate::mask::register_secret(t);
            crate::mask::register_secret(&basic_credential(t));
        }
        GitAuth {
            token,
            token_env: token_env.map(str::to_owned),
            limits: planner_base::settings::GitLimits::default(),
        }
    }

    /// The same credentials, with git subprocesses bounded by `limits`.
    pub fn with_limits(self, limits: planner_base::settings::GitLimits) -> GitAuth {
        GitAuth { limits, ..self }
    }

    pub fn auth_refused(&self, url: &Url, status: u16) -> GitError {
        GitError::AuthRefused {
            url: crate::mask::display_url(url),
            status,
            hint: error::auth_hint(self.token_env.as_deref(), self.token.is_some()),
        }
    }
}

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
