//! Rendering. Plans as text, JSON or DOT ([`plan`]); the executor's event stream as plain
//! lines ([`plain`]), a live terminal display ([`tty`]) or NDJSON ([`json`]); the end-of-run
//! summary ([`summary`]). Steps never print: everything goes through these, masked.
pub mod json;
pub mod plain;
pub mod plan;
pub mod summary;
pub mod tty;

use std::sync::Arc;

use crate::exec::Sink;

/// A sink sending every event to each of `sinks`.
pub fn fan_out(sinks: Vec<Sink>) -> Sink {
    Arc::new(move |event| {
        for s in &sinks {
            s(event);
        }
    })
}
