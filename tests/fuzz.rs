//! Property-based fuzzing (proptest) of everything planner reads from outside: git pkt-lines
//! and ref advertisements, `runtimes.toml`, plan files, `.dockerignore`, records, and
//! Dockerfiles (their base images). Each
//! target gets random bytes or text, and structure-aware inputs (valid documents, mutated or
//! assembled from hostile pieces), and checks that nothing panics, that errors are clean
//! (located, one of the documented kinds) and that what is accepted behaves (round trips,
//! agreement with a reference matcher).
//!
//! The suite runs [`SUITE_CASES`] cases per target ([`SUITE_CASES_REGEX`] for `.dockerignore`),
//! about 4,900 in all; `scripts/fuzz.sh` runs a million per target through `PROPTEST_CASES`,
//! which overrides both.

use std::sync::Arc;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use planner::config::{self, EnvOverrides};
use planner::docker::ignore::{DockerIgnore, IgnoreError};
use planner::dockerfile::{BaseRef, MAX_REFERENCE_BYTES, base_images};
use planner::git::pktline::{self, Pkt, PktError};
use planner::key::Key;
use planner::plan::Graph;
use planner::steps::plans::{load as load_plans, parse_plan};
use planner::steps::record::RecordFields;
use planner::store::{RECORD_SCHEMA, Record, Store};

/// Cases per target in the normal test suite.
const SUITE_CASES: u32 = 256;
/// For the `.dockerignore` targets, each case of which compiles regexes (slow in debug builds).
const SUITE_CASES_REGEX: u32 = 128;

/// `cases` per target, unless `PROPTEST_CASES` says otherwise.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

// ---------------------------------------------------------------------------------------------
// pkt-lines and ref advertisements

fn oid() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{40}",
        "[0-9a-f]{64}",
        // Near misses: wrong length, upper case, non-hex.
        "[0-9a-fA-Z]{38,42}",
    ]
}

fn ref_name() -> impl Strategy<Value = String> {
    "refs/(heads|tags)/[a-zA-Z0-9._/-]{1,24}"
}

/// Pieces of a pkt-line stream: mostly well framed, sometimes not.
fn pkt_piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..80).prop_map(|p| pktline::encode(&p)),
        2 => (oid(), ref_name()).prop_map(|(o, n)| pktline::encode(format!("{o} {n}\n").as_bytes())),
        1 => Just(b"0000".to_vec()),
        1 => Just(b"0001".to_vec()),
        1 => Just(b"0002".to_vec()),
        1 => Just(b"0003".to_vec()),
        1 => "[0-9a-fA-F]{4}".prop_map(String::into_bytes),
        1 => "ERR [ -~]{0,20}".prop_map(|m| pktline::encode(m.as_bytes())),
        1 => vec(any::<u8>(), 0..8),
    ]
}

fn pkt_stream() -> impl Strategy<Value = Vec<u8>> {
    vec(pkt_piece(), 0..12).prop_map(|pieces| pieces.concat())
}

/// A v0 advertisement as `git http-backend` sends it, for `refs`.
fn advertisement(refs: &[(String, String)]) -> Vec<u8> {
    let mut out = pktline::encode(b"# service=git-upload-pack\n");
    out.extend_from_slice(b"0000");
    for (i, (name, oid)) in refs.iter().enumerate() {
        let caps = if i == 0 {
            "\0multi_ack side-band-64k"
        } else {
            ""
        };
        out.extend(pktline::encode(format!("{oid} {name}{caps}\n").as_bytes()));
    }
    out.extend_from_slice(b"0000");
    out
}

fn valid_refs() -> impl Strategy<Value = Vec<(String, String)>> {
    vec((ref_name(), "[0-9a-f]{40}"), 1..8)
}

fn parse_all(bytes: &[u8]) {
    let _ = pktline::parse_pkts(bytes);
    let _ = pktline::parse_ls_refs(bytes);
    let _ = pktline::parse_advertisement(bytes);
}

