//! `build`: the image of the verified checkout, labelled with its key and the inputs it was
//! computed from, tagged with every runtime's pinned tag. An image already carrying the key
//! (under another runtime's tag, or `:latest`) is re-tagged instead of rebuilt.

use std::path::Path;

use futures_util::future::BoxFuture;

use crate::bases::{self, Base, Bases, Hint, Origin};
use crate::cache::Lookup;
use crate::error::Error;
use crate::kind::via;
use crate::kind::{Attests, Work};
use crate::labels;
pub use crate::labels::{
    BuildInputs, build_args_changes, inputs_from_labels, key, label_mismatch, same_source,
    source_only,
};
use crate::outputs::{Image, Verified};
use crate::record::{FIELDS, RecordFields};
use crate::world::RealWorld;
use planner_base::ids::short;
use planner_config::{BuildArgs, Runtime};
use planner_core::Kind;
use planner_core::exec::{Event, RunRequest, event::SubstepState};
use planner_core::key::Key;
use planner_core::plan::{Answer, KeyInputs};
use planner_core::plan::{
    DiscoverRequest, Discovery, Found, Node, Output, Probe, ProbeRequest, StepKind, Via,
};
use planner_core::store::RecordField;
use planner_docker::build::BuildRequest;
use planner_docker::dockerfile::BaseRef;
use planner_docker::engine::ImageInfo;

pub struct Step;

/// This kind.
pub const KIND: StepKind = StepKind::new(&Step);

impl Kind for Step {
    fn name(&self) -> &'static str {
        labels::BUILD
    }

    fn input_kinds(&self) -> &'static [StepKind] {
        const INPUTS: &[StepKind] = &[super::verify_dockerfile::KIND];
        INPUTS
    }

    fn params(&self) -> &'static [&'static str] {
        &["target"]
    }

    fn heavy(&self) -> bool {
        true
    }

    fn reads(&self, rt: &Runtime) -> Vec<(&'static str, String)> {
        vec![
            ("platform", rt.platform.clone()),
            // The builders do not make the same image (it is in the key): runtimes that
            // differ in it must not share a build.
            ("builder", rt.builder.name().to_owned()),
            (
                "build_args",
                planner_config::build_args_label(&rt.build_args),
            ),
        ]
        .into_iter()
        .chain(releases_read(rt))
        .collect()
    }

    fn runs_via(&self) -> Option<Via> {
        Some(via::BUILD)
    }

    fn discovers(&self) -> bool {
        true
    }

    fn key(&self, at: &KeyInputs<'_>) -> Option<Key> {
        let bases = at.found?.get::<Bases>()?;
        // Unkeyed until every released version is known: never built with an empty value.
        crate::resolve_version::versions(at.node, &at.answers)?;
        Some(key(&inputs(at.node, at.revision?, &at.answers, bases)))
    }

    fn record_fields(&self) -> &'static [RecordField] {
        FIELDS
    }
}

impl Work for Step {
    fn attests(&self) -> Attests {
        Attests::KeyedImage
    }

    fn discover<'a>(
        &'a self,
        world: &'a RealWorld,
        req: &'a DiscoverRequest<'_>,
    ) -> BoxFuture<'a, Result<Discovery, Error>> {
        Box::pin(discover(world, req))
    }

    fn probe<'a>(
        &'a self,
        world: &'a RealWorld,
        req: &'a ProbeRequest<'_>,
    ) -> BoxFuture<'a, Result<Probe, Error>> {
        Box::pin(probe(world, req))
    }

    fn run<'a>(
        &'a self,
        world: &'a RealWorld,
        req: &'a RunRequest<'_>,
    ) -> BoxFuture<'a, Result<Output, Error>> {
        Box::pin(run(world, req))
    }
}

