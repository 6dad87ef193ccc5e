//! Manifest media types, and picking a platform's manifest out of an image index (OCI) or
//! manifest list (Docker).
//!
//! Platforms are compared after containerd's normalization (`platforms.Normalize`):
//! `x86_64`/`x86-64` is `amd64`, `aarch64` is `arm64`, arm64's variant `v8` is the default (so
//! `linux/arm64` and `linux/arm64/v8` are one platform), `arm` alone is `arm/v7`, `armhf` is
//! `arm/v7`, `armel` is `arm/v6`. The match is exact after that: unlike `docker pull`, planner
//! does not fall back to a merely compatible platform (`386` for `amd64`, `arm/v6` for `arm/v7`),
//! because the digest is the key of the image built for the runtime's platform. Entries for
//! `unknown/unknown` (BuildKit's attestation manifests) are never candidates.

use serde::Deserialize;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The `Accept` header of every manifest request: all four types planner reads.
pub fn accept() -> String {
    [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST].join(", ")
}

/// What a manifest media type is to planner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Index,
    Manifest,
    /// Absent, or a type planner does not read (Docker schema 1, anything else).
    Other,
}

/// The kind of a `Content-Type` / `mediaType` value (parameters and case ignored).
pub fn kind(media_type: &str) -> Kind {
    match essence(media_type).as_str() {
        OCI_INDEX | DOCKER_LIST => Kind::Index,
        OCI_MANIFEST | DOCKER_MANIFEST => Kind::Manifest,
        _ => Kind::Other,
    }
}

/// The media type, without parameters, lowercased.
pub fn essence(media_type: &str) -> String {
    media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The fields of a manifest body that tell what it is, when the headers did not.
#[derive(Debug, Default, Deserialize)]
pub struct Body {
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    #[serde(default)]
    pub layers: Option<serde_json::Value>,
}

impl Body {
    /// The body's kind: its `mediaType`, else its shape (`manifests` is an index; `config`
    /// and `layers` a manifest; OCI allows omitting `mediaType`).
    pub fn kind(&self) -> Kind {
        match self.media_type.as_deref().map(kind) {
            Some(Kind::Other) | None => {}
            Some(known) => return known,
        }
        match (&self.manifests, &self.config, &self.layers) {
            (Some(_), None, _) => Kind::Index,
            (None, Some(_), Some(_)) => Kind::Manifest,
            _ => Kind::Other,
        }
    }
}

/// One entry of an index (fields that may be absent or wrong in hostile bodies default).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// `os/arch[/variant]`; `None` unless two or three non-empty parts.
    pub fn parse(text: &str) -> Option<Platform> {
        let parts: Vec<&str> = text.trim().split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(Platform {
            os: parts[0].to_owned(),
            architecture: parts[1].to_owned(),
            variant: parts.get(2).map(|v| (*v).to_owned()),
        })
    }

    /// containerd's normalized (os, arch, variant).
    pub fn normalized(&self) -> (String, String, String) {
        let os = match self.os.to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_owned(),
            os => os.to_owned(),
        };
        let arch = self.architecture.to_ascii_lowercase();
        let variant = self
            .variant
            .clone()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let (arch, variant) = match (arch.as_str(), variant.as_str()) {
            ("i386", _) => ("386".to_owned(), String::new()),
            ("x86_64" | "x86-64" | "amd64", "v1") => ("amd64".to_owned(), String::new()),
            ("x86_64" | "x86-64" | "amd64", v) => ("amd64".to_owned(), v.to_owned()),
            ("aarch64" | "arm64", "8" | "v8" | "v8.0") => ("arm64".to_owned(), String::new()),
            ("aarch64" | "arm64", "9" | "9.0" | "v9.0") => ("arm64".to_owned(), "v9".to_owned()),
            ("aarch64" | "arm64", v) => ("arm64".to_owned(), v.to_owned()),
            ("armhf", _) => ("arm".to_owned(), "v7".to_owned()),
            ("armel", _) => ("arm".to_owned(), "v6".to_owned()),
            ("arm", "" | "7") => ("arm".to_owned(), "v7".to_owned()),
            ("arm", v @ ("5" | "6" | "8")) => ("arm".to_owned(), format!("v{v}")),
            (a, v) => (a.to_owned(), v.to_owned()),
        };
        (os, arch, variant)
    }

    /// As written: `os/arch[/variant]`.
    pub fn shown(&self) -> String {
        match self.variant.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }

    fn is_attestation(&self) -> bool {
        self.os == "unknown" && self.architecture == "unknown"
    }
}

