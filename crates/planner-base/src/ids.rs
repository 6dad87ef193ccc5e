//! Validators for the identifiers planner reads back from records, image labels, the engine
//! and the git host, and the one short form they are shown in.
//!
//! Everything read back is input: a value is used (as a path component, a tag, a label, a
//! slice) only after the validator for its type accepted it. Invalid values are a miss.

/// A git object id as ref advertisements carry it: 40 (SHA-1) or 64 (SHA-256) lowercase
/// hex digits, the all-zero id included (it marks `capabilities^{}` of an empty repository).
pub fn is_object_id(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && is_lower_hex(s)
}

/// A commit id: an object id ([`is_object_id`]) other than the all-zero id (git's "no
/// object", never a commit).
pub fn is_commit(s: &str) -> bool {
    is_object_id(s) && s.bytes().any(|b| b != b'0')
}

/// A blake3 digest (a Dockerfile's, a checkout id): 64 lowercase hex digits.
pub fn is_blake3_hex(s: &str) -> bool {
    s.len() == 64 && is_lower_hex(s)
}

/// An engine image ID: `sha256:` and 64 lowercase hex digits.
pub fn is_image_id(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(is_blake3_hex)
}

/// An OCI content digest as planner accepts one from a registry (`Docker-Content-Digest`, an
/// index entry): `sha256:` and 64 lowercase hex digits, the form of an engine image ID.
pub fn is_manifest_digest(s: &str) -> bool {
    is_image_id(s)
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The short form of an id (commit, digest, key, image ID without `sha256:`): its first 12
/// characters. Never panics, whatever the text.
pub fn short(s: &str) -> &str {
    let s = s.strip_prefix("sha256:").unwrap_or(s);
    match s.char_indices().nth(12) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_are_40_or_64_lowercase_hex_and_not_all_zero() {
        assert!(is_commit(&"a".repeat(40)) && is_commit(&"0a".repeat(32)));
        for bad in [
            "0".repeat(40),
            "0".repeat(64),
            "A".repeat(40),
            "a".repeat(39),
            "../../etc".into(),
            format!("{}é", "a".repeat(38)),
            String::new(),
        ] {
            assert!(!is_commit(&bad), "{bad:?}");
        }
    }

    #[test]
    fn object_ids_include_the_all_zero_id_commits_do_not() {
        let zero = "0".repeat(40);
        assert!(is_object_id(&zero) && !is_commit(&zero));
        assert!(is_object_id(&"a".repeat(64)) && !is_object_id(&"A".repeat(40)));
        assert!(!is_object_id(&"a".repeat(41)) && !is_object_id(""));
    }

    #[test]
    fn digests_and_image_ids_have_their_exact_forms() {
        assert!(is_blake3_hex(&"f".repeat(64)));
        assert!(!is_blake3_hex("FORGED-0000000000"));
        assert!(is_image_id(&format!("sha256:{}", "1".repeat(64))));
        assert!(!is_image_id(&"1".repeat(64)) && !is_image_id("sha256:é"));
        assert!(is_manifest_digest(&format!("sha256:{}", "ab".repeat(32))));
        for bad in [
            "sha512:ab",
            "sha256:AB",
            "sha256:",
            "SHA256:ab",
            " sha256:ab",
        ] {
            assert!(!is_manifest_digest(bad), "{bad}");
        }
        assert!(!is_manifest_digest(&format!("sha256:{}", "a".repeat(65))));
    }

    #[test]
    fn short_never_panics() {
        assert_eq!(short(&"ab".repeat(20)), "abababababab");
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short("éééééééééééééé"), "éééééééééééé");
        assert_eq!(short("abc"), "abc");
    }
}
