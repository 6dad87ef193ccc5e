//! planner-index: the latest release of a package, asked of its index: PyPI's Simple API
//! ([`pypi`]: PEP 691 JSON when the index offers it, PEP 503 HTML otherwise; versions from the
//! file names, ordered by PEP 440, yanked files (PEP 592) ignored, pre-releases only when
//! asked) and an npm registry ([`npm`]: the abbreviated package document's
//! `dist-tags.latest`).
//!
//! [`Index`] is one run's client: each package is asked once per run however many steps ask
//! for it (a memo, shared by clones), every request bounded in time and size and sent under
//! the transport rules of [`transport`] (HTTPS, or plain HTTP to a loopback host; redirects
//! followed only within the origin, [`planner_http::redirect_policy`]). Credentials come from
//! where pip and npm users keep them ([`credentials`]) and are registered with
//! [`planner_base::mask`]. A failure names the package and the index, and never yields an
//! empty version: callers fail closed.

pub mod credentials;
pub mod npm;
pub mod pypi;
pub mod transport;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;
use url::Url;

/// Which kind of index a package is looked up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ecosystem {
    Pypi,
    Npm,
}

impl Ecosystem {
    /// The name used in `runtimes.toml` (`{ pypi = "..." }`), keys and messages.
    pub fn name(self) -> &'static str {
        match self {
            Ecosystem::Pypi => "pypi",
            Ecosystem::Npm => "npm",
        }
    }
}

/// A package to find the latest release of.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Package {
    pub ecosystem: Ecosystem,
    /// The index's base URL (PyPI: the Simple API root; npm: the registry root); it may carry
    /// userinfo, which is a credential.
    pub index: Url,
    /// The package name as configured.
    pub name: String,
    /// PyPI: pre-releases (and development releases) count too.
    pub pre: bool,
}

impl Package {
    /// `pypi molecule-ai-workspace-runtime` (with `, pre-releases` when `pre`): how reasons name it.
    pub fn describe(&self) -> String {
        let pre = if self.pre { ", pre-releases" } else { "" };
        format!("{} {}{pre}", self.ecosystem.name(), self.name)
    }

    /// The index as shown: without credentials.
    pub fn shown_index(&self) -> String {
        planner_base::mask::display_url(&self.index)
    }
}

/// Why no version was found. Every case names the package and the index (credentials masked).
#[derive(Debug, Clone, thiserror::Error)]
pub enum IndexError {
    #[error(
        "{ecosystem} package {package:?} was not found at {index}\n  help: check the package name in build_args, or the [indexes] {ecosystem} URL"
    )]
    NotFound {
        ecosystem: &'static str,
        package: String,
        index: String,
    },
    #[error("{ecosystem} package {package:?} at {index} has no release matching: {why}")]
    NoRelease {
        ecosystem: &'static str,
        package: String,
        index: String,
        why: String,
    },
    #[error(
        "{ecosystem} index {index} refused access to package {package:?} (HTTP {status})\n  help: {help}"
    )]
    Denied {
        ecosystem: &'static str,
        package: String,
        index: String,
        status: u16,
        help: String,
    },
    #[error(
        "{ecosystem} index {index} is unavailable for package {package:?}: {detail}\n  help: check the index is up and reachable, or run with --offline to use the last recorded version"
    )]
    Unavailable {
        ecosystem: &'static str,
        package: String,
        index: String,
        detail: String,
    },
    #[error("{ecosystem} index {index} answered badly for package {package:?}: {detail}")]
    Protocol {
        ecosystem: &'static str,
        package: String,
        index: String,
        detail: String,
    },
    #[error(
        "{ecosystem} index {index} (package {package:?}) is not allowed: {detail}\n  help: use https://, or http:// only to a loopback host"
    )]
    Insecure {
        ecosystem: &'static str,
        package: String,
        index: String,
        detail: String,
    },
}

type Memo = Mutex<HashMap<Package, Arc<OnceCell<Result<String, IndexError>>>>>;

/// One run's index client: asks each package once (the memo is shared by clones).
#[derive(Clone)]
pub struct Index {
    http: reqwest::Client,
    creds: Arc<credentials::Credentials>,
    memo: Arc<Memo>,
}

impl Index {
    /// A client bounded by `timeout` per request, with the credentials found now.
    pub fn new(timeout: std::time::Duration) -> Index {
        Index::with_credentials(timeout, credentials::Credentials::from_env())
    }

    /// A client with the given credentials (tests).
    pub fn with_credentials(
        timeout: std::time::Duration,
        creds: credentials::Credentials,
    ) -> Index {
        Index {
            http: transport::client(timeout),
            creds: Arc::new(creds),
            memo: Arc::default(),
        }
    }

    /// The latest release of `package` (a PEP 440 or npm version string, never empty);
    /// asked of the index once per client, however often it is called.
    pub async fn latest(&self, package: &Package) -> Result<String, IndexError> {
        // One PyPI project however its name is spelled (PEP 503).
        let mut at = package.clone();
        if at.ecosystem == Ecosystem::Pypi {
            at.name = pypi::normalize(&at.name);
        }
        let cell = {
            let mut memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
            memo.entry(at).or_default().clone()
        };
        cell.get_or_init(|| self.ask(package)).await.clone()
    }

    async fn ask(&self, package: &Package) -> Result<String, IndexError> {
        let cx = transport::Cx::new(package, &self.http, &self.creds)?;
        let version = match package.ecosystem {
            Ecosystem::Pypi => pypi::latest(&cx).await?,
            Ecosystem::Npm => npm::latest(&cx).await?,
        };
        debug_assert!(!version.is_empty());
        Ok(version)
    }
}
