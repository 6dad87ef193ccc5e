//! A running `planner watch --json`: its NDJSON events read as they come, its stderr kept,
//! signals and a bounded wait for its exit. Killed when dropped.

use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::harness::Env;

/// How long any awaited event may take (generous: builds on a shared, busy machine).
pub const PATIENCE: Duration = Duration::from_secs(180);

pub struct Watcher {
    child: Child,
    rx: Receiver<Value>,
    /// Every event so far, in order.
    pub seen: Vec<Value>,
    /// Index in `seen` after the last event [`Watcher::wait_for`] matched.
    next: usize,
    stderr: Arc<Mutex<String>>,
}

impl Watcher {
    /// Starts `planner watch --json ARGS…` in `env`.
    pub fn spawn(env: &Env, args: &[&str]) -> Watcher {
        Watcher::spawn_with(env, args, |_| {})
    }

    /// Like [`Watcher::spawn`], with `adjust` applied to the command (extra environment).
    pub fn spawn_with(
        env: &Env,
        args: &[&str],
        adjust: impl FnOnce(&mut std::process::Command),
    ) -> Watcher {
        let mut all = vec!["watch", "--json"];
        all.extend_from_slice(args);
        let mut cmd = env.command(&all);
        adjust(&mut cmd);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn planner watch");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let keep = stderr.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                keep.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Watcher {
            child,
            rx,
            seen: Vec::new(),
            next: 0,
            stderr,
        }
    }

    /// The next event (after the last one matched) satisfying `pred`; panics after [`PATIENCE`].
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            if let Some(i) = (self.next..self.seen.len()).find(|&i| pred(&self.seen[i])) {
                self.next = i + 1;
                return self.seen[i].clone();
            }
            let left = PATIENCE.saturating_sub(started.elapsed());
            match self.rx.recv_timeout(left.min(Duration::from_secs(1))) {
                Ok(v) => self.seen.push(v),
                Err(RecvTimeoutError::Timeout) if !left.is_zero() => {}
                Err(_) => panic!("never saw {what}:\n{}", self.dump()),
            }
        }
    }

    /// The next event named `event` (for `runtime`, when given).
    pub fn wait_event(&mut self, event: &str, runtime: Option<&str>) -> Value {
        self.wait_for(event, |v| {
            v["event"] == event && runtime.is_none_or(|r| v["runtime"] == r)
        })
    }

    /// Waits for the end of tick `n`.
    pub fn tick_finished(&mut self, n: u64) -> Value {
        self.wait_for(&format!("tick {n} finished"), |v| {
            v["event"] == "tick_finished" && v["tick"] == n
        })
    }

    /// Every event so far named `event`.
    pub fn events(&self, event: &str) -> Vec<Value> {
        self.seen
            .iter()
            .filter(|v| v["event"] == event)
            .cloned()
            .collect()
    }

    /// Sends `signal` (`TERM`, `INT`).
    pub fn signal(&self, signal: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal}");
    }

    /// The exit code, waiting at most `limit`; then every remaining event is read.
    pub fn exit_code_within(&mut self, limit: Duration) -> Option<i32> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(v) = self.rx.recv_timeout(Duration::from_secs(5)) {
                    self.seen.push(v);
                }
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "planner watch still running after {limit:?}:\n{}",
            self.dump()
        );
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Everything seen, for failure messages.
    pub fn dump(&self) -> String {
        let events: Vec<String> = self.seen.iter().map(Value::to_string).collect();
        format!(
            "--- events\n{}\n--- stderr\n{}",
            events.join("\n"),
            self.stderr()
        )
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
