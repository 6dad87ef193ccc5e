//! The error a step can fail with, as the core sees it: the cases a caller branches on, and
//! the side effects' own errors (git, Docker, registry: `planner-steps` wraps them) behind a
//! boxed source whose text is shown unchanged. Every variant's text names what failed, on
//! what, and the fix; renderers pass it through [`planner_base::mask::mask`] before printing.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Offline, and no recorded answer to fall back on.
    #[error("{0}")]
    Offline(String),
    /// The cache dir failed (records, locks, temp dirs).
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cancelled")]
    Cancelled,
    /// A bug: planner's own invariant did not hold.
    #[error("{0}")]
    Internal(String),
    /// The step's work failed (the git host, the engine, a registry, the Dockerfile): the
    /// kind's error, shown as it says.
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

impl StepError {
    /// A step's failure, from the kind's own error.
    pub fn failed(e: impl std::error::Error + Send + Sync + 'static) -> StepError {
        StepError::Failed(Box::new(e))
    }
}
