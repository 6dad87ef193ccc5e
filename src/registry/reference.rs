//! STUB: replaced at merge.
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    pub tag: String,
}

impl ImageRef {
    pub fn parse(text: &str) -> Result<ImageRef, String> {
        let (rest, tag) = text
            .rsplit_once(':')
            .filter(|(_, t)| !t.contains('/'))
            .unwrap_or((text, "latest"));
        let (registry, repository) = rest.split_once('/').ok_or_else(|| format!("bad {text}"))?;
        Ok(ImageRef {
            registry: registry.into(),
            repository: repository.into(),
            tag: tag.into(),
        })
    }

    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}/{}@{digest}", self.registry, self.repository)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.registry, self.repository, self.tag)
    }
}
