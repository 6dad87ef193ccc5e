//! Index credentials, from where pip and npm users keep them; each is registered with
//! [`planner_base::mask`] when read, and sent only to its index's origin ([`crate::transport`]).
//!
//! - PyPI: userinfo in the index URL (`https://user:password@host/simple/`), else in
//!   `PIP_INDEX_URL` when that names the same origin: HTTP Basic.
//! - npm: `~/.npmrc` (or the file `NPM_CONFIG_USERCONFIG` names): the line
//!   `//host[:port]/path/:_authToken=TOKEN` whose `//host/path/` the registry URL starts with
//!   (the longest wins); `${VAR}` in the token is read from the environment, as npm does:
//!   `Authorization: Bearer TOKEN`.

use base64::Engine as _;
use url::Url;

use crate::{Ecosystem, Package};

/// Largest `.npmrc` read.
const NPMRC_CAP: u64 = 1024 * 1024;

/// The credentials found for this run.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// `PIP_INDEX_URL`, when it carries userinfo.
    pub pip_index_url: Option<Url>,
    /// `(//host/path/, token)` from `.npmrc`.
    pub npm_tokens: Vec<(String, String)>,
}

impl Credentials {
    /// From the environment and the user's `.npmrc` (unreadable or absent: none).
    pub fn from_env() -> Credentials {
        let pip_index_url = std::env::var("PIP_INDEX_URL")
            .ok()
            .and_then(|u| Url::parse(&u).ok())
            .filter(|u| !u.username().is_empty());
        if let Some(url) = &pip_index_url {
            url.password().map(planner_base::mask::register_secret);
        }
        let npmrc = std::env::var_os("NPM_CONFIG_USERCONFIG")
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".npmrc")));
        let npm_tokens = npmrc.map(|p| read_npmrc(&p)).unwrap_or_default();
        Credentials {
            pip_index_url,
            npm_tokens,
        }
    }

    /// The `Authorization` header value for `package`'s index, if any credential is for it.
    pub fn authorization(&self, package: &Package) -> Option<String> {
        match package.ecosystem {
            Ecosystem::Pypi => {
                let url = Some(&package.index)
                    .filter(|u| !u.username().is_empty())
                    .or(self
                        .pip_index_url
                        .as_ref()
                        .filter(|p| p.origin() == package.index.origin()))?;
                let user = decode(url.username());
                let password = url.password().map(decode).unwrap_or_default();
                planner_base::mask::register_secret(&password);
                let basic =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                planner_base::mask::register_secret(&basic);
                Some(format!("Basic {basic}"))
            }
            Ecosystem::Npm => {
                let at = npmrc_prefix(&package.index);
                let (_, token) = self
                    .npm_tokens
                    .iter()
                    .filter(|(prefix, _)| at.starts_with(prefix.as_str()))
                    .max_by_key(|(prefix, _)| prefix.len())?;
                Some(format!("Bearer {token}"))
            }
        }
    }
}

fn decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `//host[:port]/path/` of a registry URL, as `.npmrc` keys name it.
pub fn npmrc_prefix(url: &Url) -> String {
    let mut path = url.path().to_owned();
    if !path.ends_with('/') {
        path.push('/');
    }
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("//{}{port}{path}", url.host_str().unwrap_or_default())
}

/// The `_authToken` lines of an `.npmrc` (at most [`NPMRC_CAP`] bytes read).
pub fn read_npmrc(path: &std::path::Path) -> Vec<(String, String)> {
    use std::io::Read;
    let mut text = String::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(NPMRC_CAP).read_to_string(&mut text));
    if read.is_err() {
        return Vec::new();
    }
    parse_npmrc(&text)
}

/// The `//prefix/:_authToken=TOKEN` entries of `.npmrc` text, `${VAR}` expanded.
pub fn parse_npmrc(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.trim().split_once('=')?;
            let prefix = key.trim().strip_suffix(":_authToken")?;
            if !prefix.starts_with("//") {
                return None;
            }
            let token = expand(value.trim().trim_matches('"'));
            if token.is_empty() {
                return None;
            }
            planner_base::mask::register_secret(&token);
            let mut prefix = prefix.to_owned();
            if !prefix.ends_with('/') {
                prefix.push('/');
            }
            Some((prefix, token))
        })
        .collect()
}

/// `${VAR}` replaced by the environment's value (empty when unset), as npm does.
fn expand(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &rest[start + 2..start + end];
        out.push_str(&std::env::var(name).unwrap_or_default());
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}
