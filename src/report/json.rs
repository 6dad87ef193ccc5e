//! NDJSON events for machines (`ensure --json`): one object per line on stdout, flushed per
//! line, the last one the summary. Lines are written by a dedicated thread ([`Writer`]), so a
//! slow reader never stalls the run. The schema is stable and documented in the README:
//!
//! ```text
//! {"event":"step_skipped","runtime","step","key","reason"}
//! {"event":"step_started","runtime","step","key","reason"}
//! {"event":"step_finished","runtime","step","key","duration_ms"}
//! {"event":"step_failed","runtime","step","key","duration_ms","error"}
//! {"event":"step_blocked","runtime","step","key","reason"}
//! {"event":"step_waiting","runtime","step","key","reason"}
//! {"event":"step_output","runtime","step","key","line"}            (only with -v)
//! {"event":"summary","schema_version","exit_code","ensured","failed","skipped_steps","ran_steps","duration_ms","runtimes":[…]}
//! {"event":"error","schema_version","exit_code","message"}   (instead of the summary)
//! ```
//!
//! Every exit of `ensure --json` ends in one of the last two: the summary, or an `error` line
//! when the run could not start or was stopped (usage or config error, unreachable engine,
//! busy run lock with `--no-wait`, SIGINT, SIGTERM). Nothing is written after it.
//!
//! A step shared by several runtimes gives one line per runtime. Every string is masked, and
//! every line inert ([`crate::text::inert_json`]: `serde_json` escapes C0 controls, the
//! writer the C1 and bidi controls it leaves raw).
//! `skipped_steps` and `ran_steps` count distinct steps, resolve-head (which always runs) not
//! included, so a warm run reports `"ran_steps":0`.

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::summary::RuntimeSummary;
use crate::exec::{Event, Sink, StepRef};
use crate::mask::mask;

/// Version of the event schema, bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Counts of distinct steps, kept while events stream by, for the summary line.
#[derive(Debug, Default)]
pub struct Counts {
    skipped: HashSet<(String, String)>,
    ran: HashSet<(String, String)>,
}

impl Counts {
    fn note(&mut self, event: &Event) {
        let id = |s: &StepRef| {
            let key = s.key.as_ref().map_or_else(String::new, |k| k.to_string());
            (s.step_id.clone(), key + &s.runtimes.join(","))
        };
        match event {
            // resolve-head runs every time; counting it would hide a no-op run.
            Event::Skipped { step, .. } | Event::Finished { step, .. } if step.kind.is_root() => {}
            Event::Skipped { step, .. } => {
                self.skipped.insert(id(step));
            }
            Event::Finished { step, .. } => {
                self.ran.insert(id(step));
            }
            _ => {}
        }
    }
}

/// The JSON objects for one event (one per runtime sharing the step); empty when hidden.
pub fn objects(event: &Event, verbose: bool) -> Vec<Value> {
    let (name, step, extra) = match event {
        Event::Skipped { step, reason } => ("step_skipped", step, json!({ "reason": reason })),
        Event::Started { step, reason } => ("step_started", step, json!({ "reason": reason })),
        Event::Finished { step, duration, .. } => (
            "step_finished",
            step,
            json!({ "duration_ms": millis(*duration) }),
        ),
        Event::Failed {
            step,
            duration,
            error,
        } => (
            "step_failed",
            step,
            json!({ "duration_ms": millis(*duration), "error": error }),
        ),
        Event::Blocked { step, reason } => ("step_blocked", step, json!({ "reason": reason })),
        Event::Waiting { step, reason } => ("step_waiting", step, json!({ "reason": reason })),
        Event::Output { step, line } if verbose => ("step_output", step, json!({ "line": line })),
        Event::Output { .. } => return Vec::new(),
        Event::Substep { step, name, state } => (
            "build_step",
            step,
            json!({ "name": name, "state": state.name() }),
        ),
    };
    step.runtimes
        .iter()
        .map(|rt| {
            let mut obj = json!({
                "event": name,
                "runtime": rt,
                "step": step.kind.name(),
                "key": step.key.as_ref().map(|k| k.to_string()),
            });
            if let (Value::Object(o), Value::Object(e)) = (&mut obj, &extra) {
                o.extend(e.clone());
            }
            masked(obj)
        })
        .collect()
}

/// The `error` line: the run ended with `exit_code` before a summary (masked; the writer
/// makes it inert).
pub fn error(exit_code: u8, message: &str) -> Value {
    masked(json!({
        "event": "error",
        "schema_version": SCHEMA_VERSION,
        "exit_code": exit_code,
        "message": message,
    }))
}

