//! What a build asks of the rest of planner, behind a trait: the checkout's commit time (the
//! mtime of every context entry) and the logins BuildKit's session answers base-image pulls
//! with. `planner-steps` implements it with `planner-git` and `planner-registry`, so this
//! crate depends on neither.

use std::fmt;
use std::path::PathBuf;

use futures_util::future::BoxFuture;

/// A registry login as `docker login` left it (a password, or an identity token).
#[derive(Clone)]
pub struct Login {
    pub username: String,
    /// The password or identity token; registered for masking by whoever read it.
    pub secret: String,
    /// Whether `secret` is an identity token (OAuth2 refresh token) rather than a password.
    pub identity_token: bool,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .field("secret", &"***")
            .field("identity_token", &self.identity_token)
            .finish()
    }
}

/// What a build needs from outside the docker crate.
pub trait BuildHost: Send + Sync + fmt::Debug {
    /// The committer time (seconds since the epoch) of HEAD of the checkout at `checkout`;
    /// `Err` says why it cannot be read.
    fn commit_time(&self, checkout: PathBuf) -> BoxFuture<'static, Result<u64, String>>;

    /// The login for the registry `config.json` keys as `auth_key`, if any; `Err` when the
    /// lookup failed (the pull then goes anonymous).
    fn login(&self, auth_key: String) -> BoxFuture<'static, Result<Option<Login>, String>>;
}
