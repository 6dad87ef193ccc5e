//! `resolve-head`: asks the git host where the branch is (or, offline, the last recorded
//! answer). It is the root of every runtime's chain and is answered in the resolve phase,
//! before deciding: it is never probed or run by the scheduler.

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
use planner_core::store::{Record, RecordField, Store};
use planner_git as git;

pub struct Step;

/// This kind.
pub const KIND: StepKind = StepKind::new(&Step);

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

/// The key of a branch's resolve: the repository identity and the branch.
pub fn key(repo: &str, branch: &str) -> Key {
    KeyBuilder::new(KIND.name())
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
) -> Result<Resolved, Error> {
    let rt = node.runtime();
    debug_assert_eq!(*key, self::key(&rt.repo_identity(), &rt.branch));
    let previous = recorded_head(&world.store, &rt.repo_identity(), &rt.branch)
        .and_then(|r| RecordFields::of(&r).commit);
    if offline {
        let missing = format!(
            "recorded answer for branch {:?} of {}",
            rt.branch,
            rt.repo_identity()
        );
        return crate::kind::answered_offline(&rt.branch, previous, &missing);
    }
    let commit =
        git::resolve_head(&world.http, &rt.repo, &rt.branch, &rt.name, &world.auth).await?;
    // A warm run finds every branch where it was: only the time is new, so no fsync.
    let changed = previous.as_deref() != Some(commit.as_str());
    world
        .record_with(changed, KIND, key, node, |r| {
            r.branch = Some(rt.branch.clone());
            r.commit = Some(commit.clone());
        })
        .await?;
    Ok(crate::kind::answered(
        "commit", &rt.branch, commit, previous,
    ))
}

/// The resolve-head record of `branch` of `repo` (identity), when it is for exactly that
/// repository and branch and names a valid commit.
pub fn recorded_head(store: &Store, repo: &str, branch: &str) -> Option<Record> {
    let key = key(repo, branch);
    let rec = store.read_record(&key, KIND)?;
    let fields = RecordFields::of(&rec);
    let matches =
        rec.repo == repo && fields.branch.as_deref() == Some(branch) && fields.commit.is_some();
    if !matches {
        store.warn_ignored(&key, "its repo, branch or commit does not match");
    }
    matches.then_some(rec)
}
