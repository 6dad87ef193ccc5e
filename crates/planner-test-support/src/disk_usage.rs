//! Other clients asking the engine for its disk usage (`GET /system/df`, what `docker system
//! df` asks) while a test runs: Docker 20.10 runs one such report at a time and answers any
//! other asker 500 "a disk usage operation is already running".
//!
//! [`DiskUsageLoad::start`] first keeps the engine's one report always taken (several
//! threads asking back to back over the socket) for a while, then leaves gaps as a user would
//! (`docker system df` in a loop), until stopped.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Threads asking back to back.
const ASKERS: usize = 4;

pub struct DiskUsageLoad {
    stop: Arc<AtomicBool>,
    busy: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

impl DiskUsageLoad {
    /// Asks the engine at the unix socket `socket` back to back for `busy_for` (unless
    /// stopped sooner), then with `docker system df` in a loop until stopped.
    pub fn start(socket: &Path, busy_for: Duration) -> DiskUsageLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let busy = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut threads = Vec::new();
        for _ in 0..ASKERS {
            let (socket, stop, busy) = (socket.to_owned(), stop.clone(), busy.clone());
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) && started.elapsed() < busy_for {
                    if ask(&socket).is_some_and(|a| a.contains("already running")) {
                        busy.fetch_add(1, Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }));
        }
        let cli_stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            while !cli_stop.load(Ordering::SeqCst) {
                if started.elapsed() >= busy_for {
                    let _ = std::process::Command::new("docker")
                        .args(["system", "df"])
                        .output();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }));
        DiskUsageLoad {
            stop,
            busy,
            threads,
        }
    }

    /// Waits until at least one asker was told a report is already running (the load is on).
    pub fn wait_until_contended(&self) {
        let started = Instant::now();
        while self.busy.load(Ordering::SeqCst) == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the engine never answered \"already running\" to concurrent disk usage requests"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops every asker; how many answers said a report was already running.
    pub fn stop(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
        self.busy.load(Ordering::SeqCst)
    }
}

/// One `GET /system/df` over a fresh connection; the answer's text.
fn ask(socket: &PathBuf) -> Option<String> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .ok()?;
    stream
        .write_all(b"GET /v1.41/system/df HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = Vec::new();
    stream.take(1 << 24).read_to_end(&mut answer).ok()?;
    Some(String::from_utf8_lossy(&answer).into_owned())
}
