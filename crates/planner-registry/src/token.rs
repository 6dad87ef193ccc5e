//! Authentication: the `Authorization` value for a 401's challenge: Bearer (a token from the
//! challenge's realm, with Basic credentials or an identity token's refresh grant, cached per
//! registry and scope) or Basic (the credentials themselves), sent only where they belong:
//! the realm over HTTPS, or plain HTTP only where the registry itself may be (loopback,
//! `[registry] insecure`; else [`RegistryError::InsecureRealm`]), and a token endpoint that
//! redirects to another origin is [`RegistryError::TokenRedirect`], its request carrying the
//! credential in its body ([`planner_http`]). The session tokens BuildKit asks planner for
//! (`Registry::session_token`) are fetched here under the same rules.

use std::time::{Duration, Instant, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use url::Url;

use super::auth::Credentials;
use super::challenge::{self, Challenge};
use crate::error::RegistryError;
use planner_base::mask::{display_url, register_secret};
use planner_base::reference::{plain_http_allowed, shown};

use crate::transport::*;

/// Cap on a token endpoint's answer.
pub const TOKEN_CAP: usize = 1024 * 1024;

/// A token is not reused this close to its expiry.
pub const TOKEN_MARGIN: Duration = Duration::from_secs(10);

/// Token lifetime when the answer gives none (distribution's default).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// The OAuth2 client id sent with the refresh-token grant (the docker CLI's is `docker`).
pub(crate) const CLIENT_ID: &str = "planner";

impl Registry {
    /// The `Authorization` value remembered for this registry and scope, if any.
    pub(crate) fn cached_authorization(&self, t: &Target<'_>) -> Option<String> {
        let token = lock(&self.inner.tokens)
            .get(&t.token_key())
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(token, _)| format!("Bearer {token}"));
        token.or_else(|| lock(&self.inner.basic).get(&t.host()).cloned())
    }

    /// Answers a 401's challenge: the `Authorization` value to retry with.
    pub(crate) async fn authenticate(
        &self,
        t: &Target<'_>,
        headers: &HeaderMap,
        waited: &mut Duration,
    ) -> Result<String, RegistryError> {
        lock(&self.inner.tokens).remove(&t.token_key());
        let values = headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let challenges = challenge::parse_challenges(values);
        match challenge::pick(&challenges) {
            Some(bearer) if bearer.scheme == "bearer" => {
                let creds = self.credentials(t.image).await?;
                let token = self.fetch_token(t, bearer, creds.as_ref(), waited).await?;
                Ok(format!("Bearer {token}"))
            }
            // Basic, or a 401 naming no scheme planner knows: credentials, if there are any.
            _ => {
                let creds = self.credentials(t.image).await?;
                let Some(value) = creds.as_ref().and_then(Credentials::basic_header) else {
                    return Err(self.unauthorized(t).await);
                };
                lock(&self.inner.basic).insert(t.host(), value.clone());
                Ok(value)
            }
        }
    }

    /// A token for `t`'s scope from the challenge's realm, cached until it expires.
    pub(crate) async fn fetch_token(
        &self,
        t: &Target<'_>,
        bearer: &Challenge,
        creds: Option<&Credentials>,
        waited: &mut Duration,
    ) -> Result<String, RegistryError> {
        let realm = self.realm(t, bearer.param("realm"))?;
        let service = bearer.param("service").unwrap_or_default();
        let scopes = std::slice::from_ref(&t.scope);
        let (token, lifetime) = self
            .request_token(t, &realm, service, scopes, creds, waited)
            .await?;
        let until = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        lock(&self.inner.tokens).insert(t.token_key(), (token.clone(), until));
        Ok(token)
    }

    /// A token for `scopes` from `realm` (already checked by [`Self::realm`]) and how long it
    /// may be used: GET with Basic credentials, or the OAuth2 refresh-token POST for an
    /// identity token. A rate limit at the token endpoint is waited out like one at the
    /// registry; a redirect to another origin is [`RegistryError::TokenRedirect`].
    pub(crate) async fn request_token(
        &self,
        t: &Target<'_>,
        realm: &Url,
        service: &str,
        scopes: &[String],
        creds: Option<&Credentials>,
        waited: &mut Duration,
    ) -> Result<(String, Duration), RegistryError> {
        let req = self.token_request(realm, service, scopes, creds);
        let mut retries = 0;
        let resp = loop {
            let attempt = req
                .try_clone()
                .ok_or_else(|| protocol(t, realm, "token request not repeatable".into()))?;
            let resp = attempt
                .send()
                .await
                .map_err(|e| self.transport_error(t, realm, e))?;
            match resp.status() {
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                    self.wait_out(t, realm, &resp, retries, waited).await?;
                    retries += 1;
                }
                _ => break resp,
            }
        };
        if let Some(target) = planner_http::cross_origin_redirect(&resp) {
            return Err(RegistryError::TokenRedirect {
                reference: t.reference(),
                host: t.host(),
                realm: planner_http::shown_origin(realm),
                target: planner_http::shown_origin(&target),
            });
        }
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(self.unauthorized(t).await);
            }
            status => return Err(self.status_error(t, realm, status).await),
        }
        let body = read_capped(t, realm, resp, TOKEN_CAP, self.inner.settings.timeout).await?;
        let (token, lifetime) = parse_token(&body, SystemTime::now())
            .map_err(|detail| protocol(t, realm, format!("token endpoint: {detail}")))?;
        register_secret(&token);
        Ok((token, lifetime))
    }

    /// The token request, as the docker CLI sends it: the OAuth2 `refresh_token` POST (scopes
    /// joined by spaces) for an identity token, else a GET with `service`, one `scope` per
    /// scope and `account`, with Basic credentials when there are any.
    fn token_request(
        &self,
        realm: &Url,
        service: &str,
        scopes: &[String],
        creds: Option<&Credentials>,
    ) -> reqwest::RequestBuilder {
        if let Some(c) = creds.filter(|c| c.identity_token) {
            let form = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "refresh_token")
                .append_pair("refresh_token", &c.secret)
                .append_pair("service", service)
                .append_pair("scope", &scopes.join(" "))
                .append_pair("client_id", CLIENT_ID)
                .finish();
            return self
                .http()
                .post(realm.clone())
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form);
        }
        let mut url = realm.clone();
        {
            let mut query = url.query_pairs_mut();
            if !service.is_empty() {
                query.append_pair("service", service);
            }
            for scope in scopes {
                query.append_pair("scope", scope);
            }
            if let Some(c) = creds {
                query.append_pair("account", &c.username);
            }
        }
        let req = self.http().get(url);
        match creds.and_then(Credentials::basic_header) {
            Some(value) => req.header(header::AUTHORIZATION, value),
            None => req,
        }
    }

    /// The challenge's realm, if planner may send credentials there.
    pub(crate) fn realm(&self, t: &Target<'_>, realm: Option<&str>) -> Result<Url, RegistryError> {
        let base = &t.base;
        let Some(realm) = realm.filter(|r| !r.is_empty()) else {
            return Err(protocol(
                t,
                base,
                "a Bearer challenge without a realm".into(),
            ));
        };
        let url = Url::parse(realm).map_err(|e| {
            protocol(
                t,
                base,
                format!("the token realm {} is not a URL: {e}", shown(realm)),
            )
        })?;
        let authority = url.host_str().map(|host| match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        });
        let plain_ok = authority
            .as_deref()
            .is_some_and(|a| plain_http_allowed(a, &self.inner.settings.insecure));
        match url.scheme() {
            "https" => Ok(url),
            "http" if plain_ok => Ok(url),
            _ => Err(RegistryError::InsecureRealm {
                reference: t.reference(),
                host: t.host(),
                realm: shown(&display_url(&url)),
                realm_host: authority.unwrap_or_default(),
            }),
        }
    }

    /// Unauthorized, saying whether credentials were found and where planner looked.
    pub(crate) async fn unauthorized(&self, t: &Target<'_>) -> RegistryError {
        let creds = self.credentials(t.image).await.ok().flatten();
        RegistryError::Unauthorized {
            reference: t.reference(),
            host: t.host(),
            logged_in: creds.is_some(),
            creds_from: self.creds_from(t, creds.as_ref()),
        }
    }

    pub(crate) fn creds_from(&self, t: &Target<'_>, creds: Option<&Credentials>) -> String {
        match creds {
            Some(c) => format!("credentials from {}", c.source),
            None => format!(
                "no credentials for {} in {}",
                t.image.auth_key(),
                self.inner.config.describe()
            ),
        }
    }
}

