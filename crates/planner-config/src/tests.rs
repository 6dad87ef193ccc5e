//! Unit tests of parsing and validating `runtimes.toml`.

use super::*;
use std::time::Duration;

fn parse_ok(text: &str) -> Config {
    parse(text, "runtimes.toml", &EnvOverrides::default(), &|p| {
        (p == "local-build").then_some(SourceKind::Git)
    })
    .unwrap()
}

#[test]
fn engine_timeouts_are_durations() {
    let builtin = parse_ok("").engine;
    assert_eq!(builtin.idle_timeout, DEFAULT_ENGINE_IDLE_TIMEOUT);
    assert_eq!(builtin.timeout, DEFAULT_ENGINE_TIMEOUT);
    let c = parse_ok("[engine]\nidle_timeout = \"90s\"\ntimeout = \"5s\"\n");
    assert_eq!(c.engine.idle_timeout, std::time::Duration::from_secs(90));
    assert_eq!(c.engine.timeout, std::time::Duration::from_secs(5));
    for key in ["idle_timeout", "timeout"] {
        for bad in ["soon", "0s", "10 parsecs", "500ms"] {
            let text = format!("[engine]\n{key} = \"{bad}\"\n");
            let err = parse(&text, "r.toml", &EnvOverrides::default(), &|_| {
                Some(SourceKind::Git)
            })
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("r.toml:2:") && err.contains(&format!("engine.{key} ")),
                "{err}"
            );
        }
    }
    let err = parse(
        "[engine]\nidel_timeout = \"1m\"\n",
        "r.toml",
        &EnvOverrides::default(),
        &|_| Some(SourceKind::Git),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("idel_timeout"), "{err}");
}

fn parse_err(text: &str) -> String {
    parse(text, "runtimes.toml", &EnvOverrides::default(), &|p| {
        (p == "local-build").then_some(SourceKind::Git)
    })
    .unwrap_err()
    .to_string()
}

fn registry_env(value: &str) -> EnvOverrides {
    EnvOverrides::from_vars(|n| (n == "PLANNER_REGISTRY").then(|| value.to_owned()))
}

fn both_plans(p: &str) -> Option<SourceKind> {
    match p {
        "local-build" => Some(SourceKind::Git),
        "registry-pull" => Some(SourceKind::Registry),
        _ => None,
    }
}

#[test]
fn planner_registry_puts_runtimes_without_a_source_in_registry_mode() {
    let text = "[runtimes.a]\n[runtimes.b]\nsource = \"git\"\n[runtimes.c]\nregistry = \"127.0.0.1:5000/own\"\nregistry_tag = \"v2\"\n";
    let cfg = parse(
        text,
        "r.toml",
        &registry_env("ghcr.io/molecule-ai"),
        &both_plans,
    )
    .unwrap();
    let a = &cfg.runtimes["a"];
    assert_eq!(a.source.kind(), SourceKind::Registry);
    assert_eq!(
        a.registry_image().unwrap().to_string(),
        "ghcr.io/molecule-ai/workspace-template-a:latest"
    );
    assert_eq!(a.plan, "registry-pull");
    assert_eq!(
        a.repo_identity(),
        "ghcr.io/molecule-ai/workspace-template-a"
    );
    assert_eq!(cfg.runtimes["b"].source, Source::Git);
    assert_eq!(cfg.runtimes["b"].plan, "local-build");
    assert_eq!(
        cfg.runtimes["c"].registry_image().unwrap().to_string(),
        "127.0.0.1:5000/own/workspace-template-c:v2"
    );
    // Unset, the same file is all git.
    let cfg = parse(text, "r.toml", &EnvOverrides::default(), &both_plans).unwrap();
    assert_eq!(cfg.runtimes["a"].source, Source::Git);
}

#[test]
fn an_empty_planner_registry_is_unset() {
    let env = registry_env("");
    assert_eq!(env.registry, None);
    let cfg = parse("[runtimes.a]\n", "r.toml", &env, &both_plans).unwrap();
    assert_eq!(cfg.runtimes["a"].source, Source::Git);
}

