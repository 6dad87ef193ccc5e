//! Plans and their compilation: `plans/*.toml` loading ([`load`]), the sealed step graph
//! ([`graph`]) and the demand-driven decisions ([`decide`]).
pub mod decide;
pub mod graph;
pub mod load;

pub use crate::kind::StepKind;
pub use crate::output::{Found, Output, Revision};
pub use decide::{
    Decided, Decision, DiscoverRequest, Discovery, Probe, ProbeRequest, Resolved, Status, World,
};
pub use graph::{Answer, Graph, Node, NodeId};
pub use load::{Plan, PlanSet, PlanStep};
