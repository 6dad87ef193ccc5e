//! Base images as build inputs: each base a Dockerfile names ([`planner_docker::dockerfile`]),
//! resolved to the digest a build key covers, and made present in the engine at exactly
//! that digest before the build.
//!
//! Under `base_images = "track"` (the default) a base that came from a registry is asked of
//! that registry (one `HEAD`, through [`planner_registry::Registry`], its auth and backoff),
//! once per run and base; its key input is the registry's manifest digest for the platform.
//! A base the engine holds that no registry named (built or `docker import`ed on this
//! machine: no `RepoDigests` for its repository) is keyed on its engine image ID, and no
//! registry is asked. When the registry cannot answer, a base the engine holds is keyed on
//! the digest it was pulled at, with a note that updates could not be checked; a base it
//! does not hold is an error. Under `"local"` no registry is ever asked: every base is keyed
//! on the image ID the engine holds for it.
//!
//! A build's base references are read from its verified Dockerfile; before a checkout exists
//! they may come from a [`Hint`] (an image's labels, the shared cache's pointer), which only
//! saves a clone: once the checkout is there, the Dockerfile decides ([`derived_over_hint`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use planner_core::output::{Found, FoundData};

use crate::error::Error;
use planner_base::ids::short;
use planner_config::BaseImages;
use planner_docker::Engine;
use planner_docker::dockerfile::BaseRef;
use planner_registry::{ImageRef, Registry, RegistryError};

/// Where a base's digest came from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A registry manifest digest (what `reference@digest` pulls).
    Registry,
    /// The engine's image ID of a base no registry named.
    Local,
}

/// One base image as a build key covers it.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Base {
    /// The reference as the Dockerfile names it, after ARG substitution.
    pub reference: String,
    /// The platform it is resolved for (`--platform`, else the build's).
    pub platform: String,
    pub origin: Origin,
    /// `sha256:…`: the manifest digest ([`Origin::Registry`]) or image ID ([`Origin::Local`]).
    pub digest: String,
}

impl Base {
    /// The registry its reference names (`host[:port]`, `docker.io` for Docker Hub).
    pub fn registry(&self) -> Option<String> {
        ImageRef::parse(name_of(&self.reference))
            .ok()
            .map(|image| image.registry)
    }

    /// The reference the engine holds this base under at exactly its digest.
    pub fn pinned(&self) -> String {
        match self.origin {
            Origin::Local => self.digest.clone(),
            Origin::Registry => format!("{}@{}", name_of(&self.reference), self.digest),
        }
    }
}

/// What a build's key covers that only the world answers: its bases, sorted and deduplicated
/// (the key's canonical form), the builder that builds on this engine (`auto` resolved), and
/// what the user should know about how they were resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bases {
    pub bases: Vec<Base>,
    /// The effective builder (`buildkit` or `classic`); `None` until asked of the engine.
    pub builder: Option<planner_config::Builder>,
    /// Phrases for the plan ("could not check python:3.11 for updates: …").
    pub notes: Vec<String>,
    /// Where the references came from when not from the verified Dockerfile.
    pub hint: Option<Hint>,
}

/// What named a build's base references before its checkout was read: it is believed only
/// until the checkout exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// The labels of an image the engine holds, built from the same commit and configuration.
    Image(String),
    /// The shared cache's `s-` pointer for the commit and configuration (its reference).
    Pointer(String),
}

impl std::fmt::Display for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hint::Image(tag) => write!(f, "image {tag}"),
            Hint::Pointer(reference) => write!(f, "shared cache pointer {reference}"),
        }
    }
}

/// Most base references a warning names.
const MAX_SHOWN: usize = 4;

