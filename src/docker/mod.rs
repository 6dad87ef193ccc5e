//! Docker: the engine through bollard ([`engine`]; BuildKit builds in [`buildkit`]), the streamed build context
//! ([`context`]) and `.dockerignore` semantics ([`ignore`]).
pub mod buildkit;
pub mod context;
pub mod engine;
mod goregex;
pub mod ignore;
pub mod pull;

pub use engine::{BuildOutput, DockerError, Engine, ImageInfo};