proptest! {
    #![proptest_config(config(SUITE_CASES))]

    #[test]
    fn pkt_random_bytes_never_panic(bytes in vec(any::<u8>(), 0..300)) {
        parse_all(&bytes);
    }

    #[test]
    fn pkt_structured_streams_never_panic(bytes in pkt_stream()) {
        parse_all(&bytes);
        for pair in pktline::parse_ls_refs(&bytes).unwrap_or_default() {
            prop_assert!(pktline::is_object_id(&pair.1));
        }
        for pair in pktline::parse_advertisement(&bytes).unwrap_or_default() {
            prop_assert!(pktline::is_object_id(&pair.1));
        }
    }

    #[test]
    fn pkt_payloads_round_trip(payloads in vec(vec(any::<u8>(), 0..200), 0..10)) {
        let mut bytes: Vec<u8> = payloads.iter().flat_map(|p| pktline::encode(p)).collect();
        bytes.extend_from_slice(b"0000");
        let pkts = pktline::parse_pkts(&bytes).unwrap();
        let mut want: Vec<Pkt> = payloads.iter().map(|p| Pkt::Data(p)).collect();
        want.push(Pkt::Flush);
        prop_assert_eq!(pkts, want);
    }

    #[test]
    fn ls_refs_answers_round_trip_and_any_cut_is_an_error(
        refs in valid_refs(),
        cuts in vec(any::<prop::sample::Index>(), 8),
    ) {
        let mut bytes = Vec::new();
        for (name, oid) in &refs {
            bytes.extend(pktline::encode(format!("{oid} {name}\n").as_bytes()));
        }
        bytes.extend_from_slice(b"0000");
        prop_assert_eq!(pktline::parse_ls_refs(&bytes).unwrap(), refs.clone());
        for cut in cuts.iter().map(|c| c.index(bytes.len())) {
            prop_assert!(pktline::parse_ls_refs(&bytes[..cut]).is_err(), "cut at {}", cut);
        }
    }

    #[test]
    fn advertisements_round_trip_and_mutations_never_panic(
        refs in valid_refs(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let bytes = advertisement(&refs);
        prop_assert_eq!(pktline::parse_advertisement(&bytes).unwrap(), refs);
        let mut mutated = bytes.clone();
        for (at, byte) in flips {
            let i = at.index(mutated.len());
            mutated[i] = byte;
        }
        match pktline::parse_advertisement(&mutated) {
            Ok(pairs) => prop_assert!(pairs.iter().all(|(_, o)| pktline::is_object_id(o))),
            Err(PktError::Truncated(at) | PktError::BadLength(_, at)) => {
                prop_assert!(at <= mutated.len())
            }
            Err(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// runtimes.toml

/// Values for config keys: plausible, hostile and random.
fn config_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("main".to_owned()),
        Just("Dockerfile".to_owned()),
        Just("docker/Dockerfile".to_owned()),
        Just("linux/amd64".to_owned()),
        Just("local-build".to_owned()),
        Just("https://git.example/org/".to_owned()),
        Just("https://git.example/org/repo".to_owned()),
        Just("http://127.0.0.1:1/x".to_owned()),
        Just("https://user:pw@git.example/r".to_owned()),
        Just("ssh://git@git.example/org/r.git".to_owned()),
        Just("file:///tmp/r".to_owned()),
        Just("registry.example/ns/".to_owned()),
        Just("../etc/passwd".to_owned()),
        Just("/abs".to_owned()),
        Just(String::new()),
        Just("é\u{0}\u{202e}".to_owned()),
        "[a-z0-9./:_-]{0,24}",
        ".{0,16}",
    ]
}

fn config_key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "repo",
        "repo_prefix",
        "branch",
        "dockerfile",
        "platform",
        "image_prefix",
        "plan",
        "bogus",
    ])
}

fn table() -> impl Strategy<Value = toml::Table> {
    vec((config_key(), config_value()), 0..5).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), toml::Value::String(v)))
            .collect()
    })
}

