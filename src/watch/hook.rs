//! Running the `--on-change` hook: `sh -c CMD` in its own process group, bounded by the
//! hook timeout (the group killed after it), its output relayed line by line as events.

use std::time::Duration;

use super::*;

/// After the hook's shell exits, how long its output may still drain (a background child
/// holding the pipe open is not waited for).
pub(super) const DRAIN: Duration = Duration::from_secs(2);

/// Longest hook output line relayed; the rest of the line is dropped.
pub(super) const HOOK_LINE_CAP: usize = 4096;

/// The hook's output relays, still running when its shell has exited.
pub struct HookPipes(tokio::task::JoinSet<()>);

impl HookPipes {
    /// Waits (at most [`DRAIN`]) for the last lines; a background child still holding the
    /// pipes is not waited for.
    pub async fn drained(mut self) {
        let all = async { while self.0.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(DRAIN, all).await;
    }
}

/// Runs the hook: `sh -c CMD` in its own process group with the change in its environment
/// (less the `hidden` variables), stdin closed, output relayed line by line as
/// [`Event::HookOutput`]. `Err` says why it failed. On timeout or cancellation the whole group
/// is killed; after a normal exit, whatever it left running is its own.
pub async fn run_hook(
    cmd: &str,
    change: &Change,
    hidden: &[String],
    limit: Duration,
    events: &EventSink,
) -> (Result<(), String>, HookPipes) {
    let mut relays = tokio::task::JoinSet::new();
    let result = supervise(cmd, change, hidden, limit, events, &mut relays).await;
    (result, HookPipes(relays))
}

pub(super) async fn supervise(
    cmd: &str,
    change: &Change,
    hidden: &[String],
    limit: Duration,
    events: &EventSink,
    relays: &mut tokio::task::JoinSet<()>,
) -> Result<(), String> {
    use std::process::Stdio;
    let mut command = tokio::process::Command::new("/bin/sh");
    command
        .args(["-c", cmd])
        .env("PLANNER_RUNTIME", &change.runtime)
        .env("PLANNER_IMAGE", &change.image)
        .env("PLANNER_OLD_ID", &change.old_id)
        .env("PLANNER_NEW_ID", &change.new_id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for var in hidden {
        command.env_remove(var);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start /bin/sh for the hook: {e}"))?;
    let mut group = crate::process::GroupKill::new(child.id());
    if let Some(out) = child.stdout.take() {
        relays.spawn(relay(out, change.runtime.clone(), events.clone()));
    }
    if let Some(err) = child.stderr.take() {
        relays.spawn(relay(err, change.runtime.clone(), events.clone()));
    }
    let status = match tokio::time::timeout(limit, child.wait()).await {
        Err(_) => {
            return Err(format!(
                "still running after {} (--hook-timeout): killed",
                humantime::format_duration(limit)
            ));
        }
        Ok(Err(e)) => return Err(format!("cannot wait for the hook: {e}")),
        Ok(Ok(status)) => status,
    };
    group.disarm();
    exit_error(status).map_or(Ok(()), Err)
}

/// Why an exit status is a failure; `None` for success.
pub(super) fn exit_error(status: std::process::ExitStatus) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => None,
        (Some(127), _) => Some("exit 127 (command not found?)".into()),
        (Some(code), _) => Some(format!("exit {code}")),
        (None, Some(sig)) => Some(format!("killed by signal {sig}")),
        (None, None) => Some("ended without an exit status".into()),
    }
}

/// Relays `pipe` line by line (lossy UTF-8, long lines cut) as hook output events.
pub(super) async fn relay(
    pipe: impl tokio::io::AsyncRead + Unpin,
    runtime: String,
    events: EventSink,
) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut reader = tokio::io::BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut reader)
            .take(HOOK_LINE_CAP as u64 * 4)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let line: String = text
            .trim_end_matches(['\n', '\r'])
            .chars()
            .take(HOOK_LINE_CAP)
            .collect();
        events(&Event::HookOutput {
            runtime: runtime.clone(),
            line,
        });
    }
}
