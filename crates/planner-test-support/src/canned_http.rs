//! A loopback HTTP server that answers every request with one canned response (status,
//! content type, body): for hosts that send what a real git server never would. Every
//! request is logged ([`CannedHttp::requests`]), so a test can also assert that nothing
//! reached it (used as the `http_proxy` that stands in for a host that is not loopback).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct CannedRequest {
    pub method: String,
    /// The target as sent (absolute-form when the server is used as a proxy).
    pub target: String,
    /// The head (request line and headers) as text, and the body.
    pub head: String,
    pub body: Vec<u8>,
}

/// Serves until dropped (the accept thread ends with the test process).
pub struct CannedHttp {
    port: u16,
    log: Arc<Mutex<Vec<CannedRequest>>>,
}

impl CannedHttp {
    pub fn start(status: u16, content_type: &str, body: Vec<u8>) -> CannedHttp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let head = format!(
            "HTTP/1.1 {status} Canned\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let answer: Arc<Vec<u8>> = Arc::new([head.as_bytes(), &body].concat());
        let log = Arc::new(Mutex::new(Vec::new()));
        let for_accept = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (answer, log) = (answer.clone(), for_accept.clone());
                std::thread::spawn(move || answer_one(stream, &answer, &log));
            }
        });
        CannedHttp { port, log }
    }

    /// `http://127.0.0.1:<port>/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<CannedRequest> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Reads the request head and its `Content-Length` body, logs them, then answers.
fn answer_one(mut stream: TcpStream, answer: &[u8], log: &Mutex<Vec<CannedRequest>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        let Ok(n) = stream.read(&mut chunk) else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let len: usize = head
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| l.strip_prefix("content-length:").map(str::to_owned))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < end + len {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let mut first = head.split_whitespace();
    let request = CannedRequest {
        method: first.next().unwrap_or_default().to_owned(),
        target: first.next().unwrap_or_default().to_owned(),
        body: buf[end..].to_vec(),
        head,
    };
    log.lock().unwrap_or_else(|p| p.into_inner()).push(request);
    let _ = stream.write_all(answer);
}