/// The bases read from the verified Dockerfile of `step`, which replace those `hinted` had
/// from a hint. A hint that named other bases is warned about, naming it, and noted in the
/// plan: it never decides the key of a build whose checkout planner holds.
pub fn derived_over_hint(hinted: &Bases, mut derived: Bases, step: &str) -> Bases {
    let Some(hint) = &hinted.hint else {
        return derived;
    };
    if hinted.bases == derived.bases {
        return derived;
    }
    let help = match hint {
        Hint::Pointer(_) => {
            "a pointer only saves a clone: this one was pushed by another planner version or tampered with, so check who can push to the shared cache; planner replaces it when it publishes ([cache] push)"
        }
        Hint::Image(_) => {
            "the image's labels were written by another planner version or came from a shared cache entry; the build is keyed and labelled on what the Dockerfile names"
        }
    };
    tracing::warn!(
        "{}",
        planner_base::mask::mask(&format!(
            "{hint} names the base images {} but the verified Dockerfile of {step} names {}: the Dockerfile's decide\n  help: {help}",
            listed(&hinted.bases),
            listed(&derived.bases)
        ))
    );
    derived
        .notes
        .push(format!("{hint} named other base images: ignored"));
    derived
}

/// `a:1 (sha256:…), b:2 (sha256:…)` (at most [`MAX_SHOWN`], then a count); `none`.
fn listed(bases: &[Base]) -> String {
    if bases.is_empty() {
        return "none".to_owned();
    }
    let named: Vec<String> = bases
        .iter()
        .map(|b| format!("{} ({})", b.reference, shown_digest(&b.digest)))
        .collect();
    planner_base::text::list(&named, MAX_SHOWN)
}

impl Bases {
    pub fn new(mut bases: Vec<Base>, notes: Vec<String>) -> Bases {
        bases.sort();
        bases.dedup();
        Bases {
            bases,
            builder: None,
            notes,
            hint: None,
        }
    }

    /// The label value images carry (`dev.planner.bases`): JSON, sorted.
    pub fn label(&self) -> String {
        serde_json::to_string(&self.bases).expect("plain data")
    }
}

/// A build's bases are what it discovers for its key ([`planner_core::Found`]).
impl FoundData for Bases {
    fn notes(&self) -> &[String] {
        &self.notes
    }

    fn hinted(&self) -> bool {
        self.hint.is_some()
    }

    /// A pointer only saves a clone: a checkout planner already holds decides when planning.
    fn input_decides_when_present(&self) -> bool {
        matches!(self.hint, Some(Hint::Pointer(_)))
    }

    fn over_hint(&self, derived: Found, step: &str) -> Found {
        match derived.get::<Bases>() {
            Some(bases) => Found::new(derived_over_hint(self, bases.clone(), step)),
            None => derived,
        }
    }
}

/// Most bases a label may list before it is read as unreadable.
const MAX_LABEL_BASES: usize = 256;

/// The bases an image's label states; `None` when absent or unreadable (an image's labels
/// may hold anything).
pub fn from_label(label: Option<&String>) -> Option<Vec<Base>> {
    let list: Vec<Base> = serde_json::from_str(label?).ok()?;
    let sane = list.len() <= MAX_LABEL_BASES
        && list.iter().all(|b| {
            planner_base::ids::is_manifest_digest(&b.digest)
                && b.reference.len() <= 1024
                && b.platform.len() <= 128
        });
    sane.then(|| Bases::new(list, Vec::new()).bases)
}

/// How the bases of `old` moved to `new`, one phrase per change
/// (`base python:3.11 moved sha256:ab12… → sha256:cd34…`); empty when equal.
pub fn changes(old: &[Base], new: &[Base]) -> Vec<String> {
    let at = |list: &[Base]| -> HashMap<(String, String), Base> {
        list.iter()
            .map(|b| ((b.reference.clone(), b.platform.clone()), b.clone()))
            .collect()
    };
    let (before, after) = (at(old), at(new));
    let mut out = Vec::new();
    for b in new {
        match before.get(&(b.reference.clone(), b.platform.clone())) {
            Some(o) if o.digest == b.digest => {}
            Some(o) => out.push(format!(
                "base {} moved {} → {}",
                b.reference,
                shown_digest(&o.digest),
                shown_digest(&b.digest)
            )),
            None => out.push(format!("base {} added", b.reference)),
        }
    }
    for b in old {
        if !after.contains_key(&(b.reference.clone(), b.platform.clone())) {
            out.push(format!("base {} removed", b.reference));
        }
    }
    out
}

