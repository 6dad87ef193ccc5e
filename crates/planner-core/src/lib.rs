//! planner-core: the generic machinery, knowing step kinds only through a trait.
//!
//! The flow: [`plan::load`] (plans/*.toml, kinds found in a [`kind::Kinds`] registry) →
//! [`plan::graph`] (one deduplicated DAG over the runtimes) → [`key`] (content addresses,
//! asked of each node's kind) → [`plan::decide`] (skip/run, with reasons, asking a
//! [`plan::World`]) → [`exec`] (the resolve phase, then the scheduler: locks, re-checks,
//! bounded concurrency, through [`exec::Effects`]) → an event stream ([`exec::event`]).
//! [`store`] owns the cache dir: its layout, the step records, the locks.
//!
//! The core never names a kind: what a kind is ([`kind::Kind`]), what it outputs
//! ([`output::Output`]), what it discovers ([`output::Found`]) and what its records carry
//! ([`store::RecordField`]) are the kind's, opaque here. `planner-steps` holds the kinds;
//! no git, Docker or registry code is in this crate's dependency tree.
pub mod error;
pub mod exec;
pub mod key;
pub mod kind;
pub mod output;
pub mod plan;
pub mod store;

pub use error::StepError;
pub use kind::{Kind, Kinds, StepKind};
pub use output::{Found, Output};

#[cfg(test)]
mod testkinds;
