//! The built-in step kinds, their names in plan files, and what each needs and accepts.

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
        match self {
            StepKind::ResolveHead => "resolve-head",
            StepKind::Clone => "clone",
            StepKind::VerifyDockerfile => "verify-dockerfile",
            StepKind::Build => "build",
            StepKind::TagLatest => "tag-latest",
        }
    }

    pub fn from_name(name: &str) -> Option<StepKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kind whose output this kind consumes (exactly one such need), if any.
    pub fn input_kind(self) -> Option<StepKind> {
        match self {
            StepKind::ResolveHead => None,
            StepKind::Clone => Some(StepKind::ResolveHead),
            StepKind::VerifyDockerfile => Some(StepKind::Clone),
            StepKind::Build => Some(StepKind::VerifyDockerfile),
            StepKind::TagLatest => Some(StepKind::Build),
        }
    }

    /// Parameters a step of this kind accepts in its `params` table.
    pub fn params(self) -> &'static [&'static str] {
        match self {
            StepKind::Build => &["target"],
            _ => &[],
        }
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