/// `sha256:` and 12 hex digits.
pub fn shown_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, hex)) => format!("{alg}:{}…", short(hex)),
        None => short(digest).to_owned(),
    }
}

/// `name` of `name[:tag][@digest]` (a port's colon is not a tag's).
fn name_of(reference: &str) -> &str {
    let name = reference.split('@').next().unwrap_or(reference);
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    }
}

/// Why a base could not be resolved: names the base, the runtime and the fix.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BaseError {
    #[error(
        "base image {reference} of runtime {runtime:?} ({dockerfile}) is not a valid reference: {detail}\n  help: fix the FROM line of the Dockerfile, or the build_args it reads"
    )]
    Invalid {
        reference: String,
        runtime: String,
        dockerfile: String,
        detail: String,
    },
    #[error(
        "base image {reference} of runtime {runtime:?} is not in the engine, and base_images = \"local\" never asks a registry\n  help: `docker pull {reference}` (or build it) first, or set base_images = \"track\" in runtimes.toml"
    )]
    NotLocal { reference: String, runtime: String },
    #[error(
        "offline, and base image {reference} of runtime {runtime:?} is not in the engine\n  help: run `planner plan` without --offline (or `docker pull {reference}`) once with network access"
    )]
    Offline { reference: String, runtime: String },
    #[error(
        "cannot check base image {reference} of runtime {runtime:?} at its registry, and the engine does not hold it: {detail}\n  help: {help}"
    )]
    Unresolved {
        reference: String,
        runtime: String,
        detail: String,
        help: String,
    },
}

/// What one base resolved to, with a note when updates could not be checked.
#[derive(Debug, Clone)]
struct Answer {
    base: Base,
    note: Option<String>,
}

/// Resolves bases, each (reference, platform, mode) once per run: concurrent builds on one
/// base share one registry request.
#[derive(Clone, Default)]
pub struct Resolver {
    cells: Arc<Mutex<HashMap<Asked, Cell>>>,
    /// `plan --offline`: no registry is asked; a registry base is keyed on the digest the
    /// engine's copy was pulled at.
    offline: bool,
}

/// A base as asked: its reference, platform and mode.
type Asked = (String, String, BaseImages);
/// Its answer, once: shared by every build asking it.
type Cell = Arc<OnceCell<Result<Answer, String>>>;

/// What a build's bases are resolved against.
pub struct Context<'a> {
    pub engine: &'a Engine,
    pub registry: &'a Registry,
    pub runtime: &'a str,
    pub dockerfile: &'a str,
    pub mode: BaseImages,
    /// The build's platform (for bases without `--platform`).
    pub platform: &'a str,
}

impl Resolver {
    /// A resolver that never asks a registry (`plan --offline`).
    pub fn offline() -> Resolver {
        Resolver {
            offline: true,
            ..Resolver::default()
        }
    }

    /// Resolves every base of a build.
    pub async fn resolve_all(&self, cx: &Context<'_>, refs: &[BaseRef]) -> Result<Bases, Error> {
        let mut bases = Vec::new();
        let mut notes = Vec::new();
        for r in refs {
            let answer = self.resolve(cx, r).await?;
            bases.push(answer.base);
            notes.extend(answer.note);
        }
        notes.dedup();
        Ok(Bases::new(bases, notes))
    }

