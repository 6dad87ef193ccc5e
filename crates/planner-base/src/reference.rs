//! Image references (`[host[:port]/]path[:tag]`), parsed and normalized as docker does.
//!
//! The grammar is distribution's (`github.com/distribution/reference`, `regexp.go`): lowercase
//! path components joined by `/` with `.`, `_`, `__` or runs of `-` inside a component, a domain
//! of DNS labels, an IPv4 address or a bracketed IPv6 address with an optional port, and a tag
//! `[\w][\w.-]{0,127}`. The first component is a host when it contains `.` or `:`, is
//! `localhost`, or has an uppercase letter (`normalize.go`'s `splitDockerDomain`); otherwise the
//! reference is on Docker Hub (`docker.io`), where a one-component path gets `library/`.
//! `index.docker.io` is Docker Hub too. No tag means `latest`. Digests (`@sha256:…`) are
//! refused: registry mode resolves a tag to a digest.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::LazyLock;

use regex::Regex;
use url::Url;

/// Docker Hub as references name it.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API lives.
pub const DOCKER_HUB_API: &str = "https://registry-1.docker.io/";
/// Docker Hub's key in `config.json` `auths` / `credHelpers` (the legacy v1 index URL).
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";
/// distribution's `RepositoryNameTotalLengthMax`.
const MAX_PATH_LEN: usize = 255;
/// Longer input is refused before any pattern runs (the longest valid reference is shorter).
const MAX_REFERENCE_LEN: usize = 1024;

static DOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    let component = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    let host = format!(r"(?:{component}(?:\.{component})*|\[(?:[a-fA-F0-9:]+)\])");
    Regex::new(&format!(r"^{host}(?::[0-9]+)?$")).expect("static pattern")
});
static PATH: LazyLock<Regex> = LazyLock::new(|| {
    let component = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*";
    Regex::new(&format!(r"^{component}(?:/{component})*$")).expect("static pattern")
});
/// Go's `\w` is ASCII; Rust's is Unicode, which would accept non-ASCII tags and compile a
/// many-megabyte automaton for the bounded repetition (60 ms per run, measured).
static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$").expect("static pattern"));
static IDENTIFIER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-f0-9]{64}$").expect("static pattern"));

/// Whether `text` is a tag by distribution's grammar (`[\w][\w.-]{0,127}`, ASCII): what may
/// follow `:` in a reference, and all a tag from a registry may be before it is used.
pub fn is_tag(text: &str) -> bool {
    text.len() <= 128 && TAG.is_match(text)
}

/// A tagged image reference in a registry, normalized.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// `host[:port]` as written (`docker.io` for Docker Hub).
    pub registry: String,
    /// The repository path (`library/alpine`, `molecule-ai/workspace-template-x`).
    pub repository: String,
    pub tag: String,
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.registry, self.repository, self.tag)
    }
}

impl ImageRef {
    /// Parses and normalizes `text`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<ImageRef, String> {
        let bad = |why: &str| format!("invalid image reference {}: {why}", shown(text));
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        if text.len() > MAX_REFERENCE_LEN {
            return Err(bad(&format!("longer than {MAX_REFERENCE_LEN} bytes")));
        }
        if text.contains("://") {
            return Err(bad(
                "a reference has no scheme (write host[:port]/path:tag); for a plain-HTTP registry add its host to [registry] insecure",
            ));
        }
        if text.contains('@') {
            return Err(bad(
                "a digest (@sha256:...) is not accepted here: registry mode resolves a tag to its digest",
            ));
        }
        if IDENTIFIER.is_match(text) {
            return Err(bad("a 64-hex-digit id is not a repository name"));
        }
        let (registry, rest) = split_domain(text);
        let (path, tag) = match rest.rsplit_once(':') {
            Some((path, tag)) => (path, tag),
            None => (rest, "latest"),
        };
        if registry != DOCKER_HUB && !DOMAIN.is_match(registry) {
            return Err(bad(&format!(
                "{} is not a valid registry host",
                shown(registry)
            )));
        }
        if path.to_lowercase() != path {
            return Err(bad("the repository name must be lowercase"));
        }
        if !PATH.is_match(path) {
            return Err(bad(
                "the repository must be lowercase components ([a-z0-9], separated by '.', '_', '__' or '-') joined by '/'",
            ));
        }
        if !is_tag(tag) {
            return Err(bad(
                "the tag must be 1-128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'",
            ));
        }
        let repository = match registry == DOCKER_HUB && !path.contains('/') {
            true => format!("library/{path}"),
            false => path.to_owned(),
        };
        if repository.len() > MAX_PATH_LEN {
            return Err(bad(&format!(
                "the repository name is longer than {MAX_PATH_LEN} characters"
            )));
        }
        Ok(ImageRef {
            registry: registry.to_owned(),
            repository,
            tag: tag.to_owned(),
        })
    }

    /// `registry/repository@digest`: the reference the engine pulls.
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}/{}@{digest}", self.registry, self.repository)
    }

    /// The registry's API base URL (ending in `/`). HTTPS, except plain HTTP for loopback hosts
    /// (127.0.0.0/8, `::1`, `localhost`), as the engine does with no setting, and for hosts
    /// listed in `insecure` (`host` or `host:port`, as `[registry] insecure` holds them).
    pub fn api_base(&self, insecure: &[String]) -> Result<Url, url::ParseError> {
        if self.registry == DOCKER_HUB {
            return Url::parse(DOCKER_HUB_API);
        }
        let scheme = match plain_http_allowed(&self.registry, insecure) {
            true => "http",
            false => "https",
        };
        Url::parse(&format!("{scheme}://{}/", self.registry))
    }

    /// The key `config.json` files use for this registry (`auths`, `credHelpers`), and the
    /// server a credential helper is asked about.
    pub fn auth_key(&self) -> String {
        match self.registry.as_str() {
            DOCKER_HUB => DOCKER_HUB_AUTH_KEY.to_owned(),
            host => host.to_owned(),
        }
    }

    /// The token scope for pulling this repository.
    pub fn pull_scope(&self) -> String {
        format!("repository:{}:pull", self.repository)
    }
}