/// The summary line; `exit_code` is the one planner exits with.
pub fn summary(
    rows: &[RuntimeSummary],
    counts: &Counts,
    elapsed: Duration,
    exit_code: u8,
) -> Value {
    let failed = crate::summary::failed(rows);
    let runtimes: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "runtime": r.runtime,
                "status": r.status,
                "commit": r.commit,
                "image": r.image,
                "image_id": r.image_id,
                "pinned": r.image_id,
                "digest": r.digest,
                "published": r.published,
                "error": r.error,
            })
        })
        .collect();
    masked(json!({
        "event": "summary",
        "schema_version": SCHEMA_VERSION,
        "exit_code": exit_code,
        "ensured": rows.len() - failed,
        "failed": failed,
        "skipped_steps": counts.skipped.len(),
        "ran_steps": counts.ran.len(),
        "duration_ms": millis(elapsed),
        "runtimes": runtimes,
    }))
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Masks every string in `v` (tokens must not reach a log, whatever field they hide in).
pub(crate) fn masked(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(mask(&s).into_owned()),
        Value::Array(a) => Value::Array(a.into_iter().map(masked).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, masked(v))).collect()),
        other => other,
    }
}

/// The NDJSON writer: a dedicated thread owns the output and writes the lines sent to it, in
/// order, flushing after each, so a slow (or stalled) reader of stdout never blocks the
/// caller (the scheduler's threads, through the event sink). A closed pipe is ignored: the
/// run goes on and the exit code still tells the truth. Clones queue to the same thread.
#[derive(Clone)]
pub struct Writer {
    tx: std::sync::mpsc::Sender<Msg>,
}

/// What the writer thread is sent.
enum Msg {
    Line(String),
    /// The last line: written, then every later line is dropped.
    Last(String),
    /// Answered once every line sent before it is written.
    Flushed(std::sync::mpsc::Sender<()>),
}

