#![allow(dead_code)]
pub mod buildkit;
pub mod canned_http;
pub mod cred_helper;
pub mod git_server;
pub mod harness;
pub mod logging_proxy;
pub mod rate_limit_proxy;
pub mod registry;
pub mod relay;
pub mod rewrite_proxy;
pub mod slow_git;
pub mod sshd;
pub mod stall_proxy;
pub mod tls_engine;
pub mod token_issuer;
pub mod trees;
pub mod watcher;
