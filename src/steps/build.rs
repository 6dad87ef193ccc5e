//! `build`: the image of the verified checkout, labelled with its key and the inputs it was
//! computed from, tagged with every runtime's pinned tag. An image already carrying the key
//! (under another runtime's tag, or `:latest`) is re-tagged instead of rebuilt.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use futures_util::future::BoxFuture;

use super::{Attests, Kind};
use crate::config::{BuildArgs, Runtime};
use crate::docker::engine::{self as eng, BuildRequest, ImageInfo};
use crate::error::StepError;
use crate::exec::world::RealWorld;
use crate::exec::{Event, RunRequest};
use crate::ids::short;
use crate::key::{KEY_FORMAT, Key, KeyBuilder, KeyInputs};
use crate::plan::{Node, Output, Probe, ProbeRequest, StepKind};

pub struct Step;

impl Kind for Step {
    fn name(&self) -> &'static str {
        "build"
    }

    fn input_kinds(&self) -> &'static [StepKind] {
        &[StepKind::VerifyDockerfile]
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
            (
                "build_args",
                crate::config::build_args_label(&rt.build_args),
            ),
        ]
    }

    fn key(&self, at: &KeyInputs<'_>) -> Option<Key> {
        Some(key(&inputs(at.node, at.revision?)))
    }

    fn attests(&self) -> Attests {
        Attests::Image
    }

    fn probe<'a>(
        &'a self,
        world: &'a RealWorld,
        req: &'a ProbeRequest<'_>,
    ) -> BoxFuture<'a, Result<Probe, StepError>> {
        Box::pin(probe(world, req))
    }

    fn run<'a>(
        &'a self,
        world: &'a RealWorld,
        req: &'a RunRequest<'_>,
    ) -> BoxFuture<'a, Result<Output, StepError>> {
        Box::pin(run(world, req))
    }
}

/// The inputs of a build key, as carried by an image's labels or the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInputs {
    pub repo: String,
    pub commit: String,
    pub dockerfile: String,
    pub platform: String,
    pub params: BTreeMap<String, String>,
    /// Declared build args (`runtimes.toml` only); an image states them in
    /// [`eng::LABEL_BUILD_ARGS`].
    pub build_args: BuildArgs,
}

/// The build key. The Dockerfile's digest is not an input: the commit already fixes every
/// byte of the tree, so the key is known as soon as the branch HEAD is (see README).
/// Build args count only when declared: without them the key is what it was before they
/// existed, so images built then stay valid.
pub fn key(inputs: &BuildInputs) -> Key {
    let mut b = KeyBuilder::new(StepKind::Build);
    b.field("repo", &inputs.repo)
        .field("commit", &inputs.commit)
        .field("dockerfile", &inputs.dockerfile)
        .field("platform", &inputs.platform);
    for (k, v) in &inputs.params {
        b.field(&format!("param.{k}"), v);
    }
    if !inputs.build_args.is_empty() {
        b.field("build_args", &inputs.build_args.len().to_string());
        for (k, v) in &inputs.build_args {
            b.field(&format!("build_arg.{k}"), v);
        }
    }
    b.finish()
}

/// The build inputs of a build node at a commit.
pub fn inputs(node: &Node, commit: &str) -> BuildInputs {
    let rt = node.runtime();
    BuildInputs {
        repo: rt.repo_identity(),
        commit: commit.to_owned(),
        dockerfile: rt.dockerfile.clone(),
        platform: rt.platform.clone(),
        params: node.params.clone(),
        build_args: rt.build_args.clone(),
    }
}

async fn probe(world: &RealWorld, req: &ProbeRequest<'_>) -> Result<Probe, StepError> {
    let inputs = inputs(req.node, req.revision);
    let note = args_note(&inputs.build_args);
    let mut found: Option<(String, String)> = None;
    let mut missing = Vec::new();
    for rt in &req.node.runtimes {
        let tag = rt.pinned_tag(req.revision);
        match world.engine.inspect(&tag).await? {
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
            reason: format!("image {tag} present, key matches{note}"),
        },
        (Some((tag, _)), false) => {
            let tags: Vec<_> = missing.iter().map(|(_, t)| t.as_str()).collect();
            Probe::Retag {
                reason: format!("image present as {tag}; only tagging {}", tags.join(", ")),
            }
        }
        (None, _) => match existing_image(world, &latest_tags(req.node), req.key, &inputs).await? {
            Some((tag, _)) => Probe::Retag {
                reason: format!("image present as {tag}; only tagging {}", missing[0].1),
            },
            None => Probe::Missing {
                reason: why_no_image(world, req, &missing[0].0.clone(), &missing[0].1).await?
                    + &note,
            },
        },
    })
}

