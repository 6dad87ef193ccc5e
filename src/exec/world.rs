//! The real world: the git host, the Docker engine and the cache dir.
//!
//! Probes ask the engine and the filesystem (records only say what saves work); runs do the
//! work and commit the step's record as soon as it succeeds.

use crate::config::sha12;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{Effects, Event, RunRequest};
use crate::config::Runtime;
use crate::docker::Engine;
use crate::docker::engine::{self as eng, BuildRequest, ImageInfo};
use crate::error::StepError;
use crate::git::{self, GitAuth};
use crate::key::{self, KEY_FORMAT, Key};
use crate::plan::{Node, Output, Probe, ProbeRequest, Resolved, Status, StepKind, World};
use crate::store::{self, CheckoutState, Record, Store};

/// Largest Dockerfile planner accepts.
pub const DOCKERFILE_CAP: u64 = 1024 * 1024;

/// The real side effects. `read_only` worlds (for `plan`) never write.
pub struct RealWorld {
    pub store: Store,
    pub engine: Engine,
    pub http: reqwest::Client,
    pub auth: GitAuth,
    pub read_only: bool,
}

impl RealWorld {
    /// This world with an engine view that has already asked about every tag deciding
    /// `graph` probes (each runtime's pinned tag at its resolved commit, and `:latest`), all at
    /// once ([`Engine::prefetched`]): for deciding a whole graph. Never for the scheduler,
    /// whose re-check after a lock must see the engine as it is.
    pub async fn for_deciding(
        &self,
        graph: &crate::plan::Graph,
        resolutions: &HashMap<crate::plan::NodeId, Result<Resolved, String>>,
    ) -> RealWorld {
        let mut references = Vec::new();
        let mut prefixes = Vec::new();
        for (&id, resolved) in resolutions {
            let Ok(resolved) = resolved else { continue };
            for rt in &graph.node(id).runtimes {
                references.push(rt.pinned_tag(&resolved.commit));
                references.push(rt.latest_tag());
                prefixes.push(rt.image_prefix.clone());
            }
        }
        RealWorld {
            store: self.store.clone(),
            engine: self.engine.prefetched(references, prefixes).await,
            http: self.http.clone(),
            auth: self.auth.clone(),
            read_only: self.read_only,
        }
    }
}

impl RealWorld {
    async fn record(
        &self,
        kind: StepKind,
        key: &Key,
        node: &Node,
        fill: impl FnOnce(&mut Record),
    ) -> Result<(), StepError> {
        self.record_with(true, kind, key, node, fill).await
    }

