//! The names of the built-in step kinds. What each kind is and does lives in its module
//! under [`crate::steps`]; these methods ask it.

use std::fmt;

/// A built-in step kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    ResolveHead,
    Clone,
    VerifyDockerfile,
    Build,
    TagLatest,
    ResolveDigest,
    Pull,
}

impl StepKind {
    pub const ALL: [StepKind; 7] = [
        StepKind::ResolveHead,
        StepKind::Clone,
        StepKind::VerifyDockerfile,
        StepKind::Build,
        StepKind::TagLatest,
        StepKind::ResolveDigest,
        StepKind::Pull,
    ];

    /// The name used in plan files and output.
    pub fn name(self) -> &'static str {
        crate::steps::of(self).name()
    }

    pub fn from_name(name: &str) -> Option<StepKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kinds whose output this kind consumes (exactly one such need); empty for roots.
    pub fn input_kinds(self) -> &'static [StepKind] {
        crate::steps::of(self).input_kinds()
    }

    /// Parameters a step of this kind accepts in its `params` table.
    pub fn params(self) -> &'static [&'static str] {
        crate::steps::of(self).params()
    }

    /// A root kind consumes no other kind's output: it is answered in the resolve phase
    /// (`exec::Effects::resolve`), before deciding, and everything else descends from it.
    pub fn is_root(self) -> bool {
        self.input_kinds().is_empty()
    }

    /// Whether its probe judges its input's output ([`crate::steps::Kind::probes_input`]).
    pub fn probes_input(self) -> bool {
        crate::steps::of(self).probes_input()
    }

    /// Whether it runs once decided, even if found present ([`crate::steps::Kind::always_runs`]).
    pub fn always_runs(self) -> bool {
        crate::steps::of(self).always_runs()
    }

    /// Whether running a step of this kind takes one of the `--jobs` slots.
    pub fn heavy(self) -> bool {
        crate::steps::of(self).heavy()
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
