//! planner-base: the small types every other planner crate shares, with no I/O of their own.
//!
//! - [`ids`]: validators for every identifier read back (commits, digests, image IDs, blake3
//!   hex) and the one short form they are shown in.
//! - [`mask`]: secret masking; every line planner prints or writes passes through it.
//! - [`process`]: child process groups killed as one.
//! - [`reference`]: the image-reference grammar (`registry/repository:tag`), pure parsing and
//!   the transport rule (HTTPS; plain HTTP for loopback and listed insecure hosts).
//! - [`builder`] and [`settings`]: the plain settings `runtimes.toml` gives the leaf crates
//!   (the builder and its network, git limits, registry transport), defined once for the
//!   config that parses them and the crates that take them.
pub mod builder;
pub mod ids;
pub mod mask;
pub mod process;
pub mod reference;
pub mod settings;
pub mod text;

pub use builder::{BuildNetwork, Builder};
pub use reference::ImageRef;
