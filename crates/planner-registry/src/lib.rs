//! The OCI / Docker registry client of registry mode: resolve `registry/repository:tag` to the
//! digest of the runtime platform's manifest, with credentials found as the docker CLI finds
//! them, and never a pull.
//!
//! - [`reference`](mod@reference): [`ImageRef`], distribution's reference grammar, Docker Hub normalization,
//!   the transport rule (HTTPS; plain HTTP for loopback and `[registry] insecure` hosts).
//! - [`auth`]: [`Credentials`] from `config.json` (`credHelpers`, `credsStore`, `auths`) and
//!   `docker-credential-*` helpers; [`engine_auth`], the engine's `X-Registry-Auth`.
//! - [`client`]: [`Registry::resolve`] and the other calls: one HEAD in the common case;
//!   401 → Bearer/Basic, 429 → `Retry-After`; indexes resolved to the platform's entry
//!   ([`index`]). Behind it: `transport` (the client's state, one request sent, authenticated,
//!   retried, its status and body checked), `token` (answering a challenge) and `manifests`
//!   (tags to digests, manifests fetched and checked).
//!   [`Registry::registry_credentials`] and [`Registry::session_token`] serve the tokens a
//!   build's BuildKit asks for through its session, under the same rules.
//! - `manage`: listing a repository's tags (only names by the tag grammar, the
//!   others skipped with one warning) and deleting manifests (`gc --remote`).
//! - [`challenge`]: `WWW-Authenticate` and `Retry-After` parsing.
//! - [`error`]: [`RegistryError`]; every variant names the reference and the fix.
//!
//! Where credentials travel is [`planner_http`]'s rule: only to the registry and the token
//! realm it names, over HTTPS unless loopback or `[registry] insecure`, and never across a
//! redirect to another origin (a registry answer redirected elsewhere is fetched there without
//! credentials; a token endpoint redirecting elsewhere is [`RegistryError::TokenRedirect`]).
//!
//! Every secret read (password, identity token, helper secret, bearer token, the encoded
//! header values) goes through [`crate::mask::register_secret`], so no output shows it.
pub mod auth;
pub mod challenge;
pub mod client;
pub mod error;
pub mod index;
mod manage;
mod manifests;
mod token;
mod transport;
/// The image-reference grammar lives in `planner-base` (config needs it too).
pub use planner_base::reference;

pub use auth::{Credentials, DockerConfig, engine_auth};
pub use client::{ImageConfig, Registry, Resolution};
pub use planner_base::settings::RegistrySettings;

pub use error::{Missing, RegistryError};
pub use reference::ImageRef;
