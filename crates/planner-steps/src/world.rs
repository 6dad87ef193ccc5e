//! The real world: the git host, the Docker engine and the cache dir.
//!
//! Probes ask the engine and the filesystem (records only say what saves work); runs do the
//! work and commit the step's record as soon as it succeeds. What each kind probes and runs
//! lives in its module ([`crate::Work`]); this is what they share (records, the blocking
//! pool, checkout checks). The core's side-effect traits are implemented for it in
//! [`crate::dispatch`], above the kinds, which hands each call to the step's kind.

use std::collections::HashMap;

use crate::error::Error;
use crate::record::RecordFields;
use planner_core::key::Key;
use planner_core::plan::{Node, Resolved, StepKind};
use planner_core::store::{self, CheckoutState, Record, Store};
use planner_docker::Engine;
use planner_git::{self as git, GitAuth};

/// The real side effects. `read_only` worlds (for `plan`) never write.
pub struct RealWorld {
    pub store: Store,
    pub engine: Engine,
    pub http: reqwest::Client,
    pub auth: GitAuth,
    /// The registry client (registry runtimes), with its per-run token cache.
    pub registry: planner_registry::Registry,
    /// The package index client (`resolve-version`), each package asked once per run.
    pub index: planner_index::Index,
    /// Base images resolved this run, each once ([`crate::bases`]).
    pub bases: crate::bases::Resolver,
    /// The shared cache of builds (`[cache]`), when configured.
    pub cache: crate::cache::SharedCache,
    pub read_only: bool,
}

impl RealWorld {
    /// This world with an engine view that has already asked about every tag deciding
    /// `graph` probes (each runtime's pinned tag at its resolved revision, `:latest`, and a registry runtime's
    /// digest reference and registry tag), all at
    /// once ([`Engine::prefetched`]): for deciding a whole graph. Never for the scheduler,
    /// whose re-check after a lock must see the engine as it is.
    pub async fn for_deciding(
        &self,
        graph: &planner_core::plan::Graph,
        resolutions: &HashMap<planner_core::plan::NodeId, Result<Resolved, String>>,
    ) -> RealWorld {
        let mut references = Vec::new();
        let mut prefixes = Vec::new();
        for (&id, resolved) in resolutions {
            let Ok(resolved) = resolved else { continue };
            // Only a source's answer (a commit, a digest) names images.
            if graph.node(id).kind.get().source().is_none() {
                continue;
            }
            for rt in &graph.node(id).runtimes {
                references.push(rt.pinned_tag(&resolved.revision));
                references.push(rt.latest_tag());
                prefixes.push(rt.image_prefix.clone());
                if let Some(image) = rt.registry_image() {
                    references.push(image.with_digest(&resolved.revision));
                    references.push(image.to_string());
                }
            }
        }
        RealWorld {
            store: self.store.clone(),
            engine: self.engine.prefetched(references, prefixes).await,
            http: self.http.clone(),
            auth: self.auth.clone(),
            registry: self.registry.clone(),
            index: self.index.clone(),
            bases: self.bases.clone(),
            cache: self.cache.clone(),
            read_only: self.read_only,
        }
    }
}

impl RealWorld {
    pub(crate) async fn record(
        &self,
        kind: StepKind,
        key: &Key,
        node: &Node,
        fill: impl FnOnce(&mut RecordFields),
    ) -> Result<(), Error> {
        self.record_with(true, kind, key, node, fill).await
    }

    /// Runs a cache-dir operation on the blocking pool: fsyncs, retried removals and
    /// recursive deletes must not stall the async runtime's threads, where the steps of the
    /// other runtimes run.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Store) -> Result<T, store::StoreError> + Send + 'static,
    ) -> Result<T, Error> {
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || op(&store))
            .await
            .map_err(|e| Error::Internal(format!("cache dir task: {e}")))??)
    }

    /// Writes a step's record; not `durable` when it restates what the record already says
    /// but the time (see [`Store::refresh_record`]).
    pub(crate) async fn record_with(
        &self,
        durable: bool,
        kind: StepKind,
        key: &Key,
        node: &Node,
        fill: impl FnOnce(&mut RecordFields),
    ) -> Result<(), Error> {
        if self.read_only {
            return Ok(());
        }
        let mut fields = RecordFields::default();
        fill(&mut fields);
        let rec = Record {
            schema: store::RECORD_SCHEMA,
            kind: kind.name().into(),
            key: key.clone(),
            runtimes: node.runtime_names(),
            repo: node.runtime().repo_identity(),
            fields: fields.into_map(),
            finished_at: store::now_secs(),
        };
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
    pub(crate) async fn checkout_state(&self, repo: &str, commit: &str) -> CheckoutState {
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
            Err(git::GitError::GitMissing { .. }) => state,
            Err(e) => CheckoutState::Corrupt(e.to_string()),
        }
    }
}
