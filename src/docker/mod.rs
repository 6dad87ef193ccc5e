//! Docker: the engine through bollard ([`engine`]; which engine and how to reach it:
//! [`endpoint`], [`remote`]; BuildKit builds in [`buildkit`]), the streamed build context
//! ([`context`]) and `.dockerignore` semantics ([`ignore`]).
pub mod buildkit;
pub mod context;
pub mod endpoint;
pub mod engine;
mod goregex;
pub mod ignore;
pub mod pull;
pub mod remote;
mod ssh;

pub use engine::{BuildOutput, DockerError, Engine, ImageInfo};
