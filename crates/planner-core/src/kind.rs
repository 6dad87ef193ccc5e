//! Step kinds as the core knows them: a [`Kind`] trait with what the graph, keys, `decide`
//! and the scheduler ask of a kind, and [`StepKind`], an opaque `Copy` handle to one; and
//! the steps they make: a graph [`Node`], what its key is made from ([`KeyInputs`], the
//! [`Answer`]s of its roots), what its records carry ([`RecordField`]). One module, because
//! these name each other (a kind keys a node, a node has a kind).
//!
//! The core never names a kind. The kinds themselves live in `planner-steps` (one module
//! each, listed once in its registry), which hands a [`Kinds`] registry to plan loading and
//! implements the side effects ([`crate::exec::Effects`]) by dispatching on the handle.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use planner_config::{Runtime, SourceKind};

use crate::key::Key;
use crate::output::{Found, Output};

/// What the core asks of a step kind. Its side effects (resolve, discover, probe, run) are
/// not here: the core reaches them through [`crate::exec::Effects`] and [`crate::plan::World`].
pub trait Kind: Sync + 'static {
    /// The name used in plan files, output and records.
    fn name(&self) -> &'static str;

    /// The kinds whose output this kind consumes (a step has exactly one such need); empty
    /// for a root kind, which is answered in the resolve phase before deciding.
    fn input_kinds(&self) -> &'static [StepKind] {
        &[]
    }

    /// The source a root kind reads (`None` for every other kind): a plan serves the
    /// runtimes of its roots' source.
    fn source(&self) -> Option<SourceKind> {
        None
    }

    /// Parameters a step of this kind accepts in its `params` table.
    fn params(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether running it takes one of the `--jobs` slots (heavy work: network, builds).
    fn heavy(&self) -> bool {
        false
    }

    /// Whether its probe judges its input's output (so `decide` probes the input first,
    /// even when the input itself is not needed), and whether its key may be computed from
    /// that output ([`KeyInputs::input_output`]) once the input is materialized.
    fn probes_input(&self) -> bool {
        false
    }

    /// Whether, once decided to run, it runs even when the re-check under the lock finds it
    /// present: for work that is idempotent and cheap, so the dry run stays exact.
    fn always_runs(&self) -> bool {
        false
    }

    /// The configuration values a step of this kind reads, beyond its needs and params: part
    /// of its identity in the graph, so that steps reading the same values are one step.
    fn reads(&self, _rt: &Runtime) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// How a step of this kind that runs is satisfied when nothing is found (a build
    /// builds, a pull pulls: the kind's own names for its ways); `None` for kinds with one
    /// way only.
    fn runs_via(&self) -> Option<Via> {
        None
    }

    /// Whether its key covers inputs found in the world once its root has answered (a
    /// build's base images): `decide` and the scheduler ask the world to discover them.
    fn discovers(&self) -> bool {
        false
    }

    /// The step's content address from its inputs ([`crate::key`] encodes, with the kind's
    /// name first); `None` while they are not known.
    fn key(&self, at: &KeyInputs<'_>) -> Option<Key>;

    /// The fields its records carry beyond the common header, each with the check its value
    /// must pass when read back (records are hostile input).
    fn record_fields(&self) -> &'static [RecordField] {
        &[]
    }
}

/// How a step that runs will be satisfied, for the kinds that have more than one way: what
/// `plan --format json` says in `via` (`"build"`, `"shared-cache"`, ...), so that automation
/// can tell one way from another without reading the reason. The kinds name their ways
/// (constants in their crate); the core only carries the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Via(pub &'static str);

