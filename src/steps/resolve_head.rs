//! `resolve-head`: asks the git host where the branch is (or, offline, the last recorded
//! answer). It is the root of every runtime's chain and is answered in the resolve phase,
//! before deciding: it is never probed or run by the scheduler.

use futures_util::future::BoxFuture;

use super::{Attests, Kind};
use crate::config::{Runtime, SourceKind};
use crate::error::StepError;
use crate::exec::world::RealWorld;
use crate::git;
use crate::key::{Key, KeyBuilder, KeyInputs};
use crate::plan::{Node, Resolved, StepKind};

pub struct Step;

impl Kind for Step {
    fn name(&self) -> &'static str {
        "resolve-head"
    }

    fn source(&self) -> Option<SourceKind> {
        Some(SourceKind::Git)
    }

    fn reads(&self, rt: &Runtime) -> Vec<(&'static str, String)> {
        vec![("repo", rt.repo_identity()), ("branch", rt.branch.clone())]
    }

    fn key(&self, at: &KeyInputs<'_>) -> Option<Key> {
        let rt = at.node.runtime();
        Some(key(&rt.repo_identity(), &rt.branch))
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

/// The key of a branch's resolve: the repository identity and the branch.
pub fn key(repo: &str, branch: &str) -> Key {
    KeyBuilder::new(StepKind::ResolveHead)
        .field("repo", repo)
        .field("branch", branch)
        .finish()
}

/// Resolves the branch HEAD of `node`'s runtime and records the answer.
async fn resolve(
    world: &RealWorld,
    node: &Node,
    key: &Key,
    offline: bool,
) -> Result<Resolved, StepError> {
    let rt = node.runtime();
    debug_assert_eq!(*key, self::key(&rt.repo_identity(), &rt.branch));
    let previous = world
        .store
        .recorded_head(&rt.repo_identity(), &rt.branch)
        .and_then(|r| r.commit);
    if offline {
        let missing = format!(
            "recorded answer for branch {:?} of {}",
            rt.branch,
            rt.repo_identity()
        );
        return super::answered_offline(&rt.branch, previous, &missing);
    }
    let commit =
        git::resolve_head(&world.http, &rt.repo, &rt.branch, &rt.name, &world.auth).await?;
    // A warm run finds every branch where it was: only the time is new, so no fsync.
    let changed = previous.as_deref() != Some(commit.as_str());
    world
        .record_with(changed, StepKind::ResolveHead, key, node, |r| {
            r.branch = Some(rt.branch.clone());
            r.commit = Some(commit.clone());
        })
        .await?;
    Ok(super::answered("commit", &rt.branch, commit, previous))
}
