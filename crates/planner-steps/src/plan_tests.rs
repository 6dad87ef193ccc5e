//! The graph and plan loading with the built-in plans and the real kinds.

/// The graph compiled from the built-in plans and real kinds.
pub(crate) mod graph {
    use std::sync::Arc;

    use crate::plans::parse_plan;
    use crate::{
        build, pull, resolve_digest, resolve_head, resolve_version, tag_latest, verify_dockerfile,
    };
    use planner_config::{EnvOverrides, parse};
    use planner_core::plan::{Graph, PlanSet};

    /// The graph of the named runtimes of `toml` with the built-in plans (shared by unit tests).
    pub(crate) fn graph_for(toml: &str, names: &[&str]) -> Graph {
        let plans: PlanSet = crate::plans::load(None).unwrap();
        let cfg = parse(toml, "t.toml", &EnvOverrides::default(), &|p| {
            plans.source(p)
        })
        .unwrap();
        let rts: Vec<_> = names
            .iter()
            .map(|n| Arc::new(cfg.runtimes[*n].clone()))
            .collect();
        Graph::compile(&rts, &plans)
    }

    #[test]
    fn one_runtime_is_a_chain_of_six_and_a_release_root() {
        let g = graph_for("[runtimes.a]\n", &["a"]);
        assert_eq!(g.len(), 7);
        assert_eq!(g.goals().len(), 1);
        let mut kinds: Vec<_> = g.order().iter().map(|&n| g.node(n).kind.name()).collect();
        let mut all: Vec<_> = crate::KINDS.all()[..7].iter().map(|k| k.name()).collect();
        kinds.sort();
        all.sort();
        assert_eq!(kinds, all);
        let build = g
            .order()
            .iter()
            .copied()
            .find(|&n| g.node(n).kind == build::KIND)
            .unwrap();
        assert_eq!(g.roots_of(build).len(), 2, "the head and the versions");
    }

    #[test]
    fn runtimes_reading_the_same_releases_share_one_resolve_version() {
        let toml = "[runtimes.a]\nbuild_args = { V = { pypi = \"p\" } }\n\
                    [runtimes.b]\nbuild_args = { W = { pypi = \"P\" } }\n\
                    [runtimes.c]\nbuild_args = { V = { pypi = \"q\" } }\n[runtimes.d]\n[runtimes.e]\n";
        let g = graph_for(toml, &["a", "b", "c", "d", "e"]);
        let mut roots: Vec<Vec<String>> = g
            .order()
            .iter()
            .filter(|&&n| g.node(n).kind == resolve_version::KIND)
            .map(|&n| g.node(n).runtime_names())
            .collect();
        roots.sort();
        // "p" and "P" are one PyPI project (PEP 503 names).
        assert_eq!(roots, [vec!["a", "b"], vec!["c"], vec!["d", "e"]]);
    }

    #[test]
    fn a_registry_runtime_is_resolve_digest_pull_tag_latest() {
        let g = graph_for(
            "[defaults]\nsource = \"registry\"\nregistry = \"127.0.0.1:5000/org\"\n[runtimes.a]\n",
            &["a"],
        );
        let kinds: Vec<_> = g.order().iter().map(|&n| g.node(n).kind).collect();
        assert_eq!(kinds, [resolve_digest::KIND, pull::KIND, tag_latest::KIND]);
    }

    #[test]
    fn runtimes_on_one_repo_share_everything_but_tag_latest() {
        let toml = "[runtimes.a]\nrepo = \"https://h.example/r\"\n[runtimes.b]\nrepo = \"https://h.example/r\"\n";
        let g = graph_for(toml, &["a", "b"]);
        assert_eq!(
            g.len(),
            8,
            "resolve, versions, clone, verify, build, smoke shared; two tag-latest"
        );
        let build = g
            .order()
            .iter()
            .find(|&&n| g.node(n).kind == build::KIND)
            .unwrap();
        assert_eq!(g.node(*build).runtime_names(), ["a", "b"]);
        assert_eq!(g.goals().len(), 2);
    }

