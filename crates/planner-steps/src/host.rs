//! What the docker crate asks of the rest of planner for a build ([`BuildHost`]): the
//! checkout's commit time, through `planner-git`, and the registry logins BuildKit's session
//! answers base-image pulls with, through `planner-registry`'s `config.json` lookup.

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::docker::{BuildHost, Login};

/// The real [`BuildHost`].
#[derive(Debug, Default)]
pub struct Host;

impl Host {
    /// The host every build is given.
    pub fn shared() -> Arc<dyn BuildHost> {
        Arc::new(Host)
    }
}

impl BuildHost for Host {
    fn commit_time(&self, checkout: PathBuf) -> BoxFuture<'static, Result<u64, String>> {
        Box::pin(async move {
            crate::git::cli::commit_time(&checkout)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn login(&self, auth_key: String) -> BoxFuture<'static, Result<Option<Login>, String>> {
        Box::pin(async move {
            let config = crate::registry::DockerConfig::from_env();
            let found = config.lookup(&auth_key).await.map_err(|e| e.to_string())?;
            Ok(found.map(|c| Login {
                username: c.username,
                secret: c.secret,
                identity_token: c.identity_token,
            }))
        })
    }
}
