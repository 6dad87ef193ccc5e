//! A logging HTTP relay on 127.0.0.1 for tests that must see what a client sends: every
//! request's line and headers are recorded, then the connection is relayed byte for byte to
//! a backend (a [`super::git_server::GitServer`]). It accepts both origin-form targets
//! (`GET /repo/info/refs`, used as a second git host) and absolute-form ones
//! (`GET http://host/repo/info/refs`, used as an `http.proxy`), which it rewrites to
//! origin-form for the backend.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const MAX_HEAD: u64 = 64 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// One request as the relay saw it.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub method: String,
    /// The request target as sent (origin-form or absolute-form).
    pub target: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
}

impl LoggedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The relay; stops accepting when dropped.
pub struct LoggingProxy {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<LoggedRequest>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl LoggingProxy {
    /// Relays to the server at `backend_base` (`http://127.0.0.1:PORT/`).
    pub fn start(backend_base: &str) -> LoggingProxy {
        let backend = backend_base
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse::<SocketAddr>()
            .expect("backend base URL is http://IP:PORT/");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (for_log, for_stop) = (Arc::clone(&log), Arc::clone(&stop));
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if for_stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let log = Arc::clone(&for_log);
                std::thread::spawn(move || relay(stream, backend, &log));
            }
        });
        LoggingProxy {
            addr,
            log,
            stop,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT/`
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for LoggingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if TcpStream::connect(self.addr).is_ok()
            && let Some(handle) = self.accept.take()
        {
            let _ = handle.join();
        }
    }
}

/// Reads and logs the request head, then relays both directions until the backend closes.
fn relay(client: TcpStream, backend: SocketAddr, log: &Mutex<Vec<LoggedRequest>>) {
    let _ = client.set_read_timeout(Some(IO_TIMEOUT));
    let Ok(read_half) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let Some(mut head) = read_head(&mut reader) else {
        return;
    };
    let Some(request) = parse_head(&head) else {
        return;
    };
    let origin_form = to_origin_form(&request.target);
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(request.clone());
    head[0] = format!("{} {origin_form} HTTP/1.1", request.method);
    let Ok(mut upstream) = TcpStream::connect(backend) else {
        return;
    };
    let mut bytes = head.join("\r\n").into_bytes();
    bytes.extend_from_slice(b"\r\n\r\n");
    bytes.extend_from_slice(reader.buffer());
    if upstream.write_all(&bytes).is_err() {
        return;
    }
    let (Ok(mut up_read), Ok(mut up_write)) = (upstream.try_clone(), upstream.try_clone()) else {
        return;
    };
    let mut client_read = reader.into_inner();
    let forward = std::thread::spawn(move || {
        let _ = io::copy(&mut client_read, &mut up_write);
        let _ = up_write.shutdown(Shutdown::Write);
    });
    let mut client_write = client;
    let _ = io::copy(&mut up_read, &mut client_write);
    let _ = client_write.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
    let _ = forward.join();
}

/// The request line and header lines (without the blank line); `None` when cut or too big.
fn read_head(reader: &mut BufReader<TcpStream>) -> Option<Vec<String>> {
    let mut lines = Vec::new();
    let mut limited = reader.by_ref().take(MAX_HEAD);
    loop {
        let mut line = String::new();
        if limited.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Some(lines);
        }
        lines.push(line.to_owned());
    }
}

fn parse_head(head: &[String]) -> Option<LoggedRequest> {
    let (first, rest) = head.split_first()?;
    let mut parts = first.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    let headers = rest
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(LoggedRequest {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
    })
}

/// `http://host:port/p?q` -> `/p?q`; origin-form targets unchanged.
fn to_origin_form(target: &str) -> String {
    match target.strip_prefix("http://") {
        Some(rest) => match rest.find('/') {
            Some(i) => rest[i..].to_owned(),
            None => "/".to_owned(),
        },
        None => target.to_owned(),
    }
}
