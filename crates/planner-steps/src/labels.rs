//! The image label schema: what a build writes on its image (its key and every input the
//! key is computed from, [`labels_of`]) and how an image's labels are read back
//! ([`inputs_from_labels`]) and checked against a key ([`label_mismatch`]: the key is
//! recomputed from the labels, so a copied key label alone is not trusted). One module: the
//! build writes with it; `decide`, `gc`, `status` and the shared cache read with it.

use std::collections::{BTreeMap, HashMap};

use crate::bases::{self, Base, Bases, Origin};
use planner_config::BuildArgs;
use planner_core::key::{KEY_FORMAT, Key, KeyBuilder};
use planner_docker::engine::ImageInfo;

/// The build kind's name, which its keys start with (see [`key`]).
pub const BUILD: &str = "build";

/// Labels planner puts on every image it builds, so the image describes itself.
pub const LABEL_KEY: &str = "dev.planner.key";
pub const LABEL_KEY_FORMAT: &str = "dev.planner.key-format";
pub const LABEL_REPO: &str = "dev.planner.repo";
pub const LABEL_DOCKERFILE: &str = "dev.planner.dockerfile";
pub const LABEL_DOCKERFILE_BLAKE3: &str = "dev.planner.dockerfile-blake3";
pub const LABEL_PLATFORM: &str = "dev.planner.platform";
pub const LABEL_PARAMS: &str = "dev.planner.params";
/// Declared build args as canonical JSON; absent when none are declared.
pub const LABEL_BUILD_ARGS: &str = "dev.planner.build-args";
/// The base images a build keyed on (JSON, [`crate::bases::Base`] list).
pub const LABEL_BASES: &str = "dev.planner.bases";
/// The builder that built the image (`buildkit`, `classic`).
pub const LABEL_BUILDER: &str = "dev.planner.builder";
pub const LABEL_REVISION: &str = "org.opencontainers.image.revision";
pub const LABEL_SOURCE: &str = "org.opencontainers.image.source";

/// The inputs of a build key, as carried by an image's labels or the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInputs {
    pub repo: String,
    pub commit: String,
    pub dockerfile: String,
    pub platform: String,
    pub params: BTreeMap<String, String>,
    /// Declared build args (`runtimes.toml` only); an image states them in
    /// [`LABEL_BUILD_ARGS`].
    pub build_args: BuildArgs,
    /// The base images, sorted ([`crate::bases`]); an image states them in
    /// [`LABEL_BASES`].
    pub bases: Vec<Base>,
    /// The builder that builds (`buildkit`, `classic`): they do not make the same image. An
    /// image states it in [`LABEL_BUILDER`].
    pub builder: String,
}

/// The build key. The Dockerfile's digest is not an input: the commit already fixes every
/// byte of the tree. The base images are: the digest each `FROM` resolved to (see README).
pub fn key(inputs: &BuildInputs) -> Key {
    let mut b = KeyBuilder::new(BUILD);
    b.field("repo", &inputs.repo)
        .field("commit", &inputs.commit)
        .field("dockerfile", &inputs.dockerfile)
        .field("platform", &inputs.platform);
    for (k, v) in &inputs.params {
        b.field(&format!("param.{k}"), v);
    }
    b.field("build_args", &inputs.build_args.len().to_string());
    for (k, v) in &inputs.build_args {
        b.field(&format!("build_arg.{k}"), v);
    }
    b.field("builder", &inputs.builder);
    b.field("bases", &inputs.bases.len().to_string());
    for base in &inputs.bases {
        b.field("base.reference", &base.reference)
            .field("base.platform", &base.platform)
            .field("base.origin", origin_name(base.origin))
            .field("base.digest", &base.digest);
    }
    b.finish()
}

fn origin_name(origin: Origin) -> &'static str {
    match origin {
        Origin::Registry => "registry",
        Origin::Local => "local",
    }
}

/// Whether two builds have the same source: all inputs but those only the world answers
/// (bases, builder), which do not change what the Dockerfile names.
pub fn same_source(a: &BuildInputs, b: &BuildInputs) -> bool {
    source_only(a) == source_only(b)
}

/// The inputs without bases and builder.
pub fn source_only(inputs: &BuildInputs) -> BuildInputs {
    BuildInputs {
        bases: Vec::new(),
        builder: String::new(),
        ..inputs.clone()
    }
}

