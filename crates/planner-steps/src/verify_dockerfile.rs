//! `verify-dockerfile`: the Dockerfile is a regular file inside the checkout, within the cap;
//! its blake3 digest is recorded with the checkout id it was taken in.

use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;

use crate::error::Error;
use crate::kind::{Attests, Work};
use crate::outputs::{Checkout, Verified};
use crate::record::{FIELDS, RecordFields};
use crate::world::RealWorld;
use planner_base::ids::short;
use planner_config::Runtime;
use planner_core::Kind;
use planner_core::exec::RunRequest;
use planner_core::key::{Key, KeyBuilder};
use planner_core::plan::KeyInputs;
use planner_core::plan::{Output, Probe, ProbeRequest, StepKind};
use planner_core::store::{self, CheckoutState, RecordField};

/// Largest Dockerfile planner accepts (the Dockerfile parser's bound too).
pub use planner_docker::dockerfile::DOCKERFILE_CAP;

pub struct Step;

/// This kind.
pub const KIND: StepKind = StepKind::new(&Step);

impl Kind for Step {
    fn name(&self) -> &'static str {
        "verify-dockerfile"
    }

    fn input_kinds(&self) -> &'static [StepKind] {
        const INPUTS: &[StepKind] = &[super::clone::KIND];
        INPUTS
    }

    fn reads(&self, rt: &Runtime) -> Vec<(&'static str, String)> {
        vec![("dockerfile", rt.dockerfile.clone())]
    }

    fn key(&self, at: &KeyInputs<'_>) -> Option<Key> {
        at.revision?;
        Some(key(at.input?, &at.node.runtime().dockerfile))
    }

    fn record_fields(&self) -> &'static [RecordField] {
        FIELDS
    }
}

impl Work for Step {
    fn attests(&self) -> Attests {
        Attests::Checkout
    }

    fn probe<'a>(
        &'a self,
        world: &'a RealWorld,
        req: &'a ProbeRequest<'_>,
    ) -> BoxFuture<'a, Result<Probe, Error>> {
        Box::pin(async move { Ok(probe(world, req).await) })
    }

    fn run<'a>(
        &'a self,
        world: &'a RealWorld,
        req: &'a RunRequest<'_>,
    ) -> BoxFuture<'a, Result<Output, Error>> {
        Box::pin(run(world, req))
    }
}

/// The key of a verify: the checkout's key and the Dockerfile's path in it.
pub fn key(clone: &Key, dockerfile: &str) -> Key {
    KeyBuilder::new(KIND.name())
        .field("clone", clone.as_str())
        .field("dockerfile", dockerfile)
        .finish()
}

async fn probe(world: &RealWorld, req: &ProbeRequest<'_>) -> Probe {
    let (node, commit) = (req.node, req.revision);
    let repo = node.runtime().repo_identity();
    let checkout = match world.checkout_state(&repo, commit).await {
        CheckoutState::Present(checkout) => checkout,
        CheckoutState::Missing => {
            return Probe::Missing {
                reason: format!("no checkout of {} to verify", short(commit)),
            };
        }
        CheckoutState::Corrupt(why) => {
            return Probe::Missing {
                reason: format!("cached checkout of {} unusable ({why})", short(commit)),
            };
        }
    };
    match verified_digest(world, req.key, commit, &checkout) {
        Some(b3) => Probe::Present {
            reason: format!(
                "{} verified (blake3 {})",
                node.runtime().dockerfile,
                planner_base::ids::short(&b3)
            ),
            output: Output::new(Verified {
                checkout,
                dockerfile_blake3: b3,
            }),
        },
        None => Probe::Missing {
            reason: format!(
                "{} not verified in this checkout yet",
                node.runtime().dockerfile
            ),
        },
    }
}

/// The Dockerfile digest the verify record states, when the record is for this very
/// commit and checkout (its checkout id): a record of another checkout proves nothing.
fn verified_digest(world: &RealWorld, key: &Key, commit: &str, checkout: &Path) -> Option<String> {
    let rec = RecordFields::of(&world.store.read_record(key, KIND)?);
    let this_checkout = store::checkout_id(checkout);
    let matches = rec.commit.as_deref() == Some(commit)
        && rec.checkout_id.is_some()
        && rec.checkout_id == this_checkout;
    if matches { rec.dockerfile_blake3 } else { None }
}

async fn run(world: &RealWorld, req: &RunRequest<'_>) -> Result<Output, Error> {
    let checkout = match req.input.as_ref().and_then(|o| o.get::<Checkout>()) {
        Some(Checkout(p)) => p.clone(),
        _ => {
            return Err(Error::Internal(
                "verify-dockerfile ran without a checkout".into(),
            ));
        }
    };
    // File reads and an fsync: on the blocking pool, not the async runtime's threads.
    let (dir, rt, commit) = (
        checkout.clone(),
        req.node.runtime().clone(),
        req.revision.to_owned(),
    );
    let (b3, checkout_id) = tokio::task::spawn_blocking(move || {
        Ok::<_, Error>((
            hash_dockerfile(&dir, &rt, &commit)?,
            give_checkout_an_id(&dir)?,
        ))
    })
    .await
    .map_err(|e| Error::Internal(format!("verify task: {e}")))??;
    world
        .record(KIND, req.key, req.node, |r| {
            r.commit = Some(req.revision.to_owned());
            r.dockerfile_blake3 = Some(b3.clone());
            r.checkout_id = Some(checkout_id);
        })
        .await?;
    Ok(Output::new(Verified {
        checkout,
        dockerfile_blake3: b3,
    }))
}

/// The checkout's id; a checkout cloned before checkouts had ids gets one now, so that its
/// verify record can name it (and the next run trusts that record).
fn give_checkout_an_id(checkout: &Path) -> Result<String, Error> {
    if let Some(id) = store::checkout_id(checkout) {
        return Ok(id);
    }
    let id = store::new_checkout_id(checkout);
    store::write_checkout_id(checkout, &id)?;
    Ok(id)
}

/// Checks the Dockerfile is a regular file inside the checkout, within the cap; returns its blake3.
pub fn hash_dockerfile(checkout: &Path, rt: &Runtime, commit: &str) -> Result<String, Error> {
    let fail = |what: String| {
        Error::Dockerfile(format!(
            "Dockerfile {} {what} in {} at commit {commit}\n  help: fix the template repository, or set `dockerfile` for runtime {:?} in runtimes.toml",
            rt.dockerfile,
            rt.repo_identity(),
            rt.name
        ))
    };
    let path: PathBuf = checkout.join(&rt.dockerfile);
    let root = checkout
        .canonicalize()
        .map_err(|e| fail(format!("cannot be checked ({e})")))?;
    let real = match path.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(fail("not found".into())),
        Err(e) => return Err(fail(format!("cannot be read ({e})"))),
    };
    if !real.starts_with(&root) || real.starts_with(root.join(".git")) {
        return Err(fail("is a symlink pointing outside the repository".into()));
    }
    let meta = std::fs::metadata(&real).map_err(|e| fail(format!("cannot be read ({e})")))?;
    if !meta.is_file() {
        return Err(fail("is not a regular file".into()));
    }
    if meta.len() > DOCKERFILE_CAP {
        return Err(fail(format!(
            "is {} bytes, over the {} byte limit",
            meta.len(),
            DOCKERFILE_CAP
        )));
    }
    let bytes = std::fs::read(&real).map_err(|e| fail(format!("cannot be read ({e})")))?;
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(fail("is empty".into()));
    }
    Ok(blake3::hash(&bytes).to_hex().to_string())
}
