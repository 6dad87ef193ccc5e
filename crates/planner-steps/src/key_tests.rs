//! The kinds' keys: what each covers, and golden values that must never change.

use crate::bases::{Base, Origin};
use crate::build::{BuildInputs, key as build_key};
use crate::clone::key as clone_key;
use planner_core::key::Key;
use std::collections::BTreeMap;

fn inputs() -> BuildInputs {
    BuildInputs {
        repo: "https://h.example/r".into(),
        commit: "a".repeat(40),
        dockerfile: "Dockerfile".into(),
        platform: "linux/amd64".into(),
        params: BTreeMap::new(),
        build_args: BTreeMap::new(),
        bases: Vec::new(),
        builder: "classic".into(),
    }
}

#[test]
fn build_key_changes_with_each_input() {
    let base = build_key(&inputs());
    let variants = [
        BuildInputs {
            repo: "https://h.example/s".into(),
            ..inputs()
        },
        BuildInputs {
            commit: "b".repeat(40),
            ..inputs()
        },
        BuildInputs {
            dockerfile: "docker/Dockerfile".into(),
            ..inputs()
        },
        BuildInputs {
            platform: "linux/arm64".into(),
            ..inputs()
        },
        BuildInputs {
            params: [("target".into(), "x".into())].into(),
            ..inputs()
        },
        BuildInputs {
            build_args: [("RUNTIME_VERSION".into(), "1.4.2".into())].into(),
            ..inputs()
        },
        BuildInputs {
            build_args: [("RUNTIME_VERSION".into(), String::new())].into(),
            ..inputs()
        },
        BuildInputs {
            builder: "buildkit".into(),
            ..inputs()
        },
    ];
    for v in variants {
        assert_ne!(build_key(&v), base, "{v:?}");
    }
    assert_eq!(build_key(&inputs()), base, "deterministic");
}

#[test]
fn build_key_is_stable_across_releases() {
    // planner-key/2 (build args, base images, builder). Changing this value means every user's
    // images rebuild: bump KEY_FORMAT on purpose, and say so in README's upgrade notes.
    assert_eq!(
        build_key(&inputs()).as_str(),
        "8acde40443d0714f465ccf6a9b6a90e3d1e87f52b49cfad89ca4ccff71a52561"
    );
}

#[test]
fn build_key_covers_each_base_digest() {
    let base = |reference: &str, digest: char, origin| Base {
        reference: reference.into(),
        platform: "linux/amd64".into(),
        origin,
        digest: format!("sha256:{}", digest.to_string().repeat(64)),
    };
    let with = |bases: Vec<Base>| build_key(&BuildInputs { bases, ..inputs() });
    let one = with(vec![base("python:3.11-slim", 'a', Origin::Registry)]);
    assert_ne!(one, build_key(&inputs()));
    assert_ne!(
        one,
        with(vec![base("python:3.11-slim", 'b', Origin::Registry)])
    );
    assert_ne!(one, with(vec![base("python:3.11", 'a', Origin::Registry)]));
    assert_ne!(
        one,
        with(vec![base("python:3.11-slim", 'a', Origin::Local)])
    );
    let two = vec![
        base("a:1", 'a', Origin::Registry),
        base("b:1", 'b', Origin::Registry),
    ];
    assert_ne!(with(two.clone()), with(vec![two[0].clone()]));
}

#[test]
fn build_args_are_keyed_by_name_and_value() {
    let with = |pairs: &[(&str, &str)]| {
        build_key(&BuildInputs {
            build_args: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..inputs()
        })
    };
    let v1 = with(&[("RUNTIME_VERSION", "1.4.2")]);
    assert_eq!(v1, with(&[("RUNTIME_VERSION", "1.4.2")]), "deterministic");
    assert_ne!(v1, with(&[("RUNTIME_VERSION", "1.4.3")]));
    assert_ne!(v1, with(&[("RUNTIME_VERSIO", "N1.4.2")]), "length-prefixed");
    assert_ne!(
        with(&[("A", "1"), ("B", "2")]),
        with(&[("A", "2"), ("B", "1")])
    );
    // Declaration order does not matter: the map is sorted.
    assert_eq!(
        with(&[("A", "1"), ("B", "2")]),
        with(&[("B", "2"), ("A", "1")])
    );
}

#[test]
fn key_parse_accepts_only_hex64() {
    let k = build_key(&inputs());
    assert_eq!(Key::parse(k.as_str()), Some(k.clone()));
    assert_eq!(k.short().len(), 12);
    assert!(Key::parse("xyz").is_none());
    assert!(Key::parse(&"A".repeat(64)).is_none());
}

#[test]
fn golden_key_is_stable_across_releases() {
    // Changing this value means every user's images rebuild: bump KEY_FORMAT on purpose.
    assert_eq!(
        clone_key("https://h.example/r", &"a".repeat(40)).as_str(),
        "39012a878128d80e2c86bae7a64fbc6de37c13792a71ceadc74271eb15106552"
    );
    assert_ne!(
        clone_key("https://h.example/r", &"a".repeat(40)),
        clone_key("https://h.example/s", &"a".repeat(40))
    );
}

#[test]
fn smoke_key_covers_image_command_and_network_and_is_stable() {
    // Changing this value means every smoke test runs again: bump KEY_FORMAT on purpose.
    use crate::smoke::key as smoke_key;
    let id = format!("sha256:{}", "a".repeat(64));
    let argv = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let base = smoke_key(&id, &argv(&["python3", "-c", "import x"]), "none");
    assert_eq!(
        base.as_str(),
        "365947f70989470f373c0d1f2a6271b954cdd1d9e06ab3e1867f9a2a03db9eb5"
    );
    for other in [
        smoke_key(
            &format!("sha256:{}", "b".repeat(64)),
            &argv(&["python3", "-c", "import x"]),
            "none",
        ),
        smoke_key(&id, &argv(&["python3", "-c", "import y"]), "none"),
        smoke_key(&id, &argv(&["python3", "-c import x"]), "none"),
        smoke_key(&id, &argv(&["python3", "-c", "import x"]), "host"),
    ] {
        assert_ne!(other, base);
    }
}

#[test]
fn publish_key_covers_the_image_and_the_destination_and_is_pinned() {
    use crate::publish::key;
    use planner_registry::ImageRef;
    let dest = |s: &str| ImageRef::parse(s).unwrap();
    let (id, commit) = (format!("sha256:{}", "1".repeat(64)), "c".repeat(40));
    let here = dest("r.example/m/workspace-template-x:latest");
    let base = key(&id, Some(&here), &commit);
    let other_id = format!("sha256:{}", "2".repeat(64));
    for v in [
        key(&other_id, Some(&here), &commit),
        key(
            &id,
            Some(&dest("r.example/n/workspace-template-x:latest")),
            &commit,
        ),
        key(
            &id,
            Some(&dest("r.example/m/workspace-template-x:stable")),
            &commit,
        ),
        key(&id, Some(&here), &"d".repeat(40)),
        key(&id, None, &commit),
    ] {
        assert_ne!(v, base);
    }
    assert_eq!(
        base.as_str(),
        "2d8335e51454ecb1abf7206a93275264e6c2271e977bf8797b391dcfc17e2735"
    );
}