/// A whole `runtimes.toml`, serialized by the toml crate (so it is valid TOML), with
/// sometimes a hostile suffix appended as raw text.
fn config_document() -> impl Strategy<Value = String> {
    let runtime_name = prop_oneof!["[a-z][a-z0-9-]{0,10}", ".{1,6}"];
    (
        table(),
        vec((runtime_name, table()), 0..5),
        prop::option::of(config_value()),
        prop::option::of(any::<bool>()),
        prop_oneof![
            Just(String::new()),
            ".{0,20}",
            Just("\n[runtimes.x]\nrepo = 3\n".into())
        ],
    )
        .prop_map(|(defaults, runtimes, default_runtime, insecure, suffix)| {
            let mut doc = toml::Table::new();
            if let Some(d) = default_runtime {
                doc.insert("default_runtime".into(), toml::Value::String(d));
            }
            doc.insert("defaults".into(), toml::Value::Table(defaults));
            if let Some(b) = insecure {
                let mut git = toml::Table::new();
                git.insert("allow_insecure_http".into(), toml::Value::Boolean(b));
                doc.insert("git".into(), toml::Value::Table(git));
            }
            let rts: toml::Table = runtimes
                .into_iter()
                .map(|(n, t)| (n, toml::Value::Table(t)))
                .collect();
            doc.insert("runtimes".into(), toml::Value::Table(rts));
            toml::to_string(&doc).expect("a table serializes") + &suffix
        })
}

