//! Helpers for tests of the shared cache's upkeep (`gc --remote`): a repository's tags as the
//! registry lists them, and a [`TestRegistry`] restarted with deletes disabled.

use super::registry::{TestRegistry, http_request};

/// The tags of repository `name` (`GET /v2/<name>/tags/list`), sorted; empty when the
/// repository is unknown. Open registries only (no authorization is sent).
pub fn tags(reg: &TestRegistry, name: &str) -> Vec<String> {
    let url = format!("{}/v2/{name}/tags/list?n=10000", reg.base_url());
    let response = http_request("GET", &url, &[], None);
    if response.status == 404 {
        return Vec::new();
    }
    assert_eq!(response.status, 200, "GET {url}: {response:?}");
    let doc: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    let mut tags: Vec<String> = doc["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    tags.sort();
    tags
}

/// Restarts `reg` (same port, storage and auth) with `storage.delete.enabled: false`: a
/// `DELETE` of a manifest then answers 405 UNSUPPORTED, as distribution's default does.
pub fn disable_deletes(reg: &mut TestRegistry) {
    let dir = reg.storage_dir();
    let config = dir.parent().expect("the registry dir").join("config.yml");
    let text = std::fs::read_to_string(&config).unwrap();
    let changed = text.replace(
        "  delete:\n    enabled: true",
        "  delete:\n    enabled: false",
    );
    assert_ne!(text, changed, "the test registry's config enables deletes");
    std::fs::write(&config, changed).unwrap();
    reg.restart();
}
