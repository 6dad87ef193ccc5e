//! The BuildKit session planner serves for each BuildKit build: `POST /session` upgraded to
//! h2c, on which the engine is the gRPC client and planner serves the health service the
//! engine checks, the build context and the Dockerfile (`moby.filesync.v1.FileSync`, as
//! BuildKit's own client sends them: [`super::filesync`]) and the auth service
//! (`moby.filesync.v1.Auth`, buildkit's `session/auth/auth.proto`) its pulls ask. The
//! connection is served in the [`Session`]'s own task, so dropping it closes the connection. bollard's own session hands BuildKit the
//! passwords (`Credentials`) and refuses `GetTokenAuthority`, so the engine fetches tokens
//! itself and sends the secret wherever a registry's challenge points, plain HTTP included;
//! and it cannot be given another auth service. So planner runs the session (a build opens
//! it, and sends the `/build` request itself, in [`super::buildkit`]).
//!
//! The auth service answers only for the registries this build names (its bases: `FROM`,
//! `COPY --from`, `RUN --mount=from=`, as the Dockerfile parser finds them); any other
//! registry BuildKit contacts (a `# syntax=` frontend image) gets no credentials and is
//! pulled anonymously. For a named registry it answers as docker's CLI does
//! (`session/auth/authprovider`), except that no secret ever goes to a token endpoint from
//! the engine:
//! - `GetTokenAuthority`: when planner holds credentials for the registry, an Ed25519 public
//!   key (derived from a per-process seed, the engine's salt, the host and the credentials);
//!   BuildKit then asks `FetchToken` for every Bearer challenge instead of `Credentials`.
//!   Otherwise `Unavailable`, and BuildKit fetches an anonymous token itself.
//! - `VerifyTokenAuthority`: the engine's payload signed with that key (NaCl `sign`:
//!   signature, then the payload).
//! - `FetchToken`: planner fetches the token from the realm with the credentials, under the
//!   rules of its own client ([`crate::host::BuildHost::session_token`]: HTTPS unless the
//!   realm is loopback or `[registry] insecure`, no redirect to another origin), and gives the
//!   engine only the token. A refused realm fails the pull with planner's error.
//! - `Credentials`: the user name and password, which the engine sends to the registry itself
//!   when it answers with a Basic challenge; never an identity token (good at a token
//!   endpoint only); nothing for a registry the build does not name.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use bollard::health::health_server::{Health, HealthServer};
use bollard::health::{
    HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
};
use bollard::moby::filesync::packet::file_sync_server::FileSyncServer;
use bollard::moby::filesync::v1::auth_server::{Auth, AuthServer};
use bollard::moby::filesync::v1::{
    CredentialsRequest, CredentialsResponse, FetchTokenRequest, FetchTokenResponse,
    GetTokenAuthorityRequest, GetTokenAuthorityResponse, VerifyTokenAuthorityRequest,
    VerifyTokenAuthorityResponse,
};
use bytes::Bytes;
use http_body_util::Empty;
use ring::signature::{Ed25519KeyPair, KeyPair};
use tonic::{Request, Response, Status};

use super::filesync::FileSyncService;
use crate::endpoint::PING_TIMEOUT;
use crate::engine::Engine;
use crate::host::{BuildHost, Login};

/// How BuildKit names Docker Hub's registry host.
const DOCKER_HUB_HOST: &str = "registry-1.docker.io";
/// The largest payload or salt signed (BuildKit sends 32 bytes).
const MAX_SIGNED: usize = 1024;
/// Largest header block the engine may send on the session (a file-sync request's patterns
/// travel in its headers: an ignore file of up to 1 MiB, URL-escaped where it is not ASCII).
const MAX_HEADER_LIST: u32 = 4 << 20;
/// Every method planner's session serves, as the engine is told (`X-Docker-Expose-Session-Grpc-Method`).
const METHODS: [&str; 6] = [
    "/grpc.health.v1.Health/Check",
    "/moby.filesync.v1.FileSync/DiffCopy",
    "/moby.filesync.v1.Auth/Credentials",
    "/moby.filesync.v1.Auth/FetchToken",
    "/moby.filesync.v1.Auth/GetTokenAuthority",
    "/moby.filesync.v1.Auth/VerifyTokenAuthority",
];

