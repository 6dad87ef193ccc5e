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
}

impl StepKind {
    pub const ALL: [StepKind; 5] = [
        StepKind::ResolveHead,
        StepKind::Clone,
        StepKind::VerifyDockerfile,
        StepKind::Build,
        StepKind::TagLatest,
    ];

    /// The name used in plan files and output.
    pub fn name(self) -> &'static str {
        crate::steps::of(self).name()
    }

    pub fn from_name(name: &str) -> Option<StepKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kind whose output this kind consumes (exactly one such need), if any.
    pub fn input_kind(self) -> Option<StepKind> {
        crate::steps::of(self).input_kind()
    }

    /// Parameters a step of this kind accepts in its `params` table.
    pub fn params(self) -> &'static [&'static str] {
        crate::steps::of(self).params()
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