/// The entries that are platform images (manifests with a platform, not attestations).
fn candidates(manifests: &[Descriptor]) -> impl Iterator<Item = (&Descriptor, &Platform)> {
    manifests.iter().filter_map(|d| {
        let platform = d.platform.as_ref().filter(|p| !p.is_attestation())?;
        (kind(&d.media_type) == Kind::Manifest).then_some((d, platform))
    })
}

/// The platforms an index has images for, as written, each once, in index order.
pub fn available(manifests: &[Descriptor]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    candidates(manifests)
        .map(|(_, platform)| platform.shown())
        .filter(|shown| seen.insert(shown.clone()))
        .collect()
}

/// The first entry for `wanted`, or the platforms the index does have (`Err`).
pub fn pick<'a>(
    manifests: &'a [Descriptor],
    wanted: &Platform,
) -> Result<&'a Descriptor, Vec<String>> {
    let target = wanted.normalized();
    candidates(manifests)
        .find(|(_, platform)| platform.normalized() == target)
        .map(|(entry, _)| entry)
        .ok_or_else(|| available(manifests))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(platform: &str, digest: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.into(),
            platform: Platform::parse(platform),
        }
    }

    fn picked(index: &[Descriptor], wanted: &str) -> Result<String, Vec<String>> {
        pick(index, &Platform::parse(wanted).unwrap()).map(|d| d.digest.clone())
    }

    #[test]
    fn platforms_match_after_normalization() {
        let index = [
            entry("unknown/unknown", "att"),
            entry("linux/amd64", "amd"),
            entry("linux/arm64/v8", "arm64"),
            entry("linux/arm/v7", "armv7"),
            entry("linux/arm/v6", "armv6"),
        ];
        assert_eq!(picked(&index, "linux/amd64").unwrap(), "amd");
        assert_eq!(picked(&index, "linux/x86_64").unwrap(), "amd");
        assert_eq!(picked(&index, "Linux/AMD64").unwrap(), "amd");
        assert_eq!(picked(&index, "linux/arm64").unwrap(), "arm64");
        assert_eq!(picked(&index, "linux/aarch64").unwrap(), "arm64");
        assert_eq!(picked(&index, "linux/arm").unwrap(), "armv7");
        assert_eq!(picked(&index, "linux/armhf").unwrap(), "armv7");
        assert_eq!(picked(&index, "linux/arm/v6").unwrap(), "armv6");
        let plain_arm64 = [entry("linux/arm64", "a")];
        assert_eq!(picked(&plain_arm64, "linux/arm64/v8").unwrap(), "a");
        assert_eq!(
            picked(&plain_arm64, "linux/arm64/v9").unwrap_err(),
            ["linux/arm64"]
        );
    }

    #[test]
    fn no_platform_lists_what_there_is_without_attestations() {
        let mut index = vec![
            entry("unknown/unknown", "att"),
            entry("linux/arm64/v8", "arm64"),
            entry("linux/arm64/v8", "again"),
        ];
        index.push(Descriptor {
            media_type: OCI_INDEX.into(),
            digest: "nested".into(),
            platform: Platform::parse("linux/amd64"),
        });
        index.push(Descriptor::default());
        assert_eq!(
            picked(&index, "linux/amd64").unwrap_err(),
            ["linux/arm64/v8"]
        );
        assert!(picked(&index, "unknown/unknown").unwrap_err().len() == 1);
    }

    #[test]
    fn kinds_of_media_types_and_bodies() {
        assert_eq!(
            kind("application/vnd.oci.image.index.v1+json; charset=utf-8"),
            Kind::Index
        );
        assert_eq!(kind(&DOCKER_LIST.to_uppercase()), Kind::Index);
        assert_eq!(kind(DOCKER_MANIFEST), Kind::Manifest);
        assert_eq!(kind("application/json"), Kind::Other);
        let body: Body = serde_json::from_str(r#"{"manifests": []}"#).unwrap();
        assert_eq!(body.kind(), Kind::Index);
        let body: Body = serde_json::from_str(r#"{"config": {}, "layers": []}"#).unwrap();
        assert_eq!(body.kind(), Kind::Manifest);
        let body: Body = serde_json::from_str(r#"{"schemaVersion": 1}"#).unwrap();
        assert_eq!(body.kind(), Kind::Other);
        assert!(Platform::parse("linux").is_none() && Platform::parse("a/b/c/d").is_none());
        assert!(Platform::parse("linux//v7").is_none());
    }
}
