//! What the docker crate asks of the rest of planner for a build ([`BuildHost`]): the
//! checkout's commit time, through `planner-git`; and for BuildKit's session, the registry
//! logins `docker login` left and the tokens fetched with them, through the run's
//! `planner-registry` client (its realm and redirect rules: the secret stays in planner).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use planner_docker::{BuildHost, Login};
use planner_registry::Registry;

/// The real [`BuildHost`].
#[derive(Default)]
pub struct Host {
    /// The run's registry client; `None` answers no registry (a context that is no build).
    registry: Option<Registry>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("registry", &self.registry.is_some())
            .finish()
    }
}

impl Host {
    /// A host for what needs only the commit time (the build context).
    pub fn shared() -> Arc<dyn BuildHost> {
        Arc::new(Host::default())
    }

    /// The host of a build whose session answers with `registry`'s logins and token rules.
    pub fn with_registry(registry: Registry) -> Arc<dyn BuildHost> {
        Arc::new(Host {
            registry: Some(registry),
        })
    }
}

impl BuildHost for Host {
    fn commit_time(&self, checkout: PathBuf) -> BoxFuture<'static, Result<u64, String>> {
        Box::pin(async move {
            planner_git::cli::commit_time(&checkout)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn registry_login(
        &self,
        registry: String,
    ) -> BoxFuture<'static, Result<Option<Login>, String>> {
        let client = self.registry.clone();
        Box::pin(async move {
            let Some(client) = client else {
                return Ok(None);
            };
            let found = client.registry_credentials(&registry).await;
            Ok(found.map_err(|e| e.to_string())?.map(|c| Login {
                username: c.username,
                secret: c.secret,
                identity_token: c.identity_token,
            }))
        })
    }

    fn session_token(
        &self,
        registry: String,
        realm: String,
        service: String,
        scopes: Vec<String>,
    ) -> BoxFuture<'static, Result<(String, Duration), String>> {
        let client = self.registry.clone();
        Box::pin(async move {
            let client = client.ok_or("no registry client for this build")?;
            let token = client.session_token(&registry, &realm, &service, &scopes);
            token.await.map_err(|e| e.to_string())
        })
    }
}