    #[test]
    fn different_platform_splits_the_build_only() {
        let toml = "[runtimes.a]\nrepo = \"https://h.example/r\"\n[runtimes.b]\nrepo = \"https://h.example/r\"\nplatform = \"linux/arm64\"\n";
        let g = graph_for(toml, &["a", "b"]);
        assert_eq!(g.len(), 10, "the build and the smoke of its image split");
    }

    #[test]
    fn a_different_builder_splits_the_build_only() {
        // The builders do not make the same image: one build node would build both
        // runtimes' images with the first one's builder.
        let toml = "[runtimes.a]\nrepo = \"https://h.example/r\"\nbuilder = \"classic\"\n[runtimes.b]\nrepo = \"https://h.example/r\"\nbuilder = \"buildkit\"\n";
        let g = graph_for(toml, &["a", "b"]);
        assert_eq!(g.len(), 10);
        let mut builds: Vec<Vec<String>> = g
            .order()
            .iter()
            .filter(|&&n| g.node(n).kind == build::KIND)
            .map(|&n| g.node(n).runtime_names())
            .collect();
        builds.sort();
        assert_eq!(builds, [vec!["a"], vec!["b"]]);
    }

    /// A plan of `n` steps, listed last step first: resolve, clone, verify, then builds each
    /// needing the verify and the build before it, and a tag-latest of the last build.
    pub(crate) fn chain_plan_toml(n: usize) -> String {
        let builds = n - 4;
        let mut steps = vec![
            "[[steps]]\nid = \"r\"\nkind = \"resolve-head\"\n".to_owned(),
            "[[steps]]\nid = \"c\"\nkind = \"clone\"\nneeds = [\"r\"]\n".to_owned(),
            "[[steps]]\nid = \"v\"\nkind = \"verify-dockerfile\"\nneeds = [\"c\"]\n".to_owned(),
        ];
        for i in 0..builds {
            let needs = if i == 0 {
                "\"v\"".to_owned()
            } else {
                format!("\"v\", \"b{}\"", i - 1)
            };
            steps.push(format!(
                "[[steps]]\nid = \"b{i}\"\nkind = \"build\"\nneeds = [{needs}]\nparams = {{ target = \"t{i}\" }}\n"
            ));
        }
        steps.push(format!(
            "[[steps]]\nid = \"t\"\nkind = \"tag-latest\"\nneeds = [\"b{}\"]\n",
            builds - 1
        ));
        steps.reverse();
        steps.concat()
    }

    #[test]
    fn a_20000_step_chain_plan_loads_and_compiles() {
        let n = 20_000;
        let plan = parse_plan("chain", "plans/chain.toml", &chain_plan_toml(n)).unwrap();
        assert_eq!(plan.steps.len(), n);
        assert_eq!(
            plan.goals(),
            [0],
            "the tag-latest, listed first, is the only goal"
        );
        let mut position = vec![usize::MAX; n];
        for (at, &i) in plan.order().iter().enumerate() {
            position[i] = at;
        }
        assert!(
            position.iter().all(|&p| p < n),
            "every step is ordered once"
        );
        for (i, step) in plan.steps.iter().enumerate() {
            assert!(step.needs.iter().all(|&need| position[need] < position[i]));
        }
        let mut plans = crate::plans::load(None).unwrap();
        plans.plans.insert("chain".into(), plan);
        let cfg = parse(
            "[defaults]\nplan = \"chain\"\n[runtimes.a]\nrepo = \"https://h.example/r\"\n\
             [runtimes.b]\nrepo = \"https://h.example/r\"\n",
            "t.toml",
            &EnvOverrides::default(),
            &|p| plans.source(p),
        )
        .unwrap();
        let rts: Vec<_> = ["a", "b"]
            .iter()
            .map(|name| Arc::new(cfg.runtimes[*name].clone()))
            .collect();
        let g = Graph::compile(&rts, &plans);
        assert_eq!(g.len(), n + 1, "both share everything but their tag-latest");
        assert_eq!(g.goals().len(), 2);
        assert_eq!(g.order().len(), n + 1);
        let last_build = g.needs(g.goals()[0]);
        assert_eq!(last_build.len(), 1);
        assert_eq!(g.node(last_build[0]).step_id, format!("b{}", n - 5));
        assert_eq!(g.node(last_build[0]).runtime_names(), ["a", "b"]);
        let verify = g
            .order()
            .iter()
            .copied()
            .find(|&id| g.node(id).kind == verify_dockerfile::KIND)
            .unwrap();
        assert_eq!(
            g.dependents(verify).len(),
            n - 4,
            "one edge per build, no duplicate"
        );
        assert_eq!(g.edges().len(), 2 + (n - 4) + (n - 5) + 2);
    }

