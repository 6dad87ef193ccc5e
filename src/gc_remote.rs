//! `planner gc --remote --keep N`: removes old entries of the shared cache ([`crate::cache`]).
//!
//! For each runtime of the configuration, the cache repository `{cache.registry}/{runtime}`
//! is listed (`tags/list`, every page). Its `k-<key>` entries are ranked newest first by
//! their image config's `created` (when the build ran; the ties and entries without one
//! rank by tag, oldest last). Kept: the newest N, and the entry the runtime's current
//! `s-<source key>` pointer names (current: the source key of the image the local
//! `{image_prefix}{runtime}:latest` names, when this machine has one). The others are removed
//! with `DELETE /v2/<name>/manifests/<digest>`, which also removes every other tag on that
//! digest (the pointers of the removed builds). `s-` pointers are never deleted by name, and
//! a digest a kept tag names is never deleted: an entry on it is kept too, and says so.
//!
//! A runtime whose listing or any entry cannot be read removes nothing (its ranking would be
//! a guess). A registry with deletes disabled (405) stops the run: every later delete would
//! fail the same way. [`plan`] decides and deletes nothing (the dry run); [`execute`] deletes.

use std::collections::HashMap;
use std::sync::Arc;

use crate::cache::source_key;
use crate::config::{CacheSettings, Runtime};
use crate::docker::Engine;
use crate::docker::images::parse_rfc3339_nanos;
use crate::gc::ItemStatus;
use crate::registry::{ImageRef, Registry, RegistryError};
use crate::steps::build::inputs_from_labels;

/// A cache entry gc removes (or would, or could not), or keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    pub runtime: String,
    /// `{cache}/{runtime}:k-<key>`.
    pub reference: String,
    /// The manifest (or index) digest the tag names: what is deleted.
    pub digest: String,
    /// The image config's `created`, as the registry holds it.
    pub created: Option<String>,
    /// Kept: why (`newest 1`, `the current pointer s-…`). Removed: why it is garbage.
    pub reason: String,
    /// Removed entries: where they stand. Kept ones are `Skipped` with the reason.
    pub status: ItemStatus,
    /// A kept entry that would have gone but for its digest: the kept tag that names it too.
    pub also_named_by: Option<String>,
}

/// What `gc --remote` decided (and, after [`execute`], did).
#[derive(Debug, Clone, Default)]
pub struct RemoteGc {
    /// `cache.registry`.
    pub registry: String,
    pub keep: usize,
    pub dry_run: bool,
    pub kept: Vec<RemoteEntry>,
    pub items: Vec<RemoteEntry>,
    /// Runtimes left alone because their entries could not be read: the error text.
    pub errors: Vec<String>,
}

impl RemoteGc {
    /// Entries removed (or, in a dry run, that would be).
    pub fn removed(&self) -> usize {
        let done = |i: &&RemoteEntry| matches!(i.status, ItemStatus::Planned | ItemStatus::Removed);
        self.items.iter().filter(done).count()
    }

    /// Entries whose removal failed, plus runtimes left alone on an error.
    pub fn failed(&self) -> usize {
        let failed = |i: &&RemoteEntry| matches!(i.status, ItemStatus::Failed(_));
        self.items.iter().filter(failed).count() + self.errors.len()
    }
}

/// One k- entry as listed.
struct Listed {
    reference: ImageRef,
    digest: String,
    created: Option<String>,
    created_ns: i128,
}

/// Decides which entries of each runtime's cache repository go. Deletes nothing.
pub async fn plan(
    registry: &Registry,
    engine: &Engine,
    cache: &CacheSettings,
    runtimes: &[Arc<Runtime>],
    keep: usize,
    dry_run: bool,
) -> RemoteGc {
    let mut gc = RemoteGc {
        registry: cache.registry.clone(),
        keep: keep.max(1),
        dry_run,
        ..RemoteGc::default()
    };
    for rt in runtimes {
        let Ok(repo) = ImageRef::parse(&format!("{}/{}:latest", cache.registry, rt.name)) else {
            continue;
        };
        match survey(registry, engine, &repo, rt).await {
            Ok((entries, current)) => decide(&mut gc, &rt.name, entries, current.as_deref()),
            Err(e) => gc.errors.push(format!(
                "{}: left alone: cannot read the shared cache {}/{}: {e}",
                rt.name, repo.registry, repo.repository
            )),
        }
    }
    gc
}

/// The runtime's k- entries and the digest its current pointer names.
async fn survey(
    registry: &Registry,
    engine: &Engine,
    repo: &ImageRef,
    rt: &Runtime,
) -> Result<(Vec<Listed>, Option<String>), RegistryError> {
    let tags = registry.list_tags(repo).await?;
    let mut entries = Vec::new();
    for tag in tags.iter().filter(|t| t.starts_with("k-")) {
        let reference = ImageRef {
            tag: tag.clone(),
            ..repo.clone()
        };
        let resolved = registry.resolve(&reference, &rt.platform).await?;
        let config = registry.image_config(&reference, &resolved.digest).await?;
        let created_ns = config
            .created
            .as_deref()
            .and_then(parse_rfc3339_nanos)
            .unwrap_or(0);
        entries.push(Listed {
            reference,
            digest: resolved.index_digest.unwrap_or(resolved.digest),
            created: config.created,
            created_ns,
        });
    }
    let current = match current_pointer(engine, rt).await {
        Some(tag) if tags.contains(&tag) => {
            let pointer = ImageRef {
                tag,
                ..repo.clone()
            };
            let resolved = registry.resolve(&pointer, &rt.platform).await?;
            Some(resolved.index_digest.unwrap_or(resolved.digest))
        }
        _ => None,
    };
    Ok((entries, current))
}

