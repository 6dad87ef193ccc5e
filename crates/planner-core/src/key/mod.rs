//! Content addresses of steps: blake3 over a canonical, versioned, length-prefixed encoding.
//!
//! Keys never include mtimes, absolute paths or credentials: only the repository identity
//! (URL without credentials), the commit, and configuration values that change the output.
//! What each kind's key covers is the kind's ([`crate::kind::Kind::key`]); this is the
//! encoding ([`crate::plan::keys`] walks the graph). Bump [`KEY_FORMAT`] whenever the meaning of a step's output
//! changes (for example how the build context is assembled), so that old outputs stop matching.

use std::fmt;

/// Version of the key encoding and of the step semantics it covers.
pub const KEY_FORMAT: &str = "planner-key/2";

/// A step's content address: 64 lowercase hex digits.
/// Deserializing validates (a record is read from disk, so anything may be there).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Key(String);

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        let text = String::deserialize(d)?;
        Key::parse(&text).ok_or_else(|| {
            let shown: String = text.chars().take(72).collect();
            serde::de::Error::custom(format!("key {shown:?} is not 64 lowercase hex digits"))
        })
    }
}

impl Key {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, for display.
    pub fn short(&self) -> &str {
        planner_base::ids::short(&self.0)
    }

    /// Parses a key read from a label or record; `None` unless 64 lowercase hex digits.
    pub fn parse(text: &str) -> Option<Key> {
        planner_base::ids::is_blake3_hex(text).then(|| Key(text.to_owned()))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Builds a key from named fields, each length-prefixed so no two field lists collide.
pub struct KeyBuilder(blake3::Hasher);

impl KeyBuilder {
    /// A key of the kind named `kind` (`StepKind::name`): the format and the kind's name
    /// come first.
    pub fn new(kind: &str) -> Self {
        let mut b = KeyBuilder(blake3::Hasher::new());
        b.field("format", KEY_FORMAT).field("kind", kind);
        b
    }

    pub fn field(&mut self, name: &str, value: &str) -> &mut Self {
        for part in [name, value] {
            self.0.update(&(part.len() as u64).to_le_bytes());
            self.0.update(part.as_bytes());
        }
        self
    }

    pub fn finish(&self) -> Key {
        Key(self.0.finalize().to_hex().to_string())
    }
}

#[cfg(test)]
mod tests;
