//! Unit tests of `decide` and the scheduler against an in-memory world, with the real kinds
//! and built-in plans.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use planner_core::StepError;

use crate::outputs::{Checkout, Image, Tagged, Verified};
use crate::plan_tests::graph::graph_for as graph;
use crate::{build, clone, smoke, tag_latest, verify_dockerfile};
use planner_core::exec::{Effects, Event, Options, RunRequest, Sink, event, resolve_all, run};
use planner_core::key::Key;
use planner_core::plan::graph::NodeId;
use planner_core::plan::{
    Decided, DiscoverRequest, Discovery, Found, Graph, Node, Output, Probe, ProbeRequest, Resolved,
    Revision, Status, StepKind, World, decide::decide,
};

/// An in-memory world: which keys are materialized, which kinds fail, what ran.
#[derive(Default)]
struct Fake {
    present: Mutex<HashSet<Key>>,
    /// Keys that become present when their lock is taken (another process finished them).
    appear_on_lock: Mutex<HashSet<Key>>,
    fail_runtime: Option<(String, StepKind)>,
    ran: Mutex<Vec<(String, StepKind)>>,
    commit: String,
    /// A key whose lock another process holds until `release_after` has run.
    contended: Option<Key>,
    release_after: Option<(String, StepKind)>,
    released: tokio::sync::Notify,
    /// Builds discover their bases only from their verified checkout (a new commit).
    bases_from_checkout_only: bool,
    /// The base digest discovered, when not the default.
    base_digest: Option<String>,
    /// Before the checkout exists, the shared cache's pointer names this base instead.
    pointer_names: Option<String>,
}

fn output_for(kind: StepKind) -> Output {
    match kind.name() {
        "resolve-head" => Output::new(Revision("c".repeat(40))),
        "resolve-digest" => Output::new(Revision(format!("sha256:{}", "d".repeat(64)))),
        "clone" => Output::new(Checkout("/co".into())),
        "verify-dockerfile" => Output::new(Verified {
            checkout: "/co".into(),
            dockerfile_blake3: "b".repeat(64),
        }),
        "build" | "pull" => Output::new(Image {
            id: "sha256:1".into(),
        }),
        "smoke" => Output::new(smoke::Smoked::Passed {
            id: "sha256:1".into(),
        }),
        _ => Output::new(Tagged {
            id: "sha256:1".into(),
        }),
    }
}

impl World for Fake {
    async fn discover(&self, req: DiscoverRequest<'_>) -> Result<Discovery, StepError> {
        if self.bases_from_checkout_only && req.input.is_none() {
            return Ok(Discovery::Unknown {
                reason: "bases not known yet".into(),
            });
        }
        let digest = self
            .base_digest
            .clone()
            .unwrap_or_else(|| format!("sha256:{}", "e".repeat(64)));
        let hinted = self.pointer_names.as_ref().filter(|_| req.input.is_none());
        let base = crate::bases::Base {
            reference: hinted.cloned().unwrap_or_else(|| "base:1".into()),
            platform: "linux/amd64".into(),
            origin: crate::bases::Origin::Registry,
            digest,
        };
        let mut found = crate::bases::Bases::new(vec![base], vec![]);
        found.hint = hinted.map(|_| crate::bases::Hint::Pointer("reg/c/a:s-1".into()));
        Ok(Discovery::Known(Found::new(found)))
    }

    async fn probe(&self, req: ProbeRequest<'_>) -> Result<Probe, StepError> {
        // As the real kind: a runtime without a smoke test has nothing to run.
        if req.node.kind == smoke::KIND && req.node.runtime().smoke.is_none() {
            return Ok(Probe::Present {
                output: Output::new(smoke::Smoked::NotConfigured),
                reason: "no smoke test configured".into(),
            });
        }
        Ok(if self.present.lock().unwrap().contains(req.key) {
            Probe::Present {
                output: output_for(req.node.kind),
                reason: "present".into(),
            }
        } else {
            Probe::Missing {
                reason: "missing".into(),
            }
        })
    }
}