#[test]
fn registry_mode_needs_a_registry_and_a_fitting_plan() {
    let err = parse(
        "[defaults]\nsource = \"registry\"\n[runtimes.a]\n",
        "r.toml",
        &EnvOverrides::default(),
        &both_plans,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("r.toml:2:")
            && err.contains("no registry is set")
            && err.contains("PLANNER_REGISTRY"),
        "{err}"
    );
    let err = parse(
        "[defaults]\nplan = \"local-build\"\n[runtimes.a]\n",
        "r.toml",
        &registry_env("h.example/o"),
        &both_plans,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("r.toml:2:")
            && err.contains("reads a git source")
            && err.contains("from PLANNER_REGISTRY")
            && err.contains("registry-pull"),
        "{err}"
    );
    let err = parse(
        "[defaults]\nsource = \"svn\"\n[runtimes.a]\n",
        "r.toml",
        &EnvOverrides::default(),
        &both_plans,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("r.toml:2:") && err.contains("\"git\" or \"registry\""),
        "{err}"
    );
}

#[test]
fn bad_registry_references_and_settings_are_refused() {
    for (text, needle) in [
        (
            "[defaults]\nsource = \"registry\"\nregistry = \"Bad Host/x\"\n[runtimes.a]\n",
            "r.toml:3:",
        ),
        (
            "[defaults]\nsource = \"registry\"\nregistry = \"h.example/x\"\nregistry_tag = \"a/b\"\n[runtimes.a]\n",
            "r.toml:4:",
        ),
        ("[registry]\ninsecure = [\"http://h:5000\"]\n", "r.toml:2:"),
        ("[registry]\ntimeout = \"soon\"\n", "r.toml:2:"),
    ] {
        let err = parse(text, "r.toml", &EnvOverrides::default(), &both_plans)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{text}: {err}");
    }
    let cfg = parse(
        "[registry]\ninsecure = [\"Reg.Internal:5000\"]\ntimeout = \"20s\"\n",
        "r.toml",
        &EnvOverrides::default(),
        &both_plans,
    )
    .unwrap();
    assert_eq!(cfg.registry.insecure, ["reg.internal:5000"]);
    assert_eq!(cfg.registry.timeout, std::time::Duration::from_secs(20));
}

#[test]
fn shipped_config_is_valid_and_lists_nine_runtimes() {
    let cfg = parse_ok(BUILTIN_RUNTIMES_TOML);
    let names: Vec<_> = cfg.runtimes.keys().cloned().collect();
    assert_eq!(
        names,
        [
            "autogen",
            "claude-code",
            "codex",
            "crewai",
            "deepagents",
            "gemini-cli",
            "hermes",
            "langgraph",
            "openclaw"
        ]
    );
    assert_eq!(cfg.default_runtime.as_deref(), Some("langgraph"));
    let lg = &cfg.runtimes["langgraph"];
    assert_eq!(
        lg.repo.as_str(),
        "https://git.moleculesai.app/molecule-ai/molecule-ai-workspace-template-langgraph"
    );
    assert_eq!(
        lg.pinned_tag(&"a".repeat(40)),
        "molecule-local/workspace-template-langgraph:aaaaaaaaaaaa"
    );
}

#[test]
fn per_runtime_overrides_win_over_defaults() {
    let cfg = parse_ok(
        "[defaults]\nrepo_prefix = \"https://h.example/org/t-\"\nbranch = \"main\"\n\
         [runtimes.a]\n[runtimes.custom]\nrepo = \"https://git.example.com/org/custom\"\nbranch = \"release\"\n",
    );
    assert_eq!(cfg.runtimes["a"].repo.as_str(), "https://h.example/org/t-a");
    assert_eq!(
        cfg.runtimes["custom"].repo.as_str(),
        "https://git.example.com/org/custom"
    );
    assert_eq!(cfg.runtimes["custom"].branch, "release");
    assert_eq!(cfg.runtimes["a"].branch, "main");
}

