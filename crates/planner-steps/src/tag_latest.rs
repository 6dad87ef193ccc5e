//! `tag-latest`: moves each runtime's `:latest` to the image just built or pulled (or found). Moving a
//! tag is idempotent and cheap, so once decided it always runs (see the scheduler's re-check).

use futures_util::future::BoxFuture;

use crate::error::Error;
use crate::kind::{Attests, Work};
use crate::outputs::{Image, Tagged};
use crate::record::FIELDS;
use crate::world::RealWorld;
use planner_base::ids::short;
use planner_config::Runtime;
use planner_core::Kind;
use planner_core::exec::RunRequest;
use planner_core::key::{Key, KeyBuilder};
use planner_core::plan::KeyInputs;
use planner_core::plan::{Output, Probe, ProbeRequest, StepKind};
use planner_core::store::RecordField;

pub struct Step;

/// This kind.
pub const KIND: StepKind = StepKind::new(&Step);

impl Kind for Step {
    fn name(&self) -> &'static str {
        "tag-latest"
    }

    fn input_kinds(&self) -> &'static [StepKind] {
        const INPUTS: &[StepKind] = &[super::build::KIND, super::pull::KIND];
        INPUTS
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

    fn record_fields(&self) -> &'static [RecordField] {
        FIELDS
    }
}

impl Work for Step {
    fn attests(&self) -> Attests {
        Attests::NamedImage
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

/// The key of a tag move: the build's key and the `:latest` tag.
pub fn key(build: &Key, latest_tag: &str) -> Key {
    KeyBuilder::new(KIND.name())
        .field("build", build.as_str())
        .field("tag", latest_tag)
        .finish()
}

async fn probe(world: &RealWorld, req: &ProbeRequest<'_>) -> Result<Probe, Error> {
    let latest = req.node.runtime().latest_tag();
    let Some(Image { id }) = req.input.and_then(|o| o.get::<Image>()) else {
        return Ok(Probe::Missing {
            reason: format!("{latest} follows the image being built or pulled"),
        });
    };
    Ok(match world.engine.inspect(&latest).await? {
        Some(info) if &info.id == id => Probe::Present {
            output: Output::new(Tagged { id: id.clone() }),
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

async fn run(world: &RealWorld, req: &RunRequest<'_>) -> Result<Output, Error> {
    let Some(Image { id }) = req.input.as_ref().and_then(|o| o.get::<Image>()) else {
        return Err(Error::Internal("tag-latest ran without an image".into()));
    };
    let latest = req.node.runtime().latest_tag();
    let before = world.engine.inspect(&latest).await?;
    if before.as_ref().is_none_or(|i| &i.id != id) {
        world.engine.tag(id, &latest).await?;
    }
    if let Some(old) = before.filter(|i| &i.id != id) {
        let new = world.engine.inspect(id).await?;
        let new_key = new
            .as_ref()
            .and_then(|i| i.labels.get(crate::labels::LABEL_KEY));
        crate::kind::drop_superseded(world, &old, new_key.map(String::as_str)).await;
    }
    world
        .record(KIND, req.key, req.node, |r| {
            r.set_revision(req.revision);
            r.image_id = Some(id.clone());
        })
        .await?;
    Ok(Output::new(Tagged { id: id.clone() }))
}