impl Effects for Fake {
    type Lock = ();
    async fn resolve(
        &self,
        _node: &Node,
        _key: &Key,
        _offline: bool,
    ) -> Result<Resolved, StepError> {
        Ok(Resolved {
            revision: self.commit.clone(),
            previous: None,
            status: Status::Run,
            reason: "resolved".into(),
        })
    }
    async fn lock(&self, key: &Key, on_wait: &(dyn Fn() + Sync)) -> Result<(), StepError> {
        if self.contended.as_ref() == Some(key) {
            on_wait();
            self.released.notified().await;
        }
        if self.appear_on_lock.lock().unwrap().contains(key) {
            self.present.lock().unwrap().insert(key.clone());
        }
        Ok(())
    }
    async fn run(&self, req: RunRequest<'_>) -> Result<Output, StepError> {
        let rt = req.node.runtime().name.clone();
        if self.fail_runtime.as_ref() == Some(&(rt.clone(), req.node.kind)) {
            return Err(StepError::Internal("boom".into()));
        }
        assert!(
            req.node.kind == clone::KIND || req.input.is_some(),
            "inputs are passed to {:?}",
            req.node.kind
        );
        if self.release_after.as_ref() == Some(&(rt.clone(), req.node.kind)) {
            self.released.notify_one();
        }
        self.ran.lock().unwrap().push((rt, req.node.kind));
        self.present.lock().unwrap().insert(req.key.clone());
        Ok(output_for(req.node.kind))
    }
}

/// A world where nothing is materialized and every branch is at `ccc…`.
fn cold_world() -> Fake {
    Fake {
        commit: "c".repeat(40),
        ..Default::default()
    }
}

const TWO: &str =
    "[runtimes.a]\nrepo = \"https://h.example/a\"\n[runtimes.b]\nrepo = \"https://h.example/b\"\n";

async fn decided(g: &Graph, world: &Fake) -> Decided {
    let res = resolve_all(g, world, false, 4, &event::null_sink()).await;
    decide(g, &res, world).await
}

fn statuses(g: &Graph, d: &Decided, kind: StepKind) -> Vec<Status> {
    g.order()
        .iter()
        .filter(|&&n| g.node(n).kind == kind)
        .map(|n| d.decisions[n].status)
        .collect()
}

fn key_of(g: &Graph, d: &Decided, rt: &str, kind: StepKind) -> Key {
    let id = g
        .order()
        .iter()
        .find(|&&n| g.node(n).kind == kind && g.node(n).runtime().name == rt)
        .unwrap();
    d.keys[id].clone()
}

fn opts(fail_fast: bool) -> Options {
    Options { jobs: 2, fail_fast }
}

#[tokio::test]
async fn cold_graph_runs_every_step_in_dependency_order() {
    let g = graph(TWO, &["a", "b"]);
    let world = cold_world();
    let d = decided(&g, &world).await;
    assert_eq!(statuses(&g, &d, build::KIND), [Status::Run, Status::Run]);
    let out = run(&g, &d, &world, &opts(false), &event::null_sink()).await;
    let ran = world.ran.lock().unwrap().clone();
    assert_eq!(ran.len(), 8);
    for rt in ["a", "b"] {
        let order: Vec<_> = ran
            .iter()
            .filter(|(r, _)| r == rt)
            .map(|(_, k)| *k)
            .collect();
        assert_eq!(
            order,
            [
                clone::KIND,
                verify_dockerfile::KIND,
                build::KIND,
                tag_latest::KIND
            ]
        );
    }
    assert!(
        out.status
            .values()
            .all(|s| matches!(s, Status::Run | Status::Skip))
    );
}

#[tokio::test]
async fn a_present_build_makes_clone_and_verify_unneeded() {
    let g = graph(TWO, &["a", "b"]);
    let world = cold_world();
    let d0 = decided(&g, &world).await;
    world
        .present
        .lock()
        .unwrap()
        .insert(key_of(&g, &d0, "a", build::KIND));
    let d = decided(&g, &world).await;
    let a = |k| {
        d.decisions[g
            .order()
            .iter()
            .find(|&&n| g.node(n).kind == k && g.node(n).runtime().name == "a")
            .unwrap()]
        .clone()
    };
    assert_eq!(a(build::KIND).status, Status::Skip);
    assert_eq!(a(clone::KIND).status, Status::Skip);
    assert!(
        a(clone::KIND).reason.starts_with("not needed"),
        "{:?}",
        a(clone::KIND)
    );
    assert_eq!(a(tag_latest::KIND).status, Status::Run);
    run(&g, &d, &world, &opts(false), &event::null_sink()).await;
    let ran = world.ran.lock().unwrap().clone();
    assert!(ran.contains(&("a".into(), tag_latest::KIND)));
    assert!(!ran.contains(&("a".into(), clone::KIND)) && !ran.contains(&("a".into(), build::KIND)));
}