/// Parses a config; checks errors are located within the text and accepted runtimes are usable.
fn check_config(text: &str) -> Result<(), TestCaseError> {
    let plans = load_plans(None).unwrap();
    let exists = |p: &str| plans.source(p);
    match config::parse(text, "runtimes.toml", &EnvOverrides::default(), &exists) {
        Ok(cfg) => {
            let rts: Vec<_> = cfg.runtimes.values().cloned().map(Arc::new).collect();
            for rt in &rts {
                let _ = (
                    rt.pinned_tag(&"a".repeat(40)),
                    rt.latest_tag(),
                    rt.repo_identity(),
                );
            }
            let graph = Graph::compile(&rts, &plans);
            prop_assert_eq!(graph.order().len(), graph.len());
        }
        Err(e) => {
            let message = e.to_string();
            if let Some(rest) = message.strip_prefix("runtimes.toml:") {
                let line: usize = rest.split(':').next().unwrap().parse().unwrap();
                prop_assert!(line >= 1 && line <= text.lines().count() + 1, "{}", message);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(SUITE_CASES))]

    #[test]
    fn config_random_text_never_panics(text in ".{0,200}") {
        check_config(&text)?;
    }

    #[test]
    fn config_structured_documents_never_panic(text in config_document()) {
        check_config(&text)?;
    }
}

// ---------------------------------------------------------------------------------------------
// plans

fn plan_document() -> impl Strategy<Value = String> {
    let ids = prop::sample::select(vec!["r", "c", "v", "b", "t", "x", ""]);
    let kinds = prop::sample::select(vec![
        "resolve-head",
        "clone",
        "verify-dockerfile",
        "build",
        "tag-latest",
        "bogus",
    ]);
    let step = (
        ids.clone(),
        kinds,
        vec(ids, 0..3),
        prop::option::of(prop::sample::select(vec!["target", "depth"])),
    );
    vec(step, 0..8).prop_map(|steps| {
        let steps: Vec<toml::Value> = steps
            .into_iter()
            .map(|(id, kind, needs, param)| {
                let mut t = toml::Table::new();
                t.insert("id".into(), toml::Value::String(id.into()));
                t.insert("kind".into(), toml::Value::String(kind.into()));
                let needs = needs.into_iter().map(|n| toml::Value::String(n.into()));
                t.insert("needs".into(), toml::Value::Array(needs.collect()));
                if let Some(p) = param {
                    let mut params = toml::Table::new();
                    params.insert(p.into(), toml::Value::String("x".into()));
                    t.insert("params".into(), toml::Value::Table(params));
                }
                toml::Value::Table(t)
            })
            .collect();
        let mut doc = toml::Table::new();
        doc.insert("steps".into(), toml::Value::Array(steps));
        toml::to_string(&doc).expect("a table serializes")
    })
}

/// A valid pipeline per branch, steps shuffled: always accepted.
fn valid_plan_document() -> impl Strategy<Value = (String, usize)> {
    (1usize..4, any::<prop::sample::Index>()).prop_map(|(branches, seed)| {
        let mut steps = vec!["[[steps]]\nid = \"r\"\nkind = \"resolve-head\"\n".to_owned()];
        steps.push("[[steps]]\nid = \"c\"\nkind = \"clone\"\nneeds = [\"r\"]\n".into());
        for b in 0..branches {
            steps.push(format!(
                "[[steps]]\nid = \"v{b}\"\nkind = \"verify-dockerfile\"\nneeds = [\"c\"]\n"
            ));
            steps.push(format!(
                "[[steps]]\nid = \"b{b}\"\nkind = \"build\"\nneeds = [\"v{b}\"]\nparams = {{ target = \"t{b}\" }}\n"
            ));
            steps.push(format!(
                "[[steps]]\nid = \"t{b}\"\nkind = \"tag-latest\"\nneeds = [\"b{b}\"]\n"
            ));
        }
        let n = steps.len();
        let rotate = seed.index(n);
        steps.rotate_left(rotate);
        steps.swap(0, seed.index(n));
        (steps.concat(), branches)
    })
}

/// Parses a plan; an accepted plan's order and goals are consistent and it compiles.
fn check_plan(text: &str) -> Result<Option<usize>, TestCaseError> {
    let plan = match parse_plan("p", "plans/p.toml", text) {
        Ok(plan) => plan,
        Err(e) => {
            let message = e.to_string();
            prop_assert!(message.starts_with("plans/p.toml:"), "{}", message);
            return Ok(None);
        }
    };
    let n = plan.steps.len();
    let mut position = vec![usize::MAX; n];
    for (at, &i) in plan.order().iter().enumerate() {
        prop_assert_eq!(position[i], usize::MAX, "step {} ordered twice", i);
        position[i] = at;
    }
    prop_assert_eq!(plan.order().len(), n);
    for (i, step) in plan.steps.iter().enumerate() {
        prop_assert!(step.needs.iter().all(|&need| position[need] < position[i]));
    }
    let needed: Vec<bool> = (0..n)
        .map(|i| plan.steps.iter().any(|s| s.needs.contains(&i)))
        .collect();
    let goals: Vec<usize> = (0..n).filter(|&i| !needed[i]).collect();
    prop_assert_eq!(plan.goals(), &goals[..]);
    let mut plans = load_plans(None).unwrap();
    plans.plans.insert("p".into(), plan);
    let cfg = config::parse(
        "[runtimes.a]\nplan = \"p\"\n[runtimes.b]\nplan = \"p\"\n",
        "t.toml",
        &EnvOverrides::default(),
        &|p| plans.source(p),
    )
    .unwrap();
    let rts: Vec<_> = cfg.runtimes.values().cloned().map(Arc::new).collect();
    let graph = Graph::compile(&rts, &plans);
    prop_assert_eq!(graph.order().len(), graph.len());
    Ok(Some(goals.len()))
}

proptest! {
    #![proptest_config(config(SUITE_CASES))]

    #[test]
    fn plan_random_text_never_panics(text in ".{0,200}") {
        check_plan(&text)?;
    }

    #[test]
    fn plan_structured_documents_never_panic(text in plan_document()) {
        check_plan(&text)?;
    }

    #[test]
    fn plan_valid_pipelines_in_any_order_are_accepted((text, branches) in valid_plan_document()) {
        prop_assert_eq!(check_plan(&text)?, Some(branches));
    }
}

// ---------------------------------------------------------------------------------------------
// .dockerignore

/// Pattern text from the pieces Docker's syntax gives meaning to.
fn pattern_text() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "*", "**", "?", "/", "[a-c]", "[^a]", "[", "]", "\\", "\\*", "!", ".", "..", "a", "b", "é",
        " ", "#", "-", "[z-a]", "[\\]]", "\n", "\r\n", "\u{feff}",
    ]);
    vec(token, 0..24).prop_map(|t| t.concat())
}