/// A running session; the connection closes (and the engine ends the session) when dropped.
pub(crate) struct Session {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Engine {
    /// Opens session `id` to the engine and serves `auth` and `files` on it until the
    /// [`Session`] drops. `shared_key` is the key BuildKit keeps the transferred context under
    /// between builds (same key, same files).
    pub(super) async fn start_session(
        &self,
        id: &str,
        auth: SessionAuth,
        files: FileSyncService,
        shared_key: &str,
    ) -> Result<Session, String> {
        let upgraded = tokio::time::timeout(PING_TIMEOUT, self.upgrade_session(id, shared_key))
            .await
            .map_err(|_| format!("no answer within {}s", PING_TIMEOUT.as_secs()))??;
        Ok(serve(upgraded, auth, files))
    }

    /// `POST /session` with `Upgrade: h2c`: the upgraded connection once the engine answers 101.
    async fn upgrade_session(
        &self,
        id: &str,
        shared_key: &str,
    ) -> Result<hyper::upgrade::Upgraded, String> {
        let v = self.docker.client_version();
        let path = format!("/v{}.{}/session", v.major_version, v.minor_version);
        let mut request = hyper::Request::post(path)
            .header("Host", "docker")
            .header("Connection", "Upgrade")
            .header("Upgrade", "h2c")
            .header("X-Docker-Expose-Session-Uuid", id)
            .header("X-Docker-Expose-Session-Name", "planner")
            .header("X-Docker-Expose-Session-Sharedkey", shared_key);
        for method in METHODS {
            request = request.header("X-Docker-Expose-Session-Grpc-Method", method);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let io = super::remote::open(&self.endpoint).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("HTTP handshake with the engine: {e}"))?;
        tokio::spawn(connection.with_upgrades());
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("opening the session: {e}"))?;
        if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
            return Err(format!(
                "the engine answered {} to the session request",
                response.status()
            ));
        }
        hyper::upgrade::on(response)
            .await
            .map_err(|e| format!("upgrading the session connection: {e}"))
    }
}

/// Serves the session's services on `io` in the [`Session`]'s own task (not in one tonic
/// would spawn per connection): dropping the session closes the connection.
fn serve<T>(io: T, auth: SessionAuth, files: FileSyncService) -> Session
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let routes = tonic::service::Routes::new(HealthServer::new(Healthy))
        .add_service(AuthServer::new(auth))
        .add_service(FileSyncServer::new(files));
    let service = hyper_util::service::TowerToHyperService::new(routes);
    let task = tokio::spawn(async move {
        let connection =
            hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .max_header_list_size(MAX_HEADER_LIST)
                .serve_connection(io, service);
        // The engine closing the session ends this; nothing to report then.
        let _ = connection.await;
    });
    Session { task }
}

/// The health service: the session serves while it exists.
struct Healthy;

#[tonic::async_trait]
impl Health for Healthy {
    type WatchStream =
        Pin<Box<dyn futures_util::Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

    async fn check(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse {
            status: bollard::health::health_check_response::ServingStatus::Serving as i32,
        }))
    }

    async fn list(
        &self,
        _: Request<HealthListRequest>,
    ) -> Result<Response<HealthListResponse>, Status> {
        Err(Status::unimplemented("not served"))
    }

    async fn watch(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("not served"))
    }
}

/// The auth service of one build's session (see the module doc).
#[derive(Clone)]
pub struct SessionAuth {
    /// Who holds the logins and fetches the tokens; `None` answers for no registry.
    host: Option<Arc<dyn BuildHost>>,
    /// The registries the build names (`host[:port]`, `docker.io`), lowercase.
    named: Arc<Vec<String>>,
}

impl std::fmt::Debug for SessionAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionAuth")
            .field("named", &self.named)
            .finish()
    }
}

impl SessionAuth {
    /// Answers for no registry: every pull BuildKit makes is anonymous.
    pub fn none() -> SessionAuth {
        SessionAuth {
            host: None,
            named: Arc::default(),
        }
    }

