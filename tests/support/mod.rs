#![allow(dead_code)]
pub mod canned_http;
pub mod git_server;
pub mod harness;
pub mod logging_proxy;
pub mod slow_git;
pub mod sshd;
pub mod stall_proxy;
pub mod watcher;
