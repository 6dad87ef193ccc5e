//! Where a credential may travel: the one rule, and the one redirect policy, every HTTP client
//! that carries a credential uses (the registry client and its token requests, git's
//! resolve-head; BuildKit's session gets its tokens through the registry client).
//!
//! A credential (a password, an identity token, a bearer token, a git token) goes only to the
//! origin it was given for, or to the token realm that origin named; over TLS unless the host
//! is loopback or listed insecure (`[registry] insecure`, `[git] allow_insecure_http`); and
//! never across a redirect to another origin. [`redirect_policy`] follows a redirect only
//! within the origin of the request's URL (scheme, host and port: so never from HTTPS to plain
//! HTTP either) and hands a redirect to any other origin back to the caller as the 3xx answer
//! ([`cross_origin_redirect`] reads its target); the caller decides: an error naming both
//! origins where the request carries the credential in its body or must not move (a token
//! endpoint, a git host), a new request *without* the credential where docker's client does
//! the same (a registry's blob handed to a CDN).

use std::time::Duration;

use reqwest::header;
use url::Url;

/// The client of an API that carries a credential (a registry, a package index): `timeout` on
/// every request (connecting within at most 10 s of it), at most `max_redirects` redirects,
/// each within the origin ([`redirect_policy`]), planner's user agent.
pub fn client(timeout: Duration, max_redirects: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .redirect(redirect_policy(max_redirects))
        .user_agent(concat!("planner/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("static client configuration is valid")
}

/// The redirect policy of every client that carries a credential: at most `max` redirects,
/// each within the origin of the first URL; a redirect to another origin is not followed (the
/// 3xx is the answer).
pub fn redirect_policy(max: usize) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        let same_origin = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if !same_origin {
            attempt.stop()
        } else if attempt.previous().len() > max {
            attempt.error(format!("more than {max} redirects"))
        } else {
            attempt.follow()
        }
    })
}

/// The target of `resp` when it is a redirect (3xx with a `Location`) to another origin than
/// the URL that answered it: the redirect [`redirect_policy`] did not follow.
pub fn cross_origin_redirect(resp: &reqwest::Response) -> Option<Url> {
    if !resp.status().is_redirection() {
        return None;
    }
    let location = resp.headers().get(header::LOCATION)?.to_str().ok()?;
    let target = resp.url().join(location).ok()?;
    (target.origin() != resp.url().origin()).then_some(target)
}

/// `scheme://host[:port]` of `url`, for messages (no credentials, path or query).
pub fn shown_origin(url: &Url) -> String {
    match url.origin() {
        url::Origin::Tuple(..) => url.origin().ascii_serialization(),
        url::Origin::Opaque(_) => format!("{}:", url.scheme()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_shown_without_credentials_path_or_query() {
        let url = Url::parse("http://u:pw@Auth.Example:8080/token?refresh_token=x").unwrap();
        assert_eq!(shown_origin(&url), "http://auth.example:8080");
        let url = Url::parse("https://h.example:443/x").unwrap();
        assert_eq!(shown_origin(&url), "https://h.example");
        assert_eq!(shown_origin(&Url::parse("data:,x").unwrap()), "data:");
    }
}
