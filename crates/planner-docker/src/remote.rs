//! Connecting to an [`Endpoint`]: bollard over a unix socket, plain HTTP, TLS with client
//! certificates (rustls), or ssh (`ssh … docker system dial-stdio`, what the docker CLI runs;
//! see [`super::ssh`]). The first call negotiates the API version; its failure is sorted
//! into what the user must fix: unreachable, TLS verification, the client certificate, an
//! engine that does not speak TLS (never retried in plain text), an API that is too old.

use std::time::Duration;

use std::path::PathBuf;

use bollard::{ClientVersion, Docker};
use hyper_util::rt::TokioIo;

use super::endpoint::{BUILD_TIMEOUT, PING_TIMEOUT};
use super::endpoint::{Endpoint, EndpointError, Tls, Transport};
use crate::error::{DockerError, chain, endpoint_error, shown, unreachable};

/// The oldest engine API planner uses (Docker 20.10).
pub const MIN_API: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};
/// ssh logs in before the first answer; give it longer than a socket.
const SSH_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A client for `endpoint`, its API version negotiated and checked.
pub async fn connect(endpoint: &Endpoint) -> Result<Docker, DockerError> {
    let log = super::ssh::SshLog::default();
    let docker = client(endpoint, &log).map_err(|e| *e)?;
    let limit = match endpoint.transport {
        Transport::Ssh(_) => SSH_ANSWER_TIMEOUT,
        _ => PING_TIMEOUT,
    };
    let docker = match tokio::time::timeout(limit, docker.negotiate_version()).await {
        Err(_) => {
            let detail = format!("no answer within {}s", limit.as_secs());
            return Err(unreachable(endpoint, detail));
        }
        Ok(Err(e)) => {
            return Err(match &endpoint.transport {
                Transport::Ssh(target) => {
                    super::ssh::failure(endpoint, target, &chain(&e), &log).await
                }
                _ => classify(endpoint, &e),
            });
        }
        Ok(Ok(docker)) => docker,
    };
    check_version(endpoint, &docker.client_version()).map_err(|e| *e)?;
    Ok(docker)
}

/// Fails when the negotiated version is below [`MIN_API`].
pub fn check_version(endpoint: &Endpoint, version: &ClientVersion) -> Result<(), Box<DockerError>> {
    if *version < MIN_API {
        return Err(Box::new(endpoint_error(EndpointError::ApiTooOld {
            host: shown(endpoint),
            version: version.to_string(),
            min: MIN_API.to_string(),
        })));
    }
    Ok(())
}

fn client(endpoint: &Endpoint, log: &super::ssh::SshLog) -> Result<Docker, Box<DockerError>> {
    let secs = BUILD_TIMEOUT.as_secs();
    let version = bollard::API_DEFAULT_VERSION;
    let made = match &endpoint.transport {
        Transport::Unix(path) => Docker::connect_with_unix(&path.to_string_lossy(), secs, version),
        Transport::Tcp {
            authority,
            tls: None,
        } => Docker::connect_with_http(&format!("tcp://{authority}"), secs, version),
        Transport::Tcp {
            authority,
            tls: Some(tls),
        } => {
            check_tls_files(endpoint, tls)?;
            install_crypto_provider();
            Docker::connect_with_ssl(
                &format!("tcp://{authority}"),
                &tls.key(),
                &tls.cert(),
                &tls.ca(),
                secs,
                version,
            )
        }
        Transport::Ssh(target) => super::ssh::client(target, log, secs, version),
    };
    made.map_err(|e| {
        Box::new(match &endpoint.transport {
            Transport::Tcp { tls: Some(tls), .. } => tls_setup(endpoint, tls, &chain(&e)),
            _ => unreachable(endpoint, chain(&e)),
        })
    })
}

/// rustls needs a process-wide crypto provider; ring is the one the tree builds.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The three files must be there and be PEM before any byte goes out, so that a missing
/// client certificate is named as such rather than as an engine's refusal.
fn check_tls_files(endpoint: &Endpoint, tls: &Tls) -> Result<(), Box<DockerError>> {
    for path in [tls.ca(), tls.cert(), tls.key()] {
        let text = match super::endpoint::read_small(&path) {
            Ok(text) => text,
            Err(e) => {
                let detail = format!("{} cannot be read ({e})", path.display());
                return Err(Box::new(tls_setup(endpoint, tls, &detail)));
            }
        };
        if !text.contains("-----BEGIN ") {
            let detail = format!("{} is not a PEM file", path.display());
            return Err(Box::new(tls_setup(endpoint, tls, &detail)));
        }
    }
    Ok(())
}

fn tls_setup(endpoint: &Endpoint, tls: &Tls, detail: &str) -> DockerError {
    endpoint_error(EndpointError::TlsSetup {
        host: shown(endpoint),
        why: tls.why.clone(),
        detail: detail.to_owned(),
        help: format!(
            "put the engine's CA as ca.pem and planner's client certificate and key as cert.pem and key.pem in {} (docker's names), or point DOCKER_CERT_PATH at the directory that has them",
            tls.dir.display()
        ),
    })
}

