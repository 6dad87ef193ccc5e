//! planner-steps: the step kinds, one module each, the registry that lists them, and the
//! real world they run in.
//!
//! A kind says what it is to the core ([`planner_core::Kind`]: its name in plan files, the
//! kind whose output it consumes, the params it accepts, its key, whether it takes a
//! `--jobs` slot, its record fields) and what it does here ([`Work`]: how it resolves,
//! discovers, probes and runs against the real world, [`RealWorld`], and what its record
//! stands for, [`Attests`], for `gc`). The graph, keys, `decide` and the scheduler only ever
//! ask a kind through the core trait; [`KINDS`] is the registry.
//!
//! Adding a kind: a module here implementing both traits, and its line in [`KINDS`] (plus
//! its plan files and docs). Its output type and record fields are its own (`outputs`,
//! `record` hold those the current kinds share).
//!
//! Beside the kinds: [`world`] (the real world and the dispatch to the kinds), [`bases`]
//! (base images as build inputs), [`cache`] (the shared cache), [`labels`] (the image label
//! schema, in one module), [`host`] (what the docker crate asks of git and the registry),
//! [`plans`] (the built-in plans).

pub mod bases;
pub mod build;
pub mod cache;
pub mod clone;
mod error;
pub mod host;
pub mod labels;
pub mod outputs;
pub mod plans;
pub mod pull;
pub mod record;
pub mod resolve_digest;
pub mod resolve_head;
pub mod tag_latest;
pub mod verify_dockerfile;
pub mod world;

#[cfg(test)]
mod key_tests;
#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod scheduler_tests;

use std::sync::LazyLock;

use futures_util::future::BoxFuture;

pub use error::Error;
pub use world::RealWorld;

// The crates the kinds use, named as before the split (`crate::config`, `crate::plan`, ...).
use planner_base::{ids, mask, text};
use planner_config as config;
use planner_core::{Kind, Kinds, StepKind, exec, key, plan, store};
use planner_docker as docker;
use planner_docker::dockerfile;
use planner_git as git;
use planner_registry as registry;

use crate::exec::RunRequest;
use crate::ids::short;
use crate::key::Key;
use crate::plan::{
    DiscoverRequest, Discovery, Found, Node, Output, Probe, ProbeRequest, Resolved, Status,
};

/// The ways the kinds here satisfy a step that runs, as `plan --format json` names them
/// (`via`): for the kinds with more than one way.
pub mod via {
    use planner_core::plan::Via;

    /// The engine builds the image from the checkout.
    pub const BUILD: Via = Via("build");
    /// The image is pulled from the shared cache (`[cache]`) by digest, not built.
    pub const SHARED_CACHE: Via = Via("shared-cache");
    /// The engine already holds the image under another tag: it is only tagged.
    pub const RETAG: Via = Via("retag");
    /// The image is pulled from its registry (registry runtimes).
    pub const PULL: Via = Via("pull");
}

/// The registry: every kind, once, in the order plan errors list them.
static WORK: &[&dyn Work] = &[
    &resolve_head::Step,
    &clone::Step,
    &verify_dockerfile::Step,
    &build::Step,
    &tag_latest::Step,
    &resolve_digest::Step,
    &pull::Step,
];

/// The registry as plan loading and record listing take it.
pub static KINDS: LazyLock<Kinds> =
    LazyLock::new(|| Kinds::new(WORK.iter().map(|w| StepKind::new(*w)).collect()));

/// What a kind does to the real world, beyond what the core knows of it ([`Kind`]).
pub trait Work: Kind {
    /// What a record of this kind stands for, which `gc` checks to tell an orphan record.
    fn attests(&self) -> Attests;

    /// A root kind's answer, in the resolve phase before deciding: where its source is now
    /// (a branch's commit, a tag's manifest digest) or, `offline`, the last recorded answer.
    /// Only root kinds (no [`Kind::input_kinds`]) are asked.
    fn resolve<'a>(
        &'a self,
        _world: &'a RealWorld,
        _node: &'a Node,
        _key: &'a Key,
        _offline: bool,
    ) -> BoxFuture<'a, Result<Resolved, Error>> {
        let name = self.name();
        Box::pin(async move { Err(Error::Internal(format!("{name} is not a root step"))) })
    }

    /// The inputs its key covers beyond the graph: before deciding (from what the world
    /// already holds), and again before running when they were not known then (from its
    /// input's output). Only kinds that [`Kind::discovers`] are asked.
    fn discover<'a>(
        &'a self,
        _world: &'a RealWorld,
        _req: &'a DiscoverRequest<'_>,
    ) -> BoxFuture<'a, Result<Discovery, Error>> {
        Box::pin(async { Ok(Discovery::Known(Found::new(bases::Bases::default()))) })
    }

    /// Whether the step is materialized, asking the engine and the filesystem. Every kind
    /// but a root implements it (a root is answered by [`Work::resolve`], never probed).
    fn probe<'a>(
        &'a self,
        _world: &'a RealWorld,
        _req: &'a ProbeRequest<'_>,
    ) -> BoxFuture<'a, Result<Probe, Error>> {
        Box::pin(async move { Err(root_step(self.name())) })
    }

    /// Does the step's work and commits its record. Every kind but a root implements it.
    fn run<'a>(
        &'a self,
        _world: &'a RealWorld,
        _req: &'a RunRequest<'_>,
    ) -> BoxFuture<'a, Result<Output, Error>> {
        Box::pin(async move { Err(root_step(self.name())) })
    }
}

