//! The error a kind's work can fail with: the leaf crates' errors as they are, and the
//! messages of the kinds themselves. Every variant's text names what failed, on what, and
//! the fix; the core receives it as a [`StepError`] whose text is the same.

use planner_core::StepError;
use planner_core::store::StoreError;
use planner_docker::DockerError;
use planner_git::GitError;
use planner_registry::RegistryError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Docker(Box<DockerError>),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A Dockerfile or base image the build cannot use.
    #[error("{0}")]
    Dockerfile(String),
    /// A kind's own failure (what failed, on what, and the fix), such as a push refused.
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Offline(String),
    #[error("{0}")]
    Internal(String),
}

impl From<DockerError> for Error {
    fn from(e: DockerError) -> Self {
        Error::Docker(Box::new(e))
    }
}

impl From<Error> for StepError {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(e) => StepError::Store(e),
            Error::Offline(m) => StepError::Offline(m),
            Error::Internal(m) => StepError::Internal(m),
            other => StepError::failed(other),
        }
    }
}
