//! Registry failures. Each names the image reference, the host or URL, and what to do;
//! renderers pass the text through [`planner_base::mask::mask`] (credentials never appear in it).

use std::time::Duration;

/// What a 404 said was missing (from distribution's JSON `errors[].code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// `MANIFEST_UNKNOWN`: the repository exists, the tag does not.
    Tag,
    /// `NAME_UNKNOWN`: no such repository (or it is hidden from these credentials).
    Repository,
    /// A 404 without a code planner knows.
    Unknown,
}

/// Why resolving an image in a registry failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "cannot reach registry {host} for {reference} ({url}): {detail}\n  help: check the network and the registry in runtimes.toml ([defaults] registry, or PLANNER_REGISTRY); planner never falls back to another registry or to a git build"
    )]
    Unreachable {
        reference: String,
        host: String,
        url: String,
        detail: String,
    },
    #[error("{}", unauthorized(.reference, .host, *.logged_in, .creds_from))]
    Unauthorized {
        reference: String,
        host: String,
        /// Whether credentials were found (and refused) rather than missing.
        logged_in: bool,
        /// Where credentials were looked for or found (config file, helper).
        creds_from: String,
    },
    #[error(
        "registry {host} denied access to {reference} (HTTP 403; {creds_from})\n  help: the account needs pull access to this repository; `docker login {host}` as an account that has it"
    )]
    Forbidden {
        reference: String,
        host: String,
        creds_from: String,
    },
    #[error("{}", not_found(.reference, .host, *.missing))]
    NotFound {
        reference: String,
        host: String,
        missing: Missing,
    },
    #[error("{}", rate_limited(.reference, .host, *.retry_after, *.waited))]
    RateLimited {
        reference: String,
        host: String,
        /// What the registry last asked for (`Retry-After`), if anything.
        retry_after: Option<Duration>,
        /// How long planner already waited for it.
        waited: Duration,
    },
    #[error(
        "{reference} has no image for platform {platform}; the index has: {}\n  help: publish the image for {platform} (docker buildx build --platform {platform} ...), or run planner on a matching engine",
        available_list(.available)
    )]
    NoPlatform {
        reference: String,
        platform: String,
        available: Vec<String>,
    },
    #[error(
        "registry {host} for {reference} answered HTTPS with plain HTTP ({detail})\n  help: if this registry serves plain HTTP, add \"{host}\" to [registry] insecure in runtimes.toml (credentials then travel unencrypted); loopback registries need no setting"
    )]
    Insecure {
        reference: String,
        host: String,
        detail: String,
    },
    #[error(
        "registry {host} (for {reference}) names the token realm {realm}, which is not HTTPS; planner sends credentials over plain HTTP only to loopback hosts and those in [registry] insecure\n  help: the registry's token realm should be HTTPS; if {realm_host} serves plain HTTP on a network you trust, add \"{realm_host}\" to [registry] insecure in runtimes.toml (credentials then travel unencrypted)"
    )]
    InsecureRealm {
        reference: String,
        host: String,
        /// The realm URL, quoted.
        realm: String,
        /// Its `host[:port]`.
        realm_host: String,
    },
    #[error(
        "the token endpoint {realm} of registry {host} (for {reference}) redirected to another origin, {target}; planner sends credentials only to the origin they are for and the token realm it names, never across a redirect to another origin\n  help: the registry's token realm must name the token endpoint's own address (ask its operator), or pull anonymously (docker logout {host})"
    )]
    TokenRedirect {
        reference: String,
        host: String,
        /// The realm's origin (`scheme://host[:port]`).
        realm: String,
        /// The origin the redirect named.
        target: String,
    },
    #[error("credentials for {host}: {detail}\n  help: {help}")]
    Credentials {
        host: String,
        detail: String,
        help: String,
    },
    #[error(
        "cannot read docker config {path}: {detail}\n  help: fix the file (it is JSON, as `docker login` writes it), or point DOCKER_CONFIG at a directory with a valid config.json"
    )]
    Config { path: String, detail: String },
    #[error(
        "unexpected answer from registry for {reference} ({url}): {detail}\n  help: the registry may not speak the OCI distribution API at this address; check the registry in runtimes.toml"
    )]
    Protocol {
        reference: String,
        url: String,
        detail: String,
    },
    #[error(
        "registry request for {reference} ({url}) did not finish within {limit} ([registry] timeout)\n  help: the registry is slow or stalled; check it, or raise [registry] timeout in runtimes.toml"
    )]
    TimedOut {
        reference: String,
        url: String,
        limit: String,
    },
    #[error(
        "registry {host} does not allow deleting {reference} (HTTP 405 UNSUPPORTED: deletes are disabled)\n  help: enable deletes in the registry's configuration (distribution's config.yml: `storage: delete: enabled: true`, or REGISTRY_STORAGE_DELETE_ENABLED=true) and restart it, then run gc again"
    )]
    DeleteDisabled { reference: String, host: String },
    #[error(
        "registry answered HTTP {status} for {reference} ({url})\n  help: the registry may be down or misconfigured; try again later"
    )]
    Status {
        reference: String,
        url: String,
        status: u16,
    },
}

fn unauthorized(reference: &str, host: &str, logged_in: bool, creds_from: &str) -> String {
    match logged_in {
        true => format!(
            "registry {host} refused the credentials for {reference} (HTTP 401); they came from {creds_from}\n  help: log in again: docker login {host}"
        ),
        false => format!(
            "registry {host} requires credentials for {reference} (HTTP 401) and none were found ({creds_from})\n  help: docker login {host} (planner reads $DOCKER_CONFIG/config.json, else ~/.docker/config.json, and its credential helpers)"
        ),
    }
}

fn not_found(reference: &str, host: &str, missing: Missing) -> String {
    match missing {
        Missing::Tag => format!(
            "tag not found: {reference} (the repository exists on {host}, the tag does not)\n  help: push the tag, or set registry_tag in runtimes.toml to a tag that exists"
        ),
        Missing::Repository => format!(
            "repository not found for {reference} on {host} (or hidden from these credentials)\n  help: check [defaults] registry / registry_image in runtimes.toml (or PLANNER_REGISTRY); the runtime may not be published there, or needs `docker login {host}`"
        ),
        Missing::Unknown => format!(
            "{reference} not found on {host} (HTTP 404)\n  help: check the reference: registry, registry_image and registry_tag in runtimes.toml (or PLANNER_REGISTRY)"
        ),
    }
}

fn rate_limited(
    reference: &str,
    host: &str,
    retry_after: Option<Duration>,
    waited: Duration,
) -> String {
    let waited = match waited.is_zero() {
        true => String::new(),
        false => format!(
            ", still after planner waited {}",
            humantime::format_duration(waited)
        ),
    };
    let asked = match retry_after {
        Some(after) if !after.is_zero() => format!(
            "; it asks to retry after {}",
            humantime::format_duration(after)
        ),
        _ => String::new(),
    };
    format!(
        "registry {host} is rate-limiting requests for {reference} (HTTP 429{waited}){asked}\n  help: try again later; logged-in pulls usually get a higher limit (docker login {host})"
    )
}

/// The platforms an index has, for the error: a few, then how many more (an index may list
/// thousands).
fn available_list(available: &[String]) -> String {
    match available.is_empty() {
        true => "no platform images".to_owned(),
        false => planner_base::text::list(available, planner_base::text::LIST_MAX),
    }
}