/// The build inputs of a build node at a commit, with the released versions its roots
/// answered (`answers`, [`crate::resolve_version::versions`]), on its resolved bases.
pub fn inputs(node: &Node, commit: &str, answers: &[Answer<'_>], bases: &Bases) -> BuildInputs {
    let rt = node.runtime();
    BuildInputs {
        repo: rt.repo_identity(),
        commit: commit.to_owned(),
        dockerfile: rt.dockerfile.clone(),
        platform: rt.platform.clone(),
        params: node.params.clone(),
        build_args: build_args(node, answers),
        bases: bases.bases.clone(),
        builder: bases.builder.unwrap_or(rt.builder).name().to_owned(),
    }
}

/// The declared build args and the released versions resolved for them (those known).
fn build_args(node: &Node, answers: &[Answer<'_>]) -> BuildArgs {
    let mut args = node.runtime().build_args.clone();
    args.extend(crate::resolve_version::versions(node, answers).unwrap_or_default());
    args
}

/// What the build's identity reads of released build args: each arg and its release, so
/// that runtimes reading different packages never share a build (nothing when none).
fn releases_read(rt: &Runtime) -> Option<(&'static str, String)> {
    let list: Vec<String> = rt
        .releases
        .iter()
        .map(|(name, r)| format!("{name}={}", r.identity()))
        .collect();
    (!list.is_empty()).then(|| ("releases", list.join("\n")))
}

/// Where each released build arg's value comes from (`pypi pkg`), for reasons.
fn origins(rt: &Runtime) -> std::collections::BTreeMap<String, String> {
    rt.releases
        .iter()
        .map(|(name, r)| (name.clone(), r.describe()))
        .collect()
}

/// Finds the build's bases: from the Dockerfile of its verified checkout (before running),
/// else, as a [`Hint`] that the checkout overrides once it exists, from the labels of an image
/// built from this very commit and configuration (a pinned tag or `:latest`) or from the
/// shared cache's pointer; resolved to digests now. None: unknown until the checkout is
/// verified, and the build runs.
async fn discover(world: &RealWorld, req: &DiscoverRequest<'_>) -> Result<Discovery, Error> {
    let rt = req.node.runtime();
    let (refs, hint) = match req.input.and_then(|o| o.get::<Verified>()) {
        Some(Verified {
            checkout,
            dockerfile_blake3,
        }) => (
            read_bases(
                rt,
                build_args(req.node, &req.answers),
                checkout,
                dockerfile_blake3,
                req.revision,
            )
            .await?,
            None,
        ),
        _ => match bases_from_images(world, req).await? {
            Some((refs, tag)) => (refs, Some(Hint::Image(tag))),
            None => match bases_from_cache(world, req).await {
                Some((refs, pointer)) => (refs, Some(Hint::Pointer(pointer.to_string()))),
                None => {
                    return Ok(Discovery::Unknown {
                        reason: why_unkeyed(world, req).await?,
                    });
                }
            },
        },
    };
    let cx = bases::Context {
        engine: &world.engine,
        registry: &world.registry,
        runtime: &rt.name,
        dockerfile: &rt.dockerfile,
        mode: rt.base_images,
        platform: &rt.platform,
    };
    let mut found = world.bases.resolve_all(&cx, &refs).await?;
    found.builder = Some(world.engine.effective_builder(rt.builder).await);
    found.hint = hint;
    Ok(Discovery::Known(Found::new(found)))
}

/// The bases the verified Dockerfile names (its digest checked against the verify's).
async fn read_bases(
    rt: &Runtime,
    args: BuildArgs,
    checkout: &Path,
    verified_blake3: &str,
    commit: &str,
) -> Result<Vec<BaseRef>, Error> {
    let (rt, path, commit) = (rt.clone(), checkout.join(&rt.dockerfile), commit.to_owned());
    let verified = verified_blake3.to_owned();
    tokio::task::spawn_blocking(move || {
        // `what` ends with its own `help:` line.
        let fail = |what: String| {
            Error::Dockerfile(format!(
                "Dockerfile {} in {} at commit {commit} (runtime {:?}): {what}",
                rt.dockerfile,
                rt.repo_identity(),
                rt.name
            ))
        };
        let bytes = read_capped(&path).map_err(|e| {
            fail(format!("cannot be read ({e})\n  help: run the command again; planner re-clones a checkout it cannot read"))
        })?;
        if blake3::hash(&bytes).to_hex().as_str() != verified {
            return Err(fail(
                "changed since it was verified\n  help: run the command again".into(),
            ));
        }
        let text = String::from_utf8_lossy(&bytes);
        planner_docker::dockerfile::base_images(&text, &args, &rt.platform)
            .map_err(|e| fail(e.to_string()))
    })
    .await
    .map_err(|e| Error::Internal(format!("Dockerfile task: {e}")))?
}

/// The builder the key names, as the engine call takes it.
fn effective_builder(keyed: &str, configured: planner_config::Builder) -> planner_config::Builder {
    use planner_config::Builder;
    match keyed {
        "buildkit" => Builder::Buildkit,
        "classic" => Builder::Classic,
        _ => configured,
    }
}

/// At most the verify cap of a file, refusing more.
fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let cap = planner_docker::dockerfile::DOCKERFILE_CAP;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(cap + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(std::io::Error::other(format!("over the {cap} byte limit")));
    }
    Ok(bytes)
}

/// The bases an image built from this commit and configuration states in its label, as
/// references to resolve again, and the tag of that image.
async fn bases_from_images(
    world: &RealWorld,
    req: &DiscoverRequest<'_>,
) -> Result<Option<(Vec<BaseRef>, String)>, Error> {
    let expected = inputs(req.node, req.revision, &req.answers, &Bases::default());
    let mut candidates: Vec<String> = req
        .node
        .runtimes
        .iter()
        .map(|rt| rt.pinned_tag(req.revision))
        .collect();
    candidates.extend(latest_tags(req.node));
    for tag in candidates {
        let Some(info) = world.engine.inspect(&tag).await? else {
            continue;
        };
        let same = same_source(&inputs_from_labels(&info.labels), &expected);
        if let (true, Some(bases)) = (
            same,
            bases::from_label(info.labels.get(labels::LABEL_BASES)),
        ) {
            return Ok(Some((bases.into_iter().map(base_ref).collect(), tag)));
        }
    }
    Ok(None)
}

/// The bases the shared cache's latest build of this commit and configuration states, and
/// the pointer that states them.
async fn bases_from_cache(
    world: &RealWorld,
    req: &DiscoverRequest<'_>,
) -> Option<(Vec<BaseRef>, planner_registry::ImageRef)> {
    let expected = inputs(req.node, req.revision, &req.answers, &Bases::default());
    let rt = req.node.runtime();
    let (bases, pointer) = world.cache.bases_hint(&rt.name, &expected).await?;
    Some((bases.into_iter().map(base_ref).collect(), pointer))
}

/// A keyed base as a reference to resolve again.
fn base_ref(b: Base) -> BaseRef {
    BaseRef {
        reference: b.reference,
        platform: Some(b.platform),
    }
}

/// Why a build whose bases are not known runs (they are read once its checkout is).
async fn why_unkeyed(world: &RealWorld, req: &DiscoverRequest<'_>) -> Result<String, Error> {
    let rt = req.node.runtime();
    let tag = rt.pinned_tag(req.revision);
    let why = match world.engine.inspect(&tag).await? {
        // Its bases as it states them, so that the reason names what else changed.
        Some(info) => {
            let mut expected = inputs(req.node, req.revision, &req.answers, &Bases::default());
            expected.bases = inputs_from_labels(&info.labels).bases;
            match labels::label_mismatch_from(&info, &key(&expected), &expected, &origins(rt)) {
                Some(why) => format!("image {tag} is stale: {why}"),
                None => format!("image {tag} names no base images"),
            }
        }
        None => why_no_image(world, rt, req.revision, req.previous_revision, None, &tag).await?,
    };
    let builder = world.engine.effective_builder(rt.builder).await;
    Ok(format!(
        "{why}{}{}",
        args_note(&build_args(req.node, &req.answers)),
        builder_note(rt, builder.name())
    ))
}

async fn probe(world: &RealWorld, req: &ProbeRequest<'_>) -> Result<Probe, Error> {
    let bases = found(req.found, req.node)?;
    let inputs = inputs(req.node, req.revision, &req.answers, bases);
    let origins = origins(req.node.runtime());
    let note = format!(
        "{}{}{}",
        args_note(&inputs.build_args),
        builder_note(req.node.runtime(), &inputs.builder),
        notes(bases)
    );
    let mut found: Option<(String, String)> = None;
    let mut missing = Vec::new();
    for rt in &req.node.runtimes {
        let tag = rt.pinned_tag(req.revision);
        match world.engine.inspect(&tag).await? {
            Some(info) => match labels::label_mismatch_from(&info, req.key, &inputs, &origins) {
                None => found = Some((tag, info.id)),
                Some(why) => {
                    return Ok(Probe::Missing {
                        reason: format!("image {tag} is stale: {why}{}", notes(bases)),
                    });
                }
            },
            None => missing.push((rt, tag)),
        }
    }
    Ok(match (found, missing.is_empty()) {
        (Some((tag, id)), true) => Probe::Present {
            output: Output::new(Image { id }),
            reason: format!("image {tag} present, key matches{note}"),
        },
        (Some((tag, _)), false) => {
            let tags: Vec<_> = missing.iter().map(|(_, t)| t.as_str()).collect();
            Probe::Retag {
                reason: format!("image present as {tag}; only tagging {}", tags.join(", ")),
                via: via::RETAG,
            }
        }
        (None, _) => match existing_image(world, &latest_tags(req.node), req.key, &inputs).await? {
            Some((tag, _)) => Probe::Retag {
                reason: format!("image present as {tag}; only tagging {}", missing[0].1),
                via: via::RETAG,
            },
            None => {
                let (rt, tag) = (missing[0].0, &missing[0].1);
                let (rev, prev) = (req.revision, req.previous_revision);
                let why = why_no_image(world, rt, rev, prev, Some(req.key), tag).await? + &note;
                match world.cache.lookup(&rt.name, req.key, &inputs).await {
                    Lookup::Hit(entry) => Probe::Retag {
                        reason: format!(
                            "{why}; found in shared cache as {}@{}: pulled, not built",
                            entry.image,
                            bases::shown_digest(&entry.digest)
                        ),
                        via: via::SHARED_CACHE,
                    },
                    Lookup::Refused {
                        image,
                        why: refused,
                    } => Probe::Missing {
                        reason: format!(
                            "{why}; shared cache entry {image} refused ({refused}): building"
                        ),
                    },
                    Lookup::Miss => Probe::Missing { reason: why },
                }
            }
        },
    })
}

/// The bases a build step was given: there are always some once it is keyed.
fn found<'a>(found: Option<&'a Found>, node: &Node) -> Result<&'a Bases, Error> {
    found.and_then(|f| f.get::<Bases>()).ok_or_else(|| {
        Error::Internal(format!(
            "{} has a key but no base images were resolved for it",
            node.display_id()
        ))
    })
}

