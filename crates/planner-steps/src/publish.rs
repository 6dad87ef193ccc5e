//! `publish`: pushes the image a build made to the registry that registry mode reads
//! (`[publish] registry`): first `{registry}/{registry_image}{runtime}:{sha12}`, then
//! `{registry_tag}` (default `latest`), the tag a registry-mode consumer resolves, both
//! through the engine with the user's credentials for that registry (`X-Registry-Auth` as
//! the docker CLI sends it). Keyed on the image ID and the destination; its record holds the
//! digest the registry stored, and it is materialized when one HEAD of the tag shows that
//! digest (a warm run pushes nothing). A rebuild of the same commit (a moved base) is a new
//! image, so a new key: `{sha12}` and the tag follow it, as the local tags do.

use futures_util::future::BoxFuture;

use crate::error::Error;
use crate::kind::{Attests, Work};
use crate::outputs::Image;
use crate::record::{FIELDS, RecordFields};
use crate::world::RealWorld;
use planner_base::ids::short;
use planner_config::Runtime;
use planner_core::Kind;
use planner_core::exec::RunRequest;
use planner_core::key::{Key, KeyBuilder};
use planner_core::output::OutputData;
use planner_core::plan::KeyInputs;
use planner_core::plan::{Output, Probe, ProbeRequest, StepKind};
use planner_core::store::RecordField;
use planner_registry::{ImageRef, RegistryError};

pub struct Step;

/// This kind.
pub const KIND: StepKind = StepKind::new(&Step);

/// `publish`'s output: the image pushed and where the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The image ID pushed.
    pub id: String,
    /// The digest the registry stored under the tag (the immutable reference).
    pub digest: String,
    /// `{registry}/{repository}@{digest}`.
    pub reference: String,
}

impl OutputData for Published {
    fn describe(&self) -> String {
        format!("pushed {}", self.reference)
    }
}

impl Kind for Step {
    fn name(&self) -> &'static str {
        "publish"
    }

    fn input_kinds(&self) -> &'static [StepKind] {
        const INPUTS: &[StepKind] = &[super::build::KIND];
        INPUTS
    }

    fn heavy(&self) -> bool {
        true
    }

    fn reads(&self, rt: &Runtime) -> Vec<(&'static str, String)> {
        let dest = rt.publish.as_ref().map(ImageRef::to_string);
        vec![("publish", dest.unwrap_or_default())]
    }

    fn probes_input(&self) -> bool {
        true
    }

    fn key(&self, at: &KeyInputs<'_>) -> Option<Key> {
        let Image { id } = at.input_output?.get::<Image>()?;
        Some(key(id, at.node.runtime().publish.as_ref(), at.revision?))
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

/// The key of a publish: the image ID, the repository it goes to, the commit tag and the
/// moving tag. Without a destination (no `[publish]`) the step refuses to probe or run.
pub fn key(image_id: &str, dest: Option<&ImageRef>, commit: &str) -> Key {
    let (repository, tag) = dest.map_or((String::new(), ""), |d| {
        (format!("{}/{}", d.registry, d.repository), d.tag.as_str())
    });
    KeyBuilder::new(KIND.name())
        .field("image", image_id)
        .field("repository", &repository)
        .field("pinned", short(commit))
        .field("tag", tag)
        .finish()
}

/// The runtime's destination, or the refusal saying how to configure one.
fn destination(rt: &Runtime) -> Result<&ImageRef, Error> {
    rt.publish.as_ref().ok_or_else(|| {
        Error::Failed(format!(
            "runtime {}: plan {:?} publishes, but runtimes.toml has no [publish] registry\n  help: add [publish] registry = \"host[:port]/path\" to runtimes.toml, or run a plan without a publish step",
            rt.name, rt.plan
        ))
    })
}

/// `dest` with the commit's tag instead of the moving one.
fn pinned(dest: &ImageRef, commit: &str) -> ImageRef {
    ImageRef {
        tag: short(commit).to_owned(),
        ..dest.clone()
    }
}

async fn probe(world: &RealWorld, req: &ProbeRequest<'_>) -> Result<Probe, Error> {
    let rt = req.node.runtime();
    let dest = destination(rt)?;
    let Some(Image { id }) = req.input.and_then(|o| o.get::<Image>()) else {
        return Ok(Probe::Missing {
            reason: format!("{dest} follows the image being built"),
        });
    };
    let recorded = world
        .store
        .read_record(req.key, KIND)
        .and_then(|r| RecordFields::of(&r).digest);
    let Some(pushed) = recorded else {
        return Ok(Probe::Missing {
            reason: format!(
                "image {} not published to {} yet",
                short(id),
                pinned(dest, req.revision)
            ),
        });
    };
    let found = match world.registry.resolve(dest, &rt.platform).await {
        Ok(r) => r.index_digest.unwrap_or(r.digest),
        Err(RegistryError::NotFound { .. }) => {
            return Ok(Probe::Missing {
                reason: format!("{dest} not in the registry; publishing {}", short(id)),
            });
        }
        Err(e) => return Err(failed("cannot read", dest, &e.to_string())),
    };
    Ok(if found == pushed {
        Probe::Present {
            reason: format!("{dest} already at {}", short(&pushed)),
            output: Output::new(published(id, dest, pushed)),
        }
    } else {
        Probe::Missing {
            reason: format!(
                "{dest} names {} (published {}); moving it back",
                short(&found),
                short(&pushed)
            ),
        }
    })
}

fn published(id: &str, dest: &ImageRef, digest: String) -> Published {
    Published {
        id: id.to_owned(),
        reference: dest.with_digest(&digest),
        digest,
    }
}

/// A failure on `dest`, its text naming the destination and the fix (credentials are
/// masked where everything is printed).
fn failed(what: &str, dest: &ImageRef, error: &str) -> Error {
    let host = &dest.registry;
    let help = if error.contains("help:") {
        String::new()
    } else {
        format!(
            "\n  help: log in to {host} (`docker login {host}`) with an account that may push to {}, and check [publish] registry in runtimes.toml",
            dest.repository
        )
    };
    Error::Failed(format!("{what} {dest}: {error}{help}"))
}

async fn run(world: &RealWorld, req: &RunRequest<'_>) -> Result<Output, Error> {
    let rt = req.node.runtime();
    let dest = destination(rt)?;
    let Some(Image { id }) = req.input.as_ref().and_then(|o| o.get::<Image>()) else {
        return Err(Error::Internal("publish ran without an image".into()));
    };
    let commit_tag = pinned(dest, req.revision);
    let digest = push(world, &commit_tag, id).await?;
    let moved = push(world, dest, id).await?;
    if moved != digest {
        return Err(Error::Failed(format!(
            "the registry stored {commit_tag} at {digest} but {dest} at {moved}\n  help: run the command again; if it persists, check that nothing else pushes to {dest}"
        )));
    }
    world
        .record(KIND, req.key, req.node, |r| {
            r.set_revision(req.revision);
            r.image_id = Some(id.clone());
            r.digest = Some(digest.clone());
        })
        .await?;
    Ok(Output::new(published(id, dest, digest)))
}

/// Pushes the image `id` as `image` with the user's credentials for its registry (the
/// local tags name the image; the pushed name is not kept); returns the digest stored.
async fn push(world: &RealWorld, image: &ImageRef, id: &str) -> Result<String, Error> {
    let pushed = async {
        let auth = world.registry.engine_auth(image).await?;
        Ok::<_, Error>(world.engine.push_as(id, image, auth.as_deref()).await?)
    }
    .await;
    pushed.map_err(|e| failed("cannot publish to", image, &e.to_string()))
}
