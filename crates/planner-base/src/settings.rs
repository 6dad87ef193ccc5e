//! The plain settings `runtimes.toml` gives the leaf crates: `[git]` limits for every git
//! subprocess, `[registry]` transport, the engine's idle bound. `planner-config` parses and
//! validates them; `planner-git`, `planner-registry` and `planner-docker` take them as
//! parameters. Defined here once, so neither side depends on the other (see ARCHITECTURE.md).

use std::time::Duration;

/// How long a `git` subprocess may take, and how slow it may be (`[git] timeout`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitLimits {
    /// Total wall time of one git command; the command is killed after it.
    pub timeout: Duration,
    /// Bytes per second below which an HTTP transfer counts as stalled (0: no limit).
    pub low_speed_limit: u32,
    /// How long an HTTP transfer may stay below `low_speed_limit` before git aborts it.
    pub low_speed_time: Duration,
    /// ssh `ConnectTimeout` (TCP connect and banner exchange), also the keep-alive interval.
    pub connect_timeout: Duration,
}

/// Built-in `[git]` limits.
pub const BUILTIN_GIT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
pub const BUILTIN_LOW_SPEED_LIMIT: u32 = 1000;
pub const BUILTIN_LOW_SPEED_TIME: Duration = Duration::from_secs(60);
pub const BUILTIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

impl Default for GitLimits {
    fn default() -> Self {
        GitLimits {
            timeout: BUILTIN_GIT_TIMEOUT,
            low_speed_limit: BUILTIN_LOW_SPEED_LIMIT,
            low_speed_time: BUILTIN_LOW_SPEED_TIME,
            connect_timeout: BUILTIN_CONNECT_TIMEOUT,
        }
    }
}

/// `[registry]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySettings {
    /// Non-loopback registries reached over plain HTTP (`host` or `host:port`).
    pub insecure: Vec<String>,
    /// The bound on each request, body included.
    pub timeout: Duration,
}

/// Built-in `registry.timeout`.
pub const DEFAULT_REGISTRY_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            insecure: Vec::new(),
            timeout: DEFAULT_REGISTRY_TIMEOUT,
        }
    }
}

/// The `[engine]` table: how long planner waits on the Docker engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    /// A stream (a build's context upload and output, a pull's or push's progress) with
    /// nothing moving for this long fails: the engine stopped answering (`idle_timeout`,
    /// default 10 minutes).
    pub idle_timeout: Duration,
    /// Every other engine call (inspect, tag, list, remove, disk usage) fails when the engine
    /// has not answered within this (`timeout`, default 60 seconds).
    pub timeout: Duration,
}

/// Built-in `engine.idle_timeout`.
pub const DEFAULT_ENGINE_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Built-in `engine.timeout`.
pub const DEFAULT_ENGINE_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            idle_timeout: DEFAULT_ENGINE_IDLE_TIMEOUT,
            timeout: DEFAULT_ENGINE_TIMEOUT,
        }
    }
}