/// Which builder `auto` picked, for the plan (` (builder auto: buildkit)`).
fn builder_note(rt: &Runtime, effective: &str) -> String {
    match rt.builder {
        planner_config::Builder::Auto => format!(" (builder auto: {effective})"),
        _ => String::new(),
    }
}

/// The notes of how bases were resolved, for a reason (`; could not check …`).
fn notes(found: &Bases) -> String {
    found.notes.iter().map(|n| format!("; {n}")).collect()
}

/// Explains a missing image: a new commit, a pruned image, or a first build.
async fn why_no_image(
    world: &RealWorld,
    rt: &Runtime,
    revision: &str,
    previous_revision: Option<&str>,
    key: Option<&Key>,
    tag: &str,
) -> Result<String, Error> {
    let latest = world.engine.inspect(&rt.latest_tag()).await?;
    // A foreign image may be tagged :latest: its revision label counts only if it is a commit.
    let old = latest
        .as_ref()
        .and_then(|i| i.labels.get(labels::LABEL_REVISION).cloned())
        .filter(|c| planner_base::ids::is_commit(c))
        .or_else(|| previous_revision.map(str::to_owned))
        .filter(|old| old != revision);
    if let Some(old) = old {
        return Ok(format!(
            "new commit {} (was {})",
            short(revision),
            short(&old)
        ));
    }
    let built = key.and_then(|k| world.store.read_record(k, KIND));
    if built.is_some_and(|r| RecordFields::of(&r).commit.as_deref() == Some(revision)) {
        return Ok(format!("image {tag} missing (pruned?)"));
    }
    Ok(format!("image {tag} not built yet"))
}

