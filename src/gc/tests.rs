//! Unit tests of gc's survey and policy.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use super::policy::*;
use super::removal::*;
use super::survey::*;
use super::*;
use crate::config::Runtime;
use crate::docker::images::{ImageDetail, ImageEntry};
use crate::registry::ImageRef;
use crate::steps::record::{RecordFileView as RecordFile, RecordView as Record};
use crate::steps::{self, labels};
use crate::store::{self, Store};

fn labels(commit: &str) -> HashMap<String, String> {
    let inputs = steps::build::BuildInputs {
        repo: "https://h.example/tpl".into(),
        commit: commit.into(),
        dockerfile: "Dockerfile".into(),
        platform: "linux/amd64".into(),
        params: Default::default(),
        build_args: Default::default(),
        bases: Default::default(),
        builder: String::new(),
    };
    HashMap::from([
        (
            labels::LABEL_KEY.into(),
            steps::build::key(&inputs).to_string(),
        ),
        (labels::LABEL_REPO.into(), inputs.repo.clone()),
        (labels::LABEL_REVISION.into(), commit.into()),
        (labels::LABEL_DOCKERFILE.into(), inputs.dockerfile.clone()),
        (labels::LABEL_PLATFORM.into(), inputs.platform.clone()),
        (labels::LABEL_PARAMS.into(), "{}".into()),
    ])
}

#[test]
fn images_with_build_args_labels_are_planners_too() {
    let c = "a".repeat(40);
    let mut l = labels(&c);
    let args: crate::config::BuildArgs = [("RUNTIME_VERSION".into(), "1.4.2".into())].into();
    let mut inputs = steps::build::inputs_from_labels(&l);
    inputs.build_args = args.clone();
    l.insert(
        labels::LABEL_KEY.into(),
        steps::build::key(&inputs).to_string(),
    );
    l.insert(
        labels::LABEL_BUILD_ARGS.into(),
        crate::config::build_args_label(&args),
    );
    assert!(own_labels(&l).is_some(), "with its build args label");
    let mut edited = l.clone();
    edited.insert(
        labels::LABEL_BUILD_ARGS.into(),
        r#"{"RUNTIME_VERSION":"9"}"#.into(),
    );
    assert!(own_labels(&edited).is_none(), "an edited build args label");
    let mut garbled = l.clone();
    garbled.insert(labels::LABEL_BUILD_ARGS.into(), "{not json".into());
    assert!(own_labels(&garbled).is_none(), "an unreadable label");
    l.remove(labels::LABEL_BUILD_ARGS);
    assert!(own_labels(&l).is_none(), "its build args label removed");
}

#[test]
fn only_labels_that_recompute_to_their_key_are_planners() {
    let c = "a".repeat(40);
    let (k, commit) = own_labels(&labels(&c)).expect("planner's");
    assert_eq!(commit, c);
    assert_eq!(k.as_str().len(), 64);
    let mut copied = labels(&c);
    copied.insert(labels::LABEL_REVISION.into(), "b".repeat(40));
    assert!(
        own_labels(&copied).is_none(),
        "a copied key label is not trusted"
    );
    let mut none = labels(&c);
    none.remove(labels::LABEL_KEY);
    assert!(own_labels(&none).is_none());
    assert!(own_labels(&HashMap::new()).is_none());
}

#[test]
fn gc_removes_free_lock_files_never_a_held_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let free = steps::clone::key("r", &"a".repeat(40));
    let busy = steps::clone::key("r", &"b".repeat(40));
    drop(store.try_lock(&free).unwrap().unwrap());
    let held = store.try_lock(&busy).unwrap().unwrap();
    std::fs::write(dir.path().join("locks/run.lock"), b"").unwrap();
    let items = lock_file_items(&store).unwrap();
    assert_eq!(items.len(), 1, "only the free one: {items:?}");
    assert_eq!(items[0].key.as_ref(), Some(&free));
    assert_eq!(remove_lock_file(&store, &items[0]), ItemStatus::Removed);
    assert!(!store.lock_file_path(&free).exists());
    // Taken by another process between the plan and the removal: left alone.
    let late = GcItem {
        key: Some(busy.clone()),
        path: Some(store.lock_file_path(&busy)),
        ..new_item(ItemKind::LockFile, String::new(), ItemStatus::Planned)
    };
    assert!(matches!(
        remove_lock_file(&store, &late),
        ItemStatus::Skipped(_)
    ));
    assert!(
        store.lock_file_path(&busy).exists(),
        "a held lock file stays"
    );
    assert!(
        dir.path().join("locks/run.lock").exists(),
        "the run lock is not collected"
    );
    drop(held);
}