fn ignore_path() -> impl Strategy<Value = String> {
    vec("[ab.é*?]{1,3}", 1..5).prop_map(|s| s.join("/"))
}

/// A segment of a pattern for the reference matcher: `**`, or a glob of `a`, `b`, `*`, `?`
/// (no two stars in a row, which would be a `**`).
fn reference_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("**".to_owned()),
        4 => "[ab*?]{1,3}".prop_map(|s| s.replace("**", "*").replace("**", "*")),
    ]
}

fn reference_pattern() -> impl Strategy<Value = (bool, Vec<String>)> {
    (any::<bool>(), vec(reference_segment(), 1..4))
}

/// `filepath.Match` within one segment: `*` any run, `?` one character.
fn glob(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|k| glob(rest, &text[k..])),
        Some(('?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

/// Whole-path semantics of moby's patterns: a `**` segment is any number of segments (at
/// least one when it ends the pattern, as `dir/**` means what is inside `dir`).
fn reference_match(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((seg, rest)) if seg == "**" => {
            let least = usize::from(rest.is_empty());
            (least..=path.len()).any(|k| reference_match(rest, &path[k..]))
        }
        Some((seg, rest)) => {
            let Some((first, tail)) = path.split_first() else {
                return false;
            };
            let seg: Vec<char> = seg.chars().collect();
            let first: Vec<char> = first.chars().collect();
            glob(&seg, &first) && reference_match(rest, tail)
        }
    }
}

/// The last pattern matching the path or one of its parents decides.
fn reference_excluded(patterns: &[(bool, Vec<String>)], path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    let mut excluded = false;
    for (exception, pattern) in patterns {
        if (1..=segments.len()).any(|k| reference_match(pattern, &segments[..k])) {
            excluded = !exception;
        }
    }
    excluded
}

/// Every ASCII punctuation character and space escaped. Letters, digits and other characters stay
/// as they are: moby hands `\x` to Go's regexp, where `\a` is BEL, `\b` a word
/// boundary and `\é` an error.
fn escaped(path: &str) -> String {
    path.chars()
        .map(|c| {
            if (c.is_ascii_punctuation() && c != '/') || c == ' ' {
                format!("\\{c}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(config(SUITE_CASES_REGEX))]

    #[test]
    fn dockerignore_random_text_never_panics(text in ".{0,300}", path in ".{0,40}") {
        if let Ok(ig) = DockerIgnore::parse(&text) {
            let _ = ig.is_excluded(&path);
        }
    }

    #[test]
    fn dockerignore_structured_patterns_compile_cleanly_and_match(
        lines in vec(pattern_text(), 1..5),
        paths in vec(ignore_path(), 1..6),
    ) {
        match DockerIgnore::parse(&lines.join("\n")) {
            Ok(ig) => {
                for path in &paths {
                    let _ = ig.is_excluded(path);
                }
            }
            Err(IgnoreError::Pattern { line, message }) => {
                prop_assert!(line >= 1 && !message.is_empty());
            }
            Err(other) => prop_assert!(false, "unexpected error {}", other),
        }
    }

    #[test]
    fn dockerignore_agrees_with_a_reference_matcher(
        patterns in vec(reference_pattern(), 1..4),
        paths in vec(vec("[ab]{1,3}", 1..5).prop_map(|s| s.join("/")), 1..8),
    ) {
        let text: Vec<String> = patterns
            .iter()
            .map(|(exception, segs)| format!("{}{}", if *exception { "!" } else { "" }, segs.join("/")))
            .collect();
        let ig = DockerIgnore::parse(&text.join("\n")).unwrap();
        for path in &paths {
            prop_assert_eq!(
                ig.is_excluded(path).unwrap(),
                reference_excluded(&patterns, path),
                "{:?} on {}", text, path
            );
        }
    }

    #[test]
    fn dockerignore_a_path_escaped_matches_itself_literally(
        path in vec("[ab.é*?\\[\\]\\\\!# -]{1,4}", 1..4)
            .prop_map(|s| s.join("/"))
            .prop_filter("a segment . or .. is cleaned away", |p| {
                p.split('/').all(|s| s != "." && s != "..")
            })
            .prop_filter("trailing blanks are trimmed", |p| !p.ends_with(' ')),
    ) {
        let ig = DockerIgnore::parse(&escaped(&path)).unwrap();
        let (child, longer) = (format!("{path}/child"), format!("{path}x"));
        prop_assert!(ig.is_excluded(&path).unwrap());
        prop_assert!(ig.is_excluded(&child).unwrap());
        prop_assert!(!ig.is_excluded(&longer).unwrap());
        let negated = DockerIgnore::parse(&format!("{}\n!{}", escaped(&path), escaped(&path))).unwrap();
        prop_assert!(!negated.is_excluded(&path).unwrap());
    }
}

// ---------------------------------------------------------------------------------------------
// records

fn key() -> impl Strategy<Value = Key> {
    "[0-9a-f]{64}".prop_map(|hex| Key::parse(&hex).expect("64 hex digits"))
}

/// A record as planner writes it: free text where records hold text, valid values where
/// they hold commits, digests and ids (anything else is refused on read).
fn record() -> impl Strategy<Value = Record> {
    let text = ".{0,12}";
    let hex = |n: usize| proptest::string::string_regex(&format!("[0-9a-f]{{{n}}}")).unwrap();
    let commit = hex(40).prop_filter("not the all-zero id", |c| c.bytes().any(|b| b != b'0'));
    (
        key(),
        text,
        vec(text, 0..3),
        prop::option::of(text),
        prop::option::of(commit),
        prop::option::of(hex(64)),
        prop::option::of(hex(64).prop_map(|h| format!("sha256:{h}"))),
        any::<u64>(),
    )
        .prop_map(
            |(key, repo, runtimes, branch, commit, blake3, image, at)| Record {
                schema: RECORD_SCHEMA,
                kind: "build".into(),
                key,
                runtimes,
                repo,
                fields: RecordFields {
                    branch,
                    commit,
                    digest: None,
                    dockerfile_blake3: blake3,
                    image_id: image,
                    checkout_id: None,
                }
                .into_map(),
                finished_at: at,
            },
        )
}

/// A record's JSON with some bytes replaced, some cut, or some inserted.
fn mutated(bytes: &[u8], edits: &[(prop::sample::Index, u8, u8)]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for (at, op, byte) in edits {
        if out.is_empty() {
            break;
        }
        let i = at.index(out.len());
        match op % 3 {
            0 => out[i] = *byte,
            1 => out.truncate(i),
            _ => out.insert(i, *byte),
        }
    }
    out
}

thread_local! {
    /// One cache dir per test thread, holding one record at a time (a fresh dir per case made
    /// the record targets I/O-bound).
    static CACHE_DIR: tempfile::TempDir = {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("records")).unwrap();
        dir
    };
}

/// Writes `bytes` as the only record, that of `key`, and reads it back every way.
fn read_back(key: &Key, bytes: &[u8]) -> Result<Option<Record>, TestCaseError> {
    CACHE_DIR.with(|dir| {
        let path = dir.path().join(format!("records/{key}.json"));
        std::fs::write(&path, bytes).unwrap();
        let store = Store::read_only(dir.path());
        let read = store.read_record(key, planner::steps::build::KIND);
        let listed = store.list_records(planner::steps::kinds()).unwrap();
        std::fs::remove_file(&path).unwrap();
        if let Some(r) = &read {
            prop_assert_eq!(&r.key, key);
            prop_assert_eq!(r.schema, RECORD_SCHEMA);
        }
        prop_assert_eq!(listed.len(), 1);
        prop_assert_eq!(&listed[0].record, &read);
        Ok(read)
    })
}

proptest! {
    #![proptest_config(config(SUITE_CASES))]

    #[test]
    fn record_random_bytes_never_panic(bytes in vec(any::<u8>(), 0..200)) {
        let _ = serde_json::from_slice::<Record>(&bytes);
    }

    #[test]
    fn records_round_trip(rec in record()) {
        let bytes = serde_json::to_vec_pretty(&rec).unwrap();
        let back: Record = serde_json::from_slice(&bytes).unwrap();
        prop_assert_eq!(&back, &rec);
        prop_assert_eq!(read_back(&rec.key, &bytes)?, Some(rec));
    }

    #[test]
    fn mutated_records_read_back_as_valid_or_nothing(
        rec in record(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>(), any::<u8>()), 1..4),
    ) {
        let bytes = serde_json::to_vec_pretty(&rec).unwrap();
        read_back(&rec.key, &mutated(&bytes, &edits))?;
    }

    #[test]
    fn records_of_another_shape_are_nothing(
        value in prop_oneof![
            Just(serde_json::json!(null)),
            Just(serde_json::json!({"schema": 1, "kind": "build", "key": "x", "runtimes": [],
                "repo": "r", "finished_at": 1})),
            any::<i64>().prop_map(|n| serde_json::json!({"schema": n})),
            ".{0,12}".prop_map(|s| serde_json::json!([s])),
        ],
        key in key(),
    ) {
        prop_assert_eq!(read_back(&key, value.to_string().as_bytes())?, None);
    }
}

// ---------------------------------------------------------------------------------------------
// Dockerfiles (base images)

/// Words that stress substitution, quoting and flags.
fn dockerfile_word() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9./:@_-]{1,24}",
        Just("${BASE:-alpine:3.19}".to_owned()),
        Just("${A}${B}".to_owned()),
        Just("$TARGETARCH".to_owned()),
        Just("${A:+${B:-${C}}}".to_owned()),
        Just("${A#*:}${B%%.*}${C//a/b}".to_owned()),
        Just("\"quoted $A\"".to_owned()),
        Just("'single $A'".to_owned()),
        Just("\\$A`$B".to_owned()),
        Just("${".to_owned()),
        Just("${A:?}".to_owned()),
        Just("scratch".to_owned()),
        Just("Builder".to_owned()),
        "[\\PC\\t]{0,12}",
    ]
}