async fn run(world: &RealWorld, req: &RunRequest<'_>) -> Result<Output, Error> {
    let found = found(req.found, req.node)?;
    if crate::resolve_version::versions(req.node, &req.answers).is_none() {
        return Err(Error::Internal(format!(
            "{} would build without the released versions its build args name",
            req.node.display_id()
        )));
    }
    let inputs = inputs(req.node, req.revision, &req.answers, found);
    let tags: Vec<String> = req
        .node
        .runtimes
        .iter()
        .map(|rt| rt.pinned_tag(req.revision))
        .collect();
    let candidates: Vec<String> = tags.iter().cloned().chain(latest_tags(req.node)).collect();
    // A re-tag needs no input: the image is there under another candidate tag.
    let existing = existing_image(world, &candidates, req.key, &inputs).await?;
    let (id, dockerfile_blake3, pulled) = match existing {
        Some((_, info)) => {
            let b3 = info.labels.get(labels::LABEL_DOCKERFILE_BLAKE3).cloned();
            (
                info.id,
                b3.filter(|b| planner_base::ids::is_blake3_hex(b)),
                false,
            )
        }
        None => from_cache_or_build(world, req, &inputs, &tags[0]).await?,
    };
    for tag in &tags {
        let before = world.engine.inspect(tag).await?;
        if before.as_ref().is_none_or(|i| i.id != id) {
            world.engine.tag(&id, tag).await?;
        }
        if let Some(old) = before.filter(|i| i.id != id) {
            crate::kind::drop_superseded(world, &old, Some(req.key.as_str())).await;
        }
    }
    // Pulled, and keyed on the verified Dockerfile: the pointer names this build from now on
    // (once the image has its tags: pushing under the pointer tags and untags it).
    if pulled
        && req
            .input
            .as_ref()
            .is_some_and(|o| o.get::<Verified>().is_some())
    {
        let rt = &req.node.runtime().name;
        let cache = &world.cache;
        cache
            .repoint(&world.engine, rt, req.key, &inputs, &id)
            .await;
    }
    world
        .record(KIND, req.key, req.node, |r| {
            r.commit = Some(req.revision.to_owned());
            r.dockerfile_blake3 = dockerfile_blake3;
            r.image_id = Some(id.clone());
        })
        .await?;
    Ok(Output::new(Image { id }))
}

