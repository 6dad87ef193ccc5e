//! What a build asks of the rest of planner, behind a trait: the checkout's commit time (the
//! mtime of every context entry), and for BuildKit's session ([`crate::session`]) the logins
//! `docker login` left and the tokens planner fetches with them under its registry client's
//! rules. `planner-steps` implements it with `planner-git` and `planner-registry`, so this
//! crate depends on neither.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

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

    /// The login `docker login` left for `registry` (`host[:port]`, `docker.io` for Docker
    /// Hub), if any; `Err` when the lookup failed.
    fn registry_login(&self, registry: String)
    -> BoxFuture<'static, Result<Option<Login>, String>>;

    /// A bearer token from `realm` for `scopes` on `registry`, fetched with its login under
    /// the rules of planner's registry client (HTTPS unless loopback or listed insecure, no
    /// redirect to another origin), and how long it lives; `Err` says why not (masked).
    fn session_token(
        &self,
        registry: String,
        realm: String,
        service: String,
        scopes: Vec<String>,
    ) -> BoxFuture<'static, Result<(String, Duration), String>>;
}

/// A host for contexts that are no checkout (unit tests): it has no commit time, no login
/// and no token.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct NoHost;

#[cfg(test)]
impl BuildHost for NoHost {
    fn commit_time(&self, _: PathBuf) -> BoxFuture<'static, Result<u64, String>> {
        Box::pin(async { Err("no checkout in these tests".to_owned()) })
    }

    fn registry_login(&self, _: String) -> BoxFuture<'static, Result<Option<Login>, String>> {
        Box::pin(async { Ok(None) })
    }

    fn session_token(
        &self,
        _: String,
        _: String,
        _: String,
        _: Vec<String>,
    ) -> BoxFuture<'static, Result<(String, Duration), String>> {
        Box::pin(async { Err("no registry in these tests".to_owned()) })
    }
}