fn registry_runtime(name: &str, image: &str) -> Runtime {
    Runtime {
        name: name.into(),
        source: crate::config::Source::Registry(crate::config::RegistrySource {
            image: ImageRef::parse(image).unwrap(),
        }),
        repo: url::Url::parse("https://git.invalid/x").unwrap(),
        branch: "main".into(),
        dockerfile: "Dockerfile".into(),
        platform: "linux/amd64".into(),
        image_prefix: "p/".into(),
        plan: "registry-pull".into(),
        build_args: Default::default(),
        releases: Default::default(),
        base_images: Default::default(),
        builder: Default::default(),
        build_network: Default::default(),
        smoke: None,
        smoke_timeout: std::time::Duration::from_secs(120),
        publish: None,
    }
}

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn pull_record(rt: &Runtime, digest: &str, id: &str, at: u64) -> RecordFile {
    let image = rt.registry_image().unwrap();
    let record = Record {
        schema: store::RECORD_SCHEMA,
        kind: "pull".into(),
        key: steps::pull::key(image, digest),
        runtimes: vec![rt.name.clone()],
        repo: rt.repo_identity(),
        branch: None,
        commit: None,
        digest: Some(digest.into()),
        dockerfile_blake3: None,
        image_id: Some(id.into()),
        checkout_id: None,
        finished_at: at,
    };
    RecordFile {
        path: PathBuf::from("r.json"),
        bytes: 1,
        name_key: Some(record.key.clone()),
        record: Some(record),
    }
}

#[test]
fn the_engines_short_names_match_the_registry_image() {
    let hub = ImageRef::parse("ubuntu").unwrap();
    let d = digest('a');
    assert!(names_digest(&format!("ubuntu@{d}"), &hub, &d));
    assert!(names_digest(
        &format!("docker.io/library/ubuntu@{d}"),
        &hub,
        &d
    ));
    assert!(!names_digest(&format!("ubuntu@{}", digest('b')), &hub, &d));
    assert!(!names_digest(&format!("debian@{d}"), &hub, &d));
    assert!(!names_digest("ubuntu:latest", &hub, &d));
    assert!(names_tag("ubuntu:latest", &hub) && names_tag("ubuntu", &hub));
    assert!(!names_tag("ubuntu:22.04", &hub));
    let local = ImageRef::parse("127.0.0.1:5000/t/alpha:latest").unwrap();
    assert!(names_digest(
        &format!("127.0.0.1:5000/t/alpha@{d}"),
        &local,
        &d
    ));
    assert!(!names_digest(
        &format!("127.0.0.1:5001/t/alpha@{d}"),
        &local,
        &d
    ));
    assert!(!names_tag("p/alpha:aaaaaaaaaaaa", &local));
}

#[test]
fn only_valid_pull_records_of_the_runtime_claim_a_digest() {
    let rt = registry_runtime("alpha", "127.0.0.1:5000/t/alpha:latest");
    let other = registry_runtime("beta", "127.0.0.1:5000/t/beta:latest");
    let id = digest('9');
    let image = rt.registry_image().unwrap();
    let mut wrong_kind = pull_record(&rt, &digest('b'), &id, 1);
    wrong_kind.record.as_mut().unwrap().kind = "tag-latest".into();
    let mut wrong_key = pull_record(&rt, &digest('c'), &id, 1);
    wrong_key.record.as_mut().unwrap().key = steps::pull::key(image, &digest('d'));
    let mut no_id = pull_record(&rt, &digest('e'), &id, 1);
    no_id.record.as_mut().unwrap().image_id = None;
    let mut other_repo = pull_record(&rt, &digest('f'), &id, 1);
    other_repo.record.as_mut().unwrap().repo = "127.0.0.1:5000/t/beta".into();
    let malformed = RecordFile {
        record: None,
        ..pull_record(&rt, &digest('1'), &id, 1)
    };
    let records = vec![
        pull_record(&rt, &digest('a'), &id, 1),
        wrong_kind,
        wrong_key,
        no_id,
        other_repo,
        malformed,
        pull_record(&other, &digest('2'), &id, 1),
    ];
    let claims = pull_claims(&rt, image, &records);
    assert_eq!(claims.into_iter().collect::<Vec<_>>(), [(digest('a'), id)]);
}

#[test]
fn a_digest_is_as_new_as_the_runtimes_newest_record_of_it() {
    let rt = registry_runtime("alpha", "127.0.0.1:5000/t/alpha:latest");
    let other = registry_runtime("beta", "127.0.0.1:5000/t/alpha:latest");
    let (a, id) = (digest('a'), digest('9'));
    let mut resolve = pull_record(&rt, &a, &id, 50);
    resolve.record.as_mut().unwrap().kind = "resolve-digest".into();
    let records = vec![
        pull_record(&rt, &a, &id, 10),
        resolve,
        pull_record(&other, &a, &id, 99),
        pull_record(&rt, &digest('b'), &id, 70),
    ];
    assert_eq!(records_seen(&rt, &a, &records), 50 * NANOS);
    assert_eq!(records_seen(&rt, &digest('c'), &records), 0);
}