/// A registered step kind: a `Copy` handle compared by name.
#[derive(Clone, Copy)]
pub struct StepKind(&'static dyn Kind);

impl StepKind {
    /// The handle of `kind` (usable in constants: `const KIND: StepKind = StepKind::new(&Step);`).
    pub const fn new(kind: &'static dyn Kind) -> StepKind {
        StepKind(kind)
    }

    /// The kind itself.
    pub fn get(self) -> &'static dyn Kind {
        self.0
    }

    /// The name used in plan files and output.
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// The kinds whose output this kind consumes (exactly one such need); empty for roots.
    pub fn input_kinds(self) -> &'static [StepKind] {
        self.0.input_kinds()
    }

    /// Parameters a step of this kind accepts in its `params` table.
    pub fn params(self) -> &'static [&'static str] {
        self.0.params()
    }

    /// A root kind consumes no other kind's output: it is answered in the resolve phase
    /// ([`crate::exec::Effects::resolve`]), before deciding, and everything else descends
    /// from it.
    pub fn is_root(self) -> bool {
        self.input_kinds().is_empty()
    }

    /// Whether its probe judges its input's output ([`Kind::probes_input`]).
    pub fn probes_input(self) -> bool {
        self.0.probes_input()
    }

    /// Whether it runs once decided, even if found present ([`Kind::always_runs`]).
    pub fn always_runs(self) -> bool {
        self.0.always_runs()
    }

    /// Whether running a step of this kind takes one of the `--jobs` slots.
    pub fn heavy(self) -> bool {
        self.0.heavy()
    }
}

impl PartialEq for StepKind {
    fn eq(&self, other: &StepKind) -> bool {
        self.name() == other.name()
    }
}

impl Eq for StepKind {}

impl Hash for StepKind {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl fmt::Debug for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StepKind({})", self.name())
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for StepKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// The registry of kinds: the value plan loading finds kinds by name in.
#[derive(Debug, Clone)]
pub struct Kinds {
    all: Vec<StepKind>,
}

impl Kinds {
    /// A registry of `all`, in the order plan errors list them.
    pub fn new(all: Vec<StepKind>) -> Kinds {
        Kinds { all }
    }

    /// Every registered kind.
    pub fn all(&self) -> &[StepKind] {
        &self.all
    }

    /// The kind named `name`; `None` for a name no kind has.
    pub fn find(&self, name: &str) -> Option<StepKind> {
        self.all.iter().copied().find(|k| k.name() == name)
    }
}

/// One step of work, shared by every runtime whose plan reaches it.
#[derive(Debug, Clone)]
pub struct Node {
    pub kind: StepKind,
    /// The plan step id (from the first runtime that reached the node).
    pub step_id: String,
    /// The runtimes that need this node, in request order; the first one names it.
    pub runtimes: Vec<Arc<Runtime>>,
    pub params: std::collections::BTreeMap<String, String>,
    pub(crate) identity: blake3::Hash,
}

impl Node {
    /// The runtime the node is reported under.
    pub fn runtime(&self) -> &Runtime {
        &self.runtimes[0]
    }

    /// Names of all runtimes sharing this node.
    pub fn runtime_names(&self) -> Vec<String> {
        self.runtimes.iter().map(|r| r.name.clone()).collect()
    }

    /// A stable, readable id: `runtime/step-id`.
    pub fn display_id(&self) -> String {
        format!("{}/{}", self.runtime().name, self.step_id)
    }
}

/// A root a step descends from, and what it answered.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub node: &'a Node,
    /// The revision the root answered (a commit, a manifest digest, a version).
    pub revision: &'a str,
}

/// What a kind computes its key from.
pub struct KeyInputs<'a> {
    pub node: &'a Node,
    /// The revision its primary root answered (the root its input chain descends from:
    /// [`crate::plan::Graph::resolve_of`]), once known.
    pub revision: Option<&'a str>,
    /// Every root the step descends from through any need, with its answer, for the roots
    /// that answered ([`crate::plan::Graph::roots_of`]): a step keyed on a released version (a second
    /// root) finds that root's answer here.
    pub answers: Vec<Answer<'a>>,
    /// The key of its input need ([`crate::plan::Graph::input_of`]), once known.
    pub input: Option<&'a Key>,
    /// The inputs found in the world for a kind that discovers some, once known.
    pub found: Option<&'a Found>,
    /// Its input's output, once the input is materialized (probed present, or ran): for a
    /// kind keyed on what its input produced (an image ID). `None` while computing keys
    /// before deciding.
    pub input_output: Option<&'a Output>,
}

/// A field a kind's records carry, with the check its value must pass when read back.
#[derive(Debug, Clone, Copy)]
pub struct RecordField {
    pub name: &'static str,
    pub valid: fn(&str) -> bool,
}

impl RecordField {
    pub const fn new(name: &'static str, valid: fn(&str) -> bool) -> RecordField {
        RecordField { name, valid }
    }
}
