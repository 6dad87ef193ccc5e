//! `planner status`: per runtime, the last resolved revision (a git runtime's commit, a
//! registry runtime's digest), its pinned image, `:latest` and the checkout cache. Reads the
//! cache dir and asks the engine; never writes, and never asks the git host or the registry
//! unless told to refresh (then read only, like `plan`).

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt;

use crate::config::{Runtime, SourceKind};
use crate::docker::DockerError;
use crate::docker::engine::Engine;
use crate::git::{self, GitAuth};
use crate::registry::Registry;
use crate::steps::labels;
use crate::steps::record::RecordFields;
use crate::steps::{resolve_digest, resolve_head};
use crate::store::{self, CheckoutState, Store};

/// Version of the `status --json` document.
pub const STATUS_SCHEMA: u32 = 2;

/// Where the commits come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heads {
    /// The resolve-head records the last `ensure` wrote (no network).
    Recorded,
    /// Ask the git host now (read only; nothing is recorded).
    Refresh,
}

/// One runtime's state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuntimeStatus {
    pub runtime: String,
    pub source: SourceKind,
    /// The branch (git) or the registry tag (registry).
    pub branch: String,
    /// The repository identity: the URL without credentials (git), `registry/repository`.
    pub repo: String,
    /// The last resolved revision (or the one just resolved with [`Heads::Refresh`]): a git
    /// runtime's commit, a registry runtime's manifest digest (as `ensure --json` says).
    pub commit: Option<String>,
    /// The engine's ID of the pinned image (`sha256:…`), when the engine holds it.
    pub image_id: Option<String>,
    /// A reference naming that image for good, usable as is (today the image ID).
    pub pinned: Option<String>,
    /// Where the image sits in a registry, `registry/repository@sha256:…`: a registry
    /// runtime's resolved digest (`None` for git runtimes: status does not ask registries).
    pub digest: Option<String>,
    /// When that commit was resolved, seconds since the Unix epoch.
    pub resolved_at: Option<u64>,
    /// Why the commit is unknown, when asking the git host failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub image: ImageStatus,
    pub latest: LatestStatus,
    pub checkout: CheckoutStatus,
}

/// The commit-pinned image `{image_prefix}{runtime}:{sha12}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageStatus {
    /// `None` when no commit is known.
    pub tag: Option<String>,
    pub present: bool,
    pub id: Option<String>,
}

/// `{image_prefix}{runtime}:latest`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LatestStatus {
    pub tag: String,
    pub present: bool,
    pub id: Option<String>,
    /// The commit `:latest` was built from (its revision label), when planner built it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Whether `:latest` names the pinned image of `commit`; `None` when either is unknown.
    pub matches_commit: Option<bool>,
}

/// The checkout of the commit in the cache dir.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckoutStatus {
    pub present: bool,
    /// Where it is (or would be); `None` when no commit is known.
    pub path: Option<PathBuf>,
    /// Disk usage when present.
    pub bytes: Option<u64>,
    /// Why a directory at the path is not a usable checkout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The `status --json` document.
#[derive(Debug, serde::Serialize)]
pub struct StatusReport<'a> {
    pub schema_version: u32,
    pub runtimes: &'a [RuntimeStatus],
}

/// How many git hosts are asked at once with [`Heads::Refresh`].
const REFRESH_CONCURRENCY: usize = 16;

/// The state of each runtime, in order. `store` should be read only; nothing is written.
/// Engine failures fail the whole call; a failed refresh only marks that runtime.
pub async fn status(
    engine: &Engine,
    store: &Store,
    runtimes: &[Arc<Runtime>],
    heads: Heads,
    auth: &GitAuth,
    registry: &Registry,
) -> Result<Vec<RuntimeStatus>, DockerError> {
    let heads = match heads {
        Heads::Recorded => recorded_heads(store, runtimes),
        Heads::Refresh => refreshed_heads(runtimes, auth, registry).await,
    };
    let mut out = Vec::with_capacity(runtimes.len());
    for (rt, head) in runtimes.iter().zip(heads) {
        out.push(runtime_status(engine, store, rt, head).await?);
    }
    Ok(out)
}

/// A runtime's revision (commit or digest) as known to `status`, or why it is unknown.
struct Head {
    revision: Option<String>,
    /// When it was resolved, seconds since the Unix epoch.
    resolved_at: Option<u64>,
    /// Why asking the git host failed.
    error: Option<String>,
}

/// Each runtime's revision from the root record the last `ensure` wrote (no network).
fn recorded_heads(store: &Store, runtimes: &[Arc<Runtime>]) -> Vec<Head> {
    runtimes
        .iter()
        .map(|rt| {
            let found = match rt.registry_image() {
                None => resolve_head::recorded_head(store, &rt.repo_identity(), &rt.branch)
                    .and_then(|r| Some((RecordFields::of(&r).commit?, r.finished_at))),
                Some(image) => recorded_digest(store, rt, image),
            };
            Head {
                revision: found.as_ref().map(|(r, _)| r.clone()),
                resolved_at: found.map(|(_, at)| at),
                error: None,
            }
        })
        .collect()
}

/// A registry runtime's recorded digest and when it was resolved.
fn recorded_digest(
    store: &Store,
    rt: &Runtime,
    image: &crate::registry::ImageRef,
) -> Option<(String, u64)> {
    let key = resolve_digest::key(image, &rt.platform);
    let rec = store.read_record(&key, resolve_digest::KIND)?;
    let digest = RecordFields::of(&rec).digest;
    (rec.repo == rt.repo_identity()).then_some((digest?, rec.finished_at))
}

