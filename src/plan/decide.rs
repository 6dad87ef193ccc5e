//! Demand-driven decisions.