/// The build inputs an image's labels state (missing labels read as empty), from which its
/// key can be recomputed.
pub fn inputs_from_labels(labels: &HashMap<String, String>) -> BuildInputs {
    let get = |name: &str| labels.get(name).cloned().unwrap_or_default();
    BuildInputs {
        repo: get(LABEL_REPO),
        commit: get(LABEL_REVISION),
        dockerfile: get(LABEL_DOCKERFILE),
        platform: get(LABEL_PLATFORM),
        params: labels
            .get(LABEL_PARAMS)
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or_default(),
        build_args: build_args_from_label(labels.get(LABEL_BUILD_ARGS)),
        bases: bases::from_label(labels.get(LABEL_BASES)).unwrap_or_default(),
        builder: get(LABEL_BUILDER),
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

/// The name [`build_args_from_label`] gives an unreadable label.
const UNREADABLE: &str = "<unreadable dev.planner.build-args label>";

/// How the build args of an image differ from those expected, one phrase per arg
/// (`build arg V changed: 1 → 2`); empty when equal.
pub fn build_args_changes(old: &BuildArgs, new: &BuildArgs) -> Vec<String> {
    build_args_changes_from(old, new, &BTreeMap::new())
}

/// [`build_args_changes`], an arg whose value is a released version (`origins`: arg name →
/// `pypi pkg`) said as the release it moved to: `RUNTIME_VERSION 1.0 → 1.1 (pypi pkg)`.
pub fn build_args_changes_from(
    old: &BuildArgs,
    new: &BuildArgs,
    origins: &BTreeMap<String, String>,
) -> Vec<String> {
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter_map(|n| match (old.get(n), new.get(n)) {
            (Some(a), Some(b)) if a == b => None,
            (Some(a), Some(b)) if origins.contains_key(n) => {
                Some(format!("{n} {} → {} ({})", shown(a), shown(b), origins[n]))
            }
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
pub(crate) fn shown(value: &str) -> String {
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

/// Why an image's labels do not prove it is the output of `key`; `None` when they do.
/// The key is recomputed from the labels, so a copied key label alone is not trusted.
pub fn label_mismatch(info: &ImageInfo, key: &Key, expected: &BuildInputs) -> Option<String> {
    label_mismatch_from(info, key, expected, &BTreeMap::new())
}

/// [`label_mismatch`], released build args (`origins`) named as releases
/// ([`build_args_changes_from`]).
pub fn label_mismatch_from(
    info: &ImageInfo,
    key: &Key,
    expected: &BuildInputs,
    origins: &BTreeMap<String, String>,
) -> Option<String> {
    let l = &info.labels;
    let Some(label_key) = l.get(LABEL_KEY) else {
        return Some("it was not built by planner (no key label)".into());
    };
    let from_labels = inputs_from_labels(l);
    let format = l.get(LABEL_KEY_FORMAT).map(String::as_str);
    if label_key == key.as_str() && self::key(&from_labels) == *key && format == Some(KEY_FORMAT) {
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
    if format != Some(KEY_FORMAT) {
        return Some(format!(
            "key format changed ({} -> {KEY_FORMAT})",
            format.map_or("none", shown_label)
        ));
    }
    if from_labels.params != expected.params {
        return Some("key changed: step params".into());
    }
    if from_labels.builder != expected.builder {
        let was = shown_label(&from_labels.builder);
        return Some(format!(
            "builder changed: {} → {}",
            if was.is_empty() { "none" } else { was },
            expected.builder
        ));
    }
    let mut args = build_args_changes_from(&from_labels.build_args, &expected.build_args, origins);
    args.extend(bases::changes(&from_labels.bases, &expected.bases));
    if !args.is_empty() {
        // An image's labels may hold anything: name a few changes, count the rest.
        return Some(planner_base::text::list(
            &args,
            planner_base::text::LIST_MAX,
        ));
    }
    Some("its labels do not match its key label".into())
}

/// A label value as a reason shows it: short, printable.
fn shown_label(value: &str) -> &str {
    let ok = value.len() <= 40 && value.chars().all(|c| c.is_ascii_graphic());
    if ok {
        value
    } else {
        "an unreadable key format"
    }
}

/// The labels a build of `inputs` under `key` from `revision` writes, the Dockerfile's digest
/// `dockerfile_blake3` among them.
pub fn labels_of(
    key: &Key,
    inputs: &BuildInputs,
    dockerfile_blake3: &str,
    revision: &str,
) -> HashMap<String, String> {
    let mut labels = HashMap::from([
        (LABEL_KEY.to_owned(), key.to_string()),
        (LABEL_KEY_FORMAT.to_owned(), KEY_FORMAT.to_owned()),
        (LABEL_REPO.to_owned(), inputs.repo.clone()),
        (LABEL_DOCKERFILE.to_owned(), inputs.dockerfile.clone()),
        (
            LABEL_DOCKERFILE_BLAKE3.to_owned(),
            dockerfile_blake3.to_owned(),
        ),
        (LABEL_PLATFORM.to_owned(), inputs.platform.clone()),
        (
            LABEL_PARAMS.to_owned(),
            serde_json::to_string(&inputs.params).expect("string map"),
        ),
        (LABEL_REVISION.to_owned(), revision.to_owned()),
        (LABEL_SOURCE.to_owned(), inputs.repo.clone()),
    ]);
    if !inputs.build_args.is_empty() {
        let json = planner_config::build_args_label(&inputs.build_args);
        labels.insert(LABEL_BUILD_ARGS.to_owned(), json);
    }
    let bases = Bases::new(inputs.bases.clone(), Vec::new());
    labels.insert(LABEL_BASES.to_owned(), bases.label());
    labels.insert(LABEL_BUILDER.to_owned(), inputs.builder.clone());
    labels
}