#[tokio::test]
async fn a_failure_blocks_its_dependents_and_the_other_runtime_finishes() {
    let g = graph(TWO, &["a", "b"]);
    let world = Fake {
        commit: "c".repeat(40),
        fail_runtime: Some(("a".into(), clone::KIND)),
        ..Default::default()
    };
    let d = decided(&g, &world).await;
    let out = run(&g, &d, &world, &opts(false), &event::null_sink()).await;
    let of = |rt: &str, k| {
        out.status[g
            .order()
            .iter()
            .find(|&&n| g.node(n).kind == k && g.node(n).runtime().name == rt)
            .unwrap()]
    };
    assert_eq!(of("a", clone::KIND), Status::Failed);
    assert_eq!(of("a", tag_latest::KIND), Status::Blocked);
    assert_eq!(of("b", tag_latest::KIND), Status::Run);
}

#[tokio::test]
async fn fail_fast_stops_the_rest() {
    let g = graph(TWO, &["a", "b"]);
    let world = Fake {
        commit: "c".repeat(40),
        fail_runtime: Some(("a".into(), clone::KIND)),
        ..Default::default()
    };
    let d = decided(&g, &world).await;
    let out = run(
        &g,
        &d,
        &world,
        &Options {
            jobs: 1,
            fail_fast: true,
        },
        &event::null_sink(),
    )
    .await;
    let b_tag = g
        .order()
        .iter()
        .find(|&&n| g.node(n).kind == tag_latest::KIND && g.node(n).runtime().name == "b")
        .unwrap();
    assert_eq!(out.status[b_tag], Status::Blocked);
}

#[tokio::test]
async fn work_finished_by_another_process_is_skipped_after_the_lock() {
    let g = graph(TWO, &["a"]);
    let world = cold_world();
    let d = decided(&g, &world).await;
    world
        .appear_on_lock
        .lock()
        .unwrap()
        .insert(key_of(&g, &d, "a", clone::KIND));
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink: Sink = {
        let e = events.clone();
        Arc::new(move |ev: &Event| e.lock().unwrap().push(ev.clone()))
    };
    run(&g, &d, &world, &opts(false), &sink).await;
    assert!(
        !world
            .ran
            .lock()
            .unwrap()
            .contains(&("a".into(), clone::KIND))
    );
    let skipped = events.lock().unwrap().iter().any(|e| matches!(e, Event::Skipped { step, reason } if step.kind == clone::KIND && reason.starts_with("done meanwhile")));
    assert!(skipped);
}

#[tokio::test]
async fn shared_steps_run_once_for_two_runtimes() {
    let toml = "[runtimes.a]\nrepo = \"https://h.example/r\"\n[runtimes.b]\nrepo = \"https://h.example/r\"\n";
    let g = graph(toml, &["a", "b"]);
    let world = cold_world();
    let d = decided(&g, &world).await;
    run(&g, &d, &world, &opts(false), &event::null_sink()).await;
    let ran = world.ran.lock().unwrap().clone();
    let count = |k| ran.iter().filter(|(_, kind)| *kind == k).count();
    assert_eq!(
        (
            count(clone::KIND),
            count(build::KIND),
            count(tag_latest::KIND)
        ),
        (1, 1, 2)
    );
}

