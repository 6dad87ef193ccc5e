//! planner: build container images for allowlisted runtime template repositories, pinned to
//! the commit, never twice.
//!
//! The flow, as data walks through it:
//! [`config`] (runtimes.toml) and [`plan::load`] (plans/*.toml) → [`plan::graph`] (one
//! deduplicated DAG) → [`key`] (content addresses) → [`plan::decide`] (skip/run, with reasons)
//! → [`exec`] (scheduler, locks) driving the real world ([`steps::RealWorld`]) → an event
//! stream → [`report`] (live terminal display, plain lines, NDJSON; plans as text, JSON or DOT).
//!
//! The library is a workspace (see ARCHITECTURE.md); this package is the application on top
//! of it, and re-exports the crates under the paths they had before the split:
//! - `planner-core` as [`key`], [`plan`], [`exec`], [`store`], [`error`]: the generic
//!   machinery, which knows step kinds only through a trait;
//! - `planner-steps` as [`steps`] (each kind one module, listed once in [`steps::KINDS`]),
//!   with [`bases`] and [`cache`];
//! - the leaf crates as [`git`], [`docker`] (with [`dockerfile`]), [`registry`], and
//!   `planner-base` as [`ids`], [`mask`] and [`text`] (outside text made inert wherever it
//!   is printed); `planner-http` as [`origin`] (where a credential may travel);
//!   `planner-index` as [`index`] (a package's latest release on PyPI or npm);
//!   `planner-config` as [`config`].
//!
//! Its own modules: [`app`] ties the flow together for [`cli`], the thin command line the
//! `planner` binary runs; [`status`] and [`gc`] ([`gc_remote`]) read and prune what earlier
//! runs left; [`watch`] repeats `ensure` tick after tick and tells a hook when a runtime's
//! `:latest` moves; [`shard`] splits the runtimes of a fleet (`--shard K/N`). Only [`cli`]
//! and [`report`] print.
pub mod app;
pub mod cli;
pub mod gc;
pub mod gc_remote;
pub mod report;
pub mod shard;
pub mod status;
pub mod summary;
pub mod watch;

pub use planner_base::{ids, mask, text};
pub use planner_config as config;
pub use planner_core::{error, exec, key, plan, store};
pub use planner_docker::dockerfile;
pub use planner_git as git;
pub use planner_http as origin;
pub use planner_index as index;
pub use planner_registry as registry;
pub use planner_steps as steps;
pub use planner_steps::{bases, cache};

use planner_base::process;

/// The Docker engine crate, under its old path; [`docker::context::stream`] keeps its old
/// signature (the checkout's commit time asked of git).
pub mod docker {
    pub use planner_docker::*;

    /// The build context ([`planner_docker::context`]).
    pub mod context {
        pub use planner_docker::context::*;

        /// [`planner_docker::context::stream`] with the real host (git's commit time).
        pub fn stream(
            root: &std::path::Path,
            dockerfile_rel: &str,
        ) -> (
            impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
            Producer,
        ) {
            planner_docker::context::stream(
                root,
                dockerfile_rel,
                crate::steps::host::Host::shared(),
            )
        }
    }
}
