//! A logging HTTP relay on 127.0.0.1 for tests that must see what a client sends: every
//! request's line and headers are recorded, then the connection is relayed byte for byte to
//! a backend (a [`super::git_server::GitServer`]). It accepts both origin-form targets
//! (`GET /repo/info/refs`, used as a second git host) and absolute-form ones
//! (`GET http://host/repo/info/refs`, used as an `http.proxy`), which it rewrites to
//! origin-form for the backend. Each request is forwarded with `Connection: close`, so the
//! backend ends the connection after one answer and a client's next request comes on a new
//! connection, logged too (a kept-alive connection would carry requests past the log).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::relay;

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
    let Some(mut reader) = relay::client_reader(&client) else {
        return;
    };
    let Some(mut head) = relay::read_head(&mut reader) else {
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
    head.retain(|line| {
        !line
            .split_once(':')
            .is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case("connection"))
    });
    head.push("Connection: close".to_owned());
    relay::pipe(client, reader, &head, backend);
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
