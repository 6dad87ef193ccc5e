//! The built-in plans (`plans/*.toml` at the repository root, embedded in the binary) and
//! loading them with `--plans DIR` overrides, their kinds found in [`crate::KINDS`].

use std::path::Path;

use planner_core::plan::load::{self, Plan, PlanError, PlanSet};

/// Plans shipped in `plans/`, embedded in the binary.
pub const BUILTIN_PLANS: &[(&str, &str)] = &[
    (
        "local-build",
        include_str!("../../../plans/local-build.toml"),
    ),
    ("build-only", include_str!("../../../plans/build-only.toml")),
    (
        "build-and-publish",
        include_str!("../../../plans/build-and-publish.toml"),
    ),
    (
        "registry-pull",
        include_str!("../../../plans/registry-pull.toml"),
    ),
];

/// The built-in plans, then every `*.toml` of `dir` (adding or overriding by file stem).
pub fn load(dir: Option<&Path>) -> Result<PlanSet, PlanError> {
    PlanSet::load(BUILTIN_PLANS, dir, crate::kinds())
}

/// Parses and validates one plan file against the registered kinds.
pub fn parse_plan(name: &str, file: &str, text: &str) -> Result<Plan, PlanError> {
    load::parse_plan(name, file, text, crate::kinds())
}
