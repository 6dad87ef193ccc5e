//! A rate-limiting relay on 127.0.0.1 in front of a [`super::registry::TestRegistry`]: the
//! next N requests (armed at start or with [`RateLimitProxy::limit_next`]) are answered
//! `429 Too Many Requests` with `Retry-After` (distribution's `TOOMANYREQUESTS` error body)
//! and `Connection: close`; after that a connection is relayed byte for byte to the registry.
//!
//! Only the first request of a connection is looked at (a client opens a new connection after
//! a 429 that closes it); later requests on a relayed keep-alive connection pass unlogged.
//! Use [`RateLimitProxy::host`] in image references instead of the registry's host.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::relay;

/// The first request of one connection as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxiedRequest {
    pub method: String,
    pub target: String,
    /// Answered 429 (true) or relayed (false).
    pub limited: bool,
}

pub struct RateLimitProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    backend: SocketAddr,
    remaining: AtomicUsize,
    retry_after: Mutex<Option<String>>,
    stop: AtomicBool,
    log: Mutex<Vec<ProxiedRequest>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RateLimitProxy {
    /// Relays to `backend_host` (`127.0.0.1:PORT`), answering the first `limited` requests 429
    /// with `Retry-After: 1`.
    pub fn start(backend_host: &str, limited: usize) -> RateLimitProxy {
        let backend = backend_host
            .parse::<SocketAddr>()
            .expect("backend host is IP:PORT");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            backend,
            remaining: AtomicUsize::new(limited),
            retry_after: Mutex::new(Some("1".to_owned())),
            stop: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
        });
        relay::accept_loop(listener, Arc::clone(&shared), |s| &s.stop, handle);
        RateLimitProxy { addr, shared }
    }

    /// `127.0.0.1:PORT` of the proxy: the registry part of references that go through it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Answers the next `n` requests 429 (replacing what was left).
    pub fn limit_next(&self, n: usize) {
        self.shared.remaining.store(n, Ordering::SeqCst);
    }

    /// The `Retry-After` value of later 429s (`None`: no header). Default `1`.
    pub fn set_retry_after(&self, value: Option<&str>) {
        *lock(&self.shared.retry_after) = value.map(str::to_owned);
    }

    /// How many requests were answered 429 so far.
    pub fn limited(&self) -> usize {
        self.requests().iter().filter(|r| r.limited).count()
    }

    pub fn requests(&self) -> Vec<ProxiedRequest> {
        lock(&self.shared.log).clone()
    }
}

impl Drop for RateLimitProxy {
    fn drop(&mut self) {
        relay::wake(&self.shared.stop, self.addr);
    }
}

/// Takes one of the remaining 429s, if any.
fn take_limit(remaining: &AtomicUsize) -> bool {
    remaining
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn handle(mut client: TcpStream, shared: &Shared) {
    let Some(mut reader) = relay::client_reader(&client) else {
        return;
    };
    let Some(head) = relay::read_head(&mut reader) else {
        return;
    };
    let mut first = head[0].split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let target = first.next().unwrap_or_default().to_owned();
    let limited = take_limit(&shared.remaining);
    lock(&shared.log).push(ProxiedRequest {
        method,
        target,
        limited,
    });
    if limited {
        let retry_after = lock(&shared.retry_after).clone();
        let _ = client.write_all(too_many(retry_after.as_deref()).as_bytes());
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    relay::pipe(client, reader, &head, shared.backend);
}

fn too_many(retry_after: Option<&str>) -> String {
    let body = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"too many requests","detail":"planner test rate limit"}]}"#;
    let retry = retry_after
        .map(|v| format!("Retry-After: {v}\r\n"))
        .unwrap_or_default();
    format!(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n{retry}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