/// One Dockerfile-ish line: mostly instructions planner reads, sometimes hostile pieces.
fn dockerfile_line() -> impl Strategy<Value = String> {
    let w = dockerfile_word;
    prop_oneof![
        3 => (w(), prop::option::of(w())).prop_map(|(i, s)| match s {
            Some(s) => format!("FROM {i} AS {s}"),
            None => format!("FROM {i}"),
        }),
        2 => (w(), w()).prop_map(|(p, i)| format!("FROM --platform={p} {i}")),
        3 => (w(), w()).prop_map(|(n, v)| format!("ARG {n}={v}")),
        1 => w().prop_map(|n| format!("ARG {n}")),
        2 => w().prop_map(|f| format!("COPY --from={f} /a /b")),
        1 => w().prop_map(|f| format!("RUN --mount=type=bind,from={f},target=/m true")),
        1 => Just("RUN a \\\n# comment\n  && b \\\n\n  && c".to_owned()),
        1 => Just("RUN <<EOF\nFROM evil\nEOF".to_owned()),
        1 => Just("# escape=`".to_owned()),
        1 => Just("\\".to_owned()),
        1 => Just("FROM".to_owned()),
        1 => "[\\PC\\t]{0,40}",
    ]
}

fn dockerfile_text() -> impl Strategy<Value = String> {
    vec(dockerfile_line(), 0..12).prop_map(|lines| lines.join("\n"))
}

