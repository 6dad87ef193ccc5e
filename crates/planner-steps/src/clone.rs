//! `clone`: a checkout of the resolved commit in the cache dir, made in a temp dir and
//! committed by rename, with a checkout id its verify record can name.

use futures_util::future::BoxFuture;

use crate::error::Error;
use crate::kind::{Attests, Work};
use crate::outputs::Checkout;
use crate::record::FIELDS;
use crate::world::RealWorld;
use planner_base::ids::short;
use planner_core::Kind;
use planner_core::exec::RunRequest;
use planner_core::key::{Key, KeyBuilder};
use planner_core::plan::KeyInputs;
use planner_core::plan::{Output, Probe, ProbeRequest, StepKind};
use planner_core::store::{self, CheckoutState, RecordField};
use planner_git as git;

pub struct Step;

/// This kind.
pub const KIND: StepKind = StepKind::new(&Step);

impl Kind for Step {
    fn name(&self) -> &'static str {
        "clone"
    }

    fn input_kinds(&self) -> &'static [StepKind] {
        const INPUTS: &[StepKind] = &[super::resolve_head::KIND];
        INPUTS
    }

    fn heavy(&self) -> bool {
        true
    }

    fn key(&self, at: &KeyInputs<'_>) -> Option<Key> {
        Some(key(&at.node.runtime().repo_identity(), at.revision?))
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

/// The key of a checkout: the repository identity and the commit.
pub fn key(repo: &str, commit: &str) -> Key {
    KeyBuilder::new(KIND.name())
        .field("repo", repo)
        .field("commit", commit)
        .finish()
}

async fn probe(world: &RealWorld, req: &ProbeRequest<'_>) -> Probe {
    let (repo, commit) = (req.node.runtime().repo_identity(), req.revision);
    match world.checkout_state(&repo, commit).await {
        CheckoutState::Present(path) => Probe::Present {
            output: Output::new(Checkout(path)),
            reason: format!("checkout of {} cached", short(commit)),
        },
        CheckoutState::Missing => Probe::Missing {
            reason: format!("no checkout of {} yet", short(commit)),
        },
        CheckoutState::Corrupt(why) => Probe::Missing {
            reason: format!("cached checkout unusable ({why}); checking out again"),
        },
    }
}

async fn run(world: &RealWorld, req: &RunRequest<'_>) -> Result<Output, Error> {
    let rt = req.node.runtime();
    let repo = rt.repo_identity();
    let key = req.key.clone();
    let (repo2, commit) = (repo.clone(), req.revision.to_owned());
    let tmp = world
        .blocking(move |store| {
            store.clean_stale_temps(&key)?;
            // The re-check under the lock found no usable checkout: whatever is there goes.
            if store.checkout_state(&repo2, &commit) != CheckoutState::Missing {
                store.remove_checkout(&repo2, &commit)?;
            }
            store.temp_dir(&key)
        })
        .await?;
    git::cli::checkout(&rt.repo, &rt.branch, req.revision, tmp.path(), &world.auth).await?;
    let checkout_id = store::new_checkout_id(tmp.path());
    let (dir, id) = (tmp.path().to_owned(), checkout_id.clone());
    world
        .blocking(move |_| store::write_checkout_id(&dir, &id))
        .await?;
    let dest = world.store.checkout_path(&repo, req.revision);
    let (from, to) = (tmp.path().to_owned(), dest.clone());
    world
        .blocking(move |store| store.commit_dir(&from, &to))
        .await?;
    let _ = tmp.keep();
    world
        .record(KIND, req.key, req.node, |r| {
            r.commit = Some(req.revision.to_owned());
            r.checkout_id = Some(checkout_id);
        })
        .await?;
    Ok(Output::new(Checkout(dest)))
}