/// The image of the key from the shared cache (pulled by digest, its labels checked again
/// once in the engine), or else built here and published there: `(image ID, Dockerfile
/// digest, whether it was pulled)`.
async fn from_cache_or_build(
    world: &RealWorld,
    req: &RunRequest<'_>,
    inputs: &BuildInputs,
    tag: &str,
) -> Result<(String, Option<String>, bool), Error> {
    let rt = req.node.runtime();
    if let Lookup::Hit(entry) = world.cache.lookup(&rt.name, req.key, inputs).await {
        match pull_entry(world, req, inputs, &entry).await {
            Ok((id, b3)) => return Ok((id, b3, true)),
            Err(e) => world
                .cache
                .warn(&format!("cannot pull {}", entry.image), &e.to_string()),
        }
    }
    let (id, b3) = build_from_input(world, req, inputs, tag).await?;
    world
        .cache
        .publish(&world.engine, &rt.name, req.key, inputs, &id)
        .await;
    Ok((id, b3, false))
}

/// Pulls a cache entry by digest; its labels must prove the key in the engine too.
async fn pull_entry(
    world: &RealWorld,
    req: &RunRequest<'_>,
    inputs: &BuildInputs,
    entry: &crate::cache::Entry,
) -> Result<(String, Option<String>), Error> {
    let (image, digest) = (&entry.image, &entry.digest);
    let info = crate::kind::pull_by_digest(world, req, image, digest, &inputs.platform).await?;
    let pinned = image.with_digest(digest);
    if let Some(why) = label_mismatch(&info, req.key, inputs) {
        return Err(Error::Internal(format!(
            "{pinned} is not the build of the key: {why}"
        )));
    }
    let b3 = info.labels.get(labels::LABEL_DOCKERFILE_BLAKE3).cloned();
    Ok((info.id, b3.filter(|b| planner_base::ids::is_blake3_hex(b))))
}