#[test]
fn env_repo_prefix_replaces_the_file_default() {
    let env = EnvOverrides {
        repo_prefix: Some("https://mirror.example/x-".into()),
        registry: None,
    };
    let cfg = parse(
        "[defaults]\nrepo_prefix = \"https://h.example/org/t-\"\n[runtimes.a]\n",
        "f.toml",
        &env,
        &|_| Some(SourceKind::Git),
    )
    .unwrap();
    assert_eq!(
        cfg.runtimes["a"].repo.as_str(),
        "https://mirror.example/x-a"
    );
}

#[test]
fn unknown_key_is_refused_with_line_and_column() {
    let err = parse_err("[runtimes.a]\nbrnach = \"main\"\n");
    assert!(err.starts_with("runtimes.toml:2:1: "), "{err}");
    assert!(err.contains("brnach"), "{err}");
}

#[test]
fn bad_runtime_name_is_refused() {
    let err = parse_err("\n[runtimes.Bad_Name]\n");
    assert!(err.starts_with("runtimes.toml:2:"), "{err}");
    assert!(err.contains("invalid runtime name \"Bad_Name\""), "{err}");
}

#[test]
fn dockerfile_escapes_are_refused() {
    let err = parse_err("[runtimes.a]\ndockerfile = \"../etc/passwd\"\n");
    assert!(err.starts_with("runtimes.toml:2:14: "), "{err}");
    assert!(err.contains("\"..\""), "{err}");
    let err = parse_err("[runtimes.a]\ndockerfile = \"/Dockerfile\"\n");
    assert!(err.contains("absolute"), "{err}");
}

#[test]
fn bad_urls_are_refused() {
    let err = parse_err("[runtimes.a]\nrepo = \"http://h.example/x\"\n");
    assert!(err.contains("allow_insecure_http"), "{err}");
    let err = parse_err("[runtimes.a]\nrepo = \"https://u:zz9secret@h.example/x\"\n");
    assert!(
        err.contains("carries credentials") && !err.contains("zz9secret"),
        "{err}"
    );
    let err = parse_err("[runtimes.a]\nrepo = \"ftp://h.example/x\"\n");
    assert!(err.contains("unsupported scheme"), "{err}");
    let err = parse_err("[runtimes.a]\nrepo = \"not a url\"\n");
    assert!(err.contains("invalid repo URL"), "{err}");
    let ok = parse(
        "[git]\nallow_insecure_http = true\n[runtimes.a]\nrepo = \"http://127.0.0.1:9/x\"\n",
        "f",
        &EnvOverrides::default(),
        &|_| Some(SourceKind::Git),
    );
    assert!(ok.is_ok());
}

#[test]
fn ssh_user_is_accepted_but_not_an_ssh_password() {
    let cfg = parse_ok("[runtimes.a]\nrepo = \"ssh://git@h.example:2222/org/a.git\"\n");
    let a = &cfg.runtimes["a"];
    assert_eq!(a.repo.as_str(), "ssh://git@h.example:2222/org/a.git");
    assert_eq!(a.repo_identity(), "ssh://h.example:2222/org/a.git");
    let err = parse_err("[runtimes.a]\nrepo = \"ssh://git:pw9secret@h.example/org/a\"\n");
    assert!(
        err.contains("carries credentials") && !err.contains("pw9secret"),
        "{err}"
    );
    let err = parse_err("[runtimes.a]\nrepo = \"https://git@h.example/org/a\"\n");
    assert!(err.contains("carries credentials"), "{err}");
}

#[test]
fn git_limits_default_and_parse() {
    let cfg = parse_ok("[runtimes.a]\n");
    assert_eq!(cfg.git.limits, GitLimits::default());
    assert_eq!(cfg.git.limits.timeout, Duration::from_secs(1800));
    let cfg = parse_ok(
        "[git]\ntimeout = \"1h 30m\"\nlow_speed_limit = 0\nlow_speed_time = \"2s\"\nconnect_timeout = \"5s\"\n",
    );
    let l = &cfg.git.limits;
    assert_eq!(l.timeout, Duration::from_secs(5400));
    assert_eq!(l.low_speed_limit, 0);
    assert_eq!(l.low_speed_time, Duration::from_secs(2));
    assert_eq!(l.connect_timeout, Duration::from_secs(5));
}

