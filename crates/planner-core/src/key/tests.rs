//! Unit tests of the key encoding (the kinds' keys are tested with the kinds).

use super::*;
use crate::testkinds::CLONE;

#[test]
fn keys_deserialize_only_when_valid() {
    let good = "a".repeat(64);
    let key: Key = serde_json::from_str(&format!("{good:?}")).unwrap();
    assert_eq!(key.short(), &good[..12]);
    for bad in ["\"x\"", "\"é\"", &format!("{:?}", "A".repeat(64)), "12"] {
        assert!(serde_json::from_str::<Key>(bad).is_err(), "{bad}");
    }
}

#[test]
fn fields_are_length_prefixed() {
    let a = KeyBuilder::new(CLONE.name()).field("ab", "c").finish();
    let b = KeyBuilder::new(CLONE.name()).field("a", "bc").finish();
    assert_ne!(a, b);
}
