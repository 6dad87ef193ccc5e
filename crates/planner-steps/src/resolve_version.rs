//! `resolve-version`: asks package indexes for the latest release of each package a runtime's
//! build args name (`build_args = { RUNTIME_VERSION = { pypi = "pkg" } }`), like
//! `resolve-head` asks for a branch head: every run (offline: the last recorded answer).
//!
//! How the plans wire it: `local-build` and `build-only` have a `resolve-version` root that
//! `build` needs beside its input (`verify-dockerfile`). Its identity is the set of releases
//! the runtime reads (kind, index without credentials, package, `pre`), so runtimes that
//! read the same packages share one step, and a runtime that reads none shares the one step
//! that answers [`NONE`] without asking anything (no network, no record). Each package is
//! asked once per run however many steps name it (the run's [`planner_index::Index`] memo).
//!
//! Its answer (the root's revision) is the canonical JSON of `{release identity: version}`;
//! `build` reads it from [`KeyInputs::answers`] ([`versions`]) and passes each version as its
//! build arg's value: it is keyed and labelled (`dev.planner.build-args`) like a declared
//! value, so a new release rebuilds exactly the runtimes that read the package, and the
//! plan says why (`RUNTIME_VERSION 1.0 → 1.1 (pypi pkg)`). A failure (package not found, no
//! release matching, index down) fails the step: the build that needs it never runs with an
//! empty value.

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;

use crate::error::Error;
use crate::kind::{Attests, Work};
use crate::world::RealWorld;
use planner_config::{BuildArgs, IndexKind, Release, Runtime};
use planner_core::Kind;
use planner_core::key::{Key, KeyBuilder};
use planner_core::plan::{Answer, KeyInputs, Node, Resolved, Status, StepKind};
use planner_core::store::{self, Fields, Record, RecordField, Store};

pub struct Step;

/// This kind.
pub const KIND: StepKind = StepKind::new(&Step);

/// The answer of a step whose runtimes read no release.
pub const NONE: &str = "none";

/// The record field holding the answer.
const VERSIONS: &str = "versions";
/// Largest answer accepted back from a record.
const MAX_ANSWER: usize = 64 * 1024;

impl Kind for Step {
    fn name(&self) -> &'static str {
        "resolve-version"
    }

    fn reads(&self, rt: &Runtime) -> Vec<(&'static str, String)> {
        identities(rt)
            .into_iter()
            .map(|id| ("release", id))
            .collect()
    }

    fn key(&self, at: &KeyInputs<'_>) -> Option<Key> {
        Some(key(&identities(at.node.runtime())))
    }

    fn record_fields(&self) -> &'static [RecordField] {
        const FIELDS: &[RecordField] = &[RecordField::new(VERSIONS, valid_answer)];
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

/// The key of the releases `identities` (sorted, deduplicated).
pub fn key(identities: &[String]) -> Key {
    let mut b = KeyBuilder::new(KIND.name());
    b.field("releases", &identities.len().to_string());
    for id in identities {
        b.field("release", id);
    }
    b.finish()
}

