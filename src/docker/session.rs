//! A BuildKit session with the engine, as the docker CLI and buildx open one: `POST /session`
//! upgraded to h2c, over which the engine (BuildKit) is the gRPC client and planner serves
//! the session's services: health, registry credentials for base-image pulls
//! (`Auth.Credentials`, what `docker login` left), and the build context (`FileSync.DiffCopy`,
//! [`super::filesync`]). The session lives as long as its [`Session`]: dropping it closes the
//! connection (the engine then ends what it still had running for it).

use std::collections::HashMap;

use bollard::auth::DockerCredentials;
use bollard::health::health_server::{Health, HealthServer};
use bollard::health::{
    HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
    health_check_response::ServingStatus,
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
use tonic::{Request, Response, Status};

use super::filesync::FileSyncService;

/// Largest header block the engine may send on the session (a request's patterns travel in
/// its headers: an ignore file of up to 1 MiB, URL-escaped where it is not ASCII).
const MAX_HEADER_LIST: u32 = 4 << 20;

/// The gRPC methods the session serves, announced when it opens (BuildKit calls only these).
const METHODS: [&str; 3] = [
    "/grpc.health.v1.Health/Check",
    "/moby.filesync.v1.Auth/Credentials",
    "/moby.filesync.v1.FileSync/DiffCopy",
];

/// What a session serves.
pub struct Services {
    /// Registry credentials by the host BuildKit asks for.
    pub credentials: HashMap<String, DockerCredentials>,
    pub filesync: FileSyncService,
    /// The key BuildKit keeps the transferred context under between builds (same key, same
    /// files: planner derives it from the checkout and its commit).
    pub shared_key: String,
}

/// An open session; dropping it closes it.
pub struct Session {
    pub id: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens a session serving `services` over `io`, a fresh connection to the engine that
/// speaks API version `api` (`1.41`).
pub async fn open<T>(io: T, api: &str, services: Services) -> Result<Session, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let id = session_id();
    let io = upgrade(io, api, &id, &services.shared_key).await?;
    let routes = tonic::service::Routes::new(HealthServer::new(HealthService))
        .add_service(AuthServer::new(AuthService {
            credentials: services.credentials,
        }))
        .add_service(FileSyncServer::new(services.filesync));
    let service = hyper_util::service::TowerToHyperService::new(routes);
    let task = tokio::spawn(async move {
        let connection =
            hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .max_header_list_size(MAX_HEADER_LIST)
                .serve_connection(io, service);
        if let Err(e) = connection.await {
            tracing::debug!("BuildKit session ended: {e}");
        }
    });
    Ok(Session { id, task })
}

/// `POST /session` with the session's headers, switched to h2c: the connection.
async fn upgrade<T>(
    io: T,
    api: &str,
    id: &str,
    shared_key: &str,
) -> Result<hyper::upgrade::Upgraded, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake with the engine: {e}"))?;
    tokio::spawn(connection.with_upgrades());
    let mut request = hyper::Request::post(format!("/v{api}/session"))
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
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("sending the session request: {e}"))?;
    if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        return Err(format!("the engine answered {}", response.status()));
    }
    hyper::upgrade::on(response)
        .await
        .map_err(|e| format!("switching the session to HTTP/2: {e}"))
}

/// A fresh session id (BuildKit requires one per build).
fn session_id() -> String {
    let mut id = String::from("planner-");
    for _ in 0..25 {
        id.push(fastrand::alphanumeric().to_ascii_lowercase());
    }
    id
}

/// Always serving: BuildKit checks the session's health while it builds.
struct HealthService;

type HealthWatch =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for HealthService {
    type WatchStream = HealthWatch;

    async fn check(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        }))
    }

    async fn list(
        &self,
        _request: Request<HealthListRequest>,
    ) -> Result<Response<HealthListResponse>, Status> {
        Err(Status::unimplemented("list"))
    }

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthWatch>, Status> {
        Err(Status::unimplemented("watch"))
    }
}

/// The registry credentials `docker login` left, for the hosts the build's `FROM` lines name;
/// an empty answer (anonymous) for any other host.
struct AuthService {
    credentials: HashMap<String, DockerCredentials>,
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn credentials(
        &self,
        request: Request<CredentialsRequest>,
    ) -> Result<Response<CredentialsResponse>, Status> {
        let answer = match self.credentials.get(&request.get_ref().host) {
            Some(DockerCredentials {
                identitytoken: Some(token),
                ..
            }) => CredentialsResponse {
                username: String::new(),
                secret: token.clone(),
            },
            Some(DockerCredentials {
                username: Some(username),
                password: Some(password),
                ..
            }) => CredentialsResponse {
                username: username.clone(),
                secret: password.clone(),
            },
            _ => CredentialsResponse::default(),
        };
        Ok(Response::new(answer))
    }

    async fn fetch_token(
        &self,
        _request: Request<FetchTokenRequest>,
    ) -> Result<Response<FetchTokenResponse>, Status> {
        Err(Status::unimplemented("fetch_token"))
    }

    async fn get_token_authority(
        &self,
        _request: Request<GetTokenAuthorityRequest>,
    ) -> Result<Response<GetTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("get_token_authority"))
    }

    async fn verify_token_authority(
        &self,
        _request: Request<VerifyTokenAuthorityRequest>,
    ) -> Result<Response<VerifyTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("verify_token_authority"))
    }
}
