//! planner-steps: the step kinds, one module each, the registry that lists them, and the
//! real world they run in.
//!
//! A kind says what it is to the core ([`planner_core::Kind`]: its name in plan files, the
//! kind whose output it consumes, the params it accepts, its key, whether it takes a
//! `--jobs` slot, its record fields) and what it does here ([`Work`]: how it resolves,
//! discovers, probes and runs against the real world, [`RealWorld`], and what its record
//! stands for, [`Attests`], for `gc`). The graph, keys, `decide` and the scheduler only ever
//! ask a kind through the core trait; [`KINDS`] is the registry.
//!
//! Adding a kind: a module here implementing both traits, and its line in [`KINDS`] (plus
//! its plan files and docs). Its output type and record fields are its own (`outputs`,
//! `record` hold those the current kinds share).
//!
//! Beside the kinds: [`world`] (the real world and the dispatch to the kinds), [`bases`]
//! (base images as build inputs), [`cache`] (the shared cache), [`labels`] (the image label
//! schema, in one module), [`host`] (what the docker crate asks of git and the registry),
//! [`plans`] (the built-in plans).

pub mod bases;
pub mod build;
pub mod cache;
pub mod clone;
mod dispatch;
mod error;
pub mod host;
mod kind;
pub mod labels;
pub mod outputs;
pub mod plans;
pub mod publish;
pub mod pull;
pub mod record;
pub mod resolve_digest;
pub mod resolve_head;
pub mod resolve_version;
pub mod smoke;
pub mod tag_latest;
pub mod verify_dockerfile;
pub mod world;

#[cfg(test)]
mod key_tests;
#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod scheduler_tests;

use std::sync::LazyLock;

pub use error::Error;
pub use kind::{Attests, Work, via};
pub use world::RealWorld;

use planner_core::{Kinds, StepKind};

/// The registry: every kind, once, in the order plan errors list them.
static WORK: &[&dyn Work] = &[
    &resolve_head::Step,
    &resolve_version::Step,
    &clone::Step,
    &verify_dockerfile::Step,
    &build::Step,
    &smoke::Step,
    &tag_latest::Step,
    &publish::Step,
    &resolve_digest::Step,
    &pull::Step,
];

/// The registry as plan loading and record listing take it.
pub static KINDS: LazyLock<Kinds> =
    LazyLock::new(|| Kinds::new(WORK.iter().map(|w| StepKind::new(*w)).collect()));

/// The registry as the core takes it.
pub fn kinds() -> &'static Kinds {
    &KINDS
}

/// The kind a handle names (every handle the graph holds was found in [`KINDS`]).
pub fn work(kind: StepKind) -> &'static dyn Work {
    by_name(kind.name()).expect("every step kind is registered")
}

/// The kind a record names, by its name; `None` for a name no kind has.
pub fn by_name(name: &str) -> Option<&'static dyn Work> {
    WORK.iter().copied().find(|w| w.name() == name)
}