/// The identities of the releases `rt` reads, sorted and deduplicated.
fn identities(rt: &Runtime) -> Vec<String> {
    let mut ids: Vec<String> = rt.releases.values().map(Release::identity).collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The releases `node`'s runtime reads, one per identity.
fn releases(node: &Node) -> BTreeMap<String, &Release> {
    node.runtime()
        .releases
        .values()
        .map(|r| (r.identity(), r))
        .collect()
}

async fn resolve(
    world: &RealWorld,
    node: &Node,
    key: &Key,
    offline: bool,
) -> Result<Resolved, Error> {
    let releases = releases(node);
    if releases.is_empty() {
        return Ok(Resolved {
            revision: NONE.to_owned(),
            previous: Some(NONE.to_owned()),
            status: Status::Skip,
            reason: "no build arg is a released version".into(),
        });
    }
    let previous = recorded(&world.store, key);
    if offline {
        return match previous {
            Some(p) => Ok(Resolved {
                reason: format!("offline: last recorded {}", shown(&p, &releases)),
                revision: p.clone(),
                previous: Some(p),
                status: Status::Skip,
            }),
            None => Err(Error::Offline(format!(
                "offline and no recorded version of {}\n  help: run `planner ensure` (or `planner plan` without --offline) once with network access",
                releases
                    .values()
                    .map(|r| r.describe())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        };
    }
    let mut versions = BTreeMap::new();
    for (id, release) in &releases {
        let version = world.index.latest(&package(release)).await?;
        versions.insert(id.clone(), version);
    }
    let answer = serde_json::to_string(&versions).expect("a string map serializes");
    let changed = previous.as_deref() != Some(answer.as_str());
    record(world, changed, key, node, &answer).await?;
    let reason = match &previous {
        Some(p) if changed => changes(p, &answer, &releases),
        _ => format!("latest: {}", shown(&answer, &releases)),
    };
    Ok(Resolved {
        revision: answer,
        previous,
        status: Status::Run,
        reason,
    })
}

/// The package `release` names, as the index client asks it.
fn package(release: &Release) -> planner_index::Package {
    planner_index::Package {
        ecosystem: match release.kind {
            IndexKind::Pypi => planner_index::Ecosystem::Pypi,
            IndexKind::Npm => planner_index::Ecosystem::Npm,
        },
        index: release.index.clone(),
        name: release.package.clone(),
        pre: release.pre,
    }
}

/// An answer's versions by release identity; `None` for one that is not an answer.
fn parse(answer: &str) -> Option<BTreeMap<String, String>> {
    if answer == NONE {
        return Some(BTreeMap::new());
    }
    if answer.len() > MAX_ANSWER {
        return None;
    }
    let map: BTreeMap<String, String> = serde_json::from_str(answer).ok()?;
    let sane =
        |v: &String| !v.is_empty() && v.len() <= 256 && v.chars().all(|c| c.is_ascii_graphic());
    map.values().all(sane).then_some(map)
}

/// Whether a recorded answer is one (records are hostile input).
fn valid_answer(text: &str) -> bool {
    parse(text).is_some()
}

/// `pypi pkg 1.0, npm x 2.0`.
fn shown(answer: &str, releases: &BTreeMap<String, &Release>) -> String {
    let versions = parse(answer).unwrap_or_default();
    let parts: Vec<String> = versions
        .iter()
        .map(|(id, v)| {
            let what = releases
                .get(id)
                .map_or_else(|| id.clone(), |r| r.describe());
            format!("{what} {v}")
        })
        .collect();
    parts.join(", ")
}

/// `new release: pypi pkg 1.0 → 1.1` for each package whose version moved.
fn changes(previous: &str, answer: &str, releases: &BTreeMap<String, &Release>) -> String {
    let (old, new) = (
        parse(previous).unwrap_or_default(),
        parse(answer).unwrap_or_default(),
    );
    let parts: Vec<String> = new
        .iter()
        .filter(|(id, v)| old.get(*id) != Some(*v))
        .map(|(id, v)| {
            let what = releases
                .get(id)
                .map_or_else(|| id.clone(), |r| r.describe());
            match old.get(id) {
                Some(was) => format!("{what} {was} → {v}"),
                None => format!("{what} at {v}"),
            }
        })
        .collect();
    format!("new release: {}", parts.join(", "))
}

/// The last recorded answer of `key`, when the record holds a valid one.
fn recorded(store: &Store, key: &Key) -> Option<String> {
    let rec = store.read_record(key, KIND)?;
    rec.field(VERSIONS)
        .filter(|a| valid_answer(a))
        .map(str::to_owned)
}

/// Records the answer (not durable when it restates the last one: only the time is new).
async fn record(
    world: &RealWorld,
    durable: bool,
    key: &Key,
    node: &Node,
    answer: &str,
) -> Result<(), Error> {
    if world.read_only {
        return Ok(());
    }
    let mut fields = Fields::new();
    fields.insert(VERSIONS.into(), answer.into());
    let rec = Record {
        schema: store::RECORD_SCHEMA,
        kind: KIND.name().into(),
        key: key.clone(),
        runtimes: node.runtime_names(),
        repo: node.runtime().repo_identity(),
        fields,
        finished_at: store::now_secs(),
    };
    world
        .blocking(move |store| match durable {
            true => store.write_record(&rec),
            false => store.refresh_record(&rec),
        })
        .await
}

/// The versions `node`'s runtime's released build args resolved to, from the answer of the
/// `resolve-version` root it descends from, by arg name; `None` while that answer is not
/// known (or lacks one of them). Empty for a runtime that reads no release.
pub fn versions(node: &Node, answers: &[Answer<'_>]) -> Option<BuildArgs> {
    let rt = node.runtime();
    if rt.releases.is_empty() {
        return Some(BuildArgs::new());
    }
    let answer = answers.iter().find(|a| a.node.kind == KIND)?;
    let found = parse(answer.revision)?;
    rt.releases
        .iter()
        .map(|(name, r)| Some((name.clone(), found.get(&r.identity())?.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_checked_when_read_back() {
        assert!(valid_answer(NONE));
        assert!(valid_answer(r#"{"pypi https://x/ p":"1.0"}"#));
        for bad in [r#"{"a":""}"#, r#"{"a":"1 0"}"#, "[]", "x", r#"{"a":"1\n"}"#] {
            assert!(!valid_answer(bad), "{bad}");
        }
    }
}