#[test]
fn bad_git_limits_are_refused_with_line_and_column() {
    let err = parse_err("[git]\ntimeout = \"soon\"\n");
    assert!(err.starts_with("runtimes.toml:2:11: "), "{err}");
    assert!(err.contains("invalid git.timeout \"soon\""), "{err}");
    let err = parse_err("[git]\nlow_speed_time = \"500ms\"\n");
    assert!(err.contains("whole seconds"), "{err}");
    let err = parse_err("[git]\nconnect_timeout = \"0s\"\n");
    assert!(err.contains("invalid git.connect_timeout"), "{err}");
    let err = parse_err("[git]\ntimeout = \"30d\"\n");
    assert!(err.contains("\"7d\""), "{err}");
    let err = parse_err("[git]\nlow_speed_limit = -1\n");
    assert!(err.starts_with("runtimes.toml:2:19: "), "{err}");
    let err = parse_err("[git]\ntimeout = 30\n");
    assert!(err.starts_with("runtimes.toml:2:"), "{err}");
}

#[test]
fn bad_platform_branch_plan_and_default_are_refused() {
    assert!(parse_err("[runtimes.a]\nplatform = \"amd64\"\n").contains("invalid platform"));
    assert!(parse_err("[runtimes.a]\nbranch = \"a..b\"\n").contains("invalid branch"));
    assert!(parse_err("[runtimes.a]\nplan = \"nope\"\n").contains("unknown plan \"nope\""));
    let err = parse_err("default_runtime = \"zz\"\n[runtimes.a]\n");
    assert!(err.contains("declared: a"), "{err}");
}

#[test]
fn inherited_bad_value_points_at_the_runtime() {
    let err = parse_err("[defaults]\nimage_prefix = \"Bad/\"\n[runtimes.a]\n");
    assert!(err.starts_with("runtimes.toml:2:16"), "{err}");
    let err = parse(
        "[runtimes.a]\n",
        "f",
        &EnvOverrides {
            repo_prefix: Some("http://x/".into()),
            registry: None,
        },
        &|_| Some(SourceKind::Git),
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("PLANNER_REPO_PREFIX: "), "{err}");
}

#[test]
fn image_repo_grammar() {
    assert!(validate_image_repo("molecule-local/workspace-template-claude-code").is_ok());
    assert!(validate_image_repo("localhost:5000/a/b").is_ok());
    assert!(validate_image_repo("UPPER/x").is_err());
    assert!(validate_image_repo("a//b").is_err());
    assert!(validate_image_repo("a/b-").is_err());
}

#[test]
fn builder_and_build_network_default_merge_and_are_checked() {
    let cfg = parse_ok(
        "[defaults]\nbuild_network = \"none\"\n[runtimes.a]\n[runtimes.b]\nbuilder = \"classic\"\nbuild_network = \"host\"\n",
    );
    assert_eq!(cfg.runtimes["a"].builder, Builder::Auto);
    assert_eq!(cfg.runtimes["a"].build_network, BuildNetwork::None);
    assert_eq!(cfg.runtimes["b"].builder, Builder::Classic);
    assert_eq!(cfg.runtimes["b"].build_network, BuildNetwork::Host);
    let plain = parse_ok("[runtimes.a]\n");
    assert_eq!(plain.runtimes["a"].build_network, BuildNetwork::Default);
    let err = parse_err("[runtimes.a]\nbuilder = \"docker\"\n");
    assert!(
        err.contains("runtimes.toml:2:") && err.contains("invalid builder \"docker\""),
        "{err}"
    );
    let err = parse_err("[defaults]\nbuild_network = \"bridge\"\n[runtimes.a]\n");
    assert!(
        err.contains("runtimes.toml:2:") && err.contains("\"none\" or \"host\""),
        "{err}"
    );
}

