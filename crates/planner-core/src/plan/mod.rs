//! Plans and their compilation: `plans/*.toml` loading ([`load`]), the sealed step graph
//! ([`graph`]), its nodes' keys ([`keys`]) and the demand-driven decisions ([`decide`]).
pub mod decide;
pub mod graph;
pub mod keys;
pub mod load;

pub use crate::kind::{Answer, KeyInputs, Node, StepKind};
pub use crate::output::{Found, Output, Revision};
pub use decide::{
    Decided, Decision, DiscoverRequest, Discovery, Probe, ProbeRequest, Resolved, Status, Via,
    World,
};
pub use graph::{Graph, NodeId};
pub use load::{Plan, PlanSet, PlanStep};
