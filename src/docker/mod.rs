//! Docker: the engine through bollard ([`engine`]), the streamed build context
//! ([`context`]) and `.dockerignore` semantics ([`ignore`]).
pub mod context;
pub mod engine;
mod goregex;
pub mod ignore;
pub mod pull;

pub use engine::{DockerError, Engine, ImageInfo};