    async fn resolve(&self, cx: &Context<'_>, r: &BaseRef) -> Result<Answer, Error> {
        let platform = r.platform.clone().unwrap_or_else(|| cx.platform.to_owned());
        let cell = {
            let mut cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
            let id = (r.reference.clone(), platform.clone(), cx.mode);
            cells.entry(id).or_default().clone()
        };
        let answer = cell
            .get_or_init(|| async {
                resolve_one(cx, &r.reference, &platform, self.offline)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await;
        answer.clone().map_err(Error::Dockerfile)
    }
}

/// Resolves one base, asking the engine and (under `track`) the registry.
async fn resolve_one(
    cx: &Context<'_>,
    reference: &str,
    platform: &str,
    offline: bool,
) -> Result<Answer, Error> {
    let invalid = |detail: String| BaseError::Invalid {
        reference: reference.to_owned(),
        runtime: cx.runtime.to_owned(),
        dockerfile: cx.dockerfile.to_owned(),
        detail,
    };
    let base = |origin, digest: String| Base {
        reference: reference.to_owned(),
        platform: platform.to_owned(),
        origin,
        digest,
    };
    if let Some((_, digest)) = reference.split_once('@') {
        // Pinned by digest in the Dockerfile: nothing to track.
        if !planner_base::ids::is_manifest_digest(digest) {
            return Err(invalid(format!("{digest:?} is not a sha256 digest")).into());
        }
        ImageRef::parse(name_of(reference)).map_err(invalid)?;
        return Ok(Answer {
            base: base(Origin::Registry, digest.to_owned()),
            note: None,
        });
    }
    let image = ImageRef::parse(reference).map_err(invalid)?;
    let local = cx.engine.inspect_detail(reference).await?;
    if cx.mode == BaseImages::Local {
        let Some(local) = local else {
            return Err(BaseError::NotLocal {
                reference: reference.to_owned(),
                runtime: cx.runtime.to_owned(),
            }
            .into());
        };
        return Ok(Answer {
            base: base(Origin::Local, local.entry.id),
            note: None,
        });
    }
    let pulled_at = local.as_ref().map(|l| repo_digest(&l.repo_digests, &image));
    if let Some((l, None)) = local.as_ref().zip(pulled_at.clone()) {
        // Held by the engine, named by no registry: built or imported here.
        return Ok(Answer {
            base: base(Origin::Local, l.entry.id.clone()),
            note: None,
        });
    }
    if offline {
        return match pulled_at.flatten() {
            Some(digest) => Ok(Answer {
                base: base(Origin::Registry, digest),
                note: Some(format!("offline: base {reference} not checked for updates")),
            }),
            None => Err(BaseError::Offline {
                reference: reference.to_owned(),
                runtime: cx.runtime.to_owned(),
            }
            .into()),
        };
    }
    match cx.registry.resolve(&image, platform).await {
        Ok(found) => Ok(Answer {
            base: base(Origin::Registry, found.digest),
            note: found.rate_limited.map(|w| {
                format!(
                    "rate-limited by the registry for {reference}: waited {}",
                    humantime::format_duration(w)
                )
            }),
        }),
        Err(e) => {
            let first_line = e.to_string().lines().next().unwrap_or_default().to_owned();
            match pulled_at.flatten() {
                Some(digest) => Ok(Answer {
                    base: base(Origin::Registry, digest),
                    note: Some(format!(
                        "could not check base {reference} for updates ({first_line}); building on the engine's copy"
                    )),
                }),
                None => Err(BaseError::Unresolved {
                    reference: reference.to_owned(),
                    runtime: cx.runtime.to_owned(),
                    detail: first_line,
                    help: unresolved_help(&e, &image, reference),
                }
                .into()),
            }
        }
    }
}

/// What to do about a base the registry would not answer for.
fn unresolved_help(e: &RegistryError, image: &ImageRef, reference: &str) -> String {
    let host = &image.registry;
    match e {
        RegistryError::Unauthorized { .. } | RegistryError::Forbidden { .. } => format!(
            "log in to the registry: docker login {host} (planner reads $DOCKER_CONFIG/config.json, else ~/.docker/config.json, and its credential helpers)"
        ),
        RegistryError::NotFound { .. } => format!(
            "{reference} does not exist at {host}: fix the FROM line of the Dockerfile, or the build_args it reads"
        ),
        _ => format!(
            "check the network and access to {host} ([registry] insecure for a plain-HTTP registry), or `docker pull {reference}`; base_images = \"local\" builds only on what the engine holds"
        ),
    }
}

/// The digest a local image was pulled at from `image`'s repository, if any (`RepoDigests`
/// entries are `name@sha256:…`; the smallest wins, so the choice is stable).
fn repo_digest(repo_digests: &[String], image: &ImageRef) -> Option<String> {
    repo_digests
        .iter()
        .filter_map(|d| d.split_once('@'))
        .filter(|(name, _)| same_repository(name, image))
        .map(|(_, digest)| digest.to_owned())
        .filter(|d| planner_base::ids::is_manifest_digest(d))
        .min()
}

fn same_repository(name: &str, image: &ImageRef) -> bool {
    ImageRef::parse(name)
        .is_ok_and(|n| n.registry == image.registry && n.repository == image.repository)
}

impl From<BaseError> for Error {
    fn from(e: BaseError) -> Self {
        Error::Dockerfile(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(reference: &str, digest_char: char) -> Base {
        Base {
            reference: reference.into(),
            platform: "linux/amd64".into(),
            origin: Origin::Registry,
            digest: format!("sha256:{}", digest_char.to_string().repeat(64)),
        }
    }

    #[test]
    fn changes_name_moved_added_and_removed_bases() {
        let old = [b("python:3.11-slim", 'a'), b("gone:1", 'c')];
        let new = [b("python:3.11-slim", 'b'), b("new:1", 'd')];
        assert_eq!(
            changes(&old, &new),
            [
                "base python:3.11-slim moved sha256:aaaaaaaaaaaa… → sha256:bbbbbbbbbbbb…",
                "base new:1 added",
                "base gone:1 removed"
            ]
        );
        assert!(changes(&old, &old).is_empty());
    }

    #[test]
    fn labels_round_trip_and_garbage_reads_as_none() {
        let bases = Bases::new(vec![b("z:1", 'a'), b("a:1", 'b'), b("a:1", 'b')], vec![]);
        assert_eq!(bases.bases.len(), 2);
        assert_eq!(from_label(Some(&bases.label())), Some(bases.bases.clone()));
        for bad in [
            "",
            "{}",
            "[1]",
            r#"[{"reference":"a","platform":"p","origin":"registry","digest":"x"}]"#,
        ] {
            assert_eq!(from_label(Some(&bad.to_owned())), None, "{bad}");
        }
        assert_eq!(from_label(None), None);
    }

    #[test]
    fn pinned_references_keep_the_registry_port() {
        let base = b("127.0.0.1:5000/base:1", 'a');
        assert_eq!(
            base.pinned(),
            format!("127.0.0.1:5000/base@{}", base.digest)
        );
        assert_eq!(name_of("127.0.0.1:5000/base"), "127.0.0.1:5000/base");
        assert_eq!(name_of("alpine@sha256:x"), "alpine");
    }

    #[test]
    fn repo_digests_match_by_normalized_repository() {
        let image = ImageRef::parse("python:3.11").unwrap();
        let d = format!("sha256:{}", "1".repeat(64));
        let list = vec![
            format!("other@sha256:{}", "0".repeat(64)),
            format!("python@{d}"),
        ];
        assert_eq!(repo_digest(&list, &image), Some(d.clone()));
        let list = vec![format!("docker.io/library/python@{d}")];
        assert_eq!(repo_digest(&list, &image), Some(d));
        assert_eq!(repo_digest(&[], &image), None);
    }
}
