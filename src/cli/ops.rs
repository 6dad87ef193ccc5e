//! The `status` and `gc` commands: CLI glue over the library's status and gc.

use std::process::ExitCode;

use super::{GcArgs, StatusArgs};
use crate::app::Globals;
use crate::report::plain;

pub async fn cmd_status(_globals: &Globals, _args: &StatusArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("planner status is not implemented yet")
}

pub async fn cmd_gc(
    _globals: &Globals,
    _args: &GcArgs,
    _verbosity: plain::Verbosity,
) -> anyhow::Result<ExitCode> {
    anyhow::bail!("planner gc is not implemented yet")
}
