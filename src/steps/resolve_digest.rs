//! `resolve-digest`: asks the registry which manifest a registry runtime's tag names for its
//! platform (one HEAD, plus a GET of the index when the tag names one; never a pull), or,
//! offline, the last recorded answer. The root of a registry runtime's chain, answered in the
//! resolve phase like `resolve-head`; the digest is the revision its steps key on.

use futures_util::future::BoxFuture;

use super::{Attests, Kind};
use crate::config::{Runtime, SourceKind};
use crate::error::StepError;
use crate::exec::world::RealWorld;
use crate::ids::short;
use crate::key::{Key, KeyBuilder, KeyInputs};
use crate::plan::{Node, Resolved, Status, StepKind};
use crate::registry::ImageRef;

pub struct Step;

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

    fn attests(&self) -> Attests {
        Attests::BranchHead
    }

    fn resolve<'a>(
        &'a self,
        world: &'a RealWorld,
        node: &'a Node,
        key: &'a Key,
        offline: bool,
    ) -> BoxFuture<'a, Result<Resolved, StepError>> {
        Box::pin(resolve(world, node, key, offline))
    }
}

/// The key of a tag's resolve: the full reference (registry, repository, tag) and the
/// platform whose manifest is asked for.
pub fn key(image: &ImageRef, platform: &str) -> Key {
    KeyBuilder::new(StepKind::ResolveDigest)
        .field("image", &image.to_string())
        .field("platform", platform)
        .finish()
}

/// The digest the previous run recorded for `key`, when the record is for this repository.
fn recorded(world: &RealWorld, key: &Key, rt: &Runtime) -> Option<String> {
    let rec = world.store.read_record(key, StepKind::ResolveDigest)?;
    (rec.repo == rt.repo_identity()).then_some(rec.digest?)
}

async fn resolve(
    world: &RealWorld,
    node: &Node,
    key: &Key,
    offline: bool,
) -> Result<Resolved, StepError> {
    let rt = node.runtime();
    let Some(image) = rt.registry_image() else {
        return Err(StepError::Internal(format!(
            "resolve-digest of git runtime {}",
            rt.name
        )));
    };
    let previous = recorded(world, key, rt);
    if offline {
        return offline_answer(image, previous);
    }
    let found = world.registry.resolve(image, &rt.platform).await?;
    let digest = found.digest;
    let mut reason = match &previous {
        Some(p) if *p != digest => format!("new digest {} (was {})", short(&digest), short(p)),
        Some(_) => format!("{image} still at {}", short(&digest)),
        None => format!("{image} is at {}", short(&digest)),
    };
    if let Some(waited) = found.rate_limited {
        reason.push_str(&format!(
            " (rate-limited by the registry: waited {}s)",
            waited.as_secs()
        ));
    }
    // A warm run finds every tag where it was: only the time is new, so no fsync.
    let changed = previous.as_deref() != Some(digest.as_str());
    world
        .record_with(changed, StepKind::ResolveDigest, key, node, |r| {
            r.digest = Some(digest.clone());
        })
        .await?;
    Ok(Resolved {
        revision: digest,
        previous,
        status: Status::Run,
        reason,
    })
}

fn offline_answer(image: &ImageRef, previous: Option<String>) -> Result<Resolved, StepError> {
    match previous {
        Some(d) => Ok(Resolved {
            reason: format!("offline: last recorded {image} is {}", short(&d)),
            revision: d.clone(),
            previous: Some(d),
            status: Status::Skip,
        }),
        None => Err(StepError::Offline(format!(
            "offline and no recorded digest for {image}\n  help: run `planner ensure` (or `planner plan` without --offline) once with network access"
        ))),
    }
}