    #[test]
    fn resolve_of_walks_to_the_root() {
        let g = graph_for("[runtimes.a]\n", &["a"]);
        let goal = g.goals()[0];
        let root = g.resolve_of(goal).unwrap();
        assert_eq!(g.node(root).kind, resolve_head::KIND);
    }
}

/// Loading plans against the real kinds.
mod load {
    use crate::plans::parse_plan;

    fn err(text: &str) -> String {
        parse_plan("p", "plans/p.toml", text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn builtin_plans_load() {
        let set = crate::plans::load(None).unwrap();
        let plan = set.get("local-build").unwrap();
        let kinds: Vec<_> = plan.steps.iter().map(|s| s.kind.name()).collect();
        assert_eq!(
            kinds,
            [
                "resolve-head",
                "clone",
                "verify-dockerfile",
                "resolve-version",
                "build",
                "smoke",
                "tag-latest"
            ]
        );
        assert_eq!(plan.goals(), [6]);
        assert_eq!(plan.order(), [0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(set.get("build-only").unwrap().goals(), [4]);
        // publish and tag-latest both follow the build and its smoke; each is a goal.
        assert_eq!(set.get("build-and-publish").unwrap().goals(), [6, 7]);
    }

    #[test]
    fn unknown_kind_is_refused_with_step_and_line() {
        let e = err("[[steps]]\nid = \"a\"\nkind = \"resolve\"\n");
        assert!(
            e.starts_with("plans/p.toml:3:8: step \"a\": unknown kind \"resolve\""),
            "{e}"
        );
    }

    #[test]
    fn missing_need_is_refused() {
        let e = err(
            "[[steps]]\nid = \"r\"\nkind = \"resolve-head\"\n[[steps]]\nid = \"c\"\nkind = \"clone\"\nneeds = [\"nope\"]\n",
        );
        assert!(
            e.contains("plans/p.toml:7:") && e.contains("needs \"nope\""),
            "{e}"
        );
    }

    #[test]
    fn duplicate_id_is_refused() {
        let e = err(
            "[[steps]]\nid = \"r\"\nkind = \"resolve-head\"\n[[steps]]\nid = \"r\"\nkind = \"clone\"\n",
        );
        assert!(
            e.contains(":5:") && e.contains("duplicate step id \"r\""),
            "{e}"
        );
    }

    #[test]
    fn cycle_is_refused() {
        let text = "[[steps]]\nid = \"r\"\nkind = \"resolve-head\"\n\
            [[steps]]\nid = \"c\"\nkind = \"clone\"\nneeds = [\"r\", \"v\"]\n\
            [[steps]]\nid = \"v\"\nkind = \"verify-dockerfile\"\nneeds = [\"c\"]\n";
        let e = err(text);
        assert!(e.contains("needs cycle"), "{e}");
    }

    #[test]
    fn wrong_inputs_and_params_are_refused() {
        let e = err("[[steps]]\nid = \"b\"\nkind = \"build\"\n");
        assert!(
            e.contains("needs exactly one step of kind verify-dockerfile"),
            "{e}"
        );
        let e = err("[[steps]]\nid = \"r\"\nkind = \"resolve-head\"\nparams = { depth = \"1\" }\n");
        assert!(e.contains("does not take parameter \"depth\""), "{e}");
        let e = err("[[steps]]\nid = \"r\"\nkind = \"resolve-head\"\nextra = 1\n");
        assert!(e.contains("unknown field `extra`"), "{e}");
    }

    #[test]
    fn plans_dir_overrides_and_adds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mine.toml"),
            "[[steps]]\nid = \"r\"\nkind = \"resolve-head\"\n",
        )
        .unwrap();
        let set = crate::plans::load(Some(dir.path())).unwrap();
        assert!(set.get("mine").is_some() && set.get("local-build").is_some());
    }
}