/// Explains a missing image: a new commit, a pruned image, or a first build.
async fn why_no_image(
    world: &RealWorld,
    req: &ProbeRequest<'_>,
    rt: &Runtime,
    tag: &str,
) -> Result<String, StepError> {
    let latest = world.engine.inspect(&rt.latest_tag()).await?;
    // A foreign image may be tagged :latest: its revision label counts only if it is a commit.
    let old = latest
        .as_ref()
        .and_then(|i| i.labels.get(eng::LABEL_REVISION).cloned())
        .filter(|c| crate::ids::is_commit(c))
        .or_else(|| req.previous_revision.map(str::to_owned))
        .filter(|old| old != req.revision);
    if let Some(old) = old {
        return Ok(format!(
            "new commit {} (was {})",
            short(req.revision),
            short(&old)
        ));
    }
    let built = world.store.read_record(req.key, StepKind::Build);
    if built.is_some_and(|r| r.commit.as_deref() == Some(req.revision)) {
        return Ok(format!("image {tag} missing (pruned?)"));
    }
    Ok(format!("image {tag} not built yet"))
}

async fn run(world: &RealWorld, req: &RunRequest<'_>) -> Result<Output, StepError> {
    let inputs = inputs(req.node, req.revision);
    let tags: Vec<String> = req
        .node
        .runtimes
        .iter()
        .map(|rt| rt.pinned_tag(req.revision))
        .collect();
    let candidates: Vec<String> = tags.iter().cloned().chain(latest_tags(req.node)).collect();
    // A re-tag needs no input: the image is there under another candidate tag.
    let (id, dockerfile_blake3) = match existing_image(world, &candidates, req.key, &inputs).await?
    {
        Some((_, info)) => {
            let b3 = info.labels.get(eng::LABEL_DOCKERFILE_BLAKE3).cloned();
            (info.id, b3.filter(|b| crate::ids::is_blake3_hex(b)))
        }
        None => build_from_input(world, req, &inputs, &tags[0]).await?,
    };
    for tag in &tags {
        if world.engine.inspect(tag).await?.is_none_or(|i| i.id != id) {
            world.engine.tag(&id, tag).await?;
        }
    }
    world
        .record(StepKind::Build, req.key, req.node, |r| {
            r.commit = Some(req.revision.to_owned());
            r.dockerfile_blake3 = dockerfile_blake3;
            r.image_id = Some(id.clone());
        })
        .await?;
    Ok(Output::Image { id })
}

/// Builds from the verified checkout the step's input carries: `(image ID, digest)`.
async fn build_from_input(
    world: &RealWorld,
    req: &RunRequest<'_>,
    inputs: &BuildInputs,
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
    let on_output = move |output: crate::docker::BuildOutput<'_>| {
        sink(&match output {
            crate::docker::BuildOutput::Line(line) => Event::Output {
                step: step.clone(),
                line: crate::mask::mask(line).into_owned(),
            },
            crate::docker::BuildOutput::Step { name, state } => Event::BuildStep {
                step: step.clone(),
                name: crate::mask::mask(name).into_owned(),
                state,
            },
        })
    };
    let id = world.engine.build(&build, on_output).await?;
    Ok((id, Some(dockerfile_blake3.clone())))
}

/// An image already carrying the key under one of `tags` (another runtime built it, or
/// only the pinned tag was removed): `(tag, image)`.
async fn existing_image(
    world: &RealWorld,
    tags: &[String],
    key: &Key,
    inputs: &BuildInputs,
) -> Result<Option<(String, ImageInfo)>, StepError> {
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
    let mut labels = HashMap::from([
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
        (eng::LABEL_REVISION.to_owned(), req.revision.to_owned()),
        (eng::LABEL_SOURCE.to_owned(), inputs.repo.clone()),
    ]);
    if !inputs.build_args.is_empty() {
        let json = crate::config::build_args_label(&inputs.build_args);
        labels.insert(eng::LABEL_BUILD_ARGS.to_owned(), json);
    }
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
        builder: rt.builder,
        network: rt.build_network,
        runtime: rt.name.clone(),
    }
}

/// The build inputs an image's labels state (missing labels read as empty), from which its
/// key can be recomputed.
pub fn inputs_from_labels(labels: &HashMap<String, String>) -> BuildInputs {
    let get = |name: &str| labels.get(name).cloned().unwrap_or_default();
    BuildInputs {
        repo: get(eng::LABEL_REPO),
        commit: get(eng::LABEL_REVISION),
        dockerfile: get(eng::LABEL_DOCKERFILE),
        platform: get(eng::LABEL_PLATFORM),
        params: labels
            .get(eng::LABEL_PARAMS)
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or_default(),
        build_args: build_args_from_label(labels.get(eng::LABEL_BUILD_ARGS)),
    }
}

