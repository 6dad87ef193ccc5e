//! The event stream the executor emits; renderers in `report` consume it. Steps never print.

use std::sync::Arc;
use std::time::Duration;

use crate::key::Key;
use crate::plan::{Graph, NodeId, StepKind};

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
    /// A line of build output.
    Output {
        step: StepRef,
        line: String,
    },
    /// A Dockerfile step as BuildKit reports it (`[2/5] RUN pip install …`, or an internal
    /// one such as `[internal] load metadata for …`): it started, was found cached, finished
    /// or failed. Sent once per transition.
    BuildStep {
        step: StepRef,
        name: String,
        state: BuildStepState,
    },
}

/// Where a BuildKit step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildStepState {
    Started,
    Cached,
    Done,
    Failed,
}

impl BuildStepState {
    /// As plain lines and NDJSON name it: `started`, `cached`, `done`, `failed`.
    pub fn name(self) -> &'static str {
        match self {
            BuildStepState::Started => "started",
            BuildStepState::Cached => "cached",
            BuildStepState::Done => "done",
            BuildStepState::Failed => "failed",
        }
    }
}

/// Where events go. Renderers implement it as a closure.
pub type Sink = Arc<dyn Fn(&Event) + Send + Sync>;

/// A sink that drops everything.
pub fn null_sink() -> Sink {
    Arc::new(|_| {})
}
