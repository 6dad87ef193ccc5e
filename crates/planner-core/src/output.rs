//! What steps hand each other, opaque to the core: a step's [`Output`] (a checkout, an
//! image, ... : each kind's own type) and the inputs a discovering kind [`Found`] for its key
//! (a build's base images). The core stores and passes them; only the kinds that made them,
//! and the kinds that consume them, look inside (by type, [`Output::get`]).
//!
//! The one output the core makes itself is a root's: the [`Revision`] it answered.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// What a kind's output type offers the core.
pub trait OutputData: Any + Send + Sync + fmt::Debug {
    /// A short description for the step's finished line (`checked out into …`, an image ID).
    fn describe(&self) -> String;
}

/// A step's output, whether just produced or found materialized.
#[derive(Clone, Debug)]
pub struct Output(Arc<dyn OutputData>);

impl Output {
    pub fn new(data: impl OutputData) -> Output {
        Output(Arc::new(data))
    }

    /// The output as the type its kind made, if it is one.
    pub fn get<T: OutputData>(&self) -> Option<&T> {
        let any: &dyn Any = self.0.as_ref();
        any.downcast_ref::<T>()
    }

    /// The description for the finished line.
    pub fn describe(&self) -> String {
        self.0.describe()
    }
}

/// A root's output: the revision it answered (a commit, a manifest digest, a version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision(pub String);

impl OutputData for Revision {
    fn describe(&self) -> String {
        planner_base::ids::short(&self.0).to_owned()
    }
}

/// What a discovering kind's found inputs offer the core.
pub trait FoundData: Any + Send + Sync + fmt::Debug {
    /// What the user should know about how they were found (`could not check … for
    /// updates`): the core adds the notes of inputs found only before running to the step's
    /// reason.
    fn notes(&self) -> &[String];

    /// Whether they came from a hint (what an earlier run left, another machine's word)
    /// rather than from the step's input: the scheduler derives them again from the input
    /// before the step runs, and what the input gives decides ([`FoundData::over_hint`]).
    fn hinted(&self) -> bool {
        false
    }

    /// Whether the hint is weak enough that `decide` reads the step's input instead when it
    /// is already materialized (so a hint only ever saves producing the input).
    fn input_decides_when_present(&self) -> bool {
        false
    }

    /// The inputs `derived` from the step's input, which replace these found from a hint;
    /// the kind may warn, naming the hint, when they disagree.
    fn over_hint(&self, derived: Found, _step: &str) -> Found {
        derived
    }
}

/// The inputs a discovering kind found for its key, opaque to the core.
#[derive(Clone, Debug)]
pub struct Found(Arc<dyn FoundData>);

impl Found {
    pub fn new(data: impl FoundData) -> Found {
        Found(Arc::new(data))
    }

    /// The found inputs as the type their kind made, if they are one.
    pub fn get<T: FoundData>(&self) -> Option<&T> {
        let any: &dyn Any = self.0.as_ref();
        any.downcast_ref::<T>()
    }

    pub fn notes(&self) -> &[String] {
        self.0.notes()
    }

    /// Whether they came from a hint ([`FoundData::hinted`]).
    pub fn hinted(&self) -> bool {
        self.0.hinted()
    }

    /// Whether `decide` reads a materialized input instead ([`FoundData::input_decides_when_present`]).
    pub fn input_decides_when_present(&self) -> bool {
        self.0.input_decides_when_present()
    }

    /// What stands once `derived` was read from the step's input ([`FoundData::over_hint`]).
    pub fn over_hint(&self, derived: Found, step: &str) -> Found {
        self.0.over_hint(derived, step)
    }
}
