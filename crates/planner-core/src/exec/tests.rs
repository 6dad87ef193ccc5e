//! The core carries kinds it does not know: a toy registry (`crate::testkinds`) whose `make`
//! step needs two roots (its key covers both answers), whose `check` step is keyed on the
//! output `make` produced (known when deciding if `make` is materialized, completed by the
//! scheduler once it ran), and whose outputs and records are the kinds' own types. These are
//! the shapes of issue 20's kinds (a build keyed on a released version, `smoke` and `publish`
//! keyed on an image ID), run through the real `decide` and scheduler.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use planner_config::{EnvOverrides, Runtime, parse};

use super::*;
use crate::kind::StepKind;
use crate::output::Output;
use crate::plan::decide::decide;
use crate::plan::{Decided, DiscoverRequest, Discovery, Probe, ProbeRequest, Status};
use crate::plan::{PlanSet, load::parse_plan};
use crate::testkinds::{CHECK, Checked, MAKE, Made, SRC, VER, toy};

const PLAN: &str = "[[steps]]\nid = \"s\"\nkind = \"src\"\n\
    [[steps]]\nid = \"v\"\nkind = \"ver\"\nparams = { package = \"pkg\" }\n\
    [[steps]]\nid = \"m\"\nkind = \"make\"\nneeds = [\"s\", \"v\"]\n\
    [[steps]]\nid = \"c\"\nkind = \"check\"\nneeds = [\"m\"]\n";

/// The toy plan's graph for runtime `a`.
fn graph() -> Graph {
    let mut plans = PlanSet::default();
    let plan = parse_plan("toy", "plans/toy.toml", PLAN, &toy()).unwrap();
    plans.plans.insert("toy".into(), plan);
    let toml = "[defaults]\nplan = \"toy\"\n[runtimes.a]\nrepo = \"https://h.example/a\"\n";
    let cfg = parse(toml, "t.toml", &EnvOverrides::default(), &|p| {
        plans.source(p)
    })
    .unwrap();
    let rts: Vec<Arc<Runtime>> = vec![Arc::new(cfg.runtimes["a"].clone())];
    Graph::compile(&rts, &plans)
}

/// An in-memory world: each root kind's answer (`None`: it fails), what is materialized
/// (by key, with its output), what ran and what each run was given.
#[derive(Default)]
struct Toy {
    answers: HashMap<&'static str, Option<String>>,
    present: Mutex<HashMap<Key, Output>>,
    ran: Mutex<Vec<(StepKind, Key)>>,
    /// What `check` was given as its input's output.
    checked: Mutex<Vec<Made>>,
    /// The image `make` makes.
    made: String,
}

impl Toy {
    fn new(src: &str, ver: &str) -> Toy {
        Toy {
            answers: HashMap::from([("src", Some(src.into())), ("ver", Some(ver.into()))]),
            made: "img-1".into(),
            ..Default::default()
        }
    }

    fn ran(&self) -> Vec<StepKind> {
        self.ran.lock().unwrap().iter().map(|(k, _)| *k).collect()
    }
}

impl World for Toy {
    async fn probe(&self, req: ProbeRequest<'_>) -> Result<Probe, StepError> {
        Ok(match self.present.lock().unwrap().get(req.key) {
            Some(output) => Probe::Present {
                output: output.clone(),
                reason: "present".into(),
            },
            None => Probe::Missing {
                reason: "missing".into(),
            },
        })
    }

    async fn discover(&self, _: DiscoverRequest<'_>) -> Result<Discovery, StepError> {
        Err(StepError::Internal("no toy kind discovers".into()))
    }
}

impl Effects for Toy {
    type Lock = ();

    async fn resolve(&self, node: &Node, _: &Key, _: bool) -> Result<Resolved, StepError> {
        match self.answers.get(node.kind.name()).cloned().flatten() {
            Some(revision) => Ok(Resolved {
                revision,
                previous: None,
                status: Status::Run,
                reason: "resolved".into(),
            }),
            None => Err(StepError::Offline(format!("{} cannot answer", node.kind))),
        }
    }

    async fn lock(&self, _: &Key, _: &(dyn Fn() + Sync)) -> Result<(), StepError> {
        Ok(())
    }

    async fn run(&self, req: RunRequest<'_>) -> Result<Output, StepError> {
        let output = if req.node.kind == MAKE {
            Output::new(Made {
                id: self.made.clone(),
            })
        } else {
            let made = req.input.as_ref().and_then(|o| o.get::<Made>()).cloned();
            let made = made.ok_or_else(|| StepError::Internal("check without an image".into()))?;
            self.checked.lock().unwrap().push(made);
            Output::new(Checked)
        };
        self.ran
            .lock()
            .unwrap()
            .push((req.node.kind, req.key.clone()));
        self.present
            .lock()
            .unwrap()
            .insert(req.key.clone(), output.clone());
        Ok(output)
    }
}

async fn decided(g: &Graph, world: &Toy) -> Decided {
    let res = resolve_all(g, world, false, 4, &event::null_sink()).await;
    decide(g, &res, world).await
}

fn node(g: &Graph, kind: StepKind) -> NodeId {
    *g.order().iter().find(|&&n| g.node(n).kind == kind).unwrap()
}

fn opts() -> Options {
    Options {
        jobs: 2,
        fail_fast: false,
    }
}