/// distribution's `splitDockerDomain`: the registry and the rest (path and tag).
fn split_domain(text: &str) -> (&str, &str) {
    let Some((first, rest)) = text.split_once('/') else {
        return (DOCKER_HUB, text);
    };
    let is_host =
        first == "localhost" || first.contains(['.', ':']) || first.to_lowercase() != first;
    match (is_host, first) {
        (true, "index.docker.io") => (DOCKER_HUB, rest),
        (true, _) => (first, rest),
        (false, _) => (DOCKER_HUB, text),
    }
}

/// Whether `registry` (`host[:port]`) is reached over plain HTTP: loopback, or listed in
/// `insecure` (an entry without a port covers every port of that host; an `http://` prefix
/// or trailing `/` in an entry is ignored).
pub fn plain_http_allowed(registry: &str, insecure: &[String]) -> bool {
    let registry = registry.to_ascii_lowercase();
    let host = host_of(&registry);
    is_loopback(host)
        || insecure.iter().any(|entry| {
            let entry = entry.trim().to_ascii_lowercase();
            let entry = entry
                .strip_prefix("http://")
                .or_else(|| entry.strip_prefix("https://"))
                .unwrap_or(&entry)
                .trim_end_matches('/');
            entry == registry || entry == host
        })
}

/// The host of `host[:port]` (brackets of an IPv6 literal kept).
fn host_of(registry: &str) -> &str {
    if registry.starts_with('[') {
        return registry.find(']').map_or(registry, |end| &registry[..=end]);
    }
    registry.split(':').next().unwrap_or(registry)
}