#[tokio::test]
async fn a_step_waiting_for_another_process_lock_holds_no_jobs_slot() {
    let g = graph(TWO, &["a", "b"]);
    let mut world = cold_world();
    let d = decided(&g, &world).await;
    // Another process holds a's clone lock until b is fully ensured; with --jobs 1, b's clone
    // and build need the only slot meanwhile.
    world.contended = Some(key_of(&g, &d, "a", clone::KIND));
    world.release_after = Some(("b".into(), tag_latest::KIND));
    let one = Options {
        jobs: 1,
        fail_fast: false,
    };
    let sink = event::null_sink();
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        run(&g, &d, &world, &one, &sink),
    )
    .await
    .expect("b's steps ran while a waited for its lock (no deadlock on the jobs slot)");
    assert!(
        out.status
            .values()
            .all(|s| *s == Status::Run || *s == Status::Skip)
    );
    let ran = world.ran.lock().unwrap().clone();
    let pos = |rt: &str, k| ran.iter().position(|r| r == &(rt.to_owned(), k)).unwrap();
    assert!(
        pos("b", tag_latest::KIND) < pos("a", clone::KIND),
        "{ran:?}"
    );
}

fn node_of(g: &Graph, rt: &str, kind: StepKind) -> NodeId {
    *g.order()
        .iter()
        .find(|&&n| g.node(n).kind == kind && g.node(n).runtime().name == rt)
        .unwrap()
}

#[tokio::test]
async fn a_build_whose_bases_are_unknown_is_keyed_once_its_checkout_is_verified() {
    let g = graph(TWO, &["a"]);
    let world = Fake {
        bases_from_checkout_only: true,
        ..cold_world()
    };
    let d = decided(&g, &world).await;
    let (build, tag) = (
        node_of(&g, "a", build::KIND),
        node_of(&g, "a", tag_latest::KIND),
    );
    assert!(!d.keys.contains_key(&build) && !d.keys.contains_key(&tag));
    assert_eq!(d.decisions[&build].status, Status::Run);
    assert_eq!(d.decisions[&build].reason, "bases not known yet");
    assert_eq!(d.decisions[&tag].status, Status::Run);
    assert!(d.keys.contains_key(&node_of(&g, "a", clone::KIND)));
    let out = run(&g, &d, &world, &opts(false), &event::null_sink()).await;
    assert_eq!(out.ran.len(), 4, "{:?}", out.detail);
    // The keys it ran under are those a world knowing the bases from the start decides.
    let knowing = cold_world();
    let full = decided(&g, &knowing).await;
    let present = world.present.lock().unwrap().clone();
    for id in [build, tag] {
        assert!(
            present.contains(&full.keys[&id]),
            "{}",
            g.node(id).display_id()
        );
    }
}

#[tokio::test]
async fn a_moved_base_changes_the_build_key_and_what_follows_it_only() {
    let g = graph(TWO, &["a"]);
    let moved = Fake {
        base_digest: Some(format!("sha256:{}", "f".repeat(64))),
        ..cold_world()
    };
    let (before, after) = (decided(&g, &cold_world()).await, decided(&g, &moved).await);
    for kind in [clone::KIND, verify_dockerfile::KIND] {
        assert_eq!(
            key_of(&g, &before, "a", kind),
            key_of(&g, &after, "a", kind)
        );
    }
    for kind in [build::KIND, tag_latest::KIND] {
        assert_ne!(
            key_of(&g, &before, "a", kind),
            key_of(&g, &after, "a", kind)
        );
    }
}

