//! Plans and their compilation: `plans/*.toml` loading ([`load`]), the step kinds ([`step`]),
//! the sealed step graph ([`graph`]) and the demand-driven decisions ([`decide`]).
pub mod decide;
pub mod graph;
pub mod load;
pub mod step;

pub use decide::{
    Decided, Decision, DiscoverRequest, Discovery, Output, Probe, ProbeRequest, Resolved, Status,
    Via, World,
};
pub use graph::{Graph, Node, NodeId};
pub use load::{Plan, PlanSet, PlanStep};
pub use step::StepKind;
