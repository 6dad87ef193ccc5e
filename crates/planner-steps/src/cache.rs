//! The shared cache: built images in an OCI registry, addressed by their build key, so a
//! build made on one machine is pulled, not rebuilt, on every other (`[cache]`).
//!
//! An entry is `{cache.registry}/{runtime}:k-<key>`: the tag is the content address, and
//! planner never moves one that exists. Beside it, `{runtime}:s-<source key>` names the
//! latest build of a commit and configuration (the build key without its base images): a
//! machine that has never built the commit reads the bases from that image's labels, resolves
//! them, and so knows the full key without cloning. Both are only hints until checked: an
//! entry counts only when its labels recompute to the key (the build step checks them), and a
//! pointer only gives base references, whose digests are resolved anew. A pointer only ever
//! saves a clone: a machine that clones (no entry under the key the pointer gave) keys,
//! labels and publishes the build on the bases its verified Dockerfile names, warns when the
//! pointer named others, and replaces the pointer (after a build, and after a hit).
//!
//! Any cache error (unreachable, 5xx, auth) is a miss: the build goes on locally, the run
//! warns once, and the cache is not asked again in that run.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::bases::Base;
use crate::labels::{
    self, BuildInputs, inputs_from_labels, key as build_key, label_mismatch, same_source,
    source_only,
};
use planner_config::CacheSettings;
use planner_core::key::Key;
use planner_docker::Engine;
use planner_docker::engine::ImageInfo;
use planner_registry::{ImageRef, Registry, RegistryError};

/// The shared cache as one run sees it (cheap to clone: the warning flag is shared).
#[derive(Clone)]
pub struct SharedCache {
    settings: Option<CacheSettings>,
    registry: Registry,
    warned: Arc<AtomicBool>,
    /// Set when the cache failed (not when it held a refused entry).
    broken: Arc<AtomicBool>,
}

/// An entry the cache holds: its manifest digest and its image's labels.
#[derive(Debug, Clone)]
pub struct Entry {
    pub image: ImageRef,
    pub digest: String,
    pub labels: HashMap<String, String>,
}

impl SharedCache {
    pub fn new(settings: Option<CacheSettings>, registry: Registry) -> SharedCache {
        SharedCache {
            settings,
            registry,
            warned: Arc::default(),
            broken: Arc::default(),
        }
    }

    /// Whether builds look here first.
    pub fn pulls(&self) -> bool {
        self.settings.as_ref().is_some_and(|s| s.pull)
    }

    /// Whether builds are published here.
    pub fn pushes(&self) -> bool {
        self.settings.as_ref().is_some_and(|s| s.push)
    }

    /// `{cache}/{runtime}:k-<key>`, the entry of a build.
    pub fn entry(&self, runtime: &str, key: &Key) -> Option<ImageRef> {
        self.reference(runtime, &format!("k-{key}"))
    }

    /// `{cache}/{runtime}:s-<source key>`, the latest build of a commit and configuration.
    pub fn pointer(&self, runtime: &str, source: &Key) -> Option<ImageRef> {
        self.reference(runtime, &format!("s-{source}"))
    }

    fn reference(&self, runtime: &str, tag: &str) -> Option<ImageRef> {
        let s = self.settings.as_ref()?;
        ImageRef::parse(&format!("{}/{runtime}:{tag}", s.registry)).ok()
    }

    /// What the cache holds at `image` for `platform`: `None` on a miss, and on any error
    /// (after one warning per run).
    pub async fn look(&self, image: &ImageRef, platform: &str) -> Option<Entry> {
        if self.failed() {
            return None;
        }
        let found = async {
            let digest = self.registry.resolve(image, platform).await?.digest;
            let labels = self.registry.image_labels(image, &digest).await?;
            Ok::<_, RegistryError>((digest, labels))
        };
        match found.await {
            Ok((digest, labels)) => Some(Entry {
                image: image.clone(),
                digest,
                labels,
            }),
            Err(RegistryError::NotFound { .. }) => None,
            Err(e) => {
                self.fail(
                    &format!("cannot read the shared cache at {image}"),
                    &e.to_string(),
                );
                None
            }
        }
    }

    /// Whether the cache failed this run: it is not asked again (a broken cache would
    /// otherwise cost every build its timeouts and the engine's push retries).
    fn failed(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }

    /// Warns (once per run) that the cache failed, and stops asking it.
    fn fail(&self, what: &str, error: &str) {
        self.broken.store(true, Ordering::Relaxed);
        self.warn(what, error);
    }

    /// Warns once per run that the cache failed; the build goes on locally.
    pub fn warn(&self, what: &str, error: &str) {
        if self.warned.swap(true, Ordering::Relaxed) {
            return;
        }
        let first = error.lines().next().unwrap_or_default();
        tracing::warn!(
            target: "planner::cache",
            "{}",
            planner_base::mask::mask(&format!(
                "{what}: {first}\n  help: builds go on locally; check [cache] registry in runtimes.toml and access to it (further cache errors in this run are not shown)"
            ))
        );
    }
}