/// Builds from the verified checkout the step's input carries: `(image ID, digest)`.
async fn build_from_input(
    world: &RealWorld,
    req: &RunRequest<'_>,
    inputs: &BuildInputs,
    tag: &str,
) -> Result<(String, Option<String>), Error> {
    let Some(Verified {
        checkout,
        dockerfile_blake3,
    }) = req.input.as_ref().and_then(|o| o.get::<Verified>())
    else {
        return Err(Error::Internal(format!(
            "build was to re-tag an existing image, but no image with key {} is left under {}\n  help: run the command again; it will build",
            req.key.short(),
            req.node.runtime().latest_tag()
        )));
    };
    let mut build = build_request(req, checkout, dockerfile_blake3, inputs, tag);
    build.credentials = session_auth(world, &inputs.bases);
    ensure_bases(world, req, &inputs.bases).await?;
    let sink = req.sink.clone();
    let step = req.step.clone();
    let on_output = move |output: planner_docker::BuildOutput<'_>| {
        sink(&match output {
            planner_docker::BuildOutput::Line(line) => Event::Output {
                step: step.clone(),
                line: planner_base::mask::mask(line).into_owned(),
            },
            planner_docker::BuildOutput::Step { name, state } => Event::Substep {
                step: step.clone(),
                name: planner_base::mask::mask(name).into_owned(),
                state: step_state(state),
            },
        })
    };
    let id = world.engine.build(&build, on_output).await?;
    Ok((id, Some(dockerfile_blake3.clone())))
}

/// What the build's BuildKit session may authenticate with: the registries of its bases
/// (found by the Dockerfile parser, after build-arg substitution) and the run's registry
/// client; a registry the build does not name (a `# syntax=` frontend's) gets nothing.
fn session_auth(world: &RealWorld, bases: &[Base]) -> planner_docker::SessionAuth {
    let registries: Vec<String> = bases.iter().filter_map(Base::registry).collect();
    let host = super::host::Host::with_registry(world.registry.clone());
    planner_docker::SessionAuth::new(host, &registries)
}

/// Makes the engine hold every base at exactly the digest the key names, before the build
/// reads its `FROM`s: a registry base is pulled by digest (with the user's credentials) when
/// missing, and its reference as the Dockerfile writes it is pointed at that image; a local
/// base must still be the image keyed on.
async fn ensure_bases(
    world: &RealWorld,
    req: &RunRequest<'_>,
    bases: &[Base],
) -> Result<(), Error> {
    for base in bases {
        let pinned = base.pinned();
        let held = world.engine.inspect(&pinned).await?;
        let id = match (held, base.origin) {
            (Some(info), _) => info.id,
            (None, Origin::Local) => {
                return Err(Error::Dockerfile(format!(
                    "base image {} of runtime {:?} is no longer {} in the engine (it was removed or re-tagged during the run)\n  help: run the command again",
                    base.reference,
                    req.node.runtime().name,
                    short(&base.digest)
                )));
            }
            (None, Origin::Registry) => pull_base(world, req, base).await?,
        };
        if base.origin == Origin::Registry
            && !base.reference.contains('@')
            && world
                .engine
                .inspect(&base.reference)
                .await?
                .is_none_or(|i| i.id != id)
        {
            world.engine.tag(&id, &base.reference).await?;
        }
    }
    Ok(())
}