/// Each runtime's commit asked of the git host now, [`REFRESH_CONCURRENCY`] at a time (read
/// only; nothing is recorded). A failure marks only its runtime.
async fn refreshed_heads(
    runtimes: &[Arc<Runtime>],
    auth: &GitAuth,
    registry: &Registry,
) -> Vec<Head> {
    let http = git::smart_http::client();
    futures_util::stream::iter(runtimes.iter().map(|rt| {
        let http = &http;
        async move {
            let answer = match rt.registry_image() {
                None => git::resolve_head(http, &rt.repo, &rt.branch, &rt.name, auth)
                    .await
                    .map_err(|e| e.to_string()),
                Some(image) => registry
                    .resolve(image, &rt.platform)
                    .await
                    .map(|r| r.digest)
                    .map_err(|e| e.to_string()),
            };
            match answer {
                Ok(c) => Head {
                    revision: Some(c),
                    resolved_at: Some(store::now_secs()),
                    error: None,
                },
                Err(e) => Head {
                    revision: None,
                    resolved_at: None,
                    error: Some(crate::mask::mask(&e).into_owned()),
                },
            }
        }
    }))
    .buffered(REFRESH_CONCURRENCY)
    .collect()
    .await
}

/// One runtime's state: its pinned image, `:latest` and checkout for `head`'s commit.
async fn runtime_status(
    engine: &Engine,
    store: &Store,
    rt: &Runtime,
    head: Head,
) -> Result<RuntimeStatus, DockerError> {
    let repo = rt.repo_identity();
    let commit = head.revision.as_deref();
    let image = pinned_status(engine, rt, commit).await?;
    let latest = latest_status(engine, rt, commit, &image).await?;
    // A directory walk: on the blocking pool, not the async runtime's threads.
    let checkout = {
        let git = rt.registry_image().is_none();
        let commit = head.revision.clone().filter(|_| git);
        let (store, repo) = (store.clone(), repo.clone());
        tokio::task::spawn_blocking(move || checkout_status(&store, &repo, commit.as_deref()))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    };
    let source = rt.source.kind();
    let digest = rt
        .registry_image()
        .zip(head.revision.as_deref())
        .map(|(image, d)| image.with_digest(d));
    let image_id = image.id.clone();
    Ok(RuntimeStatus {
        runtime: rt.name.clone(),
        source,
        branch: match rt.registry_image() {
            Some(image) => image.tag.clone(),
            None => rt.branch.clone(),
        },
        repo,
        commit: head.revision,
        pinned: image_id.clone(),
        image_id,
        digest,
        resolved_at: head.resolved_at,
        error: head.error,
        image,
        latest,
        checkout,
    })
}

/// The pinned image of `commit`, when a commit is known.
async fn pinned_status(
    engine: &Engine,
    rt: &Runtime,
    commit: Option<&str>,
) -> Result<ImageStatus, DockerError> {
    let Some(c) = commit else {
        return Ok(ImageStatus {
            tag: None,
            present: false,
            id: None,
        });
    };
    let tag = rt.pinned_tag(c);
    let info = engine.inspect(&tag).await?;
    Ok(ImageStatus {
        tag: Some(tag),
        present: info.is_some(),
        id: info.map(|i| i.id),
    })
}

/// `:latest`, the commit planner built it from (its revision label) and whether it names the
/// pinned image of `commit` (or, with no pinned image, was built from `commit`).
async fn latest_status(
    engine: &Engine,
    rt: &Runtime,
    commit: Option<&str>,
    pinned: &ImageStatus,
) -> Result<LatestStatus, DockerError> {
    let tag = rt.latest_tag();
    let info = engine.inspect(&tag).await?;
    let latest_commit = info
        .as_ref()
        .filter(|i| i.labels.contains_key(labels::LABEL_KEY))
        .and_then(|i| i.labels.get(labels::LABEL_REVISION).cloned())
        .filter(|c| crate::ids::is_commit(c));
    let matches_commit = match (&info, commit) {
        (Some(info), Some(c)) => Some(
            pinned.id.as_deref() == Some(info.id.as_str())
                || (pinned.id.is_none() && latest_commit.as_deref() == Some(c)),
        ),
        _ => None,
    };
    Ok(LatestStatus {
        tag,
        present: info.is_some(),
        id: info.map(|i| i.id),
        commit: latest_commit,
        matches_commit,
    })
}

/// The checkout of `commit` of `repo` in the cache dir, when a commit is known.
fn checkout_status(store: &Store, repo: &str, commit: Option<&str>) -> CheckoutStatus {
    let absent = |path, problem| CheckoutStatus {
        present: false,
        path,
        bytes: None,
        problem,
    };
    let Some(c) = commit else {
        return absent(None, None);
    };
    match store.checkout_state(repo, c) {
        CheckoutState::Present(path) => CheckoutStatus {
            present: true,
            bytes: Some(store::disk_usage(&path)),
            path: Some(path),
            problem: None,
        },
        CheckoutState::Missing => absent(Some(store.checkout_path(repo, c)), None),
        CheckoutState::Corrupt(why) => absent(Some(store.checkout_path(repo, c)), Some(why)),
    }
}