/// What the cache says about a build.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// An entry whose labels prove it is the build of the key.
    Hit(Entry),
    /// An entry whose labels do not (tampered with, or another planner's): not trusted.
    Refused {
        image: ImageRef,
        why: String,
    },
    Miss,
}

impl SharedCache {
    /// Looks for the build of `key` (its labels must recompute to it and state `expected`).
    pub async fn lookup(&self, runtime: &str, key: &Key, expected: &BuildInputs) -> Lookup {
        let Some(image) = self.entry(runtime, key).filter(|_| self.pulls()) else {
            return Lookup::Miss;
        };
        let Some(entry) = self.look(&image, &expected.platform).await else {
            return Lookup::Miss;
        };
        let info = ImageInfo {
            id: entry.digest.clone(),
            labels: entry.labels.clone(),
        };
        match label_mismatch(&info, key, expected) {
            None => Lookup::Hit(entry),
            Some(why) => {
                self.warn(&format!("refused shared cache entry {image}"), &why);
                Lookup::Refused { image, why }
            }
        }
    }

    /// The base references the latest cached build of these inputs (bases aside) states, and
    /// the pointer that states them. Only a hint: it may save a clone, never decide a build
    /// whose checkout planner holds ([`crate::bases::derived_over_hint`]).
    pub async fn bases_hint(
        &self,
        runtime: &str,
        expected: &BuildInputs,
    ) -> Option<(Vec<Base>, ImageRef)> {
        let image = self
            .pointer(runtime, &source_key(expected))
            .filter(|_| self.pulls())?;
        let entry = self.look(&image, &expected.platform).await?;
        let same = same_source(&inputs_from_labels(&entry.labels), expected);
        let bases = crate::bases::from_label(entry.labels.get(labels::LABEL_BASES));
        bases.filter(|_| same).map(|b| (b, image))
    }

    /// After a hit for a build whose checkout planner holds: points the pointer of `inputs` at
    /// the image `id` of `key` unless its labels prove that key already (a pointer that named
    /// other bases, or none, is replaced). An error is a warning.
    pub async fn repoint(
        &self,
        engine: &Engine,
        runtime: &str,
        key: &Key,
        inputs: &BuildInputs,
        id: &str,
    ) {
        let Some(pointer) = self
            .pointer(runtime, &source_key(inputs))
            .filter(|_| self.pushes() && !self.failed())
        else {
            return;
        };
        let current = self.look(&pointer, &inputs.platform).await;
        // Its labels must prove the key: a copied key label over other bases does not.
        let proves = |e: &Entry| {
            let info = ImageInfo {
                id: e.digest.clone(),
                labels: e.labels.clone(),
            };
            label_mismatch(&info, key, inputs).is_none()
        };
        if self.failed() || current.as_ref().is_some_and(proves) {
            return;
        }
        if let Err(e) = self.push(engine, &pointer, id).await {
            self.fail(
                &format!("cannot publish to the shared cache at {pointer}"),
                &e,
            );
        }
    }

    /// Publishes the image `id`, the build of `key`: under its entry unless the cache has one
    /// (an entry never moves), and under the pointer of its inputs. Returns the entry's
    /// digest; an error is a warning (the build itself succeeded).
    pub async fn publish(
        &self,
        engine: &Engine,
        runtime: &str,
        key: &Key,
        inputs: &BuildInputs,
        id: &str,
    ) -> Option<String> {
        let entry = self
            .entry(runtime, key)
            .filter(|_| self.pushes() && !self.failed())?;
        let pointer = self.pointer(runtime, &source_key(inputs))?;
        let published = async {
            let existing = self.look(&entry, &inputs.platform).await;
            if self.failed() {
                return Err("the cache failed earlier in this run".to_owned());
            }
            let digest = match existing {
                Some(found) => found.digest,
                None => self.push(engine, &entry, id).await?,
            };
            self.push(engine, &pointer, id).await?;
            Ok::<_, String>(digest)
        };
        match published.await {
            Ok(digest) => Some(digest),
            Err(e) => {
                self.fail(
                    &format!("cannot publish to the shared cache at {entry}"),
                    &e,
                );
                None
            }
        }
    }

    /// Tags `id` as `image`, pushes it with the user's credentials, and drops the tag again.
    async fn push(&self, engine: &Engine, image: &ImageRef, id: &str) -> Result<String, String> {
        let auth = self
            .registry
            .engine_auth(image)
            .await
            .map_err(|e| e.to_string())?;
        // The cache's name is not kept in the engine: the pinned tags name the image.
        engine
            .push_as(id, image, auth.as_deref())
            .await
            .map_err(|e| e.to_string())
    }
}

/// The key of a build's inputs without its base images and builder: what a pointer is named by.
pub fn source_key(inputs: &BuildInputs) -> Key {
    let without = source_only(inputs);
    let mut b = planner_core::key::KeyBuilder::new(labels::BUILD);
    b.field("source-of", build_key(&without).as_str());
    b.finish()
}