/// The registry as the core takes it.
pub fn kinds() -> &'static Kinds {
    &KINDS
}

/// The kind a handle names (every handle the graph holds was found in [`KINDS`]).
pub fn work(kind: StepKind) -> &'static dyn Work {
    by_name(kind.name()).expect("every step kind is registered")
}

/// A root's answer from the network: `current`, said against the previous run's answer.
/// `what` names the revision ("commit", "digest"), `at` where it was asked (a branch, a tag).
pub(crate) fn answered(
    what: &str,
    at: &str,
    current: String,
    previous: Option<String>,
) -> Resolved {
    let reason = match &previous {
        Some(p) if *p != current => format!("new {what} {} (was {})", short(&current), short(p)),
        Some(_) => format!("{at} still at {}", short(&current)),
        None => format!("{at} is at {}", short(&current)),
    };
    Resolved {
        revision: current,
        previous,
        status: Status::Run,
        reason,
    }
}

/// A root's answer offline: the previous run's, or the error saying `missing` (what has no
/// record) and how to get one.
pub(crate) fn answered_offline(
    at: &str,
    previous: Option<String>,
    missing: &str,
) -> Result<Resolved, Error> {
    match previous {
        Some(p) => Ok(Resolved {
            reason: format!("offline: last recorded {at} is {}", short(&p)),
            revision: p.clone(),
            previous: Some(p),
            status: Status::Skip,
        }),
        None => Err(Error::Offline(format!(
            "offline and no {missing}\n  help: run `planner ensure` (or `planner plan` without --offline) once with network access"
        ))),
    }
}

/// Pulls `image` at `digest` for `platform` with the user's credentials for its registry,
/// passing the engine's status lines on as the step's output; returns the image the engine
/// then holds under `image@digest`.
pub(crate) async fn pull_by_digest(
    world: &RealWorld,
    req: &RunRequest<'_>,
    image: &crate::registry::ImageRef,
    digest: &str,
    platform: &str,
) -> Result<crate::docker::engine::ImageInfo, Error> {
    let auth = world.registry.engine_auth(image).await?;
    let (sink, step) = (req.sink.clone(), req.step.clone());
    let on_line = move |line: &str| {
        sink(&crate::exec::Event::Output {
            step: step.clone(),
            line: crate::mask::mask(line).into_owned(),
        })
    };
    world
        .engine
        .pull(image, digest, platform, auth.as_deref(), on_line)
        .await?;
    let by_digest = image.with_digest(digest);
    world.engine.inspect(&by_digest).await?.ok_or_else(|| {
        Error::Internal(format!(
            "the engine reported {by_digest} pulled but does not hold it\n  help: run the command again"
        ))
    })
}

/// Removes an image a tag named before a step moved that tag, when planner built it (its
/// labels carry a key) and no tag names it any more: a rebuild of the same commit (a base
/// moved, the builder or key format changed) leaves no untagged image behind. Never forced:
/// an image a container uses stays, and any refusal is left to the user.
pub(crate) async fn drop_superseded(world: &RealWorld, old: &crate::docker::engine::ImageInfo) {
    if !old.labels.contains_key(labels::LABEL_KEY) {
        return;
    }
    let Ok(Some(detail)) = world.engine.inspect_detail(&old.id).await else {
        return;
    };
    if detail.entry.repo_tags.is_empty() {
        let _ = world.engine.remove_reference(&old.id).await;
    }
}

/// The error of a root step asked to be probed or run: a bug (the resolve phase answers it).
fn root_step(name: &str) -> Error {
    Error::Internal(format!(
        "{name} is answered in the resolve phase, never probed or run"
    ))
}

/// What a step's record stands for, in the cache dir or the engine: generic categories a
/// new kind reuses, so that `gc` needs no change for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attests {
    /// A root's answer (where a branch or a registry tag was, a released version): kept; it
    /// saves no work to remove. `gc` attributes a branch's commits to the runtimes of its
    /// record (`branch` field).
    RootAnswer,
    /// A checkout in the cache dir (`commit` field): an orphan once the checkout is gone.
    Checkout,
    /// An image carrying the step's key in its labels: an orphan once no image carries it.
    KeyedImage,
    /// An image the record names by ID (`image_id` field; `:latest`'s, a tested or pushed
    /// image's): an orphan once that image is gone.
    NamedImage,
    /// An image pulled by digest (`digest` and `image_id` fields): an orphan once the engine
    /// no longer holds that image; its digest is ranked for `gc --keep`.
    PulledImage,
}

/// The kind a record names, by its name; `None` for a name no kind has.
pub fn by_name(name: &str) -> Option<&'static dyn Work> {
    WORK.iter().copied().find(|w| w.name() == name)
}
