//! Unit tests of the watcher's state, decisions, backoff and hook.

use super::backoff::*;
use super::hook::*;
use super::state::*;
use super::*;

fn id(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

#[test]
fn decide_follows_the_documented_rule() {
    let (a, b) = (id('a'), id('b'));
    let d = |seen: Option<&String>, before: Option<&String>, after: Option<&String>| {
        decide(
            seen.map(String::as_str),
            before.map(String::as_str),
            after.map(String::as_str),
        )
    };
    // Nothing before, nothing acknowledged: a new image replaces nothing.
    let appeared = Decision::Baseline {
        id: a.clone(),
        appeared: true,
    };
    assert_eq!(d(None, None, Some(&a)), appeared);
    // A fresh state and an unchanged :latest: the baseline, no hook.
    let first = Decision::Baseline {
        id: a.clone(),
        appeared: false,
    };
    assert_eq!(d(None, Some(&a), Some(&a)), first);
    // A fresh state but the ensure moved :latest: a move.
    let moved = Decision::Moved {
        old: a.clone(),
        new: b.clone(),
    };
    assert_eq!(d(None, Some(&a), Some(&b)), moved);
    // The acknowledged id wins over what :latest was before this tick.
    assert_eq!(d(Some(&a), Some(&b), Some(&b)), moved);
    assert_eq!(d(Some(&a), None, Some(&a)), Decision::Nothing);
    // :latest gone: nothing changes.
    assert_eq!(d(Some(&a), Some(&a), None), Decision::Nothing);
    assert_eq!(d(None, None, None), Decision::Nothing);
}

#[test]
fn pauses_are_the_interval_plus_up_to_the_jitter() {
    let (i, j) = (Duration::from_secs(300), Duration::from_secs(30));
    let pauses: Vec<Duration> = (0..2000).map(|_| pause(i, j)).collect();
    assert!(pauses.iter().all(|p| *p >= i && *p <= i + j));
    let distinct: std::collections::HashSet<_> = pauses.iter().collect();
    assert!(distinct.len() > 100, "the jitter is random");
    assert_eq!(pause(i, Duration::ZERO), i);
}

#[test]
fn backoff_doubles_up_to_the_cap_and_resets() {
    let mut b = Backoff::new(Duration::from_secs(600));
    assert_eq!(b.cap, 6);
    assert_eq!(b.failed("h"), (1, 1));
    assert!(b.sits_out("h"));
    assert!(!b.sits_out("h"));
    assert_eq!(b.failed("h"), (2, 2));
    assert_eq!(b.failed("h"), (3, 4));
    assert_eq!(b.failed("h"), (4, 6));
    for _ in 0..40 {
        b.failed("h");
    }
    assert_eq!(b.entries["h"].left, 6);
    b.succeeded("h");
    assert!(!b.sits_out("h"));
    assert!(!b.sits_out("other"));
}

/// A runtime from a one-runtime config (not a struct literal: new fields come).
fn runtime(table: &str) -> Runtime {
    let text = format!("[git]\nallow_insecure_http = true\n[runtimes.a]\n{table}\n");
    let plans = crate::steps::plans::load(None).unwrap();
    let config =
        crate::config::parse(&text, "test", &Default::default(), &|p| plans.source(p)).unwrap();
    config.runtimes["a"].clone()
}

fn git(repo: &str) -> Runtime {
    runtime(&format!("repo = \"{repo}\""))
}

#[test]
fn host_is_the_repo_urls_host_and_port_or_the_registry() {
    assert_eq!(
        host_of(&git("https://git.example.com/org/a")),
        "git.example.com"
    );
    assert_eq!(host_of(&git("http://127.0.0.1:8080/x")), "127.0.0.1:8080");
    assert_eq!(host_of(&git("file:///srv/git/x")), "local");
    let registry = runtime("source = \"registry\"\nregistry = \"127.0.0.1:5000/org\"");
    assert_eq!(host_of(&registry), "127.0.0.1:5000");
}

#[test]
fn state_round_trips_and_hostile_files_start_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    assert_eq!(State::load(&path), (State::default(), vec![]));
    let mut state = State::default();
    state.runtimes.insert(
        "alpha".into(),
        Seen {
            image: "p/alpha:latest".into(),
            id: id('a'),
            at: 1,
        },
    );
    state.save(&path).unwrap();
    assert_eq!(State::load(&path), (state.clone(), vec![]));

    // One bad entry is dropped alone.
    let text = format!(
        r#"{{"schema":1,"runtimes":{{"alpha":{{"image":"p/alpha:latest","id":"{}","at":1}},"evil":{{"image":"x","id":"../../etc","at":1}}}}}}"#,
        id('a')
    );
    std::fs::write(&path, text).unwrap();
    let (loaded, warnings) = State::load(&path);
    assert_eq!(loaded, state);
    assert!(warnings[0].contains("\"evil\""), "{warnings:?}");

    // Malformed, another schema, a symlink, a FIFO, a directory: fresh, file moved aside.
    type Make<'a> = &'a dyn Fn(&Path);
    let cases: [(&str, Make); 5] = [
        ("malformed", &|p| std::fs::write(p, b"{not json").unwrap()),
        ("schema 9", &|p| {
            std::fs::write(p, br#"{"schema":9,"runtimes":{}}"#).unwrap()
        }),
        ("symbolic links", &|p| {
            std::os::unix::fs::symlink("/etc/passwd", p).unwrap()
        }),
        ("regular", &|p| {
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        }),
        ("regular", &|p| std::fs::create_dir(p).unwrap()),
    ];
    for (why, make) in cases {
        let _ = std::fs::remove_file(&path);
        make(&path);
        let (loaded, warnings) = State::load(&path);
        assert_eq!(loaded, State::default(), "{why}");
        assert!(warnings[0].contains(why), "{why}: {warnings:?}");
        assert!(warnings[0].contains("state.json.bad"), "{warnings:?}");
        assert!(
            std::fs::symlink_metadata(&path).is_err(),
            "{why}: moved aside"
        );
        let aside = path.with_extension("json.bad");
        let _ = std::fs::remove_dir(&aside);
        let _ = std::fs::remove_file(&aside);
    }
}

#[test]
fn state_over_the_cap_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let f = File::create(&path).unwrap();
    f.set_len(STATE_CAP + 1).unwrap();
    let (loaded, warnings) = State::load(&path);
    assert_eq!(loaded, State::default());
    assert!(warnings[0].contains("byte limit"), "{warnings:?}");
}

