#![allow(dead_code)]
pub mod git_server;
pub mod harness;
pub mod logging_proxy;
