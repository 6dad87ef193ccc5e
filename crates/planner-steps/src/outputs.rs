//! The outputs the current kinds hand each other, each the type of the kind that makes it
//! (the core only stores them, [`planner_core::Output`]; a consumer asks for the type it
//! takes: `input.get::<Verified>()`).

use std::path::PathBuf;

use planner_core::output::OutputData;

use planner_base::ids::short;

/// `clone`'s output: the checkout in the cache dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout(pub PathBuf);

impl OutputData for Checkout {
    fn describe(&self) -> String {
        format!("checked out into {}", self.0.display())
    }
}

/// `verify-dockerfile`'s output: the checkout and its Dockerfile's digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub checkout: PathBuf,
    pub dockerfile_blake3: String,
}

impl OutputData for Verified {
    fn describe(&self) -> String {
        format!("Dockerfile blake3 {}", short(&self.dockerfile_blake3))
    }
}

/// `build`'s and `pull`'s output: the image the engine holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub id: String,
}

impl OutputData for Image {
    fn describe(&self) -> String {
        short(&self.id).to_owned()
    }
}

/// `tag-latest`'s output: the image `:latest` now names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    pub id: String,
}

impl OutputData for Tagged {
    fn describe(&self) -> String {
        short(&self.id).to_owned()
    }
}