fn dockerfile_build_args() -> impl Strategy<Value = planner::config::BuildArgs> {
    prop::collection::btree_map("[A-C]|BASE|TAG", "[a-z0-9:._/$-]{0,12}", 0..4)
}

/// Runs `base_images` and checks what it answers: errors locate themselves and say what to do;
/// accepted references are non-empty, bounded, free of control characters and unique.
fn check_dockerfile(
    text: &str,
    args: &planner::config::BuildArgs,
) -> Result<Option<Vec<BaseRef>>, TestCaseError> {
    match base_images(text, args, "linux/amd64") {
        Ok(bases) => {
            for (i, b) in bases.iter().enumerate() {
                prop_assert!(!b.reference.is_empty());
                prop_assert!(b.reference.len() <= MAX_REFERENCE_BYTES);
                prop_assert!(!b.reference.chars().any(char::is_control));
                prop_assert!(b.platform.as_deref() != Some(""));
                prop_assert!(!bases[..i].contains(b), "duplicate {b:?}");
            }
            Ok(Some(bases))
        }
        Err(e) => {
            let message = e.to_string();
            prop_assert!(message.starts_with("Dockerfile "), "{message}");
            prop_assert!(message.contains("\n  help: "), "{message}");
            if let Some(rest) = message.strip_prefix("Dockerfile line ") {
                let line: usize = rest.split(':').next().unwrap().parse().unwrap();
                prop_assert!(line >= 1 && line <= text.lines().count() + 1, "{message}");
            }
            Ok(None)
        }
    }
}