/// The build args an image's label states. An unreadable label reads as one arg no
/// configuration can declare (its name is not an `ARG` name), so its key never matches.
fn build_args_from_label(label: Option<&String>) -> BuildArgs {
    let Some(text) = label else {
        return BuildArgs::new();
    };
    serde_json::from_str(text)
        .unwrap_or_else(|_| BuildArgs::from([(UNREADABLE.to_owned(), String::new())]))
}

/// Most build arg changes a stale reason names.
const MAX_CHANGES_SHOWN: usize = 8;

/// The name [`build_args_from_label`] gives an unreadable label.
const UNREADABLE: &str = "<unreadable dev.planner.build-args label>";

/// How the build args of an image differ from those expected, one phrase per arg
/// (`build arg V changed: 1 → 2`); empty when equal.
pub fn build_args_changes(old: &BuildArgs, new: &BuildArgs) -> Vec<String> {
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter_map(|n| match (old.get(n), new.get(n)) {
            (Some(a), Some(b)) if a == b => None,
            (Some(a), Some(b)) => Some(format!(
                "build arg {n} changed: {} → {}",
                shown(a),
                shown(b)
            )),
            (None, Some(b)) => Some(format!("build arg {n} added: {}", shown(b))),
            (Some(a), None) => Some(format!("build arg {n} removed (was {})", shown(a))),
            (None, None) => None,
        })
        .collect()
}

/// A value as a reason shows it: at most 80 characters, quoted when empty or spaced.
fn shown(value: &str) -> String {
    let mut text: String = value.chars().take(80).collect();
    if text.len() < value.len() {
        text.push('…');
    }
    if text.is_empty() || text.contains(char::is_whitespace) {
        format!("{text:?}")
    } else {
        text
    }
}

/// The plan's note of a build's declared args (`build args: V=1`), or nothing.
fn args_note(args: &BuildArgs) -> String {
    if args.is_empty() {
        return String::new();
    }
    let list: Vec<String> = args
        .iter()
        .map(|(k, v)| format!("{k}={}", shown(v)))
        .collect();
    format!(" (build args: {})", list.join(", "))
}

/// Why an image's labels do not prove it is the output of `key`; `None` when they do.
/// The key is recomputed from the labels, so a copied key label alone is not trusted.
pub fn label_mismatch(info: &ImageInfo, key: &Key, expected: &BuildInputs) -> Option<String> {
    let l = &info.labels;
    let Some(label_key) = l.get(eng::LABEL_KEY) else {
        return Some("it was not built by planner (no key label)".into());
    };
    let from_labels = inputs_from_labels(l);
    if label_key == key.as_str() && self::key(&from_labels) == *key {
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
    let mut args = build_args_changes(&from_labels.build_args, &expected.build_args);
    if !args.is_empty() {
        // An image's labels may hold anything: name a few changes, count the rest.
        if args.len() > MAX_CHANGES_SHOWN {
            let more = args.len() - MAX_CHANGES_SHOWN;
            args.truncate(MAX_CHANGES_SHOWN);
            args.push(format!("and {more} more build arg changes"));
        }
        return Some(args.join(", "));
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

#[cfg(test)]
mod tests {
    use super::*;

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
        }
    }

    /// An image's labels as `build_request` writes them.
    fn image(inputs: &BuildInputs) -> ImageInfo {
        let mut labels = HashMap::from([
            (eng::LABEL_KEY.to_owned(), key(inputs).to_string()),
            (eng::LABEL_KEY_FORMAT.to_owned(), KEY_FORMAT.to_owned()),
            (eng::LABEL_REPO.to_owned(), inputs.repo.clone()),
            (eng::LABEL_DOCKERFILE.to_owned(), inputs.dockerfile.clone()),
            (eng::LABEL_PLATFORM.to_owned(), inputs.platform.clone()),
            (eng::LABEL_PARAMS.to_owned(), "{}".to_owned()),
            (eng::LABEL_REVISION.to_owned(), inputs.commit.clone()),
        ]);
        if !inputs.build_args.is_empty() {
            let json = crate::config::build_args_label(&inputs.build_args);
            labels.insert(eng::LABEL_BUILD_ARGS.to_owned(), json);
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
        assert!(why.ends_with("and 43 more build arg changes"), "{why}");
        assert_eq!(args_note(&BuildArgs::new()), "");
    }
}
