//! STUB (lead's branch): replaced by the registry helper's module at merge.
pub mod reference;
pub use reference::ImageRef;

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistrySettings {
    pub insecure: Vec<String>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub secret: String,
    pub identity_token: bool,
}

pub fn engine_auth(_creds: &Credentials, _server: &str) -> String {
    String::new()
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("stub {0}")]
    Stub(String),
}

pub struct Resolution {
    pub digest: String,
    pub index_digest: Option<String>,
    pub media_type: String,
    pub rate_limited: Option<Duration>,
}

#[derive(Clone)]
pub struct Registry;

impl Registry {
    pub fn new(_settings: RegistrySettings) -> Registry {
        Registry
    }
    pub async fn resolve(
        &self,
        image: &ImageRef,
        _platform: &str,
    ) -> Result<Resolution, RegistryError> {
        Err(RegistryError::Stub(image.to_string()))
    }
    pub async fn credentials(
        &self,
        _image: &ImageRef,
    ) -> Result<Option<Credentials>, RegistryError> {
        Ok(None)
    }
}
