//! The step kinds, one module each, and the registry that names them.
//!
//! A kind says everything about itself in one place ([`Kind`]): its name in plan files, the
//! kind whose output it consumes, the params it accepts, its key inputs, whether it takes a
//! `--jobs` slot, how it probes and runs against the real world ([`RealWorld`]), and what its
//! record stands for ([`Attests`], for `gc`). The graph, keys, `decide`, the scheduler and
//! `gc` only ever ask a kind through this trait; [`of`] is the registry.
//!
//! Adding a kind: a module here implementing [`Kind`], a variant of [`StepKind`] and its
//! line in [`of`].

pub mod build;
pub mod clone;
pub mod pull;
pub mod resolve_digest;
pub mod resolve_head;
pub mod tag_latest;
pub mod verify_dockerfile;

use futures_util::future::BoxFuture;

use crate::config::{Runtime, SourceKind};
use crate::error::StepError;
use crate::exec::RunRequest;
use crate::exec::world::RealWorld;
use crate::ids::short;
use crate::key::{Key, KeyInputs};
use crate::plan::{
    DiscoverRequest, Discovery, Node, Output, Probe, ProbeRequest, Resolved, Status, StepKind, Via,
};

/// One step kind: what it is, and what it does to the real world.
pub trait Kind: Sync {
    /// The name used in plan files, output and records.
    fn name(&self) -> &'static str;

    /// The kinds whose output this kind consumes (a step has exactly one such need); empty
    /// for a root kind, which is answered in the resolve phase ([`Kind::resolve`]).
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
    /// even when the input itself is not needed).
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

    /// How a step of this kind that runs is satisfied when nothing is found (a build builds,
    /// a pull pulls); `None` for kinds with one way only.
    fn runs_via(&self) -> Option<Via> {
        None
    }

    /// Whether its key covers inputs found in the world once its root has answered (a
    /// build's base images), which [`Kind::discover`] finds.
    fn discovers(&self) -> bool {
        false
    }

    /// The inputs its key covers beyond the graph: before deciding (from what the world
    /// already holds), and again before running when they were not known then (from its
    /// input's output). Only kinds that [`Kind::discovers`] are asked.
    fn discover<'a>(
        &'a self,
        _world: &'a RealWorld,
        _req: &'a DiscoverRequest<'_>,
    ) -> BoxFuture<'a, Result<Discovery, StepError>> {
        Box::pin(async { Ok(Discovery::Known(Default::default())) })
    }

    /// The step's content address from its inputs ([`crate::key`] encodes, with the kind's
    /// name first); `None` while they are not known (no commit yet).
    fn key(&self, at: &KeyInputs<'_>) -> Option<Key>;

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
    ) -> BoxFuture<'a, Result<Resolved, StepError>> {
        let name = self.name();
        Box::pin(async move { Err(StepError::Internal(format!("{name} is not a root step"))) })
    }

    /// Whether the step is materialized, asking the engine and the filesystem. Every kind
    /// but a root implements it (a root is answered by [`Kind::resolve`], never probed).
    fn probe<'a>(
        &'a self,
        _world: &'a RealWorld,
        _req: &'a ProbeRequest<'_>,
    ) -> BoxFuture<'a, Result<Probe, StepError>> {
        Box::pin(async move { Err(root_step(self.name())) })
    }

    /// Does the step's work and commits its record. Every kind but a root implements it.
    fn run<'a>(
        &'a self,
        _world: &'a RealWorld,
        _req: &'a RunRequest<'_>,
    ) -> BoxFuture<'a, Result<Output, StepError>> {
        Box::pin(async move { Err(root_step(self.name())) })
    }
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
) -> Result<Resolved, StepError> {
    match previous {
        Some(p) => Ok(Resolved {
            reason: format!("offline: last recorded {at} is {}", short(&p)),
            revision: p.clone(),
            previous: Some(p),
            status: Status::Skip,
        }),
        None => Err(StepError::Offline(format!(
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
) -> Result<crate::docker::engine::ImageInfo, StepError> {
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
        StepError::Internal(format!(
            "the engine reported {by_digest} pulled but does not hold it\n  help: run the command again"
        ))
    })
}

/// Removes an image a tag named before a step moved that tag, when planner built it (its
/// labels carry a key) and no tag names it any more: a rebuild of the same commit (a base
/// moved, the builder or key format changed) leaves no untagged image behind. Never forced:
/// an image a container uses stays, and any refusal is left to the user.
pub(crate) async fn drop_superseded(world: &RealWorld, old: &crate::docker::engine::ImageInfo) {
    if !old.labels.contains_key(crate::docker::engine::LABEL_KEY) {
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
fn root_step(name: &str) -> StepError {
    StepError::Internal(format!(
        "{name} is answered in the resolve phase, never probed or run"
    ))
}

/// What a step's record stands for, in the cache dir or the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attests {
    /// Where a branch or a registry tag was: kept; it saves no work to remove.
    BranchHead,
    /// A checkout in the cache dir: an orphan once the checkout is gone.
    Checkout,
    /// An image carrying the step's key: an orphan once no image carries it.
    Image,
    /// The image a `:latest` tag names: an orphan once that image is gone.
    LatestTag,
    /// An image pulled by digest (the record carries the digest and the image ID): an
    /// orphan once the engine no longer holds that image.
    PulledImage,
}

/// The kind a record names, by its name; `None` for a name no kind has.
pub fn by_name(name: &str) -> Option<&'static dyn Kind> {
    StepKind::from_name(name).map(of)
}

/// The registry: the module implementing each kind.
pub fn of(kind: StepKind) -> &'static dyn Kind {
    match kind {
        StepKind::ResolveHead => &resolve_head::Step,
        StepKind::Clone => &clone::Step,
        StepKind::VerifyDockerfile => &verify_dockerfile::Step,
        StepKind::Build => &build::Step,
        StepKind::TagLatest => &tag_latest::Step,
        StepKind::ResolveDigest => &resolve_digest::Step,
        StepKind::Pull => &pull::Step,
    }
}
