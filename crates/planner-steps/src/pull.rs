//! `pull`: the registry runtime's image at the digest its `resolve-digest` answered, pulled
//! through the engine (with the user's registry credentials) and tagged with each runtime's
//! pinned `{image_prefix}{runtime}:{12 hex of the digest}` and the registry reference itself.
//! Materialized when the engine holds an image whose `RepoDigests` has that digest.

use futures_util::future::BoxFuture;

use crate::error::Error;
use crate::kind::via;
use crate::kind::{Attests, Work};
use crate::outputs::Image;
use crate::record::FIELDS;
use crate::world::RealWorld;
use planner_base::ids::short;
use planner_config::Runtime;
use planner_core::Kind;
use planner_core::exec::RunRequest;
use planner_core::key::{Key, KeyBuilder};
use planner_core::plan::KeyInputs;
use planner_core::plan::{Output, Probe, ProbeRequest, StepKind, Via};
use planner_core::store::RecordField;
use planner_registry::ImageRef;

pub struct Step;

/// This kind.
pub const KIND: StepKind = StepKind::new(&Step);

impl Kind for Step {
    fn name(&self) -> &'static str {
        "pull"
    }

    fn runs_via(&self) -> Option<Via> {
        Some(via::PULL)
    }

    fn input_kinds(&self) -> &'static [StepKind] {
        const INPUTS: &[StepKind] = &[super::resolve_digest::KIND];
        INPUTS
    }

    fn heavy(&self) -> bool {
        true
    }

    fn reads(&self, rt: &Runtime) -> Vec<(&'static str, String)> {
        vec![("pinned", rt.image_repo())]
    }

    fn key(&self, at: &KeyInputs<'_>) -> Option<Key> {
        let image = at.node.runtime().registry_image()?;
        Some(key(image, at.revision?))
    }

    fn record_fields(&self) -> &'static [RecordField] {
        FIELDS
    }
}

impl Work for Step {
    fn attests(&self) -> Attests {
        Attests::PulledImage
    }

    fn probe<'a>(
        &'a self,
        world: &'a RealWorld,
        req: &'a ProbeRequest<'_>,
    ) -> BoxFuture<'a, Result<Probe, Error>> {
        Box::pin(probe(world, req))
    }

    fn run<'a>(
        &'a self,
        world: &'a RealWorld,
        req: &'a RunRequest<'_>,
    ) -> BoxFuture<'a, Result<Output, Error>> {
        Box::pin(run(world, req))
    }
}

/// The key of a pull: the image repository and the manifest digest.
pub fn key(image: &ImageRef, digest: &str) -> Key {
    KeyBuilder::new(KIND.name())
        .field(
            "repository",
            &format!("{}/{}", image.registry, image.repository),
        )
        .field("digest", digest)
        .finish()
}

fn image_of(rt: &Runtime) -> Result<&ImageRef, Error> {
    rt.registry_image()
        .ok_or_else(|| Error::Internal(format!("pull of git runtime {}", rt.name)))
}

async fn probe(world: &RealWorld, req: &ProbeRequest<'_>) -> Result<Probe, Error> {
    let image = image_of(req.node.runtime())?;
    let by_digest = image.with_digest(req.revision);
    let Some(info) = world.engine.inspect(&by_digest).await? else {
        let reason = match req.previous_revision {
            Some(p) if p != req.revision => format!(
                "{image} moved to {} (was {}); pulling it",
                short(req.revision),
                short(p)
            ),
            _ => format!("{} not in the engine", short_ref(image, req.revision)),
        };
        return Ok(Probe::Missing { reason });
    };
    let mut untagged = Vec::new();
    for tag in tags(
        req.node.runtimes.iter().map(AsRef::as_ref),
        image,
        req.revision,
    ) {
        if world
            .engine
            .inspect(&tag)
            .await?
            .is_none_or(|i| i.id != info.id)
        {
            untagged.push(tag);
        }
    }
    let shown = short_ref(image, req.revision);
    Ok(if untagged.is_empty() {
        Probe::Present {
            output: Output::new(Image { id: info.id }),
            reason: format!("{shown} present"),
        }
    } else {
        Probe::Retag {
            reason: format!("{shown} present; only tagging {}", untagged.join(", ")),
            via: via::RETAG,
        }
    })
}

/// `registry/repository@sha256:123456789abc` for messages.
fn short_ref(image: &ImageRef, digest: &str) -> String {
    format!(
        "{}/{}@sha256:{}",
        image.registry,
        image.repository,
        short(digest)
    )
}

/// The local names of the pulled image: each runtime's pinned tag, and the registry
/// reference itself (`registry/repository:tag`).
fn tags<'a>(
    runtimes: impl Iterator<Item = &'a Runtime>,
    image: &ImageRef,
    digest: &str,
) -> Vec<String> {
    let mut out: Vec<String> = runtimes.map(|rt| rt.pinned_tag(digest)).collect();
    out.push(image.to_string());
    out
}

async fn run(world: &RealWorld, req: &RunRequest<'_>) -> Result<Output, Error> {
    let rt = req.node.runtime();
    let image = image_of(rt)?;
    let by_digest = image.with_digest(req.revision);
    let id = match world.engine.inspect(&by_digest).await? {
        Some(info) => info.id,
        None => pull(world, req, image).await?,
    };
    for tag in tags(
        req.node.runtimes.iter().map(AsRef::as_ref),
        image,
        req.revision,
    ) {
        if world.engine.inspect(&tag).await?.is_none_or(|i| i.id != id) {
            world.engine.tag(&id, &tag).await?;
        }
    }
    world
        .record(KIND, req.key, req.node, |r| {
            r.digest = Some(req.revision.to_owned());
            r.image_id = Some(id.clone());
        })
        .await?;
    Ok(Output::new(Image { id }))
}

/// Pulls `image` at the revision's digest with the user's credentials for its registry;
/// returns the image ID the engine then holds for it.
async fn pull(world: &RealWorld, req: &RunRequest<'_>, image: &ImageRef) -> Result<String, Error> {
    let platform = &req.node.runtime().platform;
    let info = crate::kind::pull_by_digest(world, req, image, req.revision, platform).await?;
    Ok(info.id)
}