#[test]
fn build_args_merge_per_key_and_the_runtime_wins() {
    let cfg = parse_ok(
        "[defaults]\nbuild_args = { RUNTIME_VERSION = \"1.4.2\", BASE = \"slim\" }\n\
         [runtimes.a]\n[runtimes.b]\nbuild_args = { RUNTIME_VERSION = \"2.0\", EXTRA = \"\" }\n",
    );
    let a = &cfg.runtimes["a"].build_args;
    assert_eq!(a["RUNTIME_VERSION"], "1.4.2");
    assert_eq!(a.len(), 2);
    let b = &cfg.runtimes["b"].build_args;
    assert_eq!(
        b.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>(),
        ["BASE=slim", "EXTRA=", "RUNTIME_VERSION=2.0"]
    );
    assert!(
        parse_ok("[runtimes.a]\n").runtimes["a"]
            .build_args
            .is_empty()
    );
    assert!(
        parse_ok(BUILTIN_RUNTIMES_TOML).runtimes["codex"]
            .build_args
            .is_empty()
    );
}

#[test]
fn bad_build_args_are_refused_with_line_and_column() {
    let err = parse_err("[runtimes.a]\nbuild_args = { V = 1 }\n");
    assert!(err.starts_with("runtimes.toml:2:20: "), "{err}");
    assert!(
        err.contains("must be a string, not a integer") && err.contains("V = \"1\""),
        "{err}"
    );
    let err = parse_err("[defaults]\nbuild_args = { V = true }\n[runtimes.a]\n");
    assert!(err.starts_with("runtimes.toml:2:20: defaults: "), "{err}");
    let err = parse_err("[runtimes.a]\nbuild_args = { \"1X\" = \"v\" }\n");
    assert!(
        err.starts_with("runtimes.toml:2:16: runtime \"a\": invalid build arg name \"1X\""),
        "{err}"
    );
    let err = parse_err("[runtimes.a]\nbuild_args = { \"A-B\" = \"v\" }\n");
    assert!(err.contains("invalid build arg name"), "{err}");
    let err = parse_err("[runtimes.a]\nbuild_args = { V = [\"a\"] }\n");
    assert!(err.contains("not a array"), "{err}");
    let err = parse_err("[runtimes.a]\nbuild_args = \"V=1\"\n");
    assert!(err.starts_with("runtimes.toml:2:"), "{err}");
    let big = format!(
        "[runtimes.a]\nbuild_args = {{ V = \"{}\" }}\n",
        "x".repeat(5000)
    );
    assert!(parse_err(&big).contains("at most 4096"));
    let nul = "[runtimes.a]\nbuild_args = { V = \"a\\u0000b\" }\n";
    assert!(parse_err(nul).contains("NUL"), "{}", parse_err(nul));
    let many: Vec<String> = (0..65).map(|i| format!("A{i} = \"x\"")).collect();
    let text = format!("[runtimes.a]\nbuild_args = {{ {} }}\n", many.join(", "));
    assert!(parse_err(&text).contains("more than 64 build_args"));
}

#[test]
fn build_args_never_come_from_the_environment() {
    let env = EnvOverrides::from_vars(|n| {
        (n == "RUNTIME_VERSION" || n.starts_with("PLANNER_BUILD")).then(|| "evil".into())
    });
    let cfg = parse(
        "[defaults]\nbuild_args = { RUNTIME_VERSION = \"1.4.2\" }\n[runtimes.a]\n[runtimes.b]\nbuild_args = {}\n",
        "f",
        &env,
        &|_| Some(SourceKind::Git),
    )
    .unwrap();
    assert_eq!(cfg.runtimes["a"].build_args["RUNTIME_VERSION"], "1.4.2");
    assert_eq!(cfg.runtimes["b"].build_args["RUNTIME_VERSION"], "1.4.2");
}

#[test]
fn line_column_counts_from_one() {
    assert_eq!(line_column("ab\ncd", 0), (1, 1));
    assert_eq!(line_column("ab\ncd", 4), (2, 2));
}

