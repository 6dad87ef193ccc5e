//! The event stream the executor emits; renderers in `report` consume it. Steps never print.

use std::sync::Arc;
use std::time::Duration;

use crate::key::Key;
use crate::kind::StepKind;
use crate::plan::{Graph, NodeId};

/// Which step an event is about. A shared step names every runtime that needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRef {
    pub runtimes: Vec<String>,
    pub kind: StepKind,
    pub step_id: String,
    pub key: Option<Key>,
}

impl StepRef {
    pub fn new(graph: &Graph, id: NodeId, key: Option<&Key>) -> StepRef {
        let node = graph.node(id);
        StepRef {
            runtimes: node.runtime_names(),
            kind: node.kind,
            step_id: node.step_id.clone(),
            key: key.cloned(),
        }
    }
}

/// One step transition (or a line of its output).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Skipped {
        step: StepRef,
        reason: String,
    },
    Started {
        step: StepRef,
        reason: String,
    },
    Finished {
        step: StepRef,
        duration: Duration,
        detail: String,
    },
    Failed {
        step: StepRef,
        duration: Duration,
        error: String,
    },
    Blocked {
        step: StepRef,
        reason: String,
    },
    /// Waiting for another planner process that holds the step's lock.
    Waiting {
        step: StepRef,
        reason: String,
    },
    /// A line of the step's output (a build's).
    Output {
        step: StepRef,
        line: String,
    },
    /// A named part of the step's work, as the tool doing it reports it (a build's
    /// Dockerfile steps as BuildKit reports them: `[2/5] RUN pip install …`, or an internal
    /// one such as `[internal] load metadata for …`): it started, was found cached, finished
    /// or failed. Sent once per transition.
    Substep {
        step: StepRef,
        name: String,
        state: SubstepState,
    },
}

/// Where a part of a step's work stands ([`Event::Substep`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubstepState {
    Started,
    Cached,
    Done,
    Failed,
}

impl SubstepState {
    /// As plain lines and NDJSON name it: `started`, `cached`, `done`, `failed`.
    pub fn name(self) -> &'static str {
        match self {
            SubstepState::Started => "started",
            SubstepState::Cached => "cached",
            SubstepState::Done => "done",
            SubstepState::Failed => "failed",
        }
    }
}

/// Where events go. Renderers implement it as a closure.
pub type Sink = Arc<dyn Fn(&Event) + Send + Sync>;

/// A sink that drops everything.
pub fn null_sink() -> Sink {
    Arc::new(|_| {})
}
