//! Rendering: plans as text, JSON or DOT ([`plan`]); step transitions as plain lines
//! ([`plain`]); the end-of-run summary ([`summary`]). Everything printed is masked.
pub mod plain;
pub mod plan;
pub mod summary;
