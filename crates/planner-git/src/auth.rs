//! Credentials for the git host ([`GitAuth`]: the token, where it came from, for error hints,
//! and the `[git]` time limits every git subprocess runs under) and the form planner sends
//! the token in ([`basic_credential`]).

use base64::Engine as _;
use url::Url;

use crate::error::{self, GitError};
use planner_base::mask;

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
            mask::register_secret(t);
            mask::register_secret(&basic_credential(t));
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
            url: mask::display_url(url),
            status,
            hint: error::auth_hint(self.token_env.as_deref(), self.token.is_some()),
        }
    }
}
