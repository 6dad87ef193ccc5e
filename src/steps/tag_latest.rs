//! `tag-latest`: moves each runtime's `:latest` to the image just built or pulled (or found). Moving a
//! tag is idempotent and cheap, so once decided it always runs (see the scheduler's re-check).

use futures_util::future::BoxFuture;

use super::{Attests, Kind};
use crate::config::Runtime;
use crate::error::StepError;
use crate::exec::RunRequest;
use crate::exec::world::RealWorld;
use crate::ids::short;
use crate::key::{Key, KeyBuilder, KeyInputs};
use crate::plan::{Output, Probe, ProbeRequest, StepKind};

pub struct Step;

impl Kind for Step {
    fn name(&self) -> &'static str {
        "tag-latest"
    }

    fn input_kinds(&self) -> &'static [StepKind] {
        &[StepKind::Build, StepKind::Pull]
    }

    fn reads(&self, rt: &Runtime) -> Vec<(&'static str, String)> {
        vec![("latest", rt.latest_tag())]
    }

    fn key(&self, at: &KeyInputs<'_>) -> Option<Key> {
        at.revision?;
        Some(key(at.input?, &at.node.runtime().latest_tag()))
    }

    fn probes_input(&self) -> bool {
        true
    }

    fn always_runs(&self) -> bool {
        true
    }

    fn attests(&self) -> Attests {
        Attests::LatestTag
    }

    fn probe<'a>(
        &'a self,
        world: &'a RealWorld,
        req: &'a ProbeRequest<'_>,
    ) -> BoxFuture<'a, Result<Probe, StepError>> {
        Box::pin(probe(world, req))
    }

    fn run<'a>(
        &'a self,
        world: &'a RealWorld,
        req: &'a RunRequest<'_>,
    ) -> BoxFuture<'a, Result<Output, StepError>> {
        Box::pin(run(world, req))
    }
}

/// The key of a tag move: the build's key and the `:latest` tag.
pub fn key(build: &Key, latest_tag: &str) -> Key {
    KeyBuilder::new(StepKind::TagLatest)
        .field("build", build.as_str())
        .field("tag", latest_tag)
        .finish()
}

async fn probe(world: &RealWorld, req: &ProbeRequest<'_>) -> Result<Probe, StepError> {
    let latest = req.node.runtime().latest_tag();
    let Some(Output::Image { id }) = req.input else {
        return Ok(Probe::Missing {
            reason: format!("{latest} follows the image being built or pulled"),
        });
    };
    Ok(match world.engine.inspect(&latest).await? {
        Some(info) if &info.id == id => Probe::Present {
            output: Output::Tagged { id: id.clone() },
            reason: format!("{latest} already names {}", short(id)),
        },
        Some(info) => Probe::Missing {
            reason: format!(
                "{latest} names {}; moving it to {}",
                short(&info.id),
                short(id)
            ),
        },
        None => Probe::Missing {
            reason: format!("{latest} missing"),
        },
    })
}

async fn run(world: &RealWorld, req: &RunRequest<'_>) -> Result<Output, StepError> {
    let Some(Output::Image { id }) = &req.input else {
        return Err(StepError::Internal(
            "tag-latest ran without an image".into(),
        ));
    };
    let latest = req.node.runtime().latest_tag();
    let before = world.engine.inspect(&latest).await?;
    if before.as_ref().is_none_or(|i| &i.id != id) {
        world.engine.tag(id, &latest).await?;
    }
    if let Some(old) = before.filter(|i| &i.id != id) {
        super::drop_superseded(world, &old).await;
    }
    world
        .record(StepKind::TagLatest, req.key, req.node, |r| {
            r.set_revision(req.revision);
            r.image_id = Some(id.clone());
        })
        .await?;
    Ok(Output::Tagged { id: id.clone() })
}