/// A token answer: `token` or `access_token`, and how long it may be used from now
/// (`expires_in`, default 60 s, minus the time since `issued_at`).
pub(crate) fn parse_token(body: &[u8], now: SystemTime) -> Result<(String, Duration), String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
        #[serde(default)]
        expires_in: Option<f64>,
        #[serde(default)]
        issued_at: Option<String>,
    }
    let answer: Answer =
        serde_json::from_slice(body).map_err(|e| format!("not a token answer ({e})"))?;
    let token = [answer.access_token, answer.token]
        .into_iter()
        .flatten()
        .find(|t| !t.is_empty())
        .ok_or("the answer holds no token")?;
    if token.chars().any(|c| c.is_control() || c == ' ') {
        return Err("the token has characters no header can carry".into());
    }
    let lifetime = match answer.expires_in {
        Some(secs) if secs >= 1.0 => Duration::from_secs(secs.min(86_400.0) as u64),
        _ => DEFAULT_TOKEN_LIFETIME,
    };
    let age = answer
        .issued_at
        .and_then(|at| at.parse::<jiff::Timestamp>().ok())
        .and_then(|at| now.duration_since(SystemTime::from(at)).ok())
        .unwrap_or_default();
    Ok((token, lifetime.saturating_sub(age)))
}
