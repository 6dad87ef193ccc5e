//! Backoff after failures, per host: a host whose every runtime failed sits out 1, 2, 4, …
//! ticks (at most [`MAX_BACKOFF`] worth); a runtime that fails alone backs off alone.

use std::collections::HashMap;
use std::time::Duration;

use crate::config::Runtime;

/// The longest a host or runtime backs off after repeated failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The host a runtime's refresh depends on, for backoff: `host[:port]` of its git repo URL,
/// or a registry runtime's registry.
pub fn host_of(rt: &Runtime) -> String {
    if let Some(image) = rt.registry_image() {
        return image.registry.clone();
    }
    let host = rt.repo.host_str().unwrap_or("local");
    match rt.repo.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// Exponential backoff per scope (a host, or one runtime).
#[derive(Debug)]
pub(super) struct Backoff {
    pub(super) entries: HashMap<String, Penalty>,
    /// Most ticks a scope sits out.
    pub(super) cap: u32,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Penalty {
    pub(super) failures: u32,
    /// Ticks still to sit out.
    pub(super) left: u32,
}

impl Backoff {
    pub(super) fn new(interval: Duration) -> Backoff {
        let per_tick = interval.as_secs_f64().max(0.001);
        let cap = (MAX_BACKOFF.as_secs_f64() / per_tick)
            .floor()
            .clamp(1.0, 1e6) as u32;
        Backoff {
            entries: HashMap::new(),
            cap,
        }
    }

    /// Whether `scope` sits this tick out; counts the tick down.
    pub(super) fn sits_out(&mut self, scope: &str) -> bool {
        match self.entries.get_mut(scope) {
            Some(p) if p.left > 0 => {
                p.left -= 1;
                true
            }
            _ => false,
        }
    }

    /// Another failure of `scope`: how many failures in a row, and ticks it sits out.
    pub(super) fn failed(&mut self, scope: &str) -> (u32, u32) {
        let p = self.entries.entry(scope.to_owned()).or_insert(Penalty {
            failures: 0,
            left: 0,
        });
        p.failures = p.failures.saturating_add(1);
        p.left = (1u32 << (p.failures - 1).min(20)).min(self.cap);
        (p.failures, p.left)
    }

    pub(super) fn succeeded(&mut self, scope: &str) {
        self.entries.remove(scope);
    }
}

pub(super) fn runtime_scope(name: &str) -> String {
    format!("runtime {name}")
}