#[tokio::test]
async fn a_build_keyed_on_a_pointer_is_keyed_again_on_its_checkout_with_what_follows() {
    let g = graph(TWO, &["a"]);
    let world = Fake {
        pointer_names: Some("other:1".into()),
        ..cold_world()
    };
    let d = decided(&g, &world).await;
    let (build, tag) = (
        node_of(&g, "a", build::KIND),
        node_of(&g, "a", tag_latest::KIND),
    );
    assert_eq!(d.decisions[&build].status, Status::Run);
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink: Sink = {
        let e = events.clone();
        Arc::new(move |ev: &Event| e.lock().unwrap().push(ev.clone()))
    };
    let out = run(&g, &d, &world, &opts(false), &sink).await;
    assert_eq!(out.ran.len(), 4, "{:?}", out.detail);
    // The keys it ran under are those of the checkout's bases, never the pointer's.
    let checkout = decided(&g, &cold_world()).await;
    let present = world.present.lock().unwrap().clone();
    for id in [build, tag] {
        assert_ne!(d.keys[&id], checkout.keys[&id]);
        assert!(
            present.contains(&checkout.keys[&id]),
            "{}",
            g.node(id).display_id()
        );
        assert!(
            !present.contains(&d.keys[&id]),
            "{}",
            g.node(id).display_id()
        );
    }
    let started = events.lock().unwrap().iter().find_map(|e| match e {
        Event::Started { step, reason } if step.kind == build::KIND => {
            Some((step.key.clone(), reason.clone()))
        }
        _ => None,
    });
    let (key, reason) = started.expect("the build started");
    assert_eq!(key.as_ref(), Some(&checkout.keys[&build]));
    assert!(
        reason.contains("shared cache pointer reg/c/a:s-1 named other base images: ignored"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_verified_checkout_decides_over_a_pointer_when_deciding() {
    let g = graph(TWO, &["a"]);
    let world = Fake {
        pointer_names: Some("other:1".into()),
        ..cold_world()
    };
    let checkout = decided(&g, &cold_world()).await;
    let verify = key_of(&g, &checkout, "a", verify_dockerfile::KIND);
    world.present.lock().unwrap().insert(verify);
    let d = decided(&g, &world).await;
    let build = node_of(&g, "a", build::KIND);
    assert_eq!(d.keys[&build], checkout.keys[&build]);
    let found = d.found[&build].get::<crate::bases::Bases>().unwrap();
    assert_eq!(found.hint, None);
    let notes = &found.notes;
    assert_eq!(
        notes,
        &["shared cache pointer reg/c/a:s-1 named other base images: ignored"]
    );
}

const SMOKED: &str = "[runtimes.a]\nrepo = \"https://h.example/a\"\nsmoke = [\"true\"]\n";

#[tokio::test]
async fn a_smoke_test_runs_after_the_build_and_before_tag_latest_keyed_on_the_image() {
    let g = graph(SMOKED, &["a"]);
    let world = cold_world();
    let d = decided(&g, &world).await;
    let smoke_node = *g
        .order()
        .iter()
        .find(|&&n| g.node(n).kind == smoke::KIND)
        .unwrap();
    assert!(!d.keys.contains_key(&smoke_node), "keyed on the image ID");
    assert_eq!(d.decisions[&smoke_node].status, Status::Run);
    assert!(
        d.decisions[&smoke_node].reason.contains("a/build"),
        "{:?}",
        d.decisions[&smoke_node]
    );
    let out = run(&g, &d, &world, &opts(false), &event::null_sink()).await;
    let ran: Vec<StepKind> = world.ran.lock().unwrap().iter().map(|(_, k)| *k).collect();
    assert_eq!(
        ran,
        [
            clone::KIND,
            verify_dockerfile::KIND,
            build::KIND,
            smoke::KIND,
            tag_latest::KIND
        ]
    );
    assert_eq!(out.status[&smoke_node], Status::Run);

    // Warm: the build and the smoke are present; :latest already moved: nothing runs.
    let warm = decided(&g, &world).await;
    assert!(
        warm.decisions
            .iter()
            .filter(|(n, _)| !g.node(**n).kind.is_root())
            .all(|(_, d)| d.status == Status::Skip),
        "{:?}",
        warm.decisions
    );
}

#[tokio::test]
async fn a_failed_smoke_test_blocks_tag_latest() {
    let g = graph(SMOKED, &["a"]);
    let world = Fake {
        fail_runtime: Some(("a".into(), smoke::KIND)),
        ..cold_world()
    };
    let d = decided(&g, &world).await;
    let out = run(&g, &d, &world, &opts(false), &event::null_sink()).await;
    let ran: Vec<StepKind> = world.ran.lock().unwrap().iter().map(|(_, k)| *k).collect();
    assert!(!ran.contains(&tag_latest::KIND), "{ran:?}");
    assert_eq!(statuses_out(&g, &out, smoke::KIND), [Status::Failed]);
    assert_eq!(statuses_out(&g, &out, tag_latest::KIND), [Status::Blocked]);
}

fn statuses_out(g: &Graph, out: &planner_core::exec::Outcome, kind: StepKind) -> Vec<Status> {
    g.order()
        .iter()
        .filter(|&&n| g.node(n).kind == kind)
        .map(|n| out.status[n])
        .collect()
}
