//! What the test relays share ([`super::logging_proxy`], [`super::rate_limit_proxy`],
//! [`super::rewrite_proxy`]): an accept loop on 127.0.0.1 that ends when told, reading a
//! request head, and piping a request to a backend both ways.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The largest request head a relay reads.
pub const MAX_HEAD: u64 = 64 * 1024;
/// How long a relay waits on a silent client or backend.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Accepts connections on `listener`, each handled on its own thread by `handle`, until
/// `stop(shared)` says so (then one more connection, such as [`wake`]'s, ends the loop).
pub fn accept_loop<S: Send + Sync + 'static>(
    listener: TcpListener,
    shared: Arc<S>,
    stop: fn(&S) -> &AtomicBool,
    handle: fn(TcpStream, &S),
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stop(&shared).load(Ordering::SeqCst) {
                return;
            }
            let Ok(stream) = stream else { continue };
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || handle(stream, &shared));
        }
    })
}

/// Sets `stop` and connects once, so the accept loop sees it.
pub fn wake(stop: &AtomicBool, addr: SocketAddr) -> bool {
    stop.store(true, Ordering::SeqCst);
    TcpStream::connect(addr).is_ok()
}

/// The client's stream with its read timeout set, and a buffered reader over a clone of it.
pub fn client_reader(client: &TcpStream) -> Option<BufReader<TcpStream>> {
    let _ = client.set_read_timeout(Some(IO_TIMEOUT));
    client.try_clone().ok().map(BufReader::new)
}

/// The request line and header lines (without the blank line); `None` when cut, empty or
/// too big.
pub fn read_head(reader: &mut BufReader<TcpStream>) -> Option<Vec<String>> {
    let mut lines = Vec::new();
    let mut limited = reader.by_ref().take(MAX_HEAD);
    loop {
        let mut line = String::new();
        if limited.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return (!lines.is_empty()).then_some(lines);
        }
        lines.push(line.to_owned());
    }
}

/// Sends `head` (and whatever `reader` buffered after it) to `backend`, then copies both
/// ways until the backend closes.
pub fn pipe(client: TcpStream, reader: BufReader<TcpStream>, head: &[String], backend: SocketAddr) {
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
