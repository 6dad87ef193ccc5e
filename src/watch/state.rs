//! What the watcher acknowledged: each runtime's `:latest` image id it last told the hook
//! about (`watch/state.json`, written atomically), and whether a tick's move calls the hook.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Runtime;
use crate::ids;
use crate::store::{self};

/// Version of `watch/state.json`.
pub const STATE_SCHEMA: u32 = 1;

/// Largest state file read (an entry is about 200 bytes; 10,000 runtimes fit many times).
pub const STATE_CAP: u64 = 16 * 1024 * 1024;

/// What a tick decides for one runtime from the acknowledged id, the id `:latest` had before
/// the tick's ensure, and the one it has after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do or record.
    Nothing,
    /// Record `id` without a hook: nothing was there to replace (`appeared`), or it is the
    /// first id acknowledged and `:latest` did not move.
    Baseline { id: String, appeared: bool },
    /// `:latest` moved from `old` to `new`: run the hook.
    Moved { old: String, new: String },
}

/// The rule (see the module doc). A `:latest` that is gone changes nothing: the state keeps
/// the acknowledged id, so a later `:latest` is compared with it.
pub fn decide(seen: Option<&str>, before: Option<&str>, after: Option<&str>) -> Decision {
    let Some(new) = after else {
        return Decision::Nothing;
    };
    match seen.or(before) {
        None => Decision::Baseline {
            id: new.to_owned(),
            appeared: true,
        },
        Some(old) if old == new && seen.is_some() => Decision::Nothing,
        Some(old) if old == new => Decision::Baseline {
            id: new.to_owned(),
            appeared: false,
        },
        Some(old) => Decision::Moved {
            old: old.to_owned(),
            new: new.to_owned(),
        },
    }
}

/// One acknowledged `:latest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// The `:latest` reference the id is for (a renamed image starts afresh).
    pub image: String,
    pub id: String,
    /// Seconds since the Unix epoch.
    pub at: u64,
}

/// The watcher's persisted state: per runtime, the `:latest` id last acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub runtimes: BTreeMap<String, Seen>,
}

#[derive(Serialize)]
pub(super) struct StateOut<'a> {
    pub(super) schema: u32,
    pub(super) runtimes: &'a BTreeMap<String, Seen>,
}

#[derive(Deserialize)]
pub(super) struct StateIn {
    pub(super) schema: u32,
    pub(super) runtimes: BTreeMap<String, serde_json::Value>,
}

impl State {
    /// The state file of a cache dir.
    pub fn path(cache_dir: &Path) -> PathBuf {
        cache_dir.join("watch").join("state.json")
    }

    /// Reads the state as hostile input. Anything unusable (not a regular file, a symlink,
    /// over [`STATE_CAP`], malformed, another schema) is moved aside to `state.json.bad` and
    /// the watcher starts fresh; an invalid entry is dropped alone. Each refusal is returned
    /// as a reason, for a warning.
    ///
    /// Starting fresh is the safer failure: a runtime without an entry is compared with what
    /// `:latest` names before the next ensure, so no hook is repeated for a change already
    /// handled; the cost is that a change made while the watcher was down is not announced.
    pub fn load(path: &Path) -> (State, Vec<String>) {
        let bytes = match store::read_capped(path, STATE_CAP) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return (State::default(), Vec::new()),
            Err(why) => return (State::default(), vec![set_aside(path, &why)]),
        };
        let parsed: StateIn = match serde_json::from_slice(&bytes) {
            Ok(p) => p,
            Err(e) => {
                return (
                    State::default(),
                    vec![set_aside(path, &format!("malformed: {e}"))],
                );
            }
        };
        if parsed.schema != STATE_SCHEMA {
            let why = format!("schema {} (expected {STATE_SCHEMA})", parsed.schema);
            return (State::default(), vec![set_aside(path, &why)]);
        }
        let mut state = State::default();
        let mut warnings = Vec::new();
        for (name, value) in parsed.runtimes {
            match valid_entry(value) {
                Some(seen) => {
                    state.runtimes.insert(name, seen);
                }
                None => warnings.push(format!(
                    "entry {:?} is not valid; it is dropped (that runtime starts afresh)",
                    name.chars().take(72).collect::<String>()
                )),
            }
        }
        (state, warnings)
    }

    /// Writes the state atomically (temp file, fsync, rename, fsync of the directory).
    pub fn save(&self, path: &Path) -> Result<(), store::StoreError> {
        let bytes = serde_json::to_vec_pretty(&StateOut {
            schema: STATE_SCHEMA,
            runtimes: &self.runtimes,
        })
        .expect("the state serializes");
        store::write_atomic(path, &bytes)
    }

    /// The acknowledged id of `rt`, if it is for its current `:latest` reference.
    pub(super) fn seen(&self, rt: &Runtime) -> Option<&str> {
        self.runtimes
            .get(&rt.name)
            .filter(|s| s.image == rt.latest_tag())
            .map(|s| s.id.as_str())
    }

    pub(super) fn record(&mut self, rt: &Runtime, id: &str) {
        let seen = Seen {
            image: rt.latest_tag(),
            id: id.to_owned(),
            at: store::now_secs(),
        };
        self.runtimes.insert(rt.name.clone(), seen);
    }
}

pub(super) fn valid_entry(value: serde_json::Value) -> Option<Seen> {
    let seen: Seen = serde_json::from_value(value).ok()?;
    (ids::is_image_id(&seen.id) && !seen.image.is_empty() && seen.image.len() <= 512)
        .then_some(seen)
}

/// Moves an unusable state file aside (kept for a look) and says why it was ignored.
pub(super) fn set_aside(path: &Path, why: &str) -> String {
    let aside = path.with_extension("json.bad");
    match std::fs::rename(path, &aside) {
        Ok(()) => format!("{why}; moved to {}, starting afresh", aside.display()),
        Err(e) => format!("{why}; starting afresh (could not move it aside: {e})"),
    }
}