#[test]
fn smoke_merges_over_defaults_and_is_checked_where_written() {
    let cfg = parse_ok(
        "[defaults]\nsmoke = [\"true\"]\n[runtimes.a]\n[runtimes.b]\nsmoke = [\"python3\", \"-c\", \"import x\"]\nsmoke_timeout = \"90s\"\n",
    );
    assert_eq!(cfg.runtimes["a"].smoke, Some(vec!["true".to_owned()]));
    assert_eq!(cfg.runtimes["a"].smoke_timeout, Duration::from_secs(120));
    let b = &cfg.runtimes["b"];
    assert_eq!(b.smoke.as_deref().unwrap(), ["python3", "-c", "import x"]);
    assert_eq!(b.smoke_timeout, Duration::from_secs(90));
    assert_eq!(parse_ok("[runtimes.a]\n").runtimes["a"].smoke, None);
    let long = format!("[runtimes.a]\nsmoke = [\"x\", \"{}\"]\n", "y".repeat(5000));
    let many = format!("[runtimes.a]\nsmoke = [{}]\n", vec!["\"x\""; 65].join(", "));
    for (text, at, needle) in [
        (
            "[runtimes.a]\nsmoke = []\n",
            "runtimes.toml:2:9",
            "smoke is empty",
        ),
        (
            "[runtimes.a]\nsmoke = \"true\"\n",
            "runtimes.toml:2:9",
            "invalid type",
        ),
        (
            "[runtimes.a]\nsmoke = [\" \"]\n",
            "runtimes.toml:2:10",
            "argument 1 (the command) is blank",
        ),
        (
            "[runtimes.a]\nsmoke = [\"a\", \"b\\u0000\"]\n",
            "runtimes.toml:2:15",
            "argument 2 contains a NUL",
        ),
        (
            long.as_str(),
            "runtimes.toml:2:15",
            "longer than 4096 bytes",
        ),
        (many.as_str(), "runtimes.toml:2:9", "more than 64"),
        (
            "[defaults]\nsmoke = []\n[runtimes.a]\n",
            "runtimes.toml:2:9",
            "defaults: smoke is empty",
        ),
        (
            "[runtimes.a]\nsmoke = [\"true\"]\nsmoke_timeout = \"soon\"\n",
            "runtimes.toml:3:17",
            "invalid smoke_timeout \"soon\"",
        ),
        (
            "[runtimes.a]\nsmoke_timeout = \"500ms\"\n",
            "runtimes.toml:2:17",
            "from \"1s\" to \"24h\"",
        ),
        (
            "[defaults]\nsmoke_timeout = \"2d\"\n[runtimes.a]\n",
            "runtimes.toml:2:17",
            "runtime \"a\": invalid smoke_timeout",
        ),
    ] {
        let err = parse_err(text);
        assert!(err.starts_with(at) && err.contains(needle), "{text}: {err}");
    }
}

#[test]
fn publish_names_the_reference_a_registry_mode_consumer_resolves() {
    let none = parse_ok("[runtimes.codex]\n");
    assert_eq!(
        (none.publish, none.runtimes["codex"].publish.clone()),
        (None, None)
    );
    let c = parse_ok(
        "[defaults]\nregistry_tag = \"stable\"\n[publish]\nregistry = \"127.0.0.1:5000/molecule-ai/\"\n[runtimes.codex]\n[runtimes.other]\nregistry_image = \"rt-\"\n",
    );
    assert_eq!(c.publish.unwrap().registry, "127.0.0.1:5000/molecule-ai");
    let dest = |rt: &str| c.runtimes[rt].publish.as_ref().unwrap().to_string();
    assert_eq!(
        dest("codex"),
        "127.0.0.1:5000/molecule-ai/workspace-template-codex:stable"
    );
    assert_eq!(dest("other"), "127.0.0.1:5000/molecule-ai/rt-other:stable");
}

