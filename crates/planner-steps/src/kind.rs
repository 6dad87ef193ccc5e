//! What a kind does here, beyond what the core knows of it: the [`Work`] trait (resolve,
//! discover, probe and run against the real world, and what its record stands for,
//! [`Attests`], for `gc`), the names of the kinds' ways to satisfy a step ([`via`]), and the
//! helpers the kinds share (a root's answer, a pull by digest, dropping a superseded image).
//! The kinds import this module; the registry in the crate root imports the kinds.

use futures_util::future::BoxFuture;

use planner_base::ids::short;
use planner_core::Kind;
use planner_core::exec::RunRequest;
use planner_core::key::Key;
use planner_core::plan::{
    DiscoverRequest, Discovery, Found, Node, Output, Probe, ProbeRequest, Resolved, Status,
};
use planner_docker as docker;

use crate::error::Error;
use crate::world::RealWorld;

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
        Box::pin(async { Ok(Discovery::Known(Found::new(crate::bases::Bases::default()))) })
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
    image: &planner_registry::ImageRef,
    digest: &str,
    platform: &str,
) -> Result<docker::engine::ImageInfo, Error> {
    let auth = world.registry.engine_auth(image).await?;
    let (sink, step) = (req.sink.clone(), req.step.clone());
    let on_line = move |line: &str| {
        sink(&planner_core::exec::Event::Output {
            step: step.clone(),
            line: planner_base::mask::mask(line).into_owned(),
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

/// Removes an image a tag named before a step moved that tag to an image of `new_key`, when
/// planner built it under another key (its labels carry one) and no tag names it any more: a
/// rebuild of the same commit (a base moved, the builder or key format changed) leaves no
/// untagged image behind. An image of the same key is another process's build of this very
/// key (two cache dirs, whose key locks do not meet, on one engine): that process may still be
/// tagging it, so it stays (gc's to collect). Never forced: an image a container uses stays,
/// and any refusal is left to the user.
pub(crate) async fn drop_superseded(
    world: &RealWorld,
    old: &docker::engine::ImageInfo,
    new_key: Option<&str>,
) {
    let Some(old_key) = old.labels.get(crate::labels::LABEL_KEY) else {
        return;
    };
    if new_key == Some(old_key.as_str()) {
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
