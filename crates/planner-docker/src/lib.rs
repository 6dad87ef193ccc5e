//! Docker: the engine through bollard ([`engine`], every call bounded in time; which engine
//! and how to reach it: [`endpoint`], [`remote`]; what fails: [`error`]; images: [`images`];
//! builds in [`build`], BuildKit's in [`buildkit`], with planner's own session, [`session`],
//! and `/build` call, [`build_api`]), the build context as each builder's client sends it (the
//! classic builder's tar: [`context`]; BuildKit's file sync over the session: [`filesync`]),
//! `.dockerignore` semantics ([`ignore`]), pulls by digest ([`pull`]), running an image once
//! ([`container`]: a smoke test) and the Dockerfile parser ([`dockerfile`]: which base images a
//! Dockerfile names).
//!
//! The crate knows no git and no registry client: what a build needs from them (the
//! checkout's commit time, the registry logins and tokens BuildKit's session answers with) it asks
//! through [`host::BuildHost`], which `planner-steps` implements.
pub mod build;
pub mod build_api;
pub mod buildkit;
pub mod container;
pub mod context;
pub mod dockerfile;
pub mod endpoint;
pub mod engine;
pub mod error;
mod filesync;
mod goregex;
pub mod host;
pub mod ignore;
pub mod images;
pub mod pull;
pub mod remote;
pub mod session;
mod ssh;

pub use build::{BuildOutput, BuildRequest, BuildStepState};
pub use buildkit::BuildCacheUsage;
pub use engine::{Engine, ImageInfo};
pub use error::DockerError;
pub use host::{BuildHost, Login};
pub use images::{ImageDetail, ImageEntry, RemoveOutcome, parse_rfc3339_nanos, split_reference};
pub use session::SessionAuth;