impl Writer {
    /// A writer thread over `out`.
    pub fn new(out: impl Write + Send + 'static) -> Writer {
        let (tx, rx) = std::sync::mpsc::channel::<Msg>();
        let spawned = std::thread::Builder::new()
            .name("planner-json".into())
            .spawn(move || {
                let mut out = out;
                let mut broken = false;
                let mut ended = false;
                for msg in rx {
                    match msg {
                        Msg::Line(line) | Msg::Last(line) if broken || ended => drop(line),
                        Msg::Line(line) => broken = write_line(&mut out, &line),
                        Msg::Last(line) => {
                            ended = true;
                            broken = write_line(&mut out, &line);
                        }
                        Msg::Flushed(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the --json writer thread: {e}");
        }
        Writer { tx }
    }

    /// Queues one object as a line; never blocks.
    pub fn emit(&self, v: &Value) {
        let _ = self.tx.send(Msg::Line(format!("{v}\n")));
    }

    /// Queues the last line (the summary or an `error`): lines queued after it (by steps
    /// still winding down) are dropped, so it stays the last. Never blocks.
    pub fn emit_last(&self, v: &Value) {
        let _ = self.tx.send(Msg::Last(format!("{v}\n")));
    }

    /// Waits until every line queued so far is written (at the end of the command).
    pub fn finish(self) {
        let (done, flushed) = std::sync::mpsc::channel();
        if self.tx.send(Msg::Flushed(done)).is_ok() {
            let _ = flushed.recv();
        }
    }
}

/// Writes one line, inert, and flushes; true when the output is broken.
fn write_line(out: &mut impl Write, line: &str) -> bool {
    out.write_all(crate::text::inert_json(line).as_bytes())
        .and_then(|()| out.flush())
        .is_err()
}

/// A sink queueing NDJSON events to `writer`, and the counts the summary line needs.
pub fn sink(writer: &Writer, verbose: bool) -> (Sink, Arc<Mutex<Counts>>) {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let c = counts.clone();
    let tx = Mutex::new(writer.tx.clone());
    let sink: Sink = Arc::new(move |event| {
        if let Ok(mut c) = c.lock() {
            c.note(event);
        }
        let Ok(tx) = tx.lock() else { return };
        for obj in objects(event, verbose) {
            let _ = tx.send(Msg::Line(format!("{obj}\n")));
        }
    });
    (sink, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::steps::build;

    fn step(runtimes: &[&str]) -> StepRef {
        StepRef {
            runtimes: runtimes.iter().map(|s| s.to_string()).collect(),
            kind: build::KIND,
            step_id: "build".into(),
            key: None,
        }
    }

    #[test]
    fn failed_event_has_the_documented_fields_and_is_masked() {
        let e = Event::Failed {
            step: step(&["codex"]),
            duration: Duration::from_millis(1234),
            error: "GET https://user:sekrit@h.example/x failed".into(),
        };
        let objs = objects(&e, false);
        assert_eq!(objs.len(), 1);
        let o = objs[0].as_object().unwrap();
        let mut keys: Vec<_> = o.keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["duration_ms", "error", "event", "key", "runtime", "step"]
        );
        assert_eq!(o["event"], "step_failed");
        assert_eq!(o["duration_ms"], 1234);
        assert!(!o["error"].as_str().unwrap().contains("sekrit"));
    }

    #[test]
    fn shared_steps_give_one_line_per_runtime_but_count_once() {
        let e = Event::Skipped {
            step: step(&["a", "b"]),
            reason: "present".into(),
        };
        let objs = objects(&e, false);
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1]["runtime"], "b");
        let mut counts = Counts::default();
        counts.note(&e);
        assert_eq!(counts.skipped.len(), 1);
    }

    #[test]
    fn output_lines_only_when_verbose() {
        let e = Event::Output {
            step: step(&["a"]),
            line: "Step 1/2".into(),
        };
        assert!(objects(&e, false).is_empty());
        assert_eq!(objects(&e, true)[0]["line"], "Step 1/2");
    }

    #[test]
    fn buildkit_steps_carry_name_and_state() {
        let e = Event::Substep {
            step: step(&["a"]),
            name: "[1/2] FROM base".into(),
            state: crate::exec::event::SubstepState::Started,
        };
        let o = &objects(&e, false)[0];
        assert_eq!(o["event"], "build_step");
        assert_eq!(o["name"], "[1/2] FROM base");
        assert_eq!(o["state"], "started");
    }
}

#[cfg(test)]
mod writer_tests {
    use super::*;

    use crate::steps::build;

    /// A writer that blocks until `gate` opens, then appends to `out`.
    struct Gated {
        gate: std::sync::mpsc::Receiver<()>,
        out: Arc<Mutex<Vec<u8>>>,
        open: bool,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if !self.open {
                let _ = self.gate.recv();
                self.open = true;
            }
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_reader_never_blocks_the_sink_and_order_is_kept() {
        let (open, gate) = std::sync::mpsc::channel();
        let out = Arc::new(Mutex::new(Vec::new()));
        let writer = Writer::new(Gated {
            gate,
            out: out.clone(),
            open: false,
        });
        let (sink, counts) = super::sink(&writer, true);
        let step = StepRef {
            runtimes: vec!["a".into()],
            kind: build::KIND,
            step_id: "build".into(),
            key: None,
        };
        // The output is stalled: every event still returns at once.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for i in 0..10_000 {
                sink(&Event::Output {
                    step: step.clone(),
                    line: format!("line {i}"),
                });
            }
            let _ = done_tx.send(sink);
        });
        let sink = done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the sink did not block on the stalled output");
        writer.emit(&json!({"event": "summary"}));
        drop(sink);
        open.send(()).unwrap();
        writer.finish();
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 10_001);
        assert!(lines[0].contains("\"line 0\""), "{}", lines[0]);
        assert!(lines[9_999].contains("\"line 9999\""));
        assert_eq!(lines[10_000], r#"{"event":"summary"}"#);
        drop(counts);
    }

    #[test]
    fn lines_leave_no_control_character_raw() {
        let (open, gate) = std::sync::mpsc::channel();
        let out = Arc::new(Mutex::new(Vec::new()));
        let writer = Writer::new(Gated {
            gate,
            out: out.clone(),
            open: false,
        });
        let hostile = "x\x1b[2J\u{9b}31m\u{7f}\u{202e}y";
        writer.emit(&json!({"event": "step_output", "line": hostile}));
        open.send(()).unwrap();
        writer.finish();
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert!(!text.trim_end().chars().any(char::is_control), "{text:?}");
        assert!(text.contains(r"\u009b31m\u007f\u202ey"), "{text}");
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["line"], hostile);
    }

    #[test]
    fn a_closed_output_is_ignored() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let writer = Writer::new(Closed);
        writer.emit(&json!({"event": "summary"}));
        writer.emit(&json!({"event": "summary"}));
        writer.finish();
    }
}
