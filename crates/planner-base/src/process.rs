//! Child process groups. Every subprocess planner starts (git, credential helpers, watch
//! hooks) leads its own process group, so that it and everything it spawned can be killed
//! as one when planner stops waiting for it: [`GroupKill`].

/// Kills a child's process group when dropped while armed: after its leader was waited for
/// (a group whose members all exited is not signalled), or when the wait is abandoned
/// (time limit, cancellation).
pub struct GroupKill(Option<u32>);

impl GroupKill {
    /// A guard for the group led by `pid` (a child spawned with `process_group(0)`).
    pub fn new(pid: Option<u32>) -> GroupKill {
        GroupKill(pid)
    }

    /// Leaves the group alone when dropped (its work finished, nothing to kill).
    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.and_then(|p| libc::pid_t::try_from(p).ok()) {
            // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}
