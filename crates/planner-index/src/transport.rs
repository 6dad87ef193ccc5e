//! One request to an index: the transport rules (HTTPS, or plain HTTP to a loopback host),
//! the credential for the index's origin only (redirects followed only within it:
//! [`planner_http::redirect_policy`]; one to another origin is refused, not followed), a
//! timeout on every request and a cap on every body ([`BODY_CAP`]), and statuses turned into
//! [`IndexError`]s that name the package and the index.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header;
use url::Url;

use crate::credentials::Credentials;
use crate::{IndexError, Package};

/// Most redirects followed (within the origin) for one request.
pub const MAX_REDIRECTS: usize = 5;
/// The largest answer read: a popular package's Simple API page or npm document is a few
/// MiB; anything larger is refused, not read.
pub const BODY_CAP: usize = 32 * 1024 * 1024;
/// The default time limit of one request (connect, send, read the whole answer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The HTTP client: `timeout` on every request, redirects only within the origin.
pub fn client(timeout: Duration) -> reqwest::Client {
    planner_http::client(timeout, MAX_REDIRECTS)
}

/// Whether `url` may be asked: HTTPS, or plain HTTP to a loopback host. `Err`: why not.
pub fn allowed(url: &Url) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http"
            if url
                .host_str()
                .is_some_and(planner_base::reference::is_loopback) =>
        {
            Ok(())
        }
        "http" => Err(format!(
            "plain HTTP to {} (not a loopback host)",
            url.host_str().unwrap_or_default()
        )),
        other => Err(format!("scheme {other:?}")),
    }
}

/// An answer read whole.
pub struct Answer {
    pub content_type: String,
    pub body: Vec<u8>,
}

/// One package's requests: its index, the credential for it, how errors name it.
pub struct Cx<'a> {
    pub package: &'a Package,
    http: &'a reqwest::Client,
    /// The index URL without userinfo.
    pub base: Url,
    authorization: Option<String>,
}

impl<'a> Cx<'a> {
    /// The context of `package`, refused when its index breaks the transport rules.
    pub fn new(
        package: &'a Package,
        http: &'a reqwest::Client,
        creds: &Credentials,
    ) -> Result<Cx<'a>, IndexError> {
        let cx = Cx {
            package,
            http,
            base: without_userinfo(&package.index),
            authorization: creds.authorization(package),
        };
        allowed(&package.index).map_err(|detail| IndexError::Insecure {
            ecosystem: package.ecosystem.name(),
            package: package.name.clone(),
            index: package.shown_index(),
            detail,
        })?;
        Ok(cx)
    }

    /// GETs `url` (under the index's origin) with `accept`; any status but 2xx is an error.
    pub async fn get(&self, url: &Url, accept: &str) -> Result<Answer, IndexError> {
        let mut req = self.http.get(url.clone()).header(header::ACCEPT, accept);
        if let Some(auth) = &self.authorization
            && url.origin() == self.base.origin()
        {
            req = req.header(header::AUTHORIZATION, auth);
        }
        let resp = req.send().await.map_err(|e| self.send_error(&e))?;
        if let Some(target) = planner_http::cross_origin_redirect(&resp) {
            return Err(self.protocol(format!(
                "redirect to another origin ({}) refused: the index must answer at its own origin",
                planner_http::shown_origin(&target)
            )));
        }
        let status = resp.status();
        if !status.is_success() {
            return Err(self.status_error(status.as_u16()));
        }
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let body = self.read_capped(resp).await?;
        Ok(Answer { content_type, body })
    }

    async fn read_capped(&self, resp: reqwest::Response) -> Result<Vec<u8>, IndexError> {
        let too_large = || self.protocol(format!("the answer is larger than {BODY_CAP} bytes"));
        if resp.content_length().is_some_and(|n| n > BODY_CAP as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.send_error(&e))?;
            if body.len() + chunk.len() > BODY_CAP {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn send_error(&self, e: &reqwest::Error) -> IndexError {
        let detail = if e.is_timeout() {
            "no answer in time (timed out)".to_owned()
        } else if e.is_redirect() {
            return self.protocol(format!("redirect refused: {}", chain(e)));
        } else {
            chain(e)
        };
        self.unavailable(detail)
    }

    fn status_error(&self, status: u16) -> IndexError {
        let p = self.package;
        match status {
            404 | 410 => IndexError::NotFound {
                ecosystem: p.ecosystem.name(),
                package: p.name.clone(),
                index: p.shown_index(),
            },
            401 | 403 => IndexError::Denied {
                ecosystem: p.ecosystem.name(),
                package: p.name.clone(),
                index: p.shown_index(),
                status,
                help: match p.ecosystem {
                    crate::Ecosystem::Pypi => "put the credentials in the index URL (https://user:password@host/simple/) or PIP_INDEX_URL".into(),
                    crate::Ecosystem::Npm => "add //host/:_authToken=... for the registry to ~/.npmrc (or NPM_CONFIG_USERCONFIG)".into(),
                },
            },
            429 | 500..=599 => self.unavailable(format!("HTTP {status}")),
            _ => self.protocol(format!("unexpected HTTP {status}")),
        }
    }

    fn unavailable(&self, detail: String) -> IndexError {
        IndexError::Unavailable {
            ecosystem: self.package.ecosystem.name(),
            package: self.package.name.clone(),
            index: self.package.shown_index(),
            detail: planner_base::mask::mask(&detail).into_owned(),
        }
    }

    /// A bad answer, `detail` saying what was wrong.
    pub fn protocol(&self, detail: String) -> IndexError {
        IndexError::Protocol {
            ecosystem: self.package.ecosystem.name(),
            package: self.package.name.clone(),
            index: self.package.shown_index(),
            detail: planner_base::mask::mask(&detail).into_owned(),
        }
    }

    /// No release of the package qualifies, `why`.
    pub fn no_release(&self, why: String) -> IndexError {
        IndexError::NoRelease {
            ecosystem: self.package.ecosystem.name(),
            package: self.package.name.clone(),
            index: self.package.shown_index(),
            why,
        }
    }
}

/// `url` without user and password.
pub fn without_userinfo(url: &Url) -> Url {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url
}

/// An error and its sources, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}