/// Pulls a registry base at its digest; returns the image ID the engine then holds.
async fn pull_base(world: &RealWorld, req: &RunRequest<'_>, base: &Base) -> Result<String, Error> {
    let name = base.pinned();
    let name = name.split('@').next().unwrap_or_default();
    let image = planner_registry::ImageRef::parse(name).map_err(Error::Dockerfile)?;
    let info =
        crate::kind::pull_by_digest(world, req, &image, &base.digest, &base.platform).await?;
    Ok(info.id)
}

/// An image already carrying the key under one of `tags` (another runtime built it, or
/// only the pinned tag was removed): `(tag, image)`.
async fn existing_image(
    world: &RealWorld,
    tags: &[String],
    key: &Key,
    inputs: &BuildInputs,
) -> Result<Option<(String, ImageInfo)>, Error> {
    for tag in tags {
        if let Some(info) = world.engine.inspect(tag).await?
            && label_mismatch(&info, key, inputs).is_none()
        {
            return Ok(Some((tag.clone(), info)));
        }
    }
    Ok(None)
}

fn latest_tags(node: &Node) -> Vec<String> {
    node.runtimes.iter().map(|rt| rt.latest_tag()).collect()
}

fn build_request(
    req: &RunRequest<'_>,
    checkout: &Path,
    b3: &str,
    inputs: &BuildInputs,
    tag: &str,
) -> BuildRequest {
    let rt = req.node.runtime();
    let labels = labels::labels_of(req.key, inputs, b3, req.revision);
    BuildRequest {
        context_dir: checkout.to_owned(),
        dockerfile: rt.dockerfile.clone(),
        tag: tag.to_owned(),
        platform: rt.platform.clone(),
        target: req.node.params.get("target").cloned(),
        labels,
        build_args: inputs.build_args.clone(),
        repo: inputs.repo.clone(),
        commit: req.revision.to_owned(),
        builder: effective_builder(&inputs.builder, rt.builder),
        network: rt.build_network,
        runtime: rt.name.clone(),
        host: super::host::Host::shared(),
        credentials: planner_docker::SessionAuth::none(),
    }
}

/// A BuildKit step's state as the event stream carries it.
fn step_state(state: planner_docker::BuildStepState) -> SubstepState {
    use planner_docker::BuildStepState as Docker;
    match state {
        Docker::Started => SubstepState::Started,
        Docker::Cached => SubstepState::Cached,
        Docker::Done => SubstepState::Done,
        Docker::Failed => SubstepState::Failed,
    }
}