/// The key `check` has when `make` made `id`.
fn check_key(id: &str) -> Key {
    crate::key::KeyBuilder::new(CHECK.name())
        .field("made", id)
        .finish()
}

#[tokio::test]
async fn a_step_needing_two_roots_is_keyed_on_both_answers() {
    let g = graph();
    let (make, src, ver) = (node(&g, MAKE), node(&g, SRC), node(&g, VER));
    assert_eq!(g.roots_of(make), [src, ver]);
    assert_eq!(
        g.resolve_of(make),
        Some(src),
        "its input chain's root is src"
    );
    let key = |src: &str, ver: &str| {
        let world = Toy::new(src, ver);
        async move { decided(&graph(), &world).await.keys[&make].clone() }
    };
    let base = key("c1", "1.0").await;
    assert_eq!(base, key("c1", "1.0").await, "deterministic");
    assert_ne!(
        base,
        key("c1", "1.1").await,
        "a new release changes the key"
    );
    assert_ne!(base, key("c2", "1.0").await, "a new commit changes the key");
}

#[tokio::test]
async fn a_step_whose_second_root_failed_is_blocked() {
    let g = graph();
    let mut world = Toy::new("c1", "1.0");
    world.answers.insert("ver", None);
    let d = decided(&g, &world).await;
    let make = &d.decisions[&node(&g, MAKE)];
    assert_eq!(make.status, Status::Blocked);
    assert_eq!(make.reason, "a/v failed");
    let out = run(&g, &d, &world, &opts(), &event::null_sink()).await;
    assert!(world.ran().is_empty());
    assert_eq!(out.status[&node(&g, CHECK)], Status::Blocked);
}

#[tokio::test]
async fn a_step_keyed_on_its_inputs_output_gets_its_key_once_the_input_ran() {
    let g = graph();
    let world = Toy::new("c1", "1.0");
    let d = decided(&g, &world).await;
    let (make, check) = (node(&g, MAKE), node(&g, CHECK));
    assert!(d.keys.contains_key(&make));
    assert!(
        !d.keys.contains_key(&check),
        "unknown until make has made its image"
    );
    assert_eq!(d.decisions[&check].status, Status::Run);
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink: Sink = {
        let e = events.clone();
        Arc::new(move |ev: &Event| e.lock().unwrap().push(ev.clone()))
    };
    let out = run(&g, &d, &world, &opts(), &sink).await;
    assert_eq!(world.ran(), [MAKE, CHECK]);
    let ran_check = world.ran.lock().unwrap()[1].1.clone();
    assert_eq!(
        ran_check,
        check_key("img-1"),
        "keyed on the image make made"
    );
    assert_eq!(
        *world.checked.lock().unwrap(),
        [Made { id: "img-1".into() }]
    );
    assert_eq!(out.status[&check], Status::Run);
    // The finished lines describe each kind's own output.
    let finished: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Finished { step, detail, .. } if !step.kind.is_root() => Some(detail.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(finished, ["made img-1", "checked"]);
}

#[tokio::test]
async fn a_materialized_input_keys_its_dependent_when_deciding() {
    let g = graph();
    let world = Toy::new("c1", "1.0");
    let d0 = decided(&g, &world).await;
    let (make, check) = (node(&g, MAKE), node(&g, CHECK));
    let made = Output::new(Made { id: "img-7".into() });
    world
        .present
        .lock()
        .unwrap()
        .insert(d0.keys[&make].clone(), made);
    // make is there, check is not: check is keyed on make's output and runs alone.
    let d = decided(&g, &world).await;
    assert_eq!(d.keys[&check], check_key("img-7"));
    assert_eq!(d.decisions[&check].status, Status::Run);
    assert_eq!(d.decisions[&make].status, Status::Skip);
    run(&g, &d, &world, &opts(), &event::null_sink()).await;
    assert_eq!(world.ran(), [CHECK]);
    assert_eq!(
        *world.checked.lock().unwrap(),
        [Made { id: "img-7".into() }]
    );
    // Both there: nothing runs, and the plan says so.
    let warm = decided(&g, &world).await;
    assert_eq!(warm.decisions[&check].status, Status::Skip);
    assert_eq!(warm.decisions[&make].status, Status::Skip);
}

#[test]
fn outputs_and_records_are_the_kinds_own_types() {
    let made = Output::new(Made { id: "img-1".into() });
    assert_eq!(made.get::<Made>(), Some(&Made { id: "img-1".into() }));
    assert!(made.get::<Checked>().is_none());
    assert_eq!(made.describe(), "made img-1");

    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(dir.path()).unwrap();
    let key = check_key("img-1");
    let record = |made: &str| crate::store::Record {
        schema: crate::store::RECORD_SCHEMA,
        kind: "check".into(),
        key: key.clone(),
        runtimes: vec!["a".into()],
        repo: "r".into(),
        fields: [("made".to_owned(), made.into())].into_iter().collect(),
        finished_at: 1,
    };
    store.write_record(&record("img-1")).unwrap();
    let read = store.read_record(&key, CHECK).unwrap();
    assert_eq!(read.field("made"), Some("img-1"));
    assert_eq!(store.list_records(&toy()).unwrap()[0].record, Some(read));
    // A value the kind's own check refuses is a miss, and listed as malformed.
    store.write_record(&record("../etc")).unwrap();
    assert!(store.read_record(&key, CHECK).is_none());
    assert!(store.list_records(&toy()).unwrap()[0].record.is_none());
}