/// Loopback by its literal form: `localhost`, 127.0.0.0/8, `[::1]`. No DNS lookup.
pub fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A value from outside, for an error message: quoted, escaped, at most 100 characters.
pub fn shown(text: &str) -> String {
    let mut out: String = text.chars().take(100).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    format!("{out:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> (String, String, String) {
        let r = ImageRef::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        (r.registry, r.repository, r.tag)
    }

    fn s(a: &str, b: &str, c: &str) -> (String, String, String) {
        (a.into(), b.into(), c.into())
    }

    #[test]
    fn docker_hub_names_are_normalized() {
        assert_eq!(parsed("alpine"), s("docker.io", "library/alpine", "latest"));
        assert_eq!(
            parsed("alpine:3.20"),
            s("docker.io", "library/alpine", "3.20")
        );
        assert_eq!(
            parsed("docker.io/alpine"),
            s("docker.io", "library/alpine", "latest")
        );
        assert_eq!(parsed("index.docker.io/x/y:t"), s("docker.io", "x/y", "t"));
        assert_eq!(
            parsed("molecule/app:v1"),
            s("docker.io", "molecule/app", "v1")
        );
        let r = ImageRef::parse("alpine").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/alpine:latest");
        assert_eq!(r.auth_key(), DOCKER_HUB_AUTH_KEY);
        assert_eq!(r.api_base(&[]).unwrap().as_str(), DOCKER_HUB_API);
    }

    #[test]
    fn hosts_are_recognized_as_docker_does() {
        assert_eq!(
            parsed("ghcr.io/molecule-ai/workspace-template-x:latest"),
            s("ghcr.io", "molecule-ai/workspace-template-x", "latest")
        );
        assert_eq!(parsed("localhost/a"), s("localhost", "a", "latest"));
        assert_eq!(parsed("localhost:5000/a:b"), s("localhost:5000", "a", "b"));
        assert_eq!(
            parsed("127.0.0.1:5000/a/b/c"),
            s("127.0.0.1:5000", "a/b/c", "latest")
        );
        assert_eq!(parsed("[::1]:5000/a"), s("[::1]:5000", "a", "latest"));
        assert_eq!(parsed("Registry/a"), s("Registry", "a", "latest"));
        assert_eq!(parsed("myreg:5000/a"), s("myreg:5000", "a", "latest"));
        assert_eq!(
            parsed("a__b/c--d/e.f_g"),
            s("docker.io", "a__b/c--d/e.f_g", "latest")
        );
        let r = ImageRef::parse("myreg.internal:5000/x:y").unwrap();
        assert_eq!(r.auth_key(), "myreg.internal:5000");
        assert_eq!(
            r.with_digest("sha256:ab"),
            "myreg.internal:5000/x@sha256:ab"
        );
        assert_eq!(r.pull_scope(), "repository:x:pull");
    }

    #[test]
    fn invalid_references_say_what_is_wrong() {
        let cases = [
            ("", "empty"),
            ("Alpine", "lowercase"),
            ("ghcr.io/Org/x", "lowercase"),
            ("a/-b", "repository must be"),
            ("a//b", "repository must be"),
            ("a/b_", "repository must be"),
            ("a/b___c", "repository must be"),
            ("a:.tag", "tag must be"),
            ("a:", "tag must be"),
            ("-host.io/a", "registry host"),
            ("host.io:x/a", "registry host"),
            ("host.io/a@sha256:abc", "digest"),
            ("https://host.io/a", "no scheme"),
            (&"a".repeat(64), "64-hex"),
            (&"a/".repeat(600), "longer than"),
        ];
        for (text, why) in cases {
            let err = ImageRef::parse(text).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
            assert!(err.len() < 400, "{err}");
        }
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(ImageRef::parse(&long_tag).unwrap_err().contains("tag"));
        let long_path = format!("h.io/{}", "a".repeat(256));
        assert!(ImageRef::parse(&long_path).unwrap_err().contains("255"));
        assert!(ImageRef::parse(&format!("h.io/{}", "a".repeat(255))).is_ok());
    }

    #[test]
    fn tags_follow_the_grammar() {
        for ok in ["latest", "k-0a", "_x", "v1.2-rc_3", &"t".repeat(128)] {
            assert!(is_tag(ok), "{ok}");
        }
        for bad in [
            "",
            ".x",
            "-x",
            "a/b",
            "k-/../x",
            "a:b",
            "é",
            "a\u{1b}",
            &"t".repeat(129),
        ] {
            assert!(!is_tag(bad), "{bad:?}");
        }
    }

    #[test]
    fn tags_are_ascii_as_in_go() {
        assert!(ImageRef::parse("h.example/a:v1.2_rc-3").is_ok());
        assert!(ImageRef::parse(&format!("h.example/a:{}", "t".repeat(128))).is_ok());
        for bad in [
            "h.example/a:é",
            "h.example/a:ｖ1",
            &format!("h.example/a:{}", "t".repeat(129)),
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostile_text_never_panics() {
        for text in [
            "é", "a:é", "é/a", "[/a", "[::1/a", "a\0b", ":", "/", "@", "a:b:c", "\n",
        ] {
            let _ = ImageRef::parse(text);
        }
    }

    #[test]
    fn transport_is_https_except_loopback_and_insecure_hosts() {
        let base = |text: &str, insecure: &[&str]| {
            let insecure: Vec<String> = insecure.iter().map(|s| s.to_string()).collect();
            let r = ImageRef::parse(text).unwrap();
            r.api_base(&insecure).unwrap().to_string()
        };
        assert_eq!(base("ghcr.io/a", &[]), "https://ghcr.io/");
        assert_eq!(base("127.0.0.1:5000/a", &[]), "http://127.0.0.1:5000/");
        assert_eq!(base("127.9.8.7/a", &[]), "http://127.9.8.7/");
        assert_eq!(base("localhost:5000/a", &[]), "http://localhost:5000/");
        assert_eq!(base("[::1]:5000/a", &[]), "http://[::1]:5000/");
        assert_eq!(base("128.0.0.1:5000/a", &[]), "https://128.0.0.1:5000/");
        assert_eq!(
            base("localhost.evil.io/a", &[]),
            "https://localhost.evil.io/"
        );
        assert_eq!(base("myreg:5000/a", &["myreg:5000"]), "http://myreg:5000/");
        assert_eq!(base("myreg:5000/a", &["myreg"]), "http://myreg:5000/");
        assert_eq!(
            base("myreg:5000/a", &["http://MyReg:5000/"]),
            "http://myreg:5000/"
        );
        assert_eq!(base("myreg:5000/a", &["myreg:5001"]), "https://myreg:5000/");
        assert_eq!(base("myreg.io/a", &["other.io"]), "https://myreg.io/");
    }
}