/// The plan's note of a build's declared args (`build args: V=1`), or nothing.
fn args_note(args: &BuildArgs) -> String {
    use crate::labels::shown;
    if args.is_empty() {
        return String::new();
    }
    let list: Vec<String> = args
        .iter()
        .map(|(k, v)| format!("{k}={}", shown(v)))
        .collect();
    format!(" (build args: {})", list.join(", "))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;
    use planner_core::key::KEY_FORMAT;

    fn inputs(args: &[(&str, &str)]) -> BuildInputs {
        BuildInputs {
            repo: "https://h.example/r".into(),
            commit: "a".repeat(40),
            dockerfile: "Dockerfile".into(),
            platform: "linux/amd64".into(),
            params: BTreeMap::new(),
            build_args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            bases: Vec::new(),
            builder: "classic".into(),
        }
    }

    /// An image's labels as `build_request` writes them.
    fn image(inputs: &BuildInputs) -> ImageInfo {
        let mut labels = HashMap::from([
            (labels::LABEL_KEY.to_owned(), key(inputs).to_string()),
            (labels::LABEL_KEY_FORMAT.to_owned(), KEY_FORMAT.to_owned()),
            (labels::LABEL_REPO.to_owned(), inputs.repo.clone()),
            (
                labels::LABEL_DOCKERFILE.to_owned(),
                inputs.dockerfile.clone(),
            ),
            (labels::LABEL_PLATFORM.to_owned(), inputs.platform.clone()),
            (labels::LABEL_PARAMS.to_owned(), "{}".to_owned()),
            (labels::LABEL_REVISION.to_owned(), inputs.commit.clone()),
            (labels::LABEL_BUILDER.to_owned(), inputs.builder.clone()),
        ]);
        if !inputs.build_args.is_empty() {
            let json = planner_config::build_args_label(&inputs.build_args);
            labels.insert(labels::LABEL_BUILD_ARGS.to_owned(), json);
        }
        ImageInfo {
            id: "sha256:1".into(),
            labels,
        }
    }

    #[test]
    fn labels_carry_build_args_back_into_the_key() {
        for args in [&[][..], &[("RUNTIME_VERSION", "1.4.2"), ("B", "")][..]] {
            let i = inputs(args);
            let img = image(&i);
            assert_eq!(inputs_from_labels(&img.labels), i);
            assert_eq!(label_mismatch(&img, &key(&i), &i), None, "{args:?}");
        }
    }

    #[test]
    fn a_changed_build_arg_is_named_in_the_reason() {
        let old = inputs(&[("RUNTIME_VERSION", "1.4.2"), ("GONE", "x")]);
        let new = inputs(&[("RUNTIME_VERSION", "1.4.3"), ("NEW", "a b")]);
        let why = label_mismatch(&image(&old), &key(&new), &new).unwrap();
        assert_eq!(
            why,
            "build arg GONE removed (was x), build arg NEW added: \"a b\", \
             build arg RUNTIME_VERSION changed: 1.4.2 → 1.4.3"
        );
        let none = inputs(&[]);
        let why = label_mismatch(&image(&none), &key(&old), &old).unwrap();
        assert!(why.starts_with("build arg GONE added: x"), "{why}");
    }

    #[test]
    fn a_new_release_is_named_with_its_package() {
        let old = inputs(&[("RUNTIME_VERSION", "0.4.2"), ("B", "1")]);
        let new = inputs(&[("RUNTIME_VERSION", "0.4.3"), ("B", "2")]);
        let origins = BTreeMap::from([(
            "RUNTIME_VERSION".to_owned(),
            "pypi molecule-ai-workspace-runtime".to_owned(),
        )]);
        let why = labels::label_mismatch_from(&image(&old), &key(&new), &new, &origins).unwrap();
        assert_eq!(
            why,
            "build arg B changed: 1 → 2, \
             RUNTIME_VERSION 0.4.2 → 0.4.3 (pypi molecule-ai-workspace-runtime)"
        );
    }

    #[test]
    fn long_values_are_cut_in_reasons() {
        let long = "v".repeat(500);
        let a = inputs(&[("V", "1")]);
        let b = inputs(&[("V", &long)]);
        let why = label_mismatch(&image(&a), &key(&b), &b).unwrap();
        assert!(why.len() < 200 && why.ends_with('…'), "{why}");
        assert_eq!(args_note(&a.build_args), " (build args: V=1)");
        let many: Vec<(String, String)> = (0..50).map(|i| (format!("A{i}"), "x".into())).collect();
        let many_refs: Vec<(&str, &str)> =
            many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let c = inputs(&many_refs);
        let why = label_mismatch(&image(&c), &key(&a), &a).unwrap();
        assert!(why.ends_with(" and 43 more"), "{why}");
        assert_eq!(args_note(&BuildArgs::new()), "");
    }
}
