//! `resolve-digest`: asks the registry which manifest a registry runtime's tag names for its
//! platform (one HEAD, plus a GET of the index when the tag names one; never a pull), or,
//! offline, the last recorded answer. The root of a registry runtime's chain, answered in the
//! resolve phase like `resolve-head`; the digest is the revision its steps key on.

use futures_util::future::BoxFuture;

use crate::error::Error;
use crate::kind::{Attests, Work};
use crate::record::{FIELDS, RecordFields};
use crate::world::RealWorld;
use planner_config::{Runtime, SourceKind};
use planner_core::Kind;
use planner_core::key::{Key, KeyBuilder};
use planner_core::plan::KeyInputs;
use planner_core::plan::{Node, Resolved, StepKind};
use planner_core::store::RecordField;
use planner_registry::ImageRef;

pub struct Step;

/// This kind.
pub const KIND: StepKind = StepKind::new(&Step);

impl Kind for Step {
    fn name(&self) -> &'static str {
        "resolve-digest"
    }

    fn source(&self) -> Option<SourceKind> {
        Some(SourceKind::Registry)
    }

    fn reads(&self, rt: &Runtime) -> Vec<(&'static str, String)> {
        let image = rt.registry_image().map(ImageRef::to_string);
        vec![
            ("image", image.unwrap_or_default()),
            ("platform", rt.platform.clone()),
        ]
    }

    fn key(&self, at: &KeyInputs<'_>) -> Option<Key> {
        let rt = at.node.runtime();
        Some(key(rt.registry_image()?, &rt.platform))
    }

    fn record_fields(&self) -> &'static [RecordField] {
        FIELDS
    }
}

impl Work for Step {
    fn attests(&self) -> Attests {
        Attests::RootAnswer
    }

    fn resolve<'a>(
        &'a self,
        world: &'a RealWorld,
        node: &'a Node,
        key: &'a Key,
        offline: bool,
    ) -> BoxFuture<'a, Result<Resolved, Error>> {
        Box::pin(resolve(world, node, key, offline))
    }
}

/// The key of a tag's resolve: the full reference (registry, repository, tag) and the
/// platform whose manifest is asked for.
pub fn key(image: &ImageRef, platform: &str) -> Key {
    KeyBuilder::new(KIND.name())
        .field("image", &image.to_string())
        .field("platform", platform)
        .finish()
}

/// The digest the previous run recorded for `key`, when the record is for this repository.
fn recorded(world: &RealWorld, key: &Key, rt: &Runtime) -> Option<String> {
    let rec = world.store.read_record(key, KIND)?;
    (rec.repo == rt.repo_identity()).then_some(RecordFields::of(&rec).digest?)
}

async fn resolve(
    world: &RealWorld,
    node: &Node,
    key: &Key,
    offline: bool,
) -> Result<Resolved, Error> {
    let rt = node.runtime();
    let Some(image) = rt.registry_image() else {
        return Err(Error::Internal(format!(
            "resolve-digest of git runtime {}",
            rt.name
        )));
    };
    let previous = recorded(world, key, rt);
    if offline {
        let missing = format!("recorded digest for {image}");
        return crate::kind::answered_offline(&image.to_string(), previous, &missing);
    }
    let found = world.registry.resolve(image, &rt.platform).await?;
    let digest = found.digest;
    // A warm run finds every tag where it was: only the time is new, so no fsync.
    let changed = previous.as_deref() != Some(digest.as_str());
    world
        .record_with(changed, KIND, key, node, |r| {
            r.digest = Some(digest.clone());
        })
        .await?;
    let mut answer = crate::kind::answered("digest", &image.to_string(), digest, previous);
    if let Some(waited) = found.rate_limited {
        answer.reason.push_str(&format!(
            " (rate-limited by the registry: waited {}s)",
            waited.as_secs()
        ));
    }
    Ok(answer)
}
