//! The error a step can fail with. Every variant's text names what failed, on what, and the fix;
//! renderers pass it through [`crate::mask::mask`] before printing.

use crate::docker::DockerError;
use crate::docker::context::ContextError;
use crate::git::GitError;
use crate::registry::RegistryError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Docker(Box<DockerError>),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Dockerfile(String),
    #[error("{0}")]
    Offline(String),
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Internal(String),
}

impl From<DockerError> for StepError {
    fn from(e: DockerError) -> Self {
        StepError::Docker(Box::new(e))
    }
}