    /// Runs a cache-dir operation on the blocking pool: fsyncs, retried removals and
    /// recursive deletes must not stall the async runtime's threads, where the steps of the
    /// other runtimes run.
    async fn blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Store) -> Result<T, store::StoreError> + Send + 'static,
    ) -> Result<T, StepError> {
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || op(&store))
            .await
            .map_err(|e| StepError::Internal(format!("cache dir task: {e}")))??)
    }

    /// Writes a step's record; not `durable` when it restates what the record already says
    /// but the time (see [`Store::refresh_record`]).
    async fn record_with(
        &self,
        durable: bool,
        kind: StepKind,
        key: &Key,
        node: &Node,
        fill: impl FnOnce(&mut Record),
    ) -> Result<(), StepError> {
        if self.read_only {
            return Ok(());
        }
        let mut rec = Record {
            schema: store::RECORD_SCHEMA,
            kind: kind.name().into(),
            key: key.clone(),
            runtimes: node.runtime_names(),
            repo: node.runtime().repo_identity(),
            branch: None,
            commit: None,
            dockerfile_blake3: None,
            image_id: None,
            checkout_id: None,
            finished_at: store::now_secs(),
        };
        fill(&mut rec);
        self.blocking(move |store| {
            if durable {
                store.write_record(&rec)
            } else {
                store.refresh_record(&rec)
            }
        })
        .await
    }

    /// The checkout's state, checked against the filesystem: its HEAD is the commit, it is
    /// ours and as planner made it (`git::trust`), and its files are the commit's tree
    /// (`git status`: nothing changed, added or removed).
    async fn checkout_state(&self, repo: &str, commit: &str) -> CheckoutState {
        let state = self.store.checkout_state(repo, commit);
        let CheckoutState::Present(dir) = &state else {
            return state;
        };
        if let Some(why) = git::trust::unusable(dir) {
            return CheckoutState::Corrupt(why);
        }
        match git::cli::modified_paths(dir).await {
            Ok(None) => state,
            Ok(Some(changed)) => {
                CheckoutState::Corrupt(format!("files changed since checkout: {changed}"))
            }
            // Without git the tree cannot be compared; HEAD was checked, so keep the checkout.
            Err(crate::git::GitError::GitMissing { .. }) => state,
            Err(e) => CheckoutState::Corrupt(e.to_string()),
        }
    }

    async fn probe_clone(&self, node: &Node, commit: &str) -> Probe {
        let repo = node.runtime().repo_identity();
        match self.checkout_state(&repo, commit).await {
            CheckoutState::Present(path) => Probe::Present {
                output: Output::Checkout(path),
                reason: format!("checkout of {} cached", sha12(commit)),
            },
            CheckoutState::Missing => Probe::Missing {
                reason: format!("no checkout of {} yet", sha12(commit)),
            },
            CheckoutState::Corrupt(why) => Probe::Missing {
                reason: format!("cached checkout unusable ({why}); checking out again"),
            },
        }
    }

    async fn probe_verify(&self, node: &Node, key: &Key, commit: &str) -> Probe {
        let repo = node.runtime().repo_identity();
        let checkout = match self.checkout_state(&repo, commit).await {
            CheckoutState::Present(checkout) => checkout,
            CheckoutState::Missing => {
                return Probe::Missing {
                    reason: format!("no checkout of {} to verify", sha12(commit)),
                };
            }
            CheckoutState::Corrupt(why) => {
                return Probe::Missing {
                    reason: format!("cached checkout of {} unusable ({why})", sha12(commit)),
                };
            }
        };
        match self.verified_digest(key, commit, &checkout) {
            Some(b3) => Probe::Present {
                reason: format!(
                    "{} verified (blake3 {})",
                    node.runtime().dockerfile,
                    crate::ids::short(&b3)
                ),
                output: Output::Verified {
                    checkout,
                    dockerfile_blake3: b3,
                },
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
    fn verified_digest(&self, key: &Key, commit: &str, checkout: &Path) -> Option<String> {
        let rec = self.store.read_record(key, StepKind::VerifyDockerfile)?;
        let this_checkout = store::checkout_id(checkout);
        let matches = rec.commit.as_deref() == Some(commit)
            && rec.checkout_id.is_some()
            && rec.checkout_id == this_checkout;
        if matches { rec.dockerfile_blake3 } else { None }
    }

    async fn probe_build(&self, req: &ProbeRequest<'_>) -> Result<Probe, StepError> {
        let inputs = key::build_inputs(req.node, req.commit);
        let mut found: Option<(String, String)> = None;
        let mut missing = Vec::new();
        for rt in &req.node.runtimes {
            let tag = rt.pinned_tag(req.commit);
            match self.engine.inspect(&tag).await? {
                Some(info) => match label_mismatch(&info, req.key, &inputs) {
                    None => found = Some((tag, info.id)),
                    Some(why) => {
                        return Ok(Probe::Missing {
                            reason: format!("image {tag} is stale: {why}"),
                        });
                    }
                },
                None => missing.push((rt, tag)),
            }
        }
        Ok(match (found, missing.is_empty()) {
            (Some((tag, id)), true) => Probe::Present {
                output: Output::Image { id },
                reason: format!("image {tag} present, key matches"),
            },
            (Some((tag, _)), false) => {
                let tags: Vec<_> = missing.iter().map(|(_, t)| t.as_str()).collect();
                Probe::Retag {
                    reason: format!("image present as {tag}; only tagging {}", tags.join(", ")),
                }
            }
            (None, _) => match self
                .existing_image(&latest_tags(req.node), req.key, &inputs)
                .await?
            {
                Some((tag, _)) => Probe::Retag {
                    reason: format!("image present as {tag}; only tagging {}", missing[0].1),
                },
                None => Probe::Missing {
                    reason: self
                        .why_no_image(req, &missing[0].0.clone(), &missing[0].1)
                        .await?,
                },
            },
        })
    }

    /// Explains a missing image: a new commit, a pruned image, or a first build.
    async fn why_no_image(
        &self,
        req: &ProbeRequest<'_>,
        rt: &Runtime,
        tag: &str,
    ) -> Result<String, StepError> {
        let latest = self.engine.inspect(&rt.latest_tag()).await?;
        // A foreign image may be tagged :latest: its revision label counts only if it is a commit.
        let old = latest
            .as_ref()
            .and_then(|i| i.labels.get(eng::LABEL_REVISION).cloned())
            .filter(|c| crate::ids::is_commit(c))
            .or_else(|| req.previous_commit.map(str::to_owned))
            .filter(|old| old != req.commit);
        if let Some(old) = old {
            return Ok(format!(
                "new commit {} (was {})",
                sha12(req.commit),
                sha12(&old)
            ));
        }
        let built = self.store.read_record(req.key, StepKind::Build);
        if built.is_some_and(|r| r.commit.as_deref() == Some(req.commit)) {
            return Ok(format!("image {tag} missing (pruned?)"));
        }
        Ok(format!("image {tag} not built yet"))
    }

    async fn probe_tag(&self, node: &Node, input: Option<&Output>) -> Result<Probe, StepError> {
        let latest = node.runtime().latest_tag();
        let Some(Output::Image { id }) = input else {
            return Ok(Probe::Missing {
                reason: format!("{latest} follows the image being built"),
            });
        };
        Ok(match self.engine.inspect(&latest).await? {
            Some(info) if &info.id == id => Probe::Present {
                output: Output::Tagged { id: id.clone() },
                reason: format!("{latest} already names {}", super::scheduler::short_id(id)),
            },
            Some(info) => Probe::Missing {
                reason: format!(
                    "{latest} names {}; moving it to {}",
                    super::scheduler::short_id(&info.id),
                    super::scheduler::short_id(id)
                ),
            },
            None => Probe::Missing {
                reason: format!("{latest} missing"),
            },
        })
    }

    async fn run_clone(&self, req: &RunRequest<'_>) -> Result<Output, StepError> {
        let rt = req.node.runtime();
        let repo = rt.repo_identity();
        let key = req.key.clone();
        let (repo2, commit) = (repo.clone(), req.commit.to_owned());
        let tmp = self
            .blocking(move |store| {
                store.clean_stale_temps(&key)?;
                // The re-check under the lock found no usable checkout: whatever is there goes.
                if store.checkout_state(&repo2, &commit) != CheckoutState::Missing {
                    store.remove_checkout(&repo2, &commit)?;
                }
                store.temp_dir(&key)
            })
            .await?;
        git::cli::checkout(&rt.repo, &rt.branch, req.commit, tmp.path(), &self.auth).await?;
        let checkout_id = store::new_checkout_id(tmp.path());
        let (dir, id) = (tmp.path().to_owned(), checkout_id.clone());
        self.blocking(move |_| store::write_checkout_id(&dir, &id))
            .await?;
        let dest = self.store.checkout_path(&repo, req.commit);
        let (from, to) = (tmp.path().to_owned(), dest.clone());
        self.blocking(move |store| store.commit_dir(&from, &to))
            .await?;
        let _ = tmp.keep();
        self.record(StepKind::Clone, req.key, req.node, |r| {
            r.commit = Some(req.commit.to_owned());
            r.checkout_id = Some(checkout_id);
        })
        .await?;
        Ok(Output::Checkout(dest))
    }

    async fn run_verify(&self, req: &RunRequest<'_>) -> Result<Output, StepError> {
        let checkout = match &req.input {
            Some(Output::Checkout(p)) => p.clone(),
            _ => {
                return Err(StepError::Internal(
                    "verify-dockerfile ran without a checkout".into(),
                ));
            }
        };
        // File reads and an fsync: on the blocking pool, not the async runtime's threads.
        let (dir, rt, commit) = (
            checkout.clone(),
            req.node.runtime().clone(),
            req.commit.to_owned(),
        );
        let (b3, checkout_id) = tokio::task::spawn_blocking(move || {
            Ok::<_, StepError>((
                hash_dockerfile(&dir, &rt, &commit)?,
                give_checkout_an_id(&dir)?,
            ))
        })
        .await
        .map_err(|e| StepError::Internal(format!("verify task: {e}")))??;
        self.record(StepKind::VerifyDockerfile, req.key, req.node, |r| {
            r.commit = Some(req.commit.to_owned());
            r.dockerfile_blake3 = Some(b3.clone());
            r.checkout_id = Some(checkout_id);
        })
        .await?;
        Ok(Output::Verified {
            checkout,
            dockerfile_blake3: b3,
        })
    }

    async fn run_build(&self, req: &RunRequest<'_>) -> Result<Output, StepError> {
        let inputs = key::build_inputs(req.node, req.commit);
        let tags: Vec<String> = req
            .node
            .runtimes
            .iter()
            .map(|rt| rt.pinned_tag(req.commit))
            .collect();
        let candidates: Vec<String> = tags.iter().cloned().chain(latest_tags(req.node)).collect();
        // A re-tag needs no input: the image is there under another candidate tag.
        let (id, dockerfile_blake3) =
            match self.existing_image(&candidates, req.key, &inputs).await? {
                Some((_, info)) => {
                    let b3 = info.labels.get(eng::LABEL_DOCKERFILE_BLAKE3).cloned();
                    (info.id, b3.filter(|b| crate::ids::is_blake3_hex(b)))
                }
                None => self.build_from_input(req, &inputs, &tags[0]).await?,
            };
        for tag in &tags {
            if self.engine.inspect(tag).await?.is_none_or(|i| i.id != id) {
                self.engine.tag(&id, tag).await?;
            }
        }
        self.record(StepKind::Build, req.key, req.node, |r| {
            r.commit = Some(req.commit.to_owned());
            r.dockerfile_blake3 = dockerfile_blake3;
            r.image_id = Some(id.clone());
        })
        .await?;
        Ok(Output::Image { id })
    }

    /// Builds from the verified checkout the step's input carries: `(image ID, digest)`.
    async fn build_from_input(
        &self,
        req: &RunRequest<'_>,
        inputs: &key::BuildInputs,
        tag: &str,
    ) -> Result<(String, Option<String>), StepError> {
        let Some(Output::Verified {
            checkout,
            dockerfile_blake3,
        }) = &req.input
        else {
            return Err(StepError::Internal(format!(
                "build was to re-tag an existing image, but no image with key {} is left under {}\n  help: run the command again; it will build",
                req.key.short(),
                req.node.runtime().latest_tag()
            )));
        };
        let build = build_request(req, checkout, dockerfile_blake3, inputs, tag);
        let sink = req.sink.clone();
        let step = req.step.clone();
        let on_line = move |line: &str| {
            sink(&Event::Output {
                step: step.clone(),
                line: crate::mask::mask(line).into_owned(),
            })
        };
        let id = self.engine.build(&build, on_line).await?;
        Ok((id, Some(dockerfile_blake3.clone())))
    }

    /// An image already carrying the key under one of `tags` (another runtime built it, or
    /// only the pinned tag was removed): `(tag, image)`.
    async fn existing_image(
        &self,
        tags: &[String],
        key: &Key,
        inputs: &key::BuildInputs,
    ) -> Result<Option<(String, ImageInfo)>, StepError> {
        for tag in tags {
            if let Some(info) = self.engine.inspect(tag).await?
                && label_mismatch(&info, key, inputs).is_none()
            {
                return Ok(Some((tag.clone(), info)));
            }
        }
        Ok(None)
    }

    async fn run_tag(&self, req: &RunRequest<'_>) -> Result<Output, StepError> {
        let Some(Output::Image { id }) = &req.input else {
            return Err(StepError::Internal(
                "tag-latest ran without an image".into(),
            ));
        };
        let latest = req.node.runtime().latest_tag();
        if self
            .engine
            .inspect(&latest)
            .await?
            .is_none_or(|i| &i.id != id)
        {
            self.engine.tag(id, &latest).await?;
        }
        self.record(StepKind::TagLatest, req.key, req.node, |r| {
            r.commit = Some(req.commit.to_owned());
            r.image_id = Some(id.clone());
        })
        .await?;
        Ok(Output::Tagged { id: id.clone() })
    }
}

/// The checkout's id; a checkout cloned before checkouts had ids gets one now, so that its
/// verify record can name it (and the next run trusts that record).
fn give_checkout_an_id(checkout: &Path) -> Result<String, StepError> {
    if let Some(id) = store::checkout_id(checkout) {
        return Ok(id);
    }
    let id = store::new_checkout_id(checkout);
    store::write_checkout_id(checkout, &id)?;
    Ok(id)
}

fn latest_tags(node: &Node) -> Vec<String> {
    node.runtimes.iter().map(|rt| rt.latest_tag()).collect()
}

fn build_request(
    req: &RunRequest<'_>,
    checkout: &Path,
    b3: &str,
    inputs: &key::BuildInputs,
    tag: &str,
) -> BuildRequest {
    let rt = req.node.runtime();
    let labels = HashMap::from([
        (eng::LABEL_KEY.to_owned(), req.key.to_string()),
        (eng::LABEL_KEY_FORMAT.to_owned(), KEY_FORMAT.to_owned()),
        (eng::LABEL_REPO.to_owned(), inputs.repo.clone()),
        (eng::LABEL_DOCKERFILE.to_owned(), inputs.dockerfile.clone()),
        (eng::LABEL_DOCKERFILE_BLAKE3.to_owned(), b3.to_owned()),
        (eng::LABEL_PLATFORM.to_owned(), inputs.platform.clone()),
        (
            eng::LABEL_PARAMS.to_owned(),
            serde_json::to_string(&inputs.params).expect("string map"),
        ),
        (eng::LABEL_REVISION.to_owned(), req.commit.to_owned()),
        (eng::LABEL_SOURCE.to_owned(), inputs.repo.clone()),
    ]);
    BuildRequest {
        context_dir: checkout.to_owned(),
        dockerfile: rt.dockerfile.clone(),
        tag: tag.to_owned(),
        platform: rt.platform.clone(),
        target: req.node.params.get("target").cloned(),
        labels,
        repo: inputs.repo.clone(),
        commit: req.commit.to_owned(),
    }
}

/// The build inputs an image's labels state (missing labels read as empty), from which its
/// key can be recomputed.
pub fn inputs_from_labels(labels: &HashMap<String, String>) -> key::BuildInputs {
    let get = |name: &str| labels.get(name).cloned().unwrap_or_default();
    key::BuildInputs {
        repo: get(eng::LABEL_REPO),
        commit: get(eng::LABEL_REVISION),
        dockerfile: get(eng::LABEL_DOCKERFILE),
        platform: get(eng::LABEL_PLATFORM),
        params: labels
            .get(eng::LABEL_PARAMS)
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or_default(),
    }
}

/// Why an image's labels do not prove it is the output of `key`; `None` when they do.
/// The key is recomputed from the labels, so a copied key label alone is not trusted.
pub fn label_mismatch(info: &ImageInfo, key: &Key, expected: &key::BuildInputs) -> Option<String> {
    let l = &info.labels;
    let Some(label_key) = l.get(eng::LABEL_KEY) else {
        return Some("it was not built by planner (no key label)".into());
    };
    let from_labels = inputs_from_labels(l);
    if label_key == key.as_str() && key::build_key(&from_labels) == *key {
        return None;
    }
    let diffs = [
        ("repo", &from_labels.repo, &expected.repo),
        ("commit", &from_labels.commit, &expected.commit),
        ("dockerfile", &from_labels.dockerfile, &expected.dockerfile),
        ("platform", &from_labels.platform, &expected.platform),
    ];
    let changed: Vec<String> = diffs
        .iter()
        .filter(|(_, a, b)| a != b)
        .map(|(n, a, b)| format!("{n} {a} -> {b}"))
        .collect();
    if !changed.is_empty() {
        return Some(format!("key changed: {}", changed.join(", ")));
    }
    if from_labels.params != expected.params {
        return Some("key changed: step params".into());
    }
    Some(
        if l.get(eng::LABEL_KEY_FORMAT).map(String::as_str) != Some(KEY_FORMAT) {
            format!(
                "key format changed ({} -> {KEY_FORMAT})",
                l.get(eng::LABEL_KEY_FORMAT).map_or("none", String::as_str)
            )
        } else {
            "its labels do not match its key label".into()
        },
    )
}

/// Checks the Dockerfile is a regular file inside the checkout, within the cap; returns its blake3.
pub fn hash_dockerfile(checkout: &Path, rt: &Runtime, commit: &str) -> Result<String, StepError> {
    let fail = |what: String| {
        StepError::Dockerfile(format!(
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

impl World for RealWorld {
    async fn probe(&self, req: ProbeRequest<'_>) -> Result<Probe, StepError> {
        match req.node.kind {
            StepKind::ResolveHead => Err(StepError::Internal("resolve-head is not probed".into())),
            StepKind::Clone => Ok(self.probe_clone(req.node, req.commit).await),
            StepKind::VerifyDockerfile => {
                Ok(self.probe_verify(req.node, req.key, req.commit).await)
            }
            StepKind::Build => self.probe_build(&req).await,
            StepKind::TagLatest => self.probe_tag(req.node, req.input).await,
        }
    }
}

impl Effects for RealWorld {
    type Lock = Option<store::KeyLock>;

    async fn resolve(&self, node: &Node, key: &Key, offline: bool) -> Result<Resolved, StepError> {
        let rt = node.runtime();
        debug_assert_eq!(*key, key::resolve_key(&rt.repo_identity(), &rt.branch));
        let previous = self
            .store
            .recorded_head(&rt.repo_identity(), &rt.branch)
            .and_then(|r| r.commit);
        if offline {
            return match previous {
                Some(c) => Ok(Resolved {
                    reason: format!("offline: last recorded {} is {}", rt.branch, sha12(&c)),
                    commit: c.clone(),
                    previous: Some(c),
                    status: Status::Skip,
                }),
                None => Err(StepError::Offline(format!(
                    "offline and no recorded answer for branch {:?} of {}\n  help: run `planner ensure` (or `planner plan` without --offline) once with network access",
                    rt.branch,
                    rt.repo_identity()
                ))),
            };
        }
        let commit =
            git::resolve_head(&self.http, &rt.repo, &rt.branch, &rt.name, &self.auth).await?;
        let reason = match &previous {
            Some(p) if *p != commit => format!("new commit {} (was {})", sha12(&commit), sha12(p)),
            Some(_) => format!("{} still at {}", rt.branch, sha12(&commit)),
            None => format!("{} is at {}", rt.branch, sha12(&commit)),
        };
        // A warm run finds every branch where it was: only the time is new, so no fsync.
        let changed = previous.as_deref() != Some(commit.as_str());
        self.record_with(changed, StepKind::ResolveHead, key, node, |r| {
            r.branch = Some(rt.branch.clone());
            r.commit = Some(commit.clone());
        })
        .await?;
        Ok(Resolved {
            commit,
            previous,
            status: Status::Run,
            reason,
        })
    }

    async fn lock(&self, key: &Key, on_wait: &(dyn Fn() + Sync)) -> Result<Self::Lock, StepError> {
        if self.read_only {
            return Ok(None);
        }
        if let Some(lock) = self.store.try_lock(key)? {
            return Ok(Some(lock));
        }
        on_wait();
        Ok(Some(self.store.lock(key).await?))
    }

    async fn run(&self, req: RunRequest<'_>) -> Result<Output, StepError> {
        match req.node.kind {
            StepKind::ResolveHead => Err(StepError::Internal(
                "resolve-head runs in the resolve phase".into(),
            )),
            StepKind::Clone => self.run_clone(&req).await,
            StepKind::VerifyDockerfile => self.run_verify(&req).await,
            StepKind::Build => self.run_build(&req).await,
            StepKind::TagLatest => self.run_tag(&req).await,
        }
    }
}
