//! Toy step kinds for the core's unit tests: the core knows no real kind, so its tests
//! bring their own. `clone` and `build` stand in for the real ones where a test needs a
//! kind's name and record fields (the record vocabulary of `planner-steps`); `src`, `ver`,
//! `make` and `check` are a toy registry whose steps need several roots and are keyed on
//! their input's output (see `exec::tests`).

use planner_base::ids;
use planner_config::SourceKind;

use crate::key::{Key, KeyBuilder};
use crate::kind::KeyInputs;
use crate::kind::RecordField;
use crate::kind::{Kind, Kinds, StepKind};
use crate::output::OutputData;

/// The record fields of the real kinds, with their checks.
pub const FIELDS: &[RecordField] = &[
    RecordField::new("commit", ids::is_commit),
    RecordField::new("digest", ids::is_manifest_digest),
    RecordField::new("dockerfile_blake3", ids::is_blake3_hex),
    RecordField::new("image_id", ids::is_image_id),
    RecordField::new("checkout_id", ids::is_blake3_hex),
];

/// A kind with a name and the record fields of the real kinds, keyed on nothing.
pub struct Named(pub &'static str);

impl Kind for Named {
    fn name(&self) -> &'static str {
        self.0
    }

    fn key(&self, _: &KeyInputs<'_>) -> Option<Key> {
        None
    }

    fn record_fields(&self) -> &'static [RecordField] {
        FIELDS
    }
}

pub const CLONE: StepKind = StepKind::new(&Named("clone"));
pub const BUILD: StepKind = StepKind::new(&Named("build"));

/// The key the real `clone` kind gives a checkout (same encoding).
pub fn clone_key(repo: &str, commit: &str) -> Key {
    KeyBuilder::new(CLONE.name())
        .field("repo", repo)
        .field("commit", commit)
        .finish()
}

/// A registry of the stand-ins.
pub fn named() -> Kinds {
    Kinds::new(vec![CLONE, BUILD])
}

/// `src`: a root answering where a source is (the toy world says).
pub struct Src;

impl Kind for Src {
    fn name(&self) -> &'static str {
        "src"
    }

    fn source(&self) -> Option<SourceKind> {
        Some(SourceKind::Git)
    }

    fn reads(&self, rt: &planner_config::Runtime) -> Vec<(&'static str, String)> {
        vec![("repo", rt.repo_identity())]
    }

    fn key(&self, at: &KeyInputs<'_>) -> Option<Key> {
        Some(
            KeyBuilder::new(SRC.name())
                .field("repo", &at.node.runtime().repo_identity())
                .finish(),
        )
    }
}

/// `ver`: a second root, answering a released version (like `resolve-version`).
pub struct Ver;

impl Kind for Ver {
    fn name(&self) -> &'static str {
        "ver"
    }

    fn params(&self) -> &'static [&'static str] {
        &["package"]
    }

    fn key(&self, at: &KeyInputs<'_>) -> Option<Key> {
        let package = at.node.params.get("package")?;
        Some(
            KeyBuilder::new(VER.name())
                .field("package", package)
                .finish(),
        )
    }
}

/// `make`: consumes `src`'s revision and needs `ver`: its key covers every root's answer.
pub struct Make;

impl Kind for Make {
    fn name(&self) -> &'static str {
        "make"
    }

    fn input_kinds(&self) -> &'static [StepKind] {
        const INPUTS: &[StepKind] = &[SRC];
        INPUTS
    }

    fn heavy(&self) -> bool {
        true
    }

    fn key(&self, at: &KeyInputs<'_>) -> Option<Key> {
        let mut b = KeyBuilder::new(MAKE.name());
        b.field("revision", at.revision?);
        for answer in &at.answers {
            b.field(answer.node.kind.name(), answer.revision);
        }
        Some(b.finish())
    }
}

/// `check`: consumes `make`'s output and is keyed on it (the image it made, like `smoke`).
pub struct Check;

impl Kind for Check {
    fn name(&self) -> &'static str {
        "check"
    }

    fn input_kinds(&self) -> &'static [StepKind] {
        const INPUTS: &[StepKind] = &[MAKE];
        INPUTS
    }

    fn probes_input(&self) -> bool {
        true
    }

    fn key(&self, at: &KeyInputs<'_>) -> Option<Key> {
        let made = at.input_output?.get::<Made>()?;
        Some(
            KeyBuilder::new(CHECK.name())
                .field("made", &made.id)
                .finish(),
        )
    }

    fn record_fields(&self) -> &'static [RecordField] {
        const FIELDS: &[RecordField] = &[RecordField::new("made", |v| v.starts_with("img-"))];
        FIELDS
    }
}

pub const SRC: StepKind = StepKind::new(&Src);
pub const VER: StepKind = StepKind::new(&Ver);
pub const MAKE: StepKind = StepKind::new(&Make);
pub const CHECK: StepKind = StepKind::new(&Check);

/// The toy registry.
pub fn toy() -> Kinds {
    Kinds::new(vec![SRC, VER, MAKE, CHECK])
}

/// What `make` outputs: its own type, opaque to the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    pub id: String,
}

impl OutputData for Made {
    fn describe(&self) -> String {
        format!("made {}", self.id)
    }
}

/// What `check` outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked;

impl OutputData for Checked {
    fn describe(&self) -> String {
        "checked".into()
    }
}