#[test]
fn registry_names_go_only_with_the_image() {
    let image = ImageRef::parse("127.0.0.1:5000/t/alpha:latest").unwrap();
    let d = digest('a');
    let pulls = vec![(image.clone(), d.clone())];
    let ours = format!("127.0.0.1:5000/t/alpha@{d}");
    let detail = |tags: &[&str], digests: &[&str]| ImageDetail {
        entry: ImageEntry {
            id: digest('9'),
            repo_tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        },
        repo_digests: digests.iter().map(|t| t.to_string()).collect(),
        created_nanos: None,
    };
    let reference = "127.0.0.1:5000/t/alpha:latest";
    // Only the registry's names left: they go, the reference tag before the digest.
    let d1 = detail(&["p/alpha:aaaaaaaaaaaa", reference], &[&ours]);
    let mut tags = vec!["p/alpha:aaaaaaaaaaaa".to_owned()];
    assert!(registry_names(&d1, &pulls, vec![reference], &mut tags).is_empty());
    assert_eq!(tags, ["p/alpha:aaaaaaaaaaaa", reference, ours.as_str()]);
    // Someone else's tag keeps the image: the registry's names stay with it.
    let d2 = detail(&["p/alpha:aaaaaaaaaaaa", "mine:1", reference], &[&ours]);
    let mut tags = vec!["p/alpha:aaaaaaaaaaaa".to_owned()];
    let left = registry_names(&d2, &pulls, vec!["mine:1", reference], &mut tags);
    assert_eq!(left, ["mine:1", reference]);
    assert_eq!(tags, ["p/alpha:aaaaaaaaaaaa"]);
    // So does a digest reference from another repository.
    let foreign = format!("127.0.0.1:5000/mirror/alpha@{d}");
    let d3 = detail(&["p/alpha:aaaaaaaaaaaa"], &[&ours, &foreign]);
    let mut tags = vec!["p/alpha:aaaaaaaaaaaa".to_owned()];
    assert_eq!(
        registry_names(&d3, &pulls, vec![], &mut tags),
        [foreign.as_str()]
    );
    assert_eq!(tags.len(), 1);
}

#[test]
fn a_pull_or_tag_latest_record_goes_with_the_image_it_names() {
    let rt = registry_runtime("alpha", "127.0.0.1:5000/t/alpha:latest");
    let (kept, gone, removed) = (digest('1'), digest('2'), digest('3'));
    let present = BTreeSet::from([kept.clone(), removed.clone()]);
    let removals = PlannedRemovals {
        images: HashMap::from([(removed.clone(), 4)]),
        checkouts: HashMap::new(),
    };
    let orphan = |id: &str, kind: &str| {
        let mut file = pull_record(&rt, &digest('a'), id, 1);
        file.record.as_mut().unwrap().kind = kind.into();
        image_record_orphan(file.record.as_ref().unwrap(), &present, &removals)
    };
    for kind in ["pull", "tag-latest"] {
        assert_eq!(orphan(&kept, kind), None, "{kind}");
        assert_eq!(
            orphan(&gone, kind),
            Some(("its image is gone".into(), vec![]))
        );
        assert_eq!(
            orphan(&removed, kind),
            Some(("its image is removed".into(), vec![4]))
        );
    }
}

#[test]
fn plan_totals_count_only_what_goes() {
    let item = |kind, status, bytes| GcItem {
        kind,
        runtimes: vec![],
        tags: vec![],
        image_id: None,
        path: None,
        commit: None,
        digest: None,
        repo: None,
        key: None,
        bytes,
        deletes_image: false,
        reason: String::new(),
        status,
        after: vec![],
    };
    let plan = GcPlan {
        keep: 1,
        dry_run: false,
        kept: vec![],
        items: vec![
            item(ItemKind::Image, ItemStatus::Removed, 10),
            item(ItemKind::Checkout, ItemStatus::Skipped("held".into()), 100),
            item(ItemKind::Record, ItemStatus::Failed("io".into()), 1000),
            item(ItemKind::Record, ItemStatus::Removed, 1),
        ],
    };
    assert_eq!(plan.freed_bytes(), 11);
    assert_eq!(plan.count(ItemKind::Record), 1);
    assert_eq!((plan.skipped(), plan.failed()), (1, 1));
}
