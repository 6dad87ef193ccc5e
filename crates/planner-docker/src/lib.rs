//! Docker: the engine through bollard ([`engine`]; which engine and how to reach it:
//! [`endpoint`], [`remote`]; BuildKit builds in [`buildkit`]), the streamed build context
//! ([`context`]), `.dockerignore` semantics ([`ignore`]), pulls by digest ([`pull`]) and the
//! Dockerfile parser ([`dockerfile`]: which base images a Dockerfile names).
//!
//! The crate knows no git and no registry client: what a build needs from them (the
//! checkout's commit time, the registry logins BuildKit's session answers with) it asks
//! through [`host::BuildHost`], which `planner-steps` implements.
pub mod build;
pub mod buildkit;
pub mod context;
pub mod dockerfile;
pub mod endpoint;
pub mod engine;
pub mod error;
mod goregex;
pub mod host;
pub mod ignore;
pub mod images;
pub mod pull;
pub mod remote;
mod ssh;

pub use build::{BuildOutput, BuildRequest, BuildStepState};
pub use buildkit::BuildCacheUsage;
pub use engine::{Engine, ImageInfo};
pub use error::DockerError;
pub use host::{BuildHost, Login};
pub use images::{ImageDetail, ImageEntry, RemoveOutcome, parse_rfc3339_nanos, split_reference};

// The shared helpers, named as before the split (`crate::mask`, `crate::ids`).
use planner_base::{ids, mask};