    /// Answers for `named` registries (as image references name them: `host[:port]`,
    /// `docker.io` for Docker Hub) with the logins and token rules `host` holds.
    pub fn new(host: Arc<dyn BuildHost>, named: &[String]) -> SessionAuth {
        let named = named.iter().map(|r| r.to_ascii_lowercase()).collect();
        SessionAuth {
            host: Some(host),
            named: Arc::new(named),
        }
    }

    /// The registry BuildKit's `host` is, when this build names it.
    fn named(&self, host: &str) -> Option<String> {
        let host = host.to_ascii_lowercase();
        let registry = match host.as_str() {
            DOCKER_HUB_HOST | "index.docker.io" => planner_base::reference::DOCKER_HUB.to_owned(),
            _ => host,
        };
        self.named.contains(&registry).then_some(registry)
    }

    /// The credentials for `host` when the build names it and planner holds some.
    async fn credentials_for(&self, host: &str) -> Result<Option<(String, Login)>, Status> {
        let (Some(registry), Some(holder)) = (self.named(host), &self.host) else {
            return Ok(None);
        };
        match holder.registry_login(registry.clone()).await {
            Ok(found) => Ok(found.map(|c| (registry, c))),
            Err(e) => Err(Status::permission_denied(planner_base::mask::mask(&e))),
        }
    }

    /// The key that vouches for planner's tokens for `host` (docker's CLI derives its own
    /// from a stored seed, the salt and the credentials the same way).
    fn authority_key(host: &str, salt: &[u8], creds: &Login) -> Result<Ed25519KeyPair, Status> {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, salt);
        let mut mac = ring::hmac::Context::with_key(&key);
        for part in [
            process_seed().as_slice(),
            host.as_bytes(),
            creds.username.as_bytes(),
            creds.secret.as_bytes(),
        ] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        let tag = mac.sign();
        Ed25519KeyPair::from_seed_unchecked(&tag.as_ref()[..32])
            .map_err(|_| Status::internal("cannot derive the session's token key"))
    }
}

/// 32 random bytes, once per process.
fn process_seed() -> &'static [u8; 32] {
    static SEED: OnceLock<[u8; 32]> = OnceLock::new();
    SEED.get_or_init(|| {
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .expect("the system's random source works");
        seed
    })
}

fn bounded(bytes: &[u8], what: &str) -> Result<(), Status> {
    match bytes.len() <= MAX_SIGNED {
        true => Ok(()),
        false => Err(Status::invalid_argument(format!(
            "{what} longer than {MAX_SIGNED} bytes"
        ))),
    }
}

#[tonic::async_trait]
impl Auth for SessionAuth {
    async fn credentials(
        &self,
        request: Request<CredentialsRequest>,
    ) -> Result<Response<CredentialsResponse>, Status> {
        let found = self.credentials_for(&request.get_ref().host).await?;
        let answer = match found {
            Some((_, c)) if !c.identity_token => CredentialsResponse {
                username: c.username,
                secret: c.secret,
            },
            _ => CredentialsResponse::default(),
        };
        Ok(Response::new(answer))
    }