/// What a failed first call means, from the error and its sources.
fn classify(endpoint: &Endpoint, error: &bollard::errors::Error) -> DockerError {
    let detail = chain(error);
    let lower = detail.to_ascii_lowercase();
    let host = shown(endpoint);
    match &endpoint.transport {
        Transport::Tcp { tls: Some(tls), .. } => {
            if let Some(e) = tls_failure(endpoint, tls, &detail, &lower) {
                return endpoint_error(e);
            }
        }
        Transport::Tcp { tls: None, .. } if speaks_tls(&lower) => {
            return endpoint_error(EndpointError::ExpectsTls {
                host,
                source_desc: endpoint.source.clone(),
                detail: detail.trim().to_owned(),
            });
        }
        _ => {}
    }
    unreachable(endpoint, detail)
}

/// A TLS engine answering a plain HTTP request says so.
fn speaks_tls(lower: &str) -> bool {
    lower.contains("http request to an https server") || lower.contains("client sent an http")
}

fn tls_failure(endpoint: &Endpoint, tls: &Tls, detail: &str, lower: &str) -> Option<EndpointError> {
    let host = shown(endpoint);
    let peer = [
        "invalid peer certificate",
        "unknownissuer",
        "notvalidforname",
        "certificate expired",
        "badsignature",
    ];
    if peer.iter().any(|p| lower.contains(p)) {
        return Some(EndpointError::TlsVerify {
            host,
            detail: detail.to_owned(),
            ca: tls.ca().display().to_string(),
            hostname: hostname(endpoint),
            why: tls.why.clone(),
        });
    }
    let refused = [
        "certificaterequired",
        "badcertificate",
        "unknownca",
        "certificateunknown",
        "decrypterror",
        "accessdenied",
        "alert",
    ];
    if refused.iter().any(|p| lower.contains(p)) {
        return Some(EndpointError::ClientCert {
            host,
            cert: tls.cert().display().to_string(),
            detail: detail.to_owned(),
            dir: tls.dir.display().to_string(),
            why: tls.why.clone(),
        });
    }
    let plain = [
        "corrupt message",
        "invalidcontenttype",
        "invalid content type",
        "wrong version number",
        "invalidmessage",
    ];
    if plain.iter().any(|p| lower.contains(p)) {
        return Some(EndpointError::NotTls {
            host,
            why: tls.why.clone(),
        });
    }
    None
}

fn hostname(endpoint: &Endpoint) -> String {
    match &endpoint.transport {
        Transport::Tcp { authority, .. } => authority
            .rsplit_once(':')
            .map_or(authority.as_str(), |(h, _)| h)
            .to_owned(),
        _ => shown(endpoint),
    }
}

/// A connection hyper can speak HTTP/1 over.
pub trait HyperIo: hyper::rt::Read + hyper::rt::Write + Unpin + Send {}
impl<T: hyper::rt::Read + hyper::rt::Write + Unpin + Send> HyperIo for T {}

/// A fresh connection to the engine, for calls made without bollard (the pull): the same
/// transport and TLS files as bollard's, so TLS stays TLS.
pub async fn open(endpoint: &Endpoint) -> Result<Box<dyn HyperIo>, String> {
    let host = shown(endpoint);
    let failed = |e: std::io::Error| format!("connecting to {host}: {e}");
    match &endpoint.transport {
        Transport::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(failed)?;
            Ok(Box::new(TokioIo::new(stream)))
        }
        Transport::Tcp {
            authority,
            tls: None,
        } => {
            let stream = tokio::net::TcpStream::connect(authority)
                .await
                .map_err(failed)?;
            Ok(Box::new(TokioIo::new(stream)))
        }
        Transport::Tcp {
            authority,
            tls: Some(tls),
        } => {
            let stream = tokio::net::TcpStream::connect(authority)
                .await
                .map_err(failed)?;
            let tls_stream = tls_connect(stream, &hostname(endpoint), tls)
                .await
                .map_err(failed)?;
            Ok(Box::new(TokioIo::new(tls_stream)))
        }
        Transport::Ssh(target) => {
            let stream = super::ssh::open(target).await.map_err(failed)?;
            Ok(Box::new(stream))
        }
    }
}

/// TLS over `stream` with `tls`'s CA (and the system roots, as bollard trusts) and client pair.
async fn tls_connect(
    stream: tokio::net::TcpStream,
    name: &str,
    tls: &Tls,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let pem = |path: PathBuf| {
        std::fs::read(&path).map_err(|e| invalid(format!("{}: {e}", path.display())))
    };
    for cert in CertificateDer::pem_slice_iter(&pem(tls.ca())?) {
        let added = cert
            .map_err(|e| e.to_string())
            .and_then(|c| roots.add(c).map_err(|e| e.to_string()));
        added.map_err(|e| invalid(format!("{}: {e}", tls.ca().display())))?;
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem(tls.cert())?)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(format!("{}: {e}", tls.cert().display())))?;
    let key = PrivateKeyDer::from_pem_slice(&pem(tls.key())?)
        .map_err(|e| invalid(format!("{}: {e}", tls.key().display())))?;
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| invalid(e.to_string()))?;
    let bare = name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let name = ServerName::try_from(bare).map_err(|e| invalid(e.to_string()))?;
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, stream)
        .await
}
