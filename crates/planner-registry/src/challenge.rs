//! The two response headers a registry steers a client with: `WWW-Authenticate` (RFC 9110
//! §11.6.1 challenges: `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`) and
//! `Retry-After` (delay-seconds or an HTTP-date).
//!
//! Hand-written: no well-kept crate parses challenges without pulling in a second HTTP stack.
//! Quoted strings (with `\` escapes and commas inside), several challenges in one header, and
//! `token68` credentials (skipped) are handled; anything else ends the parse without a panic.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// Headers longer than this are not parsed.
pub const MAX_CHALLENGE_LEN: usize = 16 * 1024;

/// One challenge: its scheme (lowercased) and parameters (names lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Every challenge in the given `WWW-Authenticate` header values, in order.
pub fn parse_challenges<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    let mut out = Vec::new();
    for value in values {
        if value.len() <= MAX_CHALLENGE_LEN {
            Parser { rest: value }.challenges(&mut out);
        }
    }
    out
}

struct Parser<'a> {
    rest: &'a str,
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t']);
    }

    fn skip_ws_and_commas(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t', ',']);
    }

    fn token(&mut self) -> Option<String> {
        let end = self.rest.find(|c| !is_tchar(c)).unwrap_or(self.rest.len());
        if end == 0 {
            return None;
        }
        let (token, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(token.to_owned())
    }

    fn challenges(&mut self, out: &mut Vec<Challenge>) {
        loop {
            self.skip_ws_and_commas();
            let Some(scheme) = self.token() else {
                return;
            };
            let mut challenge = Challenge {
                scheme: scheme.to_ascii_lowercase(),
                params: BTreeMap::new(),
            };
            let more = self.params(&mut challenge);
            out.push(challenge);
            if !more {
                return;
            }
        }
    }

    /// Reads `name=value` pairs until the next challenge (a token not followed by `=`);
    /// `false` when the header ended or is malformed.
    fn params(&mut self, challenge: &mut Challenge) -> bool {
        loop {
            self.skip_ws_and_commas();
            let before = self.rest;
            let Some(name) = self.token() else {
                return false;
            };
            self.skip_ws();
            let Some(after_eq) = self.rest.strip_prefix('=') else {
                // The next challenge's scheme (or token68 of an auth-param-less scheme).
                self.rest = before;
                return !self.rest.is_empty();
            };
            self.rest = after_eq;
            self.skip_ws();
            if self.rest.starts_with(['=', ',']) || self.rest.is_empty() {
                // token68 ("abc==") or an empty value: skip to the next comma.
                let end = self.rest.find(',').unwrap_or(self.rest.len());
                self.rest = &self.rest[end..];
                continue;
            }
            let Some(value) = self.value() else {
                return false;
            };
            challenge
                .params
                .entry(name.to_ascii_lowercase())
                .or_insert(value);
        }
    }

    fn value(&mut self) -> Option<String> {
        let Some(quoted) = self.rest.strip_prefix('"') else {
            return self.token();
        };
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &quoted[i + 1..];
                    return Some(value);
                }
                '\\' => value.push(chars.next()?.1),
                c => value.push(c),
            }
        }
        None
    }
}

/// The first challenge planner can answer: Bearer before Basic.
pub fn pick(challenges: &[Challenge]) -> Option<&Challenge> {
    ["bearer", "basic"]
        .iter()
        .find_map(|scheme| challenges.iter().find(|c| c.scheme == *scheme))
}

/// `Retry-After`: delay-seconds or an HTTP-date (a date in the past is zero). `None` when
/// absent or unreadable.
pub fn retry_after(value: Option<&str>, now: SystemTime) -> Option<Duration> {
    let value = value?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly large values saturate; the caller refuses to wait that long anyway.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(header: &str) -> Challenge {
        let all = parse_challenges([header]);
        assert_eq!(all.len(), 1, "{all:?}");
        all.into_iter().next().unwrap()
    }

    #[test]
    fn bearer_challenges_as_registries_send_them() {
        let c = one(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
        );
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("service"), Some("registry.docker.io"));
        assert_eq!(
            c.param("scope"),
            Some("repository:samalba/my-app:pull,push")
        );
        let c = one(r#"bearer  REALM = "h\"t\\p" , service=tok"#);
        assert_eq!(c.param("realm"), Some(r#"h"t\p"#));
        assert_eq!(c.param("service"), Some("tok"));
    }

    #[test]
    fn several_challenges_and_schemes() {
        let all = parse_challenges([
            r#"Negotiate abc==, Basic realm="Registry Realm", Bearer realm="https://a/t",service="s""#,
            r#"Basic realm="second header""#,
        ]);
        let schemes: Vec<&str> = all.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["negotiate", "basic", "bearer", "basic"]);
        assert_eq!(all[1].param("realm"), Some("Registry Realm"));
        assert_eq!(pick(&all).unwrap().scheme, "bearer");
        let basic = parse_challenges([r#"Basic realm="x""#]);
        assert_eq!(pick(&basic).unwrap().scheme, "basic");
        assert!(pick(&parse_challenges(["Negotiate"])).is_none());
    }

    #[test]
    fn hostile_headers_never_panic() {
        let huge = format!("Bearer realm=\"{}\"", "a".repeat(MAX_CHALLENGE_LEN));
        assert!(parse_challenges([huge.as_str()]).is_empty());
        for text in [
            "",
            ",,,",
            "Bearer",
            "Bearer realm",
            "Bearer realm=",
            "Bearer realm=\"unterminated",
            "Bearer realm=\"x\\",
            "Bearer =x",
            "Bearer realm==,,=",
            "é realm=é",
            "Bearer realm=\"é\",é=\"x\"",
            "\"\"\"",
        ] {
            let _ = parse_challenges([text]);
        }
        assert_eq!(one("Bearer realm=\"unterminated").param("realm"), None);
    }

    #[test]
    fn retry_after_in_both_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(retry_after(Some(" 7 "), now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(Some("Sun, 06 Nov 1994 08:49:47 GMT"), now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after(Some("Sun, 06 Nov 1994 08:49:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after(Some(&"9".repeat(40)), now),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in [None, Some(""), Some("-1"), Some("soon"), Some("1.5")] {
            assert_eq!(retry_after(bad, now), None, "{bad:?}");
        }
    }
}