/// `s-<source key>` of the image the runtime's local `:latest` names, if there is one.
async fn current_pointer(engine: &Engine, rt: &Runtime) -> Option<String> {
    let info = engine.inspect(&rt.latest_tag()).await.ok()??;
    let inputs = inputs_from_labels(&info.labels);
    (!inputs.commit.is_empty()).then(|| format!("s-{}", source_key(&inputs)))
}

/// Keeps the newest `gc.keep` entries and the current pointer's, and every entry on a digest
/// one of those names (a delete removes the digest, so every tag on it); plans the rest.
fn decide(gc: &mut RemoteGc, runtime: &str, mut entries: Vec<Listed>, current: Option<&str>) {
    entries.sort_by(|a, b| (b.created_ns, &b.reference.tag).cmp(&(a.created_ns, &a.reference.tag)));
    // The first kept tag (by rank) naming each kept digest.
    let mut kept_digests: HashMap<String, String> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        if i < gc.keep || current == Some(e.digest.as_str()) {
            let tag = e.reference.to_string();
            kept_digests.entry(e.digest.clone()).or_insert(tag);
        }
    }
    for (i, e) in entries.into_iter().enumerate() {
        let pointed = current == Some(e.digest.as_str());
        let twin = kept_digests
            .get(&e.digest)
            .filter(|t| **t != e.reference.to_string());
        let reason = match (i < gc.keep, pointed, twin) {
            (true, _, _) => format!("newest {}", i + 1),
            (false, true, _) => "the runtime's current s- pointer names it".to_owned(),
            (false, false, Some(tag)) => format!(
                "older than the newest {}; kept: also named by kept tag {tag}, and a delete removes the digest",
                gc.keep
            ),
            (false, false, None) => format!("older than the newest {}", gc.keep),
        };
        let kept = i < gc.keep || pointed || twin.is_some();
        let entry = RemoteEntry {
            runtime: runtime.to_owned(),
            reference: e.reference.to_string(),
            digest: e.digest,
            created: e.created,
            status: match kept {
                true => ItemStatus::Skipped(reason.clone()),
                false => ItemStatus::Planned,
            },
            reason,
            also_named_by: twin.cloned().filter(|_| i >= gc.keep && !pointed),
        };
        match kept {
            true => gc.kept.push(entry),
            false => gc.items.push(entry),
        }
    }
}

/// Deletes the planned entries. A registry with deletes disabled fails the entry and leaves
/// the rest (they would fail alike).
pub async fn execute(registry: &Registry, gc: &mut RemoteGc) {
    let mut disabled: Option<String> = None;
    for item in &mut gc.items {
        if item.status != ItemStatus::Planned {
            continue;
        }
        if let Some(why) = &disabled {
            item.status = ItemStatus::Skipped(why.clone());
            continue;
        }
        let Ok(image) = ImageRef::parse(&item.reference) else {
            item.status = ItemStatus::Failed(format!("invalid reference {}", item.reference));
            continue;
        };
        item.status = match registry.delete_manifest(&image, &item.digest).await {
            Ok(()) => ItemStatus::Removed,
            Err(e @ RegistryError::DeleteDisabled { .. }) => {
                disabled = Some(format!(
                    "not tried: registry {} has deletes disabled",
                    image.registry
                ));
                ItemStatus::Failed(e.to_string())
            }
            Err(e) => ItemStatus::Failed(e.to_string()),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(tag: &str, digest: char, created_ns: i128) -> Listed {
        Listed {
            reference: ImageRef::parse(&format!("127.0.0.1:5000/c/rt:{tag}")).unwrap(),
            digest: format!("sha256:{}", digest.to_string().repeat(64)),
            created: None,
            created_ns,
        }
    }

    fn decided(keep: usize, entries: Vec<Listed>, current: Option<char>) -> RemoteGc {
        let mut gc = RemoteGc {
            keep,
            ..RemoteGc::default()
        };
        let current = current.map(|c| format!("sha256:{}", c.to_string().repeat(64)));
        decide(&mut gc, "rt", entries, current.as_deref());
        gc
    }

    fn tags(entries: &[RemoteEntry]) -> Vec<&str> {
        entries
            .iter()
            .map(|e| e.reference.rsplit_once(':').unwrap().1)
            .collect()
    }

    #[test]
    fn a_digest_a_kept_tag_names_is_never_planned_for_deletion() {
        let entries = vec![
            listed("k-new", 'a', 3),
            listed("k-old", 'b', 1),
            listed("k-twin", 'b', 1),
            listed("k-gone", 'c', 0),
        ];
        let gc = decided(2, entries, None);
        assert_eq!(tags(&gc.kept), ["k-new", "k-twin", "k-old"]);
        assert_eq!(tags(&gc.items), ["k-gone"]);
        let spared = &gc.kept[2];
        assert_eq!(
            spared.also_named_by.as_deref(),
            Some("127.0.0.1:5000/c/rt:k-twin")
        );
        assert!(
            spared
                .reason
                .contains("kept: also named by kept tag 127.0.0.1:5000/c/rt:k-twin"),
            "{}",
            spared.reason
        );
        assert_eq!(gc.kept[0].also_named_by, None);
    }

    #[test]
    fn the_current_pointers_digest_keeps_every_tag_on_it() {
        let entries = vec![
            listed("k-new", 'a', 3),
            listed("k-cur", 'b', 1),
            listed("k-cur2", 'b', 0),
        ];
        let gc = decided(1, entries, Some('b'));
        assert_eq!(tags(&gc.kept), ["k-new", "k-cur", "k-cur2"]);
        assert!(gc.items.is_empty());
    }
}