    async fn fetch_token(
        &self,
        request: Request<FetchTokenRequest>,
    ) -> Result<Response<FetchTokenResponse>, Status> {
        let req = request.get_ref();
        let (Some(registry), Some(holder)) = (self.named(&req.host), &self.host) else {
            return Err(Status::permission_denied(format!(
                "planner holds no credentials this build may use for {}",
                planner_base::reference::shown(&req.host)
            )));
        };
        let (token, lifetime) = holder
            .session_token(
                registry,
                req.realm.clone(),
                req.service.clone(),
                req.scopes.clone(),
            )
            .await
            .map_err(|e| Status::permission_denied(planner_base::mask::mask(&e)))?;
        Ok(Response::new(FetchTokenResponse {
            token,
            expires_in: i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX),
            issued_at: jiff::Timestamp::now().as_second(),
        }))
    }

    async fn get_token_authority(
        &self,
        request: Request<GetTokenAuthorityRequest>,
    ) -> Result<Response<GetTokenAuthorityResponse>, Status> {
        let req = request.get_ref();
        bounded(&req.salt, "salt")?;
        let Some((registry, creds)) = self.credentials_for(&req.host).await? else {
            return Err(Status::unavailable("no credentials for this registry"));
        };
        let key = Self::authority_key(&registry, &req.salt, &creds)?;
        Ok(Response::new(GetTokenAuthorityResponse {
            public_key: key.public_key().as_ref().to_vec(),
        }))
    }

    async fn verify_token_authority(
        &self,
        request: Request<VerifyTokenAuthorityRequest>,
    ) -> Result<Response<VerifyTokenAuthorityResponse>, Status> {
        let req = request.get_ref();
        bounded(&req.salt, "salt")?;
        bounded(&req.payload, "payload")?;
        let Some((registry, creds)) = self.credentials_for(&req.host).await? else {
            return Err(Status::unavailable("no credentials for this registry"));
        };
        let key = Self::authority_key(&registry, &req.salt, &creds)?;
        let mut signed = key.sign(&req.payload).as_ref().to_vec();
        signed.extend_from_slice(&req.payload);
        Ok(Response::new(VerifyTokenAuthorityResponse { signed }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dropping_the_session_closes_its_connection() {
        let (ours, engine) = tokio::io::duplex(64 * 1024);
        let dir = tempfile::tempdir().unwrap();
        let locals = super::super::filesync::Locals {
            context: dir.path().to_path_buf(),
            dockerfile: dir.path().to_path_buf(),
            mtime_ns: 0,
        };
        let files = FileSyncService::new(locals, Arc::default(), Arc::new(|| {}));
        let session = serve(
            hyper_util::rt::TokioIo::new(ours),
            SessionAuth::none(),
            files,
        );
        // The engine's side: an HTTP/2 client that checks health, then waits for the end.
        let executor = hyper_util::rt::TokioExecutor::new();
        let io = hyper_util::rt::TokioIo::new(engine);
        let (mut client, connection) = hyper::client::conn::http2::handshake(executor, io)
            .await
            .unwrap();
        let closed = tokio::spawn(connection);
        let check = hyper::Request::post("http://session/grpc.health.v1.Health/Check")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(http_body_util::Full::new(Bytes::from_static(&[
                0, 0, 0, 0, 0,
            ])))
            .unwrap();
        let answer = client.send_request(check).await.unwrap();
        assert_eq!(answer.status(), 200);
        drop(session);
        let ended = tokio::time::timeout(std::time::Duration::from_secs(10), closed).await;
        assert!(
            ended.is_ok(),
            "the session's connection stayed open after the drop"
        );
    }
    use planner_registry::{DockerConfig, Registry, RegistrySettings};
    use ring::signature::{ED25519, UnparsedPublicKey};

    /// The registry client as `planner-steps` hands it to a session.
    struct RegistryHost(Registry);

    impl std::fmt::Debug for RegistryHost {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("RegistryHost")
        }
    }

    impl BuildHost for RegistryHost {
        fn commit_time(
            &self,
            _: std::path::PathBuf,
        ) -> futures_util::future::BoxFuture<'static, Result<u64, String>> {
            Box::pin(async { Err("no checkout".to_owned()) })
        }

        fn registry_login(
            &self,
            registry: String,
        ) -> futures_util::future::BoxFuture<'static, Result<Option<Login>, String>> {
            let client = self.0.clone();
            Box::pin(async move {
                let found = client.registry_credentials(&registry).await;
                let found = found.map_err(|e| e.to_string())?;
                Ok(found.map(|c| Login {
                    username: c.username,
                    secret: c.secret,
                    identity_token: c.identity_token,
                }))
            })
        }

        fn session_token(
            &self,
            registry: String,
            realm: String,
            service: String,
            scopes: Vec<String>,
        ) -> futures_util::future::BoxFuture<'static, Result<(String, std::time::Duration), String>>
        {
            let client = self.0.clone();
            Box::pin(async move {
                let token = client.session_token(&registry, &realm, &service, &scopes);
                token.await.map_err(|e| e.to_string())
            })
        }
    }

    /// A session answering for `named`, with `auths` in a fresh config.json.
    fn auth(named: &[&str], auths: &str) -> (SessionAuth, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, format!(r#"{{"auths": {auths}}}"#)).unwrap();
        let registry = Registry::with_config(RegistrySettings::default(), DockerConfig::at(path));
        let named: Vec<String> = named.iter().map(|s| s.to_string()).collect();
        (
            SessionAuth::new(Arc::new(RegistryHost(registry)), &named),
            dir,
        )
    }

    async fn credentials(auth: &SessionAuth, host: &str) -> CredentialsResponse {
        let req = Request::new(CredentialsRequest { host: host.into() });
        auth.credentials(req).await.unwrap().into_inner()
    }

    #[tokio::test]
    async fn credentials_go_only_to_named_registries_and_never_as_an_identity_token() {
        let auths = r#"{"named.example:5000": {"username": "u", "password": "pw-session-unit"},
                        "other.example": {"username": "u", "password": "pw-other-unit"},
                        "tok.example": {"identitytoken": "idtok-session-unit"},
                        "https://index.docker.io/v1/": {"username": "hub", "password": "pw-hub-unit"}}"#;
        let (auth, _dir) = auth(&["Named.example:5000", "tok.example", "docker.io"], auths);
        let named = credentials(&auth, "named.example:5000").await;
        assert_eq!(
            (named.username.as_str(), named.secret.as_str()),
            ("u", "pw-session-unit")
        );
        // config.json holds some for it, but this build does not name it.
        assert_eq!(
            credentials(&auth, "other.example").await,
            CredentialsResponse::default()
        );
        // An identity token is only good at a token endpoint: planner exchanges it itself.
        assert_eq!(
            credentials(&auth, "tok.example").await,
            CredentialsResponse::default()
        );
        assert_eq!(credentials(&auth, DOCKER_HUB_HOST).await.username, "hub");
    }

    #[tokio::test]
    async fn planner_is_the_token_authority_only_where_it_holds_named_credentials() {
        let auths = r#"{"named.example": {"username": "u", "password": "pw-authority-unit"},
                        "other.example": {"username": "u", "password": "pw-other-authority"}}"#;
        let (auth, _dir) = auth(&["named.example", "bare.example"], auths);
        let ask = |host: &str| GetTokenAuthorityRequest {
            host: host.into(),
            salt: b"salt-1".to_vec(),
        };
        for host in ["other.example", "bare.example"] {
            let err = auth
                .get_token_authority(Request::new(ask(host)))
                .await
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unavailable, "{host}");
        }
        let key = auth
            .get_token_authority(Request::new(ask("named.example")))
            .await
            .unwrap()
            .into_inner()
            .public_key;
        assert_eq!(key.len(), 32);
        let payload = b"buildkit's 32-byte challenge....".to_vec();
        let verify = VerifyTokenAuthorityRequest {
            host: "named.example".into(),
            payload: payload.clone(),
            salt: b"salt-1".to_vec(),
        };
        let signed = auth
            .verify_token_authority(Request::new(verify))
            .await
            .unwrap()
            .into_inner()
            .signed;
        // NaCl `sign`: the signature, then the message.
        let (signature, message) = signed.split_at(64);
        assert_eq!(message, payload.as_slice());
        UnparsedPublicKey::new(&ED25519, &key)
            .verify(message, signature)
            .expect("signed with the key planner vouched with");
        // Another salt (an engine restart) is another key.
        let other = GetTokenAuthorityRequest {
            salt: b"salt-2".to_vec(),
            ..ask("named.example")
        };
        let rekeyed = auth.get_token_authority(Request::new(other)).await.unwrap();
        assert_ne!(rekeyed.into_inner().public_key, key);
    }

    #[tokio::test]
    async fn tokens_for_unnamed_registries_and_refused_realms_are_errors() {
        let auths = r#"{"named.example": {"username": "u", "password": "pw-fetch-unit"}}"#;
        let (auth, _dir) = auth(&["named.example"], auths);
        let fetch = |host: &str, realm: &str| FetchTokenRequest {
            host: host.into(),
            realm: realm.into(),
            service: "s".into(),
            scopes: vec!["repository:a:pull".into()],
            ..Default::default()
        };
        let err = auth
            .fetch_token(Request::new(fetch("other.example", "https://a.example/t")))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        let err = auth
            .fetch_token(Request::new(fetch(
                "named.example",
                "http://auth.example/t",
            )))
            .await
            .unwrap_err();
        assert!(err.message().contains("is not HTTPS"), "{}", err.message());
        assert!(!err.message().contains("pw-fetch-unit"));
    }
}