fn collect() -> (EventSink, Arc<std::sync::Mutex<Vec<Event>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    (
        Arc::new(move |e: &Event| s.lock().unwrap().push(e.clone())),
        seen,
    )
}

fn change() -> Change {
    Change {
        runtime: "alpha".into(),
        image: "p/alpha:latest".into(),
        old_id: id('a'),
        new_id: id('b'),
    }
}

#[tokio::test]
async fn hook_gets_the_change_and_its_output_is_relayed() {
    let (sink, seen) = collect();
    // HOME stands in for the token variable (set_var is unsound beside other tests).
    let cmd =
        r#"echo "$PLANNER_RUNTIME $PLANNER_IMAGE $PLANNER_OLD_ID $PLANNER_NEW_ID ${HOME:-unset}""#;
    let hidden = vec!["HOME".to_owned()];
    let (result, output) = run_hook(cmd, &change(), &hidden, Duration::from_secs(30), &sink).await;
    output.drained().await;
    result.unwrap();
    let lines: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::HookOutput { line, .. } => Some(line.clone()),
            _ => None,
        })
        .collect();
    let c = change();
    let want = format!("alpha p/alpha:latest {} {} unset", c.old_id, c.new_id);
    assert_eq!(lines, [want]);
}

#[tokio::test]
async fn hook_failures_say_why() {
    let (sink, _) = collect();
    let run = |cmd: &'static str, limit| {
        let sink = sink.clone();
        async move { run_hook(cmd, &change(), &[], limit, &sink).await.0 }
    };
    assert_eq!(
        run("exit 3", Duration::from_secs(30)).await.unwrap_err(),
        "exit 3"
    );
    let missing = run("no-such-command-xyz", Duration::from_secs(30)).await;
    assert!(missing.unwrap_err().contains("127"));
    let started = Instant::now();
    let slow = run("sleep 60 & wait", Duration::from_millis(300)).await;
    assert!(slow.unwrap_err().contains("--hook-timeout"));
    assert!(started.elapsed() < Duration::from_secs(20));
}