/// A multi-stage Dockerfile of `stages` (image index, stage it builds on, or a COPY --from),
/// with the base images it names, in order, deduplicated.
fn multi_stage_dockerfile() -> impl Strategy<Value = (String, Vec<String>)> {
    vec(
        (0..4usize, any::<bool>(), any::<bool>(), any::<bool>()),
        1..8,
    )
    .prop_map(|stages| {
        let mut text = String::from("ARG REG=127.0.0.1:5000\nARG IMG2=${REG}/two\n");
        let mut want: Vec<String> = Vec::new();
        let mut add = |r: String| {
            if !want.contains(&r) {
                want.push(r);
            }
        };
        for (i, (image, on_stage, upper, copy)) in stages.into_iter().enumerate() {
            let name = if upper {
                format!("Stage{i}")
            } else {
                format!("stage{i}")
            };
            if on_stage && i > 0 {
                text.push_str(&format!("FROM STAGE{} AS {name}\n", i - 1));
            } else if image == 2 {
                text.push_str(&format!("FROM $IMG2 AS {name}\n"));
                add("127.0.0.1:5000/two".into());
            } else if image == 3 {
                text.push_str(&format!("FROM scratch AS {name}\n"));
            } else {
                text.push_str(&format!("FROM img{image}:1 AS {name}\n"));
                add(format!("img{image}:1"));
            }
            text.push_str("RUN echo \\\n  # note\n  done\n");
            if copy {
                text.push_str(&format!(
                    "COPY --from=stage0 /a /b\nCOPY --from=copy{image}:2 /c /d\n"
                ));
                add(format!("copy{image}:2"));
            }
        }
        (text, want)
    })
}

proptest! {
    #![proptest_config(config(SUITE_CASES))]

    #[test]
    fn dockerfile_random_bytes_never_panic(bytes in vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        check_dockerfile(&text, &Default::default())?;
    }

    #[test]
    fn dockerfile_structured_lines_never_panic(
        text in dockerfile_text(),
        args in dockerfile_build_args(),
    ) {
        check_dockerfile(&text, &args)?;
    }

    #[test]
    fn dockerfile_multi_stage_bases_are_the_images_named((text, want) in multi_stage_dockerfile()) {
        let got = check_dockerfile(&text, &Default::default())?;
        let got: Vec<String> = got.unwrap_or_default().into_iter().map(|b| b.reference).collect();
        prop_assert_eq!(got, want, "{}", text);
    }
}
