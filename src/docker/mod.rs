//! Docker: the engine through bollard ([`engine`]; which engine and how to reach it:
//! [`endpoint`], [`remote`]; BuildKit builds in [`buildkit`] over a session, [`session`]), the
//! build context as each builder's client sends it (the classic builder's tar: [`context`];
//! BuildKit's file sync: [`filesync`]) and `.dockerignore` semantics ([`ignore`]).
pub mod buildkit;
pub mod context;
pub mod endpoint;
pub mod engine;
mod filesync;
mod goregex;
pub mod ignore;
pub mod pull;
pub mod remote;
mod session;
mod ssh;

pub use engine::{BuildOutput, DockerError, Engine, ImageInfo};
