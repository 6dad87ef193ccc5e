//! planner: build container images for allowlisted runtime template repositories, pinned to
//! the commit, never twice.
//!
//! The flow, as data walks through it:
//! [`config`] (runtimes.toml) and [`plan::load`] (plans/*.toml) → [`plan::graph`] (one
//! deduplicated DAG) → [`key`] (content addresses) → [`plan::decide`] (skip/run, with reasons)
//! → [`exec`] (scheduler, locks, the real world) → an event stream → [`report`] (live
//! terminal display, plain lines, NDJSON; plans as text, JSON or DOT).
//! Each step kind is one module under [`steps`] (its name, input, params, key, probe, run and
//! record), listed once in the registry [`steps::of`]; the graph, keys, `decide` and the
//! scheduler ask the kind and never match on it.
//! Side effects live in [`git`], [`docker`], [`registry`] (the OCI registry client of registry
//! mode) and [`store`]; [`mask`] hides the token and registry credentials everywhere, and
//! [`origin`] says where they may go; [`text`] makes text from outside inert (control
//! characters escaped) wherever it is printed.
//! [`ids`] validates every id read back; [`status`] and [`gc`] read and prune what earlier runs left; [`app`] ties the flow
//! together for [`cli`], the thin command line the `planner` binary runs; [`watch`] repeats
//! `ensure` tick after tick and tells a hook when a runtime's `:latest` moves; [`shard`] splits
//! the runtimes of a fleet (`--shard K/N`).
pub mod app;
pub mod bases;
pub mod cache;
pub mod cli;
pub mod config;
pub mod docker;
pub mod dockerfile;
pub mod error;
pub mod exec;
pub mod gc;
pub mod gc_remote;
pub mod git;
pub mod ids;
pub mod key;
pub mod mask;
pub mod origin;
pub mod plan;
mod process;
pub mod registry;
pub mod report;
pub mod shard;
pub mod status;
pub mod steps;
pub mod store;
pub mod text;
pub mod watch;
