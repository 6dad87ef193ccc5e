//! One HTTP request as the support code's own helpers send it (the registry's and the token
//! issuer's), with a User-Agent of its own so that request counts can leave them out.

use std::time::Duration;

/// The User-Agent of the support code's own HTTP requests (filter them out of request counts).
pub const SUPPORT_UA: &str = "planner-test-support";

/// A response of [`http_request`].
#[derive(Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Lower-case names, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `Content-Length` (0 when absent).
    pub fn content_length(&self) -> u64 {
        self.header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// One HTTP request with reqwest (no redirects followed, User-Agent [`SUPPORT_UA`] unless
/// `headers` set one), run on its own thread and runtime so it works from sync and async
/// tests alike. Panics when the server cannot be reached.
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> HttpResponse {
    let owned: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    let (method, url) = (method.to_owned(), url.to_owned());
    let what = format!("{method} {url}");
    std::thread::spawn(move || send(&method, &url, &owned, body))
        .join()
        .unwrap_or_else(|_| panic!("HTTP request thread panicked: {what}"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Like [`http_request`] with no headers, `None` when the server does not answer.
pub(crate) fn try_http(method: &str, url: &str) -> Option<HttpResponse> {
    let (method, url) = (method.to_owned(), url.to_owned());
    std::thread::spawn(move || send(&method, &url, &[], None).ok())
        .join()
        .ok()
        .flatten()
}

fn send(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Option<Vec<u8>>,
) -> Result<HttpResponse, reqwest::Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(SUPPORT_UA)
            .timeout(Duration::from_secs(30))
            .build()?;
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("HTTP method");
        let mut request = client.request(method, url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response.bytes().await?.to_vec();
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    })
}
