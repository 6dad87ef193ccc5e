//! Docker: the engine through bollard ([`engine`]; which engine and how to reach it:
//! [`endpoint`], [`remote`]; BuildKit builds in [`buildkit`], with planner's own session,
//! [`session`], and `/build` call, [`build_api`]), the build context as each builder's client
//! sends it (the classic builder's tar: [`context`]; BuildKit's file sync over the session:
//! [`filesync`]) and `.dockerignore` semantics ([`ignore`]).
pub mod build_api;
pub mod buildkit;
pub mod context;
pub mod endpoint;
pub mod engine;
mod filesync;
mod goregex;
pub mod ignore;
pub mod pull;
pub mod remote;
pub mod session;
mod ssh;

pub use engine::{BuildOutput, DockerError, Engine, ImageInfo};
pub use session::SessionAuth;