#[test]
fn publish_refuses_what_is_no_registry_prefix() {
    for bad in [
        "https://r.example/x",
        "r.example/x:tag",
        "r.example/x@sha256:0",
        "molecule-ai",
        "R.example/UPPER",
    ] {
        let err = parse_err(&format!("[publish]\nregistry = \"{bad}\"\n"));
        assert!(
            err.contains("runtimes.toml:2:") && err.contains("invalid publish.registry"),
            "{bad}: {err}"
        );
        assert!(err.contains("help: write host[:port]/path"), "{err}");
    }
    let err = parse_err("[publish]\nregistry = \"r.example/x\"\nrepo = \"y\"\n");
    assert!(err.contains("repo"), "{err}");
    let err = parse_err(
        "[publish]\nregistry = \"r.example/x\"\n[runtimes.codex]\nregistry_tag = \"a:b\"\n",
    );
    assert!(
        err.contains("runtimes.toml:4:") && err.contains("publish destination"),
        "{err}"
    );
}

#[test]
fn release_build_args_take_their_index_and_merge_per_key() {
    let cfg = parse_ok(
        "[indexes]\npypi = \"http://127.0.0.1:3141/simple/\"\n\
         [defaults]\nbuild_args = { RUNTIME_VERSION = { pypi = \"Molecule_AI-runtime\" }, BASE = \"slim\" }\n\
         [runtimes.a]\n[runtimes.b]\nbuild_args = { RUNTIME_VERSION = \"2.0\", CLI = { npm = \"@openai/codex\" }, P = { pypi = \"x\", pre = true } }\n",
    );
    let a = &cfg.runtimes["a"];
    assert_eq!(a.build_args.keys().collect::<Vec<_>>(), ["BASE"]);
    let r = &a.releases["RUNTIME_VERSION"];
    assert_eq!(
        (r.kind, r.index.as_str(), r.package.as_str(), r.pre),
        (
            IndexKind::Pypi,
            "http://127.0.0.1:3141/simple/",
            "Molecule_AI-runtime",
            false
        )
    );
    let b = &cfg.runtimes["b"];
    // The runtime's plain value wins over the default's release.
    assert_eq!(b.build_args["RUNTIME_VERSION"], "2.0");
    assert_eq!(b.releases["CLI"].index.as_str(), DEFAULT_NPM_INDEX);
    assert!(b.releases["P"].pre);
    assert_eq!(b.releases.len(), 2);
}

#[test]
fn bad_release_build_args_and_indexes_are_refused() {
    for (text, want) in [
        (
            "build_args = { V = { pip = \"x\" } }",
            "unknown or mistyped key \"pip\"",
        ),
        ("build_args = { V = { pre = true } }", "names no index"),
        (
            "build_args = { V = { pypi = \"x\", npm = \"y\" } }",
            "more than one index",
        ),
        (
            "build_args = { V = { npm = \"x\", pre = true } }",
            "pre applies to pypi only",
        ),
        (
            "build_args = { V = { pypi = \"a b\" } }",
            "not a valid pypi package name",
        ),
        (
            "build_args = { V = { npm = \"Big\" } }",
            "not a valid npm package name",
        ),
        ("build_args = { V = { pypi = 1 } }", "mistyped key \"pypi\""),
    ] {
        let err = parse_err(&format!("[runtimes.a]\n{text}\n"));
        assert!(
            err.starts_with("runtimes.toml:2:") && err.contains(want),
            "{text}: {err}"
        );
    }
    for (text, want) in [
        (
            "pypi = \"http://pypi.example/simple/\"",
            "http:// only to a loopback host",
        ),
        ("npm = \"ftp://127.0.0.1/\"", "not allowed"),
        ("npm = \"nope\"", "not a URL"),
        ("mirror = \"https://x/\"", "unknown field"),
    ] {
        let err = parse_err(&format!("[indexes]\n{text}\n[runtimes.a]\n"));
        assert!(
            err.starts_with("runtimes.toml:2:") && err.contains(want),
            "{text}: {err}"
        );
    }
}
